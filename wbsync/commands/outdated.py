"""`wbsync outdated`: which aliases moved since locking, and which locked versions vanished."""

from __future__ import annotations

import click

from wbsync.cli import Ctx, cli, common
from wbsync.errors import CheckFailed

EPILOG = """\b
Examples:
  wbsync outdated               # moved aliases; vanished or expiring locked versions
  wbsync outdated --json        # {"outdated": [...], "vanished": [...], "expiring": [...]}
"""


@cli.command(epilog=EPILOG)
@click.option("--source", default=None, metavar="DIR|URL",
              help="Use this mirror (folder or fsspec URL; `wandb` for W&B) instead of "
                   "WBSYNC_SOURCE or the manifest's source:.")
@common
def outdated(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Ask the source where each alias points now and whether each locked version still exists.

    Exit 1 when a locked version vanished (deleted, unlinked or not committed)."""
    from wbsync import render
    from wbsync.outdated import check_outdated
    from wbsync.project import check_names
    from wbsync.sources import project_source

    manifest = ctx.project.manifest()
    lock = ctx.project.require_lock()
    selected = check_names(names, set(manifest.entries), str(ctx.project.manifest_path))
    report = check_outdated(manifest, lock.artifacts, project_source(ctx.project, manifest), selected)
    ctx.emit(render.outdated_text(report), render.outdated_json(report), "outdated")
    if not report.ok:
        raise CheckFailed("")
