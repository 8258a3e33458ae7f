"""A version move of a large entry, done in proportion to what changed.

After ``wbsync lock --upgrade`` moves a million-file dataset to a version where 1% of the
files differ, the full plan would load the whole state (a million records), build an action
per file, and record the state again whole: minutes and gigabytes for 10,000 files. This
module plans such a sync from what the last sync left instead:

* the fingerprint (``wbsync.tree.fingerprint``) names, per entry, what the tree was placed from:
  for a large entry, the stored listing of the version it had;
* the old and new listings of each moved entry are merged as they stream (both in path
  order): a path in both with the same digest is kept, one with another digest or only in the
  new listing is placed, one only in the old listing is removed;
* while merging, every file of the old tree is stat'ed and hashed as the fingerprint was:
  equal means every file is still exactly the one the state records (the test the full plan
  applies file by file), so kept files need no action and no record;
* the state gets a delta (``wbsync.tree.state``) with only the placed and removed files, and the
  fingerprint of the new tree is computed from the stats gathered on the way (24 bytes a file).

Anything it cannot vouch for (a touched file, an entry added, removed, renamed or small and
changed, a new path where something already stands, a listing no longer in the store, a delta
grown large) makes ``plan_move`` answer None: the caller then runs the full plan, which is
always right.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbsync.core.errors import IntegrityError
from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.decide.plan import EntryPlan, FileAction, Plan, Stale, dest_of, digest_key
from wbsync.store.blobs import blob_hex
from wbsync.store.listing import ListingMissing, StoredFiles, iter_files
from wbsync.tree import fingerprint
from wbsync.tree.place import _path_problem
from wbsync.tree.state import Delta, PlacedFile, Stat, delta_max, delta_size, observe

_UNSET = (0, 0, 0)  # a placed file's slot in the stats, filled once it is staged


@dataclass
class Move:
    plan: Plan  # moved entries carry place and remove only; kept files are not listed
    stats: array  # (size, mtime, inode) of every locked file in lock order: the new fingerprint
    slots: list[int]  # per place action of the plan (in plan order): its index in ``stats``

    complete: bool = False  # every placed file's slot is filled: ``stats`` is the new tree's

    def blob_keys(self) -> Iterator[tuple[str, str]]:
        """The blobs this move places (their atime marks them used: ``wbsync.cache``)."""
        for entry in self.plan.entries:
            for action in entry.place:
                try:
                    yield action.record.algorithm, blob_hex(action.record)
                except IntegrityError:
                    continue

    def delta(self, staged: list[Stat | None]) -> Delta:
        """The state's changes once the swap is done, given the stat of each staged file (in
        plan order); fills their slots in ``stats``."""
        delta: Delta = {}
        self.complete = True
        answers = iter(zip(self.slots, staged))
        for entry in self.plan.entries:
            if not entry.changes:
                continue
            files: dict[str, PlacedFile | None] = {p[len(entry.artifact.path) + 1:]: None for p, _ in entry.remove}
            for action in entry.place:
                slot, stat = next(answers)
                if stat is None:  # not recorded: the next sync re-hashes it
                    self.complete = False
                    continue
                self.stats[3 * slot:3 * slot + 3] = array("q", stat[:3])
                files[action.record.path] = PlacedFile(stat, digest_key(action.record))
            delta[entry.name] = (entry.artifact.path, files)
        return delta


def candidate(root: Path, lock: Lock) -> bool:
    """Cheap (no file stat'ed): whether the last sync's fingerprint shows a version move
    ``plan_move`` may handle. A sync asks this before building the full plan it would build
    only to find out that there is work."""
    doc = fingerprint.read(root)
    return doc is not None and _moved(doc, lock) is not None


def plan_move(root: Path, lock: Lock) -> Move | None:
    """The plan of a version move, when every file of the tree is as the last sync left it;
    else None. The caller holds the project lock."""
    doc = fingerprint.read(root)
    moved = None if doc is None else _moved(doc, lock)
    if doc is None or moved is None:
        return None
    try:
        return _Merge(root, lock, moved, doc["tree"]).run()
    except (ListingMissing, IntegrityError, _Decline, OSError):
        return None


class _Decline(Exception):
    """Something the move cannot vouch for: the full plan decides."""


def _moved(doc: dict[str, Any], lock: Lock) -> dict[str, StoredFiles] | None:
    """The moved entries and the listing each had, when the move is one this module handles."""
    pins = doc.get("pins")
    if not isinstance(pins, dict) or sorted(pins) != sorted(lock.artifacts):
        return None
    moved: dict[str, StoredFiles] = {}
    try:
        for name, art in lock.artifacts.items():
            pin = pins[name]
            if pin["key"] == fingerprint.entry_key(name, art):
                continue
            old = pin["stored"]
            if pin["path"] != art.path or old is None or not isinstance(art.files, StoredFiles):
                return None
            resolved, digest, include, exclude, count, size = old
            moved[name] = StoredFiles(name, resolved, digest, tuple(include), tuple(exclude), count, size)
    except (KeyError, TypeError, ValueError):
        return None
    return moved or None  # none moved: the no-op fast path's case (or a touched tree's)


class _Merge:
    """One pass over the tree: the old tree's hash (checked against the fingerprint), the new
    tree's stats, and the actions of the moved entries."""

    def __init__(self, root: Path, lock: Lock, moved: dict[str, StoredFiles], tree: str) -> None:
        self.root, self.prefix = root, f"{root}{os.sep}"
        self.lock, self.moved, self.tree = lock, moved, tree
        self.old_hash = hashlib.blake2b(digest_size=16)
        self.old_batch = array("q")
        self.stats = array("q")
        self.slots: list[int] = []

    def run(self) -> Move:
        entries = []
        for name in sorted(self.lock.artifacts):
            art = self.lock.artifacts[name]
            if name in self.moved:
                entries.append(self._merge(art, self.moved[name]))
            else:
                for record in iter_files(art):
                    self._kept(self._stat(art.path, record))
                entries.append(EntryPlan(name, art))
        self.old_hash.update(self.old_batch)
        if self.old_hash.hexdigest() != self.tree:
            raise _Decline("a file changed since the last sync")
        if delta_size(self.root) + sum(len(e.place) + len(e.remove) for e in entries) > delta_max():
            raise _Decline("the state's delta would grow past its bound")
        return Move(Plan(tuple(entries)), self.stats, self.slots)

    def _merge(self, art: LockedArtifact, old: StoredFiles) -> EntryPlan:
        place: list[FileAction] = []
        remove: list[Stale] = []
        olds, news = iter(old), iter_files(art)
        o, n = next(olds, None), next(news, None)
        while o is not None or n is not None:
            if n is None or (o is not None and o.path < n.path):  # no longer locked: remove
                assert o is not None
                dest = dest_of(art.path, o.path)
                if _path_problem(dest) is not None:  # the full plan refuses it, with the reason
                    raise _Decline("an unsafe path")
                seen = self._full_stat(art.path, o)
                self._hashed(seen)
                remove.append((dest, PlacedFile(seen, digest_key(o))))
                o = next(olds, None)
            elif o is None or n.path < o.path:  # new in this version: nothing may stand there
                if observe(self.prefix + dest_of(art.path, n.path)) is not None:
                    raise _Decline("something stands where a new file goes")
                self._placed(art, n, place)
                n = next(news, None)
            else:
                seen = self._stat(art.path, o)
                self._hashed(seen)
                if digest_key(o) == digest_key(n):
                    self.stats.extend(seen)
                else:  # wbsync's own file (the hash vouches), of the old version: replaced
                    self._placed(art, n, place)
                o, n = next(olds, None), next(news, None)
        return EntryPlan(art.name, art, place=tuple(place), remove=tuple(remove))

    def _placed(self, art: LockedArtifact, record: FileRecord, place: list[FileAction]) -> None:
        self.slots.append(len(self.stats) // 3)
        self.stats.extend(_UNSET)
        place.append(FileAction(art.name, art.path, record))

    def _kept(self, seen: Stat) -> None:
        self._hashed(seen)
        self.stats.extend(seen)

    def _hashed(self, seen: Stat) -> None:
        batch = self.old_batch
        batch.extend(seen[:3])
        if len(batch) >= 3 * 4096:
            self.old_hash.update(batch)
            del batch[:]

    def _stat(self, base: str, record: FileRecord) -> Stat:
        return self._full_stat(base, record)[:3]

    def _full_stat(self, base: str, record: FileRecord) -> Stat:
        try:
            st = os.lstat(f"{self.prefix}{base}/{record.path}")
        except OSError:
            raise _Decline("a locked file is missing") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise _Decline("a locked path is not a regular file")
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

