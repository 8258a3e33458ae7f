"""wbsync lock and sync, end to end: the real CLI, the real wandb SDK, the fake W&B server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from wbsync.testing import FakeWandb

# The core: what CI runs on every supported Python (pytest -m core).
pytestmark = pytest.mark.core

MODEL = {"config.json": b'{"layers": 32}\n', "weights/shard-0.bin": b"\x00\x01" * 3000, "README.md": b"# phi3\n"}

PHI3 = """
    version: 1
    artifacts:
      phi3:
        artifact: wandb-registry-model/phi3-finetuned:production
        path: models/phi3
"""


def publish(srv: FakeWandb, files: dict[str, bytes] = MODEL, **kw) -> object:
    kw.setdefault("aliases", ["production"])
    return srv.log_artifact("acme", "model", "phi3-finetuned", files, type="model", **kw)


def test_lock_pins_the_alias_to_a_version_with_every_files_size_and_digest(fake_wandb: FakeWandb, project: Path) -> None:
    v = publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    data = yaml.safe_load((project / "artifacts.lock").read_text())
    phi3 = data["artifacts"]["phi3"]
    assert phi3["version"] == "v0" and phi3["resolved"] == "acme-org/wandb-registry-model/phi3-finetuned:v0"
    assert phi3["requested"] == "wandb-registry-model/phi3-finetuned:production"
    assert phi3["digest"] == v.digest and phi3["type"] == "model" and phi3["path"] == "models/phi3"
    assert [f["path"] for f in phi3["files"]] == sorted(MODEL)
    assert {f["path"]: (f["size"], f["md5"]) for f in phi3["files"]} == {p: v.files[p] for p in MODEL}


def test_sync_places_exactly_the_locked_bytes(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    assert tree(project / "models/phi3") == MODEL
    assert (project / "artifacts.lock").exists()


def test_the_lock_is_byte_identical_when_nothing_changed(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    first = (project / "artifacts.lock").read_bytes()
    run("lock", "--upgrade")
    assert (project / "artifacts.lock").read_bytes() == first


def test_lock_keeps_existing_pins_when_the_alias_moves(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    publish(fake_wandb, {"config.json": b"{}"})
    doc = run_json("lock")
    assert doc["changes"] == [] and doc["entries"]["phi3"]["version"] == "v0"
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_lock_upgrade_moves_the_pin_and_sync_follows_removing_dropped_files(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3/notes.txt").write_text("mine")
    newer = {"config.json": b'{"layers": 40}\n', "tokenizer.json": b"{}"}
    publish(fake_wandb, newer)
    doc = run_json("lock", "--upgrade", "phi3")
    change = doc["changes"][0]
    assert (change["old_version"], change["new_version"]) == ("v0", "v1")
    assert (change["files_added"], change["files_removed"], change["files_changed"]) == (1, 2, 1)
    run("sync")
    assert tree(project / "models/phi3") == {**newer, "notes.txt": b"mine"}
    assert not (project / "models/phi3/weights").exists()


def test_a_changed_manifest_entry_is_relocked_on_sync(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    write_manifest(project, PHI3.replace("models/phi3", "models/phi3-new"))
    run("sync")
    assert tree(project / "models/phi3-new") == MODEL
    assert not (project / "models/phi3").exists()


def test_an_entry_by_version_locks_that_version_even_when_newer_ones_exist(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    publish(fake_wandb, {"config.json": b"{}"})
    write_manifest(project, """
        version: 1
        artifacts:
          phi3:
            registry: model
            collection: phi3-finetuned
            version: v0
            path: models/phi3
    """)
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_include_and_exclude_globs_filter_the_locked_files(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3 + "        include: ['*.json', 'weights/*']\n        exclude: ['weights/*']\n")
    run("sync")
    data = yaml.safe_load((project / "artifacts.lock").read_text())
    assert [f["path"] for f in data["artifacts"]["phi3"]["files"]] == ["config.json"]
    assert tree(project / "models/phi3") == {"config.json": MODEL["config.json"]}


def test_xxh128_artifacts_are_locked_and_verified_with_xxh128(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, digest_algorithm="xxh128")
    write_manifest(project, PHI3)
    run("sync")
    data = yaml.safe_load((project / "artifacts.lock").read_text())
    assert all("xxh128" in f for f in data["artifacts"]["phi3"]["files"])
    assert tree(project / "models/phi3") == MODEL
    run("verify")


def test_an_org_prefixed_reference_and_a_registry_name_with_spaces_resolve(fake_wandb: FakeWandb, project: Path) -> None:
    fake_wandb.add_registry("acme", "Fine-tuned Models")
    fake_wandb.log_artifact("acme", "Fine-tuned Models", "phi3-finetuned", MODEL, type="model", aliases=["production"])
    write_manifest(project, """
        version: 1
        artifacts:
          phi3:
            artifact: acme/wandb-registry-Fine-tuned Models/phi3-finetuned:production
            path: models/phi3
    """)
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_a_team_entity_in_defaults_resolves_the_organization(fake_wandb: FakeWandb, project: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    publish(fake_wandb)
    write_manifest(project, """
        version: 1
        defaults:
          entity: myteam
        artifacts:
          phi3:
            artifact: wandb-registry-model/phi3-finetuned:production
            path: models/phi3
    """)
    run("sync")
    org_lookups = [r.variables for r in fake_wandb.requests if r.operation == "FetchOrgInfoFromEntity"]
    assert {"entity": "myteam"} in org_lookups


def test_a_second_project_syncing_a_stored_version_downloads_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    other = project / "other"
    other.mkdir()
    write_manifest(other, PHI3)
    fake_wandb.clear_requests()
    run("sync", "-m", str(other / "artifacts.yaml"))
    assert tree(other / "models/phi3") == MODEL
    assert not [r for r in fake_wandb.requests if r.operation is None and "/blobs/" in r.path]


def test_sync_json_reports_what_it_fetched_and_placed(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    doc = run_json("sync")
    assert doc["command"] == "sync" and doc["noop"] is False
    assert (doc["fetched_files"], doc["placed"]) == (3, 3)
    assert doc["fetched_bytes"] == sum(len(b) for b in MODEL.values())
    again = run_json("sync")
    assert again["noop"] is True and again["fetched_files"] == 0
