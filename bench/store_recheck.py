"""What re-checking store blobs costs after a CI cache restore.

    python -m bench.store_recheck [--files 32] [--size 8388608]

A store is filled by one sync (FILES files of SIZE bytes), archived with tar as CI caches do,
and restored twice: keeping mtimes (tar's default, as ``actions/cache`` restores) and not
keeping them (``tar --touch``: every blob looks written to, so each is re-hashed once before
it is placed). A fresh project then syncs from each restored store (copy mode, a fresh
process, no download: the lock is the same), timed, and from the intact store for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
  model:
    artifact: wandb-registry-model/recheck:production
    path: models/recheck
"""


def timed_sync(work: Path, name: str, store: Path, env: dict[str, str], srv: FakeWandb) -> tuple[float, int]:
    project = work / name
    project.mkdir()
    (project / "artifacts.yaml").write_text(MANIFEST)
    shutil.copy(work / "first" / "artifacts.lock", project / "artifacts.lock")
    srv.clear_requests()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "wbsync", "sync", "--link", "copy"], cwd=project,
                          env={**env, "WBSYNC_CACHE_DIR": str(store)}, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    return elapsed, sum(1 for r in srv.requests if "/blobs/" in r.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--size", type=int, default=8 << 20)
    args = parser.parse_args(argv)
    with FakeWandb() as srv, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = isolated_env(work / "home", srv)
        files = {f"shard-{i:03}.bin": os.urandom(args.size) for i in range(args.files)}
        srv.log_artifact("acme", "model", "recheck", files, type="model", aliases=["production"])
        first = work / "first"
        first.mkdir()
        (first / "artifacts.yaml").write_text(MANIFEST)
        store = work / "store"
        subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=first, check=True,
                       env={**env, "WBSYNC_CACHE_DIR": str(store)}, capture_output=True)
        archive = work / "store.tar"
        subprocess.run(["tar", "-cf", str(archive), "-C", str(store), "."], check=True)
        total = args.files * args.size
        print(f"{args.files} blobs, {total / 1e6:.0f} MB; a fresh project syncs from the store (copy mode)")
        results = {"intact store": timed_sync(work, "intact", store, env, srv)}
        for label, flags in (("restored, mtimes kept (tar)", []), ("restored, mtimes lost (tar --touch)", ["--touch"])):
            restored = work / label.split()[2].strip(",")
            restored.mkdir()
            subprocess.run(["tar", "-xf", str(archive), "-C", str(restored), *flags], check=True)
            results[label] = timed_sync(work, f"p-{restored.name}", restored, env, srv)
        for label, (seconds, gets) in results.items():
            print(f"  {label:38} {seconds:6.2f} s  ({gets} downloads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
