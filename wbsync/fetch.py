"""Fetch bytes into the content store: parallel, pooled, streamed, bounded, verified.

Why not the SDK's ``Artifact.download()``: see wbsync/sources/wandb_registry.py. Here every GET
has a connect and a read timeout, retries are bounded (attempts, exponential backoff with full
jitter, ``Retry-After`` honoured up to a cap), a dropped transfer resumes with an HTTP Range
request when the server answers 206, and bytes are hashed as they stream into a temp file in
the store; only a file whose size and digest match the lock gets its blob name.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Protocol

import urllib3

from wbsync.errors import IntegrityError, RemoteError, WbsyncError, local_io_error
from wbsync.models import FileRecord
from wbsync.store import Store

CHUNK = 256 << 10  # small enough that a dropped connection loses little before a Range resume
LOCK_THRESHOLD = 8 << 20  # bytes: below this, racing another process costs less than a lock
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff: float = 0.5  # first wait, doubled each attempt, with full jitter
    max_wait: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """WBSYNC_RETRIES / WBSYNC_BACKOFF / WBSYNC_TIMEOUT tune the budget (tests shrink it)."""
        env = os.environ
        return cls(
            attempts=max(1, int(env.get("WBSYNC_RETRIES", cls.attempts))),
            backoff=float(env.get("WBSYNC_BACKOFF", cls.backoff)),
            read_timeout=float(env.get("WBSYNC_TIMEOUT", cls.read_timeout)),
            connect_timeout=min(float(env.get("WBSYNC_TIMEOUT", cls.connect_timeout)), cls.connect_timeout),
        )

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        return random.uniform(0, min(self.max_wait, self.backoff * (2**attempt)))


@dataclass(frozen=True)
class FetchJob:
    artifact: str  # manifest entry name, for messages
    record: FileRecord
    url: str


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


Progress = Callable[[int], None]  # called with a byte count as bytes arrive
#: Opens a non-HTTP URL (a mirror's file or fsspec URL) at a byte offset, for sources that have them.
Opener = Callable[[str, int], BinaryIO]


class Fetcher:
    def __init__(self, store: Store, jobs: int, policy: RetryPolicy | None = None,
                 progress: Progress | None = None, opener: Opener | None = None) -> None:
        self.store = store
        self.opener = opener
        self.jobs = max(1, jobs)
        self.policy = policy or RetryPolicy.from_env()
        self.progress = progress or (lambda n: None)
        timeout = urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout)
        self.http = urllib3.PoolManager(num_pools=4, maxsize=self.jobs, block=False, timeout=timeout,
                                        retries=False)
        self._cancel = threading.Event()

    def fetch_all(self, jobs: Iterable[FetchJob]) -> dict[str, WbsyncError]:
        """Fetch every job; returns the first error per artifact (empty when all arrived)."""
        failures: dict[str, WbsyncError] = {}
        lock = threading.Lock()

        def run(job: FetchJob) -> None:
            if job.artifact in failures or self._cancel.is_set():
                return  # that artifact is lost already: do not spend the budget on its other files
            try:
                self.fetch(job)
            except WbsyncError as exc:
                with lock:
                    failures.setdefault(job.artifact, exc)

        with ThreadPoolExecutor(self.jobs, thread_name_prefix="wbsync-fetch") as pool:
            try:
                list(pool.map(run, jobs))
            except BaseException:
                self._cancel.set()  # Ctrl-C: let workers stop at their next chunk
                raise
        return failures

    def fetch(self, job: FetchJob) -> None:
        """Bring one file into the store, unless it is there already (maybe put there by another
        process while we waited for its lock)."""
        if self.store.has(job.record):
            return
        try:
            if job.record.size < LOCK_THRESHOLD:
                # Small files: no cross-process lock (a lock file per blob costs as much as the
                # download). Two processes may both fetch it; the atomic rename keeps it correct.
                return self._fetch_into_store(job)
            with self.store.lock_blob(job.record):
                if self.store.has(job.record):
                    return  # another process fetched it while we waited
                self._fetch_into_store(job)
        except OSError as exc:  # the store's disk: full, read-only, ... (network errors are urllib3's)
            raise self._local(exc, job) from None

    def _local(self, exc: OSError, job: FetchJob) -> WbsyncError:
        return local_io_error(exc, f"the content store at {self.store.root} (receiving {job.record.path!r} "
                                   f"of {job.artifact})")

    def _fetch_into_store(self, job: FetchJob) -> None:
        with self.store.incoming(job.record) as writer:
            self._download(job, writer)
            try:
                writer.commit()
            except IntegrityError as exc:
                raise IntegrityError(f"{job.artifact}: {exc.message} The bad bytes were discarded; "
                                     "nothing was placed. Run `wbsync sync` again; if it persists the "
                                     "server holds corrupt data: report it.") from None

    def _download(self, job: FetchJob, writer: "Writer") -> None:
        attempt = 0
        while True:
            try:
                self._stream(job, writer)
                return
            except _Retry as exc:
                attempt += 1
                if attempt >= self.policy.attempts or self._cancel.is_set():
                    raise RemoteError(
                        f"{job.artifact}: could not download {job.record.path!r} after {attempt} "
                        f"attempt(s): {exc}. Check the network or the server's status and run "
                        "`wbsync sync` again; files already verified are kept."
                    ) from None
                time.sleep(self.policy.wait(attempt - 1, exc.retry_after))

    def _stream(self, job: FetchJob, writer: "Writer") -> None:
        if not job.url.startswith(("http://", "https://")):
            return self._stream_opened(job, writer)
        offset = writer.offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = self.http.request("GET", job.url, headers=headers, preload_content=False,
                                     redirect=True)
        except urllib3.exceptions.HTTPError as exc:
            raise _Retry(_reason(exc)) from None
        try:
            self._check_status(job, resp, offset, writer)
            for chunk in resp.stream(CHUNK):
                if self._cancel.is_set():
                    raise _Retry("cancelled")
                writer.write(chunk)
                self.progress(len(chunk))
        except urllib3.exceptions.HTTPError as exc:
            raise _Retry(_reason(exc)) from None
        finally:
            resp.release_conn()

    def _stream_opened(self, job: FetchJob, writer: "Writer") -> None:
        """Bytes from a source's own opener (mirrors): same resume, retry and verification."""
        if self.opener is None:
            raise RemoteError(f"{job.artifact}: no way to open {job.url!r} for {job.record.path!r}.")
        try:
            with self.opener(job.url, writer.offset) as fh:
                while chunk := fh.read(CHUNK):
                    if self._cancel.is_set():
                        raise _Retry("cancelled")
                    try:
                        writer.write(chunk)
                    except OSError as exc:  # our disk, not the source: no retry
                        raise self._local(exc, job) from None
                    self.progress(len(chunk))
        except FileNotFoundError:
            raise RemoteError(f"{job.artifact}: {job.record.path!r} is missing from the source at {job.url}.") from None
        except OSError as exc:
            raise _Retry(_reason(exc)) from None

    def _check_status(self, job: FetchJob, resp: urllib3.BaseHTTPResponse, offset: int,
                      writer: "Writer") -> None:
        if resp.status == 206 and offset:
            return
        if resp.status == 200:
            if offset:
                writer.reset()  # the server ignored Range: start over
            return
        if resp.status in RETRYABLE_STATUS:
            resp.drain_conn()
            raise _Retry(f"HTTP {resp.status}", _retry_after(resp.headers.get("Retry-After")))
        raise RemoteError(
            f"{job.artifact}: the server answered HTTP {resp.status} for {job.record.path!r}. "
            + ("The download link was refused; run `wbsync sync` again to get fresh links."
               if resp.status in (401, 403) else "Check that the version still exists (`wbsync outdated`).")
        )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these servers; fall back to our backoff


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


class Writer(Protocol):
    """The part of the store's incoming writer (store.BlobWriter) this module uses."""

    offset: int

    def write(self, data: bytes) -> None: ...
    def reset(self) -> None: ...
