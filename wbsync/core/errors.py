"""One error base; each subclass carries the exit code the README assigns to its kind.

Only the CLI's handler turns these into exit codes; nothing else calls sys.exit.
Every message is complete: what is wrong, where (file, line, field or reference),
and what to do about it.
"""

from __future__ import annotations


class WbsyncError(Exception):
    """Base of every error wbsync reports to a user."""

    exit_code: int = 1
    # True for a message laid out on several lines whose every value from others was escaped
    # where it was put in (wbsync.core.shown.printable); any other message is shown on one line,
    # a newline in it escaped like every other control character.
    laid_out: bool = False

    def __init__(self, message: str) -> None:
        from wbsync.core.shown import redact  # every message, wherever it ends up: no URL credentials

        message = redact(message)
        super().__init__(message)
        self.message = message


class CheckFailed(WbsyncError):
    """A check found differences (lock --check, sync --locked, verify)."""

    exit_code = 1


class NotSyncedError(CheckFailed):
    """A locked entry's directory does not hold the locked files (wbsync.path, use_artifacts)."""


class UsageError(WbsyncError):
    """Bad input: flags, names, unsafe destinations."""

    exit_code = 2


class ManifestError(UsageError):
    """artifacts.yaml is missing, unreadable or invalid."""


class LockfileError(UsageError):
    """artifacts.lock is unreadable, invalid or does not fit the request."""


class RemoteError(WbsyncError):
    """The source failed: network, server error after retries."""

    exit_code = 3


class AuthError(RemoteError):
    """Credentials missing or refused."""


class NotFoundError(RemoteError):
    """A registry, collection, alias or version does not exist (any more)."""


class VanishedError(NotFoundError):
    """A locked version is gone from the source (deleted, unlinked, or no longer committed).

    ``name`` is the lock entry; sync turns this into a message saying where the entry's alias
    points now and which ``wbsync lock --upgrade NAME`` fixes it (wbsync.decide.outdated.explain_vanished)."""

    def __init__(self, message: str, name: str, reason: str) -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason  # e.g. "not found (deleted, or unlinked from its collection)"


class IntegrityError(WbsyncError):
    """Remote content rejected: digest mismatch, size mismatch."""

    exit_code = 4


class UnsafePathError(IntegrityError):
    """An artifact names a file outside its destination (.., absolute, symlink escape)."""


class Interrupted(WbsyncError):
    exit_code = 130


class LocalIOError(WbsyncError):
    """A local file could not be written: disk full, read-only filesystem, permissions. Exit 2,
    like other problems on this side: nothing remote is wrong, and a retry alone will not help."""

    exit_code = 2


def local_io_error(exc: OSError, where: object = None) -> LocalIOError:
    """The complete message for ``exc``, raised while writing ``where`` (a path, or a phrase)."""
    import errno

    target = where if where is not None else (exc.filename or "a local file")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        head = f"the disk is full: could not write {target} ({exc.strerror})"
        fix = "Free some space (`wbsync cache prune` trims the content store, WBSYNC_CACHE_DIR moves it) and run again."
    else:
        head = f"could not write {target}: {exc.strerror or exc}"
        fix = "Check the permissions and the filesystem, then run again."
    return LocalIOError(f"{head}. Nothing half-written got a final name, and files already in place are whole. {fix}")
