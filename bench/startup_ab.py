"""What a start costs, this tree against another commit, interleaved run by run.

    python -m bench.startup_ab --against 3557765 --runs 20

Times `wbsync --help`, `wbsync --version` and a no-op `wbsync sync --frozen` (in a synced copy
of examples/demo) as whole processes, A (this tree) and B (the other commit, checked out with
`git worktree` into a temporary folder) in turn, and prints each one's median wall time and the
median of the pairwise ratios A/B. A start that got slower shows a ratio above 1. Both run with
this interpreter, so they import the same third-party packages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTS = {"--help": ["--help"], "--version": ["--version"], "no-op sync --frozen": ["sync", "--frozen", "-q"]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the commit to compare with (B)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each start, per side (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wbsync-startup-") as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.against], cwd=REPO, check=True)
        try:
            sides = {"A": REPO, "B": other}
            demos = {name: _synced_demo(root, Path(tmp) / f"demo-{name}") for name, root in sides.items()}
            for start, argv in STARTS.items():
                times = _interleaved(sides, demos, argv, args.runs)
                ratios = [a / b for a, b in zip(times["A"], times["B"])]
                print(f"{start:22} A {statistics.median(times['A']) * 1000:6.1f} ms   "
                      f"B {statistics.median(times['B']) * 1000:6.1f} ms   A/B {statistics.median(ratios):.3f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=REPO, check=False)


def _synced_demo(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "examples" / "demo", dest, ignore=shutil.ignore_patterns(".wbsync", "models", "data"))
    subprocess.run([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=dest, env=_env(root), check=True)
    return dest


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def _interleaved(sides: dict[str, Path], demos: dict[str, Path], argv: list[str], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(runs + 2):  # the first two rounds warm the page cache and the bytecode caches
        for name, root in sides.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "wbsync", *argv], cwd=demos[name], env=_env(root),
                           stdout=subprocess.DEVNULL, check=True)
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
