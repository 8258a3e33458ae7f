"""Every WBSYNC_* environment variable: its name, how it is read, its allowed range and what it does.

One table, asked by every reader (``number``, ``size``, ``flag``, ``text``), so that each variable
is checked the same way wherever it is read: a value that does not parse, or lies outside its
range, is exit 2 naming the variable, what it holds and the range (``WBSYNC_PART_SIZE=1`` would
otherwise make one-byte range requests, ``WBSYNC_STALL_SECONDS=0`` a traceback). The documented
table (docs/configuration.md, else the README's) lists exactly these variables; a test keeps the
two in step.

Fault-injection variables (``testing=True``) take effect only together with ``WBSYNC_TESTING=1``,
and say so on stderr when they do: set on a production machine by mistake, they do nothing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Literal

from wbsync.core.errors import UsageError

Kind = Literal["count", "seconds", "size", "flag", "text"]
TESTING = "WBSYNC_TESTING"


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    default: float | str
    low: float | None = None  # inclusive bounds of numbers and sizes
    high: float | None = None
    testing: bool = False  # fault injection: only with WBSYNC_TESTING=1

    def allowed(self) -> str:
        return f"{self.shown(self.low)} to {self.shown(self.high)}"

    def shown(self, value: float | str | None) -> str:
        """A bound or the default, in the variable's own unit (sizes as 64KiB, not 65536)."""
        if self.kind == "size" and isinstance(value, (int, float)):
            from wbsync.core.text import human_size

            return f"{human_size(int(value))} ({int(value):,} bytes)"
        if self.kind == "seconds" and isinstance(value, (int, float)):
            return f"{value:g} seconds"
        if self.kind in ("count", "flag") and isinstance(value, (int, float)):
            return f"{int(value):,}"
        return str(value)


_MiB = 1 << 20
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("WBSYNC_CACHE_DIR", "text", ""),
    Setting("WBSYNC_STATE_DIR", "text", ""),
    Setting("WBSYNC_SHARED_STORE", "flag", 0, 0, 1),
    Setting("WBSYNC_WAIT_NOTICE", "seconds", 3.0, 0, 3600),
    Setting("WBSYNC_CACHE_MAX_SIZE", "text", ""),  # a size or empty; wbsync.cache parses it with its own fix
    Setting("WBSYNC_LINK_MODE", "text", "auto"),  # a choice; wbsync.api and `sync --link` check it
    Setting("WBSYNC_PROGRESS_INTERVAL", "seconds", 5.0, 0.05, 3600),
    Setting("WBSYNC_SOURCE", "text", ""),
    Setting("WBSYNC_RETRIES", "count", 6, 1, 100),
    Setting("WBSYNC_BACKOFF", "seconds", 0.5, 0, 600),
    Setting("WBSYNC_MAX_WAIT", "seconds", 30.0, 0.01, 3600),
    Setting("WBSYNC_TIMEOUT", "seconds", 60.0, 0.1, 3600),
    Setting("WBSYNC_STALL_BYTES", "size", 64 << 10, 1, 1 << 30),
    Setting("WBSYNC_STALL_SECONDS", "seconds", 30.0, 0.1, 3600),
    Setting("WBSYNC_LINK_REFRESHES", "count", 3, 0, 100),
    Setting("WBSYNC_RANGE_THRESHOLD", "size", 64 * _MiB, 1024, 1 << 50),
    Setting("WBSYNC_PART_SIZE", "size", 16 * _MiB, 1024, 1 << 32),
    Setting("WBSYNC_CONNECTIONS", "count", 32, 1, 256),
    Setting("WBSYNC_MANIFEST_TIMEOUT", "seconds", 120.0, 1, 86400),
    Setting("WBSYNC_LOCK_INLINE_MAX", "count", 1000, 0, 10_000_000),
    Setting("WBSYNC_STATE_DELTA_MAX", "count", 200_000, 0, 100_000_000),
    Setting("WBSYNC_FSYNC", "flag", 0, 0, 1),
    Setting(TESTING, "flag", 0, 0, 1),
    Setting("WBSYNC_KILL_AFTER_RENAMES", "count", 0, 0, 1_000_000_000, testing=True),
)}
_told: set[str] = set()


def _raw(name: str) -> str | None:
    """The variable's text, or None when unset or empty (then the default holds)."""
    setting = SETTINGS[name]
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if setting.testing and not flag(TESTING):
        return None
    if setting.testing and name not in _told:
        _told.add(name)
        sys.stderr.write(f"wbsync: {name}={text!r} is in effect (fault injection for tests, with {TESTING}=1)\n")
    return text


def _refuse(setting: Setting, text: str, problem: str) -> UsageError:
    return UsageError(f"environment variable {setting.name}={text!r} {problem}: it takes {setting.allowed()} "
                      f"(default {setting.shown(setting.default)}). Unset it or give a value in that range.")


def check_all() -> None:
    """Read every variable that is set, so that a bad one stops the command at its start (exit 2),
    whichever code path would have read it, not halfway through a sync."""
    for name, setting in SETTINGS.items():
        if not os.environ.get(name, "").strip():
            continue
        if setting.kind in ("count", "seconds"):
            number(name)
        elif setting.kind == "size":
            size(name)
        elif setting.kind == "flag":
            flag(name)


def number(name: str) -> float:
    """A count or a number of seconds, in its range (a count is whole)."""
    setting = SETTINGS[name]
    assert setting.kind in ("count", "seconds", "flag"), name
    text = _raw(name)
    if text is None:
        return float(setting.default)
    try:
        value = float(text) if setting.kind == "seconds" else int(text)
    except ValueError:
        raise _refuse(setting, text, "is not a whole number" if setting.kind != "seconds" else "is not a number") \
            from None
    if not (setting.low is not None and setting.high is not None and setting.low <= value <= setting.high):
        raise _refuse(setting, text, "is out of range")
    return value


def count(name: str) -> int:
    return int(number(name))


def size(name: str) -> int:
    """A size in bytes (``64KiB``, ``16MiB``, ``1GB`` or a number), in its range."""
    from wbsync.core.text import parse_size

    setting = SETTINGS[name]
    assert setting.kind == "size", name
    text = _raw(name)
    if text is None:
        return int(setting.default)
    try:
        value = parse_size(text, f"environment variable {name}")
    except UsageError:
        raise _refuse(setting, text, "is not a size") from None
    if not (setting.low is not None and setting.high is not None and setting.low <= value <= setting.high):
        raise _refuse(setting, text, "is out of range")
    return value


def flag(name: str) -> bool:
    """``1`` (on) or ``0``/unset (off); anything else is refused."""
    setting = SETTINGS[name]
    assert setting.kind == "flag", name
    text = os.environ.get(name, "").strip()
    if text not in ("", "0", "1"):
        raise _refuse(setting, text, "is not 0 or 1")
    return text == "1"


def text(name: str) -> str:
    """A free-form value (a path, a URL, a choice checked by its reader), or its default."""
    setting = SETTINGS[name]
    assert setting.kind == "text", name
    return os.environ.get(name, "").strip() or str(setting.default)
