"""The command line: turn options into calls, render results, map errors to exit codes.

It decides nothing; wbsync.sync and friends do. ``main`` is the one place that exits.
"""

from __future__ import annotations

import os
from typing import Any

import click

from wbsync import __version__
from wbsync.cli.commands import add, cache, diff, lineage, lock, mirror, outdated, sync, verify
from wbsync.core.errors import WbsyncError, local_io_error
from wbsync.core.notices import printing


class WbsyncGroup(click.Group):
    """Maps wbsync errors to the exit codes of the README: the one place that decides an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Known before the command parses its options, so a usage error gets its JSON document too.
        ctx.meta["wbsync_json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            if any(name.startswith("WBSYNC_") for name in os.environ):  # a start with none loads no settings
                from wbsync.core import settings

                settings.check_all()
            with printing():  # what a command waits for, said on stderr (the Python API stays silent)
                return super().invoke(ctx)
        except click.UsageError as exc:  # click prints it and exits 2; --json also wants the document
            if ctx.meta.get("wbsync_json"):
                _report("", exc.exit_code, ctx, exc.format_message())
            raise
        except WbsyncError as exc:
            ctx.exit(_report(exc.message, exc.exit_code, ctx, laid_out=exc.laid_out))
        except OSError as exc:  # a local write no layer named (they turn theirs into LocalIOError)
            ctx.exit(_report(local_io_error(exc).message, 2, ctx))
        except KeyboardInterrupt:
            ctx.exit(_report("interrupted; nothing half-written got a final name", 130, ctx))


def _report(message: str, code: int, ctx: click.Context, json_message: str | None = None,
            laid_out: bool = False) -> int:
    from wbsync.cli.style import bad, colour
    from wbsync.core.shown import json_text, printable, redact

    if message:
        shown = printable(redact(message), keep_newlines=laid_out)
        click.echo(f"wbsync: {bad('error:')} {shown}", err=True, color=colour())
    if ctx.meta.get("wbsync_json") and code != 1:
        doc = {"error": {"exit_code": code, "message": message if json_message is None else json_message}}
        click.echo(json_text(doc))
    return code


@click.group(cls=WbsyncGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="wbsync")
def cli() -> None:
    """Pin W&B Registry artifacts to exact versions and sync them, verified.

    \b
    artifacts.yaml  what the repository needs (alias or version, and where)
    artifacts.lock  the exact versions and every file's size and digest
    Exit codes: 0 ok, 1 check found differences, 2 bad input, 3 remote failure,
    4 remote content rejected, 130 interrupted.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="wbsync")


# Every command, registered here and only here (each lives in wbsync/cli/commands/).
for _command in (add.add, cache.cache, diff.diff, lineage.lineage, lock.lock, mirror.mirror, outdated.outdated,
                 sync.sync, verify.verify):
    cli.add_command(_command)
