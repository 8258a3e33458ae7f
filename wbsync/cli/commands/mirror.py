"""`wbsync mirror DEST`: copy the locked versions into a mirror that `source:` can point at."""

from __future__ import annotations

import sys
from typing import Any

import click

from wbsync.cli.options import Ctx, common
from wbsync.core import pip_install

EPILOG = """\b
Examples:
  wbsync mirror /srv/wbsync-mirror              # a folder (no extra dependencies)
  wbsync mirror s3://bucket/wbsync-mirror       # {s3}
  wbsync mirror gs://bucket/wbsync-mirror phi3  # {gcs}; one entry
Then, where W&B is out of reach: `source: /srv/wbsync-mirror` in artifacts.yaml (or
--source / WBSYNC_SOURCE) and `wbsync sync`. A mirror describes itself (JSON
files next to the blobs), so any machine that can read it can sync from it.
""".format(s3=pip_install("s3"), gcs=pip_install("gcs"))


@click.command(epilog=EPILOG)
@click.argument("dest")
@click.option("--source", default=None, metavar="DIR|URL",
              help="Read from this mirror (or `wandb`) instead of WBSYNC_SOURCE or the manifest's source:.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Parallel transfers.")
@common
def mirror(ctx: Ctx, names: tuple[str, ...], dest: str, jobs: int) -> None:
    """Copy every locked version (or NAMES) into a self-describing mirror at DEST.

    DEST is a folder or an fsspec URL (s3://, gs://, file://). Blobs come from the content
    store, else from the source; blobs the mirror has already are skipped.
    """
    from wbsync.mirror import run_mirror

    progress = None
    if sys.stderr.isatty() and not ctx.quiet and not ctx.as_json:
        from wbsync.progress import Progress

        progress = Progress()
    try:
        result = run_mirror(ctx.project, dest, names, jobs=jobs,
                            progress=progress.advance if progress else None,
                            on_copy_start=progress.start if progress else None)
    finally:
        if progress:
            progress.close()
    ctx.emit(_text(result), _json(result), "mirror")


def _text(r: Any) -> list[str]:
    from wbsync.core.text import human_size, plural

    head = (f"Mirrored {plural(len(r.versions), 'version')} to {r.dest}: copied {plural(r.copied, 'file')} "
            f"({human_size(r.copied_bytes)}), {r.present} already there.")
    return [head] + [f"  {v}" for v in r.versions]


def _json(r: Any) -> dict[str, Any]:
    return {"dest": r.dest, "versions": r.versions, "copied_files": r.copied, "copied_bytes": r.copied_bytes,
            "present_files": r.present, "written": r.written}
