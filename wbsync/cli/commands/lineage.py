"""`wbsync lineage`: record the locked artifacts as inputs of one W&B run, once per lock and commit."""

from __future__ import annotations

import click

from wbsync.cli.options import Ctx, common

EPILOG = """\b
Examples:
  wbsync lineage --project training                 # in CI, after `wbsync sync --locked`
  wbsync lineage --project training --job-type eval --entity ml-team --json
"""


@click.command(epilog=EPILOG)
@click.option("--project", "wandb_project", required=True, metavar="P", help="W&B project of the run.")
@click.option("--job-type", default="wbsync-lineage", show_default=True, metavar="J", help="The run's job type.")
@click.option("--entity", default=None, metavar="E", help="W&B entity (default: WANDB_ENTITY or your default).")
@common
def lineage(ctx: Ctx, names: tuple[str, ...], wandb_project: str, job_type: str, entity: str | None) -> None:
    """Record every locked artifact (or NAMES) as an input of one W&B run, by its pinned vN.

    \b
    The run's id comes from the lock's sha256, the git commit, the project and the job type:
    running it again for the same lock and commit finds that run and creates none.
    """
    from wbsync.lineage import record_lineage

    result = record_lineage(ctx.project, names, wandb_project=wandb_project, job_type=job_type, entity=entity)
    state = "recorded in new run" if result.created else "already recorded by run"
    lines = [f"{len(result.artifacts)} locked artifact(s) {state} {result.run_path}"]
    if ctx.verbose or result.created:
        lines += [f"  {name}  {reference}" for name, reference in result.artifacts.items()]
    ctx.emit(lines, result.as_json(), "lineage")
