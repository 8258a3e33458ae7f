"""File downloads go through the proxy the environment names, as the SDK's do.

Behind a corporate proxy, `wandb` works (its requests honour HTTPS_PROXY / HTTP_PROXY /
NO_PROXY), so wbsync's own file GETs must take the same way out or a sync fails where the SDK
succeeds. The proxy here is a small forwarding HTTP proxy on loopback that records every
request it carries; wandb-core's GraphQL never uses a proxy for a loopback address, so only
file GETs (and the SDK's manifest GET) reach it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from helpers import run, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb


class _Forward(BaseHTTPRequestHandler):
    """Forwards an absolute-form request (``GET http://host/path``) to its host."""

    protocol_version = "HTTP/1.1"
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        target = urlsplit(self.path)
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _use(proxy: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def _blob_gets(proxy: ThreadingHTTPServer) -> list[str]:
    return [p for p in proxy.seen if "/blobs/" in p]  # type: ignore[attr-defined]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_file_downloads_go_through_the_proxy_the_environment_names(
        fake_wandb: FakeWandb, project: Path, proxy: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch,
        variable: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    _use(proxy, monkeypatch, variable)
    run("sync")
    assert tree(project / "models" / "phi3") == MODEL
    assert len(_blob_gets(proxy)) == len(MODEL), proxy.seen  # type: ignore[attr-defined]
    assert all(p.startswith(fake_wandb.url) for p in _blob_gets(proxy))  # absolute-form: a real proxy request


def test_no_proxy_sends_file_downloads_straight_to_the_host(
        fake_wandb: FakeWandb, project: Path, proxy: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    _use(proxy, monkeypatch, "HTTP_PROXY")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    run("sync")
    assert tree(project / "models" / "phi3") == MODEL
    assert _blob_gets(proxy) == []
