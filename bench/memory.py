"""Peak memory of a command: the largest sum, over samples taken every few milliseconds, of the
RSS of the command's process and of every process it started (the SDK's wandb-core included).

``ru_maxrss`` from wait4() is a maximum over processes, never a sum: a command whose Python
process peaks at 90 MB while its wandb-core holds 40 MB would show 90, not 130. Sampling the
process tree sums them; it can miss a peak shorter than the interval, which is why the interval
is small and the figure is reported beside ``ru_maxrss`` (a lower bound of the same thing).
Linux only (/proc).
"""

from __future__ import annotations

import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
INTERVAL_S = 0.005


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list: a child belongs to the thread that forked it)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found += [int(c) for c in fh.read().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    todo, seen = [pid], []
    while todo:
        current = todo.pop()
        seen.append(current)
        todo += children(current)
    return seen


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0  # gone meanwhile


class TreeSampler:
    """Samples the summed RSS of a process tree from a thread, from ``start()`` to ``stop()``."""

    def __init__(self, pid: int, interval_s: float = INTERVAL_S) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_bytes = 0
        self.peak_processes = 0  # how many processes the tree had at its peak
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling; returns the peak in MB (10^6 bytes)."""
        self._stop.set()
        self._thread.join()
        return self.peak_bytes / 1e6

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            total = sum(rss_bytes(p) for p in pids)
            self.samples += 1
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes = total, len(pids)
            time.sleep(self.interval_s)
