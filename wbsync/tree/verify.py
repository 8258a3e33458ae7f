"""verify: re-hash the locked directories against the lock, offline."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wbsync.core.errors import UnsafePathError
from wbsync.core.models import Lock
from wbsync.decide.plan import Plan, dest_of
from wbsync.store.listing import iter_files
from wbsync.store.rehash import compare_folder, merge_sorted, walk_sorted
from wbsync.tree.place import _symlink_escape


@dataclass
class EntryReport:
    name: str
    path: str
    missing: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    stale: str | None = None  # why the lock does not pin what artifacts.yaml asks (wbsync.decide.agreement)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.modified or self.extra or self.stale)


def verify(root: Path, lock: Lock, names: frozenset[str] | None, jobs: int | None = None,
           stale: dict[str, str] | None = None) -> list[EntryReport]:
    """Re-hash every locked file (on every core: wbsync.store.rehash) and list extra ones. ``stale``:
    entries whose lock disagrees with the manifest (name -> why), reported as differences too:
    matching a tampered lock proves nothing."""
    stale = stale or {}
    reports = []
    for name in sorted(lock.artifacts):
        if names is not None and name not in names:
            continue
        art = lock.artifacts[name]
        _refuse_escape(root, name, art.path)
        found = compare_folder(str(root / art.path), iter_files(art), count=len(art.files), jobs=jobs)
        reports.append(EntryReport(name, art.path, found.missing, found.modified, found.extra, stale.get(name)))
    for name, why in sorted(stale.items()):  # in artifacts.yaml but not in the lock
        if name not in lock.artifacts and (names is None or name in names):
            reports.append(EntryReport(name, "", stale=why))
    return reports


def _refuse_escape(root: Path, name: str, path: str) -> None:
    """The refusal sync makes: a locked folder (or a folder above it) that is a symlink leading
    out of the project is never walked: verify would list and hash someone else's files."""
    problem = _symlink_escape(root, path.split("/"))
    if problem is not None:
        raise UnsafePathError(f"{name}: the locked folder {path!r} cannot be verified: {problem}. wbsync never "
                              "reads or writes outside the project through a symlink: remove the link (`wbsync sync` "
                              "then places the files) or change the entry's path.")


def unlocked_files(root: Path, plan: Plan) -> list[str]:
    """Project-relative paths of the files in the planned entries' folders that their lock entry
    does not name: what ``verify`` lists as extra, and what ``sync`` names on every run."""
    found = []
    for entry in plan.entries:
        art = entry.artifact
        # Both sides sorted, merged as they stream: no set of a million locked paths.
        walked = walk_sorted(os.path.join(root, art.path))
        found += [dest_of(art.path, p) for record, p in merge_sorted(iter_files(art), walked)
                  if record is None and p is not None]
    return found
