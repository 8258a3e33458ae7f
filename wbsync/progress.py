"""A one-line progress display on stderr (files, bytes, speed, ETA), for terminals only."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from wbsync.render import human_size


class Progress:
    def __init__(self, stream: TextIO = sys.stderr, interval: float = 0.2) -> None:
        self.stream, self.interval = stream, interval
        self.total_bytes = self.total_files = self.done_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def start(self, files: int, nbytes: int) -> None:
        self.total_files, self.total_bytes = files, nbytes
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done_bytes += nbytes

    def close(self) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        speed = self.done_bytes / elapsed
        left = (self.total_bytes - self.done_bytes) / speed if speed > 0 else 0
        return (f"fetching {self.total_files} files  {human_size(self.done_bytes)} / "
                f"{human_size(self.total_bytes)}  {human_size(int(speed))}/s  ETA {left:.0f} s")
