"""Putting store blobs into a project's folders: safely named, atomically, cheaply.

Every file arrives under a temporary name in its own folder
(``.<name>.wbsync-<pid>-<token>.tmp``) and is renamed over the destination, so a reader
sees the old file or the new one, never a half-written one, and a killed run leaves only
temp files that ``clean_temp_files`` removes.

Link modes, what each costs on disk, and what an in-place edit of a placed file does:

* ``copy``: a second full copy of the bytes. The project file is independent: editing it
  is safe and leaves the store untouched.
* ``reflink``: a copy-on-write clone (btrfs, XFS with reflink, bcachefs, OCFS2): no extra
  disk until the file is edited, and an edit is safe (the filesystem copies the changed
  blocks; the blob stays intact). Where the filesystem cannot clone, an explicit
  ``reflink`` raises UsageError rather than silently spending the disk a copy costs.
* ``auto`` (the default): reflink where the filesystem can clone, else copy.
* ``hardlink``: no extra disk at all: the project file *is* the blob (same inode), and so
  read-only like every blob. An editor that writes in place fails with "permission denied"
  instead of silently corrupting the content every project shares; one that writes a new
  file and renames it over (most editors, ``git checkout``, atomic writers) just breaks the
  link, which is harmless. Falls back to copy across filesystems or at the link limit.

Copies and clones get mode 0o644 (less the umask), never the blob's read-only mode.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wbsync.core.errors import UnsafePathError, UsageError
from wbsync.core.reserved import reserved_segment
from wbsync.core.safeio import open_regular

LinkMode = Literal["auto", "copy", "reflink", "hardlink"]
LINK_MODES: tuple[LinkMode, ...] = ("auto", "copy", "reflink", "hardlink")

FILE_MODE = 0o644
# FICLONE from linux/fs.h: _IOW(0x94, 9, int). Elsewhere ioctl fails with ENOTTY.
FICLONE = 0x40049409
# What ioctl(FICLONE) and copy_file_range answer when the filesystem (or a sandbox's
# seccomp filter, hence EPERM) can't do it; anything else is a real I/O error.
_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTTY,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOSYS,
    errno.EPERM,
}
# Hardlinks fail across filesystems (EXDEV) and past the per-inode limit (ext4: 65,000).
_NO_HARDLINK = {errno.EXDEV, errno.EMLINK}
# The temp names place() gives: .<name>.wbsync-<pid>-<8 hex>.tmp
_TEMP_NAME = re.compile(r"\..*\.wbsync-(\d+)-[0-9a-f]{8}\.tmp", re.DOTALL)
_DRIVE = re.compile(r"[A-Za-z]:")
_PATH_MAX = 4096 if not hasattr(os, "pathconf") else os.pathconf("/", "PC_PATH_MAX")  # with its NUL


def safe_join(root: Path, rel: str, context: str = "") -> Path:
    """``root / rel`` for an artifact path ``rel``, or UnsafePathError if it could land
    anywhere but inside ``root``. ``context`` (e.g. the artifact reference) goes in the message.

    Symlinks already on disk between ``root`` and the file are followed only if they stay
    inside ``root``; ``root`` itself may be a symlink (a user's choice, not the artifact's).
    """
    problem = _path_problem(rel)
    parts = rel.split("/")
    if problem is None:
        problem = _symlink_escape(root, parts[:-1])
    joined = root.joinpath(*parts)
    if problem is None and len(os.fsencode(joined)) >= _PATH_MAX:  # ENAMETOOLONG, found before any write
        problem = f"it is too long: with the destination folder it exceeds the system's {_PATH_MAX} bytes"
    if problem is not None:
        where = f" in {context}" if context else ""
        raise UnsafePathError(
            f"unsafe file path {rel!r}{where}: {problem}. wbsync never writes outside the "
            "destination folder; leave the file out with `exclude:` in the manifest entry, "
            "or fix the artifact."
        )
    return joined


def _path_problem(rel: str) -> str | None:
    """Why the spelling of ``rel`` alone is unsafe, or None."""
    if not rel:
        return "it is empty"
    if "\0" in rel:
        return "it contains a NUL character"
    if not rel.isascii() and any("\ud800" <= c <= "\udfff" for c in rel):
        return "it is not valid Unicode (a lone surrogate)"
    if "\\" in rel:
        return "it contains a backslash (a Windows separator)"
    if rel.startswith("/"):
        return "it is absolute"
    if _DRIVE.match(rel):
        return "it starts with a drive letter"
    for segment in rel.split("/"):
        if not segment:
            return "it has an empty segment ('//', or a '/' at the end)"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
    # Checked when the lock is read and when an artifact is locked; again here, where every
    # write and removal passes, for lists that bypass both (a large entry's stored listing).
    reserved = reserved_segment(rel)
    if reserved is not None:
        return f"{reserved[0]!r} is reserved for {reserved[1]} (wbsync never writes into git's or its own folder)"
    return None


def _symlink_escape(root: Path, folders: list[str]) -> str | None:
    """Why an existing symlink among the folders below ``root`` leads outside it, or None."""
    current = os.fspath(root)  # plain strings: this runs for every file of every sync
    for name in folders:
        current = os.path.join(current, name)
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return None  # nothing deeper exists yet (or a file is in the way: place says so)
        if stat.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(current))
            if not target.is_relative_to(os.path.realpath(root)):
                return f"{current} is a symlink to {target}, outside {root}"
    return None


@dataclass(frozen=True)
class Staged:
    """A file's content written under a temp name next to its destination, not yet renamed."""

    temp: Path
    dest: Path
    mode: str  # the link mode actually used


def place(
    blob: Path, dest: Path, mode: LinkMode = "auto", *, made_dirs: set[Path] | None = None
) -> str:
    """Put ``blob``'s content at ``dest`` atomically; returns the mode actually used.

    ``made_dirs``: folders known to exist, shared across the calls of one sync, so placing
    10,000 files does not ask the filesystem for the same folder 10,000 times.
    """
    staged = stage(blob, dest, mode, made_dirs=made_dirs)
    commit_staged(staged)
    return staged.mode


def stage(
    blob: Path, dest: Path, mode: LinkMode = "auto", *, made_dirs: set[Path] | None = None
) -> Staged:
    """Write ``blob``'s content next to ``dest`` under a temp name (the slow part: create and
    copy). A sync stages every file of an entry before it renames any, so a crash or a full
    disk while copying leaves the entry as it was."""
    _make_parent(dest.parent, made_dirs)
    temp = dest.with_name(f".{dest.name[:40]}.wbsync-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        return Staged(temp, dest, _materialize(blob, temp, mode))
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def commit_staged(staged: Staged) -> None:
    """Rename a staged file onto its destination (atomic; replaces an existing file)."""
    try:
        os.replace(staged.temp, staged.dest)
        if staged.mode == "hardlink":
            # rename(2): if both names are links to one inode, it does nothing and both stay.
            staged.temp.unlink(missing_ok=True)
    except IsADirectoryError:
        staged.temp.unlink(missing_ok=True)
        raise UsageError(f"cannot place {staged.dest}: a folder is in the way; move it aside") from None
    except BaseException:
        staged.temp.unlink(missing_ok=True)
        raise
    # No fsync of destination files: a file torn by a power loss no longer matches its recorded
    # size and mtime, so the next sync re-hashes it and re-places it from the store.


def discard_staged(staged: Staged) -> None:
    staged.temp.unlink(missing_ok=True)


def _make_parent(folder: Path, made_dirs: set[Path] | None) -> None:
    if made_dirs is not None and folder in made_dirs:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"cannot create folder {folder}: a file is in the way; move it aside"
        ) from None
    if made_dirs is not None:
        made_dirs.add(folder)


def _materialize(blob: Path, temp: Path, mode: LinkMode) -> str:
    """Write ``blob``'s content at the fresh name ``temp``; returns the mode used."""
    if mode == "hardlink":
        try:
            os.link(blob, temp)
            return "hardlink"
        except OSError as e:
            if e.errno not in _NO_HARDLINK:
                raise
        mode = "copy"
    src = open_regular(blob, os.O_RDONLY)  # a blob that is a FIFO or a link is never read
    try:
        dst = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            return _clone_or_copy(src, dst, mode, temp)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _clone_or_copy(src: int, dst: int, mode: LinkMode, temp: Path) -> str:
    if mode in ("auto", "reflink"):
        try:
            fcntl.ioctl(dst, FICLONE, src)
            return "reflink"
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            if mode == "reflink":
                raise UsageError(
                    f"cannot reflink into {temp.parent}: the filesystem cannot clone files "
                    f"({e.strerror}); use link mode 'auto' (reflink, else copy) or 'hardlink'"
                ) from None
    _copy(src, dst)
    return "copy"


def _copy(src: int, dst: int) -> None:
    """Copy from the current offsets to the end, inside the kernel where it can (Linux)."""
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src, dst, 1 << 30):
                pass
            return
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
    # Both offsets advanced together, so this loop continues wherever the kernel stopped.
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


def remove_placed(root: Path, rel: str) -> None:
    """Remove a file wbsync placed, then the folders that leaves empty, up to ``root``."""
    path = safe_join(root, rel)
    try:
        path.unlink(missing_ok=True)
    except IsADirectoryError:  # a folder stands there now: the user's, not ours
        return
    folder = path.parent
    while folder != root:
        try:
            folder.rmdir()
        except OSError:  # not empty (ENOTEMPTY/EEXIST) or already gone: stop climbing
            return
        folder = folder.parent


def clean_temp_files(folder: Path, recursive: bool = True) -> int:
    """Remove temp files that killed runs left under ``folder`` (in it only, unless
    ``recursive``); returns how many.

    A temp file whose PID is still alive may belong to a run in progress and is kept.
    """
    removed = 0
    for parent, _dirs, files in os.walk(folder):  # does not follow symlinked folders
        if not recursive:
            _dirs.clear()
        for name in files:
            match = _TEMP_NAME.fullmatch(name)
            if match and not _pid_alive(int(match.group(1))):
                Path(parent, name).unlink(missing_ok=True)  # another cleaner may be faster
                removed += 1
    return removed


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one ``stage`` gives (a sync's temporary file)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
