"""Faults the fake server can inject, and the thread-safe book that hands them out."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FaultTarget = Literal["graphql", "file"]
FaultKind = Literal["status", "reset", "reset_mid_body", "truncate", "wrong_bytes", "slow", "hang", "trickle"]
_TARGETS = ("graphql", "file")
_KINDS = ("status", "reset", "reset_mid_body", "truncate", "wrong_bytes", "slow", "hang", "trickle")


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, applied to the next ``times`` matching requests (``None``: forever).

    ``target``: ``"graphql"`` (``match`` = an operation name) or ``"file"`` (manifest and file
    GETs; ``match`` = a substring of the request path, of the artifact file path served, or of
    the ``Range`` header, e.g. ``"bytes=1024-"`` for one part of a ranged download).

    ``kind``:
      * ``status``: answer ``status`` (e.g. 500, 502, 503, 429), with ``Retry-After`` if given;
      * ``reset``: close the connection (RST) before any response;
      * ``reset_mid_body``: send the headers and half the body, then RST;
      * ``truncate``: send the full ``Content-Length`` header and half the body, then close (FIN);
      * ``wrong_bytes``: a body of the right length whose first byte is flipped;
      * ``slow``: sleep ``delay`` seconds, then answer normally;
      * ``hang``: never answer (until the server stops);
      * ``trickle``: send the headers, then one byte every ``delay`` seconds (a stalled link
        whose every read returns something, so no read timeout ever fires).
    """

    target: FaultTarget
    kind: FaultKind
    times: int | None = 1
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    match: str | None = None

    def __post_init__(self) -> None:
        if self.target not in _TARGETS:
            raise ValueError(f"fault target must be one of {_TARGETS}, not {self.target!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"fault kind must be one of {_KINDS}, not {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for forever")

    def matches(self, target: str, subjects: Iterable[str | None]) -> bool:
        if target != self.target:
            return False
        if self.match is None:
            return True
        if self.target == "graphql":  # an exact operation name, so "Viewer" doesn't hit others
            return any(s == self.match for s in subjects)
        return any(s is not None and self.match in s for s in subjects)


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None


class FaultBook:
    """Injected faults in injection order; each request takes the first that matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(_Armed(fault, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, target: FaultTarget, subjects: Iterable[str | None]) -> Fault | None:
        """The fault this request suffers, if any, counting it against its ``times``."""
        subjects = tuple(subjects)
        with self._lock:
            for armed in self._pending:
                if not armed.fault.matches(target, subjects):
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._pending.remove(armed)
                return armed.fault
        return None

    def pending(self) -> list[Fault]:
        """Faults that will still fire (a test can assert they all did)."""
        with self._lock:
            return [armed.fault for armed in self._pending]
