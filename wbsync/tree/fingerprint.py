"""A no-op sync of a million files without loading the state: one fingerprint of the tree.

After a sync leaves every locked file as the state records it, wbsync writes
``.wbsync/fingerprint.json``: a hash over the lock (what each entry pins) and, in lock order, the
(size, mtime_ns, inode) the state recorded for each locked file, plus the identity of
``state.json`` itself. The next sync streams the locked files (inline, or from the stored
listing), stats each one and hashes the same way: equal means every file still has the stat
the state vouches for (exactly the test the full plan applies file by file), so the sync is a
no-op. Memory stays flat: no state, no plan, no per-file object kept. Anything else (a changed
file, lock, or state; a missing fingerprint) falls back to the full plan, which is always right.

The fingerprint also names what each entry pinned (``pins``), so that after a version move
``wbsync.tree.move`` can find the listing the tree was placed from and do only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from array import array
from pathlib import Path
from typing import Any, Callable

from wbsync.core.atomic import write_atomic
from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.core.safeio import read_regular
from wbsync.store.listing import ListingMissing, StoredFiles, iter_files
from wbsync.tree.state import STATE_DIR, Stat, State, state_identity

FORMAT = 2  # 2: the state's identity covers its delta; the entries' pins
_MISSING = (-1, -1, -1)
_BATCH = 4096  # stats packed per hash update


def fingerprint_path(root: Path) -> Path:
    return root / STATE_DIR / "fingerprint.json"


def unchanged(root: Path, lock: Lock) -> int | None:
    """The number of locked files when the tree is exactly as the last sync left it, else None."""
    try:
        doc = read(root)
        if doc is None or doc.get("lock") != lock_key(lock):
            return None
        digest, count = _tree_hash(root, lock, _stat_on_disk(root))
    except (OSError, ValueError, AttributeError, ListingMissing):
        return None
    return count if digest == doc.get("tree") else None


def read(root: Path) -> dict[str, Any] | None:
    """The fingerprint document, when there is one and the state is still the one it was
    recorded with (``tree``: the hash, ``lock``: ``lock_key``, ``pins``: ``pins``)."""
    try:
        doc = json.loads(read_regular(fingerprint_path(root), 1 << 20))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("state") != state_identity(root):
            return None
    except (OSError, ValueError):
        return None
    return doc


def record(root: Path, lock: Lock, state: State) -> None:
    """Write the fingerprint of what ``state`` (just saved) records for every locked file. Best
    effort: a file the state does not vouch for, or an unwritable folder, just means no fast path."""
    try:
        digest, _count = _tree_hash(root, lock, _stat_in_state(state, lock))
        _write(root, lock, digest)
    except (OSError, KeyError, ListingMissing):
        forget(root)


def record_stats(root: Path, lock: Lock, stats: array) -> None:
    """Write the fingerprint from the recorded (size, mtime, inode) of every locked file, in
    lock order, three items each: what the state (just saved) records, gathered by the caller."""
    h = hashlib.blake2b(digest_size=16)
    h.update(memoryview(stats).cast("B"))  # one stream: the same hash as _tree_hash's batches
    try:
        _write(root, lock, h.hexdigest())
    except OSError:
        forget(root)


def _write(root: Path, lock: Lock, tree: str) -> None:
    doc = {"format": FORMAT, "lock": lock_key(lock), "pins": pins(lock), "state": state_identity(root), "tree": tree}
    write_atomic(fingerprint_path(root), json.dumps(doc).encode())


def forget(root: Path) -> None:
    try:
        fingerprint_path(root).unlink(missing_ok=True)
    except OSError:
        pass


def lock_key(lock: Lock) -> str:
    """What the fingerprint depends on in the lock: each entry's name, path and pinned files."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(lock.artifacts):
        h.update(entry_key(name, lock.artifacts[name]).encode())
    return h.hexdigest()


def entry_key(name: str, art: LockedArtifact) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([name, art.path, art.resolved, art.digest]).encode())
    if isinstance(art.files, StoredFiles):
        f = art.files
        h.update(json.dumps(["stored", f.digest, f.include, f.exclude, f.count, f.bytes]).encode())
    else:
        for r in art.files:
            h.update(f"{r.path}\0{r.size}\0{r.algorithm}\0{r.digest}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def pins(lock: Lock) -> dict[str, Any]:
    """Per entry: its key, its path, and for a stored listing what finds and checks it again."""
    out: dict[str, Any] = {}
    for name, art in sorted(lock.artifacts.items()):
        f = art.files
        stored = ([art.resolved, f.digest, list(f.include), list(f.exclude), f.count, f.bytes]
                  if isinstance(f, StoredFiles) else None)
        out[name] = {"key": entry_key(name, art), "path": art.path, "stored": stored}
    return out


def _tree_hash(root: Path, lock: Lock, stat_of: Callable[[LockedArtifact, FileRecord], Stat]) -> tuple[str, int]:
    h = hashlib.blake2b(digest_size=16)
    batch = array("q")
    count = 0
    for name in sorted(lock.artifacts):
        art = lock.artifacts[name]
        for record in iter_files(art):
            batch.extend(stat_of(art, record))
            count += 1
            if len(batch) >= 3 * _BATCH:
                h.update(batch.tobytes())
                del batch[:]
    h.update(batch.tobytes())
    return h.hexdigest(), count


def _stat_on_disk(root: Path) -> Callable[[LockedArtifact, FileRecord], Stat]:
    base = f"{root}{os.sep}"
    lstat, isreg = os.lstat, stat.S_ISREG

    def of(art: LockedArtifact, record: FileRecord) -> Stat:
        try:
            st = lstat(f"{base}{art.path}/{record.path}")  # string concatenation: pathlib costs ~20 us a path
        except OSError:
            return _MISSING
        return (st.st_size, st.st_mtime_ns, st.st_ino) if isreg(st.st_mode) else _MISSING

    return of


def _stat_in_state(state: State, lock: Lock) -> Callable[[LockedArtifact, FileRecord], Stat]:
    def of(art: LockedArtifact, record: FileRecord) -> Stat:
        entry = state.entries[art.name]
        placed = entry.files[record.path]  # KeyError: the state does not vouch for it
        if entry.path != art.path or placed.digest != f"{record.algorithm}:{record.digest}":
            raise KeyError(record.path)
        return placed.stat[:3]  # size, mtime, inode (a device, where recorded, is not on the disk side)

    return of

