"""What the commands print: each --json document key by key, colour only for terminals, -q, --help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from helpers import run, run_json, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.cli import cli, style
from wbsync.testing import FakeWandb, Fault

RESOLVED = "acme-org/wandb-registry-model/phi3-finetuned:v{}"
SIZE = sum(len(b) for b in MODEL.values())
NEWER = {"config.json": b'{"layers": 40}\n', "tokenizer.json": b"{}"}
ESC = "\x1b["


def new_pin(name: str = "phi3", version: str = "v0") -> dict[str, Any]:
    return {"name": name, "selector": "production", "old_version": None, "new_version": version,
            "old_resolved": None, "new_resolved": RESOLVED.format(version[1:]),
            "files_added": len(MODEL), "files_removed": 0, "files_changed": 0, "bytes_delta": SIZE}


def lock_doc(written: bool, changes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"lockfile": "artifacts.lock", "written": written, "changes": changes,
            "entries": {"phi3": {"version": "v0", "resolved": RESOLVED.format(0), "files": len(MODEL), "bytes": SIZE}}}


@pytest.fixture
def locked(fake_wandb: FakeWandb, project: Path) -> Path:
    """The phi3 model published and locked at v0."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    return project


# --json: one document per command, every key checked ------------------------------------------


def test_lock_json_lists_each_new_pin_and_every_locked_entry(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    assert run_json("lock") == {"command": "lock", **lock_doc(True, [new_pin()])}
    assert run_json("lock") == {"command": "lock", **lock_doc(False, [])}


def test_sync_json_reports_the_lock_it_wrote_the_plan_and_the_transfers(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    assert run_json("sync") == {
        "command": "sync", "noop": False, "dry_run": False, "lock": lock_doc(True, [new_pin()]),
        "fetched_files": len(MODEL), "fetched_bytes": SIZE, "placed": len(MODEL), "removed": 0,
        "kept_modified": [], "orphans": [],
        "kept_not_placed": [], "restored": [], "replaced": [], "extra": [], "warnings": [],
        "entries": [{"name": "phi3", "version": "v0", "path": "models/phi3", "keep": 0, "check": 0,
                     "place": len(MODEL), "remove": []}],
    }
    again = run_json("sync")
    assert (again["noop"], again["lock"], again["fetched_files"], again["placed"]) == (True, None, 0, 0)
    assert again["entries"][0]["keep"] == len(MODEL) and again["entries"][0]["place"] == 0


def test_sync_dry_run_json_is_the_plan_and_changes_nothing(locked: Path) -> None:
    (locked / "models/phi3").mkdir(parents=True)
    assert run_json("sync", "--dry-run") == {
        "command": "sync", "noop": False, "dry_run": True, "lock": None, "fetched_files": 0, "fetched_bytes": 0,
        "placed": 0, "removed": 0, "kept_modified": [], "orphans": [],
        "kept_not_placed": [], "restored": [], "replaced": [], "extra": [], "warnings": [],
        "entries": [{"name": "phi3", "version": "v0", "path": "models/phi3", "keep": 0, "check": 0,
                     "place": len(MODEL), "remove": []}],
    }
    assert list((locked / "models/phi3").iterdir()) == []


def test_verify_json_lists_each_entrys_differences(locked: Path) -> None:
    run("sync")
    assert run_json("verify") == {"command": "verify", "ok": True, "entries": [
        {"name": "phi3", "path": "models/phi3", "ok": True, "missing": [], "modified": [], "extra": [],
         "stale": None}]}
    (locked / "models/phi3/README.md").unlink()
    (locked / "models/phi3/config.json").write_text("edited")
    (locked / "models/phi3/notes.txt").write_text("mine")
    assert run_json("verify", check=1) == {"command": "verify", "ok": False, "entries": [
        {"name": "phi3", "path": "models/phi3", "ok": False, "missing": ["README.md"],
         "modified": ["config.json"], "extra": ["notes.txt"], "stale": None}]}


def test_outdated_json_lists_each_moved_alias_with_its_file_delta(fake_wandb: FakeWandb, locked: Path) -> None:
    assert run_json("outdated") == {"command": "outdated", "checked": 1, "outdated": [], "vanished": [],
                                    "expiring": []}
    publish(fake_wandb, NEWER)
    assert run_json("outdated", check=1) == {"command": "outdated", "checked": 1, "vanished": [], "expiring": [],
                                             "outdated": [{
        "name": "phi3", "selector": "production", "old_version": "v0", "new_version": "v1",
        "old_resolved": RESOLVED.format(0), "new_resolved": RESOLVED.format(1),
        "files_added": 1, "files_removed": 2, "files_changed": 1,
        "bytes_delta": sum(map(len, NEWER.values())) - SIZE}]}


def test_add_json_names_the_entry_it_wrote_and_the_lock_it_updated(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    doc = run_json("add", "wandb-registry-model/phi3-finetuned:production", "--path", "models/phi3",
                   "--name", "phi3", "--exclude", "*.md")
    size = SIZE - len(MODEL["README.md"])
    pin = {**new_pin(), "files_added": len(MODEL) - 1, "bytes_delta": size}
    entries = {"phi3": {"version": "v0", "resolved": RESOLVED.format(0), "files": len(MODEL) - 1, "bytes": size}}
    assert doc == {
        "command": "add", "manifest": "artifacts.yaml", "created": True, "name": "phi3",
        "entry": {"artifact": "wandb-registry-model/phi3-finetuned:production", "path": "models/phi3",
                  "type": None, "include": [], "exclude": ["*.md"]},
        "lock": {"lockfile": "artifacts.lock", "written": True, "changes": [pin], "entries": entries},
    }


def error_doc(result: Result, code: int) -> str:
    doc = json.loads(result.stdout)
    assert list(doc) == ["error"] and sorted(doc["error"]) == ["exit_code", "message"]
    assert doc["error"]["exit_code"] == code == result.exit_code
    assert doc["error"]["message"] in result.stderr  # the same message, for people, on stderr
    return str(doc["error"]["message"])


def test_bad_input_prints_an_error_document_with_exit_code_2(project: Path) -> None:
    write_manifest(project, "version: 7\nartifacts: {}\n")
    assert "manifest version 7" in error_doc(run("lock", "--json", check=2), 2)
    assert "No such option '--nosuch'" in error_doc(run("sync", "--json", "--nosuch", check=2), 2)
    assert "Missing option '--path'" in error_doc(run("add", "--json", "wandb-registry-model/x", check=2), 2)


def test_a_remote_failure_prints_an_error_document_with_exit_code_3(fake_wandb: FakeWandb, project: Path) -> None:
    write_manifest(project, PHI3)
    assert "phi3-finetuned" in error_doc(run("lock", "--json", check=3), 3)


def test_rejected_content_prints_an_error_document_with_exit_code_4(
        fake_wandb: FakeWandb, locked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_RETRIES", "1")
    fake_wandb.inject(Fault("file", "wrong_bytes", times=1, match="config.json"))
    assert "config.json" in error_doc(run("sync", "--json", check=4), 4)


def test_a_failed_check_prints_no_error_document_only_its_own(locked: Path) -> None:
    (locked / "models/phi3").mkdir(parents=True)
    doc = run_json("verify", check=1)
    assert doc["command"] == "verify" and doc["ok"] is False


# Colour: for terminals only, never under NO_COLOR, never in JSON -------------------------------


def invoke(*args: str, color: bool, env: dict[str, str] | None = None) -> Result:
    """``color=True`` is click's stand-in for a terminal."""
    return CliRunner().invoke(cli, list(args), color=color, env=env or {}, catch_exceptions=False)


def test_a_terminal_gets_colour_and_the_same_text_underneath(locked: Path) -> None:
    (locked / "models/phi3").mkdir(parents=True)
    plain = invoke("verify", color=False)
    coloured = invoke("verify", color=True)
    assert ESC not in plain.stdout and ESC in coloured.stdout
    assert click.unstyle(coloured.stdout) == plain.stdout
    assert style.bad("differs") in coloured.stdout
    assert "    missing   README.md\n" in plain.stdout


def test_no_color_turns_colour_off_even_on_a_terminal_and_an_empty_value_does_not(locked: Path) -> None:
    (locked / "models/phi3").mkdir(parents=True)
    assert ESC not in invoke("verify", color=True, env={"NO_COLOR": "1"}).stdout
    assert ESC not in invoke("verify", "-m", "nosuch.yaml", color=True, env={"NO_COLOR": "1"}).stderr
    assert ESC in invoke("verify", color=True, env={"NO_COLOR": ""}).stdout
    assert ESC not in invoke("verify", color=True, env={"NO_COLOR": "1", "FORCE_COLOR": "1"}).stdout


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "CLICOLOR_FORCE"])
def test_force_color_colours_output_that_is_not_a_terminal(locked: Path, variable: str) -> None:
    assert ESC in invoke("verify", color=False, env={variable: "1"}).stderr + invoke(
        "verify", color=False, env={variable: "1"}).stdout
    assert ESC not in invoke("verify", color=False, env={variable: "0"}).stdout


def test_errors_on_a_terminal_are_coloured_on_stderr(project: Path) -> None:
    result = invoke("verify", color=True)
    assert result.exit_code == 2 and result.stderr.startswith("wbsync: " + style.bad("error:"))


def test_json_never_carries_colour(locked: Path) -> None:
    (locked / "models/phi3").mkdir(parents=True)
    result = invoke("verify", "--json", color=True, env={"FORCE_COLOR": "1"})
    assert ESC not in result.stdout and json.loads(result.stdout)["ok"] is False


def test_the_colour_switch_follows_no_color_then_force_color_then_the_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    assert style.colour() is None
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert style.colour() is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert style.colour() is False


# -q, --help ------------------------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    commands = [("add", "wandb-registry-model/phi3-finetuned:production", "--path", "models/phi3", "--name", "phi3"),
                ("lock",), ("lock", "--check"), ("sync",), ("sync", "--dry-run"), ("verify",), ("outdated",)]
    for args in commands:
        result = run(*args, "-q")
        assert (result.stdout, result.stderr) == ("", ""), args


def test_quiet_still_prints_errors(project: Path) -> None:
    assert "no artifacts.yaml" in run("lock", "-q", check=2).stderr


@pytest.mark.parametrize("command", ["add", "lock", "sync", "verify", "outdated"])
def test_every_command_help_shows_an_example(command: str) -> None:
    assert f"Examples:\n    wbsync {command}" in run(command, "--help").stdout


def test_shell_completion_offers_the_manifests_entry_names(project: Path) -> None:
    write_manifest(project, PHI3 + "      eval: {artifact: wandb-registry-dataset/eval-set, path: data/eval}\n")
    env = {"_WBSYNC_COMPLETE": "bash_complete", "COMP_WORDS": "wbsync sync p", "COMP_CWORD": "2"}
    result = CliRunner().invoke(cli, [], prog_name="wbsync", env=env)
    assert result.stdout.split() == ["plain,phi3"]


# Ecosystem files -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_the_pre_commit_hook_runs_lock_check_on_the_manifest_and_the_lock_only() -> None:
    import re

    import yaml

    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "wbsync-lock-check" and hook["entry"] == "wbsync lock --check"
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    matches = [name for name in ("artifacts.yaml", "artifacts.lock", "src/artifacts.yaml", "artifacts.yml")
               if re.search(hook["files"], name)]
    assert matches == ["artifacts.yaml", "artifacts.lock"]


def test_the_ci_recipes_are_valid_yaml_and_cache_the_store_keyed_on_the_lock() -> None:
    import re

    import yaml

    text = (ROOT / "docs/ci.md").read_text()
    github, gitlab, pre_commit = (yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL))
    steps = github["jobs"]["build"]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert "hashFiles('artifacts.lock')" in cache["with"]["key"]
    assert cache["with"]["path"] == github["jobs"]["build"]["env"]["WBSYNC_CACHE_DIR"]
    sync = next(s for s in steps if s.get("run") == "wbsync sync --locked")
    assert sync["env"]["WANDB_API_KEY"] == "${{ secrets.WANDB_API_KEY }}"
    assert gitlab["build"]["cache"]["key"]["files"] == ["artifacts.lock"]
    assert "wbsync sync --locked" in gitlab["build"]["script"]
    assert pre_commit["repos"][0]["hooks"][0]["id"] == "wbsync-lock-check"
