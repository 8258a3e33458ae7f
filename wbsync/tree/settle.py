"""Settle what a plan left in doubt, on disk, before a sync changes anything.

The plan trusts a file only while the state vouches for it; ``settle`` re-hashes the others
and decides, by the ownership rules (wbsync.tree.ownership), which are kept, which restored
and which are conflicts. ``decide_removals`` decides which files wbsync placed earlier it may
still remove.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Iterable

from wbsync.core.digests import hash_file
from wbsync.core.placed import same_file, untouched
from wbsync.decide.plan import EntryPlan, FileAction, Stale, digest_key
from wbsync.tree.ownership import Conflict, conflict_error, may_remove
from wbsync.tree.state import PlacedFile, Stat, stat_of


@dataclass
class Settled:
    entries: list[EntryPlan] = field(default_factory=list)  # the plan's, none left to check or blocked
    restored: list[str] = field(default_factory=list)  # wbsync's files edited in place: put back
    replaced: list[str] = field(default_factory=list)  # others' files replaced (`--force`)
    adopted: dict[str, PlacedFile] = field(default_factory=dict)  # dest -> new record, for files re-hashed and kept


@dataclass
class Removals:
    removes: list[tuple[str, Stat]] = field(default_factory=list)  # (dest, its stat now)
    kept_modified: list[str] = field(default_factory=list)  # placed files edited since: not removed
    kept_not_placed: list[str] = field(default_factory=list)  # recorded, but another file stands there now


def settle(root: Path, entries: Iterable[EntryPlan], *, jobs: int, force: bool) -> Settled:
    """Re-hash the files the state does not vouch for and refuse the conflicts (all of them at
    once); with ``force``, the forceable ones are replaced instead."""
    settled = Settled()
    conflicts: list[Conflict] = []
    settled.entries = [_settle(root, e, settled, conflicts, jobs=jobs, force=force) for e in entries]
    refused = [c for c in conflicts if not (force and c.forceable)]
    if refused:
        raise conflict_error(refused, force)
    settled.replaced = [c.dest for c in conflicts]
    return settled


def _settle(root: Path, entry: EntryPlan, settled: Settled, conflicts: list[Conflict], *, jobs: int,
            force: bool) -> EntryPlan:
    """Files on disk that the state does not vouch for: re-hash. The locked bytes are kept
    (and recorded, so the next sync trusts them); wbsync's own file with other bytes is
    restored; anyone else's is a conflict. Whatever stands in the way is a conflict too."""
    for action, kind in entry.blocked:
        conflicts.append(_blocker(root, action.dest) if kind == "blocked" else Conflict(action.dest, kind))
    forced = [a for a, kind in entry.blocked if kind == "symlink"] if force else []
    if not entry.check:
        return replace(entry, place=entry.place + tuple(forced), blocked=())
    with ThreadPoolExecutor(min(jobs, 8)) as pool:
        seen = list(pool.map(partial(_hash_check, root), entry.check))
    keep, place = list(entry.keep), list(entry.place) + forced
    for action, (stat, same) in zip(entry.check, seen):
        known = entry.recorded.get(action.record.path)
        if same and stat is not None:
            keep.append(action)
            settled.adopted[action.dest] = PlacedFile(stat, digest_key(action.record))
        elif known is not None and stat is not None and same_file(known.stat, stat):
            place.append(action)
            settled.restored.append(action.dest)
        else:
            conflicts.append(Conflict(action.dest, "file"))
            place.append(action)
    return replace(entry, keep=tuple(keep), check=(), place=tuple(place), blocked=())


def _hash_check(root: Path, action: FileAction) -> tuple[Stat | None, bool]:
    path = root / action.dest
    stat = stat_of(path)
    try:
        return stat, hash_file(path, action.record.algorithm) == action.record.digest
    except OSError:
        return stat, False


def _blocker(root: Path, dest: str) -> Conflict:
    """The file standing where a folder of ``dest`` should be."""
    parts = dest.split("/")
    for i in range(1, len(parts)):
        head = "/".join(parts[:i])
        if os.path.lexists(root / head) and not (root / head).is_dir():
            return Conflict(head, "blocked")
    return Conflict(dest, "blocked")


def decide_removals(root: Path, stale: Iterable[Stale], destinations: tuple[str, ...]) -> Removals:
    """Files wbsync placed that are no longer locked: removed only while they are still the
    file it placed (same identity) with the bytes it placed; otherwise kept and reported.
    ``destinations``: the locked folders, project-relative."""
    removals = Removals()
    for dest, placed in stale:
        path = root / dest
        seen = stat_of(path)
        if seen is None:
            continue  # gone already (or something else stands there: not ours either way)
        if not same_file(placed.stat, seen) or not may_remove(dest, placed.stat, destinations):
            removals.kept_not_placed.append(dest)
        elif untouched(placed.stat, seen) or _holds(path, placed.digest):
            removals.removes.append((dest, seen))
        else:
            removals.kept_modified.append(dest)
    return removals


def _holds(path: Path, key: str) -> bool:
    """Whether the file at ``path`` has the content of ``key`` (``digest_key``: "md5:<base64>")."""
    algorithm, _, digest = key.partition(":")
    try:
        return hash_file(path, algorithm) == digest  # type: ignore[arg-type]
    except (OSError, ValueError):
        return False
