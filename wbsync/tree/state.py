"""What this project's last sync placed: per entry, per file, (size, mtime_ns, inode, device, digest).

A file is trusted without re-hashing only while its size, mtime, inode and device still match
what was recorded when wbsync placed (or verified) it; anything else is re-hashed. The state is
evidence of what wbsync placed, never proof on its own: ``wbsync.tree.ownership`` decides, and
requires the file on disk to be the very file recorded here (same inode on the same device).

Lives in ``<project>/.wbsync/state.json`` (with a ``.gitignore`` of ``*`` so it never gets
committed), next to the manifest, so it follows the checkout. Each file is one JSON array,
``[size, mtime_ns, inode, digest, device]``; states written before the device was recorded
lack the last item and keep working (the inode alone then identifies the file).

A sync that changes a few files of a large entry (a version move of a dataset) does not
rewrite a million records: it writes ``.wbsync/state-delta.json``, the records it changed
(``null`` for a file no longer recorded), tied to the identity of the ``state.json`` it
amends. Reading applies it; a delta for another ``state.json`` (or a damaged one) is ignored,
which is safe: files it recorded are re-hashed, files it dropped are no longer there. The next
full write of ``state.json`` folds it in and deletes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import Any, Iterator, Mapping

from wbsync.core import settings
from wbsync.core.atomic import write_atomic
from wbsync.core.errors import UsageError, local_io_error
from wbsync.core.placed import Delta, EntryState, Observed, PlacedFile, Stat, State
from wbsync.core.safeio import STATE_LIMIT, open_regular, read_regular

STATE_DIR = ".wbsync"
DELTA = "state-delta.json"
#: Records a delta may hold (``WBSYNC_STATE_DELTA_MAX`` overrides); past this, a sync rewrites
#: the whole state. The delta is read whole by every full plan and rewritten whole by every
#: move: 200,000 records read in ~0.5 s, a fifth of a million-file state.
DELTA_MAX = 200_000
def state_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / STATE_DIR / "state.json"


def delta_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / STATE_DIR / DELTA


def delta_max() -> int:
    return settings.count("WBSYNC_STATE_DELTA_MAX")


def load_state(root: str | os.PathLike[str]) -> State:
    """The recorded state, or an empty one when missing or unreadable (then everything is re-hashed,
    which is slow but safe; a damaged state file must never stop a sync). A ``.wbsync`` that is
    a symlink is not read: its state is not this project's."""
    try:
        if os.path.islink(Path(root) / STATE_DIR):
            return State()
        with os.fdopen(open_regular(state_path(root), os.O_RDONLY), "rb") as fh:
            base = _identity(os.fstat(fh.fileno()))
            if os.fstat(fh.fileno()).st_size > STATE_LIMIT:  # not one wbsync wrote
                return State()
            state = state_from_json(json.loads(fh.read(STATE_LIMIT + 1)))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return State()
    apply_delta(state, read_delta(root, base))
    return state


def read_delta(root: str | os.PathLike[str], base: list[int]) -> Delta:
    """The delta that amends the ``state.json`` of identity ``base``; empty when there is none,
    when it amends another one, or when it cannot be read."""
    try:
        doc = json.loads(read_regular(delta_path(root), STATE_LIMIT))
        if doc.get("delta_version") != 1 or doc.get("base") != base:
            return {}
        return delta_from_json(doc["entries"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def apply_delta(state: State, delta: Delta) -> None:
    """Amend ``state`` in place. A delta only ever amends an entry the state has at the same path."""
    for name, (path, files) in delta.items():
        entry = state.entries.get(name)
        if entry is None or entry.path != path:
            continue
        for rel, placed in files.items():
            if placed is None:
                entry.files.pop(rel, None)
            else:
                entry.files[rel] = placed


def delta_from_json(entries: dict[str, Any]) -> Delta:
    delta: Delta = {}
    for name, e in entries.items():
        if type(e["path"]) is not str:
            raise ValueError("malformed path")
        files: dict[str, PlacedFile | None] = {}
        for p, f in e["files"].items():
            files[p] = None if f is None else _record(p, f)
        delta[name] = (e["path"], files)
    return delta


def delta_to_json(delta: Delta) -> dict[str, Any]:
    return {name: {"path": path, "files": {p: None if f is None else [*f.stat[:3], f.digest, *f.stat[3:]]
                                           for p, f in sorted(files.items())}}
            for name, (path, files) in sorted(delta.items())}


def write_state_delta(root: str | os.PathLike[str], delta: dict[str, Any]) -> None:
    """Record ``delta`` (its JSON form, ``delta_to_json``) on top of the current state and the
    delta already there. Repeating it is harmless (a journal replayed after a kill writes it
    again)."""
    base = _identity(os.stat(state_path(root)))
    merged = read_delta(root, base)
    for name, (path, files) in delta_from_json(delta).items():
        known = merged.get(name)
        if known is None or known[0] != path:
            merged[name] = (path, dict(files))
        else:
            known[1].update(files)
    doc = {"delta_version": 1, "base": base, "entries": delta_to_json(merged)}
    write_atomic(delta_path(root), json.dumps(doc, separators=(",", ":")).encode())


def delta_size(root: str | os.PathLike[str]) -> int:
    """Records in the delta that amends the current ``state.json`` (0 when there is none)."""
    try:
        base = _identity(os.stat(state_path(root)))
    except OSError:
        return 0
    return sum(len(files) for _path, files in read_delta(root, base).values())


def state_identity(root: str | os.PathLike[str]) -> list[int]:
    """What changes whenever the recorded state does: the identity of ``state.json`` and of its
    delta (raises OSError when there is no state)."""
    ident = _identity(os.stat(state_path(root)))
    try:
        ident += _identity(os.stat(delta_path(root)))
    except FileNotFoundError:
        pass
    return ident


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _record(p: Any, f: Any) -> PlacedFile:
    stat = tuple(f[:3]) + tuple(f[4:5])  # the device, when recorded, is the fifth item
    if not all(type(n) is int for n in stat) or type(f[3]) is not str or type(p) is not str:
        raise ValueError(f"malformed record for {p!r}")
    return PlacedFile(stat, f[3])


def state_from_json(data: dict[str, Any]) -> State:
    entries = {}
    for name, e in data["entries"].items():
        files = {p: _record(p, f) for p, f in e["files"].items()}
        if type(e["path"]) is not str:
            raise ValueError("malformed path")
        entries[name] = EntryState(e["path"], files)
    return State(entries)


def state_pieces(state: State) -> Iterator[bytes]:
    """``state_to_json``'s document as JSON text (the same bytes ``json.dumps`` with compact
    separators gives), in pieces of a few hundred files: a million-file state is never one
    string, nor one dict of lists, in memory."""
    encode = json.JSONEncoder(separators=(",", ":")).encode
    yield b'{"state_version":1,"entries":{'
    for i, (name, e) in enumerate(sorted(state.entries.items())):
        batch: list[str] = [f'{"," if i else ""}{encode(name)}:{{"path":{encode(e.path)},"files":{{']
        for j, p in enumerate(sorted(e.files)):
            f = e.files[p]
            batch.append(f'{"," if j else ""}{encode(p)}:{encode([*f.stat[:3], f.digest, *f.stat[3:]])}')
            if len(batch) >= 500:
                yield "".join(batch).encode()
                batch = []
        batch.append("}}")
        yield "".join(batch).encode()
    yield b"}}"


def state_to_json(state: State) -> dict[str, Any]:
    return {
        "state_version": 1,
        "entries": {
            name: {"path": e.path, "files": {p: [*f.stat[:3], f.digest, *f.stat[3:]] for p, f in sorted(e.files.items())}}
            for name, e in sorted(state.entries.items())
        },
    }


def check_state_dir(root: str | os.PathLike[str]) -> Path:
    """``<root>/.wbsync``, created if missing; refused (exit 2) when it is a symlink or not a
    folder, so that no state, lock or journal is ever written outside the project."""
    folder = Path(root) / STATE_DIR
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        try:
            folder.mkdir()
        except FileExistsError:  # another sync made it meanwhile
            pass
        except OSError as exc:
            raise local_io_error(exc, folder) from None
        return check_state_dir(root)
    if S_ISLNK(st.st_mode) or not S_ISDIR(st.st_mode):
        kind = "a symlink" if S_ISLNK(st.st_mode) else "not a folder"
        raise UsageError(f"{folder} is {kind}: wbsync keeps its state there and never writes it outside the "
                         f"project. Remove {folder} (wbsync recreates it) and run again.")
    return folder


def save_state(root: str | os.PathLike[str], state: State) -> None:
    write_state_document(root, state)


def write_state_document(root: str | os.PathLike[str], data: dict[str, Any] | State) -> None:
    """Write the state: a State (streamed, see ``state_pieces``) or its JSON document."""
    folder = check_state_dir(root)
    try:
        ignore = folder / ".gitignore"
        if not ignore.exists():  # atomic too: an empty one (a full disk) would never be rewritten
            write_atomic(ignore, b"# Created by wbsync: local state, never commit it.\n*\n")
        text = state_pieces(data) if isinstance(data, State) else json.dumps(data, separators=(",", ":")).encode()
        write_atomic(state_path(root), text)
        delta_path(root).unlink(missing_ok=True)  # folded in (and tied to the old state.json anyway)
    except OSError as exc:
        raise local_io_error(exc, state_path(root)) from None


def stat_of(path: str | os.PathLike[str]) -> Stat | None:
    """(size, mtime_ns, inode, device) of a regular file; None when missing or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def observe(path: str) -> Observed:
    """What stands at a destination path: a regular file's stat, None when nothing does, or what
    is in the way ("folder", "symlink", "other", or "blocked": a file stands where a folder of
    the path should be)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "blocked"
    except OSError:
        return None  # unreadable: placing it will say why
    if S_ISREG(st.st_mode):
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if S_ISDIR(st.st_mode):
        return "folder"
    return "symlink" if S_ISLNK(st.st_mode) else "other"


class Disk(Mapping[str, Observed]):
    """What stands at each project-relative destination, observed (one lstat) when the planner
    asks for it: no dict of every locked path and its stat, whose size grows with the file count."""

    def __init__(self, root: Path) -> None:
        # Plain string concatenation: pathlib costs ~20 us per path, a third of a 10k-file no-op.
        self.prefix = f"{root}{os.sep}"

    def __getitem__(self, dest: str) -> Observed:
        return observe(self.prefix + dest)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the tree is observed path by path, not listed")

    def __len__(self) -> int:
        raise TypeError("the tree is observed path by path, not counted")
