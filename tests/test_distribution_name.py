"""Every line that tells someone to install wbsync installs this project: `wbsync-lock` (the name
`wbsync` on the package index is an unrelated project), one of its extras, or a checkout (`.`,
`'.[test]'`). The lines come from the README, docs/, examples/, the package's own source and
every command's `--help`; the check reads them, it never asks the package index.

Also: every address of the repository agrees with pyproject's, and the pre-commit recipe names
that address and a release tag the changelog defines.
"""

from __future__ import annotations

import re
import shlex
try:
    import tomllib
except ImportError:  # Python 3.10: hatchling (the test extra) brings tomli
    import tomli as tomllib  # type: ignore[no-redef]
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from wbsync.cli import cli
from wbsync.core import DISTRIBUTION, pip_install

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]
# Other packages the docs and scripts may install (a profiler, the hook runner, release tools).
OTHERS = {"py-spy", "pre-commit", "pip", "build", "twine"}
# Options of `pip install` that take a value (the value is not a package).
VALUED = {"-c", "--constraint", "-r", "--requirement", "-t", "--target", "-i", "--index-url", "--extra-index-url",
          "-f", "--find-links"}
PIP = re.compile(r"pip3?\s+install\b([^\n`]*)")
# An extra of the wrong name outside a pip line: `'wbsync[gcs]'` in a sentence.
BARE_EXTRA = re.compile(r"(?<![\w.-])wbsync\[")
TEXT = {".md", ".py", ".yml", ".yaml", ".sh", ".txt", ".toml", ".cfg"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(args: str) -> list[str]:
    """What one `pip install ...` line installs (its requirements and paths, options left out)."""
    args = re.split(r"\s#|&&|\|\||[|;)]", args, maxsplit=1)[0]
    try:
        words = shlex.split(args)
    except ValueError:  # an unbalanced quote in prose: the words as they stand
        words = args.split()
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.split("=", 1)[0] in VALUED:
            skip = "=" not in word
        elif not word.startswith("-"):
            found.append(word if word.strip(".") == "" or word.startswith(".[") else word.rstrip(".,:"))
    return found


def problem(requirement: str) -> str | None:
    """Why a requirement is not something this project means to install, or None."""
    if requirement.startswith((".", "/", "$")):
        return None  # a checkout (`.`, `'.[test]'`, `./path`) or a built file a script names (`"$wheel"`)
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?(.*)$", requirement)
    if match is None:
        return f"{requirement!r} is not a requirement"
    name, extras, _ = match.groups()
    if normalized(name) == DISTRIBUTION:
        unknown = {e.strip() for e in (extras or "").split(",") if e.strip()} - EXTRAS
        return f"{requirement!r}: no extra {sorted(unknown)} in pyproject.toml" if unknown else None
    if normalized(name) in OTHERS:
        return None
    if normalized(name) == "wbsync":
        return f"{requirement!r} installs the unrelated `wbsync` project: the name is {DISTRIBUTION}"
    return f"{requirement!r} is not {DISTRIBUTION} nor a package the docs are known to install"


def problems_in(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        for args in PIP.findall(line):
            for requirement in installed(args):
                if (why := problem(requirement)) is not None:
                    yield number, why
        if BARE_EXTRA.search(line):
            yield number, f"an extra of `wbsync` (the unrelated project) instead of {DISTRIBUTION}: {line.strip()}"


def files() -> list[Path]:
    found = [ROOT / "README.md", ROOT / ".pre-commit-hooks.yaml", ROOT / "CHANGELOG.md"]
    for folder in ("docs", "examples", "wbsync", "scripts", ".github", ".ci"):
        found += [p for p in sorted((ROOT / folder).rglob("*"))
                  if p.is_file() and (p.suffix in TEXT or p.parent.name == ".ci") and "__pycache__" not in p.parts]
    return [p for p in found if p.exists()]


def helps() -> dict[str, str]:
    """`wbsync ... --help` of every command and group, as the terminal shows it."""
    found: dict[str, str] = {}

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=path[-1], parent=parent, max_content_width=100)
        found[" ".join(path)] = command.get_help(ctx)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(cli, ["wbsync"], None)
    return found


HELPS = helps()


@pytest.mark.parametrize("path", [p.relative_to(ROOT).as_posix() for p in files()])
def test_every_install_line_in_the_repository_installs_this_project(path: str) -> None:
    found = [f"{path}:{n}: {why}" for n, why in problems_in((ROOT / path).read_text(errors="replace"))]
    assert found == [], f"install lines of {path} install something else than {DISTRIBUTION}"


def test_the_package_prints_install_lines_only_through_the_one_name() -> None:
    """A message builds its install line with wbsync.core.pip_install, never its own text."""
    own = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "wbsync").rglob("*.py"))
           for n, line in enumerate(p.read_text().splitlines(), 1)
           if "pip install" in line]
    assert own == []


@pytest.mark.parametrize("command", sorted(HELPS))
def test_every_install_line_in_a_commands_help_installs_this_project(command: str) -> None:
    assert [f"{command} --help: {why}" for _, why in problems_in(HELPS[command])] == []


def test_the_scan_sees_the_install_lines_it_checks() -> None:
    """The checks above prove something only if they find the lines: the mirror help, the hint
    of the lock reader and the docs' recipes are among them."""
    assert pip_install("s3") in HELPS["wbsync mirror"]
    lines = [line for p in files() for line in p.read_text(errors="replace").splitlines() if PIP.search(line)]
    assert len(lines) >= 8
    assert any(f"{DISTRIBUTION}==" in line for line in lines)
    assert "pip_install(upgrade=True)" in (ROOT / "wbsync" / "repo" / "lockfile.py").read_text()


@pytest.mark.parametrize(("line", "bad"), [
    ("pip install wbsync", True), ("pip install 'wbsync[s3]'", True),
    ("run: python -m pip install wbsync==0.1.0", True),
    ("`pip install -U WBSync` to upgrade", True), ("or 'wbsync[gcs]' for buckets", True),
    ("pip install wbsync-lock[nope]", True), ("pip install requests", True),
    ("pip install wbsync-lock==0.2.0", False), ("Install them with: pip install 'wbsync-lock[s3]'.", False),
    ("pip install -c constraints.txt '.[test]' && pytest -q", False), ("pip install -U wbsync_lock", False),
    ("(`pip install py-spy`) or cProfile", False), ("exit 2 with the `pip install` line to run", False),
])
def test_the_check_tells_this_project_from_others(line: str, bad: bool) -> None:
    assert bool(list(problems_in(line))) is bad, line


def test_the_messages_install_line_names_the_distribution() -> None:
    assert pip_install() == "pip install wbsync-lock"
    assert pip_install("gcs") == "pip install 'wbsync-lock[gcs]'"
    assert pip_install(upgrade=True) == "pip install -U wbsync-lock"
    assert normalized(PYPROJECT["project"]["name"]) == DISTRIBUTION


def releases() -> list[str]:
    """The released versions, newest first, as CHANGELOG.md lists them (`## [0.2.0] - date`)."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_every_repository_address_is_the_one_in_pyproject() -> None:
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    seen = set()
    for path in [*files(), *sorted((ROOT / "schema").glob("*.json"))]:
        for found in re.findall(r"https://github\.com/([\w.<>-]+/[\w.<>-]+)", path.read_text(errors="replace")):
            if found.split("/")[0] in ("acme", "OWNER", "actions", "pypa"):  # examples of a user's repo, actions
                continue
            seen.add(found)
            assert found == owner_repo, f"{path.relative_to(ROOT)}: github.com/{found}, pyproject says {REPOSITORY}"
    assert owner_repo in seen
    assert all(url.startswith(REPOSITORY) for url in PYPROJECT["project"]["urls"].values())


@pytest.mark.parametrize("path", ["docs/ci.md", ".pre-commit-hooks.yaml"])
def test_the_pre_commit_recipe_names_the_repository_and_a_released_tag(path: str) -> None:
    text = (ROOT / path).read_text()
    assert re.search(rf"^[#\s]*- repo: {re.escape(REPOSITORY)}\s*$", text, re.M), f"{path}: repo: is not {REPOSITORY}"
    revs = re.findall(r"^[#\s]*rev: (\S+)", text, re.M)
    assert revs, f"{path} names no rev:"
    assert {rev.removeprefix("v") for rev in revs} <= set(releases()), f"{path}: {revs}; released: {releases()}"


def test_pinned_installs_name_a_released_version() -> None:
    pins = {m for p in files() for m in re.findall(rf"{DISTRIBUTION}==([\w.]+)", p.read_text(errors="replace"))}
    assert pins, "no recipe pins a version?"
    assert pins <= set(releases()), f"pinned {sorted(pins)}; CHANGELOG.md releases {releases()}"
