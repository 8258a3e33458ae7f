"""What a pip user and a packager get: an sdist that holds exactly what the package and its tests
need (and whose suite collects), a LICENSE, and no SDK chatter in command output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers import run, run_process, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb

REPO = Path(__file__).resolve().parent.parent
# The top of the sdist: the package, its schemas, the tests and what they read, and the docs.
EXPECTED_TOP = {"wbsync", "schema", "tests", "docs", "bench", "examples", "README.md", "LICENSE",
                "artifacts.yaml.example", "constraints.txt", ".pre-commit-hooks.yaml", "pyproject.toml",
                "PKG-INFO", ".gitignore", "CHANGELOG.md", ".git_archival.txt", ".gitattributes", "scripts", ".github"}


def _build_sdist(source: Path, out: Path) -> Path:
    hatchling = pytest.importorskip("hatchling.builders.sdist", reason="the test extra installs hatchling")
    builder = hatchling.SdistBuilder(str(source))
    return Path(next(iter(builder.build(directory=str(out), versions=["standard"]))))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A copy of the repository with a synced demo in it (as after the README's first command),
    built into an sdist; returns the unpacked folder and the sdist's file list."""
    tmp = tmp_path_factory.mktemp("sdist")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "__pycache__", ".wbsync", "*.egg-info"))
    synced = source / "examples" / "demo" / "models" / "phi3"
    synced.mkdir(parents=True, exist_ok=True)
    (synced / "README.md").write_text("# a file a demo sync placed\n")
    archive = _build_sdist(source, tmp / "dist")
    with tarfile.open(archive) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        tar.extractall(tmp / "unpacked", filter="data")
    return next((tmp / "unpacked").iterdir()), names


def test_the_sdist_holds_the_package_its_tests_and_what_they_read(sdist: tuple[Path, list[str]]) -> None:
    _, names = sdist
    assert {n.split("/")[0] for n in names} <= EXPECTED_TOP
    for needed in ("LICENSE", "wbsync/py.typed", "wbsync/testing/fake_server.py", "schema/manifest.schema.json",
                   "tests/conftest.py", "tests/helpers.py", "artifacts.yaml.example", ".pre-commit-hooks.yaml",
                   "docs/ci.md", "bench/crash_trials.py", "examples/demo/artifacts.lock",
                   "examples/lock-bump/.github/workflows/wbsync-bump.yml", "CHANGELOG.md",
                   ".github/workflows/release.yml", "scripts/release_check.sh"):
        assert needed in names, needed
    assert any(n.startswith("examples/demo/mirror/blobs/") for n in names)


def test_the_sdist_leaves_out_files_a_demo_sync_placed(sdist: tuple[Path, list[str]]) -> None:
    _, names = sdist
    assert not [n for n in names if n.startswith("examples/demo/models/")]


def test_the_suite_of_the_sdist_collects(sdist: tuple[Path, list[str]]) -> None:
    unpacked, _ = sdist
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=unpacked, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " error" not in proc.stdout.lower().splitlines()[-1]


def test_the_license_is_mit_as_pyproject_says() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text()
    assert "[project.urls]" in (REPO / "pyproject.toml").read_text()


def test_lineage_prints_no_wandb_credentials_line(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    proc = run_process(project, "lineage", "--project", "training", drop_env=("WANDB_SILENT",))
    assert proc.returncode == 0, proc.stderr
    assert "Loaded credentials" not in proc.stdout + proc.stderr
    assert "recorded in new run" in proc.stdout
