"""What may be shown: secrets redacted from URLs, control characters escaped for terminals.

File names, paths and messages that reach the terminal come in part from others (an artifact's
publisher, a server's error). Two rules hold for every line wbsync prints:

* ``redact``: a URL never shows its credentials. User info (``https://api:KEY@host``, as some
  put it in WANDB_BASE_URL) becomes ``https://***@host``; a query string, where signed links
  keep their signature, is dropped (``https://bucket/blob?X-Amz-Signature=...`` is shown as
  ``https://bucket/blob?...``). urllib3 names a link by its path alone (``... with url:
  /blob?X-Amz-Signature=...``): that query is dropped too. Applied to every error message,
  text line, warning, progress line and ``--json`` document.
* ``printable``: the one escaping rule of every channel (text, warnings, notes, progress,
  porcelain, errors, the Markdown of ``wbsync diff``): every character ``str.isprintable()``
  refuses passes only as an escape: C0 controls (ESC, BEL, CR, newline...), DEL, C1 controls
  (0x80-0x9F), the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), the
  other format characters (zero-width ones) and the separators but the space (U+2028, NBSP)
  are shown as ``\\x1b``, ``\\u202e``... so a file name cannot erase or reorder wbsync's own
  lines (a fake "All files match"), nor start a line of its own (a GitHub Actions ``::error::``
  workflow command). ``--json`` output keeps them as JSON escapes (``json_text``).
"""

from __future__ import annotations

import json
import re
from typing import Any

# scheme://user[:password]@host -- user info is credentials; the scheme is kept for context.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
# A URL's query string: from "?" to the end of the URL (whitespace, a quote or a bracket);
# also after urllib3's "url: /path" (its errors name the path without the host).
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?'\"<>]*|\burl: /[^\s?'\"<>]*)\?[^\s'\"<>)\]]*")
# The colour codes wbsync's own styles produce (click.style in wbsync.cli.style: reset, bold, red,
# green, yellow, cyan), and no other: not "conceal", not cursor moves, not line erases.
_OWN_SGR = re.compile(r"\x1b\[(?:0|1|31|32|33|36)m")


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its user info, and the password it held (None if none): a key written
    into WANDB_BASE_URL (``https://api:KEY@host``) is used as the key, never passed on in a URL."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    password = userinfo.partition(":")[2] or None
    return urlunsplit(parts._replace(netloc=host)), password


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it removed (see the module doc)."""
    if "?" not in text and "@" not in text:  # both rules need one; urllib3's "url: /p?..." has no "://"
        return text
    return _QUERY.sub(r"\1?...", _USERINFO.sub(r"\1***@", text))


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every character that is not printable escaped (see the module doc);
    ``keep_newlines`` only for text whose every value was escaped already, laid out on several
    lines on purpose (an error marked ``laid_out``); the other characters are escaped still."""
    if text.isprintable():
        return text
    if keep_newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def styled_line(line: str) -> str:
    """A line the renderers built: their colour codes kept, every other control escaped.
    (A remote name that holds a colour code exactly like wbsync's keeps it: colour only.)"""
    parts = _OWN_SGR.split(line)
    codes = _OWN_SGR.findall(line)
    out = [redact(printable(parts[0]))]
    for code, part in zip(codes, parts[1:]):
        out += [code, redact(printable(part))]
    return "".join(out)


def json_text(doc: dict[str, Any]) -> str:
    """The ``--json`` document: ASCII JSON (every control character, DEL, C1 and bidi ones
    included, is a ``\\u`` escape) with URLs' credentials redacted."""
    return redact(json.dumps(doc, indent=2, sort_keys=True))
