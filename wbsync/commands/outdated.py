"""`wbsync outdated`: which aliases moved since locking."""

from __future__ import annotations

import click

from wbsync.cli import Ctx, cli, common

EPILOG = """\b
Examples:
  wbsync outdated               # which aliases moved since locking?
  wbsync outdated --json
"""


@cli.command(epilog=EPILOG)
@click.option("--source", default=None, metavar="DIR|URL",
              help="Use this mirror (folder or fsspec URL; `wandb` for W&B) instead of "
                   "WBSYNC_SOURCE or the manifest's source:.")
@common
def outdated(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Ask the source where each alias points now; list entries whose alias moved."""
    from wbsync import render
    from wbsync.project import check_names
    from wbsync.sources import project_source
    from wbsync.verify import outdated as run_outdated

    manifest = ctx.project.manifest()
    lock = ctx.project.require_lock()
    selected = check_names(names, set(manifest.entries), str(ctx.project.manifest_path))
    source = project_source(ctx.project, manifest)
    changes = run_outdated(manifest, lock, source, selected)
    checked = sum(1 for n, e in manifest.entries.items() if e.reference.alias and (selected is None or n in selected))
    ctx.emit(render.outdated_text(changes, checked),
             {"outdated": [render.change_json(c) for c in changes], "checked": checked}, "outdated")
