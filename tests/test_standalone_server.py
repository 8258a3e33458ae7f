"""`python -m wbsync.testing.server`: the fake W&B server on its own, with the demo registry or a
registry from a YAML file (validated against its published schema), usable by wbsync and wandb."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import write_manifest

REGISTRY = """\
version: 1
registries:
  Fine-tuned Models:
    llama-ft:
      type: model
      versions:
        - files: {config.json: '{"layers": 2}', weights.bin: {size: 2048}}
        - files: {config.json: '{"layers": 4}', weights.bin: {size: 4096}}
          aliases: [production]
"""


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-m", "wbsync.testing.server", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    env: dict[str, str] = {}
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(env) < 4 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            env[name] = value
    return proc, env


def test_a_registry_from_yaml_is_served_to_wbsync(project: Path, tmp_path: Path) -> None:
    spec = tmp_path / "registry.yaml"
    spec.write_text(REGISTRY)
    proc, env = _start("--registry", str(spec))
    try:
        assert set(env) >= {"WANDB_BASE_URL", "WANDB_API_KEY", "WANDB_ENTITY", "NO_PROXY"}
        write_manifest(project, """
            version: 1
            artifacts:
              llama:
                artifact: "wandb-registry-Fine-tuned Models/llama-ft:production"
                path: models/llama
        """)
        sync = subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=120)
        assert sync.returncode == 0, sync.stderr
        assert (project / "models/llama/config.json").read_text() == '{"layers": 4}'
        assert len((project / "models/llama/weights.bin").read_bytes()) == 4096
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "RuntimeWarning" not in err and "Traceback" not in err


def test_the_demo_registry_is_served_without_a_file(project: Path) -> None:
    proc, env = _start()
    try:
        assert env["WANDB_BASE_URL"].startswith("http://127.0.0.1:")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "RuntimeWarning" not in err and "Traceback" not in err


@pytest.mark.parametrize(("text", "words"), [
    ("version: 1\nregistries:\n  model:\n    x:\n      versions:\n        - files: {a: {size: -1}}\n",
     ("registries.model.x.versions.0.files.a", "minimum")),
    ("version: 2\nregistries: {}\n", ("version",)),
    ("version: 1\nregistries:\n  model:\n    x: {versions: []}\n", ("registries.model.x.versions",)),
    ("version: 1\nregistries: [\n", ("not valid YAML",)),
])
def test_an_invalid_registry_file_is_refused_with_where_and_why(tmp_path: Path, text: str,
                                                                words: tuple[str, ...]) -> None:
    spec = tmp_path / "registry.yaml"
    spec.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "wbsync.testing.server", "--registry", str(spec)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert str(spec) in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_published_registry_schema_is_the_installed_one() -> None:
    from wbsync.core.schemas import schema_dir

    repo = Path(__file__).resolve().parent.parent / "schema" / "fake-registry.schema.json"
    assert (schema_dir() / "fake-registry.schema.json").read_text() == repo.read_text()
