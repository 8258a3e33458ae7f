"""Lines a command prints while it waits on something it does not control (the W&B SDK's own
requests): silence longer than a few seconds reads as a hang, so a wait that outlasts
``WBSYNC_WAIT_NOTICE`` seconds (3 by default) says once, on stderr, what it is waiting for. The
wait itself is unchanged: the time-outs and stall rules still decide when to give up."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_DEFAULT_AFTER = 3.0


def notice_after() -> float:
    try:
        return max(float(os.environ.get("WBSYNC_WAIT_NOTICE", _DEFAULT_AFTER)), 0.0)
    except ValueError:
        return _DEFAULT_AFTER


@contextmanager
def waiting(what: str) -> Iterator[None]:
    """Run the block; if it takes longer than ``notice_after()`` seconds, print ``what`` once
    (a sentence saying what is awaited and what ends the wait) while it still runs."""
    seconds = notice_after()
    timer = threading.Timer(seconds, _say, (f"still waiting after {seconds:g} s: {what}",))
    timer.daemon = True  # never keeps a finished command alive
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _say(text: str) -> None:
    try:
        print(f"wbsync: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed (a pipe gone): the notice is a courtesy
        pass
