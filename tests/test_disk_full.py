"""A full disk: a clean error (exit 2, the path named, "the disk is full"), never a traceback,
no partial file under a final name, a consistent content store, and a sync that completes once
there is room again.

The small filesystem is a 2 MiB tmpfs the test mounts, which needs root or CAP_SYS_ADMIN (CI runs
as root); where mounting is not permitted the tests are skipped and the skip reason says so. The
store and the project are put on it in turn.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_fault_matrix import store_problems
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb
from wbsync.testing.faults import Fault

MiB = 1 << 20
DEST = "models/phi3"
SMALL = {"config.json": b'{"layers": 32}\n', "README.md": b"# phi3\n"}


def big_model(mib: int, seed: int = 0) -> dict[str, bytes]:
    """``mib`` files of 1 MiB each (distinct bytes), plus two small ones."""
    return {**SMALL, **{f"weights/shard-{i}.bin": bytes([seed, i]) * (MiB // 2) for i in range(mib)}}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (skipped where mounting is not permitted)."""
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("needs permission to mount a 2 MiB tmpfs (root or CAP_SYS_ADMIN; CI runs as root): "
                    f"mount said {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def assert_clean_disk_full(result_stderr: str, where: Path) -> None:
    if os.environ.get("WBSYNC_SHOW_MESSAGES"):
        print("\nMESSAGE", result_stderr.strip())
    assert "Traceback" not in result_stderr
    assert "the disk is full" in result_stderr, result_stderr
    assert str(where) in result_stderr, result_stderr


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem has no block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def final_files_are_whole(folder: Path, *versions: dict[str, bytes]) -> None:
    """Every file under a final name holds all the bytes of one version of that path; no temp
    file is left behind."""
    for rel, data in tree(folder).items() if folder.exists() else []:
        assert ".wbsync-" not in rel, f"temp file {rel} left behind"
        assert any(v.get(rel) == data for v in versions), f"{rel} holds bytes of no version"


def test_a_full_store_disk_fails_cleanly_and_leaves_the_store_consistent(
        fake_wandb: FakeWandb, project: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = small_fs / "store"
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(store))
    model = big_model(3)  # 3 MiB: cannot fit in the 2 MiB store
    publish(fake_wandb, model)
    write_manifest(project, PHI3)
    result = run("sync", check=2)
    assert_clean_disk_full(result.stderr, store)
    assert not (project / DEST).exists()  # all blobs of an entry before any of its files
    assert store_problems(store) == []
    resize(small_fs, "8m")
    run("sync")
    assert tree(project / DEST) == model
    run("verify")
    assert store_problems(store) == []


def test_a_full_project_disk_fails_cleanly_with_no_partial_file(
        fake_wandb: FakeWandb, tmp_path: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    model = big_model(3)
    publish(fake_wandb, model)
    write_manifest(project, PHI3)
    run("lock")
    result = run("sync", "--link", "copy", check=2)
    assert_clean_disk_full(result.stderr, project / DEST)
    final_files_are_whole(project / DEST, model)
    assert store_problems() == []
    # Every file was staged before any was renamed: none has its final name, and verify says so.
    assert run_json("verify", check=1)["entries"][0]["missing"] == sorted(model)
    resize(small_fs, "8m")
    run("sync", "--link", "copy")
    assert tree(project / DEST) == model
    run("verify")


def test_an_upgrade_that_does_not_fit_leaves_whole_files_and_completes_later(
        fake_wandb: FakeWandb, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    v0 = big_model(1, seed=0)
    publish(fake_wandb, v0)
    write_manifest(project, PHI3)
    run("sync", "--link", "copy")
    v1 = big_model(2, seed=1)  # replacing 1 MiB with 2 MiB needs room for both while placing
    publish(fake_wandb, v1)
    run("lock", "--upgrade")
    result = run("sync", "--link", "copy", check=2)
    assert_clean_disk_full(result.stderr, project / DEST)
    # Every file is staged before any is renamed: the failed upgrade left v0 exactly as it was.
    assert tree(project / DEST) == v0
    assert store_problems() == []
    resize(small_fs, "8m")
    doc = run_json("sync", "--link", "copy")
    assert doc["kept_modified"] == []
    assert tree(project / DEST) == v1
    run("verify")


def test_an_upgrade_whose_first_files_fit_and_last_does_not_leaves_the_old_version_whole(
        fake_wandb: FakeWandb, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small changed files first (in placing order) fit; a large one after them does not. Placing
    file by file would leave new small files beside the old large one: a mixed folder."""
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    v0 = {"a.json": b'{"v": 0}\n', "b.txt": b"version 0\n", "z-weights.bin": b"\0" * 1000}
    v1 = {"a.json": b'{"v": 1}\n', "b.txt": b"version 1\n", "z-weights.bin": b"\1" * (3 * MiB)}
    publish(fake_wandb, v0)
    write_manifest(project, PHI3)
    run("sync", "--link", "copy")
    publish(fake_wandb, v1)
    run("lock", "--upgrade")
    result = run("sync", "--link", "copy", check=2)
    assert_clean_disk_full(result.stderr, project / DEST)
    assert tree(project / DEST) == v0
    resize(small_fs, "8m")
    run("sync", "--link", "copy")
    assert tree(project / DEST) == v1


def test_a_lock_that_cannot_be_written_fails_cleanly_and_the_old_lock_stays(
        fake_wandb: FakeWandb, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    publish(fake_wandb, SMALL)
    write_manifest(project, PHI3)
    run("lock")
    before = (project / "artifacts.lock").read_bytes()
    publish(fake_wandb, {**SMALL, "more.txt": b"x"})
    filler = project / "filler.bin"
    fill(filler)
    result = run("lock", "--upgrade", check=2)
    assert "Traceback" not in result.stderr and "the disk is full" in result.stderr
    assert "artifacts.lock" in result.stderr
    assert (project / "artifacts.lock").read_bytes() == before
    assert [p.name for p in project.iterdir() if ".wbsync-" in p.name] == []
    filler.unlink()
    run("lock", "--upgrade")
    assert (project / "artifacts.lock").read_bytes() != before


def test_a_read_only_destination_fails_cleanly(fake_wandb: FakeWandb, small_fs: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a full disk, the same family: a clean exit 2 naming the path."""
    project = small_fs / "project"
    (project / "models").mkdir(parents=True)
    monkeypatch.chdir(project)
    publish(fake_wandb, SMALL)
    write_manifest(project, PHI3)
    run("lock")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        result = run("sync", check=2)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert "Traceback" not in result.stderr and "Read-only file system" in result.stderr
    assert not os.path.exists(project / DEST)


def test_a_state_file_that_cannot_be_written_fails_cleanly(
        fake_wandb: FakeWandb, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files fit, the state file after them does not: exit 2 naming it; the placed files are
    whole, and the next sync (with room) trusts them after one re-hash."""
    project = small_fs / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    model = {**SMALL, "weights/shard-0.bin": b"\1" * (MiB + MiB // 2)}
    publish(fake_wandb, model)
    write_manifest(project, PHI3)
    run("lock")
    (project / ".wbsync").mkdir()
    st = os.statvfs(project)  # leave room for the files' blocks and not one block more
    needed = sum(-(-len(data) // st.f_frsize) for data in model.values())
    with open(project / ".wbsync" / "filler.bin", "wb") as fh:
        fh.write(b"\0" * (st.f_bavail - needed) * st.f_frsize)
    assert os.statvfs(project).f_bavail == needed  # exactly the files' blocks are free
    result = run("sync", "--link", "copy", check=2)
    assert_clean_disk_full(result.stderr, project / ".wbsync")
    final_files_are_whole(project / DEST, model)
    (project / ".wbsync" / "filler.bin").unlink()
    run("sync", "--link", "copy")
    assert tree(project / DEST) == model
    assert (project / ".wbsync" / ".gitignore").read_text().endswith("*\n")
    run("verify")


def test_after_a_full_disk_stops_a_large_download_an_explicit_prune_frees_its_part_done_file(
        fake_wandb: FakeWandb, project: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The advice of the disk-full message works: a part-done file an earlier sync left (its last
    part refused by the server) plus a full disk stop the next sync before its first byte; `cache
    info` counts the part-done file as the space it takes, and `cache prune` removes it."""
    store = small_fs / "store"
    resize(small_fs, "4m")  # room for the 3 MiB file: the first sync gets all parts but the last
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(store))
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", "1M")
    monkeypatch.setenv("WBSYNC_PART_SIZE", "256K")
    monkeypatch.setenv("WBSYNC_RETRIES", "1")
    monkeypatch.setenv("WBSYNC_CONNECTIONS", "1")  # parts in order: every part but the last has landed
    publish(fake_wandb, {"weights.bin": bytes(range(256)) * (3 * MiB // 256)})  # 3 MiB, in ranges
    write_manifest(project, PHI3)
    fake_wandb.inject(Fault("file", "status", times=None, status=500, match=f"bytes={3 * MiB - 256 * 1024}-"))
    run("sync", check=3)
    fake_wandb.clear_faults()
    part_done = [p for p in (store / "tmp").iterdir() if p.name.endswith(".ranged")]
    assert len(part_done) == 1
    used = part_done[0].stat().st_blocks * 512
    assert used > MiB
    fill(small_fs / "filler.bin")  # the disk is full now
    assert_clean_disk_full(run("sync", check=2).stderr, store)
    info = run_json("cache", "info")
    assert info["tmp_files"] >= 1 and info["tmp_bytes"] >= used
    doc = run_json("cache", "prune")
    assert doc["tmp_bytes"] >= used and doc["freed_bytes"] >= used
    assert [p.name for p in (store / "tmp").iterdir()] == []
    assert run_json("cache", "info")["tmp_bytes"] == 0
