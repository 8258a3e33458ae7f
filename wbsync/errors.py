"""``wbsync.errors``, the address the docs give: the errors live in ``wbsync.core.errors``, and
this module re-exports them for code that catches them here."""

from wbsync.core.errors import (
    AuthError,
    CheckFailed,
    IntegrityError,
    Interrupted,
    LocalIOError,
    LockfileError,
    ManifestError,
    NotFoundError,
    NotSyncedError,
    RemoteError,
    UnsafePathError,
    UsageError,
    VanishedError,
    WbsyncError,
    local_io_error,
)

__all__ = ["AuthError", "CheckFailed", "IntegrityError", "Interrupted", "LocalIOError", "LockfileError",
           "ManifestError", "NotFoundError", "NotSyncedError", "RemoteError", "UnsafePathError", "UsageError",
           "VanishedError", "WbsyncError", "local_io_error"]
