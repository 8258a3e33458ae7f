"""Lineage: runs record exactly the locked versions as inputs (the lock's ...:vN, never the alias).

Online runs go through a subprocess: ``wandb.init()`` reads its settings once per process (see
conftest.py), and a child process also keeps wandb-core's state out of the other tests. The
child inherits the test's environment: the fake server's URL, alice's key, temp dirs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wbsync
from helpers import run, run_process, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.lineage import git_commit, run_id, tags
from wbsync.testing import FakeWandb

V0 = "acme-org/wandb-registry-model/phi3-finetuned:v0"

TRAINING = """
import json, wandb, wbsync
run = wandb.init(entity="myteam", project="training")
paths = wbsync.use_artifacts(run)
run.finish()
print(json.dumps({"run": run.id, "paths": {name: str(p) for name, p in paths.items()}}))
"""


def git(folder: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args]
    return subprocess.run(cmd, cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


def lineage_json(project: Path, *args: str) -> dict:
    proc = run_process(project, "lineage", "--project", "ci", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_use_artifacts_records_the_locked_version_after_the_alias_moved(fake_wandb: FakeWandb, project: Path) -> None:
    v0 = publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.sync()
    v1 = publish(fake_wandb, {"config.json": b"{}"})  # production moves to v1
    fake_wandb.clear_requests()
    proc = subprocess.run([sys.executable, "-c", TRAINING], cwd=project, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["paths"] == {"phi3": str(project / "models/phi3")}
    used = [r.variables for r in fake_wandb.requests if r.operation == "UseArtifact"]
    assert [(u["artifactID"], u["runName"]) for u in used] == [(v0.artifact_id, out["run"])]
    assert v1.artifact_id != v0.artifact_id
    ops = fake_wandb.operations()
    assert {"UpsertBucket", "CreateRunFiles"} <= set(ops) and fake_wandb.unhandled == []
    paths = [r.path for r in fake_wandb.requests]
    assert any(p.endswith("/file_stream") for p in paths) and any(p.startswith("/upload/") for p in paths)


def test_lineage_twice_for_one_lock_and_commit_records_one_run_and_a_new_commit_another(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.lock()
    git(project, "init", "-q")
    git(project, "add", "artifacts.yaml", "artifacts.lock")
    git(project, "commit", "-q", "-m", "pin phi3")
    commit = git(project, "rev-parse", "HEAD")

    first = lineage_json(project)
    assert first["created"] is True and first["artifacts"] == {"phi3": V0}
    assert first["run_path"] == f"alice/ci/{first['run_id']}"
    upserts = [r.variables for r in fake_wandb.requests if r.operation == "UpsertBucket"]
    lock_sha = hashlib.sha256((project / "artifacts.lock").read_bytes()).hexdigest()
    assert upserts[0]["tags"] == ["wbsync", f"lock:{lock_sha[:32]}", f"commit:{commit}"]
    assert (upserts[0]["jobType"], upserts[0]["commit"]) == ("wbsync-lineage", commit)
    assert not (project / "wandb").exists()  # the run's local files went to a temporary folder

    fake_wandb.clear_requests()
    again = lineage_json(project)
    assert again == {**first, "command": "lineage", "created": False}
    assert not {"UpsertBucket", "UseArtifact"} & set(fake_wandb.operations())

    git(project, "commit", "-q", "--allow-empty", "-m", "another change")
    later = lineage_json(project)
    assert later["created"] is True and later["run_id"] != first["run_id"]
    runs = {r.variables["name"] for r in fake_wandb.requests if r.operation == "UpsertBucket"}
    assert runs == {later["run_id"]} and fake_wandb.unhandled == []


def test_lineage_refuses_a_stale_lock_before_any_request(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.lock()
    write_manifest(project, PHI3.replace("production", "v0"))
    fake_wandb.clear_requests()
    assert "wbsync sync phi3" in run("lineage", "--project", "ci", check=1).stderr
    assert fake_wandb.requests == []


# -- what the run stands for: id and tags, without W&B ----------------------------------------


def test_the_run_id_depends_on_lock_commit_project_and_job_type_only() -> None:
    base = run_id("a" * 64, "c" * 40, "ci", "wbsync-lineage")
    assert base == run_id("a" * 64, "c" * 40, "ci", "wbsync-lineage")
    others = {run_id("b" * 64, "c" * 40, "ci", "wbsync-lineage"), run_id("a" * 64, "d" * 40, "ci", "wbsync-lineage"),
              run_id("a" * 64, "c" * 40, "prod", "wbsync-lineage"), run_id("a" * 64, "c" * 40, "ci", "eval"),
              run_id("a" * 64, "c" * 40, "ci", "wbsync-lineage", ("phi3",)), run_id("a" * 64, None, "ci", "wbsync-lineage")}
    assert base not in others and len(others) == 6
    assert base.startswith("wbsync-") and not set(base) & set(":;,#?/'")


def test_tags_fit_in_w_and_bs_64_characters_even_for_sha256_commits() -> None:
    found = tags("a" * 64, "f" * 64)
    assert found[0] == "wbsync" and all(1 <= len(t) <= 64 for t in found)
    assert tags("a" * 64, None) == ("wbsync", "lock:" + "a" * 32)


def test_there_is_no_commit_outside_a_git_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


@pytest.mark.parametrize("as_json", [False, True])
def test_lineage_without_a_lock_is_a_usage_error(project: Path, as_json: bool) -> None:
    write_manifest(project, PHI3)
    result = run("lineage", "--project", "ci", *(["--json"] if as_json else []), check=2)
    assert "wbsync lock" in result.stderr
