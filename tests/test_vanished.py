"""Vanished versions found before they break a build: `outdated` checks that every locked version
still exists and is committed, warns about scheduled deletions, and a cold sync that meets a
deleted version says where the alias points now and what fixes it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb

NEWER = {"config.json": b'{"layers": 40}\n'}
RESOLVED = "acme-org/wandb-registry-model/phi3-finetuned:v{}"
PINNED = """
    version: 1
    artifacts:
      phi3:
        artifact: wandb-registry-model/phi3-finetuned:v0
        path: models/phi3
"""


def _locked_then_moved(fake_wandb: FakeWandb, project: Path) -> None:
    """phi3 locked at v0, then `production` moved to v1: the usual state before v0 is deleted."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    publish(fake_wandb, NEWER)


def test_outdated_exits_1_naming_an_unlinked_version_and_the_upgrade_that_fixes_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    _locked_then_moved(fake_wandb, project)
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 0)
    doc = run_json("outdated", check=1)
    assert [c["new_version"] for c in doc["outdated"]] == ["v1"]
    assert doc["vanished"] == [{
        "name": "phi3", "resolved": RESOLVED.format(0), "state": "missing",
        "reason": "not found (deleted, or unlinked from its collection)", "alias": "production", "now": "v1",
        "fix": "its alias `production` now points at v1: run `wbsync lock --upgrade phi3`, then `wbsync sync`, "
               "and commit the lockfile."}]
    out = run("outdated", check=1).stdout
    assert f"phi3  vanished  {RESOLVED.format(0)} is not found" in out
    assert "wbsync lock --upgrade phi3" in out


def test_the_named_fix_clears_the_vanished_version(fake_wandb: FakeWandb, project: Path) -> None:
    _locked_then_moved(fake_wandb, project)
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 0)
    run("lock", "--upgrade", "phi3")
    assert run_json("outdated") == {"command": "outdated", "checked": 1, "outdated": [], "vanished": [],
                                    "expiring": []}


def test_a_deleted_version_the_alias_still_names_asks_for_a_manifest_change(fake_wandb: FakeWandb,
                                                                           project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.set_state("acme", "model", "phi3-finetuned", 0, "DELETED")
    [gone] = run_json("outdated", check=1)["vanished"]
    assert (gone["state"], gone["now"]) == ("deleted", "v0")
    assert gone["fix"] == ("its alias `production` still points at the vanished version: point entry 'phi3' in "
                           "artifacts.yaml line 3 at another alias or version, then run `wbsync lock`.")


def test_a_version_that_is_not_committed_counts_as_vanished(fake_wandb: FakeWandb, project: Path) -> None:
    _locked_then_moved(fake_wandb, project)
    fake_wandb.set_state("acme", "model", "phi3-finetuned", 0, "PENDING")
    [gone] = run_json("outdated", check=1)["vanished"]
    assert (gone["state"], gone["reason"]) == ("pending", "not committed (its state is PENDING)")


def test_a_pinned_version_that_vanished_names_the_manifest_line_to_change(fake_wandb: FakeWandb,
                                                                         project: Path) -> None:
    publish(fake_wandb)
    publish(fake_wandb, NEWER)
    write_manifest(project, PINNED)
    run("lock")
    assert run_json("outdated")["vanished"] == []  # pinned entries are checked too
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 0)
    [gone] = run_json("outdated", check=1)["vanished"]
    assert (gone["alias"], gone["now"]) == (None, None)
    assert gone["fix"] == ("artifacts.yaml line 3 pins v0: pick another version in the W&B App, change entry "
                           "'phi3' to it, then run `wbsync lock`.")


def test_a_scheduled_deletion_is_a_warning_with_its_time_and_the_exit_stays_0(fake_wandb: FakeWandb,
                                                                            project: Path) -> None:
    logged = publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.set_ttl("acme", "model", "phi3-finetuned", 0, 7 * 86400)
    doc = run_json("outdated")
    expires = logged.created_at + timedelta(days=7)
    assert doc["expiring"] == [{"name": "phi3", "resolved": RESOLVED.format(0),
                                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    assert doc["vanished"] == []
    assert "scheduled for deletion at" in run("outdated").stdout


def test_a_cold_sync_meeting_a_deleted_version_says_where_the_alias_points_now(fake_wandb: FakeWandb,
                                                                              project: Path) -> None:
    _locked_then_moved(fake_wandb, project)
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 0)
    for args in (("sync",), ("sync", "--frozen"), ("sync", "--locked")):
        err = run(*args, check=3).stderr
        assert f"phi3: the locked version {RESOLVED.format(0)} is not found" in err, err
        assert "its alias `production` now points at v1: run `wbsync lock --upgrade phi3`" in err
    assert not (project / "models").exists()
    run("lock", "--upgrade", "phi3")
    run("sync")
    assert tree(project / "models/phi3") == NEWER


def test_a_cold_sync_of_a_large_entry_meeting_a_deleted_version_names_the_fix_too(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its file list is fetched before anything else: that is where the deletion shows."""
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "1")
    _locked_then_moved(fake_wandb, project)
    for listing in (Path(os.environ["WBSYNC_CACHE_DIR"]) / "listings").iterdir():
        listing.unlink()  # a fresh machine
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 0)
    err = run("sync", check=3).stderr
    assert f"phi3: the locked version {RESOLVED.format(0)} is not found" in err, err
    assert "its alias `production` now points at v1: run `wbsync lock --upgrade phi3`" in err
