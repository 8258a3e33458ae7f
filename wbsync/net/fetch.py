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

import contextlib
import errno
import os
import random
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import urllib3

from wbsync.core import settings
from wbsync.core.digests import b64, new_hasher
from wbsync.core.errors import IntegrityError, NotFoundError, RemoteError, WbsyncError, local_io_error
from wbsync.core.models import FileRecord
from wbsync.core.workers import DaemonPool
from wbsync.net import transfer
from wbsync.net.transfer import LinkRefused, RangeIgnored, Retry, StallRule, WrongSize
from wbsync.store.blobs import Store, blob_hex
from wbsync.store.claims import Claims
from wbsync.store.partial import PartialBlob

MiB = 1 << 20
HASH_READ = 4 * MiB  # the part threads wake the in-order hasher each time this much more is written
HASH_MAP = 64 * MiB  # the most the hasher maps at once (page cache, no memory of its own)


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
        timeout = settings.number("WBSYNC_TIMEOUT")
        stall = StallRule(settings.size("WBSYNC_STALL_BYTES"), settings.number("WBSYNC_STALL_SECONDS"))
        return cls(
            attempts=settings.count("WBSYNC_RETRIES"),
            backoff=settings.number("WBSYNC_BACKOFF"),
            max_wait=settings.number("WBSYNC_MAX_WAIT"),
            read_timeout=timeout,
            connect_timeout=min(timeout, cls.connect_timeout),
            stall=stall,
            refreshes=settings.count("WBSYNC_LINK_REFRESHES"),
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
            threshold=settings.size("WBSYNC_RANGE_THRESHOLD"),
            part_size=settings.size("WBSYNC_PART_SIZE"),
            connections=settings.count("WBSYNC_CONNECTIONS"),
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

ROOM_CHECK_MIN = 1 << 20  # bytes: smaller files are not checked against the filesystem's free space


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
        held = True
        if not self.claims.try_claim(job.record):
            if not wait:
                return False
            outcome = self.claims.claim(job.record, self._cancel, patience_s=self.policy.stall.window_s)
            if outcome == "cancelled":
                raise RemoteError(f"{job.artifact}: cancelled while waiting for {job.record.path!r}.")
            held = outcome == "claimed"
        try:
            if not self.store.has(job.record):  # another process may have fetched it meanwhile
                self._check_room(job)
                # Passed by a stalled holder: one stream into a temp file of our own, never the
                # holder's part-done file (it may wake up and write into it again).
                if held and job.record.size >= self.ranges.threshold and self.links.url(job).startswith(
                        ("http://", "https://")):
                    self._fetch_ranged(job)
                else:
                    self._fetch_into_store(job)
        except OSError as exc:  # the store's disk: full, read-only, ... (network errors are urllib3's)
            raise self._local(exc, job) from None
        finally:
            self.claims.release(job.record)
        self.links.finished(job)
        return True

    def _check_room(self, job: FetchJob) -> None:
        """Refuse, before the first byte, a file the store's filesystem cannot hold: a listing
        that declares 1 TB would otherwise leave a 1 TB sparse part-done file and fail late.
        Bytes this blob already holds in tmp/ (a part-done file of an earlier run) count as room.
        Files under ROOM_CHECK_MIN skip it: a million small files need no statvfs each, and a
        small file that meets a full disk fails cleanly on its write."""
        if job.record.size < ROOM_CHECK_MIN:
            return
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.store.tmp_dir)
        held = 0
        for path in self.store.tmp_dir.glob(f"{job.record.algorithm}-{blob_hex(job.record)}*"):
            with contextlib.suppress(OSError):
                held += path.lstat().st_blocks * 512
        needed = job.record.size
        if needed > usage.total or needed > usage.free + held:
            raise self._local(OSError(errno.ENOSPC, f"the file is {needed:,} bytes, the filesystem has "
                                                    f"{usage.free + held:,} free of {usage.total:,}"), job)

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
        transfer.get(self.http, url, writer.offset, None, sink, self.policy.stall, self._cancel, self.progress,
                     job.record.size)

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
            except WrongSize as exc:
                raise _SizeRefused(f"{job.artifact}: downloading {job.record.path!r}: {exc}. Nothing was kept; "
                                   "the listing or the server is wrong: report it to the artifact's publisher.") from None
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
        resumed = sum(part.span(i)[1] - part.span(i)[0] for i in part.done)
        if resumed:
            self.progress(resumed)
        pool = self._parts_pool()
        futures = [pool.submit(self._fetch_part, job, state, i) for i in range(part.parts) if i not in part.done]
        try:
            digest = self._hash_in_order(state)
            # The hash can end before the last part's thread has journaled it: let it, so that
            # no journal is written after commit (or discard) removed it.
            wait(futures)
            part.commit(digest)
        except RangeIgnored:
            _stop(state, futures)
            part.discard()  # the server has no ranges: one stream, from the start
            self._fetch_into_store(job)
        except IntegrityError as exc:
            _stop(state, futures)
            part.discard()
            if isinstance(exc, _SizeRefused):
                raise
            if resumed:
                # Parts of an earlier run were kept on this disk, where anything may have damaged
                # them: fetch the whole file again, once, before blaming the server. (The new
                # part-done file starts empty, so this cannot loop.)
                self.progress(-(resumed + sum(state.written.values())))
                return self._fetch_ranged(job)
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
                transfer.get(self.http, url, offset, end, sink, self.policy.stall, state.cancel, self.progress,
                             part.record.size)
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


class _SizeRefused(IntegrityError):
    """The server's own answer gives another size than the listing: no refetch can help."""


def _corrupt(job: FetchJob, exc: IntegrityError) -> IntegrityError:
    return IntegrityError(f"{job.artifact}: {exc.message} The bad bytes were discarded; nothing was placed. "
                          "Run `wbsync sync` again; if it persists the server holds corrupt data: report it.")


class Writer(Protocol):
    """The part of the store's incoming writer (store.BlobWriter) this module uses."""

    offset: int

    def write(self, data: bytes) -> None: ...
    def reset(self) -> None: ...
