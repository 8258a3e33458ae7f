"""Colour for people at a terminal, plain text everywhere else.

The renderers mark words with these helpers (ANSI codes through click.style); ``click.echo``
strips the codes unless ``colour()`` allows them. So the plain text is exactly the text
without colour, and pipes, files, CI logs and ``--json`` never see an escape code.

* ``NO_COLOR`` set to anything but "" turns colour off (https://no-color.org), and wins.
* ``FORCE_COLOR`` or ``CLICOLOR_FORCE`` set to anything but "" or "0" turns it on without a
  terminal (CI log viewers that render ANSI).
* Otherwise click decides per stream: colour when that stream is a terminal.
"""

from __future__ import annotations

import os

import click


def colour() -> bool | None:
    """The ``color`` argument for ``click.echo``: False, True, or None (is it a terminal?)."""
    if os.environ.get("NO_COLOR"):
        return False
    if any(os.environ.get(name, "") not in ("", "0") for name in ("FORCE_COLOR", "CLICOLOR_FORCE")):
        return True
    return None


def good(text: str) -> str:
    """Matches, success: ``ok``, ``Synced:``."""
    return click.style(text, fg="green")


def bad(text: str) -> str:
    """Differences and failures: ``differs``, ``error:``."""
    return click.style(text, fg="red", bold=True)


def warn(text: str) -> str:
    """Worth a look but not a failure: kept files, dry runs, missing/modified/extra labels."""
    return click.style(text, fg="yellow")


def version(text: str) -> str:
    """A pin, or a pin moving: ``v3 -> v5``."""
    return click.style(text, fg="cyan", bold=True)


def name(text: str) -> str:
    """An entry's name."""
    return click.style(text, bold=True)
