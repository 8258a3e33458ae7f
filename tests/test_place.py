import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wbsync.errors import UnsafePathError, UsageError
from wbsync.place import FICLONE, clean_temp_files, place, remove_placed, safe_join

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def can_reflink(folder: Path) -> bool:
    a, b = folder / ".probe-a", folder / ".probe-b"
    a.write_bytes(b"x")
    try:
        with open(a, "rb") as src, open(b, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        return False
    finally:
        a.unlink()
        b.unlink(missing_ok=True)


@pytest.fixture
def blob(tmp_path) -> Path:
    path = tmp_path / "store" / "blob"
    path.parent.mkdir()
    path.write_bytes(b"locked bytes\n")
    path.chmod(0o444)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "project" / "models"
    path.mkdir(parents=True)
    return path


def temp_files(folder: Path) -> list[str]:
    return [name for _, _, files in os.walk(folder) for name in files if ".wbsync-" in name]


# -- safe_join


@pytest.mark.parametrize(
    "rel",
    [
        "../x",
        "a/../../x",
        "..",
        "/etc/passwd",
        "C:/x",
        "c:x",
        "a\\..\\x",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "",
        "a\0b",
    ],
)
def test_safe_join_refuses_every_spelling_of_a_path_outside_the_destination(root, rel):
    with pytest.raises(UnsafePathError) as info:
        safe_join(root, rel, "acme/wandb-registry-model/phi3:v3")
    assert repr(rel) in info.value.message
    assert "acme/wandb-registry-model/phi3:v3" in info.value.message
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    "rel", ["config.json", "a/b/c.bin", ".hidden/x", "a..b/..c", "données/模型.bin", "x y/z"]
)
def test_safe_join_accepts_normal_nested_and_unicode_paths(root, rel):
    assert safe_join(root, rel) == root.joinpath(*rel.split("/"))


def test_safe_join_refuses_a_symlinked_folder_that_leads_outside(root, tmp_path):
    (tmp_path / "outside").mkdir()
    (root / "a").mkdir()
    (root / "a" / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="symlink"):
        safe_join(root, "a/escape/b/file.bin")


def test_safe_join_refuses_a_relative_symlink_that_climbs_out(root):
    (root / "up").symlink_to("..")
    with pytest.raises(UnsafePathError):
        safe_join(root, "up/file.bin")


def test_safe_join_follows_symlinks_that_stay_inside_the_destination(root):
    (root / "real").mkdir()
    (root / "alias").symlink_to("real")
    assert safe_join(root, "alias/file.bin") == root / "alias" / "file.bin"


def test_safe_join_allows_a_destination_that_is_itself_a_symlink(tmp_path, root):
    (tmp_path / "link").symlink_to(root)
    (root / "sub").mkdir()
    assert safe_join(tmp_path / "link", "sub/f") == tmp_path / "link" / "sub" / "f"


# -- place


def test_copy_makes_an_independent_writable_file(blob, root):
    dest = root / "a" / "b" / "weights.bin"
    assert place(blob, dest, "copy") == "copy"
    assert dest.read_bytes() == blob.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) & 0o200
    assert not os.path.samefile(dest, blob)
    dest.write_bytes(b"edited")
    assert blob.read_bytes() == b"locked bytes\n"


def test_auto_clones_where_the_filesystem_can_and_copies_elsewhere(blob, root):
    dest = root / "f.bin"
    used = place(blob, dest, "auto")
    assert used == ("reflink" if can_reflink(root) else "copy")
    assert dest.read_bytes() == blob.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) & 0o200


def test_explicit_reflink_clones_or_says_clearly_that_it_cannot(blob, root):
    dest = root / "f.bin"
    if can_reflink(root):
        assert place(blob, dest, "reflink") == "reflink"
        assert dest.read_bytes() == blob.read_bytes()
        return
    with pytest.raises(UsageError, match="'auto'"):
        place(blob, dest, "reflink")
    assert not dest.exists() and temp_files(root) == []


def test_hardlink_shares_the_blobs_inode_and_its_read_only_mode(blob, root):
    dest = root / "f.bin"
    assert place(blob, dest, "hardlink") == "hardlink"
    assert os.path.samefile(dest, blob)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444
    if not IS_ROOT:  # root ignores file modes
        with pytest.raises(PermissionError):
            dest.open("r+b")


def test_hardlinking_again_over_the_same_link_leaves_no_temp_file(blob, root):
    dest = root / "f.bin"
    place(blob, dest, "hardlink")
    place(blob, dest, "hardlink")  # rename(2) is a no-op between links of one inode
    assert os.path.samefile(dest, blob) and temp_files(root) == []


def test_hardlink_falls_back_to_copy_across_filesystems(blob):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(blob).st_dev:
        pytest.skip("needs a second filesystem")
    folder = Path(tempfile.mkdtemp(dir=other))
    try:
        assert place(blob, folder / "f.bin", "hardlink") == "copy"
        assert (folder / "f.bin").read_bytes() == blob.read_bytes()
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("mode", ["copy", "auto", "hardlink"])
def test_placing_replaces_an_existing_file_atomically(blob, root, mode):
    dest = root / "f.bin"
    dest.write_bytes(b"old content")
    with open(dest, "rb") as reader_of_the_old_file:
        place(blob, dest, mode)
        assert reader_of_the_old_file.read() == b"old content"  # a new inode took the name
    assert dest.read_bytes() == blob.read_bytes()
    assert temp_files(root) == []


def test_a_folder_in_the_way_is_refused_clearly_and_left_alone(blob, root):
    (root / "f.bin" / "inside").mkdir(parents=True)
    with pytest.raises(UsageError, match="folder is in the way"):
        place(blob, root / "f.bin", "copy")
    assert (root / "f.bin" / "inside").is_dir() and temp_files(root) == []


def test_a_file_in_the_way_of_a_folder_is_refused_clearly(blob, root):
    (root / "a").write_bytes(b"not a folder")
    with pytest.raises(UsageError, match="file is in the way"):
        place(blob, root / "a" / "b" / "f.bin", "copy")


def test_known_folders_are_remembered_across_calls(blob, root):
    made: set[Path] = set()
    for i in range(3):
        place(blob, root / "deep" / "er" / f"{i}.bin", "copy", made_dirs=made)
    assert made == {root / "deep" / "er"}
    assert sorted(os.listdir(root / "deep" / "er")) == ["0.bin", "1.bin", "2.bin"]


def test_long_file_names_still_fit_their_temp_name(blob, root):
    dest = root / ("é" * 120 + ".bin")  # 244 bytes: the longest names filesystems allow
    assert place(blob, dest, "copy") == "copy"
    assert dest.read_bytes() == blob.read_bytes()


# -- leftovers and removal


def test_temp_files_of_killed_runs_are_cleaned_and_live_ones_kept(root):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (root / "a").mkdir()
    killed = root / "a" / f".f.bin.wbsync-{dead_pid}-0123abcd.tmp"
    live = root / f".g.bin.wbsync-{os.getpid()}-0123abcd.tmp"
    unrelated = root / ".notes.wbsync-draft.tmp"
    for path in (killed, live, unrelated):
        path.write_bytes(b"partial")
    assert clean_temp_files(root) == 1
    assert not killed.exists() and live.exists() and unrelated.exists()


def test_remove_placed_prunes_the_folders_it_empties_up_to_the_root(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.bin").write_bytes(b"x")
    remove_placed(root, "a/b/f.bin")
    assert root.is_dir() and os.listdir(root) == []


def test_remove_placed_keeps_folders_that_still_hold_files(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.bin").write_bytes(b"x")
    (root / "a" / "keep.txt").write_bytes(b"mine")
    remove_placed(root, "a/b/f.bin")
    assert sorted(os.listdir(root / "a")) == ["keep.txt"]


def test_remove_placed_never_removes_the_root(root):
    (root / "f.bin").write_bytes(b"x")
    remove_placed(root, "f.bin")
    assert root.is_dir()


def test_remove_placed_accepts_a_file_that_is_already_gone(root):
    (root / "a").mkdir()
    remove_placed(root, "a/f.bin")
    assert not (root / "a").exists()


def test_remove_placed_refuses_unsafe_paths(root, tmp_path):
    victim = tmp_path / "project" / "precious.txt"
    victim.write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        remove_placed(root, "../precious.txt")
    assert victim.exists()


def test_remove_placed_leaves_a_folder_that_now_stands_where_the_file_was(root):
    (root / "f.bin").mkdir()
    (root / "f.bin" / "user.txt").write_bytes(b"mine")
    remove_placed(root, "f.bin")
    assert (root / "f.bin" / "user.txt").exists()
