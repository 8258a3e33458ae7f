"""Sizes and counts as people write them: ``10GB`` read, ``1.2 GB`` and ``2 files`` written."""

from __future__ import annotations

import re
from decimal import Decimal

from wbsync.core.errors import UsageError

# GNU coreutils' convention (head -c, truncate -s): K and KiB are 1024, KB is 1000.
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i?)(b?)|b?)", re.IGNORECASE)
_POWERS = "kmgtp"


def parse_size(text: str, where: str = "--max-size") -> int:
    """Bytes in ``10GB`` (10**10), ``500MiB`` (500 * 2**20), ``1.5G`` (1.5 * 2**30) or ``1234``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{where}: {text!r} is not a size. Use a number of bytes, or one with a unit: "
                         "10GB (10^10 bytes), 500MiB or 500M (500 * 2^20), 1.5G.")
    number, letter, binary, decimal = match.groups()
    if not letter:
        return int(Decimal(number))
    base = 1000 if decimal and not binary else 1024
    return int(Decimal(number) * base ** (_POWERS.index(letter.lower()) + 1))


def human_size(n: int) -> str:
    sign = "-" if n < 0 else ""
    value = float(abs(n))
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1000
    raise AssertionError


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``, ``0 files``; ``entry`` -> ``entries``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"
