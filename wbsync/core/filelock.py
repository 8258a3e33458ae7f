"""Advisory whole-file locks (flock), for the content store.

flock locks belong to an open file description: two ``open()`` calls conflict even inside
one process (so threads are covered too), and the kernel drops a lock when its process
dies, however it dies. That makes a lock a reliable "is its owner still alive" signal,
unlike a PID, which can be reused or belong to another container's PID namespace.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wbsync.core.safeio import open_regular


def hold(fd: int, *, shared: bool = False, wait: bool = True) -> bool:
    """Lock an open file. With ``wait=False``, returns False instead of waiting for a holder."""
    flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, flags if wait else flags | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on ``path`` (created if missing), waiting for it as long as needed."""
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)  # no other user may open it to lock it
    try:
        hold(fd, shared=shared)
        yield
    finally:
        os.close(fd)  # closing releases the lock
