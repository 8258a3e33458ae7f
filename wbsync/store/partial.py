"""A large blob arriving in byte ranges, resumable across processes.

Layout in the store's ``tmp/`` folder, one pair per blob being fetched in ranges::

    <algorithm>-<hex>.ranged        the file at its full size, parts written where they belong
    <algorithm>-<hex>.ranged.json   which parts are complete: {"size", "digest", "part_size", "done"}

A part is listed in the journal only after all its bytes were written, so a kill loses at most
the parts in flight; the next sync fetches only the parts not listed. The journal is a hint,
never trusted for content: the fetcher hashes the whole file in order before ``commit()``
gives it its blob name, and a mismatch discards both files. The names are stable (not unique
per process like the ``.part`` files) so that a later process finds them: only the holder of
the blob's claim (wbsync.store.claims) opens them.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wbsync.core.digests import Hasher
from wbsync.core.errors import IntegrityError
from wbsync.core.models import FileRecord
from wbsync.core.safeio import open_regular, read_regular
from wbsync.store.blobs import BLOB_MODE, VERIFIED_MTIME_NS, Freed, Store, allocated, blob_hex

if TYPE_CHECKING:
    from wbsync.store.claims import Claims

SUFFIX = ".ranged"
KEEP_S = 7 * 24 * 3600  # kept this long for a resume; see clean() for the whole rule
_HEX = re.compile(r"[0-9a-f]{16,}")


class PartialBlob:
    """Open with ``PartialBlob.open``; ``write_at`` parts, ``part_done`` each, then ``commit``."""

    def __init__(self, store: Store, record: FileRecord, part_size: int) -> None:
        self.record = record
        self.part_size = part_size
        self.blob_path = store.blob_path(record)
        self.path = store.tmp_dir / f"{record.algorithm}-{blob_hex(record)}{SUFFIX}"
        self.journal = Path(f"{self.path}.json")
        self.done: set[int] = set()
        self._fd = -1

    @classmethod
    def open(cls, store: Store, record: FileRecord, part_size: int) -> PartialBlob:
        """The part-done file of an earlier run if it matches (same size, digest, part size),
        else a new empty one."""
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        blob = cls(store, record, part_size)
        blob.done = blob._resumable()
        if not _regular(blob.path):  # a link a cache archive kept, a FIFO: never resumed, removed below
            blob.done = set()
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        if not blob.done:
            # A fresh file, never one truncated to 0: ext4 (auto_da_alloc) flushes a file that
            # was truncated to 0 when it is closed, and closing 2,100 MiB that way took 1 s, and
            # the journal's fsync after it 2 s more (one file on `cloud`: 12.0 s instead of 16.1).
            blob.path.unlink(missing_ok=True)
        # Writable until commit (a resume reopens it); a symlink a cache archive kept is refused.
        blob._fd = open_regular(blob.path, flags, 0o600)
        os.ftruncate(blob._fd, record.size)  # sparse: parts land anywhere
        return blob

    @property
    def parts(self) -> int:
        return max(1, -(-self.record.size // self.part_size))

    def span(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(start + self.part_size, self.record.size)

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def hash_range(self, hasher: Hasher, offset: int, size: int) -> None:
        """Feed bytes ``[offset, offset + size)`` to ``hasher`` straight from the page cache.

        A mapping, not ``pread``: the in-order hash is what a large download waits for at its
        end (md5 runs on one core while the parts arrive on the other), and copying every byte
        into a buffer first cost that thread 0.9 s of its 4.4 s of CPU for 2,100 MiB.

        ``mmap`` refuses to map past the end of the file (ValueError), so a file shorter than
        recorded goes to the reading path, which raises IntegrityError."""
        base = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(self._fd, offset + size - base, offset=base, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # shorter than recorded, or a filesystem that cannot map (FUSE)
            self._hash_read(hasher, offset, size)
            return
        with mapped, memoryview(mapped) as view:
            piece = view[offset - base:]
            try:
                hasher.update(piece)
            finally:
                piece.release()  # before the mapping closes

    def _hash_read(self, hasher: Hasher, offset: int, size: int) -> None:
        end = offset + size
        while offset < end:
            data = os.pread(self._fd, min(4 << 20, end - offset), offset)
            if not data:
                raise IntegrityError(f"{self.record.path}: the part-done file is shorter than recorded.")
            hasher.update(data)
            offset += len(data)

    def part_done(self, index: int) -> None:
        """Record a complete part (atomically: a kill leaves the old journal or the new one)."""
        self.done.add(index)
        doc = {"size": self.record.size, "digest": self.record.digest, "part_size": self.part_size,
               "done": sorted(self.done)}
        temp = Path(f"{self.journal}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)  # a link planted at this name is removed, never written through
        try:
            with os.fdopen(open_regular(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
                fh.write(json.dumps(doc))
            os.replace(temp, self.journal)
        except BaseException:  # a full disk: leave the old journal, not an empty temp file beside it
            temp.unlink(missing_ok=True)
            raise

    def commit(self, digest: str) -> Path:
        """Name the blob if ``digest`` (of the whole file, hashed in order) is the lock's; else
        IntegrityError (the fetcher discards the file, as for any other integrity failure)."""
        if digest != self.record.digest:
            raise IntegrityError(
                f"{self.record.path}: received {self.record.size} bytes with {self.record.algorithm} digest "
                f"{digest}, but the lock records digest {self.record.digest}; the bytes were discarded.")
        os.fchmod(self._fd, BLOB_MODE)
        os.utime(self._fd, ns=(time.time_ns(), VERIFIED_MTIME_NS))  # verified: see Store.has()
        try:
            os.replace(self.path, self.blob_path)
        except FileNotFoundError:  # first blob in its fan-out folder
            self.blob_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, self.blob_path)
        self.journal.unlink(missing_ok=True)
        self.close()
        return self.blob_path

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _resumable(self) -> set[int]:
        try:
            doc = json.loads(read_regular(self.journal, 1 << 20))
            size = os.stat(self.path).st_size
        except (OSError, ValueError):
            return set()
        r = self.record
        if not isinstance(doc, dict) or (doc.get("size"), doc.get("digest"), doc.get("part_size"), size) != (
                r.size, r.digest, self.part_size, r.size):
            return set()
        done = doc.get("done")
        if not isinstance(done, list):
            return set()
        return {i for i in done if isinstance(i, int) and 0 <= i < self.parts}


@dataclass(frozen=True)
class Leftover:
    """One blob's part-done file with its journal (and a journal's temp file, if a kill left one)."""

    name: str  # "<algorithm>-<hex>": what the files' names start with
    paths: tuple[str, ...]
    mtime: float  # the newest of the files': when a sync last wrote a part
    used: int  # disk space taken (allocated, not the sparse file's apparent size)


def leftovers(store: Store) -> list[Leftover]:
    """The part-done files in the store's ``tmp/``, grouped by blob, in name order."""
    groups: dict[str, list[tuple[str, os.stat_result]]] = {}
    for entry in _entries(store.tmp_dir):
        name, found, _ = entry.name.partition(SUFFIX)
        if not found:
            continue
        try:
            groups.setdefault(name, []).append((entry.path, entry.stat(follow_symlinks=False)))
        except FileNotFoundError:  # committed or removed since the listing
            continue
    return [Leftover(name, tuple(p for p, _ in files), max(st.st_mtime for _, st in files),
                     sum(allocated(st) for _, st in files)) for name, files in sorted(groups.items())]


def clean(store: Store, keep_s: float = KEEP_S, *, dry_run: bool = False) -> Freed:
    """Remove the part-done files no running sync holds and that were untouched for ``keep_s``
    (0: all of them); returns how many files and the space they took.

    The rule: a part-done file is kept for resuming for ``KEEP_S`` (a week) after its last
    write, while no sync holds it. An automatic prune passes ``KEEP_S``; an explicit `wbsync
    cache prune` passes 0, since it is what a full disk's message advises. "Held" is the blob's
    claim (wbsync.store.claims), which a sync holds for as long as it fetches that blob and the
    kernel drops when it dies; the claim is held here while the files are removed, so no sync
    can open them meanwhile."""
    cutoff = time.time() - keep_s
    found = [left for left in leftovers(store) if keep_s <= 0 or left.mtime < cutoff]
    if not found:
        return Freed()
    from wbsync.store.claims import Claims  # only a prune gets here: a no-op sync loads this module without it

    try:
        claims = Claims(store)
    except OSError:  # a store this user cannot write: nothing can be removed anyway
        return Freed()
    freed = Freed()
    for left in found:
        freed += _remove_unheld(claims, left, dry_run)
    return freed


def _remove_unheld(claims: Claims, left: Leftover, dry_run: bool) -> Freed:
    hexdigest = left.name.partition("-")[2]
    claimable = _HEX.fullmatch(hexdigest) is not None  # no fetcher makes another name: none can hold it
    if claimable and not claims.try_claim_hex(hexdigest):
        return Freed()  # a running sync is fetching this blob (or resuming it)
    try:
        removed = dry_run or _unlink_all(left.paths)
        return Freed(len(left.paths), left.used) if removed else Freed()
    finally:
        if claimable:
            claims.release_hex(hexdigest)


def _unlink_all(paths: tuple[str, ...]) -> bool:
    try:
        for path in paths:
            Path(path).unlink(missing_ok=True)
    except OSError:  # another user's store
        return False
    return True


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (not a symlink to one: a restored cache archive keeps links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
