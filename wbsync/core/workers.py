"""A thread pool whose threads never hold up the process's exit.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits, so after
Ctrl-C a sync waited for every download thread to come back from its socket: up to the read
timeout (30 s) for a server that stopped answering. Here the threads are daemons: an interrupted
sync stops submitting, sets its cancel flag (threads stop at their next read) and exits at once.
Leaving them is safe: a download writes only under a temp name in the store, whose lock the
kernel drops with the process, and nothing gets its final name without a completed hash.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_STOP = object()


class DaemonPool:
    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        future: Future[R] = Future()
        self._tasks.put((future, fn, args))
        return future

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Like ``Executor.map``: every item submitted now, results in order."""
        futures = [self.submit(fn, item) for item in items]
        return (f.result() for f in futures)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the threads once the tasks queued so far are done (``wait``: and wait for that).
        Without ``wait``, tasks not started yet are cancelled and nobody waits for the rest."""
        if not wait:
            self._cancel_queued()
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(_STOP)
        if wait:
            for thread in self._threads:
                thread.join()

    def __enter__(self) -> DaemonPool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.shutdown(wait=exc_type is None)

    def _cancel_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not _STOP:
                task[0].cancel()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not _STOP:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
