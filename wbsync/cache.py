"""The store's lifecycle: which lockfiles use it, what a prune removes, re-hashing every blob.

The store (wbsync.store.blobs) is a cache: any blob can be fetched again. W&B users report caches of
400 GB and 1.6 TB with only a cleanup by hand (wandb#2690, #8781), so a prune removes, in order:

1. every blob that no existing lockfile names. Each sync registers its lockfile under
   ``<store>/lockfiles/``; a prune reads each registered lockfile as it is on disk now. One that
   is gone, or no longer parses, protects nothing.
2. then, only while the store alone holds more than the max size, the least recently used
   blobs, oldest first, even ones a lockfile names: a later sync fetches them again if needed.

"Held by the store alone" leaves out blobs hardlinked into a project (``st_nlink > 1``): the
project needs those bytes anyway, so they cost the store nothing, and removing their name frees
no disk. They count in the store's size but never against the budget, and are never evicted.

"Last used" is the blob's atime. A sync that places files sets it explicitly for every blob its
lock names (a version move of a large entry, only for the blobs it placed: touching a million
blobs for 10,000 new files would make the move cost what a full sync does), with the mtime
untouched, so hardlinked project files stay trusted by their recorded stat;
which works on ``noatime`` mounts and for link modes that never read the blob (reflink,
hardlink); reads (copies, training code reading a hardlinked file) may advance it too.

Every removal happens under ``store.exclusive()``; syncs hold ``store.shared()`` from their
first ``has()`` to their last placement, so no blob disappears under a running sync.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wbsync.core.atomic import write_atomic
from wbsync.core.digests import hash_file, hex_of
from wbsync.core.errors import IntegrityError, LockfileError
from wbsync.core.models import Algorithm, Lock
from wbsync.core.safeio import PROJECT_FILE_LIMIT, read_regular
from wbsync.core.text import parse_size
from wbsync.repo.lockfile import read_lock
from wbsync.store import partial
from wbsync.store.blobs import Freed, Store, StoredBlob, allocated, blob_hex
from wbsync.store.listing import StoredFiles, has_listing, iter_files

MAX_SIZE_ENV = "WBSYNC_CACHE_MAX_SIZE"
BlobKey = tuple[Algorithm, str]  # (algorithm, hex digest): a blob's name

# -- the size limit

def configured_max_size() -> int | None:
    """``WBSYNC_CACHE_MAX_SIZE``, in bytes; None when unset or empty."""
    text = os.environ.get(MAX_SIZE_ENV, "").strip()
    return parse_size(text, MAX_SIZE_ENV) if text else None


# -- which lockfiles use the store


@dataclass(frozen=True)
class KnownLock:
    """A registration: ``<store>/lockfiles/<sha256 of path>.json``."""

    path: str  # the lockfile's real path
    sha256: str  # of its bytes when it was registered
    last_used: str  # ISO 8601 UTC: first registration, a change of its bytes, or a sync that placed files
    record: Path


@dataclass(frozen=True)
class LockUse:
    """A registered lockfile as it is on disk now, and the blobs it names."""

    known: KnownLock
    exists: bool
    valid: bool
    keys: frozenset[BlobKey] = frozenset()
    listings: frozenset[str] = frozenset()  # artifact digests of its large entries' stored file lists


def register_lock(store: Store, lock_path: Path, lock: Lock, *, used: bool,
                  placed: Iterable[BlobKey] | None = None) -> bool:
    """Tell the store that ``lock_path`` needs ``lock``'s blobs; returns whether it wrote anything.

    Every sync but a dry run calls this, no-op ones included: a project that only no-op syncs
    (synced before registration existed, or moved) must still protect its blobs. Cheap then:
    hash one small file, read one smaller one, write nothing while the lock's bytes are the same.
    ``used`` (the sync places files) also refreshes ``last_used`` and the blobs' atime: of
    every blob the lock names, or only of ``placed`` when given.
    Best effort: an unwritable store costs at most a re-download after a prune, never a sync.
    """
    try:
        real = os.path.realpath(lock_path)
        digest = hashlib.sha256(read_regular(real, PROJECT_FILE_LIMIT)).hexdigest()
        record = store.lockfiles_dir / f"{hashlib.sha256(real.encode()).hexdigest()}.json"
        if not used and _recorded_sha256(record) == digest:
            return False
        doc = {"path": real, "sha256": digest, "last_used": _now_iso()}
        write_atomic(record, json.dumps(doc, indent=1, sort_keys=True).encode())
        if used:
            mark_used(store, iter_keys(lock) if placed is None else placed)
        return True
    except OSError:
        return False


def _recorded_sha256(record: Path) -> str | None:
    known = _read_record(record)
    return known.sha256 if known else None


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def mark_used(store: Store, keys: Iterable[BlobKey]) -> None:
    """Set the blobs' atime to now, keeping their mtime (hardlinked project files are trusted by
    their recorded size, mtime and inode; ctime is not part of that)."""
    now = time.time_ns()
    root = os.fspath(store.blobs_dir)
    for algorithm, hexdigest in keys:
        path = f"{root}/{algorithm}/{hexdigest[:2]}/{hexdigest[2:]}"  # not pathlib: 10,000s of them
        try:
            os.utime(path, ns=(now, os.stat(path).st_mtime_ns))
        except OSError:  # not fetched yet (a fresh blob's atime is now anyway), or another user's
            continue


def needed_keys(lock: Lock) -> set[BlobKey]:
    return set(iter_keys(lock))


def iter_keys(lock: Lock) -> Iterator[BlobKey]:
    """The blobs ``lock`` names, streamed (a repeat now and then: no set of a million keys)."""
    for artifact in lock.artifacts.values():
        if isinstance(artifact.files, StoredFiles) and not has_listing(artifact.files.digest):
            continue  # not fetched on this machine: it holds none of its blobs either
        for record in iter_files(artifact):
            try:
                yield record.algorithm, blob_hex(record)
            except IntegrityError:  # a malformed digest names no blob
                continue


def known_locks(store: Store) -> list[KnownLock]:
    found = (_read_record(p) for p in _record_files(store))
    return sorted((k for k in found if k is not None), key=lambda k: k.path)


def _record_files(store: Store) -> list[Path]:
    try:
        return sorted(store.lockfiles_dir.glob("*.json"))
    except OSError:
        return []


def _read_record(record: Path) -> KnownLock | None:
    try:
        doc = json.loads(read_regular(record, 1 << 20))  # a record is ~200 bytes
        return KnownLock(str(doc["path"]), str(doc["sha256"]), str(doc["last_used"]), record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def survey(store: Store) -> list[LockUse]:
    """Read every registered lockfile as it is now."""
    return [_use(known) for known in known_locks(store)]


def _use(known: KnownLock) -> LockUse:
    try:
        lock = read_lock(known.path)
    except LockfileError:  # edited by hand, a merge conflict, unreadable: it protects nothing
        return LockUse(known, exists=True, valid=False)
    if lock is None:
        return LockUse(known, exists=False, valid=False)
    listings = frozenset(a.files.digest for a in lock.artifacts.values() if isinstance(a.files, StoredFiles))
    return LockUse(known, exists=True, valid=True, keys=frozenset(needed_keys(lock)), listings=listings)


# -- deciding what a prune removes (pure)


@dataclass(frozen=True)
class PrunePlan:
    unreferenced: tuple[StoredBlob, ...]  # no existing lockfile names them
    evicted: tuple[StoredBlob, ...]  # named, but least recently used while over the budget

    @property
    def freed_bytes(self) -> int:
        """Disk actually released: a hardlinked blob's bytes stay, under the project's name."""
        return held_bytes((*self.unreferenced, *self.evicted))


def held_bytes(blobs: Iterable[StoredBlob]) -> int:
    """Bytes the store alone holds: what the max size limits."""
    return sum(b.size for b in blobs if b.nlinks == 1)


def plan_prune(blobs: Iterable[StoredBlob], needed: set[BlobKey], max_size: int | None) -> PrunePlan:
    blobs = list(blobs)
    kept = [b for b in blobs if b.key in needed]
    unreferenced = tuple(b for b in blobs if b.key not in needed)
    return PrunePlan(unreferenced, _over_budget(kept, max_size))


def _over_budget(blobs: list[StoredBlob], max_size: int | None) -> tuple[StoredBlob, ...]:
    """Least recently used first (the path breaks ties, for a stable order) until under budget."""
    if max_size is None:
        return ()
    excess = held_bytes(blobs) - max_size
    evicted: list[StoredBlob] = []
    for blob in sorted((b for b in blobs if b.nlinks == 1), key=lambda b: (b.atime_ns, b.path)):
        if excess <= 0:
            break
        evicted.append(blob)
        excess -= blob.size
    return tuple(evicted)


def _needed(uses: Iterable[LockUse]) -> set[BlobKey]:
    return set().union(*(u.keys for u in uses))


# -- pruning


@dataclass
class PruneResult:
    max_size: int | None
    dry_run: bool
    plan: PrunePlan
    locks: list[LockUse]
    remaining: list[StoredBlob]  # the blobs left (or that would be left)
    failed: int = 0  # removals the OS refused (e.g. a store folder of another user)
    tmp_files: int = 0  # leftover temp files of killed syncs and part-done files, removed
    tmp_bytes: int = 0  # the disk space those took (allocated: part-done files are sparse)
    listings: list[StoredListing] = field(default_factory=list)  # file lists no lockfile names: removed

    @property
    def forgotten(self) -> list[str]:
        """Registered lockfiles that no longer exist: their registrations are deleted."""
        return [u.known.path for u in self.locks if not u.exists]

    @property
    def invalid(self) -> list[str]:
        return [u.known.path for u in self.locks if u.exists and not u.valid]


def prune(store: Store, max_size: int | None, *, dry_run: bool = False,
          on_wait: Callable[[], None] | None = None) -> PruneResult:
    """Remove what no existing lockfile needs, then least recently used blobs while over
    ``max_size``. Waits for running syncs (``on_wait`` is told first). A dry run takes no lock:
    it changes nothing, and must not wait behind a long sync."""
    if dry_run:
        return _prune(store, max_size, dry_run=True, keep_s=0)
    with _exclusive(store, on_wait):
        return _prune(store, max_size, dry_run=False, keep_s=0)


def auto_prune(store: Store) -> PruneResult | None:
    """After a sync: prune when ``WBSYNC_CACHE_MAX_SIZE`` is set and the store alone holds more.
    Never waits: while another sync runs, this one leaves the prune to a later sync."""
    max_size = configured_max_size()
    if max_size is None or held_bytes(store.scan()) <= max_size:
        return None
    with store.try_exclusive() as got:
        return _prune(store, max_size, dry_run=False, keep_s=partial.KEEP_S) if got else None


@contextmanager
def _exclusive(store: Store, on_wait: Callable[[], None] | None) -> Iterator[None]:
    with store.try_exclusive() as got:
        if got:
            yield
            return
    if on_wait is not None:
        on_wait()
    with store.exclusive():
        yield


def _prune(store: Store, max_size: int | None, *, dry_run: bool, keep_s: float) -> PruneResult:
    """``keep_s``: how long part-done large files are kept for a resume (wbsync.store.partial's
    rule: a week for an automatic prune, 0 for `wbsync cache prune`; never while a sync holds them)."""
    uses = survey(store)
    blobs = list(store.scan())
    plan = plan_prune(blobs, _needed(uses), max_size)
    gone = {b.path for b in (*plan.unreferenced, *plan.evicted)}
    result = PruneResult(max_size, dry_run, plan, uses, [b for b in blobs if b.path not in gone])
    result.listings = unneeded_listings(store, uses)
    if dry_run:
        result.tmp_files, result.tmp_bytes = astuple(_sweep(store, keep_s, dry_run=True))
        return result
    result.failed = sum(not _unlink(b.path) for b in (*plan.unreferenced, *plan.evicted))
    result.failed += sum(not _unlink(listing.path) for listing in result.listings)
    result.tmp_files, result.tmp_bytes = astuple(_sweep(store, keep_s, dry_run=False))
    store.clean_blob_locks()
    _forget_missing(store)
    return result


def _sweep(store: Store, keep_s: float, *, dry_run: bool) -> Freed:
    """Temp files of killed writers, then part-done large files (partial.clean: the rule)."""
    return store.sweep_tmp(dry_run=dry_run) + partial.clean(store, keep_s, dry_run=dry_run)


@dataclass(frozen=True)
class StoredListing:
    path: str
    size: int


#: A listing younger than this is kept even if no registered lockfile names it yet: a sync
#: fetches its listings before it registers its lock (and before it holds the store's lock).
LISTING_GRACE_S = 3600
_LISTING_NAME = re.compile(r"[0-9a-f]{32}|\.[0-9a-f]{32}\.\d+\.\d+\.tmp")


def unneeded_listings(store: Store, uses: Iterable[LockUse]) -> list[StoredListing]:
    """Stored file lists (and temp files of killed writers) that no existing lockfile names,
    older than ``LISTING_GRACE_S``: the listings' share of a prune."""
    named = set().union(*(u.listings for u in uses))
    folder = store.root / "listings"
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    old = time.time() - LISTING_GRACE_S
    found = []
    for entry in sorted(entries, key=lambda e: e.name):
        if not _LISTING_NAME.fullmatch(entry.name) or entry.name in named:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_mtime < old:
            found.append(StoredListing(entry.path, st.st_size))
    return found


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:  # a concurrent verify or prune was faster
        pass
    except OSError:
        return False
    return True


def _forget_missing(store: Store) -> None:
    """Delete registrations of lockfiles that no longer exist (and unreadable registrations)."""
    for record in _record_files(store):
        known = _read_record(record)
        if known is None or not os.path.lexists(known.path):
            record.unlink(missing_ok=True)


# -- cache info


@dataclass(frozen=True)
class CacheInfo:
    root: Path
    blobs: list[StoredBlob]
    locks: list[LockUse]
    max_size: int | None
    tmp_files: int
    tmp_bytes: int  # the space they take on disk (allocated), not their apparent size
    would: PrunePlan  # what `wbsync cache prune` would remove now (with max_size)
    would_tmp: Freed = Freed()  # ... and of the temp files: those no running sync holds


def cache_info(store: Store, max_size: int | None) -> CacheInfo:
    """A snapshot; takes no lock, so a running sync or prune may change it meanwhile."""
    uses = survey(store)
    blobs = list(store.scan())
    tmp = _tmp_sizes(store)
    return CacheInfo(store.root, blobs, uses, max_size, len(tmp), sum(tmp),
                     plan_prune(blobs, _needed(uses), max_size), _sweep(store, 0, dry_run=True))


def _tmp_sizes(store: Store) -> list[int]:
    try:
        entries = list(os.scandir(store.tmp_dir))
    except FileNotFoundError:
        return []
    sizes = []
    for entry in entries:
        try:
            sizes.append(allocated(entry.stat(follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return sizes


# -- cache verify


@dataclass(frozen=True)
class StoreCheck:
    checked: list[StoredBlob] = field(default_factory=list)
    corrupt: list[StoredBlob] = field(default_factory=list)  # removed


def verify_store(store: Store, jobs: int = 4, on_wait: Callable[[], None] | None = None) -> StoreCheck:
    """Re-hash every blob; remove those whose bytes no longer match their name.

    Hashing takes no lock (a 1 TB store must not stop every sync for an hour); only the removal
    does, and it re-hashes each suspect first, in case a sync replaced it meanwhile.
    """
    blobs = list(store.scan())
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="wbsync-verify") as pool:
        verdicts = list(pool.map(_intact, blobs))
    checked = [b for b, ok in zip(blobs, verdicts) if ok is not None]
    suspects = [b for b, ok in zip(blobs, verdicts) if ok is False]
    if not suspects:
        return StoreCheck(checked)
    with _exclusive(store, on_wait):
        corrupt = [b for b in suspects if _intact(b) is False and _unlink(b.path)]
    return StoreCheck(checked, corrupt)


def _intact(blob: StoredBlob) -> bool | None:
    """Whether the blob's bytes match its name; None when it is gone (a prune removed it)."""
    try:
        return hex_of(hash_file(blob.path, blob.algorithm)) == blob.hex
    except FileNotFoundError:
        return None
    except OSError:  # unreadable (EIO, permissions): no sync can place it, so it counts as corrupt
        return False
