"""The disk cost of one swap per sync: the journal, and the staged copies it waits on.

    python -m bench.swap_cost [--files 10000] [--size 4096]

Publishes an artifact of FILES files of SIZE bytes on the fake W&B server, syncs it, publishes
a version where every file changed, locks it, and runs the upgrade twice in fresh processes:
once killed (``WBSYNC_KILL_AFTER_RENAMES=1``) right after its first rename, when every file is
staged and the journal written, to measure both; once to the end, for the time. Prints the
journal's size, the state's, and the bytes staged beside the old version at the peak.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.crash_trials import isolated_env
from wbsync.testing import FakeWandb

MANIFEST = """\
version: 1
artifacts:
  data:
    artifact: wandb-registry-dataset/swap-cost:production
    path: data/swap
"""


def files_of(count: int, size: int, seed: int) -> dict[str, bytes]:
    return {f"part-{i % 16:02}/file-{i:06}.bin": seed.to_bytes(1, "big") + i.to_bytes(8, "big") * (size // 8)
            for i in range(count)}


def wbsync(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wbsync", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=1800)


def staged_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.tmp") if ".wbsync-" in p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args(argv)
    with FakeWandb() as srv, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**isolated_env(work / "home", srv), "WBSYNC_CACHE_DIR": str(work / "store"),
               "WBSYNC_LINK_MODE": "copy"}
        srv.log_artifact("acme", "dataset", "swap-cost", files_of(args.files, args.size, 0), type="dataset",
                         aliases=["production"])
        projects = [work / "killed", work / "whole"]
        for project in projects:
            project.mkdir()
            (project / "artifacts.yaml").write_text(MANIFEST)
            assert wbsync(project, env, "sync").returncode == 0
        srv.log_artifact("acme", "dataset", "swap-cost", files_of(args.files, args.size, 1), type="dataset",
                         aliases=["production"])
        for project in projects:
            assert wbsync(project, env, "lock", "--upgrade").returncode == 0
        assert wbsync(projects[1], env, "sync").returncode == 0  # fills the store: the measured runs fetch nothing
        killed = wbsync(projects[0], {**env, "WBSYNC_KILL_AFTER_RENAMES": "1", "WBSYNC_TESTING": "1"}, "sync")
        journal = projects[0] / ".wbsync" / "swap.json"
        state = projects[0] / ".wbsync" / "state.json"
        print(f"{args.files} files of {args.size} B, every one changed, copy mode (killed: exit {killed.returncode})")
        print(f"journal .wbsync/swap.json: {journal.stat().st_size:,} B "
              f"({journal.stat().st_size / args.files:.0f} B per file); state.json: {state.stat().st_size:,} B")
        print(f"staged beside the old version at the swap: {staged_bytes(projects[0] / 'data'):,} B "
              f"(the new bytes of every changed file)")
        started = time.monotonic()
        assert wbsync(projects[0], env, "sync").returncode == 0
        print(f"the next sync finished the swap in {time.monotonic() - started:.2f} s (process included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
