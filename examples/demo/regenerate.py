"""Regenerate the demo's mirror and lockfile: `python examples/demo/regenerate.py [OUT]`.

Publishes a small model and dataset registry on the project's fake W&B server (127.0.0.1,
no account), locks them with the real `wbsync` CLI, writes the mirror with `wbsync mirror`,
then writes the demo's artifacts.yaml and locks it against that mirror, offline. The output is
byte-identical on every run (tests/test_mirror.py checks the committed copy against it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wbsync.testing import FakeWandb

HERE = Path(__file__).resolve().parent

# What the demo project asks for (committed as examples/demo/artifacts.yaml).
DEMO_MANIFEST = """\
# The offline quick start: `wbsync sync && wbsync verify` in this folder.
# `source: ./mirror` makes wbsync read the committed mirror next to this file instead of W&B
# (docs/mirror.md); delete that line, and the same entries resolve against W&B.
version: 1
source: ./mirror
artifacts:
  phi3:
    artifact: wandb-registry-model/phi3-finetuned:production
    path: models/phi3
  eval:
    artifact: wandb-registry-dataset/eval-set:v0
    path: data/eval
"""

# What the mirror is made from: the demo's entries, plus v0 of the model so that the mirror
# holds two versions of it (edit the demo's phi3 entry to `:v0` to try it), named with the
# org's display name so that the mirror maps `acme/...` references too.
SOURCE_MANIFEST = DEMO_MANIFEST.replace("source: ./mirror\n", "") + """\
  phi3-first:
    artifact: acme/wandb-registry-model/phi3-finetuned:v0
    path: models/phi3-first
"""


def weights(seed: int, size: int) -> bytes:
    """Deterministic stand-in bytes for model weights."""
    return bytes((i * 31 + seed * 7) % 251 for i in range(size))


def publish(srv: FakeWandb) -> None:
    srv.log_artifact("acme", "model", "phi3-finetuned", {
        "config.json": b'{"hidden_size": 64, "layers": 2}\n',
        "model.safetensors": weights(1, 8 * 1024),
        "README.md": b"# phi3-finetuned\n\nA tiny stand-in model for the wbsync demo.\n",
    }, type="model", aliases=["production"])
    srv.log_artifact("acme", "model", "phi3-finetuned", {
        "config.json": b'{"hidden_size": 64, "layers": 4}\n',
        "model.safetensors": weights(2, 12 * 1024),
        "tokenizer.json": b'{"vocab": ["<s>", "</s>", "hello", "world"]}\n',
        "README.md": b"# phi3-finetuned\n\nA tiny stand-in model for the wbsync demo.\n",
    }, type="model", aliases=["production"])
    srv.log_artifact("acme", "dataset", "eval-set", {
        "eval.jsonl": b'{"q": "2+2", "a": "4"}\n{"q": "capital of France", "a": "Paris"}\n',
        "README.md": b"# eval-set\n\nTwo questions.\n",
    }, type="dataset")


def wbsync(cwd: Path, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "wbsync", *args, "-q"], check=False, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"`wbsync {' '.join(args)}` exited {proc.returncode}")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with FakeWandb() as srv, tempfile.TemporaryDirectory(prefix="wbsync-demo-") as tmp:
        publish(srv)
        env = {**os.environ, "WANDB_BASE_URL": srv.url, "WANDB_API_KEY": srv.api_key, "WANDB_ENTITY": "myteam",
               "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false", "NO_PROXY": "127.0.0.1,localhost",
               "HOME": tmp, "WANDB_CACHE_DIR": f"{tmp}/wandb-cache", "WANDB_CONFIG_DIR": f"{tmp}/wandb-config",
               "WANDB_DATA_DIR": f"{tmp}/wandb-data", "WBSYNC_CACHE_DIR": f"{tmp}/wbsync-cache"}
        env.pop("WBSYNC_SOURCE", None)
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "artifacts.yaml").write_text(SOURCE_MANIFEST)
        wbsync(project, env, "lock")
        shutil.rmtree(out / "mirror", ignore_errors=True)
        wbsync(project, env, "mirror", str(out / "mirror"))
        (out / "artifacts.yaml").write_text(DEMO_MANIFEST)
        (out / "artifacts.lock").unlink(missing_ok=True)
        srv.stop()  # the demo's own lock comes from the mirror alone
        wbsync(out, env, "lock")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE)
