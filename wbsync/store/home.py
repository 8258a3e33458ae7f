"""Where the content store lives, checked before a command writes to it: a folder that cannot be
created or written is reported once, up front, naming WBSYNC_CACHE_DIR (the one setting that
moves it), rather than as a failed write of some file deep inside it."""

from __future__ import annotations

import os
from pathlib import Path

from wbsync.core.errors import LocalIOError
from wbsync.store.blobs import Store, default_store_dir


def writable_store() -> Store:
    """The store at its configured place, its folder created; LocalIOError (exit 2) when it
    cannot be created or written."""
    root = default_store_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(unusable_store_message(root, exc.strerror or str(exc))) from None
    if not os.access(root, os.W_OK):  # also false on a read-only filesystem, even for root
        raise LocalIOError(unusable_store_message(root, "not writable"))
    return Store(root)


def unusable_store_message(root: Path, reason: str) -> str:
    override = os.environ.get("WBSYNC_CACHE_DIR")
    if override:
        why = "the folder WBSYNC_CACHE_DIR names"
        fix = "Point WBSYNC_CACHE_DIR at a folder you can write"
    else:
        why = "WBSYNC_CACHE_DIR is unset, so it sits under your home or XDG_CACHE_HOME"
        fix = "Set WBSYNC_CACHE_DIR to a folder you can write (e.g. `export WBSYNC_CACHE_DIR=/tmp/wbsync-cache`)"
    return (f"cannot use the content store at {root}: {reason} ({why}). {fix}, or fix the folder's permissions; "
            "then run again.")
