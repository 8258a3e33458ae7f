"""Whose content store this is: the rule ssh applies to ``~/.ssh`` and git to ``safe.directory``.

The store's blobs are trusted by their size and a fixed mtime, without re-hashing (see
``wbsync.store.blobs``). That is only sound while nobody else can write into the store: another
local user who creates it first (a store in ``/tmp``), or who can write into a group- or
world-writable folder of it, could leave a same-size blob with the "verified" mtime, and every
sync would place their bytes. So:

* A store of one's own: its folders are owned by this user and not writable by group or others
  (a user-private group, the Debian default with umask 002, counts as the user). Else refused,
  exit 2, with the fix.
* A store shared on purpose (a team's store on NFS): ``WBSYNC_SHARED_STORE=1``, or a file named
  ``SHARED`` its owner put in the store's folder. Group-writable folders and other users' files
  are accepted, never writable by others, and every blob is re-hashed before its first use in
  each process: its mtime proves nothing there.
* A blob owned by another user, writable by group or others, or in a fan-out folder that is,
  is re-hashed before use, whatever the store's mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wbsync.core import settings
from wbsync.core.errors import UsageError

MARKER = "SHARED"
_FOLDERS = ("", "blobs", "tmp", "locks", "lockfiles")


class UntrustedStoreError(UsageError):
    """The store (or one of its folders) could be written by someone else (exit 2)."""


def shared_on_purpose(root: Path) -> bool:
    if settings.flag("WBSYNC_SHARED_STORE"):
        return True
    try:
        marker, folder = os.lstat(root / MARKER), os.lstat(root)
    except OSError:
        return False
    return stat.S_ISREG(marker.st_mode) and marker.st_uid == folder.st_uid  # put there by the store's owner


def check_store(root: Path) -> bool:
    """Raise UntrustedStoreError for a store someone else could write into; returns whether it is
    shared on purpose (then every blob is re-hashed before its first use)."""
    shared = shared_on_purpose(root)
    for name in _FOLDERS:
        path = root / name if name else root
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        problem = folder_problem(st, shared)
        if problem is not None:
            raise UntrustedStoreError(_message(root, path, problem, shared))
    return shared


def folder_problem(st: os.stat_result, shared: bool) -> str | None:
    if stat.S_ISLNK(st.st_mode) and st.st_uid != os.geteuid():
        return f"is a symlink owned by another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and shared):
        return f"is writable by every user (mode {stat.S_IMODE(st.st_mode):o})"
    if shared:
        return None
    if st.st_uid != os.geteuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWGRP and not _private_group(st):
        return f"is writable by its group (mode {stat.S_IMODE(st.st_mode):o}, group {st.st_gid})"
    return None


def blob_untrusted(st: os.stat_result) -> bool:
    """A blob another user owns or could rewrite: its mtime proves nothing."""
    return st.st_uid != os.geteuid() or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _private_group(st: os.stat_result) -> bool:
    """The owner's own group (no other members, named like the owner): group-writable is owner-writable."""
    try:
        import grp
        import pwd

        group, owner = grp.getgrgid(st.st_gid), pwd.getpwuid(st.st_uid)
    except (ImportError, KeyError):
        return False
    return not group.gr_mem and group.gr_name == owner.pw_name and owner.pw_gid == st.st_gid


def _message(root: Path, path: Path, problem: str, shared: bool) -> str:
    if shared:
        fix = f"run `chmod o-w {path}` (a shared store may be group-writable, never writable by every user)"
    else:
        fix = (f"use a store of your own: unset WBSYNC_CACHE_DIR (the default is in your home folder) or point it at "
               f"a folder you own, or make this one yours (`chown -R $(id -u) {root}` and `chmod -R go-w {root}`). "
               f"A store shared on purpose (a team's, on NFS): set WBSYNC_SHARED_STORE=1, or have its owner create "
               f"{root / MARKER}; wbsync then re-hashes every blob before using it")
    return (f"{path}: the content store {problem}, so someone else could put bytes in it that wbsync would trust "
            f"without re-hashing. wbsync refuses it. Fix: {fix}.")
