"""What a path may be: an entry's folder (a POSIX path strictly inside the manifest's folder) and an
artifact's file paths (no escape, no reserved folder, no collision on disk), and which paths an
entry's include/exclude select. The manifest, its editor, resolve and every lock read ask here."""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterable

from wbsync.core.errors import UnsafePathError
from wbsync.core.models import FileRecord
from wbsync.core.reserved import exclude_glob, reserved_segment

#: Deepest artifact file path or entry folder wbsync accepts, in folders: a path 1,000 folders
#: deep is an attack on the tools that walk it (Python's own recursion limit among them).
MAX_DEPTH = 64

_DRIVE = re.compile(r"[A-Za-z]:")


def normalize_path(text: str) -> str:
    """Return ``text`` as a POSIX path strictly inside the manifest's folder, or raise ValueError."""
    if "\\" in text:
        raise ValueError(f"{text!r} contains '\\': write paths with '/', e.g. models/phi3.")
    if text.startswith("/") or _DRIVE.match(text):
        raise ValueError(f"{text!r} is absolute: give a folder relative to the manifest's "
                         "folder, e.g. models/phi3.")
    if text.startswith("~"):
        raise ValueError(f"{text!r}: '~' is not expanded here: give a folder relative to the "
                         "manifest's folder.")
    parts: list[str] = []
    for part in text.split("/"):
        if part == "..":
            if not parts:
                raise ValueError(f"{text!r} leads outside the manifest's folder: wbsync writes "
                                 "only inside it.")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    if not parts:
        raise ValueError(f"{text!r} is the manifest's own folder, and wbsync removes files it "
                         "placed in the folders it syncs: give the artifact a folder of its own, "
                         "e.g. models/phi3.")
    return "/".join(parts)


def selected(include: tuple[str, ...], exclude: tuple[str, ...], path: str) -> bool:
    """include/exclude are fnmatch globs over the artifact path (``*`` also crosses ``/``)."""
    if include and not any(fnmatch.fnmatchcase(path, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(path, g) for g in exclude)


def check_paths(name: str, files: Iterable[FileRecord], base: str = "") -> None:
    """Refuse artifact file lists that could write outside the destination, into git's or
    wbsync's folders, or collide on disk, before anything is written (the lock is the first
    thing written). ``base`` is the entry's folder: the two together must fit a path."""
    paths = PathCheck(name, base)
    for f in files:
        paths.add(f.path)
    paths.finish()


class PathCheck:
    """check_paths one path at a time. It remembers the hash of each case-folded path, not a
    case-folded copy, so a million-file artifact costs tens of MB here, not hundreds; a hash
    that repeats is confirmed against the path it came from before anything is refused."""

    def __init__(self, name: str, base: str = "") -> None:
        self.name, self.base = name, base
        self.seen: dict[int, str] = {}  # hash(casefolded path) -> path
        self.folders: set[int] = set()  # hash(casefolded folder)
        self.parent = ""  # folders of the previous path are already in ``folders``

    def add(self, path: str) -> None:
        name = self.name
        problem = unsafe_reason(path) or too_long_with(self.base, path)
        if problem:
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {path!r}, which {problem}. wbsync refuses "
                f"to write it; nothing was written. Leave it out with `exclude: [{json.dumps(path)}]` in "
                "the entry, and report the artifact to its owner."
            )
        reserved = reserved_segment(path)
        if reserved:
            prefix, what = reserved
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {path!r}, inside {prefix!r}, which filesystems "
                f"treat as {what}: {_RESERVED_WHY[what]}. wbsync refuses it; nothing was written. Leave "
                f"it out with `exclude: [{json.dumps(exclude_glob(path, prefix))}]` in the entry, and "
                "report the artifact to its owner."
            )
        folded = path.casefold()
        key = hash(folded)
        other = self.seen.get(key)
        if other is not None and other.casefold() == folded:
            raise UnsafePathError(
                f"{name}: the artifact lists {other!r} and {path!r}, which differ only by case "
                "and would overwrite each other on case-insensitive filesystems (macOS, Windows). "
                "wbsync refuses it; nothing was written."
            )
        self.seen[key] = path
        parent = folded.rpartition("/")[0]
        if parent and parent != self.parent:  # sorted lists: a folder's files come together
            self.parent = parent
            parts = parent.split("/")
            self.folders.update(hash("/".join(parts[:i])) for i in range(1, len(parts) + 1))

    def finish(self) -> None:
        for key in self.seen.keys() & self.folders:
            path = self.seen[key]
            if path.casefold() in self._folder_names():
                raise UnsafePathError(
                    f"{self.name}: the artifact lists {path!r} both as a file and as a folder of other files. "
                    "wbsync refuses it; nothing was written."
                )

    def _folder_names(self) -> set[str]:
        """The folders themselves (only on a hash match, to confirm it): one more pass."""
        names: set[str] = set()
        for path in self.seen.values():
            parts = path.casefold().split("/")
            names.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return names


_RESERVED_WHY = {
    ".git": "git's own folder, where a file such as config or a hook runs as a command on the next "
            "`git status` or commit",
    ".wbsync": "wbsync's own records of what it placed",
}


def too_long_with(base: str, path: str) -> str | None:
    """Entry folder and file path together: the same limits as a file path alone."""
    if not base:
        return None
    joined = f"{base}/{path}"
    if joined.count("/") + 1 > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} folders deep below the project (with the entry's folder {base!r})"
    if len(joined.encode()) >= 4096:
        return f"is longer than 4095 bytes with the entry's folder {base!r}"
    return None


# Most artifact paths: ASCII names that do not start with a dot, no ':' or '\\', each at most
# 255 bytes. Such a path needs none of the checks below but depth and length.
_PLAIN = re.compile(r"[\w+=,@%-][\w.+=,@% -]{0,254}(?:/[\w+=,@%-][\w.+=,@% -]{0,254})*", re.ASCII)


def unsafe_reason(path: str) -> str | None:
    if len(path) < 4096 and path.count("/") < MAX_DEPTH and _PLAIN.fullmatch(path):
        return None
    if not path or "\x00" in path:
        return "is empty or holds a NUL byte"
    if not path.isascii() and any("\ud800" <= c <= "\udfff" for c in path):
        return "is not valid Unicode (it holds a lone surrogate)"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' segment"
    if posixpath.normpath(path) != path:
        return "is not a normalized path"
    if any(len(p.encode()) > 255 for p in parts):
        return "has a name longer than 255 bytes"
    if len(parts) > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} folders deep"
    if len(path.encode()) >= 4096:  # PATH_MAX: no folder could hold it (placement checks the full path)
        return "is longer than 4095 bytes"
    return None
