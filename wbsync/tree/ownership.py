"""Who owns a file at a destination: the one rule every command asks. Its comparisons of a
file's identity (``same_file``, ``untouched``) live in ``wbsync.core.placed``, where the planner
can use them too; a sync applies the rule in ``wbsync.tree.settle``.

wbsync owns a file only while the file on disk *is* the file it placed there: the same inode
on the same device as ``.wbsync/state.json`` records (states from before devices were recorded
give the inode alone). The state is evidence, never authority on its own: a copied, committed
or hand-written state file cannot make wbsync overwrite or delete anything, because it cannot
give another file the recorded identity.

* A locked path holding wbsync's file with other bytes (edited in place): restored, and named.
* A locked path holding any other file: the same bytes are adopted; other bytes are a conflict
  (exit 2, nothing changed) unless ``sync --force``. A folder in the way is a conflict even then.
* A file wbsync placed that is no longer locked: removed if unchanged (or only touched: same
  bytes), kept and reported if edited, kept and reported if it is not wbsync's file any more.

The state itself is only read when it describes this project: ``.wbsync`` must be a real
folder, the state must not be tracked by git, and every entry it names must be a destination
wbsync could have placed (a relative path inside the project, no ``.git`` or ``.wbsync``
component, not the project root); entries that are not are ignored with a warning.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wbsync.core.errors import UsageError
from wbsync.tree.place import _path_problem
from wbsync.tree.state import STATE_DIR, EntryState, Stat, State, load_state, state_path

# How the warning about ignored state starts, so a user sees it is not an error.
_IGNORED = "ignoring part of {state}: {why}. wbsync removes only files it can prove it placed."


def may_remove(dest: str, recorded: Stat, destinations: tuple[str, ...]) -> bool:
    """A record without a device (a state written before devices were recorded, or by
    hand) proves ownership only inside the folders the lock names now: an inode number
    alone is too easy to match by chance (or on purpose) anywhere else."""
    return len(recorded) >= 4 or any(dest.startswith(f"{p}/") for p in destinations)


@dataclass(frozen=True)
class Evidence:
    state: State
    warnings: tuple[str, ...] = ()


def load_evidence(root: Path, *, ask_git: bool = False) -> Evidence:
    """The state this project's syncs recorded, keeping only what can be evidence of ownership.

    ``ask_git``: also refuse a state file tracked by git (one `git ls-files` call: done only
    before a sync acts, never on a no-op).
    """
    folder = root / STATE_DIR
    if os.path.islink(folder):
        return Evidence(State(), (f"{folder} is a symlink: its state is not this project's and is ignored",))
    state = load_state(root)
    if not state.entries:
        return Evidence(state)
    tracked = tracked_by_git(root) if ask_git else []
    if tracked:
        why = f"it is tracked by git ({', '.join(tracked[:3])}), so it may come from another checkout or another person"
        return Evidence(State(), (_IGNORED.format(state=state_path(root), why=why) + " " + untrack_hint(tracked),))
    warnings = []
    for name, entry in list(state.entries.items()):
        problem = _entry_problem(entry)
        if problem is not None:
            del state.entries[name]
            why = f"entry {name!r} names {problem}, not a destination wbsync could have placed"
            warnings.append(_IGNORED.format(state=state_path(root), why=why))
    return Evidence(state, tuple(warnings))


def _entry_problem(entry: EntryState) -> str | None:
    if entry.path in ("", "."):
        return "the project root"
    if _path_problem(entry.path) is not None:  # reserved names (.git, .wbsync) included
        return f"{entry.path!r}"
    for rel in entry.files:
        if _path_problem(rel) is not None:
            return f"{entry.path}/{rel}"
    return None


def state_tracked_by_git(root: Path) -> bool:
    return bool(tracked_by_git(root))


def tracked_by_git(root: Path) -> list[str]:
    """The files under ``.wbsync/`` git tracks (project-relative): every one of them is ignored,
    since a pull request can commit any of them (the state, its delta, the swap journal)."""
    try:
        found = subprocess.run(["git", "ls-files", "-z", "--", f"{STATE_DIR}/"], cwd=root,
                               capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or not a repository: nothing tracks it
        return []
    if found.returncode != 0:
        return []
    return [name.decode("utf-8", "backslashreplace") for name in found.stdout.split(b"\0") if name]


def untrack_hint(tracked: list[str]) -> str:
    return f"Run `git rm -r --cached {STATE_DIR}` and commit: wbsync's records belong to one checkout."


_SHOWN = 20  # conflicts named in the message; a whole folder of them would bury the fix


class ConflictError(UsageError):
    """Files wbsync did not place stand where the lock wants files (exit 2, nothing changed)."""

    laid_out = True  # one line per conflict; each path escaped in describe()


@dataclass(frozen=True)
class Conflict:
    dest: str  # project-relative
    kind: str  # "file", "symlink", "folder", "other", "blocked"

    @property
    def forceable(self) -> bool:
        return self.kind in ("file", "symlink")

    def describe(self) -> str:
        from wbsync.core.shown import printable  # only when a conflict is reported

        dest = printable(str(self.dest))
        return {
            "file": f"{dest}: wbsync did not place this file and its bytes differ from the locked ones",
            "symlink": f"{dest}: a symlink wbsync did not place",
            "folder": f"{dest}: a folder is in the way",
            "other": f"{dest}: something that is not a regular file (a pipe, a socket, a device)",
            "blocked": f"{dest}: a file stands where a folder of this path should be",
        }[self.kind]


def conflict_error(conflicts: list[Conflict], force: bool) -> ConflictError:
    shown = conflicts[:_SHOWN]
    lines = "\n".join(f"  {c.describe()}" for c in shown)
    if len(conflicts) > len(shown):
        lines += f"\n  ... and {len(conflicts) - len(shown)} more (`wbsync verify` lists them)"
    if force:
        fix = ("`--force` replaces files and symlinks, never folders or the files a folder needs "
               "removed: move these aside and run again.")
    else:
        fix = ("Move them aside (or delete them) and run `wbsync sync` again, or run `wbsync sync --force` "
               "to replace the files with the locked ones.")
    count = len(conflicts)
    return ConflictError(f"{count} path{'s' * (count != 1)} the lock wants hold something wbsync did not place; "
                         f"nothing was changed:\n{lines}\n{fix}")
