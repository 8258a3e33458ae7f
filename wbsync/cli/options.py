"""What every command shares: the options that find the project (-m, --lockfile) and shape the
output (--json, -q, -v), turned into a ``Ctx``, and the way a command prints its result."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import click

from wbsync.core.errors import WbsyncError

if TYPE_CHECKING:
    from wbsync.repo.project import Project


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
            from wbsync.repo.project import Project

            manifest, lockfile, source, lock_only = self._options
            self._project = Project.discover(manifest, lockfile, source, lock_only=lock_only, relative=True)
            found = self._project
            if manifest is None and found.searched_from is None and found.elsewhere:
                self.note(f"using {found.manifest_path if found.manifest_path.exists() else found.lock_path}")
        return self._project

    def note(self, text: str) -> None:
        """A line on stderr for people (not with -q): context that is not the command's result."""
        if not self.quiet:
            from wbsync.core.shown import printable, redact

            click.echo(f"wbsync: {printable(redact(text))}", err=True)

    @property
    def lockfile(self) -> str:
        return str(self.project.lock_path)

    def emit(self, lines: list[str], doc: dict[str, Any], command: str) -> None:
        from wbsync.core.shown import json_text, styled_line

        if self.as_json:
            click.echo(json_text({"command": command, **doc}))
        elif not self.quiet:
            from wbsync.cli.style import colour

            for line in lines:  # names and paths from others: no control character reaches the terminal
                click.echo(styled_line(line), color=colour())


    def warn(self, lines: list[str]) -> None:
        """Warnings go to stderr (also with --json, whose document carries them too); -q drops them."""
        if not self.quiet:
            from wbsync.cli.style import colour
            from wbsync.core.shown import styled_line

            for line in lines:  # they quote state files and servers: escaped and redacted like any line
                click.echo(styled_line(line), err=True, color=colour())


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes (README, "Commands"): -m, --lockfile, NAMES, --json, -q, -v."""

    @project_options
    @click.argument("names", nargs=-1, shell_complete=complete_names)
    @functools.wraps(fn)
    def wrapper(ctx: Ctx, names: tuple[str, ...], **kwargs: Any) -> None:
        fn(ctx, names, **kwargs)

    return wrapper


def complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of NAMES: the manifest's entry names (nothing if it cannot be read)."""
    from wbsync.repo.project import Project

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
