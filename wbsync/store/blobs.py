"""The content store: verified file contents, shared by every project on the machine.

Layout under the root (``default_store_dir()``)::

    blobs/<algorithm>/<hex[:2]>/<hex[2:]>    one read-only file per distinct content
    tmp/<hex[:16]>.<pid>.<token>.part         bytes arriving, each locked by its writer
    locks/<algorithm>-<hex>                   per-blob locks: fetch a blob once, not twice
    locks/store                               shared while syncing, exclusive for a prune
    locks/claims                              per-blob fetch claims, byte-range locks (wbsync.store.claims)
    tmp/<algorithm>-<hex>.ranged[.json]       a large blob arriving in parts (wbsync.store.partial)
    lockfiles/<sha256 of a lock's path>.json  lockfiles that synced here (wbsync.cache)
    CACHEDIR.TAG                              "a cache": backup tools skip the store (tag_cache_dir)

Invariants:

* A blob gets its name only once its size and digest matched the lock, by one atomic rename
  from ``tmp/`` (same filesystem). Its bytes are fsynced first only with ``WBSYNC_FSYNC=1``: a
  killed process needs no fsync, and on ext4 and XFS a blob whose data a power cut lost comes
  back with size 0, which ``has()`` (size) rejects; ``cache verify`` re-hashes.
* A blob is named with its mtime set to ``VERIFIED_MTIME_NS``, a fixed instant no write gives
  it. ``has()`` trusts a blob while its size and that mtime hold; one whose mtime moved
  (written to in place: a hardlinked project file edited as root, a tool, a "repair") is
  re-hashed before it is placed, linked or mirrored, and removed if its bytes are wrong, so it
  is fetched again. A restore that keeps mtimes (tar, ``actions/cache``) costs nothing; one
  that does not re-hashes each blob once, when it is next used. What this cannot see: a
  same-size write followed by resetting the mtime (root can); ``cache verify`` re-hashes all.
* Blobs are read-only (0o444). With hardlink placement the project file *is* the blob: an
  editor writing into it in place then fails loudly instead of silently corrupting the
  content every project shares.
* Correctness under concurrency comes from that atomic rename alone: two writers of the same
  blob both succeed, and the second rename replaces identical bytes. ``lock_blob()`` only
  saves bandwidth: the second fetcher waits, then finds ``has()`` true.
* The lock files under ``locks/`` are empty; a prune may delete them while it holds
  ``exclusive()``, since fetchers hold ``shared()``.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from wbsync.core import settings
from wbsync.core.atomic import write_atomic
from wbsync.core.digests import CHUNK_SIZE, b64, hash_file, hex_of, new_hasher
from wbsync.core.errors import IntegrityError
from wbsync.core.filelock import hold, locked
from wbsync.core.models import ALGORITHMS, Algorithm, FileRecord
from wbsync.core.safeio import NotRegularFile, open_regular
from wbsync.store.trust import blob_untrusted, check_store, folder_problem

BLOB_MODE = 0o444
CACHEDIR_TAG = "CACHEDIR.TAG"
_CACHEDIR_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                      "# This file is a cache directory tag created by wbsync: its content store.\n"
                      "# For information about cache directory tags, see https://bford.info/cachedir/\n")
# 2000-01-01T00:00:00Z: every verified blob's mtime. Whole seconds, so that archives that keep
# mtimes at one-second resolution (tar's ustar format) keep it too.
VERIFIED_MTIME_NS = 946_684_800 * 10**9
_REHASHED: set[str] = set()  # blobs of a shared store (or someone else's) re-hashed by this process
# Temp names: pid + a per-process random prefix + a counter (secrets.token_hex per blob showed
# up in profiles of 10,000-file syncs).
_TOKEN = secrets.token_hex(4)
_COUNTER = itertools.count()
# Both algorithms name a blob with 32 hex digits: 2 for the folder, 30 for the file.
_FAN_OUT = re.compile(r"[0-9a-f]{2}")
_REST = re.compile(r"[0-9a-f]{30}")


def _fsync_on() -> bool:
    """WBSYNC_FSYNC=1, read once per process (each blob asks)."""
    global _FSYNC
    if _FSYNC is None:
        _FSYNC = settings.flag("WBSYNC_FSYNC")
    return _FSYNC


_FSYNC: bool | None = None


def default_store_dir() -> Path:
    """``WBSYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/wbsync``, else the platform's cache folder."""
    override = os.environ.get("WBSYNC_CACHE_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "wbsync"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "wbsync"
    return Path.home() / ".cache" / "wbsync"


def blob_hex(record: FileRecord) -> str:
    """The record's digest in hex. Both parts of a blob's name come from remote metadata,
    so an unknown algorithm or a malformed digest is rejected, never joined into a path."""
    if record.algorithm not in ALGORITHMS:
        raise IntegrityError(f"{record.path}: unknown digest algorithm {record.algorithm!r}")
    try:
        return hex_of(record.digest)
    except ValueError as e:
        raise IntegrityError(f"{record.path}: unusable {record.algorithm} digest: {e}") from None


@dataclass(frozen=True)
class StoredBlob:
    """One blob as a scan of the store found it."""

    algorithm: Algorithm
    hex: str
    path: str  # not a pathlib.Path: a scan makes one per blob, and pathlib would double its cost
    size: int
    atime_ns: int  # last use: see wbsync.cache for who sets it
    nlinks: int  # above 1: hardlinked into a project too, so removing this name frees no disk

    @property
    def key(self) -> tuple[Algorithm, str]:
        return (self.algorithm, self.hex)


@dataclass(frozen=True)
class Freed:
    """What a cleanup removed: files, and the disk space they took (``allocated``)."""

    files: int = 0
    bytes: int = 0

    def plus(self, files: int, used: int) -> Freed:
        return Freed(self.files + files, self.bytes + used)

    def __add__(self, other: Freed) -> Freed:
        return self.plus(other.files, other.bytes)


def allocated(st: os.stat_result) -> int:
    """The disk space a file takes, not its apparent size: a part-done file of a download in
    ranges is sparse (sized in full, filled part by part), and it is the space that a full disk
    lacks. ``st_blocks`` counts 512-byte units on every POSIX system."""
    blocks: int | None = getattr(st, "st_blocks", None)  # absent on Windows only
    return st.st_size if blocks is None else blocks * 512


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.lockfiles_dir = self.root / "lockfiles"
        self._tagged = False
        self._shared: bool | None = None  # checked on first use (wbsync.store.trust)
        self._folders: dict[str, bool] = {}  # fan-out folder -> someone else could write into it

    def checked(self) -> bool:
        """Refuse a store someone else could write into (UntrustedStoreError, once per Store);
        returns whether it is shared on purpose (every blob then re-hashed before its first use)."""
        if self._shared is None:
            self._shared = check_store(self.root)
        return self._shared

    def blob_path(self, record: FileRecord) -> Path:
        return self.key_path(record.algorithm, blob_hex(record))

    def key_path(self, algorithm: Algorithm, hexdigest: str) -> Path:
        """The blob named by an already validated algorithm and hex digest."""
        return self.blobs_dir / algorithm / hexdigest[:2] / hexdigest[2:]

    def has(self, record: FileRecord) -> bool:
        """Whether the blob is present with the right bytes. Trusted by its size and its verified
        mtime (one stat); a blob whose mtime moved is re-hashed first, and removed if wrong."""
        shared = self.checked()
        path = self.blob_path(record)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if st.st_size != record.size:
            return False
        if st.st_mtime_ns == VERIFIED_MTIME_NS and not shared and not self._untrusted(path, st):
            return True
        if os.fspath(path) in _REHASHED:  # someone else's blob (or a shared store's): hashed once per process
            return True
        good = self.recheck(record, path)
        if good and (shared or self._untrusted(path, st)):
            _REHASHED.add(os.fspath(path))
        return good

    def _untrusted(self, path: Path, st: os.stat_result) -> bool:
        """A blob another user owns or could rewrite, or one in a folder they could write into."""
        if blob_untrusted(st):
            return True
        folder = os.fspath(path.parent)
        if folder not in self._folders:
            try:
                self._folders[folder] = any(folder_problem(os.lstat(f), False) is not None
                                            for f in (path.parent, path.parent.parent))
            except OSError:
                self._folders[folder] = True
        return self._folders[folder]

    def recheck(self, record: FileRecord, path: Path) -> bool:
        """Re-hash a blob that may have changed since it was verified: mark it verified again if
        its bytes are right, remove it (so that it is fetched again) if not."""
        try:
            good = hash_file(path, record.algorithm) == record.digest
        except OSError:
            return False
        try:
            if good:
                os.utime(path, ns=(time.time_ns(), VERIFIED_MTIME_NS))
            else:
                os.unlink(path)
        except OSError:  # another user's store, read-only: re-hashed again next time, or refetched
            pass
        return good

    def incoming(self, record: FileRecord) -> BlobWriter:
        """A writer for streaming this record's bytes in; use it as a context manager."""
        self.checked()
        return BlobWriter(record, self.tmp_dir, self.blob_path(record))

    def put_file(self, record: FileRecord, src: Path) -> Path:
        """Bring a local file in (a mirror's file, or one already in a project), verified."""
        with self.incoming(record) as writer, open(src, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                writer.write(chunk)
            return writer.commit()

    def lock_blob(self, record: FileRecord) -> AbstractContextManager[None]:
        """Exclusive per-blob lock. Re-check ``has()`` after taking it: another process may
        have fetched the blob while this one waited."""
        name = f"{record.algorithm}-{blob_hex(record)}"
        return locked(self._locks_dir() / name)

    def shared(self) -> AbstractContextManager[None]:
        """Held by anything that reads or adds blobs; many at once."""
        return locked(self._locks_dir() / "store", shared=True)

    def exclusive(self) -> AbstractContextManager[None]:
        """Held by a prune: waits until no sync holds ``shared()``."""
        return locked(self._locks_dir() / "store")

    @contextmanager
    def try_exclusive(self) -> Iterator[bool]:
        """``exclusive()`` if nobody holds ``shared()`` right now; yields whether it got it.
        For the prune after a sync, which must not make that sync wait for another one."""
        # 0600: no other user may open it to lock it.
        fd = open_regular(self._locks_dir() / "store", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            yield hold(fd, wait=False)
        finally:
            os.close(fd)  # closing releases the lock, if held

    def scan(self) -> Iterator[StoredBlob]:
        """Every blob, in no particular order. Names that are not blob names are skipped:
        they are not ours to count or to remove."""
        for algorithm in ALGORITHMS:
            for folder in _subdirs(self.blobs_dir / algorithm, _FAN_OUT):
                yield from _blobs_in(algorithm, folder)

    def clean_blob_locks(self) -> int:
        """Remove the per-blob lock files (one per blob ever fetched); returns how many.
        Only while holding ``exclusive()``: fetchers take them under ``shared()``."""
        removed = 0
        for entry in _entries(self.locks_dir):
            # "store" and "claims" (wbsync.store.claims) are held open by live processes: keep them.
            if entry.name not in ("store", "claims") and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed

    def clean_tmp(self, min_age_s: float = 60.0) -> int:
        """Remove temp files whose writer is gone; returns how many (``sweep_tmp`` says more)."""
        return self.sweep_tmp(min_age_s).files

    def sweep_tmp(self, min_age_s: float = 60.0, *, dry_run: bool = False) -> Freed:
        """Remove temp files whose writer is gone: how many, and the disk space they took.

        A writer holds a flock on its temp file from creation until commit or discard, and
        the kernel drops it when the process dies, so a free lock marks a leftover of a killed
        process (a PID in the name could be reused, or live in another container's PID
        namespace). Files modified in the last ``min_age_s`` are kept: that covers the instant
        between a writer creating its file and locking it. ``dry_run``: count, remove nothing.
        """
        cutoff = time.time() - min_age_s
        freed = Freed()
        for entry in _entries(self.tmp_dir):
            if entry.name.endswith(".part"):
                used = _remove_if_abandoned(entry.path, cutoff, dry_run)
                if used is not None:
                    freed = freed.plus(1, used)
        return freed

    def _locks_dir(self) -> Path:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        if not self._tagged:  # every sync, prune and fetch takes a lock here before writing the store
            tag_cache_dir(self.root)
            self._tagged = True  # tried once: a store this user cannot write is not retried per blob
        return self.locks_dir


def tag_cache_dir(root: Path) -> bool:
    """Mark ``root`` as a cache with a ``CACHEDIR.TAG`` (https://bford.info/cachedir/), so that
    backup tools (tar --exclude-caches, borg, restic --exclude-caches) skip what can be fetched
    again. Whether the tag is there now; best effort: a store this user cannot write stays untagged."""
    path = root / CACHEDIR_TAG
    if path.exists():
        return True
    try:
        write_atomic(path, _CACHEDIR_TAG_TEXT.encode())
    except OSError:
        return False
    return True


def store_elsewhere(store: Store, project_root: Path, link_mode: str) -> str | None:
    """A warning when the store is on another filesystem than the project while the link mode
    would link (hardlink) or clone (auto, reflink): neither crosses filesystems, so each file is
    a full copy. None otherwise, or when it cannot tell."""
    if link_mode not in ("auto", "hardlink", "reflink"):
        return None
    try:
        store_dev = _existing(store.root).stat().st_dev
        if store_dev == project_root.stat().st_dev:
            return None
    except OSError:
        return None
    links = "hardlinks" if link_mode == "hardlink" else "reflinks (copy-on-write clones)"
    return (f"the content store {store.root} is on another filesystem than this project ({project_root}): "
            f"{links} cannot cross filesystems, so every file is placed as a full copy. To share the disk "
            "space, set WBSYNC_CACHE_DIR to a folder on the project's filesystem.")


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent (a store not created yet goes there)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def _subdirs(folder: Path, name: re.Pattern[str]) -> Iterator[os.DirEntry[str]]:
    for entry in _entries(folder):
        if name.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            yield entry


def _blobs_in(algorithm: Algorithm, folder: os.DirEntry[str]) -> Iterator[StoredBlob]:
    for entry in _entries(Path(folder.path)):
        if not _REST.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed since the listing
            continue
        yield StoredBlob(algorithm, folder.name + entry.name, entry.path, st.st_size, st.st_atime_ns,
                         st.st_nlink)


def _remove_if_abandoned(path: str, cutoff: float, dry_run: bool = False) -> int | None:
    """The disk space freed by removing ``path``, or None when it was kept."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (FileNotFoundError, NotRegularFile):  # committed or discarded meanwhile; a FIFO is never opened
        return None
    try:
        st = os.fstat(fd)
        if st.st_mtime >= cutoff or not hold(fd, wait=False):
            return None
        # Unlink by name while holding the lock: if the writer committed in between, the
        # name is gone (FileNotFoundError) and the blob, a different name, is untouched.
        if not dry_run:
            os.unlink(path)
        return allocated(st)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)


class BlobWriter:
    """Streams one file's bytes into the store: hashed as they arrive, named once verified.

    ::

        with store.incoming(record) as writer:
            for chunk in response:
                writer.write(chunk)
            # Connection dropped? Request "Range: bytes={writer.offset}-" and write() on.
            # Server ignored the Range (200, not 206)? writer.reset() and start over.
            writer.commit()

    Leaving the block without ``commit()`` (an error, an interrupt) deletes the temp file.
    """

    def __init__(self, record: FileRecord, tmp_dir: Path, blob_path: Path) -> None:
        self.record = record
        self.blob_path = blob_path
        self.offset = 0  # bytes received so far, all hashed and written
        token = f"{os.getpid()}.{_TOKEN}{next(_COUNTER):x}"
        self.temp_path = tmp_dir / f"{blob_path.parent.name}{blob_path.name[:14]}.{token}.part"
        self._hasher = new_hasher(record.algorithm)
        self._file: BinaryIO | None = None
        self._committed = False

    def __enter__(self) -> BlobWriter:
        # Created read-only: the mode binds later opens only, this descriptor stays writable,
        # and the blob needs no fchmod before its rename.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = open_regular(self.temp_path, flags, BLOB_MODE)
        except FileNotFoundError:  # the store's first download: one mkdir, not one per blob
            self.temp_path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_regular(self.temp_path, flags, BLOB_MODE)
        self._file = os.fdopen(fd, "wb")
        hold(self._file.fileno())  # a fresh file: nobody else holds it, no wait
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._committed:
            self._discard()

    def write(self, data: bytes | memoryview) -> None:
        f = self._open_file()
        if self.offset + len(data) > self.record.size:
            raise IntegrityError(
                f"{self.record.path}: received more than the {self.record.size} bytes the lock "
                "records; the bytes were discarded."
            )
        f.write(data)
        self._hasher.update(data)
        self.offset += len(data)

    def reset(self) -> None:
        """Drop the bytes received so far, to start again from offset 0."""
        f = self._open_file()
        f.seek(0)
        f.truncate()
        self._hasher = new_hasher(self.record.algorithm)
        self.offset = 0

    def commit(self) -> Path:
        """Check size and digest; if they match, give the bytes their blob name."""
        f = self._open_file()
        got = b64(self._hasher)
        if self.offset != self.record.size or got != self.record.digest:
            self._discard()
            raise IntegrityError(self._mismatch(got))
        f.flush()
        # The store trusts a blob by its name and size. A kill -9 needs no fsync (the page cache
        # survives the process). After a power loss, ext4 and XFS (delayed allocation) show a
        # blob whose data never reached the disk with a size of 0, which has() rejects; an fsync
        # per blob cost ~0.5 ms, as much as the download of a 4 KiB file. WBSYNC_FSYNC=1 buys
        # the stronger guarantee for filesystems without that behaviour; `cache verify` re-hashes.
        if _fsync_on():
            os.fsync(f.fileno())
        os.utime(f.fileno(), ns=(time.time_ns(), VERIFIED_MTIME_NS))  # see has()
        try:
            os.replace(self.temp_path, self.blob_path)
        except FileNotFoundError:  # first blob in its fan-out folder: one mkdir, not one per blob
            self.blob_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.temp_path, self.blob_path)
        # Close (releasing the lock) only after the rename, so clean_tmp never sees the
        # temp file unlocked while it still matters.
        self._close()
        self._committed = True
        return self.blob_path

    def _mismatch(self, got: str) -> str:
        r = self.record
        return (
            f"{r.path}: received {self.offset} bytes with {r.algorithm} digest {got}, "
            f"but the lock records {r.size} bytes with digest {r.digest}; the bytes were discarded."
        )

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise RuntimeError("use a BlobWriter inside `with store.incoming(record)`, once")
        return self._file

    def _discard(self) -> None:
        self.temp_path.unlink(missing_ok=True)
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
