"""The API key never leaves the process it was given to: not on stdout or stderr, not in `--json`,
not in the lock, the state file, the content store, nor any file (logs included) that a run
leaves under the test's folders: over lock, sync, verify and outdated, and over failing runs
(a refused key, server errors, unreachable server, corrupt bytes).

Each command runs twice: with -v as a fresh process (`python -m wbsync`), so whatever the wandb
SDK or its wandb-core service prints or logs is captured too, and with --json in-process. The key is looked for as itself and in the
forms it travels in (the Basic authorization header's base64 of "api:KEY", URL-encoded).
"""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers import run, run_process, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import Fault, FakeWandb

BAD_KEY = "b" * 29 + "adkey_12345"  # 40 characters of the format the SDK requires, refused by the server


def spellings(key: str) -> list[bytes]:
    basic = base64.b64encode(f"api:{key}".encode())
    return [key.encode(), basic, basic.rstrip(b"="), quote(key).encode()]


def scan_files(root: Path, secrets: list[bytes]) -> list[str]:
    """Every file under ``root`` (project, store, HOME, wandb's dirs and logs) that holds a secret."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path} holds {s[:6]!r}..." for s in secrets if s in data]
    return hits


class Runs:
    """Runs commands in a fresh process each and keeps every output channel."""

    def __init__(self, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.project, self.monkeypatch = project, monkeypatch
        self.outputs: list[tuple[str, str]] = []  # (what, text)
        self.codes: dict[str, int] = {}

    def __call__(self, *args: str, expect: int = 0, key: str | None = None) -> None:
        """`wbsync ARGS -v` in a fresh process (everything the SDK and wandb-core print, too),
        then `wbsync ARGS --json` in this one (the document wbsync builds)."""
        if key is not None:
            self.monkeypatch.setenv("WANDB_API_KEY", key)
        label = " ".join(args) + (" (bad key)" if key == BAD_KEY else "")
        proc = run_process(self.project, *args, "-v")
        assert proc.returncode == expect, f"wbsync {label} -v: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        result = run(*args, "--json", check=expect)
        self.outputs += [(f"stdout of `wbsync {label} -v`", proc.stdout),
                         (f"stderr of `wbsync {label} -v`", proc.stderr),
                         (f"stdout of `wbsync {label} --json`", result.stdout),
                         (f"stderr of `wbsync {label} --json`", result.stderr)]

    def leaks(self, secrets: list[bytes]) -> list[str]:
        return [f"{what} holds {s[:6]!r}..." for what, text in self.outputs for s in secrets
                if s.decode() in text]


def test_the_api_key_appears_in_no_output_and_no_file(fake_wandb: FakeWandb, project: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key = fake_wandb.api_key
    secrets = spellings(key) + spellings(BAD_KEY)
    runs = Runs(project, monkeypatch)
    publish(fake_wandb)
    write_manifest(project, PHI3)

    # The happy path.
    runs("lock")
    runs("sync")
    runs("verify")
    publish(fake_wandb, {"config.json": b"{}"})  # the alias moves
    runs("outdated", expect=1)
    runs("lock", "--upgrade")
    runs("sync")

    # A refused key: every command that talks to W&B fails with exit 3.
    publish(fake_wandb, {"config.json": b"{ }"})
    runs("outdated", expect=3, key=BAD_KEY)
    runs("lock", "--upgrade", expect=3, key=BAD_KEY)
    monkeypatch.setenv("WANDB_API_KEY", key)

    # Server errors, on GraphQL and on file downloads, and corrupt bytes.
    monkeypatch.setenv("WBSYNC_RETRIES", "2")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    fake_wandb.inject(Fault("graphql", "status", times=None, status=500))
    runs("lock", "--upgrade", expect=3)
    fake_wandb.clear_faults()
    runs("lock", "--upgrade")
    # File GETs only: a sync that places asks W&B for the version's manifest first (to confirm
    # the lock), and that request has its own, longer deadline.
    fake_wandb.inject(Fault("file", "status", times=None, status=503, match="/blobs/"))
    runs("sync", expect=3)
    fake_wandb.clear_faults()
    fake_wandb.inject(Fault("file", "wrong_bytes", times=None, match="/blobs/"))
    runs("sync", expect=4)
    fake_wandb.clear_faults()
    runs("sync")

    # An unreachable server (nothing listens on the port).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("WANDB_BASE_URL", dead)
    monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "5")
    runs("outdated", expect=3)

    assert runs.leaks(secrets) == []
    assert (project / "artifacts.lock").exists() and (project / ".wbsync" / "state.json").exists()
    assert any((tmp_path / "env" / "wbsync_cache_dir").rglob("blobs/*/*/*"))  # the store was scanned with content
    assert scan_files(tmp_path, secrets) == []


def test_the_scan_finds_a_planted_key(tmp_path: Path) -> None:
    """The file scan is not blind: a key planted in a log under the folders is found."""
    log = tmp_path / "env" / "home" / ".cache" / "wandb" / "logs" / "core-debug.log"
    log.parent.mkdir(parents=True)
    key = "k" * 40
    log.write_bytes(b"header Authorization: Basic " + base64.b64encode(f"api:{key}".encode()))
    assert scan_files(tmp_path, spellings(key)) != []
