"""Names no file or folder that wbsync writes may have: git's own folder and wbsync's.

A file placed at ``.git/config`` or ``.git/hooks/...`` in a checkout turns the next ``git
status`` into a command of the artifact's publisher (``core.fsmonitor``), and ``.wbsync`` holds
the record of what wbsync placed. Filesystems see more names as these than their bytes say, so
they are compared the way git compares them before it writes a checkout (``is_ntfs_dotgit`` in
git's path.c, ``is_hfs_dotgit`` in utf8.c):

* case does not matter (``.GIT``); NTFS drops trailing dots and spaces (``.git. .``) and reads
  ``NAME:stream`` as NAME (``.git::$INDEX_ALLOCATION``); ``git~1`` is its 8.3 short name;
* HFS+ ignores some invisible code points anywhere in a name (``.g\\u200cit``).

Only ASCII letters are folded, as git does: ``.Ňit`` is a different name everywhere.
"""

from __future__ import annotations

import re

#: The reserved names, lower case, as they would be written.
RESERVED = (".git", ".wbsync")
# 8.3 short names NTFS may give them (git checks ``git~1``; wbsync's own is WBSYNC~1).
_SHORT_NAMES = {"git~1": ".git", "wbsync~1": ".wbsync"}
# Code points HFS+ ignores in names (utf8.c, next_hfs_char).
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# For ASCII paths (no ignored code points possible) one search finds every reserved segment:
# what keeps the check of a 10,000-file lock at a few milliseconds.
_ASCII_RESERVED = re.compile(r"(?:^|/)(?:\.git|\.wbsync|git~1|wbsync~1)[. ]*(?::[^/]*)?(?:/|$)", re.I)
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def reserved_name(name: str) -> str | None:
    """The reserved name (``.git`` or ``.wbsync``) that the path segment ``name`` stands for on
    some filesystem, or None."""
    folded = _HFS_IGNORED.sub("", name).translate(_UPPER)
    folded = folded.partition(":")[0].rstrip(". ")  # NTFS: streams, trailing dots and spaces
    if folded in RESERVED:
        return folded
    return _SHORT_NAMES.get(folded)


def reserved_segment(path: str) -> tuple[str, str] | None:
    """For a POSIX relative path: ``(prefix, reserved)`` where ``prefix`` is the path up to and
    including the first reserved segment (``sub/.GIT``) and ``reserved`` the name it stands for;
    None when no segment is reserved."""
    if path.isascii() and not _ASCII_RESERVED.search(path):
        return None
    parts = path.split("/")
    for i, part in enumerate(parts):
        found = reserved_name(part)
        if found is not None:
            return "/".join(parts[: i + 1]), found
    return None


def exclude_glob(path: str, prefix: str) -> str:
    """The ``exclude:`` glob that leaves out ``path``, whose reserved segment ends ``prefix``:
    the whole reserved folder when it is a folder (``*`` crosses ``/`` in wbsync's globs)."""
    glob = prefix if prefix == path else prefix + "/*"
    return re.sub(r"([*?\[])", r"[\1]", prefix) + glob[len(prefix):]
