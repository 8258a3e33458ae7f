"""A sync you can trust, that costs nothing when nothing changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import Fault, FakeWandb

NOOP_PROBE = """
import sys
from wbsync.cli import cli
try:
    cli(["sync"], prog_name="wbsync")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
assert "wandb" not in sys.modules, "a no-op sync imported wandb"
print("NO-WANDB")
"""


def test_a_noop_sync_makes_no_request_and_does_not_import_wandb(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    fake_wandb.clear_requests()
    proc = subprocess.run([sys.executable, "-c", NOOP_PROBE], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "NO-WANDB" in proc.stdout
    assert fake_wandb.requests == []


def test_a_frozen_sync_of_an_intact_tree_needs_no_manifest_and_no_network(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "artifacts.yaml").unlink()
    fake_wandb.clear_requests()
    assert run_json("sync", "--frozen")["noop"] is True
    assert fake_wandb.requests == []


def test_a_modified_file_is_restored_from_the_store_without_a_download(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3/config.json").write_bytes(b"tampered")
    (project / "models/phi3/README.md").unlink()
    fake_wandb.clear_requests()
    doc = run_json("sync")
    assert doc["placed"] == 2 and doc["fetched_files"] == 0
    assert tree(project / "models/phi3") == MODEL
    assert fake_wandb.requests == []


def test_a_touched_but_identical_file_is_rehashed_once_and_then_trusted(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    os.utime(project / "models/phi3/config.json", ns=(1, 1))
    doc = run_json("sync")
    assert doc["placed"] == 0 and doc["entries"][0]["check"] == 1
    assert run_json("sync")["noop"] is True


def test_files_wbsync_did_not_place_are_never_removed(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3/mine.txt").write_text("keep me")
    publish(fake_wandb, {"config.json": b"{}"})
    run("lock", "--upgrade")
    run("sync")
    assert tree(project / "models/phi3") == {"config.json": b"{}", "mine.txt": b"keep me"}


def test_removing_an_entry_from_the_manifest_removes_its_files_and_empty_folders(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    fake_wandb.log_artifact("acme", "dataset", "eval", {"e.txt": b"e"}, type="dataset", aliases=["production"])
    write_manifest(project, """
        version: 1
        artifacts:
          eval:
            artifact: wandb-registry-dataset/eval:production
            path: data/eval
    """)
    run("sync")
    assert not (project / "models").exists()
    assert tree(project / "data/eval") == {"e.txt": b"e"}


def test_an_edited_file_of_a_dropped_version_is_kept_and_reported(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3/README.md").write_text("my notes")
    publish(fake_wandb, {"config.json": b"{}"})
    run("lock", "--upgrade")
    doc = run_json("sync")
    assert doc["kept_modified"] == ["models/phi3/README.md"]
    assert (project / "models/phi3/README.md").read_text() == "my notes"


@pytest.mark.parametrize("mode", ["copy", "hardlink", "auto"])
def test_every_link_mode_places_the_locked_bytes(fake_wandb: FakeWandb, project: Path, mode: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync", "--link", mode)
    assert tree(project / "models/phi3") == MODEL
    run("verify")


def test_sync_dry_run_prints_the_plan_and_changes_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    doc = run_json("sync", "--dry-run")
    assert doc["dry_run"] is True and doc["entries"][0]["place"] == 3
    assert not (project / "models").exists() and not (project / "artifacts.lock").exists()


def test_two_syncs_of_one_project_at_once_both_succeed(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "slow", delay=0.3, times=None))
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=project, env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert tree(project / "models/phi3") == MODEL
    run("verify")


def test_a_sync_killed_mid_download_leaves_no_partial_file_and_the_next_sync_completes(
        fake_wandb: FakeWandb, project: Path) -> None:
    big = {"big.bin": os.urandom(4 << 20), **MODEL}
    publish(fake_wandb, big)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "slow", delay=0.5, times=None))
    proc = subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=project)
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = project / "models/phi3"
    if folder.exists():
        for rel, data in tree(folder).items():
            assert rel.endswith(".tmp") or data == big[rel], f"{rel} holds wrong bytes"
    fake_wandb.reset_faults() if hasattr(fake_wandb, "reset_faults") else None
    run("sync")
    assert tree(folder) == big


def test_a_dropped_transfer_resumes_with_a_range_request(fake_wandb: FakeWandb, project: Path) -> None:
    big = {"big.bin": os.urandom(2 << 20)}
    publish(fake_wandb, big)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "truncate", times=1, match="big.bin"))  # half the body, then FIN
    run("sync")
    ranges = [r.headers.get("Range") or r.headers.get("range") for r in fake_wandb.requests if "/blobs/" in r.path]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"
    assert tree(project / "models/phi3") == big


def test_a_server_that_stops_answering_times_out_and_exits_3(fake_wandb: FakeWandb, project: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_TIMEOUT", "0.5")
    monkeypatch.setenv("WBSYNC_RETRIES", "2")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "hang", times=None, match="config.json"))
    start = time.monotonic()
    err = run("sync", check=3).stderr
    assert time.monotonic() - start < 30
    assert "config.json" in err and "phi3" in err
    assert not (project / "models/phi3").exists()


def test_two_projects_sharing_the_store_sync_at_once_without_corruption(fake_wandb: FakeWandb, project: Path) -> None:
    big = {"big.bin": os.urandom(12 << 20), **MODEL}
    publish(fake_wandb, big)
    others = []
    for name in ("one", "two"):
        folder = project / name
        folder.mkdir()
        write_manifest(folder, PHI3)
        others.append(folder)
    run("lock", "-m", str(others[0] / "artifacts.yaml"))
    run("lock", "-m", str(others[1] / "artifacts.yaml"))
    fake_wandb.inject(Fault("file", "slow", delay=0.2, times=None))
    procs = [subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=f, stderr=subprocess.PIPE, text=True)
             for f in others]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for folder in others:
        assert tree(folder / "models/phi3") == big
    # The large blob is locked across processes: it was downloaded once, not twice.
    assert len([r for r in fake_wandb.requests if r.path.endswith("big.bin") or "big.bin" in r.path]) == 1


def test_leftover_temp_files_of_a_killed_run_are_cleaned_up(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    stale = project / "models/phi3/.config.json.wbsync-999999-deadbeef.tmp"
    stale.write_bytes(b"partial")
    publish(fake_wandb, {"config.json": b"{}"})
    run("lock", "--upgrade")
    run("sync")
    assert not stale.exists()


def test_progress_shows_files_bytes_speed_and_eta() -> None:
    import io

    from wbsync.progress import Progress

    progress = Progress(io.StringIO())
    progress.start(3, 3000)
    progress.advance(1000)
    line = progress.line()
    progress.close()
    assert "3 files" in line and "1.0 kB / 3.0 kB" in line and "/s" in line and "ETA" in line


def test_progress_is_quiet_when_not_a_terminal(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    result = run("sync")
    assert "fetching" not in result.stderr
