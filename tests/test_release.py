"""Releases: the version comes from the git tag, also in a `git archive` export (a GitHub source
tarball has no .git), a tree with neither says it is 0.0.0, and CHANGELOG.md names each release.

The builds here are offline (`pip wheel --no-build-isolation --no-deps`): hatchling and hatch-vcs
come from the test extra.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

import wbsync
from wbsync.core import DISTRIBUTION

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=wbsync tests", "-c", "user.email=tests@example.invalid", "-c", "commit.gpgsign=false",
       "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"]


def needs_git_checkout() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project (an sdist has no history to take a version from)")
    pytest.importorskip("hatch_vcs", reason="the test extra installs hatch-vcs (the version from git tags)")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def copy_of_the_project(dest: Path) -> Path:
    """The project's files as they are now (committed or not, ignored ones left out)."""
    names = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of the project's files with one commit, tagged v9.8.7."""
    needs_git_checkout()
    repo = copy_of_the_project(tmp_path_factory.mktemp("repo"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the project as it is")
    git(repo, "tag", "v9.8.7")
    return repo


def export(repo: Path, dest: Path) -> Path:
    """`git archive HEAD`, unpacked: what a source tarball of the commit holds."""
    archive = dest.with_suffix(".tar")
    git(repo, "archive", "--format=tar", "-o", str(archive), "HEAD")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    assert not (dest / ".git").exists()
    return dest


def version_of(tree: Path) -> str:
    """The version a build of this tree gets (hatchling's own answer, without building)."""
    proc = subprocess.run([sys.executable, "-m", "hatchling", "version"], cwd=tree, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_a_git_archive_export_of_a_tagged_commit_installs_as_that_version(repository: Path, tmp_path: Path) -> None:
    tree = export(repository, tmp_path / "export")
    assert "describe-name: v9.8.7" in (tree / ".git_archival.txt").read_text()
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(tree)], check=True, env=env, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    assert wheel.name.startswith("wbsync_lock-9.8.7-"), wheel.name
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, env=env, capture_output=True, timeout=300)
    # The installed copy first on the path: its own wbsync, not this checkout's.
    proc = subprocess.run([sys.executable, str(tmp_path / "site" / "bin" / "wbsync"), "--version"],
                          env={**env, "PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "wbsync, version 9.8.7"), proc.stderr


def test_an_export_of_a_later_commit_is_a_development_release_of_the_next_version(
        repository: Path, tmp_path: Path) -> None:
    later = tmp_path / "later"
    git(repository, "clone", "-q", str(repository), str(later))
    git(later, "commit", "-q", "--allow-empty", "-m", "after the release")
    version = version_of(export(later, tmp_path / "export"))
    assert re.fullmatch(r"9\.8\.8\.dev1\+g[0-9a-f]+", version), version


def test_a_tree_with_neither_git_nor_an_export_is_the_fallback_version(tmp_path: Path) -> None:
    needs_git_checkout()
    tree = copy_of_the_project(tmp_path / "copy")
    (tree / ".git_archival.txt").unlink()
    assert version_of(tree) == "0.0.0"


def test_wbsync_reports_the_version_it_was_installed_as() -> None:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed (the tests run from a source tree on the path)")
    assert re.fullmatch(r"\d+(\.\d+)*(\.dev\d+)?(\+[\w.]+)?", wbsync.__version__), wbsync.__version__
    # An editable install reads wbsync/_version.txt from the checkout, which every later build
    # of the checkout rewrites; its metadata keeps the version of the day it was installed.
    if '"editable": true' not in (dist.read_text("direct_url.json") or ""):
        assert wbsync.__version__ == dist.version


def test_the_changelog_keeps_an_unreleased_section_above_dated_releases() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    for heading in headings[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading), heading
    for version in re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, re.M):
        assert re.search(rf"^\[{re.escape(version)}\]: https://", text, re.M), f"no link for {version}"
