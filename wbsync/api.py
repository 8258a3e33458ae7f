"""The Python API: what training code and scripts call instead of the CLI.

    import wbsync
    weights = wbsync.path("phi3")          # Path of the synced, intact directory, or NotSyncedError
    entry = wbsync.locked("phi3")          # the lock entry: resolved ...:vN, digest, files
    wbsync.sync()                          # `wbsync sync` as a function: a SyncResult, no printing
    wbsync.use_artifacts(run)              # run.use_artifact() with each pinned ...:vN

Every function finds ``artifacts.yaml`` as the CLI does (``Project.discover``): the nearest
folder, from the current one upwards to the git repository's root, that holds ``artifacts.yaml``
(or, for what needs only the lock, only ``artifacts.lock``, as in an image that ships the lock
and the files). Training code runs from notebooks/, scripts/ or a launcher's folder.

Errors are ``wbsync.WbsyncError`` subclasses; nothing here prints or exits. ``path`` and
``locked`` never import ``wandb`` (nor read the network).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from wbsync.core.errors import NotSyncedError, UsageError
from wbsync.core.models import Lock, LockedArtifact
from wbsync.decide.plan import EntryPlan
from wbsync.repo.locked import locked_entries, sync_command
from wbsync.repo.project import Project, check_names, project_source
from wbsync.sources import use_pinned
from wbsync.sync import LockResult, SyncResult, plan_tree, run_lock, run_sync
from wbsync.tree import swap
from wbsync.tree.place import LINK_MODES, LinkMode

__all__ = ["LockResult", "LockedArtifact", "SyncResult", "lock", "locked", "path", "sync", "use_artifacts"]

PathLike = str | os.PathLike[str]
Names = str | Iterable[str] | None


class Run(Protocol):
    """What ``use_artifacts`` needs of a ``wandb.Run`` (typed without importing wandb)."""

    def use_artifact(self, artifact_or_name: str, /) -> Any: ...


def path(name: str, *, manifest: PathLike | None = None, lockfile: PathLike | None = None) -> Path:
    """The absolute directory of locked entry ``name``, after checking that it holds exactly the
    locked files (by the state the last sync recorded: a stat per file, no hashing, no network).

    Raises NotSyncedError naming the command to run (``wbsync sync NAME``) when a file is
    missing, changed or left over, or when artifacts.yaml changed the entry since it was locked.
    """
    return paths((name,), manifest=manifest, lockfile=lockfile)[name]


def paths(names: Names = None, *, manifest: PathLike | None = None,
          lockfile: PathLike | None = None) -> dict[str, Path]:
    """``path`` for several entries (all when ``names`` is None): ``{name: directory}``."""
    project = discover(manifest, lockfile)
    return checked_paths(project, locked_entries(project, _names(names)))


def locked(name: str, *, manifest: PathLike | None = None, lockfile: PathLike | None = None) -> LockedArtifact:
    """The lock entry of ``name`` as artifacts.lock records it (``resolved`` is the pinned
    ``org-entity/wandb-registry-R/collection:vN``). Reads only the lock."""
    project = discover(manifest, lockfile)
    lock = project.require_lock()
    check_names((name,), set(lock.artifacts), str(project.lock_path))
    return lock.artifacts[name]


def lock(names: Names = None, *, upgrade: bool = False, check: bool = False, manifest: PathLike | None = None,
         lockfile: PathLike | None = None, source: str | None = None) -> LockResult:
    """``wbsync lock``: resolve new or changed entries (``upgrade``: re-resolve aliases) and write
    the lock. ``check``: change nothing, raise CheckFailed if the lock is missing or stale."""
    project = discover(manifest, lockfile, source, lock_only=False)
    return run_lock(project, _names(names), upgrade=upgrade, check=check, source=project_source(project))


def sync(names: Names = None, *, locked: bool = False, frozen: bool = False, dry_run: bool = False,
         jobs: int = 64, link_mode: LinkMode | None = None, manifest: PathLike | None = None,
         lockfile: PathLike | None = None, source: str | None = None, progress: bool = False,
         force: bool = False) -> SyncResult:
    """``wbsync sync``: lock what is stale, then make the directories hold exactly the locked files.

    ``locked``: never write the lock (CheckFailed if stale). ``frozen``: use the lock as it is.
    ``link_mode``: WBSYNC_LINK_MODE or "auto" by default. ``progress``: a one-line display on stderr.
    ``force``: replace files wbsync did not place where the lock wants files (else ConflictError, exit 2).
    """
    project = discover(manifest, lockfile, source, lock_only=frozen)
    mode = link_mode or os.environ.get("WBSYNC_LINK_MODE", "auto")
    if mode not in LINK_MODES:
        raise UsageError(f"link mode {mode!r} (link_mode= or WBSYNC_LINK_MODE): use one of {', '.join(LINK_MODES)}.")
    bar = None
    if progress:
        from wbsync.progress import Progress

        bar = Progress()
    try:
        return run_sync(project, _names(names), locked=locked, frozen=frozen, dry_run=dry_run, jobs=jobs,
                        link_mode=mode, progress=bar.advance if bar else None,
                        on_fetch_start=bar.start if bar else None, source=project_source(project),
                        on_entry=bar.entry if bar else None, on_placed=bar.placed if bar else None, force=force)
    finally:
        if bar:
            bar.close()


def use_artifacts(run: Run, names: Names = None, *, manifest: PathLike | None = None,
                  lockfile: PathLike | None = None) -> dict[str, Path]:
    """Record each locked entry (all when ``names`` is None) as an input of ``run`` by its pinned
    ``...:vN`` (the lock's ``resolved``, never the alias, which may have moved since), after the
    same check as ``path``; returns ``{name: directory}``.

    An offline run cannot record inputs (a wandb limitation): the paths are returned with a
    warning. In ``mode="disabled"`` nothing is recorded, silently, as wandb does.
    """
    project = discover(manifest, lockfile)
    entries = locked_entries(project, _names(names))
    found = checked_paths(project, entries)
    recorded = [use_pinned(run, art.resolved, art.digest) for art in entries.values()]
    if not all(recorded):
        warnings.warn("wbsync.use_artifacts: the run is offline, so W&B cannot record its inputs; "
                      "the files were checked and their paths returned. Run online to record lineage, "
                      "or record it from CI with `wbsync lineage`.", stacklevel=2)
    return found


# -- shared with wbsync.lineage -------------------------------------------------------------


def discover(manifest: PathLike | None = None, lockfile: PathLike | None = None,
             source: str | None = None, start: Path | None = None, *, lock_only: bool = True) -> Project:
    """The project of an explicit ``manifest``, else of the nearest ``artifacts.yaml`` (or lone
    ``artifacts.lock``, when ``lock_only``) in ``start`` (the current folder) or a folder above
    it, up to the git repository's root: ``Project.discover``, the CLI's rule too."""
    return Project.discover(manifest, lockfile, source, start, lock_only=lock_only)


def checked_paths(project: Project, entries: dict[str, LockedArtifact]) -> dict[str, Path]:
    """``{name: directory}`` once the plan a sync would make for ``entries`` has nothing to do."""
    root = project.root
    if swap.pending(root):
        raise NotSyncedError(f"a sync was interrupted while it swapped files in (the journal {swap.journal_path(root)} "
                             f"remains), so the folders may mix two versions. Run `{sync_command(project, [])}` "
                             "(or `wbsync verify`) to finish it.")
    plan = plan_tree(root, Lock(entries), frozenset(entries))
    behind = [e for e in plan.entries if e.changes]
    if behind:
        detail = "; ".join(f"{e.name} ({e.artifact.path}: {_what(e)})" for e in behind)
        raise NotSyncedError(f"not in sync with {project.lock_path}: {detail}. "
                             f"Run `{sync_command(project, [e.name for e in behind])}`.")
    return {name: root / art.path for name, art in entries.items()}


def _what(entry: EntryPlan) -> str:
    parts = [(len(entry.place), "missing"), (len(entry.blocked), "with something else in the way"), (len(entry.check), "changed or not verified since the last sync"),
             (len(entry.remove), "left over from an earlier version")]
    return ", ".join(f"{n} file{'s' * (n != 1)} {what}" for n, what in parts if n)


def _names(names: Names) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)
