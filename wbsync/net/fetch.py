"""Fetch bytes into the content store: parallel, pooled, streamed, bounded, verified.

Why not the SDK's ``Artifact.download()``: see wbsync/sources/wandb_registry.py. Here every GET
has a connect timeout and a stall rule (wbsync.net.transfer), retries are bounded (attempts,
exponential backoff with full jitter, ``Retry-After`` honoured up to a cap), a dropped transfer
resumes with an HTTP Range request, expired links are renewed from the source in batches, and
bytes are hashed in order as they arrive; only a file whose size and digest match the lock gets
its blob name.

Two shapes of download:

* small and mid-sized files: one GET each, many at once (``jobs``) to hide each request's time to
  first byte, streamed into a store temp file;
* large files (``RangePolicy.threshold`` and up): byte ranges on several connections at once,
  written in place into a resumable part-done file (wbsync.store.partial) and hashed in order as the
  ranges land, straight from the file's pages (a mapping of the page cache), so memory stays
  bounded.

Many processes sharing a store fetch each blob once: a blob is fetched only under its claim
(wbsync.store.claims); a blob another process is fetching is put off until the end, then waited for.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import urllib3

from wbsync.core.digests import b64, new_hasher
from wbsync.core.errors import IntegrityError, NotFoundError, RemoteError, UsageError, WbsyncError, local_io_error
from wbsync.core.models import FileRecord
from wbsync.core.text import parse_size
from wbsync.core.workers import DaemonPool
from wbsync.net import transfer
from wbsync.net.transfer import LinkRefused, RangeIgnored, Retry, StallRule
from wbsync.store.blobs import Store
from wbsync.store.claims import Claims
from wbsync.store.partial import PartialBlob

MiB = 1 << 20
HASH_READ = 4 * MiB  # the part threads wake the in-order hasher each time this much more is written
HASH_MAP = 64 * MiB  # the most the hasher maps at once (page cache, no memory of its own)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _env_number(name: str, default: float, kind: type = float) -> float:
    text = _env(name, str(default))
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"environment variable {name}={text!r} is not a number. Unset it or give a "
                         f"number (default {default}).") from None
    if value < 0:
        raise UsageError(f"environment variable {name}={text!r} is negative. Unset it or give a number "
                         f"of at least 0 (default {default}).")
    return value


def _env_size(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    return parse_size(text, f"environment variable {name}") if text else default


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff: float = 0.5  # first wait, doubled each attempt, with full jitter
    max_wait: float = 30.0  # the longest wait between attempts, a server's Retry-After included
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # silence on a connection (no byte at all) longer than this: retry
    stall: StallRule = field(default_factory=StallRule)
    refreshes: int = 3  # fresh links refused in a row (no byte in between) before giving up

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """WBSYNC_RETRIES / WBSYNC_BACKOFF / WBSYNC_TIMEOUT / WBSYNC_STALL_BYTES /
        WBSYNC_STALL_SECONDS / WBSYNC_LINK_REFRESHES / WBSYNC_MAX_WAIT tune the budget (tests shrink it)."""
        timeout = _env_number("WBSYNC_TIMEOUT", cls.read_timeout)
        stall = StallRule(int(_env_size("WBSYNC_STALL_BYTES", StallRule.min_bytes)),
                          _env_number("WBSYNC_STALL_SECONDS", StallRule.window_s))
        return cls(
            attempts=max(1, int(_env_number("WBSYNC_RETRIES", cls.attempts, int))),
            backoff=_env_number("WBSYNC_BACKOFF", cls.backoff),
            max_wait=_env_number("WBSYNC_MAX_WAIT", cls.max_wait),
            read_timeout=timeout,
            connect_timeout=min(timeout, cls.connect_timeout),
            stall=stall,
            refreshes=int(_env_number("WBSYNC_LINK_REFRESHES", cls.refreshes, int)),
        )

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        return random.uniform(0, min(self.max_wait, self.backoff * (2**attempt)))


@dataclass(frozen=True)
class RangePolicy:
    """When and how a file is fetched as parallel byte ranges.

    Chosen for the fake server's ``cloud`` (30 ms to first byte, 50 MB/s per connection,
    400 MB/s shared) and ``far`` (80 ms, 20 MB/s, 1 GB/s) profiles; docs/benchmarks.md has the
    measurements:

    * ``connections``: one connection carries 20-50 MB/s, so filling ``cloud``'s 400 MB/s takes
      8 and ``far``'s 1 GB/s 50. 32 gives 640 MB/s on ``far`` (as many as the SDK's 32 threads,
      so never fewer connections than it) and 4x ``cloud``'s link; past that the in-order md5
      (one core, ~600 MB/s) and Python's receive loop on 2 cores are the limit, and more
      connections only add threads.
    * ``part_size``: each part pays a time to first byte (80 ms on ``far`` = 1.6 MB at 20 MB/s),
      which argues for large parts; but parts in flight all progress at once and land together,
      and the in-order md5 can only pass a part once it is whole, so the last wave's bytes
      (connections x part size) are hashed after the last byte arrived. 16 MiB (a 512 MiB
      wave) was the best on both profiles: one 2,100 MiB file with ``--link hardlink``, 2
      interleaved rounds, code of this change: ``cloud`` 9.0-9.2 s against 9.6-10.2 s with
      32 MiB and 9.6 s with 8 MiB; ``far`` 9.6-9.9 s, all three within 0.3 s. A kill loses at
      most the parts in flight.
    * ``threshold``: a file under 64 MiB takes about a second on one connection, and many such
      files at once (``--jobs``) fill the link without ranges.
    """

    threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    connections: int = 32

    @classmethod
    def from_env(cls) -> RangePolicy:
        """WBSYNC_RANGE_THRESHOLD / WBSYNC_PART_SIZE / WBSYNC_CONNECTIONS (sizes take units)."""
        return cls(
            threshold=max(1, _env_size("WBSYNC_RANGE_THRESHOLD", cls.threshold)),
            part_size=max(1, _env_size("WBSYNC_PART_SIZE", cls.part_size)),
            connections=max(1, int(_env_number("WBSYNC_CONNECTIONS", cls.connections, int))),
        )


@dataclass(frozen=True)
class FetchJob:
    artifact: str  # manifest entry name, for messages
    record: FileRecord
    url: str


Progress = Callable[[int], None]  # called with a byte count as bytes arrive
#: Opens a non-HTTP URL (a mirror's file or fsspec URL) at a byte offset, for sources that have them.
Opener = Callable[[str, int], BinaryIO]
#: Fresh links for some files of one artifact: (entry name, artifact paths) -> path -> URL.
Renew = Callable[[str, list[str]], dict[str, str]]


class LinkBook:
    """The current link of every file, renewed in batches when the server refuses one.

    A refused (expired) link means the others handed out at the same time are about to expire
    too, so one renewal asks the source for every file of that artifact not fetched yet: one
    listing call per artifact per expiry, not one per file. Workers that hit the same expiry
    find the link renewed already and take it.
    """

    def __init__(self, jobs: Iterable[FetchJob], renew: Renew | None) -> None:
        self._renew = renew
        self._urls: dict[tuple[str, str], str] = {}
        self._pending: dict[str, set[str]] = defaultdict(set)
        for job in jobs:
            self._urls[job.artifact, job.record.path] = job.url
            self._pending[job.artifact].add(job.record.path)
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self.renewals = 0  # listing calls made

    def url(self, job: FetchJob) -> str:
        return self._urls.get((job.artifact, job.record.path), job.url)

    def finished(self, job: FetchJob) -> None:
        with self._guard:
            self._pending[job.artifact].discard(job.record.path)

    def renew(self, job: FetchJob, stale: str, why: str) -> str:
        key = (job.artifact, job.record.path)
        with self._guard:
            lock = self._locks[job.artifact]
        with lock:
            if self._urls.get(key, job.url) != stale:
                return self._urls[key]  # another worker renewed this batch already
            if self._renew is None:
                raise RemoteError(f"{job.artifact}: the server refused the link to {job.record.path!r} ({why}) "
                                  "and this source cannot renew links. Run `wbsync sync` again.")
            with self._guard:
                paths = sorted(self._pending[job.artifact] | {job.record.path})
            fresh = self._renew(job.artifact, paths)
            self.renewals += 1
            for path, url in fresh.items():
                self._urls[job.artifact, path] = url
        if job.record.path not in fresh:
            raise NotFoundError(f"{job.artifact}: the source no longer lists {job.record.path!r} for this "
                                "version. Run `wbsync lock --upgrade` to re-resolve.")
        return fresh[job.record.path]


class Fetcher:
    def __init__(self, store: Store, jobs: int, policy: RetryPolicy | None = None,
                 progress: Progress | None = None, opener: Opener | None = None,
                 renew: Renew | None = None, ranges: RangePolicy | None = None) -> None:
        self.store = store
        self.opener = opener
        self.renew = renew
        self.jobs = max(1, jobs)
        self.policy = policy or RetryPolicy.from_env()
        self.ranges = ranges or RangePolicy.from_env()
        self.progress = progress or (lambda n: None)
        # A connection silent for the stall window is stalled too: no need to wait longer.
        read = min(self.policy.read_timeout, self.policy.stall.window_s)
        timeout = urllib3.Timeout(connect=self.policy.connect_timeout, read=read)
        self.http = transfer.Connections(self.jobs + self.ranges.connections, timeout)
        self.claims = Claims(store)
        self.links = LinkBook((), renew)
        self._cancel = threading.Event()
        self._parts: DaemonPool | None = None
        self._parts_lock = threading.Lock()

    def fetch_all(self, jobs: Iterable[FetchJob]) -> dict[str, WbsyncError]:
        """Fetch every job; returns the first error per artifact (empty when all arrived)."""
        jobs = list(jobs)
        self.links = LinkBook(jobs, self.renew)
        failures: dict[str, WbsyncError] = {}
        lock = threading.Lock()

        def run(job: FetchJob, wait: bool) -> FetchJob | None:
            if job.artifact in failures or self._cancel.is_set():
                return None  # that artifact is lost already: do not spend the budget on its other files
            try:
                return None if self.fetch(job, wait) else job
            except WbsyncError as exc:
                with lock:
                    failures.setdefault(job.artifact, exc)
                return None

        pool = DaemonPool(self.jobs, "wbsync-fetch")
        finished = False
        try:
            # Blobs another process is fetching right now are put off, then waited for:
            # this process meanwhile fetches the ones nobody else is fetching.
            later = [j for j in pool.map(lambda j: run(j, False), jobs) if j is not None]
            list(pool.map(lambda j: run(j, True), later))
            finished = True
        except BaseException:
            self._cancel.set()  # Ctrl-C: workers stop at their next read, and nobody waits for them
            raise
        finally:
            pool.shutdown(wait=finished)
            if self._parts is not None:
                self._parts.shutdown(wait=finished)
                self._parts = None
        return failures

    def fetch(self, job: FetchJob, wait: bool = True) -> bool:
        """Bring one file into the store, unless it is there already (maybe put there by another
        process). False if another process holds the blob's claim and ``wait`` is False."""
        if self.store.has(job.record):
            self.links.finished(job)
            return True
        if not self.claims.try_claim(job.record):
            if not wait:
                return False
            if not self.claims.claim(job.record, self._cancel):
                raise RemoteError(f"{job.artifact}: cancelled while waiting for {job.record.path!r}.")
        try:
            if not self.store.has(job.record):  # another process may have fetched it meanwhile
                if job.record.size >= self.ranges.threshold and self.links.url(job).startswith(("http://",
                                                                                                  "https://")):
                    self._fetch_ranged(job)
                else:
                    self._fetch_into_store(job)
        except OSError as exc:  # the store's disk: full, read-only, ... (network errors are urllib3's)
            raise self._local(exc, job) from None
        finally:
            self.claims.release(job.record)
        self.links.finished(job)
        return True

    def _local(self, exc: OSError, job: FetchJob) -> WbsyncError:
        return local_io_error(exc, f"the content store at {self.store.root} (receiving {job.record.path!r} "
                                   f"of {job.artifact})")

    # -- one stream per file --------------------------------------------------------------

    def _fetch_into_store(self, job: FetchJob) -> None:
        with self.store.incoming(job.record) as writer:
            self._download(job, writer)
            try:
                writer.commit()
            except IntegrityError as exc:
                raise _corrupt(job, exc) from None

    def _download(self, job: FetchJob, writer: Writer) -> None:
        sink = _WriterSink(writer)
        self._attempts(job, lambda url: self._stream(job, url, writer, sink), lambda: writer.offset)

    def _stream(self, job: FetchJob, url: str, writer: Writer, sink: _WriterSink) -> None:
        if not url.startswith(("http://", "https://")):
            return self._stream_opened(job, url, writer)
        transfer.get(self.http, url, writer.offset, None, sink, self.policy.stall, self._cancel, self.progress)

    def _attempts(self, job: FetchJob, attempt: Callable[[str], None], got: Callable[[], int],
                  cancel: threading.Event | None = None) -> None:
        """Run ``attempt(url)`` until it succeeds: bounded retries, renewed links."""
        cancel = cancel or self._cancel
        failures = refusals = 0
        url = self.links.url(job)
        while True:
            before = got()
            try:
                attempt(url)
                return
            except LinkRefused as exc:
                refusals = 1 if got() > before else refusals + 1
                if refusals > self.policy.refreshes:
                    raise RemoteError(
                        f"{job.artifact}: the server refused the download link to {job.record.path!r} ({exc}) "
                        f"{refusals} times in a row, fresh links included. Check that your account can still "
                        "read this artifact, and run `wbsync sync` again; files already verified are kept."
                    ) from None
                url = self.links.renew(job, url, str(exc))
            except Retry as exc:
                failures += 1
                if failures >= self.policy.attempts or cancel.is_set() or self._cancel.is_set():
                    raise RemoteError(
                        f"{job.artifact}: could not download {job.record.path!r} after {failures} "
                        f"attempt(s): {exc}. Check the network or the server's status and run "
                        "`wbsync sync` again; files already verified are kept."
                    ) from None
                time.sleep(self.policy.wait(failures - 1, exc.retry_after))
            except transfer.Failed as exc:
                raise RemoteError(f"{job.artifact}: downloading {job.record.path!r}: {exc} "
                                  "Check that the version still exists (`wbsync outdated`).") from None

    def _stream_opened(self, job: FetchJob, url: str, writer: Writer) -> None:
        """Bytes from a source's own opener (mirrors): same resume, retry and verification."""
        if self.opener is None:
            raise RemoteError(f"{job.artifact}: no way to open {transfer.shown(url)} for {job.record.path!r}.")
        try:
            with self.opener(url, writer.offset) as fh:
                while chunk := fh.read(transfer.READ_SIZE):
                    if self._cancel.is_set():
                        raise Retry("cancelled")
                    try:
                        writer.write(chunk)
                    except OSError as exc:  # our disk, not the source: no retry
                        raise self._local(exc, job) from None
                    self.progress(len(chunk))
        except FileNotFoundError:
            raise RemoteError(f"{job.artifact}: {job.record.path!r} is missing from the source at "
                              f"{transfer.shown(url)}.") from None
        except OSError as exc:
            raise Retry(transfer._reason(exc)) from None

    # -- byte ranges on several connections -----------------------------------------------

    def _parts_pool(self) -> DaemonPool:
        with self._parts_lock:
            if self._parts is None:
                self._parts = DaemonPool(self.ranges.connections, "wbsync-part")
            return self._parts

    def _fetch_ranged(self, job: FetchJob) -> None:
        part = PartialBlob.open(self.store, job.record, self.ranges.part_size)
        state = _Parts(part)
        if part.done:
            self.progress(sum(part.span(i)[1] - part.span(i)[0] for i in part.done))
        pool = self._parts_pool()
        futures = [pool.submit(self._fetch_part, job, state, i) for i in range(part.parts) if i not in part.done]
        try:
            digest = self._hash_in_order(state)
            part.commit(digest)
        except RangeIgnored:
            _stop(state, futures)
            part.discard()  # the server has no ranges: one stream, from the start
            self._fetch_into_store(job)
        except IntegrityError as exc:
            _stop(state, futures)
            part.discard()
            raise _corrupt(job, exc) from None
        except BaseException:
            _stop(state, futures)
            part.close()  # kept, with its journal: the next sync fetches only the missing parts
            raise

    def _hash_in_order(self, state: _Parts) -> str:
        """Hash the file front to back, following the parts as they land (md5 cannot be split)."""
        part = state.part
        hasher = new_hasher(part.record.algorithm)
        frontier, size = 0, part.record.size
        while frontier < size:
            index = frontier // part.part_size
            start, end = part.span(index)
            with state.changed:
                while True:
                    if state.error is not None:
                        raise state.error
                    if self._cancel.is_set():
                        raise RemoteError(f"{part.record.path}: cancelled.")
                    ready = end if index in part.done else start + state.written[index]
                    if ready > frontier:
                        break
                    state.changed.wait(0.5)
            while frontier < ready:
                piece = min(HASH_MAP, ready - frontier)
                part.hash_range(hasher, frontier, piece)
                frontier += piece
        return b64(hasher)

    def _fetch_part(self, job: FetchJob, state: _Parts, index: int) -> None:
        part = state.part
        start, end = part.span(index)
        sink = _PartSink(state, index, start)

        def attempt(url: str) -> None:
            offset = start + state.written[index]
            if offset < end:
                transfer.get(self.http, url, offset, end, sink, self.policy.stall, state.cancel, self.progress)
            if start + state.written[index] != end:
                raise Retry(f"part {index} ended after {state.written[index]} of {end - start} bytes")

        try:
            if state.cancel.is_set():
                return
            self._attempts(job, attempt, lambda: state.written[index], state.cancel)
            with state.changed:
                part.part_done(index)
                state.changed.notify_all()
        except BaseException as exc:  # handed to the hashing thread, which raises it
            with state.changed:
                if state.error is None:
                    state.error = exc if isinstance(exc, (WbsyncError, RangeIgnored)) else self._wrap(job, exc)
                state.changed.notify_all()

    def _wrap(self, job: FetchJob, exc: BaseException) -> BaseException:
        return self._local(exc, job) if isinstance(exc, OSError) else exc


class _Parts:
    """What the part threads and the hashing thread of one ranged file share."""

    def __init__(self, part: PartialBlob) -> None:
        self.part = part
        self.written: dict[int, int] = defaultdict(int)  # part -> bytes written from its start
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.cancel = threading.Event()


class _PartSink:
    def __init__(self, state: _Parts, index: int, start: int) -> None:
        self.state, self.index, self.start = state, index, start

    def write(self, data: bytes) -> None:
        state = self.state
        state.part.write_at(self.start + state.written[self.index], data)
        with state.changed:
            before = state.written[self.index]
            state.written[self.index] = before + len(data)
            # Wake the hashing thread once per piece it reads (HASH_READ), not once per read
            # from the socket: tens of thousands of wake-ups per GB cost CPU the md5 needs.
            if (before + len(data)) // HASH_READ != before // HASH_READ:
                state.changed.notify_all()

    def restart(self) -> None:
        raise RangeIgnored()


class _WriterSink:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def restart(self) -> None:
        self.writer.reset()  # the server ignored Range: start over


def _stop(state: _Parts, futures: list[Future[None]]) -> None:
    state.cancel.set()
    wait(futures)


def _corrupt(job: FetchJob, exc: IntegrityError) -> IntegrityError:
    return IntegrityError(f"{job.artifact}: {exc.message} The bad bytes were discarded; nothing was placed. "
                          "Run `wbsync sync` again; if it persists the server holds corrupt data: report it.")


class Writer(Protocol):
    """The part of the store's incoming writer (store.BlobWriter) this module uses."""

    offset: int

    def write(self, data: bytes) -> None: ...
    def reset(self) -> None: ...
