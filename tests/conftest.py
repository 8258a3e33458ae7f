"""Shared fixtures: a hermetic W&B environment and the fake W&B server the real SDK talks to.

Why one server for the whole session (measured with wandb 0.31.0 in one Python process):

* ``wandb.Api()`` re-reads ``WANDB_BASE_URL`` / ``WANDB_API_KEY`` (or its ``api_key=`` and
  ``overrides={"base_url": ...}``) on every construction: two consecutive ``Api()`` objects in
  one process talked to two fake servers on different ports with different keys, both fine.
  ``WANDB_CACHE_DIR`` is also read at each download.
* ``wandb.init()`` does not: it takes base URL, key and dirs from the process-wide settings
  singleton, which reads the environment once, at the first wandb call. A second test's run
  went to the first test's (stopped) server: "connection refused" after retries.

So the server lives for the session on one port, every test sees the same ``WANDB_BASE_URL``
and key, and ``reset()`` gives each test the default world with no faults and an empty log.
Per-test directories (cache, config, HOME) still isolate everything the SDK reads lazily.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wbsync.testing import FakeWandb

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_TEST_SETTINGS = {
    # wandb-core's GraphQL retries: one retry, one second apart (wait times are whole seconds).
    "WANDB__GRAPHQL_RETRY_MAX": "1",
    "WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS": "1",
    "WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS": "1",
    "WANDB_HTTP_TIMEOUT": "10",  # per attempt in wandb-core, and the Python-side cap of api.* calls
    "WANDB_SILENT": "true",
    # No OpenTelemetry POSTs: they arrive whenever the shared wandb-core flushes, even during
    # a later test, and would break assertions that a command sent no request at all.
    "WANDB_ERROR_REPORTING": "false",
}


@pytest.fixture(scope="session")
def fake_wandb_server() -> Iterator[FakeWandb]:
    """The one running fake server of the session (use ``fake_wandb`` in tests)."""
    with FakeWandb() as server:
        yield server


@pytest.fixture
def fake_wandb(fake_wandb_server: FakeWandb) -> FakeWandb:
    """The running fake W&B server, in the default world, for this test alone.

    ``wandb_env`` has already reset it and pointed WANDB_BASE_URL / WANDB_API_KEY at it.
    """
    return fake_wandb_server


@pytest.fixture(autouse=True)
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_wandb_server: FakeWandb) -> None:
    """Every test: W&B and wbsync state under ``tmp_path``, nothing reachable off 127.0.0.1.

    Unsets every inherited ``WANDB_*`` variable (entity, organization, mode, ...), then sets the
    fake server's URL and alice's key, fast-failing GraphQL retries and no telemetry.
    """
    fake_wandb_server.reset()
    for name in [n for n in os.environ if n.startswith("WANDB_") or n in _PROXY_VARS]:
        monkeypatch.delenv(name)
    for name in (
        "HOME",
        "WANDB_CACHE_DIR",
        "WANDB_CONFIG_DIR",
        "WANDB_DATA_DIR",
        "WANDB_DIR",
        "WBSYNC_CACHE_DIR",
        "WBSYNC_STATE_DIR",
    ):
        path = tmp_path / "env" / name.lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "env" / "home" / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "env" / "home" / ".config"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("WANDB_BASE_URL", fake_wandb_server.url)
    monkeypatch.setenv("WANDB_API_KEY", fake_wandb_server.api_key)
    for name, value in _TEST_SETTINGS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (for artifacts.yaml), made the current directory."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
