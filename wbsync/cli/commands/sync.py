"""`wbsync sync`: make the declared directories hold exactly the locked files."""

from __future__ import annotations

import os
import sys

import click

from wbsync.cli.options import Ctx, common
from wbsync.core.errors import Interrupted

EPILOG = """\b
Examples:
  wbsync sync                   # lock what is stale, then fetch and place
  wbsync sync --locked          # CI: fail (exit 1) instead of updating the lock
  wbsync sync --frozen          # use the lock as is; never resolve
  wbsync sync --dry-run --json  # print the plan
  wbsync sync --force           # replace files wbsync did not place (it names them)
"""


@click.command(epilog=EPILOG)
@click.option("--locked", is_flag=True, help="Never write the lock; exit 1 if it is stale.")
@click.option("--frozen", is_flag=True, help="Use the lock as it is; do not read the manifest or resolve.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=64, show_default=True,
              help="Files in flight at once (large files also use WBSYNC_CONNECTIONS ranges).")
@click.option("--link", "link_mode", type=click.Choice(["auto", "copy", "reflink", "hardlink"]),
              default=lambda: os.environ.get("WBSYNC_LINK_MODE", "auto"), show_default="auto",
              help="How files reach the directories from the store.")
@click.option("--force", is_flag=True,
              help="Replace files wbsync did not place that stand where the lock wants files (never folders).")
@click.option("--source", default=None, metavar="DIR|URL",
              help="Use this mirror (folder or fsspec URL; `wandb` for W&B) instead of "
                   "WBSYNC_SOURCE or the manifest's source:.")
@common
def sync(ctx: Ctx, names: tuple[str, ...], locked: bool, frozen: bool, dry_run: bool, jobs: int,
         link_mode: str, force: bool) -> None:
    """Make the declared directories hold exactly the locked files."""
    from wbsync.cli import render
    from wbsync.progress import reporter_for
    from wbsync.repo.project import project_source
    from wbsync.sync import run_sync

    # A bar on a terminal, plain lines in a log (entry started / done, transfer progress every
    # few seconds), nothing with -q or --json.
    shows = reporter_for(sys.stderr, quiet=ctx.quiet or ctx.as_json)
    try:
        result = run_sync(ctx.project, names, locked=locked, frozen=frozen, dry_run=dry_run, jobs=jobs,
                          link_mode=link_mode,  # type: ignore[arg-type]
                          progress=shows.advance, on_fetch_start=shows.start, on_entry=shows.entry,
                          on_placed=shows.placed, source=project_source(ctx.project), force=force)
    except KeyboardInterrupt:
        shows.close()
        raise Interrupted(shows.interrupted()) from None
    finally:
        shows.close()
    lines = render.sync_text(result, ctx.lockfile, ctx.verbose)
    if result.noop and not result.dry_run and not ctx.verbose and not sys.stdout.isatty():
        lines = lines[:-1]  # a clean no-op prints nothing in a log (the lock's changes, if any, stay)
    ctx.warn(render.sync_warnings(result))
    ctx.emit(lines, render.sync_json(result, ctx.lockfile), "sync")
