"""Attacks through the file system (issue 26, round three): a pull request that commits links or
files where wbsync keeps its own, a co-tenant on the machine who owns or plants things in the
content store, and files that are not regular files (FIFOs, devices) where wbsync reads or writes.

Each test plays the attacker against the real CLI and the fake W&B server (or a folder mirror),
then checks the promise: the exit code, the message naming the file and not quoting its secret,
the bytes on disk unchanged, no hang (a timeout), no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb

SECRET = "machine api.example.com login alice password hunter2-SECRET"


def synced(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def git_repo(project: Path) -> None:
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")


def secret_file(tmp_path: Path, text: str = SECRET) -> Path:
    path = tmp_path / "home" / ".netrc"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    return path


class Hung(BaseException):
    """Not an OSError (as TimeoutError is), so no handler in wbsync swallows it."""


@contextmanager
def no_hang(seconds: int = 10) -> Iterator[None]:
    """Fail (instead of hanging the suite) when wbsync blocks on a FIFO or reads a device forever."""
    def hung(signum: int, frame: object) -> None:
        raise Hung(f"wbsync still running after {seconds} s: it blocked on a FIFO or read without end")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- item 1: a symlinked lock or manifest ------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, "[default]\naws_secret_access_key = hunter2-SECRET\n",
                                    "- hunter2-SECRET\n- two\n", "lock_version: hunter2-SECRET\n"])
def test_a_lock_symlinked_out_of_the_project_is_refused_naming_only_the_link(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, secret: str) -> None:
    synced(fake_wandb, project)
    lock = project / "artifacts.lock"
    lock.unlink()
    lock.symlink_to(secret_file(tmp_path, secret))
    for args in (["verify"], ["sync", "--locked"], ["lock", "--check"], ["sync", "--frozen"]):
        result = run(*args, check=2)
        assert "artifacts.lock" in result.stderr and "symlink" in result.stderr, result.stderr
        assert "hunter2" not in result.stderr + result.stdout and ".netrc" not in result.stderr
    doc = run_json("verify", check=2)
    assert "hunter2" not in str(doc)


def test_a_lock_that_is_not_a_lock_never_has_its_text_quoted_in_the_error(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    for text in (SECRET, "- hunter2-SECRET\n", "key: hunter2-SECRET\nother: 1\n", "{artifacts: hunter2-SECRET}\n",
                 "lock_version: 2\nartifacts:\n  phi3: hunter2-SECRET\n"):
        (project / "artifacts.lock").write_text(text)
        err = run("verify", check=2).stderr
        assert "artifacts.lock" in err and "hunter2" not in err, err


def test_a_manifest_symlinked_to_an_ini_file_is_refused_without_printing_its_lines(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    synced(fake_wandb, project)
    ini = secret_file(tmp_path, "[default]\naws_secret_access_key = hunter2-SECRET")
    manifest = project / "artifacts.yaml"
    manifest.unlink()
    manifest.symlink_to(ini)
    for args in (["lock"], ["sync"], ["verify"]):
        err = run(*args, check=2).stderr
        assert "artifacts.yaml" in err and "symlink" in err and "hunter2" not in err, err
    manifest.unlink()
    manifest.write_text(ini.read_text())  # the same file, copied in: the line is still not quoted
    err = run("lock", check=2).stderr
    assert "artifacts.yaml:" in err and "hunter2" not in err, err


def test_a_lock_symlinked_to_a_file_git_tracks_in_the_repository_is_followed(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    git_repo(project)
    (project / "locks").mkdir()
    os.replace(project / "artifacts.lock", project / "locks/artifacts.lock")
    (project / "artifacts.lock").symlink_to("locks/artifacts.lock")
    assert "git does not track" in run("verify", check=2).stderr
    git(project, "add", "locks/artifacts.lock")
    run("verify")
    run("sync", "--locked")


def test_a_lock_symlinked_inside_the_project_folder_is_followed_outside_git(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    os.replace(project / "artifacts.lock", project / "real.lock")
    (project / "artifacts.lock").symlink_to(project / "real.lock")
    run("verify")


@pytest.mark.parametrize("name", ["artifacts.lock", "artifacts.yaml"])
def test_a_lock_or_manifest_that_is_a_device_or_fifo_is_refused_without_reading_it(
        fake_wandb: FakeWandb, project: Path, name: str) -> None:
    synced(fake_wandb, project)
    path = project / name
    path.unlink()
    path.symlink_to("/dev/zero")
    with no_hang():
        err = run("verify", check=2).stderr
    assert name in err, err
    path.unlink()
    os.mkfifo(path)
    with no_hang():
        err = run("verify", check=2).stderr
    assert name in err and "FIFO" in err, err


# -- item 10: wbsync's own files replaced by /dev/zero or a FIFO ----------------------------------


def store_dir() -> Path:
    return Path(os.environ["WBSYNC_CACHE_DIR"])


@pytest.mark.parametrize("name", ["state.json", "state-delta.json", "fingerprint.json", "sync.lock"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_wbsyncs_own_files_that_are_devices_or_fifos_are_never_read(
        fake_wandb: FakeWandb, project: Path, name: str, special: str) -> None:
    synced(fake_wandb, project)
    path = project / ".wbsync" / name
    path.unlink(missing_ok=True)
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(special)
    with no_hang():
        for args in (["verify"], ["sync"], ["sync", "--force"], ["cache", "info"], ["cache", "prune"]):
            result = run(*args, check=None)
            assert result.exit_code in (0, 2), result.output
            if result.exit_code == 2:
                assert name in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert tree(project / "models/phi3") == MODEL


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_swap_journal_that_is_a_device_or_fifo_is_refused_naming_it(
        fake_wandb: FakeWandb, project: Path, special: str) -> None:
    synced(fake_wandb, project)
    path = project / ".wbsync/swap.json"
    os.mkfifo(path) if special == "fifo" else path.symlink_to(special)
    with no_hang():
        for args in (["verify"], ["sync"]):
            err = run(*args, check=2).stderr
            assert "swap.json" in err, err


def test_a_registered_lock_replaced_by_dev_zero_protects_nothing_and_hangs_nothing(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    synced(fake_wandb, project)
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    write_manifest(other, PHI3)
    run("sync")
    (other / "artifacts.lock").unlink()
    (other / "artifacts.lock").symlink_to("/dev/zero")
    os.chdir(project)
    with no_hang():
        run("cache", "info")
        run("cache", "prune")
        run("sync")
    assert tree(project / "models/phi3") == MODEL
