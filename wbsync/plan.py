"""Pure planning: given the lock, the recorded state and what is on disk, decide per file.

No I/O here: the caller observes the disk (``observe``) and hands the result in, so a plan can
be printed (``--dry-run``) and tested without touching anything.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Mapping

from wbsync.listing import iter_files
from wbsync.models import FileRecord, Lock, LockedArtifact
from wbsync.state import Stat, State


def digest_key(record: FileRecord) -> str:
    return f"{record.algorithm}:{record.digest}"


def dest_of(artifact_path: str, file_path: str) -> str:
    """Project-relative POSIX path of a file of an artifact."""
    return posixpath.join(artifact_path, file_path)


@dataclass(frozen=True)
class FileAction:
    entry: str
    base: str  # the entry's folder, project-relative
    record: FileRecord

    @property
    def dest(self) -> str:
        return dest_of(self.base, self.record.path)


@dataclass(frozen=True)
class EntryPlan:
    name: str
    artifact: LockedArtifact
    keep: tuple[FileAction, ...] = ()  # on disk and trusted (state matches)
    check: tuple[FileAction, ...] = ()  # on disk but not trusted: re-hash, then keep or place
    place: tuple[FileAction, ...] = ()  # missing: place from the store (fetching first if needed)
    remove: tuple[str, ...] = ()  # project-relative paths wbsync placed earlier, no longer locked

    @property
    def changes(self) -> bool:
        return bool(self.check or self.place or self.remove)


@dataclass(frozen=True)
class Plan:
    entries: tuple[EntryPlan, ...]
    orphans: tuple[str, ...] = field(default=())  # files of entries no longer in the lock

    @property
    def is_noop(self) -> bool:
        return not self.orphans and not any(e.changes for e in self.entries)


def make_plan(lock: Lock, state: State, observed: Mapping[str, Stat | None],
              names: frozenset[str] | None = None) -> Plan:
    """``observed`` maps every project-relative destination path of the lock to its stat."""
    entries = tuple(
        _plan_entry(name, lock.artifacts[name], state, observed)
        for name in sorted(lock.artifacts)
        if names is None or name in names
    )
    orphans: tuple[str, ...] = ()
    if names is None:
        gone = [e for n, e in sorted(state.entries.items()) if n not in lock.artifacts]
        orphans = tuple(dest_of(e.path, p) for e in gone for p in sorted(e.files))
    return Plan(entries, orphans)


def _plan_entry(name: str, art: LockedArtifact, state: State, observed: Mapping[str, Stat | None]) -> EntryPlan:
    recorded = state.entries.get(name)
    placed = recorded.files if recorded and recorded.path == art.path else {}
    keep: list[FileAction] = []
    check: list[FileAction] = []
    place: list[FileAction] = []
    for record in iter_files(art):
        action = FileAction(name, art.path, record)
        stat = observed.get(action.dest)
        known = placed.get(record.path)
        if stat is None:
            place.append(action)
        elif known is not None and known.stat == stat:
            # Untouched since wbsync placed it: its digest is known without hashing.
            (keep if known.digest == digest_key(record) else place).append(action)
        else:
            check.append(action)
    locked_paths = {f.path for f in iter_files(art)}
    remove: list[str] = []
    if recorded is not None:
        stale = [p for p in recorded.files if recorded.path != art.path or p not in locked_paths]
        remove = [dest_of(recorded.path, p) for p in sorted(stale)]
    return EntryPlan(name, art, tuple(keep), tuple(check), tuple(place), tuple(remove))
