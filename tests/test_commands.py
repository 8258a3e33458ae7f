"""The everyday modes: lock --check, sync --locked / --frozen, verify, outdated."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run, run_json, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb

# The core: what CI runs on every supported Python (pytest -m core).
pytestmark = pytest.mark.core


def test_lock_check_exits_1_without_a_lock_and_0_when_fresh_without_any_request(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    assert "wbsync lock" in run("lock", "--check", check=1).stderr
    run("lock")
    fake_wandb.clear_requests()
    run("lock", "--check")
    assert fake_wandb.requests == []


def test_lock_check_exits_1_when_the_manifest_changed(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    write_manifest(project, PHI3.replace("models/phi3", "models/other"))
    assert "phi3" in run("lock", "--check", check=1).stderr


def test_sync_locked_refuses_to_write_a_stale_lock(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync", "--locked", check=1)
    assert not (project / "artifacts.lock").exists()
    run("lock")
    run("sync", "--locked")


def test_sync_frozen_without_a_lock_exits_2(fake_wandb: FakeWandb, project: Path) -> None:
    write_manifest(project, PHI3)
    assert "wbsync lock" in run("sync", "--frozen", check=2).stderr


def test_verify_lists_missing_modified_and_extra_files_and_exits_1(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    run("verify")
    folder = project / "models/phi3"
    (folder / "README.md").unlink()
    (folder / "config.json").write_text("changed")
    (folder / "extra.txt").write_text("x")
    doc = run_json("verify", check=1)
    entry = doc["entries"][0]
    assert doc["ok"] is False
    assert (entry["missing"], entry["modified"], entry["extra"]) == (["README.md"], ["config.json"], ["extra.txt"])


def test_outdated_reports_a_moved_alias_in_one_line(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    assert "still point" in run("outdated").stdout
    publish(fake_wandb, {"config.json": b"{}", "new.bin": b"1234"})
    out = run("outdated", check=1).stdout  # exit 1: an alias moved, as `npm outdated`
    assert "phi3  production  v0 -> v1  (+1 file, -2 files, 1 changed" in out
    doc = run_json("outdated", check=1)
    assert doc["outdated"][0]["new_version"] == "v1"


def test_unknown_names_exit_2_listing_the_known_ones(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    err = run("sync", "nosuch", check=2).stderr
    assert "nosuch" in err and "phi3" in err


def test_an_invalid_manifest_exits_2_without_a_traceback(project: Path) -> None:
    write_manifest(project, "version: 1\nartifacts:\n  phi3:\n    path: x\n")
    result = run("lock", check=2)
    assert "artifacts.yaml" in result.stderr and "Traceback" not in result.stderr


def test_a_json_error_document_is_printed_on_stdout(project: Path) -> None:
    write_manifest(project, "version: 7\nartifacts: {}\n")
    doc = run_json("lock", check=2)
    assert doc["error"]["exit_code"] == 2



def test_verify_finds_a_file_edited_without_changing_its_size(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    config = project / "models/phi3/config.json"
    edited = config.read_bytes().replace(b"32", b"64")
    assert len(edited) == config.stat().st_size
    config.write_bytes(edited)
    doc = run_json("verify", check=1)
    assert doc["entries"][0]["modified"] == ["config.json"]
