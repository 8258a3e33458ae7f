"""The command line: turn options into calls, render results, map errors to exit codes.

It decides nothing; wbsync.sync and friends do. ``main`` is the one place that exits.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import click

from wbsync import __version__
from wbsync.errors import WbsyncError, local_io_error

if TYPE_CHECKING:
    from wbsync.project import Project


#: Commands that read only the lockfile: a lone artifacts.lock is their project (so is `sync --frozen`).
LOCK_ONLY_COMMANDS = frozenset({"verify", "mirror", "lineage"})


class Ctx:
    def __init__(self, manifest: str | None, lockfile: str | None, as_json: bool, quiet: bool,
                 verbose: bool, source: str | None = None, lock_only: bool = False) -> None:
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose
        self._options = (manifest, lockfile, source, lock_only)
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        """Found on first use (`cache` commands have none); says which manifest when it is not here."""
        if self._project is None:
            from wbsync.project import Project

            manifest, lockfile, source, lock_only = self._options
            self._project = Project.discover(manifest, lockfile, source, lock_only=lock_only, relative=True)
            found = self._project
            if manifest is None and found.searched_from is None and found.elsewhere:
                self.note(f"using {found.manifest_path if found.manifest_path.exists() else found.lock_path}")
        return self._project

    def note(self, text: str) -> None:
        """A line on stderr for people (not with -q): context that is not the command's result."""
        if not self.quiet:
            from wbsync.shown import printable

            click.echo(f"wbsync: {printable(text)}", err=True)

    @property
    def lockfile(self) -> str:
        return str(self.project.lock_path)

    def emit(self, lines: list[str], doc: dict[str, Any], command: str) -> None:
        from wbsync.shown import json_text, styled_line

        if self.as_json:
            click.echo(json_text({"command": command, **doc}))
        elif not self.quiet:
            from wbsync.style import colour

            for line in lines:  # names and paths from others: no control character reaches the terminal
                click.echo(styled_line(line), color=colour())


    def warn(self, lines: list[str]) -> None:
        """Warnings go to stderr (also with --json, whose document carries them too); -q drops them."""
        if not self.quiet:
            from wbsync.style import colour

            for line in lines:
                click.echo(line, err=True, color=colour())


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes (README, "Commands"): -m, --lockfile, NAMES, --json, -q, -v."""

    @project_options
    @click.argument("names", nargs=-1, shell_complete=_complete_names)
    @functools.wraps(fn)
    def wrapper(ctx: Ctx, names: tuple[str, ...], **kwargs: Any) -> None:
        fn(ctx, names, **kwargs)

    return wrapper


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of NAMES: the manifest's entry names (nothing if it cannot be read)."""
    from wbsync.project import Project

    try:
        manifest = Project.discover(ctx.params.get("manifest"), lock_only=False).manifest()
    except WbsyncError:
        return []
    return [name for name in manifest.entries if name.startswith(incomplete)]


def project_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-m, --lockfile, --json, -q, -v, turned into a Ctx (`add` takes these without NAMES)."""

    @click.option("-m", "--manifest", type=click.Path(dir_okay=False), default=None,
                  help="Manifest file (default: the nearest artifacts.yaml, from here up to the git repository's root).")
    @click.option("--lockfile", type=click.Path(dir_okay=False), default=None,
                  help="Lockfile (default: the manifest's path with a .lock suffix).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
    @click.option("-v", "--verbose", is_flag=True, help="Print unchanged entries too.")
    @functools.wraps(fn)
    def wrapper(manifest: str | None, lockfile: str | None, as_json: bool, quiet: bool, verbose: bool,
                **kwargs: Any) -> None:
        click_ctx = click.get_current_context()
        click_ctx.meta["wbsync_json"] = as_json
        lock_only = click_ctx.info_name in LOCK_ONLY_COMMANDS or bool(kwargs.get("frozen"))
        ctx = Ctx(manifest, lockfile, as_json, quiet, verbose, kwargs.pop("source", None), lock_only)
        fn(ctx, **kwargs)

    return wrapper


class WbsyncGroup(click.Group):
    """Maps wbsync errors to the exit codes of the README: the one place that decides an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Known before the command parses its options, so a usage error gets its JSON document too.
        ctx.meta["wbsync_json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # click prints it and exits 2; --json also wants the document
            if ctx.meta.get("wbsync_json"):
                _report("", exc.exit_code, ctx, exc.format_message())
            raise
        except WbsyncError as exc:
            ctx.exit(_report(exc.message, exc.exit_code, ctx))
        except OSError as exc:  # a local write no layer named (they turn theirs into LocalIOError)
            ctx.exit(_report(local_io_error(exc).message, 2, ctx))
        except KeyboardInterrupt:
            ctx.exit(_report("interrupted; nothing half-written got a final name", 130, ctx))


def _report(message: str, code: int, ctx: click.Context, json_message: str | None = None) -> int:
    from wbsync.shown import json_text, printable, redact
    from wbsync.style import bad, colour

    if message:
        shown = printable(redact(message), keep_newlines=True)
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


# Each command lives in its own module under wbsync/commands/ and registers itself on `cli`.
from wbsync.commands import add, cache, diff, lineage, lock, mirror, outdated, sync, verify  # noqa: E402,F401
