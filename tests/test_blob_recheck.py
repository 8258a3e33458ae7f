"""Store blobs are re-checked before they spread: a blob written to since it was verified is
re-hashed before it is placed, linked or mirrored; a corrupt one is dropped and fetched again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.models import FileRecord
from wbsync.store.blobs import VERIFIED_MTIME_NS, Store, default_store_dir
from wbsync.testing import FakeWandb

DEST = "models/phi3"


def blob_of(project: Path, rel: str) -> Path:
    import yaml

    lock = yaml.safe_load((project / "artifacts.lock").read_text())
    record = next(f for f in lock["artifacts"]["phi3"]["files"] if f["path"] == rel)
    return Store(default_store_dir()).blob_path(FileRecord(rel, record["size"], record["md5"]))


def second_project(project: Path) -> Path:
    """Another project locked to the same version: it places from the store."""
    other = project.parent / "other"
    other.mkdir()
    for name in ("artifacts.yaml", "artifacts.lock"):
        (other / name).write_bytes((project / name).read_bytes())
    os.chdir(other)
    return other


def tamper(path: Path, data: bytes) -> None:
    """A same-size write in place, as root (or anyone who makes the blob writable) can."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(data)
    os.chmod(path, 0o444)


def test_a_blob_tampered_in_place_is_dropped_and_fetched_again_before_it_is_placed(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    blob = blob_of(project, "config.json")
    tamper(blob, b"X" * len(MODEL["config.json"]))
    other = second_project(project)
    fake_wandb.clear_requests()
    run("sync")
    assert tree(other / DEST) == MODEL
    assert [r.path for r in fake_wandb.requests if "/blobs/" in r.path] != []  # fetched again
    assert blob.read_bytes() == MODEL["config.json"]
    assert run_json("cache", "verify")["ok"] is True


def test_a_blob_whose_mtime_moved_but_bytes_are_right_is_rehashed_once_and_kept(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    blob = blob_of(project, "config.json")
    assert os.stat(blob).st_mtime_ns == VERIFIED_MTIME_NS
    os.utime(blob, ns=(1, 10**18))  # a cache restore that did not keep mtimes
    other = second_project(project)
    fake_wandb.clear_requests()
    run("sync")
    assert tree(other / DEST) == MODEL
    assert [r.path for r in fake_wandb.requests if "/blobs/" in r.path] == []  # nothing fetched: the bytes were right
    assert os.stat(blob).st_mtime_ns == VERIFIED_MTIME_NS


def test_a_hardlinked_file_edited_in_place_as_root_is_restored_and_the_store_healed(
        fake_wandb: FakeWandb, project: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the blob's read-only mode stops everyone else")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync", "--link", "hardlink")
    placed = project / DEST / "config.json"
    with open(placed, "r+b") as f:  # root ignores the read-only mode: the blob changes too
        f.write(b"XX")
    blob = blob_of(project, "config.json")
    assert blob.read_bytes() != MODEL["config.json"]
    result = run("sync", "--link", "hardlink")
    assert f"restored {DEST}/config.json" in result.stdout
    assert tree(project / DEST) == MODEL and blob.read_bytes() == MODEL["config.json"]
    run("verify")


def test_a_large_file_fetched_in_ranges_is_named_verified_too(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", "4096")
    monkeypatch.setenv("WBSYNC_PART_SIZE", "2048")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    assert os.stat(blob_of(project, "weights/shard-0.bin")).st_mtime_ns == VERIFIED_MTIME_NS
