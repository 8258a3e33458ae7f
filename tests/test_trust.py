"""A sync you can trust, that costs nothing when nothing changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import pytest

from helpers import run, run_json, tree, write_manifest
from test_fault_matrix import store_problems
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import Fault, FakeWandb

EVAL = """
      eval:
        artifact: wandb-registry-dataset/eval:production
        path: data/eval
"""

EVAL_ONLY = """
    version: 1
    artifacts:""" + EVAL

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


@pytest.mark.core
def test_a_noop_sync_makes_no_request_and_does_not_import_wandb(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    fake_wandb.clear_requests()
    proc = subprocess.run([sys.executable, "-c", NOOP_PROBE], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "NO-WANDB" in proc.stdout
    assert fake_wandb.requests == []


@pytest.mark.core
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
    # The lock is confirmed with W&B before placing (the store's blobs are not proof of what the
    # locked version holds), but no byte is downloaded.
    assert not [r for r in fake_wandb.requests if "/blobs/" in r.path]


def test_a_file_edited_without_changing_its_size_is_restored_by_the_next_sync(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    config = project / "models/phi3/config.json"
    placed = config.stat()
    config.write_bytes(MODEL["config.json"].replace(b"32", b"64"))  # same size, same inode
    os.utime(config, ns=(placed.st_atime_ns, placed.st_mtime_ns + 10**9))  # edited a second later
    doc = run_json("sync")
    assert doc["placed"] == 1 and doc["fetched_files"] == 0
    assert tree(project / "models/phi3") == MODEL


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


def test_removing_one_entry_alone_removes_its_files_and_keeps_the_others(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "dataset", "eval", {"e.txt": b"e"}, type="dataset", aliases=["production"])
    write_manifest(project, PHI3 + EVAL)
    run("sync")
    write_manifest(project, PHI3)  # nothing added, nothing changed: the only work is a removal
    doc = run_json("sync")
    assert doc["noop"] is False and doc["removed"] == 1
    assert not (project / "data").exists()
    assert tree(project / "models/phi3") == MODEL


def test_a_new_version_that_only_drops_files_removes_them(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    smaller = {k: v for k, v in MODEL.items() if k != "README.md"}
    publish(fake_wandb, smaller)
    run("lock", "--upgrade")
    doc = run_json("sync")
    assert doc["noop"] is False and doc["removed"] == 1 and doc["placed"] == 0
    assert tree(project / "models/phi3") == smaller
    run("verify")


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


def test_a_second_sync_of_the_project_waits_for_the_first_so_neither_loses_what_the_other_placed(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "dataset", "eval", {"e.txt": b"e"}, type="dataset", aliases=["production"])
    write_manifest(project, PHI3 + EVAL)
    run("lock")
    # The first sync is held inside its work (a download of phi3 hangs) while a second one,
    # of the other entry, runs; then the first is let go (the dropped transfer is retried).
    fake_wandb.inject(Fault("file", "hang", times=1, match="shard-0.bin"))
    first = subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q", "phi3"], cwd=project,
                             stderr=subprocess.PIPE, text=True)
    second = None
    try:
        wait_for(lambda: served(fake_wandb, "weights/shard-0.bin"), first)
        second = subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q", "eval"], cwd=project,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while second.poll() is None and not waits_for_a_lock(second.pid):
            assert time.monotonic() < deadline, "the second sync neither finished nor waited"
            time.sleep(0.02)
        fake_wandb.release_hung()
        for proc in (first, second):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert tree(project / "models/phi3") == MODEL and tree(project / "data/eval") == {"e.txt": b"e"}
    # Both entries are recorded as placed: trusted without a re-hash, removable when dropped.
    assert run_json("sync")["noop"] is True
    write_manifest(project, EVAL_ONLY)
    run("sync")
    assert not (project / "models").exists()


def waits_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for a file lock (Linux's /proc/locks)."""
    with open("/proc/locks") as fh:
        return any("->" in line and line.split()[5] == str(pid) for line in fh)


def test_a_sync_killed_mid_download_leaves_no_partial_file_and_the_next_sync_completes(
        fake_wandb: FakeWandb, project: Path) -> None:
    big = {"big.bin": os.urandom(4 << 20), **MODEL}
    publish(fake_wandb, big)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "hang", times=None, match="big.bin"))
    proc = subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=project)
    try:
        # Killed while it downloads, every time: once the request for big.bin has arrived (the
        # fault holds it) and the small files have been served.
        wait_for(lambda: served(fake_wandb, "big.bin") and all(served(fake_wandb, p) for p in MODEL), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # All of an entry's blobs are fetched before any of its files is placed: nothing yet.
    folder = project / "models/phi3"
    assert not folder.exists() or tree(folder) == {}
    fake_wandb.clear_faults()
    fake_wandb.release_hung()
    run("sync")
    assert tree(folder) == big
    # Every blob holds the bytes of its name; the killed run's temp file stays a minute (a
    # writer that just created its file has not locked it yet), then a sync removes it.
    assert [p for p in store_problems() if not p.endswith("temp file left in the store")] == []


def served(fake_wandb: FakeWandb, file_path: str) -> bool:
    """Whether a GET for the artifact file ``file_path`` has reached the server."""
    quoted = "/" + quote(file_path, safe="")  # as in the file URLs the server hands out
    return any(r.method == "GET" and r.path.endswith(quoted) for r in fake_wandb.requests)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes] | subprocess.Popen[str],
             timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process exited ({proc.returncode}) before the awaited moment"
        assert time.monotonic() < deadline, "the awaited moment never came"
        time.sleep(0.02)


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
    assert time.monotonic() - start < 30  # 1.4 s measured: two 0.5 s read timeouts, not a hang
    assert [r.fault for r in fake_wandb.requests if r.path.endswith("/config.json")] == ["hang", "hang"]
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


def test_progress_draws_no_bar_when_not_a_terminal(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    result = run("sync")
    assert "\r" not in result.stderr and "ETA" not in result.stderr  # plain log lines instead
