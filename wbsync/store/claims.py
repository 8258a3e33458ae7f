"""Which process fetches a blob: claims that let many syncs share one store and fetch each
blob once (8 checkouts syncing the same files at once made 2.4x the requests without them).

A claim is a POSIX record lock (``fcntl.lockf``) on one byte of a single file,
``locks/claims``, at an offset taken from the blob's digest: one ``fcntl`` call per blob, no
file per blob (creating one cost as much as fetching a small file). The kernel drops a dead
process's claims. Record locks belong to the process, not the thread, and closing any
descriptor of the file drops them all, so the file is opened once per process and never closed.
Within a process the fetcher already fetches each digest once.

Claims only save bandwidth; correctness still comes from the store's verify-then-rename. So a
wait for another process's claim is bounded: a holder that lands no byte of the blob in the
store's tmp/ for the patience window (a sync stopped with Ctrl-Z, another user's process holding
the byte) is named on stderr and passed by; this process fetches the blob too, and whichever
verified copy is renamed first wins. The claims file is created 0600 (only its owner may open
it, so no other user can take a lock on it); a store whose claims file this user cannot open
fetches without claims.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from wbsync.core.models import FileRecord
from wbsync.core.safeio import open_regular
from wbsync.core.shown import printable
from wbsync.store.blobs import Store, blob_hex

NAME = "claims"
_OFFSETS = 1 << 62  # digests map onto this many byte offsets: collisions are negligible
_NO_FILE = -1  # the claims file could not be opened (another user's store): no claims
_fds: dict[Path, int] = {}
Outcome = Literal["claimed", "passed", "cancelled"]
_fds_lock = threading.Lock()
PATIENCE_S = 30.0  # the fetcher passes its stall window (WBSYNC_STALL_SECONDS)
_TELL_AFTER_S = 2.0  # a wait shorter than this is the common case and says nothing
_LOOK_EVERY_S = 1.0  # how often the holder's part-done files are looked at


def _say(text: str) -> None:
    sys.stderr.write(f"wbsync: {printable(text)}\n")


class Claims:
    def __init__(self, store: Store) -> None:
        self.store = store
        path = store.locks_dir / NAME
        with _fds_lock:
            if path not in _fds:
                path.parent.mkdir(parents=True, exist_ok=True)
                _fds[path] = _open(path)
            self._fd = _fds[path]

    def try_claim(self, record: FileRecord) -> bool:
        """Claim the blob unless another process holds it now."""
        return self.try_claim_hex(blob_hex(record))

    def try_claim_hex(self, hexdigest: str) -> bool:
        """``try_claim`` by the blob's hex digest (a prune knows part-done files by name only)."""
        if self._fd == _NO_FILE:
            return True
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset_hex(hexdigest))
            return True
        except (BlockingIOError, PermissionError):
            return False

    def claim(self, record: FileRecord, cancelled: threading.Event, poll_s: float = 0.05,
              patience_s: float = PATIENCE_S, say: Callable[[str], None] = _say) -> Outcome:
        """Wait for the claim: "claimed", or "cancelled" if ``cancelled`` is set first, or
        "passed" (not claimed) once the holder landed no byte for ``patience_s`` (see the module
        doc). Polls rather than blocking in the kernel, so that Ctrl-C is not stuck behind
        another process's download."""
        started = last_look = changed = time.monotonic()
        seen, told = self._progress(record), False
        while not self.try_claim(record):
            now = time.monotonic()
            if now - last_look >= _LOOK_EVERY_S:
                last_look, now_seen = now, self._progress(record)
                if now_seen != seen:
                    seen, changed = now_seen, now
            if not told and now - started >= _TELL_AFTER_S:
                told = True
                say(f"waiting for {self._holder(record)}, which is fetching {record.path!r} into the content store "
                    f"at {self.store.root}; at most {patience_s:g} s without progress from it.")
            if now - changed >= patience_s:
                say(f"{self._holder(record)} landed no byte of {record.path!r} in {patience_s:g} s (stopped, or "
                    "another user's): fetching it here too. The store stays correct: each copy is verified before "
                    "it gets the blob's name.")
                return "passed"
            if cancelled.wait(poll_s):
                return "cancelled"
        return "claimed"

    def release(self, record: FileRecord) -> None:
        self.release_hex(blob_hex(record))

    def release_hex(self, hexdigest: str) -> None:
        if self._fd != _NO_FILE:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _offset_hex(hexdigest))

    def _progress(self, record: FileRecord) -> tuple[int, int]:
        """Blocks held and the latest change of this blob's part-done files in tmp/ (the
        one-stream writer's and the ranged one's), as the holder's sign of life."""
        blob = self.store.blob_path(record)
        prefixes = (f"{blob.parent.name}{blob.name[:14]}.", f"{record.algorithm}-{blob_hex(record)}")
        blocks = latest = 0
        try:
            entries = list(os.scandir(self.store.tmp_dir))
        except OSError:
            return 0, 0
        for entry in entries:
            if entry.name.startswith(prefixes):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                blocks, latest = blocks + st.st_blocks, max(latest, st.st_mtime_ns)
        return blocks, latest

    def _holder(self, record: FileRecord) -> str:
        """"process 1234" (the claim's holder, as the kernel reports it), or "another process"."""
        pid = _holder_pid(self._fd, _offset_hex(blob_hex(record)))
        return f"process {pid}" if pid else "another process"


def _open(path: Path) -> int:
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)  # no link followed, no FIFO opened
    except OSError:
        return _NO_FILE  # another user's claims file: fetch without claims (they only save bandwidth)
    try:
        os.fchmod(fd, 0o600)  # a file an older wbsync made 0644: nobody else may open it to lock it
    except OSError:
        pass
    return fd


def _holder_pid(fd: int, offset: int) -> int | None:
    """The pid holding a lock on byte ``offset`` (F_GETLK; Linux's struct flock layout)."""
    if fd == _NO_FILE:
        return None
    layout = "hhqqi4x"
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        kind, _whence, _start, _len, pid = struct.unpack(layout, answer)
    except (OSError, struct.error):
        return None
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def _offset_hex(hexdigest: str) -> int:
    return int(hexdigest[:16], 16) % _OFFSETS
