"""`python -m wbsync.testing.server`: the fake W&B server on its own, with the demo registry or a
registry from a YAML file (validated against its published schema), usable by wbsync and wandb."""

from __future__ import annotations

import os
import re
import socket
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


DEMO = """\
version: 1
artifacts:
  phi3:
    artifact: wandb-registry-model/phi3-finetuned:production
    path: models/phi3
"""
DOC = Path(__file__).resolve().parent.parent / "docs" / "fake-server.md"


def _documented_recipe() -> str:
    """The fenced block of docs/fake-server.md that starts the server with --detach."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(b for b in blocks if "--detach" in b and "eval" in b)


def test_the_documented_background_recipe_returns_syncs_and_stops_the_server(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    project.mkdir()
    (project / "artifacts.yaml").write_text(DEMO)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = "set -eu\n" + _documented_recipe() + 'echo "server=$WBSYNC_FAKE_SERVER_PID"\n'
    proc = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (project / "models/phi3/config.json").exists()
    pid = int(re.findall(r"server=(\d+)", proc.stdout)[-1])
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan that this container's init may never reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_env_file(path: Path, proc: subprocess.Popen[str]) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the server never wrote its env file"
        time.sleep(0.05)
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _locked_version(project: Path, env: dict[str, str]) -> str:
    subprocess.run([sys.executable, "-m", "wbsync", "lock", "--upgrade"], cwd=project, env=env, check=True,
                   capture_output=True, text=True, timeout=120)
    return re.findall(r'version: "(v\d+)"', (project / "artifacts.lock").read_text())[0]


def test_a_running_server_follows_its_registry_file_on_the_same_port(project: Path, tmp_path: Path) -> None:
    spec, env_file, port = tmp_path / "registry.yaml", tmp_path / "fake.env", _free_port()
    spec.write_text(REGISTRY)
    proc = subprocess.Popen([sys.executable, "-m", "wbsync.testing.server", "--registry", str(spec), "--port",
                             str(port), "--env-file", str(env_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        served = _read_env_file(env_file, proc)
        assert served["WANDB_BASE_URL"] == f"http://127.0.0.1:{port}"
        assert set(served) == {"WANDB_BASE_URL", "WANDB_API_KEY", "WANDB_ENTITY", "NO_PROXY",
                               "WBSYNC_FAKE_SERVER_PID"}
        env = {**os.environ, **served}
        write_manifest(project, """
            version: 1
            artifacts:
              llama:
                artifact: "wandb-registry-Fine-tuned Models/llama-ft:production"
                path: models/llama
        """)
        assert _locked_version(project, env) == "v1"
        spec.write_text("version: 1\nregistries: [\n")  # a broken edit: reported, ignored
        time.sleep(0.5)
        spec.write_text(REGISTRY.replace("          aliases: [production]\n", "") +
                        "        - files: {config.json: '{\"layers\": 8}'}\n          aliases: [production]\n")
        deadline = time.monotonic() + 30
        while (version := _locked_version(project, env)) != "v2" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert version == "v2"
        moved = REGISTRY.replace("          aliases: [production]\n", "").replace(
            "weights.bin: {size: 2048}}\n", "weights.bin: {size: 2048}}\n          aliases: [production]\n")
        spec.write_text(moved + "        - files: {config.json: '{\"layers\": 8}'}\n")  # back to v0: a move alone
        deadline = time.monotonic() + 30
        while (version := _locked_version(project, env)) != "v0" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert version == "v0"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "not valid YAML" in err and "goes on with the registry it had" in err, err
    assert "Traceback" not in err


def test_a_port_in_use_is_refused_before_anything_runs_in_the_background(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "wbsync.testing.server", "--detach", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"port {port}" in proc.stderr and "in use" in proc.stderr, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
