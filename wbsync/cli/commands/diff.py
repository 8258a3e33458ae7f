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
  wbsync diff main --           # the revision main, even if a file is named main
  wbsync diff old/artifacts.lock
  wbsync diff HEAD phi3         # only the entry phi3
  wbsync diff main --markdown >> "$GITHUB_STEP_SUMMARY"
"""


_REVISION_MARK = "wbsync.diff.revisions"  # the words written before `--`: REV there is a revision, never a file


class _DiffCommand(click.Command):
    """Remembers the words before ``--`` (click drops the ``--`` itself), as git reads them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            ctx.meta[_REVISION_MARK] = frozenset(args[:args.index("--")])
        return super().parse_args(ctx, args)


@click.command(cls=_DiffCommand, epilog=EPILOG)
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
    as_revision = against is None or against in click.get_current_context().meta.get(_REVISION_MARK, ())
    as_file = base.startswith(("./", "../", "/"))  # written as a path: origin/main is not one
    if not as_revision and not as_file and Path(base).is_file() and _is_revision(base, ctx.project.lock_path):
        # A pull request can add a file named like the base branch, holding a lock of its own: say
        # which one is meant, as git does ("ambiguous argument"), rather than pick one silently.
        raise UsageError(f"{base!r} is both a file here and a git revision. Write ./{base} to compare with the file, "
                         f"or `wbsync diff {base} --` to compare with the revision.")
    if not as_revision and Path(base).is_file():
        other = read_lock(base) or Lock({})
        label = header = base
    else:
        from wbsync.repo.gitrev import commit_of, lock_text_at

        if base in current.artifacts and not _is_revision(base, ctx.project.lock_path):
            raise UsageError(f"{base!r} is an entry name, not a git revision or a lock file. To compare only "
                             f"some entries, give the revision first: `wbsync diff HEAD {base}`.")
        text = lock_text_at(base, ctx.project.lock_path)
        other = loads(text, f"{base}:{ctx.project.lock_path.name}") if text is not None else Lock({})
        label = base if text is not None else f"{base} (no {ctx.project.lock_path.name} there)"
        header = f"{base} ({commit_of(base, ctx.project.lock_path)})" if text is not None else label
    selected = check_names(names, set(current.artifacts) | set(other.artifacts), ctx.lockfile)
    result = diff_locks(other, current, selected)
    if markdown and not ctx.as_json:
        if not ctx.quiet:
            click.echo(render_diff.diff_markdown(result, ctx.lockfile, header), nl=False)
    else:  # the header names the commit compared; --json keeps the revision as given (and its schema)
        ctx.emit(render_diff.diff_text(result, ctx.lockfile, header, ctx.verbose),
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
