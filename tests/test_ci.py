"""What CI promises about the supported Pythons: `.ci/run` tries every one the package says it
supports, and the tests it runs there (`pytest -m core`) are enough of them and cover lock, sync,
the `--frozen` no-op, verify and the fake server's canary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ci_script() -> str:
    ci = ROOT / ".ci" / "run"
    if not ci.is_file():
        pytest.skip(".ci/run is not here (an sdist holds the tests, not the CI script)")
    return ci.read_text()


def test_ci_tries_every_python_from_the_oldest_the_package_supports() -> None:
    oldest = re.search(r'^requires-python = ">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert oldest is not None
    tried = re.search(r"^for version in ((?:3\.\d+ ?)+); do$", ci_script(), re.M)
    assert tried is not None, ".ci/run has no loop over Python versions"
    minors = [int(v.split(".")[1]) for v in tried.group(1).split()]
    assert minors == list(range(int(oldest.group(1)), 14)), minors


def test_ci_runs_the_quick_start_and_the_core_tests_on_each_and_says_why_it_skips_one() -> None:
    text = ci_script()
    body = text[text.index("core_on() {"):]
    assert '".[test]"' in body and "wbsync sync && wbsync verify" in body
    assert "pytest -q -m core" in body
    assert re.search(r'echo "== Python \$version: skipped, not installed', text)
    assert "scripts/release_check.sh" in text


def test_the_core_marker_selects_at_least_50_tests_of_lock_sync_the_frozen_no_op_verify_and_the_canary() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "core", "-p",
                           "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) >= 50, len(ids)
    names = " ".join(ids)
    assert "test_the_installed_wandb_is_the_release_this_fake_server_speaks" in names
    for word in ("lock", "sync", "frozen", "noop", "verify"):
        assert re.search(rf"::test_\w*{word}", names), word
