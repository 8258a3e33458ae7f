"""Placing store blobs into project folders: safe paths, link modes, atomic replacement, cleanup."""

import fcntl
import errno
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wbsync.core.errors import UnsafePathError, UsageError
from wbsync.tree.place import FICLONE, clean_temp_files, place, remove_placed, safe_join

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Tries to open a file for writing as another (unprivileged) user; prints what happened.
OPEN_FOR_WRITING = """
import os, sys
os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]))
try:
    open(sys.argv[3], "r+b").close()
    print("opened")
except PermissionError:
    print("denied")
"""


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
def cow_fs(tmp_path) -> Iterator[Path]:
    """A loop-mounted filesystem that can clone files: XFS with reflink, else btrfs (skipped,
    saying why, where neither mkfs.xfs nor mkfs.btrfs is installed or mounting is not allowed)."""
    mount = tmp_path / "cow"
    mount.mkdir()
    image = tmp_path / "cow.img"
    why = _mount_cow_fs(image, mount)
    if why:
        pytest.skip(f"the reflink path needs a filesystem that can clone files: {why}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        image.unlink(missing_ok=True)


def _mount_cow_fs(image: Path, mount: Path) -> str:
    """Make and loop-mount an XFS (reflink) or btrfs image at ``mount``; "" or why not."""
    if not IS_ROOT:
        return "loop-mounting an image needs root (CI runs as root)"
    tried = []
    for mkfs, size, options in (("mkfs.xfs", "300M", ["-q", "-m", "reflink=1"]), ("mkfs.btrfs", "120M", ["-q"])):
        tool = shutil.which(mkfs) or shutil.which(mkfs, path="/usr/sbin:/sbin")
        if tool is None:
            tried.append(f"{mkfs} is not installed (Debian: xfsprogs, btrfs-progs)")
            continue
        image.unlink(missing_ok=True)
        with open(image, "wb") as fh:
            fh.truncate(int(size[:-1]) << 20)  # sparse: costs no disk until written
        made = subprocess.run([tool, *options, str(image)], capture_output=True, text=True)
        mounted = made.returncode == 0 and subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
        if mounted and mounted.returncode == 0:
            return ""
        tried.append(f"{mkfs}: {(made.stderr or (mounted and mounted.stderr) or 'failed').strip()[:200]}")
    return "; ".join(tried)


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


def test_reflink_asks_the_filesystem_to_clone_and_reports_its_answer(blob, root):
    """A second guard of the reflink path where no filesystem here can clone (the cow_fs test
    needs mkfs.xfs or mkfs.btrfs): the clone request itself reaches the filesystem. A wrong
    ioctl number, or none, is answered ENOTTY by every filesystem; a real FICLONE is answered by
    the filesystem's own clone code (EOPNOTSUPP on ext4 and tmpfs), or clones."""
    dest = root / "f.bin"
    if can_reflink(root):
        assert place(blob, dest, "reflink") == "reflink"
        return
    with pytest.raises(UsageError) as caught:
        place(blob, dest, "reflink")
    assert str(root) in caught.value.message and os.strerror(errno.ENOTTY) not in caught.value.message
    assert not dest.exists() and temp_files(root) == []


def test_reflink_across_filesystems_is_refused_by_the_kernels_clone_check_and_auto_copies(blob):
    """FICLONE between two mounts fails with EXDEV in the kernel's clone ioctl before any
    filesystem is asked: a behaviour only the real FICLONE request shows, on any filesystem."""
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(blob).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp folder")
    folder = Path(tempfile.mkdtemp(dir=other))
    try:
        with pytest.raises(UsageError) as caught:
            place(blob, folder / "f.bin", "reflink")
        assert os.strerror(errno.EXDEV) in caught.value.message and "'auto'" in caught.value.message
        assert temp_files(folder) == []
        assert place(blob, folder / "f.bin", "auto") == "copy"
        assert (folder / "f.bin").read_bytes() == blob.read_bytes()
    finally:
        shutil.rmtree(folder)


def test_hardlink_shares_the_blobs_inode_and_its_read_only_mode(blob, root):
    dest = root / "f.bin"
    assert place(blob, dest, "hardlink") == "hardlink"
    assert os.path.samefile(dest, blob)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444


def test_an_in_place_edit_of_a_hardlinked_file_is_refused(tmp_path):
    """The blob's read-only mode protects the store. Root ignores file modes, so as root (as in
    CI) the edit is tried by a child process that has dropped to the unprivileged user nobody."""
    folder = Path(tempfile.mkdtemp(prefix="wbsync-place-"))  # not under tmp_path (mode 0700)
    try:
        folder.chmod(0o755)
        blob = folder / "blob"
        blob.write_bytes(b"locked bytes\n")
        blob.chmod(0o444)
        dest = folder / "f.bin"
        if not IS_ROOT:
            assert place(blob, dest, "hardlink") == "hardlink"
            with pytest.raises(PermissionError):
                dest.open("r+b")
            return
        nobody = pwd.getpwnam("nobody")
        os.chown(blob, nobody.pw_uid, nobody.pw_gid)  # nobody's own file: only its mode can refuse
        assert place(blob, dest, "hardlink") == "hardlink"
        proc = subprocess.run([sys.executable, "-c", OPEN_FOR_WRITING, str(nobody.pw_uid),
                               str(nobody.pw_gid), str(dest)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "denied"
        assert blob.read_bytes() == b"locked bytes\n"
    finally:
        shutil.rmtree(folder)


def test_reflink_clones_on_a_filesystem_that_can_and_an_edit_leaves_the_blob_intact(cow_fs):
    blob = cow_fs / "store" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(b"locked bytes\n" * 1000)
    blob.chmod(0o444)
    for mode in ("auto", "reflink"):
        dest = cow_fs / "project" / f"{mode}.bin"
        assert place(blob, dest, mode) == "reflink"
        assert dest.read_bytes() == blob.read_bytes() and not os.path.samefile(dest, blob)
        assert stat.S_IMODE(dest.stat().st_mode) & 0o200  # writable, unlike the blob
        with open(dest, "r+b") as fh:  # an in-place edit: the filesystem copies the block
            fh.write(b"EDITED")
        assert blob.read_bytes() == b"locked bytes\n" * 1000
    assert temp_files(cow_fs) == []


def test_hardlinking_again_over_the_same_link_leaves_no_temp_file(blob, root):
    dest = root / "f.bin"
    place(blob, dest, "hardlink")
    place(blob, dest, "hardlink")  # rename(2) is a no-op between links of one inode
    assert os.path.samefile(dest, blob) and temp_files(root) == []


def test_hardlink_falls_back_to_copy_across_filesystems(blob):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(blob).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp folder, to link across filesystems")
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
