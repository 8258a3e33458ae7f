"""What this project's last sync placed: per entry, per file, (size, mtime_ns, inode, digest).

A file is trusted without re-hashing only while its size, mtime and inode still match what was
recorded when wbsync placed (or verified) it; anything else is re-hashed. The state also tells
what wbsync owns: only files recorded here are ever removed.

Lives in ``<project>/.wbsync/state.json`` (with a ``.gitignore`` of ``*`` so it never gets
committed), next to the manifest, so it follows the checkout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from wbsync.atomic import write_atomic

STATE_DIR = ".wbsync"
Stat = tuple[int, int, int]  # size, mtime_ns, inode


@dataclass(frozen=True)
class PlacedFile:
    stat: Stat
    digest: str  # "<algorithm>:<base64>"


@dataclass
class EntryState:
    path: str
    files: dict[str, PlacedFile] = field(default_factory=dict)


@dataclass
class State:
    entries: dict[str, EntryState] = field(default_factory=dict)


def state_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / STATE_DIR / "state.json"


def load_state(root: str | os.PathLike[str]) -> State:
    """The recorded state, or an empty one when missing or unreadable (then everything is re-hashed,
    which is slow but safe; a damaged state file must never stop a sync)."""
    try:
        data = json.loads(state_path(root).read_bytes())
        entries = {
            name: EntryState(e["path"], {p: PlacedFile(tuple(f[:3]), f[3]) for p, f in e["files"].items()})
            for name, e in data["entries"].items()
        }
        return State(entries)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return State()


def save_state(root: str | os.PathLike[str], state: State) -> None:
    data = {
        "state_version": 1,
        "entries": {
            name: {"path": e.path, "files": {p: [*f.stat, f.digest] for p, f in sorted(e.files.items())}}
            for name, e in sorted(state.entries.items())
        },
    }
    folder = Path(root) / STATE_DIR
    try:
        folder.mkdir(exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():  # atomic too: an empty one (a full disk) would never be rewritten
            write_atomic(ignore, b"# Created by wbsync: local state, never commit it.\n*\n")
        write_atomic(state_path(root), json.dumps(data, separators=(",", ":")).encode())
    except OSError as exc:
        from wbsync.errors import local_io_error

        raise local_io_error(exc, state_path(root)) from None


def stat_of(path: str | os.PathLike[str]) -> Stat | None:
    """(size, mtime_ns, inode) of a regular file; None when missing or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)
