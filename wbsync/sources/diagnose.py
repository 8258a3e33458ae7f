"""Why W&B cannot be reached: wbsync's own quick look at the server, so a message can name the
real problem instead of the SDK's catch-all.

The SDK reports an unreachable host, a DNS failure, a TLS error and a dead proxy all as "Failed
to verify credentials ... the service process is busy and did not respond in time", after its
own wait (about 20 s) that no setting shortens short of patching it. So before the SDK's first
call, ``check_reachable`` opens one TCP connection (through the proxy, when one applies; with a
TLS handshake for https) under the connect timeout; no HTTP request is sent, so a server sees
nothing. When an SDK call fails anyway, ``diagnose_server`` sends one unauthenticated GraphQL
request and tells a W&B server (it answers JSON, even to a stranger) from something else (a
web page, a 404, a 5xx). Neither sends the API key.

This module does not import wandb; the W&B source calls it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import ssl
from urllib.parse import urlsplit, urlunsplit

from wbsync.core import settings
from wbsync.core.errors import RemoteError, UsageError
from wbsync.net.netenv import Proxy, proxy_for, tls_context

# The SDK's own format rule (wandb 0.31, wandb/sdk/lib/wbauth/validation.py): a JWT of three
# base64url segments, or an optional "prefix-" and a secret of 40+ letters, digits, "_" or "-".
_JWT = re.compile(r"[\w-]+\.[\w-]+\.[\w-]+")
_SECRET = re.compile(r"[\w-]+")
_MIN_SECRET = 40
# Statuses a W&B server never gives to a POST to /graphql, down or not: a server that does not
# take POST there (Python's http.server answers 501) or does not speak its HTTP version.
_NOT_WANDB_STATUSES = (501, 505)
_VIEWER = b'{"query": "query Viewer { viewer { id } }", "operationName": "Viewer"}'
_DEFAULT_TIMEOUT = 10.0


def connect_timeout() -> float:
    """Seconds to wait for a connection: WBSYNC_TIMEOUT, at most 10 (the downloads' rule)."""
    return min(settings.number("WBSYNC_TIMEOUT"), _DEFAULT_TIMEOUT)


def public_url(url: str) -> str:
    """``url`` without a user, password or query string: what messages may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_key_format() -> None:
    """UsageError (exit 2, no request sent) when WANDB_API_KEY is set but cannot be a W&B key.
    The SDK checks the same rule, but its refusal reaches wbsync as a failed credentials check,
    which read as a network problem. The key itself is never shown, only what is wrong with it."""
    key = os.environ.get("WANDB_API_KEY", "")
    problem = key_format_problem(key) if key else None
    if problem:
        raise UsageError(
            f"WANDB_API_KEY is not a W&B API key: {problem} A key is 40 or more letters, digits, '_' or '-' "
            "(a dedicated server's keys may start with a prefix and '-'). Copy it again from W&B (User "
            "settings > API keys), without quotes or spaces, or unset WANDB_API_KEY to use the key "
            "`wandb login` stored in ~/.netrc. Nothing was sent to W&B.")


def key_format_problem(key: str) -> str | None:
    """What makes ``key`` unusable as a W&B API key, as a sentence; None if its format is fine."""
    if _JWT.fullmatch(key):
        return None
    secret = key.split("-", 1)[-1]
    if not _SECRET.fullmatch(secret):
        return "it holds characters other than letters, digits, '_' and '-' (a space, a quote, a line break?)."
    if len(secret) < _MIN_SECRET:
        return f"it has {len(secret)} characters where a key has at least {_MIN_SECRET}."
    return None


def check_reachable(url: str, timeout: float | None = None) -> None:
    """Raise RemoteError, naming the problem and the next step, when ``url``'s host (or its
    proxy) cannot be resolved, connected to within ``timeout``, or greeted over TLS."""
    seconds = connect_timeout() if timeout is None else timeout
    parts = urlsplit(url)
    shown = public_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"WANDB_BASE_URL {shown!r} is not an http(s) URL: set it to your W&B server's "
                          "address, e.g. https://acme.wandb.io, or unset it for W&B's own cloud.")
    proxy = proxy_for(url)
    if proxy is not None:
        _check_proxy(proxy, shown, seconds)
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock = _connect(parts.hostname, port, shown, seconds)
    with sock:
        if parts.scheme == "https":
            _handshake(sock, parts.hostname, shown)


def _check_proxy(proxy: Proxy, shown: str, seconds: float) -> None:
    parts = urlsplit(proxy.url if "://" in proxy.url else f"http://{proxy.url}")
    where = public_url(proxy.url if "://" in proxy.url else f"http://{proxy.url}")
    fix = (f"Check {proxy.variable} (and NO_PROXY, for hosts to reach directly), or ask whoever runs "
           "the proxy; then run again.")
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 8080), timeout=seconds):
            return
    except socket.gaierror as exc:
        reason = f"its host name does not resolve: {exc.strerror}"
    except TimeoutError:
        reason = f"it did not accept a connection within {seconds:g} s"
    except OSError as exc:
        reason = f"{exc.strerror or exc}"
    raise RemoteError(f"cannot reach W&B at {shown} through the proxy {where} ({proxy.variable}): {reason}. {fix}")


def _connect(host: str, port: int, shown: str, seconds: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=seconds)
    except socket.gaierror as exc:
        raise RemoteError(f"cannot reach W&B at {shown}: the host name {host!r} does not resolve (DNS: "
                          f"{exc.strerror}). Check the spelling of WANDB_BASE_URL and your network or VPN, "
                          "then run again.") from None
    except TimeoutError:
        raise RemoteError(f"cannot reach W&B at {shown}: {host} port {port} did not answer within "
                          f"{seconds:g} s. Check your network, VPN or firewall and WANDB_BASE_URL, then "
                          "run again (WBSYNC_TIMEOUT sets the wait, at most 10 s).") from None
    except ConnectionRefusedError:
        raise RemoteError(f"cannot reach W&B at {shown}: nothing accepts connections on {host} port {port} "
                          "(connection refused). Check WANDB_BASE_URL (host and port) and that the server "
                          "is running, then run again.") from None
    except OSError as exc:
        raise RemoteError(f"cannot reach W&B at {shown}: {exc.strerror or exc}. Check your network and "
                          "WANDB_BASE_URL, then run again.") from None


def _handshake(sock: socket.socket, host: str, shown: str) -> None:
    context = tls_context()
    try:
        context.wrap_socket(sock, server_hostname=host).close()
    except ssl.SSLCertVerificationError as exc:
        raise RemoteError(f"cannot reach W&B at {shown}: its TLS certificate is not trusted "
                          f"({exc.verify_message}). If the server uses your organization's own certificate "
                          "authority, point SSL_CERT_FILE and REQUESTS_CA_BUNDLE at its CA bundle; then "
                          "run again.") from None
    except (ssl.SSLError, ConnectionError) as exc:
        raise RemoteError(f"cannot reach W&B at {shown}: the TLS handshake failed ({exc}). Does the server "
                          "speak https on that port? Check http:// versus https:// and the port in "
                          "WANDB_BASE_URL, then run again.") from None
    except TimeoutError:
        raise RemoteError(f"cannot reach W&B at {shown}: the TLS handshake did not finish in time. "
                          "Check your network and WANDB_BASE_URL, then run again.") from None


def diagnose_server(url: str, timeout: float | None = None) -> str | None:
    """After an SDK call failed without saying why: what is wrong with the server at ``url``, as
    a sentence with the next step, or None when it answers like W&B (then the SDK's reason stands)."""
    seconds = connect_timeout() if timeout is None else timeout
    try:
        check_reachable(url, seconds)
    except RemoteError as exc:
        return exc.message
    import urllib3  # ~50 ms, paid only on this failure path

    shown = public_url(url)
    proxy = proxy_for(url)
    pool = urllib3.ProxyManager(proxy.url) if proxy else urllib3.PoolManager()
    endpoint = url.rstrip("/") + "/graphql"
    try:
        response = pool.request("POST", endpoint, body=_VIEWER, headers={"Content-Type": "application/json"},
                                timeout=urllib3.Timeout(connect=seconds, read=seconds), retries=False,
                                redirect=False, preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        return (f"W&B at {shown} accepts connections but did not answer a request ({_reason(exc)}). "
                "Check the server's status and WANDB_BASE_URL, then run again.")
    finally:
        pool.clear()
    return _judge(shown, response.status, response.headers.get("Content-Type", ""), response.data)


def _judge(shown: str, status: int, kind: str, body: bytes) -> str | None:
    looks_like_wandb = _is_graphql_answer(body)
    if looks_like_wandb and status < 500:
        return None  # a W&B server: 200, or 401/403 to a request without a key
    if status >= 500 and status not in _NOT_WANDB_STATUSES:
        return (f"the server at {shown} answers HTTP {status}: it is down or overloaded. Retry later, or "
                "check its status page (W&B's cloud) or its administrator (a dedicated or self-hosted server).")
    sample = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
    what = f"HTTP {status}, {kind.split(';')[0] or 'no content type'}" + (f": {sample!r}" if sample else "")
    return (f"{shown} does not look like a W&B server: it answers, but not as W&B does (its GraphQL "
            f"endpoint /graphql gave {what}). "
            "Set WANDB_BASE_URL to your W&B server's API address (e.g. https://acme.wandb.io, not the "
            "address of a page in the App), or unset it for W&B's own cloud; then run again.")


def _is_graphql_answer(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and ("data" in doc or "errors" in doc)


def unknown_name_message(entry: str, reference: str, kind: str, typed: str, registry: str,
                         names: list[str]) -> str:
    """W&B has no registry (``kind`` "registry") or collection of that name: say which, in the
    reference's words, and list the names it has, closest to the typed one first, so the fix is a
    copy away."""
    where = f" in the registry {registry!r}" if kind == "collection" else ""
    listed = ", ".join(closest_first(typed, names)) or "none that your account can see"
    plural = "collections" if kind == "collection" else "registries"
    return (f"{entry!r} ({reference}): there is no {kind} {typed!r}{where}. The {plural} that exist: {listed}. "
            f"Fix the {kind} name in the reference (artifacts.yaml), then run again.")


def closest_first(typed: str, names: list[str], shown: int = 20) -> list[str]:
    """``names``, the ones most like ``typed`` first (then alphabetical), at most ``shown`` of them."""
    close = difflib.get_close_matches(typed, names, n=max(1, len(names)), cutoff=0.5)
    ordered = close + sorted(n for n in set(names) if n not in close)
    return ordered[:shown] + ([f"... ({len(ordered) - shown} more)"] if len(ordered) > shown else [])


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return text.split(": ", 1)[-1] if "Max retries" in text else text
