"""The lock's entries that a command may use as they are: those artifacts.yaml has not changed
since they were locked. ``wbsync.path``, ``mirror`` and ``lineage`` ask here; the fix they name
is the `wbsync sync` command line for the current folder."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from wbsync.core.errors import NotSyncedError
from wbsync.core.models import LockedArtifact
from wbsync.decide.agreement import describe, stale_report
from wbsync.repo.lockfile import default_lock_path
from wbsync.repo.project import Project, check_names


def locked_entries(project: Project, names: tuple[str, ...]) -> dict[str, LockedArtifact]:
    """The lock's entries for ``names`` (all when empty), refusing entries that artifacts.yaml
    (when there is one) added, changed or dropped since they were locked: what a no-op
    ``wbsync sync`` would accept without locking."""
    lock = project.require_lock()
    if project.manifest_path.exists():
        manifest = project.manifest()
        known = set(lock.artifacts) | set(manifest.entries)
        selected = check_names(names, known, str(project.manifest_path))
        stale = {n: why for n, why in stale_report(manifest, lock).items() if selected is None or n in selected}
        if stale:
            raise NotSyncedError(
                f"{project.manifest_path} has changes to {describe(stale)} that {project.lock_path} does not "
                f"have yet. Run `{sync_command(project, list(stale))}` to lock and sync them.")
    selected = check_names(names, set(lock.artifacts), str(project.lock_path))
    return {n: a for n, a in sorted(lock.artifacts.items()) if selected is None or n in selected}


def sync_command(project: Project, names: list[str]) -> str:
    """The `wbsync sync` command line that fixes ``names`` from the current folder."""
    words = ["wbsync", "sync"]
    manifest = Path(os.path.abspath(project.manifest_path))
    found = Project.discover(lock_only=False).manifest_path  # what the CLI picks from here without -m
    if manifest != Path(os.path.abspath(found)):
        words += ["-m", os.path.relpath(manifest)]
    if Path(os.path.abspath(project.lock_path)) != default_lock_path(manifest):
        words += ["--lockfile", os.path.relpath(project.lock_path)]
    return shlex.join(words + names)
