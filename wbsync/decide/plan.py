"""Pure planning: given the lock, the recorded state and what is on disk, decide per file.

No I/O here: the caller observes the disk (``observe``) and hands the result in, so a plan can
be printed (``--dry-run``) and tested without touching anything. Whether a file is unchanged since
it was placed is ``wbsync.core.placed.untouched``; who owns a file it is not sure of is settled
later, on disk (``wbsync.tree.settle``). This module only sorts files by what must happen to them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.core.placed import Blocker, Observed, PlacedFile, State, untouched
from wbsync.store.listing import iter_files

# A file wbsync placed earlier and may remove: its project-relative path and what was recorded.
Stale = tuple[str, PlacedFile]


def digest_key(record: FileRecord) -> str:
    return f"{record.algorithm}:{record.digest}"


def dest_of(artifact_path: str, file_path: str) -> str:
    """Project-relative POSIX path of a file of an artifact."""
    return posixpath.join(artifact_path, file_path)


@dataclass(frozen=True, slots=True)  # slots: a plan holds one per locked file
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
    check: tuple[FileAction, ...] = ()  # on disk but not trusted: re-hash, then keep, restore or conflict
    place: tuple[FileAction, ...] = ()  # missing, or wbsync's own file of another version: place
    remove: tuple[Stale, ...] = ()  # files wbsync placed earlier for this entry, no longer locked
    blocked: tuple[tuple[FileAction, Blocker], ...] = ()  # a folder, symlink, ... stands there
    # What the state recorded for the files at this entry's path (under this name or, for a
    # renamed entry, the old one): the evidence of ownership for ``check`` files.
    recorded: Mapping[str, PlacedFile] = field(default_factory=dict, compare=False, repr=False)

    @property
    def changes(self) -> bool:
        return bool(self.check or self.place or self.remove or self.blocked)


@dataclass(frozen=True)
class Plan:
    entries: tuple[EntryPlan, ...]
    orphans: tuple[Stale, ...] = field(default=())  # files of entries no longer in the lock

    @property
    def is_noop(self) -> bool:
        return not self.orphans and not any(e.changes for e in self.entries)


def make_plan(lock: Lock, state: State, observed: Mapping[str, Observed],
              names: frozenset[str] | None = None) -> Plan:
    """``observed`` maps every project-relative destination path of the lock to what is there."""
    wanted = _Wanted(lock)
    entries = tuple(
        _plan_entry(name, lock.artifacts[name], state, observed, wanted)
        for name in sorted(lock.artifacts)
        if names is None or name in names
    )
    orphans: tuple[Stale, ...] = ()
    if names is None:
        gone = [e for n, e in sorted(state.entries.items()) if n not in lock.artifacts]
        orphans = tuple(
            (d, f) for e in gone for p, f in sorted(e.files.items()) if not wanted(d := dest_of(e.path, p))
        )
    return Plan(entries, orphans)


class _Wanted:
    """Whether the lock (any entry, selected or not) wants a file at a project-relative path:
    such a file is never removed, whichever entry placed it (a renamed entry keeps its files)."""

    def __init__(self, lock: Lock) -> None:
        self.lock = lock
        self._files: dict[str, frozenset[str]] = {}

    def __call__(self, dest: str) -> bool:
        for art in self.lock.artifacts.values():
            if dest.startswith(art.path + "/"):
                if art.path not in self._files:  # built only when something may be removed
                    self._files[art.path] = frozenset(f.path for f in iter_files(art))
                return dest[len(art.path) + 1:] in self._files[art.path]
        return False


def _recorded(name: str, art: LockedArtifact, state: State) -> Mapping[str, PlacedFile]:
    """The state's files at ``art.path``: this entry's, or those of the entry that had this path
    under another name (a rename keeps the evidence)."""
    own = state.entries.get(name)
    if own is not None and own.path == art.path:
        return own.files
    for other_name, other in sorted(state.entries.items()):
        if other.path == art.path and other_name != name:
            return other.files
    return {}


def _plan_entry(name: str, art: LockedArtifact, state: State, observed: Mapping[str, Observed],
                wanted: _Wanted) -> EntryPlan:
    placed = _recorded(name, art, state)
    keep: list[FileAction] = []
    check: list[FileAction] = []
    place: list[FileAction] = []
    blocked: list[tuple[FileAction, Blocker]] = []
    for record in iter_files(art):
        action = FileAction(name, art.path, record)
        seen = observed.get(action.dest)
        known = placed.get(record.path)
        if seen is None:
            place.append(action)
        elif isinstance(seen, str):
            blocked.append((action, seen))
        elif known is not None and untouched(known.stat, seen):
            # Untouched since wbsync placed it: its digest is known without hashing.
            (keep if known.digest == digest_key(record) else place).append(action)
        else:
            check.append(action)
    remove: list[Stale] = []
    recorded = state.entries.get(name)
    if recorded is not None:
        paths = sorted(recorded.files)
        if recorded.path == art.path:  # both sorted: merged as the listing streams, no set of its paths
            paths = list(_unlocked(paths, iter_files(art)))
        remove = [(d, recorded.files[p]) for p in paths if not wanted(d := dest_of(recorded.path, p))]
    return EntryPlan(name, art, tuple(keep), tuple(check), tuple(place), tuple(remove), tuple(blocked), placed)


def _unlocked(paths: list[str], locked: Iterator[FileRecord]) -> Iterator[str]:
    """The sorted ``paths`` that the path-ordered ``locked`` records do not name."""
    current = next(locked, None)
    for path in paths:
        while current is not None and current.path < path:
            current = next(locked, None)
        if current is None or current.path != path:
            yield path
