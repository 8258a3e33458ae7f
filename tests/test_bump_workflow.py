"""The lock-bump workflow (examples/lock-bump/.github/workflows/wbsync-bump.yml), end to end: its
own `run:` script, read from the YAML, runs with bash as GitHub runs it, in a clone of a
temporary git repository, against the fake W&B server, with a stand-in for `gh` that records
what it was asked and keeps the pull requests it opened. Nothing of the script is re-written
here; only the `${{ }}` expressions of its `env:` are filled in, as GitHub would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run, write_manifest
from test_lock_and_sync import MODEL, publish
from wbsync.testing import FakeWandb

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples/lock-bump/.github/workflows/wbsync-bump.yml"
MANIFEST = """
    version: 1
    artifacts:
      phi3:
        artifact: wandb-registry-model/phi3-finetuned:production
        path: models/phi3
      eval:
        artifact: wandb-registry-dataset/eval-set:v0
        path: data/eval
"""
NEWER = {"config.json": b'{"layers": 40}\n', "weights/shard-0.bin": MODEL["weights/shard-0.bin"]}
EVAL = {"eval.jsonl": b'{"q": 1}\n'}

GH_STANDIN = '''
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["GH_STANDIN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
path = os.environ["GH_STANDIN_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {"prs": []}
def opt(name):
    return args[args.index(name) + 1]
if args[:2] == ["auth", "setup-git"]:
    sys.exit(0)
elif args[:2] == ["pr", "list"]:
    # As gh does: --head matches the branch name in this repository and in every fork; the
    # fields asked for go through the workflow's own --jq expression (gh's gojq; jq here).
    assert opt("--state") == "open", args
    fields = opt("--json").split(",")
    rows = [{"number": p["number"], "isCrossRepository": p.get("cross", False)}
            for p in state["prs"] if p["head"] == opt("--head")]
    rows = json.dumps([{k: r[k] for k in fields} for r in rows])
    done = subprocess.run(["jq", "-r", opt("--jq")], input=rows, capture_output=True, text=True, check=True)
    print(done.stdout, end="")
elif args[:2] == ["pr", "create"]:
    number = len(state["prs"]) + 1
    state["prs"].append({"number": number, "head": opt("--head"), "base": opt("--base"),
                         "title": opt("--title"), "body": open(opt("--body-file")).read()})
    print(f"https://github.com/acme/models/pull/{number}")
elif args[:2] == ["pr", "edit"]:
    pr = next(p for p in state["prs"] if p["number"] == int(args[2]))
    pr["body"] = open(opt("--body-file")).read()
else:
    sys.exit(f"gh stand-in: unexpected call {args}")
json.dump(state, open(path, "w"))
'''


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def step(step_id: str) -> dict[str, Any]:
    return next(s for s in workflow()["jobs"]["bump"]["steps"] if s.get("id") == step_id)


def expression(text: str, context: dict[str, Any]) -> str:
    """`${{ a.b || c.d }}` with the contexts the workflow uses; anything else fails the test."""
    def value(match: re.Match[str]) -> str:
        for operand in match.group(1).split("||"):
            node: Any = context
            for part in operand.strip().split("."):
                assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part), f"unsupported expression {match.group(0)}"
                node = node.get(part, "") if isinstance(node, dict) else ""
            if node:
                return str(node)
        return ""
    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", value, text)


class Runner:
    """A GitHub runner in miniature: a checkout of origin's main, a temp dir, bash as `shell: bash` runs it."""

    def __init__(self, tmp: Path, project: Path) -> None:
        self.tmp, self.work, self.origin = tmp, project, tmp / "origin.git"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        (self.bin / "gh").write_text(f"#!{sys.executable}\n{GH_STANDIN}")
        (self.bin / "wbsync").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wbsync "$@"\n')
        for tool in ("gh", "wbsync"):
            (self.bin / tool).chmod(0o755)
        self.log, self.state = tmp / "gh-log.jsonl", tmp / "gh-state.json"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        cmd = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args]
        return subprocess.run(cmd, cwd=cwd or self.work, check=True, capture_output=True, text=True).stdout.strip()

    def publish_repository(self) -> None:
        self.git("init", "-q", "--bare", "-b", "main", str(self.origin), cwd=self.tmp)
        self.git("init", "-q", "-b", "main")
        self.git("add", "artifacts.yaml", "artifacts.lock")
        self.git("commit", "-q", "-m", "pin phi3 and eval")
        self.git("remote", "add", "origin", str(self.origin))
        self.git("push", "-q", "origin", "main")

    def run_bump(self, payload: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The `bump` step, on a fresh checkout of main (what actions/checkout leaves)."""
        assert workflow()["defaults"]["run"]["shell"] == "bash"
        self.git("switch", "-q", "--force", "main")
        self.git("reset", "-q", "--hard", "origin/main")
        bump = step("bump")
        context = {"secrets": {"WANDB_API_KEY": os.environ["WANDB_API_KEY"]}, "github": {
            "token": "ghs_job_token", "event": {"client_payload": payload or {}}}}
        temp = self.tmp / "runner-temp"
        temp.mkdir(exist_ok=True)
        env = {**os.environ, **{k: expression(str(v), context) for k, v in bump["env"].items()},
               "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
               "GITHUB_SHA": self.git("rev-parse", "HEAD"), "GITHUB_REF_NAME": "main",
               "GITHUB_EVENT_NAME": "repository_dispatch" if payload is not None else "schedule",
               "RUNNER_TEMP": str(temp), "GITHUB_STEP_SUMMARY": str(temp / "summary.md"),
               "GITHUB_OUTPUT": str(temp / "output"), "GH_STANDIN_LOG": str(self.log),
               "GH_STANDIN_STATE": str(self.state), "HOME": str(self.tmp / "home")}
        script = temp / "bump.sh"
        script.write_text(bump["run"])
        # What `shell: bash` runs on a GitHub runner.
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.work,
                              env=env, capture_output=True, text=True, timeout=300)

    def gh_calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def prs(self) -> list[dict[str, Any]]:
        return json.loads(self.state.read_text())["prs"] if self.state.exists() else []

    def lock_on(self, branch: str) -> dict[str, Any]:
        return yaml.safe_load(self.git("show", f"{branch}:artifacts.lock", cwd=self.origin))["artifacts"]


@pytest.fixture
def runner(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> Runner:
    """phi3 (follows `production`) and eval (pinned v0), locked and pushed to origin's main."""
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "dataset", "eval-set", EVAL, type="dataset")
    write_manifest(project, MANIFEST)
    run("lock")
    r = Runner(tmp_path, project)
    r.publish_repository()
    return r


def test_a_moved_alias_opens_one_pull_request_and_a_second_move_updates_it(fake_wandb: FakeWandb,
                                                                           runner: Runner) -> None:
    publish(fake_wandb, NEWER)  # production: v0 -> v1
    done = runner.run_bump()
    assert done.returncode == 0, done.stderr
    [pr] = runner.prs()
    assert (pr["head"], pr["base"], pr["title"]) == (
        "wbsync/bump-phi3", "main", "wbsync: move phi3 to where its alias points now")
    assert "| `phi3` | moved | `v0 -> v1` |" in pr["body"] and "eval" not in pr["body"]
    lock = runner.lock_on("wbsync/bump-phi3")
    assert (lock["phi3"]["version"], lock["eval"]["version"]) == ("v1", "v0")
    assert runner.lock_on("main")["phi3"]["version"] == "v0"  # main changes only by merging
    assert [c[:2] for c in runner.gh_calls()] == [["auth", "setup-git"], ["pr", "list"], ["pr", "create"]]

    publish(fake_wandb, {**NEWER, "extra.txt": b"more"})  # production: v1 -> v2
    done = runner.run_bump()
    assert done.returncode == 0, done.stderr
    [pr] = runner.prs()
    assert "| `phi3` | moved | `v0 -> v2` |" in pr["body"]
    assert runner.lock_on("wbsync/bump-phi3")["phi3"]["version"] == "v2"
    assert [c[:2] for c in runner.gh_calls()][-2:] == [["pr", "list"], ["pr", "edit"]]


HOSTILE_PAYLOADS = [
    {"collection": "eval-set", "alias": "production"},  # no entry follows it by alias
    {"collection": "--source=/tmp/elsewhere", "alias": "$(touch pwned)"},
    {"collection": "phi3-finetuned; touch pwned", "alias": "`touch pwned`"},
    {"collection": "phi3-finetuned\n::error::injected", "alias": "production"},
]


def test_a_dispatch_bumps_only_entries_that_follow_its_collection_and_alias(fake_wandb: FakeWandb,
                                                                           runner: Runner) -> None:
    publish(fake_wandb, NEWER)
    for payload in HOSTILE_PAYLOADS:
        done = runner.run_bump(payload)
        assert done.returncode == 0, (payload, done.stderr)
        assert runner.prs() == [] and not (runner.work / "pwned").exists()
        assert "nothing to check" in done.stderr
        assert not any(line.startswith("::") for line in (done.stdout + done.stderr).splitlines())
    done = runner.run_bump({"collection": "phi3-finetuned", "alias": "production"})
    assert done.returncode == 0, done.stderr
    assert [p["head"] for p in runner.prs()] == ["wbsync/bump-phi3"]


def test_a_vanished_version_fails_the_job_after_the_bumps(fake_wandb: FakeWandb, runner: Runner) -> None:
    publish(fake_wandb, NEWER)
    fake_wandb.delete_version("acme", "dataset", "eval-set", 0)
    done = runner.run_bump()
    assert done.returncode == 1
    assert [p["head"] for p in runner.prs()] == ["wbsync/bump-phi3"]
    assert "eval  vanished" in done.stderr and "artifacts.yaml line 6 pins v0" in done.stderr


def test_the_workflow_names_real_actions_inputs_and_triggers() -> None:
    doc = workflow()
    on = doc[True]  # YAML 1.1 reads the key `on` as true
    assert on["repository_dispatch"] == {"types": ["wbsync-alias-added"]} and on["schedule"]
    assert doc["permissions"] == {}
    assert doc["jobs"]["bump"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    inputs = {"actions/checkout": {"persist-credentials"}, "actions/setup-python": {"python-version"}}
    for s in doc["jobs"]["bump"]["steps"]:
        if "uses" in s:
            action = s["uses"].split("@")[0]
            assert set(s.get("with", {})) <= inputs[action]
    bump = step("bump")
    assert "${{" not in bump["run"], "payload fields reach the script through env: only"
    assert textwrap.dedent(bump["run"]).count("wbsync lock --upgrade -- ") == 1
