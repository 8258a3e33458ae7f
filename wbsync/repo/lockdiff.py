"""Two locks -> what a reviewer must see: entries added, removed, moved; files added, removed,
changed; and loud warnings for the changes that are easy to miss in a YAML diff of digests
(another destination, registry, collection, org or type; a `resolved` that does not match the
reference it was locked from; other content under the same version). Pure: no I/O.

An entry's files come through ``FilesOf`` (by default ``wbsync.store.listing.iter_files``: inline in
the lock, or a large entry's stored listing), walked side by side in path order, so comparing
two versions of a million-file entry holds only what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from wbsync.core.models import REGISTRY_PREFIX, FileRecord, Lock, LockedArtifact
from wbsync.decide.agreement import resolved_mismatch
from wbsync.store.listing import ListingMissing, iter_files

#: An entry's files, in path order.
FilesOf = Callable[[LockedArtifact], Iterable[FileRecord]]
Status = Literal["added", "removed", "changed", "unchanged"]


@dataclass(frozen=True)
class Alert:
    """A change a reviewer must not miss. ``kind``: path, registry, collection, org, type,
    mismatch (resolved vs requested) or content (same version, other bytes)."""

    kind: str
    message: str


@dataclass(frozen=True)
class FileChanges:
    added: tuple[FileRecord, ...] = ()
    removed: tuple[FileRecord, ...] = ()
    changed: tuple[tuple[FileRecord, FileRecord], ...] = ()  # (old, new), same path
    bytes_delta: int = 0

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True)
class EntryDiff:
    name: str
    status: Status
    old: LockedArtifact | None
    new: LockedArtifact | None
    files: FileChanges = field(default_factory=FileChanges)
    alerts: tuple[Alert, ...] = ()
    notes: tuple[str, ...] = ()  # quieter changes: the requested reference, the manifest entry


@dataclass(frozen=True)
class LockDiff:
    entries: tuple[EntryDiff, ...]  # every entry of either lock, sorted by name

    @property
    def changed(self) -> tuple[EntryDiff, ...]:
        return tuple(e for e in self.entries if e.status != "unchanged")

    @property
    def differs(self) -> bool:
        return bool(self.changed)

    @property
    def alerts(self) -> list[tuple[str, Alert]]:
        return [(e.name, a) for e in self.entries for a in e.alerts]


def diff_locks(old: Lock, new: Lock, names: frozenset[str] | None = None,
               files_of: FilesOf = iter_files) -> LockDiff:
    every = sorted(set(old.artifacts) | set(new.artifacts))
    return LockDiff(tuple(diff_entry(n, old.artifacts.get(n), new.artifacts.get(n), files_of)
                          for n in every if names is None or n in names))


def diff_entry(name: str, old: LockedArtifact | None, new: LockedArtifact | None,
               files_of: FilesOf = iter_files) -> EntryDiff:
    try:
        files = _compare(old, new, files_of)
        unlisted: tuple[str, ...] = ()
    except ListingMissing:  # a large entry's list this machine never fetched: compare the totals
        files = FileChanges(bytes_delta=(new.size if new else 0) - (old.size if old else 0))
        unlisted = ("file lists not compared: one of them is not in this machine's content store "
                    "(`wbsync sync` at that revision fetches it)",)
    if old is None or new is None:
        alerts = tuple(mismatch_alerts(new)) if new else ()
        return EntryDiff(name, "added" if old is None else "removed", old, new, files, alerts, unlisted)
    alerts = tuple(_move_alerts(old, new)) + tuple(mismatch_alerts(new))
    notes = tuple(_notes(old, new)) + unlisted
    same = old == new and not files.any
    return EntryDiff(name, "unchanged" if same else "changed", old, new, files, alerts, notes)


class _Unsorted(Exception):
    """A file list not in path order (a hand-edited lock): compared the slow way instead."""


def _compare(old: LockedArtifact | None, new: LockedArtifact | None, files_of: FilesOf) -> FileChanges:
    """Walk the two path-ordered lists side by side; memory holds only the differences."""
    def files(artifact: LockedArtifact | None) -> Iterable[FileRecord]:
        return files_of(artifact) if artifact is not None else ()

    try:
        return _walk(iter(files(old)), iter(files(new)))
    except _Unsorted:  # read again, from the start
        return file_changes(files(old), files(new))


def file_changes(before: Iterable[FileRecord], after: Iterable[FileRecord]) -> FileChanges:
    """Two file lists in any order (a path listed twice counts once, the last one)."""
    old = {f.path: f for f in before}
    new = {f.path: f for f in after}
    return _walk(iter(sorted(old.values(), key=lambda f: f.path)), iter(sorted(new.values(), key=lambda f: f.path)))


def _walk(left: Iterator[FileRecord], right: Iterator[FileRecord]) -> FileChanges:
    added: list[FileRecord] = []
    removed: list[FileRecord] = []
    changed: list[tuple[FileRecord, FileRecord]] = []
    delta = 0
    a, b = _next(left, None), _next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.path < b.path):
            removed.append(a)  # type: ignore[arg-type]
            delta -= a.size  # type: ignore[union-attr]
            a = _next(left, a)
        elif a is None or b.path < a.path:
            added.append(b)
            delta += b.size
            b = _next(right, b)
        else:
            if a != b:
                changed.append((a, b))
            delta += b.size - a.size
            a, b = _next(left, a), _next(right, b)
    return FileChanges(tuple(added), tuple(removed), tuple(changed), delta)


def _next(files: Iterator[FileRecord], previous: FileRecord | None) -> FileRecord | None:
    record = next(files, None)
    if record is not None and previous is not None and record.path <= previous.path:
        raise _Unsorted
    return record


@dataclass(frozen=True)
class ResolvedName:
    org: str
    registry: str
    collection: str
    version: str


def split_resolved(resolved: str) -> ResolvedName | None:
    """``org/wandb-registry-R/C:vN`` -> its parts; None for anything else."""
    path, _, version = resolved.rpartition(":")
    parts = path.split("/")
    if len(parts) != 3 or not parts[1].startswith(REGISTRY_PREFIX):
        return None
    return ResolvedName(parts[0], parts[1][len(REGISTRY_PREFIX):], parts[2], version)


def _move_alerts(old: LockedArtifact, new: LockedArtifact) -> Iterable[Alert]:
    if old.path != new.path:
        yield Alert("path", f"destination changed: {old.path} -> {new.path}")
    a, b = split_resolved(old.resolved), split_resolved(new.resolved)
    if a and b:
        for kind in ("org", "registry", "collection"):
            if getattr(a, kind) != getattr(b, kind):
                yield Alert(kind, f"{kind} changed: {getattr(a, kind)} -> {getattr(b, kind)}")
    if old.type != new.type:
        yield Alert("type", f"artifact type changed: {old.type} -> {new.type}")
    if old.resolved == new.resolved and old.digest != new.digest:
        yield Alert("content", f"same version {new.resolved}, other content: artifact digest "
                               f"{old.digest} -> {new.digest} (a W&B version never changes its files)")


def mismatch_alerts(art: LockedArtifact) -> Iterable[Alert]:
    """A `resolved` that is not what `requested` asks for (another registry or collection, another
    version than a pinned one, a `version` field that disagrees): the rule of wbsync.decide.agreement."""
    problem = resolved_mismatch(art)
    if problem is not None:
        yield Alert("mismatch", problem)


def _notes(old: LockedArtifact, new: LockedArtifact) -> Iterable[str]:
    if old.requested != new.requested:
        yield f"requested: {old.requested} -> {new.requested}"
    if old.entry_digest != new.entry_digest and old.requested == new.requested and old.path == new.path:
        yield "the manifest entry changed (filters, type or entity)"
