"""wbsync cache info / prune / verify, end to end: real syncs against the fake server, a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.errors import UsageError
from wbsync.core.text import parse_size
from wbsync.repo.lockfile import read_lock
from wbsync.store.blobs import Store, default_store_dir
from wbsync.testing import FakeWandb, Fault

NEWER = {"config.json": b'{"layers": 40}\n', "tokenizer.json": b"{}"}  # replaces MODEL as v1
DATA = {"eval.jsonl": b'{"q": 1}\n' * 50, "README.md": b"# phi3\n"}  # README shared with MODEL
EVAL = """
    version: 1
    artifacts:
      eval:
        artifact: wandb-registry-dataset/eval-set:latest
        path: data/eval
"""


def store() -> Store:
    return Store(default_store_dir())


def stored() -> set[Path]:
    return {Path(b.path) for b in store().scan()}


def blobs_of(lock_path: Path) -> set[Path]:
    lock = read_lock(lock_path)
    assert lock is not None
    return {store().blob_path(f) for a in lock.artifacts.values() for f in a.files}


def other_project(tmp_path: Path, fake_wandb: FakeWandb) -> Path:
    """A second project on the same store: the eval dataset, synced."""
    fake_wandb.log_artifact("acme", "dataset", "eval-set", DATA, type="dataset", aliases=["latest"])
    folder = tmp_path / "other"
    folder.mkdir()
    run("sync", "-m", str(write_manifest(folder, EVAL)))
    return folder


def upgraded_project(fake_wandb: FakeWandb, project: Path) -> set[Path]:
    """phi3 synced at v0, then upgraded to v1: returns the v0 blobs no lock needs any more."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    v0 = blobs_of(project / "artifacts.lock")
    publish(fake_wandb, NEWER)
    run("lock", "--upgrade")
    run("sync")
    return v0 - blobs_of(project / "artifacts.lock")


def real(path: Path) -> str:
    """How the store names a lockfile: its real path."""
    return os.path.realpath(path)


def set_last_use(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, path.stat().st_mtime_ns))


# -- reachability


def test_prune_keeps_every_blob_an_existing_lock_needs_and_removes_the_rest(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    garbage = upgraded_project(fake_wandb, project)
    other = other_project(tmp_path, fake_wandb)
    needed = blobs_of(project / "artifacts.lock") | blobs_of(other / "artifacts.lock")
    assert stored() == needed | garbage and garbage - needed
    doc = run_json("cache", "prune")
    assert stored() == needed
    # v0's config.json and weights; its README.md is the eval dataset's too
    assert doc["removed"] == {"blobs": 2, "bytes": len(MODEL["config.json"]) + len(MODEL["weights/shard-0.bin"])}
    assert doc["evicted"] == {"blobs": 0, "bytes": 0} and doc["forgotten_locks"] == []
    run("verify")
    run("verify", "-m", str(other / "artifacts.yaml"))


def test_a_deleted_lockfile_frees_its_blobs_and_is_forgotten(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    other = other_project(tmp_path, fake_wandb)
    only_other = blobs_of(other / "artifacts.lock") - blobs_of(project / "artifacts.lock")
    (other / "artifacts.lock").unlink()
    doc = run_json("cache", "prune")
    assert doc["forgotten_locks"] == [real(other / "artifacts.lock")]
    assert doc["removed"]["blobs"] == len(only_other) == 1  # README.md is phi3's too: kept
    assert stored() == blobs_of(project / "artifacts.lock")
    assert [lock["path"] for lock in run_json("cache", "info")["locks"]] == [real(project / "artifacts.lock")]


def test_a_lockfile_that_no_longer_parses_protects_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "artifacts.lock").write_text("<<<<<<< HEAD\n")
    doc = run_json("cache", "prune")
    assert doc["invalid_locks"] == [real(project / "artifacts.lock")] and doc["forgotten_locks"] == []
    assert doc["removed"]["blobs"] == 3 and stored() == set()


def test_a_dry_run_prune_reports_without_removing(fake_wandb: FakeWandb, project: Path) -> None:
    garbage = upgraded_project(fake_wandb, project)
    before = stored()
    doc = run_json("cache", "prune", "--dry-run", "--max-size", "0")
    assert doc["dry_run"] is True and doc["removed"]["blobs"] == len(garbage)
    assert doc["evicted"]["blobs"] == 2 and doc["remaining"]["blobs"] == 0
    assert stored() == before


# -- budget


def test_over_the_budget_the_least_recently_used_blobs_go_first(fake_wandb: FakeWandb, project: Path) -> None:
    for name in ("a", "b", "c"):
        fake_wandb.log_artifact("acme", "model", name, {f"{name}.bin": name.encode() * 1000}, aliases=["production"])
    write_manifest(project, "version: 1\nartifacts:\n" + "".join(
        f"  {n}: {{artifact: 'wandb-registry-model/{n}:production', path: models/{n}}}\n" for n in "abc"))
    run("sync")
    lock = read_lock(project / "artifacts.lock")
    assert lock is not None
    blob = {n: store().blob_path(lock.artifacts[n].files[0]) for n in "abc"}
    for seconds, name in enumerate("bca", start=1):  # b least recently used, then c, then a
        set_last_use(blob[name], seconds * 1000)
    doc = run_json("cache", "prune", "--max-size", "2000")
    assert doc["evicted"] == {"blobs": 1, "bytes": 1000} and doc["removed"]["blobs"] == 0
    assert stored() == {blob["c"], blob["a"]}
    doc = run_json("cache", "prune", "--max-size", "1.5kB")
    assert doc["evicted"]["blobs"] == 1 and stored() == {blob["a"]}
    run("verify")  # copies: the project keeps its files whatever the store evicts
    (project / "models/c/c.bin").unlink()
    assert run_json("sync")["fetched_files"] == 1


def test_a_sync_prunes_by_itself_when_the_store_exceeds_the_configured_max_size(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    v0 = stored()
    monkeypatch.setenv("WBSYNC_CACHE_MAX_SIZE", "100")
    publish(fake_wandb, NEWER)
    run("lock", "--upgrade")
    run("sync")  # v1 holds 17 bytes, v0 over 6 kB that no lock needs now
    assert len(v0) == 3 and stored() == blobs_of(project / "artifacts.lock")
    assert run_json("cache", "info")["max_size"] == 100


def test_a_sync_under_the_max_size_leaves_the_store_alone(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_CACHE_MAX_SIZE", "1MiB")
    garbage = upgraded_project(fake_wandb, project)
    assert garbage <= stored()


def test_a_sync_that_syncs_again_marks_its_blobs_recently_used(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    for path in stored():
        set_last_use(path, 1000)
    mtimes = {p: p.stat().st_mtime_ns for p in stored()}
    (project / "models/phi3/config.json").unlink()
    run("sync")
    assert all(p.stat().st_atime_ns > 10**18 for p in stored())  # now, not 1970
    assert {p: p.stat().st_mtime_ns for p in stored()} == mtimes


# -- concurrency


def test_a_prune_beside_a_running_sync_waits_for_it_and_corrupts_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "slow", delay=0.4, times=None))
    sync = subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "--frozen", "-j", "1"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(store().tmp_dir.glob("*.part")):  # mid-fetch: it holds store.shared()
            assert sync.poll() is None and time.monotonic() < deadline, sync.communicate()
            time.sleep(0.02)
        doc = run_json("cache", "prune", "--max-size", "0")
    finally:
        _, err = sync.communicate(timeout=120)
    assert sync.returncode == 0, err
    # It ran once the sync had fetched everything: every blob existed, and was evicted.
    assert doc["evicted"]["blobs"] == 3 and doc["removed"]["blobs"] == 0 and stored() == set()
    assert tree(project / "models/phi3") == MODEL
    run("verify")


# -- verify


def test_cache_verify_removes_a_tampered_blob_and_exits_1(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    lock = read_lock(project / "artifacts.lock")
    assert lock is not None
    config = next(f for f in lock.artifacts["phi3"].files if f.path == "config.json")
    blob = store().blob_path(config)
    blob.chmod(0o644)  # blobs are read-only: tampering takes intent (or a hardlinked file made writable)
    blob.write_bytes(b'{"layers": 33}\n')
    blob.chmod(0o444)
    doc = run_json("cache", "verify", check=1)
    assert doc["ok"] is False and doc["checked"]["blobs"] == 3
    assert [c["path"] for c in doc["corrupt"]] == [str(blob)] and doc["corrupt"][0]["hardlinked"] is False
    assert not blob.exists() and len(stored()) == 2
    assert run_json("cache", "verify")["ok"] is True
    (project / "models/phi3/config.json").unlink()
    assert run_json("sync")["fetched_files"] == 1
    assert blob.read_bytes() == MODEL["config.json"]


# -- link modes


def test_hardlinked_project_files_survive_a_prune_that_removes_their_blobs(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync", "--link", "hardlink")
    placed = project / "models/phi3/weights/shard-0.bin"
    assert placed.stat().st_nlink == 2
    info = run_json("cache", "info")
    assert info["held_bytes"] == 0 and info["bytes"] == sum(map(len, MODEL.values()))
    # Hardlinked blobs cost the store nothing: over any budget, none is evicted.
    assert run_json("cache", "prune", "--max-size", "0")["evicted"]["blobs"] == 0
    saved = (project / "artifacts.lock").rename(project / "saved.lock")
    doc = run_json("cache", "prune")
    assert doc["removed"]["blobs"] == 3 and doc["freed_bytes"] == 0 and stored() == set()
    saved.rename(project / "artifacts.lock")
    assert placed.stat().st_nlink == 1 and tree(project / "models/phi3") == MODEL
    run("verify")
    fake_wandb.clear_requests()
    assert run_json("sync")["noop"] is True and fake_wandb.requests == []


# -- registration


def test_a_noop_sync_registers_a_lock_once_and_then_writes_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    [record] = store().lockfiles_dir.glob("*.json")
    record.unlink()  # as for a project synced before registration existed
    assert run_json("sync")["noop"] is True
    [record] = store().lockfiles_dir.glob("*.json")
    doc = json.loads(record.read_text())
    assert doc["path"] == real(project / "artifacts.lock") and len(doc["sha256"]) == 64
    before = (record.stat().st_ino, record.stat().st_mtime_ns)
    assert run_json("sync")["noop"] is True
    assert (record.stat().st_ino, record.stat().st_mtime_ns) == before
    assert run_json("sync", "--dry-run")["dry_run"] is True and len(list(store().lockfiles_dir.iterdir())) == 1


def test_cache_info_json_reports_size_lockfiles_and_what_a_prune_would_free(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = upgraded_project(fake_wandb, project)
    other = other_project(tmp_path, fake_wandb)
    (other / "artifacts.lock").unlink()
    (store().tmp_dir / "0123456789abcdef.1.token.part").write_bytes(b"partial")
    monkeypatch.setenv("WBSYNC_CACHE_MAX_SIZE", "1")
    doc = run_json("cache", "info")
    sizes = [p.stat().st_size for p in stored()]
    assert doc["command"] == "cache info" and doc["store"] == os.environ["WBSYNC_CACHE_DIR"]
    assert (doc["blobs"], doc["bytes"], doc["held_bytes"]) == (len(sizes), sum(sizes), sum(sizes))
    used = (store().tmp_dir / "0123456789abcdef.1.token.part").stat().st_blocks * 512  # allocated, not 7
    assert (doc["max_size"], doc["tmp_files"], doc["tmp_bytes"]) == (1, 1, used)
    locks = {lock["path"]: lock for lock in doc["locks"]}
    mine = locks[real(project / "artifacts.lock")]
    assert (mine["exists"], mine["valid"], mine["blobs"], mine["stored"], mine["stored_bytes"]) == (True, True, 2, 2, 17)
    assert mine["last_used"].endswith("Z")
    assert locks[real(other / "artifacts.lock")]["exists"] is False
    gone = len(garbage) + 1  # and eval.jsonl, whose lock is gone
    assert doc["prune"]["removed"]["blobs"] == gone
    assert doc["prune"]["evicted"] == {"blobs": 2, "bytes": 17}  # down to 1 byte: both v1 blobs
    assert doc["prune"]["freed_bytes"] == sum(sizes)


def test_prune_removes_temp_files_that_killed_syncs_left(project: Path) -> None:
    tmp = store().tmp_dir
    tmp.mkdir(parents=True)
    leftover = tmp / "0123456789abcdef.1.token.part"
    leftover.write_bytes(b"partial")
    os.utime(leftover, (0, 0))
    assert run_json("cache", "prune")["tmp_files"] == 1 and not leftover.exists()


# -- settings


@pytest.mark.parametrize("text, size", [
    ("10GB", 10 * 10**9), ("500MiB", 500 * 2**20), ("1.5G", 3 * 2**29), ("1234", 1234),
    ("2k", 2048), ("3 KB", 3000), ("7b", 7), (" 1TiB ", 2**40), ("0", 0),
])
def test_sizes_read_kb_as_powers_of_1000_and_k_or_kib_as_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1", "1.2.3", "10 XB", "1e9"])
def test_a_size_that_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not a size"):
        parse_size(text)


def test_a_bad_max_size_setting_is_a_usage_error_naming_the_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_CACHE_MAX_SIZE", "lots")
    result = run("cache", "info", check=2)
    assert "WBSYNC_CACHE_MAX_SIZE: 'lots' is not a size" in result.stderr


# -- part-done files of downloads in ranges: kept a week for a resume, unless pruned explicitly

WEEK = 7 * 24 * 3600


def part_done(name: str, age_s: float, size: int = 100) -> Path:
    """A part-done file and its journal named for blob ``name`` (32 hex digits), last written ``age_s`` ago."""
    tmp = store().tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"md5-{name}.ranged"
    when = time.time() - age_s
    for each in (path, Path(f"{path}.json")):
        each.write_bytes(b"x" * size)
        os.utime(each, (when, when))
    return path


def left_in_tmp() -> list[str]:
    return sorted(p.name.split(".")[0] for p in store().tmp_dir.iterdir())


def test_an_automatic_prune_keeps_part_done_files_for_a_week_and_drops_older_ones(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    young, old = "a" * 32, "b" * 32
    part_done(young, WEEK - 60)
    part_done(old, WEEK + 60)
    publish(fake_wandb)
    write_manifest(project, PHI3)
    monkeypatch.setenv("WBSYNC_CACHE_MAX_SIZE", "1")  # over the budget: this sync prunes by itself
    run("sync")
    assert left_in_tmp() == [f"md5-{young}", f"md5-{young}"]


@pytest.mark.parametrize("flags", [(), ("--max-size", "0")])
def test_an_explicit_prune_removes_every_part_done_file_no_sync_holds_and_counts_the_space_it_took(
        project: Path, flags: tuple[str, ...]) -> None:
    part_done("c" * 32, 1, size=10_000)
    part_done("d" * 32, WEEK + 60)
    used = sum(p.stat().st_blocks * 512 for p in store().tmp_dir.iterdir())
    info = run_json("cache", "info")
    assert info["tmp_bytes"] == used
    assert (info["prune"]["tmp_files"], info["prune"]["tmp_bytes"], info["prune"]["freed_bytes"]) == (4, used, used)
    would = run_json("cache", "prune", "--dry-run", *flags)
    assert (would["tmp_files"], would["tmp_bytes"], would["freed_bytes"]) == (4, used, used)
    assert len(left_in_tmp()) == 4
    doc = run_json("cache", "prune", *flags)
    assert (doc["tmp_files"], doc["tmp_bytes"], doc["freed_bytes"]) == (4, used, used)
    assert left_in_tmp() == []
    assert "freeing" in run("cache", "prune").stdout


HOLDER = """
import sys
from pathlib import Path
from wbsync.store.blobs import Store
from wbsync.store.claims import Claims
assert Claims(Store(Path(sys.argv[1]))).try_claim_hex(sys.argv[2])
print("holding", flush=True)
sys.stdin.read()
"""


def test_an_explicit_prune_keeps_the_part_done_file_a_running_sync_holds(project: Path) -> None:
    held, free = "e" * 32, "f" * 32
    part_done(held, 1)
    part_done(free, 1)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store().root), held], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert run_json("cache", "prune", "--max-size", "0")["tmp_files"] == 2
        assert left_in_tmp() == [f"md5-{held}", f"md5-{held}"]
    finally:
        holder.communicate("", timeout=30)  # its claim goes with the process
    assert run_json("cache", "prune")["tmp_files"] == 2 and left_in_tmp() == []
