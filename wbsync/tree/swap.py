"""One sync, one swap: every staged file of every changed entry is renamed into place under a
journal, so that a sync killed between two renames is finished by the next command.

A sync first stages every new file under a temporary name next to its destination (the slow
part), decides every removal, and computes the state it will record. Then it writes the
journal, ``.wbsync/swap.json`` (atomically, fsynced), and carries it out:

1. rename each staged file onto its destination;
2. remove each file it listed, if the file is still exactly the one recorded (same size,
   mtime, inode and device: ``wbsync.core.placed.untouched``), and the folders that leaves empty;
3. write the new state (or, for a sync that changed a few files of a large entry, the state's
   delta: ``wbsync.tree.state``), then delete the journal.

Carrying a journal out is idempotent (a staged file that is gone was renamed already), so
the next ``sync`` or ``verify`` after a kill simply does it again (``complete``): the tree ends
all new, never a mix of the entries' old and new versions. While a journal exists,
``wbsync.path()`` refuses to hand out a directory. The journal is only trusted as far as it
can be checked: every destination must be a safe path in the project, every staged name one
wbsync gives, next to its destination.

Fault injection for tests and crash trials: ``WBSYNC_KILL_AFTER_RENAMES=N`` makes the process
kill itself (SIGKILL) right after the N-th rename of a swap.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wbsync.core import settings
from wbsync.core.errors import LocalIOError, UsageError, local_io_error
from wbsync.core.placed import untouched
from wbsync.core.safeio import STATE_LIMIT, open_regular, read_regular
from wbsync.tree.ownership import tracked_by_git, untrack_hint
from wbsync.tree.place import _TEMP_NAME, _path_problem, remove_placed, safe_join
from wbsync.tree.state import (
    STATE_DIR,
    Delta,
    State,
    check_state_dir,
    delta_from_json,
    delta_to_json,
    state_from_json,
    state_pieces,
    write_state_delta,
    write_state_document,
)

JOURNAL = "swap.json"
JOURNAL_VERSION = 1


def journal_path(root: Path) -> Path:
    return root / STATE_DIR / JOURNAL


def pending(root: Path) -> bool:
    """Whether a swap was started and not finished (one stat: the no-op path asks this)."""
    return os.path.lexists(journal_path(root))


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """One sync at a time per project: a second one waits here, then re-plans."""
    folder = check_state_dir(root)
    try:  # a committed sync.lock that is a link, a FIFO or a device is never opened through
        fh = os.fdopen(open_regular(folder / "sync.lock", os.O_RDWR | os.O_CREAT), "r+b")
    except OSError as exc:
        raise UsageError(f"{folder / 'sync.lock'}: cannot use it as the project's lock ({exc.strerror}). "
                         "Delete it and run again.") from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def complete_pending_swap(root: Path, destinations: tuple[str, ...], warnings: list[str] | None = None) -> bool:
    """Finish a swap a killed sync left (``verify`` asks before it looks); False if there was none."""
    if not pending(root):
        return False
    with project_lock(root):
        return complete(root, destinations, warnings)


def journal(root: Path, renames: list[tuple[str, str, bool]], removes: list[tuple[str, tuple[int, ...]]],
            state: State | Delta) -> dict[str, Any]:
    """Write the journal of a swap and return it for ``carry_out``: ``renames`` are (staged,
    destination, maybe the same inode) and ``removes`` (destination, recorded stat), all
    project-relative; ``state`` the state to record once done, or a Delta to record on top of
    the current one. Raises LocalIOError (and leaves no journal) when it cannot be written:
    nothing was changed yet."""
    doc: dict[str, Any] = {"journal_version": JOURNAL_VERSION, "renames": renames, "removes": removes}
    if isinstance(state, State):
        doc["state"] = state
    else:
        doc["state_delta"] = delta_to_json(state)
    _write_journal(root, _journal_pieces(renames, removes, state))
    return doc


def _journal_pieces(renames: list[tuple[str, str, bool]], removes: list[tuple[str, tuple[int, ...]]],
                    state: State | Delta) -> Iterator[bytes]:
    """The journal as compact JSON, written in pieces of 500 items: for a million files, one
    string of it (and json's own pieces while it builds that string) would be hundreds of MB."""
    encode = json.JSONEncoder(separators=(",", ":")).encode
    yield f'{{"journal_version":{JOURNAL_VERSION},"renames":['.encode()
    for at in range(0, len(renames), 500):
        yield (("," if at else "") + ",".join(encode(r) for r in renames[at:at + 500])).encode()
    yield b'],"removes":['
    for at in range(0, len(removes), 500):
        yield (("," if at else "") + ",".join(encode(r) for r in removes[at:at + 500])).encode()
    if isinstance(state, State):
        yield b'],"state":'
        yield from state_pieces(state)
    else:
        yield b'],"state_delta":' + json.dumps(delta_to_json(state), separators=(",", ":")).encode()
    yield b"}"


def complete(root: Path, destinations: tuple[str, ...], warnings: list[str] | None = None) -> bool:
    """Finish a swap a killed sync left; returns whether there was one. The caller holds the
    project lock, so the journal's writer is gone. ``destinations``: the lock's entry folders,
    the only places a journal may rename into. A journal git tracks came with a commit, not
    from a killed sync here: it is ignored, with a warning added to ``warnings``."""
    path = journal_path(root)
    if not pending(root):
        return False
    tracked = tracked_by_git(root)
    if f"{STATE_DIR}/{JOURNAL}" in tracked:
        if warnings is not None:
            warnings.append(f"ignoring {path}: git tracks it, so it came with a commit, not from a sync killed here. "
                            + untrack_hint(tracked))
        return False
    try:
        doc = json.loads(read_regular(path, STATE_LIMIT))
        _validate(root, doc, destinations)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: an interrupted sync left a journal wbsync cannot use ({exc}). Delete {path} "
                         "and run `wbsync sync`: it re-checks every file.") from None
    carry_out(root, doc)
    return True


def _write_journal(root: Path, pieces: Iterable[bytes]) -> None:
    folder = check_state_dir(root)
    temp = folder / f".{JOURNAL}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as fh:
            for piece in pieces:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())  # the renames below must never be on disk before the journal is
        os.replace(temp, folder / JOURNAL)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise local_io_error(exc, folder / JOURNAL) from None


def carry_out(root: Path, doc: dict[str, Any]) -> None:
    """Rename, remove, record the state, delete the journal; safe to repeat after a kill."""
    kill_after = settings.count("WBSYNC_KILL_AFTER_RENAMES")  # fault injection: only with WBSYNC_TESTING=1
    done = 0
    prefix = f"{root}{os.sep}"
    for temp, dest, same_inode in doc["renames"]:
        try:
            os.replace(prefix + temp, prefix + dest)
        except FileNotFoundError:
            continue  # renamed by the run this journal comes from
        except IsADirectoryError:
            raise UsageError(f"cannot finish the swap: a folder appeared at {dest}. Move it aside and run "
                             "`wbsync sync` to finish (the other files are in place).") from None
        except OSError as exc:
            raise _unfinished(exc, dest) from None
        if same_inode:  # rename(2) between two links of one inode does nothing: drop the temp name
            Path(prefix + temp).unlink(missing_ok=True)
        done += 1
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    for dest, stat in doc["removes"]:
        try:
            st = os.lstat(prefix + dest)
        except OSError:
            continue
        if untouched(tuple(stat), (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)):
            remove_placed(root, dest)
    if "state_delta" in doc:
        write_state_delta(root, doc["state_delta"])
    else:
        write_state_document(root, doc["state"])
    journal_path(root).unlink(missing_ok=True)


def _unfinished(exc: OSError, dest: str) -> LocalIOError:
    error = local_io_error(exc, dest)
    error.message += " The swap is journaled: `wbsync sync` finishes it."
    return error


def _validate(root: Path, doc: dict[str, Any], destinations: tuple[str, ...]) -> None:
    """The journal is local state, like state.json: check it names only safe places, and renames
    only into the lock's entry folders (a journal naming src/train.py is not one wbsync wrote)."""
    folders = tuple(f"{d}/" for d in destinations)
    if doc["journal_version"] != JOURNAL_VERSION:
        raise ValueError(f"journal version {doc['journal_version']!r}")
    for temp, dest, _same in doc["renames"]:
        for rel in (temp, dest):
            if _path_problem(rel) is not None:  # reserved names (.git, .wbsync) included
                raise ValueError(f"unsafe path {rel!r}")
        safe_join(root, dest)  # no symlink on the way leads outside the project
        if not dest.startswith(folders):
            raise ValueError(f"it renames onto {dest!r}, outside the folders the lock names")
        head, _, name = temp.rpartition("/")
        if head != dest.rpartition("/")[0] or not _TEMP_NAME.fullmatch(name):
            raise ValueError(f"{temp!r} is not a staged name for {dest!r}")
    for dest, stat in doc["removes"]:
        if _path_problem(dest) is not None or len(stat) != 4:
            raise ValueError(f"unsafe removal {dest!r}")
    if "state_delta" in doc:
        for path, files in delta_from_json(doc["state_delta"]).values():
            if any(_path_problem(rel) is not None for rel in (path, *files)):
                raise ValueError(f"unsafe path in the state's delta under {path!r}")
    else:
        state_from_json(doc["state"])
