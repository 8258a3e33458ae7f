"""What a CI log shows while a sync runs: plain lines when each entry starts and ends, transfer
progress every few seconds, nothing for a no-op; an interrupted run says what it finished."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from helpers import popen_interruptible, run, tree, write_manifest
from test_disk_full import big_model, small_fs  # noqa: F401 (a fixture)
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb, Fault

TWO = PHI3 + """
      eval:
        artifact: wandb-registry-dataset/eval-set:v0
        path: data/eval
"""
EVAL = {"eval.jsonl": b'{"q": 1}\n'}


@pytest.fixture
def two_entries(fake_wandb: FakeWandb, project: Path) -> Path:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "dataset", "eval-set", EVAL, type="dataset")
    write_manifest(project, TWO)
    run("lock")
    return project


def test_a_piped_sync_logs_each_entry_and_the_transfer_in_plain_lines(two_entries: Path, fake_wandb: FakeWandb,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_PROGRESS_INTERVAL", "0.1")
    fake_wandb.inject(Fault("file", "slow", times=1, delay=1.0, match="shard-0.bin"))
    err = run("sync").stderr
    lines = err.splitlines()
    assert any("phi3" in line and "started" in line and "models/phi3/" in line for line in lines)
    assert any("eval" in line and "done" in line for line in lines)
    progress = [line for line in lines if line.startswith("wbsync: fetched ")]
    assert progress and all("files" in line and "/s" in line and " of " in line for line in progress)
    assert "\r" not in err and "\033" not in err  # plain text for logs
    started = next(i for i, line in enumerate(lines) if "phi3" in line and "started" in line)
    done = next(i for i, line in enumerate(lines) if "phi3" in line and "done" in line)
    assert started < lines.index(progress[0]) < done


def test_a_quick_sync_logs_no_progress_line(two_entries: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_PROGRESS_INTERVAL", "30")
    err = run("sync").stderr
    assert "started" in err and "done" in err and "wbsync: fetched " not in err


@pytest.mark.core
def test_a_no_op_sync_logs_nothing(two_entries: Path) -> None:
    run("sync")
    assert run("sync").stderr == ""


def test_quiet_and_json_log_nothing(two_entries: Path) -> None:
    assert run("sync", "-q").stderr == ""
    (two_entries / "models/phi3/config.json").unlink()
    assert run("sync", "--json").stderr == ""


def test_an_interrupted_sync_says_what_it_finished(two_entries: Path, fake_wandb: FakeWandb) -> None:
    # eval's file is slow, so the run is interrupted while fetching (a download thread finishes
    # its request before the process exits).
    fake_wandb.inject(Fault("file", "slow", times=None, delay=3.0, match="eval.jsonl"))
    proc = popen_interruptible(two_entries, "sync")
    deadline = time.monotonic() + 60
    seen = ""
    assert proc.stderr is not None
    while "fetching" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = seen + err
    assert proc.returncode == 130, err
    assert "interrupted before any entry was placed" in err and "phi3" in err and "eval" in err
    assert "wbsync sync" in err and "Traceback" not in err
    assert not (two_entries / "models").exists() and not (two_entries / "data").exists()  # no empty folder
    fake_wandb.reset()


def test_the_terminal_bar_covers_placement(two_entries: Path) -> None:
    """Drive the bar's events directly: after the fetch it shows the placement, not 100%."""
    import io

    from wbsync.progress import Progress
    from wbsync.repo.lockfile import read_lock
    from wbsync.sync import plan_tree

    plan = plan_tree(two_entries, read_lock(two_entries / "artifacts.lock"), None)
    bar = Progress(io.StringIO())
    bar.start(3, 100)
    bar.advance(100)
    phi3 = next(e for e in plan.entries if e.name == "phi3")
    bar.entry("placing", phi3)
    bar.placed(1)
    assert "placing phi3" in bar.line() and f"1 / {len(MODEL)} files" in bar.line()


def test_verbose_says_what_a_no_op_sync_checked(two_entries: Path) -> None:
    run("sync")
    out = run("sync", "-v").stdout
    assert "phi3" in out and "eval" in out and "3 files" in out and "1 file " in out
    assert "no request" in out and "Up to date: 4 files in 2 entries" in out
    assert tree(two_entries / "models/phi3") == MODEL


def test_a_placement_that_fails_leaves_no_empty_folder(fake_wandb: FakeWandb, small_fs: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    publish(fake_wandb, big_model(3))  # 3 MiB do not fit in the 2 MiB filesystem
    write_manifest(project, PHI3)
    run("lock")
    assert "the disk is full" in run("sync", "--link", "copy", check=2).stderr
    assert not (project / "models").exists()  # the folders staging made are gone with their temp files


def test_an_interrupted_add_says_the_manifest_was_left_as_it_was(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    before = (project / "artifacts.yaml").read_text()
    fake_wandb.log_artifact("acme", "dataset", "eval-set", EVAL, type="dataset")
    fake_wandb.inject(Fault("graphql", "slow", times=None, delay=3.0, match="ArtifactMembershipByName"))
    proc = popen_interruptible(project, "add", "wandb-registry-dataset/eval-set:v0", "--path", "data/eval")
    deadline = time.monotonic() + 60
    while (project / "artifacts.yaml").read_text() == before and time.monotonic() < deadline:
        time.sleep(0.05)  # the entry is written first, then locked
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "artifacts.yaml was left as it was" in err and "verified files" not in err
    assert (project / "artifacts.yaml").read_text() == before
    fake_wandb.reset()
