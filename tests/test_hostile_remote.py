"""Attacks from the remote side (issue 26, round three): a server, a mirror, a fork's pull request,
a co-tenant on the same machine. Each test plays the attacker against the real CLI (the fake W&B
server, a folder mirror, the bump workflow's own script) and checks the promise that holds now:
the exit code, the bytes placed, what reaches the terminal. docs/reliability.md lists the verdicts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import run, run_json, write_manifest
from test_bump_workflow import NEWER, Runner, runner  # noqa: F401 (runner is a fixture)
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb


# -- item 9: a fork's pull request with the bump branch's name ----------------------------------


@pytest.mark.skipif(shutil.which("jq") is None, reason="the gh stand-in evaluates the workflow's --jq with jq")
def test_the_bump_workflow_never_edits_a_forks_pull_request_of_the_same_branch_name(
        fake_wandb: FakeWandb, runner: Runner) -> None:  # noqa: F811
    fork = {"number": 1, "head": "wbsync/bump-phi3", "base": "main", "title": "fork", "body": "the fork's own",
            "cross": True}
    runner.state.write_text(json.dumps({"prs": [fork]}))
    publish(fake_wandb, NEWER)
    done = runner.run_bump()
    assert done.returncode == 0, done.stderr
    theirs, ours = runner.prs()
    assert theirs == fork
    assert ours["head"] == "wbsync/bump-phi3" and "phi3" in ours["body"]
    assert [c[:2] for c in runner.gh_calls()][-2:] == [["pr", "list"], ["pr", "create"]]
