"""Every shell block of the README and of docs/*.md is run by a test, or says why it is not.

What counts as a shell block: a fenced block labelled ``bash``, ``sh``, ``shell``, ``shell-session``
or ``console``; or an unlabelled fenced block whose first non-blank line starts with ``$ `` or with
a command (COMMANDS, after any ``VAR=value`` words). Other blocks (yaml, json, text, python,
diagrams) are not shell. A block is marked not run by ``<!-- not run: REASON -->`` as the last
non-blank line before its opening fence, with a reason.

The blocks that are run are listed in RUN by their exact text, each with the test of this file
that runs it, so a block whose text changes is neither run nor marked until RUN follows it. A
block run by CI rather than here (the test command, the demo, the site build) is checked to be,
command for command, what `.ci/run` runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_lock_and_sync import MODEL, publish
from wbsync.testing import FakeWandb

REPO = Path(__file__).resolve().parent.parent
SHELL_LABELS = {"bash", "sh", "shell", "shell-session", "console"}
COMMANDS = {"wbsync", "python", "python3", "pip", "pytest", "git", "cd", "export", "eval", "bash", "sh", "uv",
            "sphinx-build", "lint-imports", "curl", "wandb"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(\S.*?)\s*-->\s*$")

TRY_IT = ("python -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt . && cd examples/demo"
          " && wbsync sync && wbsync verify")
TEST_COMMAND = "pip install -c constraints.txt '.[test]' && pytest -q"
DEMO = "python -m wbsync.testing.demo"
QUICK_START = """\
wandb login                  # or WANDB_API_KEY=...; WANDB_BASE_URL for dedicated/self-hosted servers
wbsync lock                  # writes artifacts.lock: production -> v3, every file's size and md5
git add artifacts.yaml artifacts.lock
wbsync sync                  # models/phi3/ now holds exactly v3's bytes"""
ADD = "wbsync add wandb-registry-model/phi3-finetuned:production --path models/phi3 --name phi3"
# docs/fake-server.md's background recipe, which tests/test_standalone_server.py reads from the page and runs.
FAKE_SERVER_BACKGROUND = ('eval "$(python -m wbsync.testing.server --detach)"\nwbsync sync\n'
                          'kill "$WBSYNC_FAKE_SERVER_PID"')
SITE = "pip install -c constraints.txt '.[dev]' && sphinx-build -W --keep-going -q -c . docs _site"
# A block's exact text (without its fences) -> the test here that runs it.
RUN = {
    TRY_IT: "test_the_readme_offline_quick_start_syncs_and_verifies_a_copy_of_the_demo",
    TEST_COMMAND: "test_the_blocks_ci_runs_are_command_for_command_lines_of_ci_run",
    QUICK_START: "test_the_readme_quick_start_locks_and_syncs_against_the_fake_server_and_git_ignores_the_files",
    ADD: "test_the_readme_add_line_writes_the_manifest_and_locks_it_against_the_fake_server",
    DEMO: "test_the_blocks_ci_runs_are_command_for_command_lines_of_ci_run",
    SITE: "test_the_blocks_ci_runs_are_command_for_command_lines_of_ci_run",
    FAKE_SERVER_BACKGROUND: "test_standalone_server.py::test_the_documented_background_recipe_returns_syncs_and_stops_the_server",
}
RUN_BY_CI = [TEST_COMMAND, DEMO, SITE]


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the opening fence
    label: str
    text: str
    not_run: str | None  # the reason given, if the block is marked


def _is_shell(label: str, text: str) -> bool:
    if label:
        return label in SHELL_LABELS
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    words = [w for w in first.split() if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
    return first.startswith("$ ") or (bool(words) and words[0] in COMMANDS)


def blocks_of(text: str, name: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the not-run reason written before each."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, label = match.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines))
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        reason = NOT_RUN.match(before)
        found.append(Block(f"{name}:{i + 1}", label.lower(), "\n".join(lines[i + 1:end]),
                           reason.group(1) if reason else None))
        i = end + 1
    return found


def shell_blocks(text: str, name: str) -> list[Block]:
    return [b for b in blocks_of(text, name) if _is_shell(b.label, b.text)]


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def all_shell_blocks() -> list[Block]:
    return [b for page in doc_pages() for b in shell_blocks(page.read_text(), str(page.relative_to(REPO)))]


def problems(found: list[Block]) -> list[str]:
    """What is wrong with these blocks: each neither run nor marked, or both."""
    out = []
    for block in found:
        listed = block.text.strip() in RUN
        if not listed and block.not_run is None:
            out.append(f"{block.where}: a shell block neither run by a test (RUN in tests/test_doc_blocks.py)"
                       " nor marked <!-- not run: reason --> on the line before it")
        elif listed and block.not_run is not None:
            out.append(f"{block.where}: marked not run, yet RUN lists it as run")
    return out


def test_every_shell_block_of_the_readme_and_the_docs_is_run_or_says_why_not() -> None:
    found = all_shell_blocks()
    assert len(found) > 10, "the README and docs/ hold shell blocks: the parser found too few"
    assert problems(found) == []


def test_a_shell_block_neither_run_nor_marked_is_named_with_its_page_and_line() -> None:
    page = ("# Page\n\n<!-- not run: needs W&B -->\n```bash\nwbsync lock\n```\n\n"
            "```\n$ wbsync sync --frozen\n```\n\n```sh\nwbsync verify\n```\n\n```yaml\nversion: 1\n```\n")
    assert problems(shell_blocks(page, "p.md")) == [
        f"p.md:{line}: a shell block neither run by a test (RUN in tests/test_doc_blocks.py)"
        " nor marked <!-- not run: reason --> on the line before it" for line in (8, 12)]


def test_an_unlabelled_block_is_shell_when_it_starts_with_a_prompt_or_a_command() -> None:
    page = ("```\nWBSYNC_SOURCE=./m wbsync sync\n```\n```\n$ ls\n```\n```\n<store>/\n  blobs/\n```\n"
            "```text\nwbsync: phi3 v3 -> models/phi3/: done\n```\n")
    assert [b.text for b in shell_blocks(page, "p.md")] == ["WBSYNC_SOURCE=./m wbsync sync", "$ ls"]


def test_a_not_run_mark_needs_a_reason_and_must_sit_right_before_the_block() -> None:
    page = "<!-- not run: -->\n```bash\nwbsync lock\n```\n<!-- not run: W&B -->\n\ntext\n```bash\nwbsync sync\n```\n"
    assert [b.not_run for b in shell_blocks(page, "p.md")] == [None, None]


def test_every_block_listed_as_run_is_in_the_docs_and_names_a_test_that_exists() -> None:
    texts = {b.text.strip() for b in all_shell_blocks()}
    for text, test in RUN.items():
        assert text in texts, f"RUN lists a block no page holds any more: {text!r}"
        if "::" in test:  # a test of another file, which reads the block from its page
            file, name = test.split("::")
            assert f"def {name}(" in (REPO / "tests" / file).read_text(), f"RUN names no such test: {test}"
        else:
            assert callable(globals().get(test)), f"RUN names no test of this file: {test}"


def _ci_commands() -> set[tuple[str, ...]]:
    ci = REPO / ".ci" / "run"
    if not ci.is_file():
        pytest.skip(".ci/run is not here (an sdist holds the tests, not the CI script)")
    commands = set()
    for line in ci.read_text().splitlines():
        try:
            commands.add(_normal(line))
        except ValueError:  # a line of a multi-line construct (an unclosed quote): not a command of its own
            continue
    return commands


def _normal(command: str) -> tuple[str, ...]:
    """A command's words, as CI and a reader would both run it: `python -m pip` is `pip`, `-q` is noise."""
    words = [w for w in shlex.split(command, comments=True) if w != "-q"]
    return tuple(words[2:] if words[:3] == ["python", "-m", "pip"] else words)


def test_the_blocks_ci_runs_are_command_for_command_lines_of_ci_run() -> None:
    ci = _ci_commands()
    assert "-W" in _normal(SITE), "the site is built strictly: a warning is an error"
    for block in RUN_BY_CI:
        for command in block.split(" && "):
            assert _normal(command) in ci, f"{command!r} (a documented block) is not a line of .ci/run"


def test_the_readme_offline_quick_start_syncs_and_verifies_a_copy_of_the_demo(
        tmp_path: Path, fake_wandb: FakeWandb) -> None:
    """The block's install part is what this test's environment did; the rest runs as written, in a
    copy of examples/demo (with the committed files only), and asks W&B nothing."""
    assert any(b.text.strip() == TRY_IT for b in shell_blocks((REPO / "README.md").read_text(), "README.md"))
    setup, in_demo = TRY_IT.split(" && cd examples/demo && ")
    assert "pip install -c constraints.txt ." in setup
    demo = tmp_path / "demo"
    demo.mkdir()
    for name in ("artifacts.yaml", "artifacts.lock"):
        shutil.copy2(REPO / "examples/demo" / name, demo / name)
    shutil.copytree(REPO / "examples/demo/mirror", demo / "mirror")
    _bash(in_demo, demo)
    assert (demo / "models/phi3/config.json").is_file() and (demo / "data/eval").is_dir()
    assert fake_wandb.requests == []
    ci = REPO / ".ci" / "run"
    if ci.is_file():
        assert f"(cd examples/demo && {in_demo})" in ci.read_text(), ".ci/run no longer runs the README's quick start"


def test_the_readme_is_a_newcomer_page_under_250_lines_whose_links_lead_somewhere() -> None:
    """The reference lives on the docs site; the README (which the site does not build) links into it."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert "docs/index.md" in local and "docs/configuration.md" in local
    assert [t for t in local if not (REPO / t).exists()] == []


def _bash(script: str, cwd: Path) -> str:
    """Run documented commands in bash, stopping at the first failure, with this environment's `wbsync`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", f"set -e\n{script}"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _readme_block(label: str, needle: str) -> str:
    found = [b.text for b in blocks_of((REPO / "README.md").read_text(), "README.md") if b.label == label
             and needle in b.text]
    assert len(found) == 1, f"the README has no single {label} block with {needle!r}"
    return found[0] + "\n"


def test_the_readme_quick_start_locks_and_syncs_against_the_fake_server_and_git_ignores_the_files(
        tmp_path: Path, fake_wandb: FakeWandb) -> None:
    """The quick start as written, in a git repository, with the README's manifest and .gitignore; the
    fixture's WANDB_API_KEY stands for `wandb login` (the line's own comment offers it)."""
    login, *commands = _readme_block("bash", "wbsync lock ").splitlines()
    assert login.startswith("wandb login") and "\n".join([login, *commands]) == QUICK_START
    publish(fake_wandb)
    project = tmp_path / "project"
    project.mkdir()
    _bash("git init -q", project)
    (project / "artifacts.yaml").write_text(_readme_block("yaml", "phi3-finetuned:production"))
    (project / ".gitignore").write_text(_readme_block("text", "models/"))
    _bash("\n".join(commands), project)
    placed = project / "models/phi3"
    assert {str(p.relative_to(placed)): p.read_bytes() for p in placed.rglob("*") if p.is_file()} == MODEL
    status = _bash("git status --porcelain --untracked-files=all", project).splitlines()
    assert sorted(status) == ["?? .gitignore", "A  artifacts.lock", "A  artifacts.yaml"]


def test_the_readme_add_line_writes_the_manifest_and_locks_it_against_the_fake_server(
        tmp_path: Path, fake_wandb: FakeWandb) -> None:
    publish(fake_wandb)
    assert _readme_block("bash", "wbsync add ").strip() == ADD
    project = tmp_path / "project"
    project.mkdir()
    _bash(ADD, project)
    assert "phi3-finetuned:production" in (project / "artifacts.yaml").read_text()
    assert "phi3-finetuned:v0" in (project / "artifacts.lock").read_text()
