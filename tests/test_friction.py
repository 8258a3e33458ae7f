"""Problems on this machine are found before any download and named in the user's words: the
folder or setting to fix, never a temp file deep inside. Read-only folders are read-only tmpfs
mounts (the tests run as root in CI, and root ignores a folder's mode)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb


def mount_read_only(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("needs permission to mount a read-only tmpfs (root or CAP_SYS_ADMIN; CI runs as root): "
                    f"mount said {proc.stderr.strip() or proc.returncode}")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """An empty folder nobody can write, root included."""
    folder = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    mount_read_only(folder)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def locked(fake_wandb: FakeWandb, project: Path) -> Path:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.clear_requests()
    return project


def test_an_unwritable_home_names_wbsync_cache_dir(locked: Path, read_only: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(read_only))
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("WBSYNC_CACHE_DIR")
    err = run("sync", check=2).stderr
    assert f"content store at {read_only}/.cache/wbsync" in err and "Read-only file system" in err
    assert "Set WBSYNC_CACHE_DIR to a folder you can write" in err and "Traceback" not in err


def test_an_unwritable_wbsync_cache_dir_is_named_as_the_setting_to_change(locked: Path, read_only: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(read_only / "store"))
    err = run("sync", check=2).stderr
    assert f"content store at {read_only}/store" in err and "Point WBSYNC_CACHE_DIR at a folder" in err


def test_add_in_an_unwritable_folder_names_the_manifest_not_a_temp_file(read_only: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(read_only)
    err = run("add", "wandb-registry-model/phi3-finetuned:production", "--path", "m", check=2).stderr
    assert f"cannot create artifacts.yaml in {read_only}: Read-only file system" in err
    assert ".tmp" not in err and "wbsync-" not in err


def test_an_unwritable_destination_is_found_before_any_download(fake_wandb: FakeWandb, locked: Path) -> None:
    mount_read_only(locked / "models")
    try:
        err = run("sync", check=2).stderr
    finally:
        subprocess.run(["umount", "-l", str(locked / "models")], check=False)
    assert f"the folder models ({locked}/models) is on a read-only filesystem" in err
    assert "Nothing was downloaded" in err and "`path`" in err
    assert fake_wandb.requests == []  # not a blob, not even a question to W&B


def test_a_host_that_accepts_and_never_answers_gets_a_waiting_line_within_seconds(project: Path) -> None:
    """The listener accepts (the kernel completes the handshake) and never reads or answers: the
    SDK waits ~30 s. The user hears what wbsync waits for long before that."""
    write_manifest(project, PHI3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        env = {**os.environ, "WANDB_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
               "WBSYNC_WAIT_NOTICE": "0.5"}
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "wbsync", "lock"], cwd=project, env=env,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline() if proc.stderr else ""
            waited = time.monotonic() - start
        finally:
            proc.kill()
            proc.wait()
    assert "still waiting after 0.5 s" in line and "accepted the connection" in line
    assert "credentials check" in line and "WANDB_HTTP_TIMEOUT" in line
    assert waited < 8, f"the first line came after {waited:.1f} s"  # the interpreter and wandb's import, then 0.5 s


def test_the_waiting_line_is_the_command_lines_alone_and_said_once_per_server(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from wbsync.core import notices

    monkeypatch.setenv("WBSYNC_WAIT_NOTICE", "0.05")
    with notices.waiting("W&B at http://api.example answers", key="http://api.example"):
        time.sleep(0.3)
    assert capsys.readouterr().err == ""  # the Python API prints nothing
    with notices.printing():
        for _ in range(2):  # two waits on one server (threads of one command): one line
            with notices.waiting("W&B at http://silent.example answers", key="http://silent.example"):
                time.sleep(0.3)
        with notices.waiting("quick", key="http://quick.example"):
            pass
    assert capsys.readouterr().err == "wbsync: still waiting after 0.05 s: W&B at http://silent.example answers\n"
