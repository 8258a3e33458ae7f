"""Attacks on ownership, each through the real CLI against the fake server: a sync never
overwrites or deletes a file it did not place, and a state file is evidence, never authority.

Each test is an attack (or a careless user's move) first, then the promise: the exit code, the
bytes on disk, the message naming the file, no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb

DEST = "models/phi3"
V1 = {"config.json": b'{"layers": 64}\n', "weights/shard-0.bin": b"\x02\x03" * 3000, "tokenizer.json": b"{}"}
TWO = PHI3 + """
      eval:
        artifact: wandb-registry-dataset/eval:production
        path: data/eval
"""


def upgrade(srv: FakeWandb, files: dict[str, bytes] = V1) -> None:
    publish(srv, files)
    run("lock", "--upgrade")


def no_traceback(result) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.stdout + result.stderr


def state_doc(project: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((project / ".wbsync/state.json").read_text())


# -- item 3: never overwrite what wbsync did not place ----------------------------------------


def test_a_users_file_at_a_path_a_new_version_adds_is_a_conflict_and_nothing_changes(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / DEST / "tokenizer.json").write_text("my tokenizer")
    upgrade(fake_wandb)
    before = tree(project / DEST)
    result = run("sync", check=2)
    no_traceback(result)
    assert f"{DEST}/tokenizer.json" in result.stderr and "--force" in result.stderr
    assert tree(project / DEST) == before


def test_a_file_in_the_folder_before_the_first_sync_is_a_conflict(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST).mkdir(parents=True)
    (project / DEST / "config.json").write_text("my config")
    result = run("sync", check=2)
    assert f"{DEST}/config.json" in result.stderr
    assert tree(project / DEST) == {"config.json": b"my config"}


def test_every_conflicting_file_is_named_at_once(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST / "weights").mkdir(parents=True)
    (project / DEST / "config.json").write_text("mine")
    (project / DEST / "README.md").write_text("mine too")
    result = run("sync", check=2)
    assert f"{DEST}/config.json" in result.stderr and f"{DEST}/README.md" in result.stderr


def test_a_file_with_the_locked_bytes_already_there_is_adopted_silently(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST).mkdir(parents=True)
    (project / DEST / "config.json").write_bytes(MODEL["config.json"])
    result = run("sync")
    assert "config.json" not in result.stderr
    assert tree(project / DEST) == MODEL
    run("verify")


def test_force_replaces_conflicting_files_and_names_them(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST).mkdir(parents=True)
    (project / DEST / "config.json").write_text("my config")
    result = run("sync", "--force")
    assert f"{DEST}/config.json" in result.stdout + result.stderr
    assert tree(project / DEST) == MODEL
    doc = run_json("sync", "--force")
    assert doc["noop"] is True


def test_force_json_lists_the_replaced_files(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST).mkdir(parents=True)
    (project / DEST / "config.json").write_text("my config")
    assert run_json("sync", "--force")["replaced"] == [f"{DEST}/config.json"]


def test_a_folder_in_the_way_is_a_conflict_and_the_entry_stays_whole(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / DEST / "tokenizer.json").mkdir()
    (project / DEST / "tokenizer.json" / "mine.txt").write_text("mine")
    upgrade(fake_wandb)
    before = tree(project / DEST)
    result = run("sync", "--force", check=2)
    no_traceback(result)
    assert f"{DEST}/tokenizer.json" in result.stderr and "folder" in result.stderr
    assert tree(project / DEST) == before


def test_a_file_in_the_way_of_a_folder_is_a_conflict(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    (project / DEST).mkdir(parents=True)
    (project / DEST / "weights").write_text("a file, not a folder")
    result = run("sync", check=2)
    assert f"{DEST}/weights" in result.stderr
    assert tree(project / DEST) == {"weights": b"a file, not a folder"}


def test_a_locked_file_edited_in_place_is_restored_and_named(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    with open(project / DEST / "config.json", "r+b") as f:  # in place: the same inode
        f.write(b"XX")
    result = run("sync")
    assert "restored" in result.stdout + result.stderr and f"{DEST}/config.json" in result.stdout + result.stderr
    assert tree(project / DEST) == MODEL
    assert run_json("sync")["noop"] is True


def test_a_locked_file_replaced_by_another_file_is_a_conflict(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    target = project / DEST / "config.json"
    other = project / "elsewhere.json"  # written while the placed file exists: another inode
    other.write_text("my own config")
    os.replace(other, target)  # as an editor that saves by renaming, or `cp` of another file
    run("sync", check=2)
    assert target.read_text() == "my own config"


# -- item 4: ownership is evidence, never authority -------------------------------------------


def test_renaming_an_entry_keeps_its_files(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    write_manifest(project, PHI3.replace("phi3:\n", "phi:\n"))
    run("sync")
    assert tree(project / DEST) == MODEL
    run("verify")
    assert run_json("sync")["noop"] is True


def test_a_forged_state_naming_a_project_file_does_not_delete_it(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    src = project / "src" / "train.py"
    src.parent.mkdir()
    src.write_text("print('train')\n")
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()
    doc = state_doc(project)
    doc["entries"]["gone"] = {"path": "src", "files": {"train.py": [1, 1, 1, f"md5:{digest}"]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    result = run("sync")
    no_traceback(result)
    assert src.exists() and src.read_text() == "print('train')\n"


def test_a_copied_state_with_the_files_identity_still_needs_this_filesystem(
        fake_wandb: FakeWandb, project: Path) -> None:
    """The file's size, mtime and inode copied into a state file, but no device: the state
    must name a destination that was locked here; `src` never was."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    src = project / "src" / "train.py"
    src.parent.mkdir()
    src.write_text("print('train')\n")
    st = os.stat(src)
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()
    doc = state_doc(project)
    doc["entries"]["gone"] = {"path": "src",
                              "files": {"train.py": [st.st_size, st.st_mtime_ns, st.st_ino, f"md5:{digest}"]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    run("sync")
    assert src.exists()


def test_a_state_with_the_files_inode_on_another_device_does_not_delete_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    """Size, mtime and inode of the user's file, but another device: an inode number is only
    unique on its filesystem, so this names some other file, never the user's."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    src = project / "src" / "train.py"
    src.parent.mkdir()
    src.write_text("print('train')\n")
    st = os.stat(src)
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()
    doc = state_doc(project)
    doc["entries"]["gone"] = {"path": "src", "files": {
        "train.py": [st.st_size, st.st_mtime_ns, st.st_ino, f"md5:{digest}", st.st_dev + 1]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    result = run("sync")
    assert src.exists() and src.read_text() == "print('train')\n"
    assert "src/train.py" in result.stdout + result.stderr  # kept, and said so


def test_a_state_naming_files_outside_the_project_is_ignored_with_a_warning(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    st = os.stat(outside)
    doc = state_doc(project)
    doc["entries"]["evil"] = {"path": "..", "files": {"outside.txt": [st.st_size, st.st_mtime_ns, st.st_ino,
                                                                      "md5:x", st.st_dev]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    result = run("sync")
    assert outside.read_text() == "not yours"
    assert "state.json" in result.stderr and "ignor" in result.stderr


def test_a_state_naming_a_file_in_git_is_ignored_with_a_warning(fake_wandb: FakeWandb, project: Path) -> None:
    """Even with the hook's true identity, a state entry in .git is not a destination wbsync
    could have placed: git's files are never wbsync's to remove."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    hook = project / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\nmake lint\n")
    st = os.stat(hook)
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.md5(hook.read_bytes()).digest()).decode()
    doc = state_doc(project)
    doc["entries"]["gone"] = {"path": ".git", "files": {
        "hooks/pre-commit": [st.st_size, st.st_mtime_ns, st.st_ino, f"md5:{digest}", st.st_dev]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    result = run("sync")
    assert hook.is_file(), "git's hook was removed"
    assert hook.read_text() == "#!/bin/sh\nmake lint\n"
    assert "state.json" in result.stderr and "ignor" in result.stderr


def test_a_symlinked_state_folder_is_refused_and_nothing_is_written_outside(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / ".wbsync").symlink_to(elsewhere)
    result = run("sync", check=2)
    no_traceback(result)
    assert ".wbsync" in result.stderr and "symlink" in result.stderr
    assert list(elsewhere.iterdir()) == []
    assert not (project / DEST).exists()


def test_a_state_file_tracked_by_git_is_ignored_with_a_warning(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    src = project / "src" / "train.py"
    src.parent.mkdir()
    src.write_text("print('train')\n")
    st = os.stat(src)
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()
    doc = state_doc(project)
    doc["entries"]["gone"] = {"path": "src", "files": {
        "train.py": [st.st_size, st.st_mtime_ns, st.st_ino, f"md5:{digest}", st.st_dev]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-f", ".wbsync/state.json", "src"], cwd=project, check=True)
    result = run("sync")
    assert src.exists()
    assert "tracked by git" in result.stderr


def test_a_placed_file_no_longer_locked_and_edited_is_kept_and_named_on_every_sync(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / DEST / "README.md").write_text("my notes")
    upgrade(fake_wandb)
    first = run("sync")
    assert f"{DEST}/README.md" in first.stderr and "verify" in first.stderr
    again = run("sync")  # a no-op: still named, in one warning line
    lines = [line for line in again.stderr.splitlines() if "README.md" in line]
    assert len(lines) == 1
    assert (project / DEST / "README.md").read_text() == "my notes"


@pytest.mark.core
def test_a_clean_noop_sync_prints_nothing_when_piped(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    result = run("sync")
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.core
def test_sync_then_verify_passes_after_a_restore(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / DEST / "README.md").unlink()
    (project / DEST / "config.json").write_text("edited in place")
    run("sync")
    run("verify")


def test_a_copied_project_keeps_files_it_cannot_prove_it_placed(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy (cp -r, a restored cache) has new inodes: its files are not the ones wbsync placed.
    Unchanged locked files are adopted; a dropped one is kept and named, not deleted."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    monkeypatch.chdir(copy)
    upgrade(fake_wandb, {k: v for k, v in MODEL.items() if k != "README.md"})
    result = run("sync")
    assert (copy / DEST / "README.md").read_bytes() == MODEL["README.md"]
    assert f"{DEST}/README.md" in result.stderr
    assert run_json("sync")["noop"] is True


def test_a_copied_project_whose_files_changed_needs_force(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    monkeypatch.chdir(copy)
    upgrade(fake_wandb, {**MODEL, "config.json": b"{}"})
    assert f"{DEST}/config.json" in run("sync", check=2).stderr
    assert run_json("sync", "--force")["replaced"] == [f"{DEST}/config.json"]
    run("verify")


def test_a_killed_runs_temp_file_is_cleaned_by_the_next_sync_so_verify_passes(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    dead = 2**22 + 7  # a PID no process has (above pid_max's default)
    debris = project / DEST / f".config.json.wbsync-{dead}-0123abcd.tmp"
    debris.write_bytes(b"half")
    run("sync")
    assert not debris.exists()
    run("verify")
