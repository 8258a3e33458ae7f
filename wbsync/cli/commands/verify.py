"""`wbsync verify`: re-hash the directories against the lock, offline."""

from __future__ import annotations

import click

from wbsync.cli.options import Ctx, common
from wbsync.core.errors import CheckFailed

EPILOG = """\b
Examples:
  wbsync verify                 # re-hash every locked file, offline
  wbsync verify phi3 --json
"""


@click.command(epilog=EPILOG)
@common
def verify(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Offline: re-hash the directories against the lock; exit 1 on any difference."""
    from wbsync.cli import render
    from wbsync.repo.project import check_names
    from wbsync.tree import swap
    from wbsync.tree.verify import verify as run_verify

    from wbsync.decide.agreement import stale_report

    lock = ctx.project.require_lock()
    if swap.pending(ctx.project.root):  # a sync killed mid-swap: finish it, then look
        warnings: list[str] = []
        swap.complete_pending_swap(ctx.project.root, tuple(a.path for a in lock.artifacts.values()), warnings)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    stale = stale_report(ctx.project.manifest(), lock) if ctx.project.manifest_path.exists() else {}
    selected = check_names(names, set(lock.artifacts) | set(stale), ctx.lockfile)
    reports = run_verify(ctx.project.root, lock, selected, stale=stale)
    ctx.emit(render.verify_text(reports), render.verify_json(reports), "verify")
    if not all(r.ok for r in reports):
        raise CheckFailed("")
