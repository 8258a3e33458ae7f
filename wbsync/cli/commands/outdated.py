"""`wbsync outdated`: which aliases moved since locking, and which locked versions vanished."""

from __future__ import annotations

import click

from wbsync.cli.options import Ctx, common
from wbsync.core.errors import CheckFailed

EPILOG = """\b
Examples:
  wbsync outdated               # moved aliases; vanished or expiring locked versions
  wbsync outdated --json        # {"outdated": [...], "vanished": [...], "expiring": [...]}
  wbsync outdated --porcelain --collection phi3-finetuned --alias production
                                # for scripts: "moved NAME" lines on stdout
"""


@click.command(epilog=EPILOG)
@click.option("--source", default=None, metavar="DIR|URL",
              help="Use this mirror (folder or fsspec URL; `wandb` for W&B) instead of "
                   "WBSYNC_SOURCE or the manifest's source:.")
@click.option("--collection", default="", metavar="NAME",
              help="Only entries that follow this registry collection (empty: any).")
@click.option("--alias", default="", metavar="NAME", help="Only entries that follow this alias (empty: any).")
@click.option("--porcelain", is_flag=True,
              help="For scripts: `moved NAME`, `vanished NAME`, `expiring NAME` lines on stdout; "
                   "the report goes to stderr.")
@common
def outdated(ctx: Ctx, names: tuple[str, ...], collection: str, alias: str, porcelain: bool) -> None:
    """Ask the source where each alias points now and whether each locked version still exists.

    Exit 1 when an alias moved (as `npm outdated` does) or a locked version vanished (deleted,
    unlinked or not committed); 0 when neither."""
    from wbsync.cli import render
    from wbsync.decide.outdated import check_outdated, following
    from wbsync.repo.project import check_names, project_source

    manifest = ctx.project.manifest()
    lock = ctx.project.require_lock()
    selected = check_names(names, set(manifest.entries), str(ctx.project.manifest_path))
    if collection or alias:
        matching = following(manifest, collection, alias)
        selected = matching if selected is None else selected & matching
    report = check_outdated(manifest, lock.artifacts, project_source(ctx.project, manifest), selected)
    lines = render.outdated_text(report)
    if (collection or alias) and not selected:
        lines = [render.nothing_follows(manifest.file, collection, alias)]
    if porcelain and not ctx.as_json:
        from wbsync.core.shown import printable, styled_line

        for line in lines:
            click.echo(styled_line(line), err=True)
        click.echo("".join(f"{kind} {printable(name)}\n" for kind, name in render.outdated_porcelain(report)), nl=False)
    else:
        ctx.emit(lines, render.outdated_json(report), "outdated")
    if report.moved or not report.ok:  # as `npm outdated`: a script can act on "something moved"
        raise CheckFailed("")
