"""Offline end-to-end demo: `python -m wbsync.testing.demo`.

Starts the fake W&B server on 127.0.0.1, publishes a small model registry, writes an
artifacts.yaml in a temporary project, and runs the real `wbsync` CLI against it (as
subprocesses, through the real wandb SDK): lock, sync, a no-op sync, verify, then the alias
moves and `outdated` / `lock --upgrade` / `sync` follow it. Needs no account and no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wbsync.testing import FakeWandb

MANIFEST = """\
version: 1
artifacts:
  phi3:
    artifact: wandb-registry-model/phi3-finetuned:production
    path: models/phi3
  eval:
    artifact: wandb-registry-dataset/eval-set:v0
    path: data/eval
"""


def publish_demo(srv: FakeWandb) -> None:
    """The demo registry: phi3-finetuned (model, `production`) and eval-set (dataset)."""
    srv.log_artifact("acme", "model", "phi3-finetuned",
                     {"config.json": b'{"layers": 32}\n', "model.safetensors": os.urandom(64 * 1024)},
                     type="model", aliases=["production"])
    srv.log_artifact("acme", "dataset", "eval-set",
                     {"eval.jsonl": b'{"q": "2+2", "a": "4"}\n', "README.md": b"# eval set\n"}, type="dataset")


def _run(project: Path, env: dict[str, str], *args: str, expected: int = 0) -> None:
    print(f"\n$ wbsync {' '.join(args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wbsync", *args], cwd=project, env=env)
    print(f"  (exit {proc.returncode}, {time.perf_counter() - start:.2f} s)", flush=True)
    if proc.returncode != expected:
        raise SystemExit(f"demo failed: `wbsync {' '.join(args)}` exited {proc.returncode}")


def main() -> None:
    with FakeWandb() as srv, tempfile.TemporaryDirectory(prefix="wbsync-demo-") as tmp:
        publish_demo(srv)
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "artifacts.yaml").write_text(MANIFEST)
        env = {**os.environ, "WANDB_BASE_URL": srv.url, "WANDB_API_KEY": srv.api_key,
               "WANDB_ENTITY": "myteam", "WANDB_SILENT": "true", "NO_PROXY": "127.0.0.1,localhost",
               "HOME": tmp, "WANDB_CACHE_DIR": f"{tmp}/wandb-cache", "WANDB_CONFIG_DIR": f"{tmp}/wandb-config",
               "WANDB_DATA_DIR": f"{tmp}/wandb-data", "WBSYNC_CACHE_DIR": f"{tmp}/wbsync-cache"}
        print(f"Fake W&B server at {srv.url}; project in {project}\n\nartifacts.yaml:\n{MANIFEST}")
        _run(project, env, "lock")
        print((project / "artifacts.lock").read_text())
        _run(project, env, "sync")
        srv.clear_requests()
        _run(project, env, "sync")
        print(f"  requests to the server during the no-op sync: {len(srv.requests)}")
        _run(project, env, "verify")
        srv.log_artifact("acme", "model", "phi3-finetuned",
                         {"config.json": b'{"layers": 40}\n', "model.safetensors": os.urandom(80 * 1024),
                          "tokenizer.json": b"{}\n"}, type="model", aliases=["production"])
        print("\n(the `production` alias now points at a new version)")
        _run(project, env, "outdated", expected=1)  # exit 1: an alias moved
        _run(project, env, "lock", "--upgrade", "phi3")
        _run(project, env, "sync")
        _run(project, env, "verify")
        print("\nDemo finished: every step ran against a local fake W&B server, offline.")


if __name__ == "__main__":
    main()
