"""The command line: turn options into calls, render results, map errors to exit codes.

It decides nothing; wbsync.sync and friends do. ``main`` is the one place that exits.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from wbsync import __version__
from wbsync.errors import CheckFailed, WbsyncError

EPILOG_LOCK = """\b
Examples:
  wbsync lock                   # pin new or changed entries, keep the rest
  wbsync lock --upgrade phi3    # move phi3 to where its alias points now
  wbsync lock --check           # CI / pre-commit: exit 1 if the lock is stale
"""
EPILOG_SYNC = """\b
Examples:
  wbsync sync                   # lock what is stale, then fetch and place
  wbsync sync --locked          # CI: fail (exit 1) instead of updating the lock
  wbsync sync --frozen          # use the lock as is; never resolve
  wbsync sync --dry-run --json  # print the plan
"""
EPILOG_VERIFY = """\b
Examples:
  wbsync verify                 # re-hash every locked file, offline
  wbsync verify phi3 --json
"""
EPILOG_OUTDATED = """\b
Examples:
  wbsync outdated               # which aliases moved since locking?
  wbsync outdated --json
"""


class Ctx:
    def __init__(self, manifest: str | None, lockfile: str | None, as_json: bool, quiet: bool,
                 verbose: bool, source: str | None = None) -> None:
        from wbsync.project import Project

        self.project = Project.find(manifest, lockfile, source)
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose

    @property
    def lockfile(self) -> str:
        return str(self.project.lock_path)

    def emit(self, lines: list[str], doc: dict[str, Any], command: str) -> None:
        if self.as_json:
            click.echo(json.dumps({"command": command, **doc}, indent=2, sort_keys=True))
        elif not self.quiet:
            for line in lines:
                click.echo(line)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes (DESIGN.md): -m, --lockfile, NAMES, --json, -q, -v."""

    @click.option("-m", "--manifest", type=click.Path(dir_okay=False), default=None,
                  help="Manifest file (default: artifacts.yaml).")
    @click.option("--lockfile", type=click.Path(dir_okay=False), default=None,
                  help="Lockfile (default: the manifest's path with a .lock suffix).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
    @click.option("-v", "--verbose", is_flag=True, help="Print unchanged entries too.")
    @click.argument("names", nargs=-1)
    @functools.wraps(fn)
    def wrapper(manifest: str | None, lockfile: str | None, as_json: bool, quiet: bool, verbose: bool,
                names: tuple[str, ...], **kwargs: Any) -> None:
        click.get_current_context().meta["wbsync_json"] = as_json
        ctx = Ctx(manifest, lockfile, as_json, quiet, verbose, kwargs.pop("source", None))
        fn(ctx, names, **kwargs)

    return wrapper


class WbsyncGroup(click.Group):
    """Maps wbsync errors to the exit codes of DESIGN.md: the one place that decides an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WbsyncError as exc:
            ctx.exit(_report(exc.message, exc.exit_code, ctx))
        except KeyboardInterrupt:
            ctx.exit(_report("interrupted; verified files are kept and nothing half-written was left", 130, ctx))


def _report(message: str, code: int, ctx: click.Context) -> int:
    if message:
        click.echo(f"wbsync: error: {message}", err=True)
    if ctx.meta.get("wbsync_json") and code != 1:
        click.echo(json.dumps({"error": {"exit_code": code, "message": message}}, indent=2, sort_keys=True))
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


@cli.command(epilog=EPILOG_LOCK)
@click.option("--upgrade", is_flag=True, help="Re-resolve aliases (all entries, or NAMES).")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if the lock is missing or stale.")
@common
def lock(ctx: Ctx, names: tuple[str, ...], upgrade: bool, check: bool) -> None:
    """Resolve new or changed entries to exact versions and write the lockfile."""
    from wbsync import render
    from wbsync.sync import run_lock

    result = run_lock(ctx.project, names, upgrade=upgrade, check=check)
    ctx.emit(render.lock_text(result, ctx.lockfile), render.lock_json(result, ctx.lockfile), "lock")


@cli.command(epilog=EPILOG_SYNC)
@click.option("--locked", is_flag=True, help="Never write the lock; exit 1 if it is stale.")
@click.option("--frozen", is_flag=True, help="Use the lock as it is; do not read the manifest or resolve.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Parallel transfers.")
@click.option("--link", "link_mode", type=click.Choice(["auto", "copy", "reflink", "hardlink"]),
              default=lambda: os.environ.get("WBSYNC_LINK_MODE", "auto"), show_default="auto",
              help="How files reach the directories from the store.")
@common
def sync(ctx: Ctx, names: tuple[str, ...], locked: bool, frozen: bool, dry_run: bool, jobs: int,
         link_mode: str) -> None:
    """Make the declared directories hold exactly the locked files."""
    from wbsync import render
    from wbsync.sync import run_sync

    show = sys.stderr.isatty() and not ctx.quiet and not ctx.as_json
    progress = None
    if show:
        from wbsync.progress import Progress

        progress = Progress()
    try:
        result = run_sync(ctx.project, names, locked=locked, frozen=frozen, dry_run=dry_run, jobs=jobs,
                          link_mode=link_mode,  # type: ignore[arg-type]
                          progress=progress.advance if progress else None,
                          on_fetch_start=progress.start if progress else None)
    finally:
        if progress:
            progress.close()
    ctx.emit(render.sync_text(result, ctx.lockfile, ctx.verbose), render.sync_json(result, ctx.lockfile), "sync")


@cli.command(epilog=EPILOG_VERIFY)
@common
def verify(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Offline: re-hash the directories against the lock; exit 1 on any difference."""
    from wbsync import render
    from wbsync.project import check_names
    from wbsync.verify import verify as run_verify

    lock = ctx.project.require_lock()
    selected = check_names(names, set(lock.artifacts), ctx.lockfile)
    reports = run_verify(ctx.project.root, lock, selected)
    ctx.emit(render.verify_text(reports), render.verify_json(reports), "verify")
    if not all(r.ok for r in reports):
        raise CheckFailed("")


@cli.command(epilog=EPILOG_OUTDATED)
@common
def outdated(ctx: Ctx, names: tuple[str, ...]) -> None:
    """Ask the source where each alias points now; list entries whose alias moved."""
    from wbsync import render
    from wbsync.project import check_names
    from wbsync.sources import open_source
    from wbsync.verify import outdated as run_outdated

    manifest = ctx.project.manifest()
    lock = ctx.project.require_lock()
    selected = check_names(names, set(manifest.entries), str(ctx.project.manifest_path))
    source = open_source(ctx.project.source or manifest.source)
    changes = run_outdated(manifest, lock, source, selected)
    checked = sum(1 for n, e in manifest.entries.items() if e.reference.alias and (selected is None or n in selected))
    ctx.emit(render.outdated_text(changes, checked),
             {"outdated": [render.change_json(c) for c in changes], "checked": checked}, "outdated")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="wbsync")
