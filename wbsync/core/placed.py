"""What wbsync placed and what stands on disk now, as plain records: the state file's contents
(``wbsync.tree.state`` reads and writes them) and the planner's input (``wbsync.decide.plan``).

A file is wbsync's only while it is the very file recorded (same inode, on the same device once
recorded); it is unchanged while its size and mtime match too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# (size, mtime_ns, inode, device); a state file from before devices were recorded gives 3 items.
Stat = tuple[int, ...]
# What stands at a destination path when it is not a regular file.
Blocker = Literal["folder", "symlink", "other", "blocked"]
Observed = Stat | Blocker | None


@dataclass(frozen=True, slots=True)  # slots: a state holds one per placed file
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


#: Changes to a state: entry name -> (its path, {file: its new record, or None: no longer recorded}).
Delta = dict[str, tuple[str, dict[str, "PlacedFile | None"]]]


def same_file(recorded: Stat, seen: Stat) -> bool:
    """Whether ``seen`` is the very file ``recorded`` describes (inode, and device once recorded)."""
    if recorded[2] != seen[2]:
        return False
    return len(recorded) < 4 or recorded[3] == seen[3]


def untouched(recorded: Stat, seen: Stat) -> bool:
    """Whether the file is the recorded one and unchanged since (size, mtime, identity)."""
    return recorded[:2] == seen[:2] and same_file(recorded, seen)
