"""Opening the files wbsync reads and writes on its own behalf, when someone else may have put
something else there: a symlink (a committed one, or one a restored cache archive kept), a FIFO
that blocks the reader forever, a device such as /dev/zero that never ends.

* ``read_regular``: a regular file's bytes, at most ``limit`` of them (never a link unless asked,
  never a FIFO or device, never an endless read).
* ``open_regular``: ``os.open`` for a file wbsync writes or reads: refuses a symlink at the last
  component (``O_NOFOLLOW``), never blocks on a FIFO (``O_NONBLOCK``, cleared after the open),
  and refuses anything but a regular file.
* ``excerpt``: the most of a file's text an error message may quote.

Every refusal is an ``OSError`` (``NotRegularFile``, ``TooLarge``), so a caller that already
treats an unreadable file as absent (the state, the fingerprint) keeps doing exactly that.
"""

from __future__ import annotations

import errno
import os
import stat

#: Limits for files wbsync writes itself, read back: far above what a real one reaches (a state
#: of a million files is ~150 MB), far below what exhausts a machine's memory.
STATE_LIMIT = 2 << 30
#: A lock or manifest: a 200,000-file inline lock is ~30 MB.
PROJECT_FILE_LIMIT = 512 << 20
EXCERPT = 40


class NotRegularFile(OSError):
    """A symlink, FIFO, device, socket or folder where wbsync expects a regular file."""

    @classmethod
    def of(cls, code: int, what: str, path: str | os.PathLike[str]) -> NotRegularFile:
        error = cls(code, f"not a regular file ({what})", os.fspath(path))
        error.what = what
        return error

    what: str = "not a regular file"


class TooLarge(OSError):
    """A regular file larger than the limit its reader sets."""


def kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], flags: int, mode: int = 0o600, *, follow: bool = False) -> int:
    """``os.open`` that only ever yields a descriptor of a regular file. ``follow``: a symlink at
    the last component is followed (its target must still be a regular file)."""
    extra = os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK):  # a link (O_NOFOLLOW); a FIFO with no reader
            raise NotRegularFile.of(exc.errno, _lkind(path), path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile.of(errno.EINVAL, kind(st.st_mode), path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lkind(path: str | os.PathLike[str]) -> str:
    try:
        return kind(os.lstat(path).st_mode)
    except OSError:
        return "not a regular file"


def read_regular(path: str | os.PathLike[str], limit: int, *, follow: bool = False) -> bytes:
    """The bytes of the regular file at ``path``; ``TooLarge`` past ``limit`` bytes (checked on
    the size and again while reading: a file growing meanwhile is cut off, not followed)."""
    fd = open_regular(path, os.O_RDONLY, follow=follow)
    with os.fdopen(fd, "rb") as fh:
        if os.fstat(fd).st_size > limit:
            raise TooLarge(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))
    return data


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """A short, escaped piece of a file's text for an error message: control characters, line
    breaks and bidi overrides escaped, cut at ``limit`` characters."""
    cut = text[:limit]
    shown = cut.encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")
