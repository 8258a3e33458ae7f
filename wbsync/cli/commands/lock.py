"""`wbsync lock`: pin new or changed entries; --upgrade moves pins; --check is for CI."""

from __future__ import annotations

import click

from wbsync.cli.options import Ctx, common

EPILOG = """\b
Examples:
  wbsync lock                   # pin new or changed entries, keep the rest
  wbsync lock --upgrade phi3    # move phi3 to where its alias points now
  wbsync lock --check           # CI / pre-commit: exit 1 if the lock is stale
"""


@click.command(epilog=EPILOG)
@click.option("--upgrade", is_flag=True, help="Re-resolve aliases (all entries, or NAMES).")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if the lock is missing or stale.")
@click.option("--source", default=None, metavar="DIR|URL",
              help="Use this mirror (folder or fsspec URL; `wandb` for W&B) instead of "
                   "WBSYNC_SOURCE or the manifest's source:.")
@common
def lock(ctx: Ctx, names: tuple[str, ...], upgrade: bool, check: bool) -> None:
    """Resolve new or changed entries to exact versions and write the lockfile."""
    from wbsync.cli import render
    from wbsync.repo.project import project_source
    from wbsync.sync import run_lock

    result = run_lock(ctx.project, names, upgrade=upgrade, check=check, source=project_source(ctx.project))
    ctx.emit(render.lock_text(result, ctx.lockfile), render.lock_json(result, ctx.lockfile), "lock")
