"""`wbsync add`: add an entry to artifacts.yaml, keeping the rest of the file byte for byte, and lock it."""

from __future__ import annotations

import os

import click

from wbsync.cli.options import Ctx, project_options
from wbsync.core.errors import Interrupted

EPILOG = """\b
Examples:
  wbsync add wandb-registry-model/phi3-finetuned:production --path models/phi3
  wbsync add wandb-registry-dataset/eval-set:v12 --path data/eval --name eval
  wbsync add acme/wandb-registry-model/llama:latest --path models/llama \\
      --include '*.safetensors' --include config.json --exclude '*.md'

\b
The entry goes at the end of artifacts: in the nearest artifacts.yaml, from here up to
the git repository's root (a new one in this folder if there is none); --path is relative
to that file's folder. Comments and formatting elsewhere are kept. If locking it fails, the
manifest is left as it was. Then run `wbsync sync NAME` to fetch the files.
"""


class _AddCommand(click.Command):
    """`add` with a hint for the usual cause of an extra argument: a registry name with a space
    (`wandb-registry-Fine-tuned Models/...`) that the shell split in two."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            hint = _quoting_hint(given)
            if hint is None or "unexpected extra argument" not in exc.message:
                raise
            raise click.UsageError(f"{exc.message}. {hint}", ctx) from None


def _quoting_hint(args: list[str]) -> str | None:
    start = next((i for i, a in enumerate(args) if "wandb-registry-" in a and not a.startswith("-")), None)
    if start is None:
        return None
    words = [args[start]]
    for word in args[start + 1:]:
        if word.startswith("-"):
            break
        words.append(word)
    if len(words) < 2:
        return None
    joined = " ".join(words)
    return (f"A registry name with a space must be quoted, so that REFERENCE is one argument: "
            f"wbsync add '{joined}' --path DIR")


@click.command(cls=_AddCommand, epilog=EPILOG)
@click.argument("reference")
@click.option("--path", "dest", required=True, metavar="DIR",
              help="Folder for the files, relative to the manifest's folder.")
@click.option("--name", default=None, help="Entry name (default: the collection name).")
@click.option("--type", "kind", default=None, help="Fail if the artifact's type differs, e.g. model.")
@click.option("--include", multiple=True, metavar="GLOB", help="Sync only files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out files matching GLOB (repeatable).")
@project_options
def add(ctx: Ctx, reference: str, dest: str, name: str | None, kind: str | None,
        include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Add REFERENCE (a registry artifact's full name) to the manifest and lock it."""
    from wbsync.cli import render
    from wbsync.repo.manifest_edit import new_entry
    from wbsync.sync import run_add

    entry = new_entry(reference, dest, name, kind, include, exclude)
    project = ctx.project  # the nearest artifacts.yaml above, as for every command; else a new one here
    try:
        result = run_add(project, entry)
    except KeyboardInterrupt:  # run_add put the manifest back as it was
        raise Interrupted(f"interrupted; {project.manifest_path} was left as it was: the entry was not "
                          "added.") from None
    lines = render.add_text(result, ctx.lockfile)
    if project.elsewhere:  # --path is relative to the manifest's folder, not to the current one
        lines.insert(1, f"  the files go to {os.path.relpath(project.root / entry.path)}/ (--path is relative to "
                        f"the folder of {project.manifest_path})")
    elif result.created and project.searched_from is not None:
        lines.insert(1, f"  no {project.manifest_path.name} in this folder or above it, so wbsync started one "
                        "here; with -m PATH, add to a manifest elsewhere")
    ctx.emit(lines, render.add_json(result, ctx.lockfile), "add")
