"""Lines a command prints while it waits on something it does not control (the W&B SDK's own
requests): silence longer than a few seconds reads as a hang, so a wait that outlasts
``WBSYNC_WAIT_NOTICE`` seconds (3 by default) says once, on stderr, what it is waiting for. The
wait itself is unchanged: the time-outs and stall rules still decide when to give up.

Only the command line prints them (inside ``printing()``): the Python API promises to print
nothing."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def notice_after() -> float:
    from wbsync.core import settings  # only a command that waits on a server gets here

    return settings.number("WBSYNC_WAIT_NOTICE")


_printing = 0  # commands running inside printing(): the CLI's one, or more in a test process
_QUIET_FOR = 60.0  # seconds: one notice per server and minute, not one per waiting thread
_said: dict[str, float] = {}
_said_lock = threading.Lock()


@contextmanager
def printing() -> Iterator[None]:
    """Notices go to stderr while this block runs (the CLI wraps each command in it)."""
    global _printing
    _printing += 1
    try:
        yield
    finally:
        _printing -= 1


@contextmanager
def waiting(what: str, key: str = "") -> Iterator[None]:
    """Run the block; if it takes longer than ``notice_after()`` seconds, print ``what`` once
    (a sentence saying what is awaited and what ends the wait) while it still runs. Waits with
    the same ``key`` (e.g. the server) that overlap say it once."""
    seconds = notice_after()
    timer = threading.Timer(seconds, _say, (f"still waiting after {seconds:g} s: {what}", key))
    timer.daemon = True  # never keeps a finished command alive
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _say(text: str, key: str) -> None:
    if not _printing:
        return
    now = time.monotonic()
    with _said_lock:
        if key and now - _said.get(key, -_QUIET_FOR) < _QUIET_FOR:
            return
        _said[key] = now
    try:
        print(f"wbsync: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed (a pipe gone): the notice is a courtesy
        pass
