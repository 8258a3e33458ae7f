"""`wbsync lineage`: one light W&B run per (lock, commit) that uses every locked artifact.

What to record is decided here, without wandb: the pinned references (the lock's ``resolved``
``...:vN``, never an alias), the tags, and a run id derived from what the run stands for, so
running it twice records one run (see ``run_id``). The W&B source module does the talking.

Idempotency, decided against the fake server and wandb 0.31:

1. ``api.run(entity/project/id)`` first: a *finished* run with this id already records this
   lock at this commit; it is left untouched (``created: false``, no run is opened).
2. Otherwise ``wandb.init(id=..., resume="allow")``: a new run, or the resumption of one that
   did not finish (it crashed half-way) or that a concurrent CI job just created, so a race
   yields one run too. ``UseArtifact`` is idempotent for a run and an artifact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbsync import sources as wb
from wbsync.core.errors import LockfileError
from wbsync.core.models import LineagePlan
from wbsync.repo.locked import locked_entries
from wbsync.repo.project import Project
from wbsync.repo.projectfile import read_project_file

__all__ = ["LineagePlan"]  # defined with the other data types, so the W&B source needs no feature module

DEFAULT_JOB_TYPE = "wbsync-lineage"
_TAG_MAX = 64  # W&B refuses longer tags


@dataclass(frozen=True)
class LineageResult:
    run_id: str
    run_path: str  # entity/project/run_id
    created: bool  # False when an earlier run with this id already recorded it
    artifacts: dict[str, str]  # entry name -> pinned reference used

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_path": self.run_path, "created": self.created,
                "artifacts": dict(self.artifacts)}


def record_lineage(project: Project, names: tuple[str, ...] = (), *, wandb_project: str,
                   job_type: str = DEFAULT_JOB_TYPE, entity: str | None = None) -> LineageResult:
    """Record the locked entries (all, or ``names``) as inputs of one run; see the module doc."""
    plan = plan_lineage(project, names, wandb_project=wandb_project, job_type=job_type, entity=entity)
    existing = wb.find_finished_run(plan.entity, plan.project, plan.run_id)
    if existing is not None:
        return LineageResult(plan.run_id, existing, False, plan.references)
    with wb.lineage_run(plan) as run:
        for name, reference in plan.references.items():
            wb.use_pinned(run, reference, plan.digests[name])
        return LineageResult(plan.run_id, str(run.path), not run.resumed, plan.references)


def plan_lineage(project: Project, names: tuple[str, ...] = (), *, wandb_project: str,
                 job_type: str = DEFAULT_JOB_TYPE, entity: str | None = None) -> LineagePlan:
    """What ``record_lineage`` records; reads the lock (refusing a stale one) and asks git."""
    entries = locked_entries(project, names)
    lock_sha = lock_digest(project.lock_path)
    commit = git_commit(project.root)
    references = {name: art.resolved for name, art in entries.items()}
    return LineagePlan(
        project=wandb_project,
        entity=entity,
        job_type=job_type,
        run_id=run_id(lock_sha, commit, wandb_project, job_type, names),
        commit=commit,
        lock_sha256=lock_sha,
        references=references,
        digests={name: art.digest for name, art in entries.items()},
        tags=tags(lock_sha, commit),
        config={"wbsync": {"lock_sha256": lock_sha, "git_commit": commit, "artifacts": references}},
    )


def lock_digest(lock_path: Path) -> str:
    """sha256 (hex) of the lockfile's bytes: the lock is byte-identical when nothing changed."""
    return hashlib.sha256(read_project_file(lock_path, LockfileError, "lockfile")).hexdigest()  # the readers' rule


def git_commit(root: Path) -> str | None:
    """``git rev-parse HEAD`` in ``root``; None without git, outside a repository or before the
    first commit."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run([git, "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run_id(lock_sha: str, commit: str | None, project: str, job_type: str, names: tuple[str, ...] = ()) -> str:
    """A W&B run id that names (lock, commit, project, job type): the same inputs give the same id.

    The entity is left out on purpose: run ids are unique within entity/project already, and
    leaving ``--entity`` out or giving the default entity must find the same run. ``names``
    counts only when a subset was asked for (a run of some entries is not a run of all).
    """
    key = json.dumps([lock_sha, commit or "", project, job_type, *sorted(set(names))])
    return "wbsync-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def tags(lock_sha: str, commit: str | None) -> tuple[str, ...]:
    """``wbsync``, ``lock:<sha256 prefix>`` and ``commit:<sha>``, each within W&B's 64 characters
    (the full digest and commit are in the run's config, and the commit in its git info)."""
    found = ["wbsync", f"lock:{lock_sha[:32]}"]
    if commit:
        found.append(f"commit:{commit}"[:_TAG_MAX])
    return tuple(found)
