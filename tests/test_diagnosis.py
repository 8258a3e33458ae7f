"""When W&B cannot be used, the message names the real cause, the URL (without secrets) and
the next step, quickly: wbsync looks at the server itself instead of blaming the API key after
the SDK's 20 s wait."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import run, run_process, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lock_fails(monkeypatch: pytest.MonkeyPatch, url: str, seconds: float = 8.0) -> str:
    monkeypatch.setenv("WANDB_BASE_URL", url)
    start = time.monotonic()
    err = run("lock", check=3).stderr
    assert time.monotonic() - start < seconds, "diagnosed within the connect timeout, not after the SDK's wait"
    assert "API key" not in err and "credentials" not in err  # the key is not what is wrong
    return err


@pytest.fixture
def manifest(project: Path) -> Path:
    return write_manifest(project, PHI3)


def test_a_port_nobody_listens_on_is_reported_as_such_at_once(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    err = _lock_fails(monkeypatch, f"http://127.0.0.1:{port}")
    assert "cannot reach" in err and f"http://127.0.0.1:{port}" in err and "connection refused" in err
    assert "WANDB_BASE_URL" in err


def test_a_host_that_does_not_answer_fails_within_the_connect_timeout(manifest: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:  # a listener whose backlog is full: new connections hang
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        waiting = []
        for _ in range(3):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            waiting.append(sock)
        monkeypatch.setenv("WBSYNC_TIMEOUT", "1")
        err = _lock_fails(monkeypatch, f"http://127.0.0.1:{port}", seconds=12.0)  # 1.0 s measured; SDK: 20 s
        for sock in waiting:
            sock.close()
    assert "did not answer within 1 s" in err and "firewall" in err


# A name no DNS query can carry (276 characters; a query holds at most 253): the resolver refuses it
# itself, at once, with "Name or service not known", so the test never reaches a real DNS server.
# A merely unregistered name such as ``no-such-host.invalid`` is sent to the system's resolver:
# glibc does not special-case ``.invalid``, and with no network it answers "Temporary failure".
UNRESOLVABLE = "no-such-host." + ".".join(["x" * 63] * 4) + ".invalid"


def test_the_unresolvable_test_name_is_refused_without_asking_a_dns_server() -> None:
    """Guards the test below: offline, a name that went to DNS fails with EAI_AGAIN, not EAI_NONAME."""
    assert len(UNRESOLVABLE) > 253
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo(UNRESOLVABLE, 80)
    assert caught.value.errno == socket.EAI_NONAME


def test_a_host_name_that_does_not_resolve_is_a_dns_error(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = _lock_fails(monkeypatch, f"http://{UNRESOLVABLE}")
    assert UNRESOLVABLE in err and "DNS" in err and "spelling" in err


def test_https_to_a_plain_http_port_is_a_tls_error(manifest: Path, fake_wandb: FakeWandb,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = fake_wandb.url.replace("http://", "https://")
    err = _lock_fails(monkeypatch, url)
    assert "TLS handshake" in err and url in err and "https://" in err


def test_a_proxy_that_does_not_answer_is_named_with_its_variable(manifest: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    err = _lock_fails(monkeypatch, "http://wandb.example.com")
    assert "proxy" in err and "HTTP_PROXY" in err and "NO_PROXY" in err and "wandb.example.com" in err


def test_the_url_is_shown_without_its_password_or_query(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    err = _lock_fails(monkeypatch, f"http://user:s3cret@127.0.0.1:{port}/?token=t0ken")
    assert f"127.0.0.1:{port}" in err and "s3cret" not in err and "t0ken" not in err


def test_python_callers_get_the_url_without_its_query_too(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API raises the error itself, past the CLI's output: it is clean when made."""
    import wbsync
    from wbsync.core.errors import RemoteError

    port = _closed_port()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}/?token=t0ken")
    with pytest.raises(RemoteError) as caught:
        wbsync.lock(manifest=manifest)
    assert f"127.0.0.1:{port}" in str(caught.value) and "t0ken" not in str(caught.value), caught.value


class _WebPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._page()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._page()

    def _page(self) -> None:
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_wandb_is_named_as_such(manifest: Path, web_page: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", web_page)
    err = run("lock", check=3).stderr
    assert "does not look like a W&B server" in err and web_page in err and "text/html" in err
    assert "refused" not in err


def test_a_refused_key_is_called_a_refused_key(fake_wandb: FakeWandb, manifest: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    err = run("lock", check=3).stderr
    assert "refused the API key" in err and "WANDB_API_KEY" in err and fake_wandb.url in err
    assert "wandb login" in err and "cannot reach" not in err


def test_no_key_at_all_is_not_called_a_refused_key(fake_wandb: FakeWandb, manifest: Path) -> None:
    publish(fake_wandb)
    proc = run_process(manifest.parent, "lock", drop_env=("WANDB_API_KEY",))
    assert proc.returncode == 3, proc.stderr
    assert "no W&B API key" in proc.stderr and fake_wandb.url in proc.stderr and "wandb login" in proc.stderr
    assert "refused" not in proc.stderr


def test_the_probe_sends_no_request_to_a_healthy_server(fake_wandb: FakeWandb, manifest: Path) -> None:
    publish(fake_wandb)
    run("lock")
    assert all(r.path != "/graphql" or r.operation != "Viewer" or r.headers.get("authorization")
               for r in fake_wandb.requests)  # no unauthenticated Viewer: only the SDK's own


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """Python's own static file server: it answers GraphQL's POST with HTTP 501."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_answering_501_is_not_wandb_rather_than_down(manifest: Path, file_server: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", file_server)
    err = run("lock", check=3).stderr
    assert "does not look like a W&B server" in err and file_server in err and "WANDB_BASE_URL" in err
    assert "HTTP 501" in err and "overloaded" not in err and "retry later" not in err.lower()


@pytest.mark.parametrize(("key", "words"), [
    ("abc", "it has 3 characters where a key has at least 40"),
    ("local-" + "k" * 39, "it has 39 characters"),
    ("k" * 39 + " ", "characters other than letters"),
    ('"' + "k" * 40 + '"', "characters other than letters"),
])
def test_a_malformed_api_key_is_a_local_format_error_naming_the_variable(
        fake_wandb: FakeWandb, manifest: Path, monkeypatch: pytest.MonkeyPatch, key: str, words: str) -> None:
    monkeypatch.setenv("WANDB_API_KEY", key)
    before = len(fake_wandb.requests)
    err = run("lock", check=2).stderr
    assert "WANDB_API_KEY is not a W&B API key" in err and words in err, err
    assert key.strip('"') not in err and "network" not in err
    assert len(fake_wandb.requests) == before  # decided before any request


@pytest.mark.parametrize("key", ["k" * 40, "local-" + "k" * 40, "a-b_c" + "9" * 40, "eyJh.eyJz.c2ln"])
def test_keys_of_every_format_the_sdk_takes_pass_the_format_check(
        fake_wandb: FakeWandb, manifest: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    from wbsync.sources.diagnose import key_format_problem

    assert key_format_problem(key) is None
