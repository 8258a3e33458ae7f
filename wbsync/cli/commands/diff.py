"""`wbsync diff`: the lock against the lock at a git revision (default HEAD) or another lock file."""

from __future__ import annotations

from pathlib import Path

import click

from wbsync.cli.options import Ctx, complete_names, project_options
from wbsync.core.errors import CheckFailed, UsageError

EPILOG = """\b
Examples:
  wbsync diff                   # artifacts.lock against the committed one (HEAD)
  wbsync diff main              # against the lock on main
  wbsync diff old/artifacts.lock
  wbsync diff HEAD phi3         # only the entry phi3
  wbsync diff main --markdown >> "$GITHUB_STEP_SUMMARY"
"""


@click.command(epilog=EPILOG)
@click.argument("against", required=False, metavar="[REV|LOCKFILE]")
@click.argument("names", nargs=-1, shell_complete=complete_names)
@click.option("--markdown", is_flag=True, help="Markdown for a pull-request body or a CI job summary.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything differs.")
@project_options
def diff(ctx: Ctx, against: str | None, names: tuple[str, ...], markdown: bool, exit_code: bool) -> None:
    """Compare the lock with the lock at a git revision (default HEAD) or another lock file.

    Per entry: added, removed, version moves with the files added, removed and changed, and
    warnings for another destination, registry, collection, org or type, and for a resolved
    version that does not match the requested reference."""
    from wbsync.cli import render_diff
    from wbsync.core.models import Lock
    from wbsync.repo.lockdiff import diff_locks
    from wbsync.repo.lockfile import loads, read_lock
    from wbsync.repo.project import check_names

    current = ctx.project.require_lock()
    base = against or "HEAD"
    if Path(base).is_file():
        other = read_lock(base) or Lock({})
        label = base
    else:
        from wbsync.repo.gitrev import lock_text_at

        if base in current.artifacts and not _is_revision(base, ctx.project.lock_path):
            raise UsageError(f"{base!r} is an entry name, not a git revision or a lock file. To compare only "
                             f"some entries, give the revision first: `wbsync diff HEAD {base}`.")
        text = lock_text_at(base, ctx.project.lock_path)
        other = loads(text, f"{base}:{ctx.project.lock_path.name}") if text is not None else Lock({})
        label = base if text is not None else f"{base} (no {ctx.project.lock_path.name} there)"
    selected = check_names(names, set(current.artifacts) | set(other.artifacts), ctx.lockfile)
    result = diff_locks(other, current, selected)
    if markdown and not ctx.as_json:
        if not ctx.quiet:
            click.echo(render_diff.diff_markdown(result, ctx.lockfile, label), nl=False)
    else:
        ctx.emit(render_diff.diff_text(result, ctx.lockfile, label, ctx.verbose),
                 render_diff.diff_json(result, ctx.lockfile, label), "diff")
    if exit_code and result.differs:
        raise CheckFailed("")


def _is_revision(name: str, lock_path: Path) -> bool:
    from wbsync.repo.gitrev import lock_text_at

    try:
        lock_text_at(name, lock_path)
    except UsageError:
        return False
    return True
