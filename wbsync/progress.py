"""What a running sync shows on stderr: a one-line bar on a terminal, plain lines in a log.

Both follow the same events from the sync (simple callbacks, see ``Reporter``): the fetch
starts, bytes arrive, an entry starts, files are staged, an entry is done. They also remember
which entries finished, so an interrupted run can say what it completed.

* ``Progress``, for terminals: one line rewritten in place, fetching then placing (so it does
  not sit at "100%" while a large entry is copied into place).
* ``LogProgress``, when stderr is not a terminal (CI logs, pipes): a line when each entry
  starts and when it is done, and during long transfers a line at most every
  WBSYNC_PROGRESS_INTERVAL seconds (5 by default) with the file count, bytes and rate. No
  colour, no carriage returns; a no-op sync never gets here, so it prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from wbsync.core import settings
from wbsync.core.shown import printable, redact
from wbsync.core.text import human_size, plural

if TYPE_CHECKING:
    from wbsync.decide.plan import EntryPlan


class Reporter:
    """The events a sync reports; the base class only keeps count (and prints nothing)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total_bytes = self.total_files = self.done_bytes = 0
        self.finished: list[str] = []  # entries placed completely, in order
        self.started: list[str] = []
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def start(self, files: int, nbytes: int) -> None:
        """The fetch of ``files`` blobs (``nbytes`` in all) begins."""
        self.total_files, self.total_bytes = files, nbytes
        self._start = time.monotonic()

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more arrived (called from the download threads)."""
        with self._lock:
            self.done_bytes += nbytes

    def entry(self, event: str, plan: EntryPlan) -> None:
        """``event`` is "start" (work begins for the entry), "placing" or "done"."""
        if event == "start":
            self.started.append(plan.name)
        elif event == "done":
            self.finished.append(plan.name)

    def placed(self, files: int) -> None:
        """``files`` more files were staged next to their destination."""

    def close(self) -> None:
        """The sync ended, one way or another."""

    def interrupted(self) -> str:
        """What an interrupted sync finished, for its last message."""
        done = ", ".join(self.finished)
        left = [n for n in self.started if n not in self.finished]
        head = (f"interrupted after {done} {'was' if len(self.finished) == 1 else 'were'} synced completely"
                if self.finished else "interrupted before any entry was placed")
        rest = f"; {', '.join(left)} kept what {'it' if len(left) == 1 else 'they'} had before" if left else ""
        return (f"{head}{rest}. Nothing half-written got a final name, and the files already fetched stay in "
                "the content store: run `wbsync sync` again to finish.")

    def rate(self) -> float:
        return self.done_bytes / max(time.monotonic() - self._start, 1e-6)


class _Ticker(Reporter):
    """A reporter that redraws from a thread every ``interval`` seconds while it runs."""

    interval = 0.2

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        super().__init__(stream)
        if interval is not None:
            self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run_ticker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="wbsync-progress")
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._thread = None


class Progress(_Ticker):
    """A one-line display for terminals: files, bytes, speed and ETA, then the placement."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2) -> None:
        super().__init__(stream, interval)
        self.place_total = self.place_done = 0
        self.placing_entry: str | None = None

    def start(self, files: int, nbytes: int) -> None:
        super().start(files, nbytes)
        self._run_ticker()

    def entry(self, event: str, plan: EntryPlan) -> None:
        super().entry(event, plan)
        if event == "placing":
            with self._lock:
                self.placing_entry, self.place_total, self.place_done = plan.name, len(plan.place), 0
            self._run_ticker()

    def placed(self, files: int) -> None:
        with self._lock:
            self.place_done += files

    def tick(self) -> None:
        self.stream.write("\r\033[K" + _shown(self.line()))  # entry names are the manifest's
        self.stream.flush()

    def close(self) -> None:
        had_thread = self._thread is not None
        super().close()
        if had_thread:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def line(self) -> str:
        if self.placing_entry is not None:
            return f"placing {self.placing_entry}  {self.place_done} / {plural(self.place_total, 'file')}"
        speed = self.rate()
        left = (self.total_bytes - self.done_bytes) / speed if speed > 0 else 0
        return (f"fetching {plural(self.total_files, 'file')}  {human_size(self.done_bytes)} / "
                f"{human_size(self.total_bytes)}  {human_size(int(speed))}/s  ETA {left:.0f} s")


def log_interval() -> float:
    return settings.number("WBSYNC_PROGRESS_INTERVAL")


class LogProgress(_Ticker):
    """Plain lines for logs: each entry's start and end, and transfer progress every few seconds."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        super().__init__(stream, log_interval() if interval is None else interval)
        self._fetching = False

    def _say(self, text: str) -> None:
        self.stream.write(f"wbsync: {_shown(text)}\n")  # names and paths from a manifest or lock
        self.stream.flush()

    def start(self, files: int, nbytes: int) -> None:
        super().start(files, nbytes)
        self._say(f"fetching {plural(files, 'file')} ({human_size(nbytes)})")
        self._fetching = True
        self._run_ticker()

    def entry(self, event: str, plan: EntryPlan) -> None:
        super().entry(event, plan)
        where = f"{plan.name} {plan.artifact.version} -> {plan.artifact.path}/"
        if event == "start":
            self._say(f"{where}: started ({_work(plan)})")
        elif event == "placing":
            self._fetching = False
        elif event == "done":
            self._say(f"{where}: done")

    def tick(self) -> None:
        if not self._fetching or self.done_bytes >= self.total_bytes:
            return
        share = self.done_bytes * 100 // self.total_bytes if self.total_bytes else 100  # 99% until done
        self._say(f"fetched {human_size(self.done_bytes)} of {human_size(self.total_bytes)} ({share}%) "
                  f"in {plural(self.total_files, 'file')}, {human_size(int(self.rate()))}/s")


def _shown(text: str) -> str:
    """A progress line as every printed line: names from others escaped, URLs' credentials redacted."""
    return printable(redact(text))


def _work(plan: EntryPlan) -> str:
    parts = []
    if plan.place:
        parts.append(f"{plural(len(plan.place), 'file')} to place, {human_size(sum(a.record.size for a in plan.place))}")
    if plan.check:
        parts.append(f"{len(plan.check)} to re-check")
    if plan.remove:
        parts.append(f"{len(plan.remove)} to remove")
    return ", ".join(parts) or "nothing to change"


def reporter_for(stream: TextIO, quiet: bool) -> Reporter:
    """The display that fits ``stream``: a bar on a terminal, lines otherwise, nothing with -q."""
    if quiet:
        return Reporter(stream)
    return Progress(stream) if stream.isatty() else LogProgress(stream)
