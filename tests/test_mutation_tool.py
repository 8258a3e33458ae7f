"""The mutation check (bench/mutants.py) plants each bug exactly where its snippet says, or
refuses loudly: a snippet that matched in the middle of a longer line, or twice, would plant
the bug somewhere else or nowhere and make a "caught" mean nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutants() -> ModuleType:
    sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not of the package
    try:
        import bench.mutants

        return bench.mutants
    finally:
        sys.path.remove(str(REPO))


CODE = "def f(x):\n    y = g(x)\n    return y\n\nz = g(x)\n"


def test_a_snippet_at_a_line_start_that_occurs_once_is_found(mutants: ModuleType) -> None:
    assert mutants.locate(CODE, "    return y\n") == CODE.index("    return y")
    assert mutants.locate(CODE, "def f(x):\n") == 0


def test_a_snippet_in_the_middle_of_a_line_is_refused(mutants: ModuleType) -> None:
    why = mutants.locate(CODE, "return y\n")
    assert isinstance(why, str) and "middle of line 3" in why


def test_a_snippet_that_occurs_twice_or_never_is_refused(mutants: ModuleType) -> None:
    assert mutants.locate(CODE, "g(x)\n") == "occurs 2 times, not once (the code moved?)"
    assert mutants.locate(CODE, "    return x\n") == "occurs 0 times, not once (the code moved?)"
    assert isinstance(mutants.locate(CODE, ""), str)


def test_a_patch_that_does_not_apply_fails_loudly_and_changes_nothing(mutants: ModuleType, tmp_path: Path) -> None:
    from bench.mutant_list import Patch

    (tmp_path / "m.py").write_text(CODE)
    with pytest.raises(mutants.PatchDoesNotApply, match="m.py.*middle of line 3"):
        mutants.apply(tmp_path, (Patch("m.py", "return y\n", "return None\n"),))
    assert (tmp_path / "m.py").read_text() == CODE
    mutants.apply(tmp_path, (Patch("m.py", "    return y\n", "    return None\n"),))
    assert (tmp_path / "m.py").read_text() == CODE.replace("return y", "return None")


def test_a_bad_manifest_exits_2_in_a_fresh_process(tmp_path: Path) -> None:
    """The subprocess test of bench/mutate_tool.py's sanity check: with the CLI's exit code
    mutated (``python -m bench.mutate_tool --sanity-only``) it must fail, or the tool's CLI
    subprocesses do not run the mutated tree."""
    from helpers import run_process

    (tmp_path / "artifacts.yaml").write_text("version: 1\nartifacts:\n  x: {artifact: 'no colon', path: x}\n")
    proc = run_process(tmp_path, "lock")
    assert proc.returncode == 2 and "artifacts.yaml" in proc.stderr, proc.stderr
