"""Small helpers shared by the end-to-end tests: run the real CLI, write manifests, read files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from wbsync.cli import cli


def run(*args: str, check: int | None = 0) -> Result:
    """Run `wbsync ARGS` in-process through click's runner (stdout and stderr kept apart)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if check is not None:
        assert result.exit_code == check, (
            f"wbsync {' '.join(args)} exited {result.exit_code}, expected {check}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def run_json(*args: str, check: int | None = 0) -> dict[str, Any]:
    return json.loads(run(*args, "--json", check=check).stdout)


def write_manifest(project: Path, text: str) -> Path:
    path = project / "artifacts.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tree(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` with its bytes, by POSIX relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_process(cwd: Path, *args: str, drop_env: tuple[str, ...] = (), timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """Run `python -m wbsync ARGS` in a fresh process: for what must not leak between runs in one
    process (the wandb SDK caches its settings, credentials included, process-wide)."""
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    return subprocess.run([sys.executable, "-m", "wbsync", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def popen_interruptible(cwd: Path, *args: str) -> "subprocess.Popen[str]":
    """Start `python -m wbsync ARGS` so that Ctrl-C (SIGINT) reaches it as a KeyboardInterrupt
    whatever this process inherited: a shell's background job (`cmd &`, `nohup`) starts with
    SIGINT ignored, an ignored signal stays ignored across exec, and Python then installs no
    handler, so the child would never see the Ctrl-C a test sends."""
    return subprocess.Popen([sys.executable, "-m", "wbsync", *args], cwd=cwd, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
