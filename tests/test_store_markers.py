"""What the content store tells the rest of the machine: a CACHEDIR.TAG so that backup tools skip
it, and one warning per sync when it sits on another filesystem than the project, where links
and clones become full copies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import run, run_json, write_manifest
from test_disk_full import SMALL, resize, small_fs  # noqa: F401 (a fixture)
from test_lock_and_sync import PHI3, publish
from wbsync.store.blobs import Store, default_store_dir
from wbsync.testing import FakeWandb

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"  # https://bford.info/cachedir/
ELSEWHERE = "is on another filesystem than this project"


def tag() -> Path:
    return Store(default_store_dir()).root / "CACHEDIR.TAG"


def test_a_store_carries_a_cachedir_tag_from_its_first_sync(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    assert tag().read_text().startswith(SIGNATURE + "\n")
    if shutil.which("tar"):  # a backup tool that honours the tag keeps the tag and skips the rest
        root = tag().parent
        listing = subprocess.run(["tar", "--exclude-caches", "-cf", "-", root.name], cwd=root.parent,
                                 capture_output=True, check=True).stdout
        names = subprocess.run(["tar", "-tf", "-"], input=listing, capture_output=True, check=True).stdout.split()
        assert sorted(names) == sorted([f"{root.name}/".encode(), f"{root.name}/CACHEDIR.TAG".encode()])


def test_a_store_made_before_the_tag_existed_gets_one_when_it_is_next_written(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    tag().unlink()
    run("cache", "prune")
    assert tag().read_text().startswith(SIGNATURE + "\n")


@pytest.mark.parametrize("mode", ["hardlink", "auto"])
def test_a_store_on_another_filesystem_is_said_once_per_sync_when_files_would_be_linked(
        fake_wandb: FakeWandb, project: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        mode: str) -> None:
    resize(small_fs, "8m")
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(small_fs / "store"))
    publish(fake_wandb, {**SMALL, "a.bin": b"a", "b.bin": b"b"})
    write_manifest(project, PHI3)
    result = run("sync", "--link", mode)
    assert result.stderr.count(ELSEWHERE) == 1, result.stderr
    assert "WBSYNC_CACHE_DIR" in result.stderr and str(small_fs / "store") in result.stderr
    assert run_json("sync", "--link", mode)["warnings"] == []  # a no-op places nothing: nothing to say


def test_copies_and_a_store_on_the_projects_filesystem_get_no_filesystem_warning(
        fake_wandb: FakeWandb, project: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    publish(fake_wandb)
    write_manifest(project, PHI3)
    assert ELSEWHERE not in run("sync", "--link", "hardlink").stderr  # store and project under one tmp folder
    resize(small_fs, "8m")
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(small_fs / "store"))
    publish(fake_wandb, {**SMALL, "c.bin": b"c"})
    run("lock", "--upgrade")
    assert ELSEWHERE not in run("sync", "--link", "copy").stderr
