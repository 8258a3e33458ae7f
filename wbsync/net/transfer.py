"""One HTTP GET of a file link (or of a byte range of it): redirects, stalls, refused links.

``get()`` streams the body into a sink and sorts every way it can end:

* done: the sink got every byte asked for;
* ``Retry``: worth another attempt (connection errors, timeouts, 5xx/429, a stalled link);
* ``LinkRefused``: the signed link expired or is refused (GCS ``400 ExpiredToken``, S3
  ``403 AccessDenied`` "Request has expired", any 401/403): ask the source for a fresh one;
* ``Failed``: anything else (404, a redirect loop): retrying cannot help.

Stall detection: a read timeout alone never catches a server that sends a byte a second (each
byte resets it), and a total deadline would kill a large file on a slow but honest link. So each
connection must deliver at least ``stall_bytes`` in every ``stall_seconds`` window, measured as
bytes arrive; a connection below that is dropped and retried.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event
from typing import Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from wbsync.net import netenv

READ_SIZE = 256 << 10  # the most one read returns; read1() hands back whatever has arrived
MAX_REDIRECTS = 10  # CDNs and object-store gateways use one or two; more is a loop
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class LinkRefused(Exception):
    """The file link was refused (expired, or its signature no longer accepted)."""


class Failed(Exception):
    """A permanent failure (404, a redirect loop): retrying cannot help."""


class WrongSize(Exception):
    """The server's answer gives the file another total size than the listing declared: the
    listing or the server lies, and no byte of this answer may be kept."""


class RangeIgnored(Exception):
    """The server answered a range request with the whole file (200): it does not do ranges."""


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def restart(self) -> None:
        """The server sent the whole file from byte 0 instead of the range asked for."""
        ...


@dataclass(frozen=True)
class StallRule:
    min_bytes: int = 64 << 10  # 2 KiB/s on average: only a link that is all but dead falls below
    window_s: float = 30.0


class StallWatch:
    """Raises ``Retry`` once a connection delivered fewer than ``min_bytes`` in ``window_s``."""

    def __init__(self, rule: StallRule) -> None:
        self.rule = rule
        self.total = 0
        now = time.monotonic()
        self._marks: deque[tuple[float, int]] = deque([(now, 0)])  # (time, total bytes then)

    def feed(self, nbytes: int) -> None:
        now = time.monotonic()
        self.total += nbytes
        marks = self._marks
        horizon = now - self.rule.window_s
        while len(marks) > 1 and marks[1][0] <= horizon:
            marks.popleft()  # keep one mark at or before the window's start
        if marks[0][0] <= horizon and self.total - marks[0][1] < self.rule.min_bytes:
            raise Retry(f"stalled: fewer than {self.rule.min_bytes} bytes in {self.rule.window_s:g} s")
        if now - marks[-1][0] >= self.rule.window_s / 8:
            marks.append((now, self.total))  # coarse marks: a handful per window, not one per read


class Connections:
    """Where file GETs go: a pool of kept-alive connections per host, through the proxy the
    environment names for it (wbsync.net.netenv), trusting the certificates the SDK trusts.

    A direct request finds its host's pool in a dict and sends just the path: urllib3's
    PoolManager parses the whole signed URL and rebuilds its pool key on every request, about
    0.2 ms of CPU, as much as the rest of a small file's download.
    """

    def __init__(self, maxsize: int, timeout: urllib3.Timeout) -> None:
        self._kw = dict(maxsize=maxsize, block=False, timeout=timeout, retries=False,
                        ssl_context=netenv.tls_context())
        if netenv.insecure():
            self._kw.update(cert_reqs="CERT_NONE", assert_hostname=False)
        self._direct = urllib3.PoolManager(num_pools=16, **self._kw)
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._routes: dict[tuple[str, str], HTTPConnectionPool | urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def request(self, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        parts = urlsplit(url)
        route = self._routes.get((parts.scheme, parts.netloc))
        if route is None:
            route = self._route(url, parts.scheme, parts.netloc)
        options = dict(headers=headers, preload_content=False, redirect=False, decode_content=False)
        if isinstance(route, urllib3.ProxyManager):
            return route.request("GET", url, **options)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return route.urlopen("GET", target, assert_same_host=False, retries=False, **options)

    def _route(self, url: str, scheme: str, netloc: str) -> HTTPConnectionPool | urllib3.ProxyManager:
        with self._lock:
            proxy = netenv.proxy_for(url)
            if proxy is None:
                route: HTTPConnectionPool | urllib3.ProxyManager = self._direct.connection_from_url(url)
            else:
                if proxy.url not in self._proxied:
                    self._proxied[proxy.url] = urllib3.ProxyManager(proxy.url, num_pools=16, **self._kw)
                route = self._proxied[proxy.url]
            self._routes[scheme, netloc] = route
            return route

    def clear(self) -> None:
        self._direct.clear()
        for manager in self._proxied.values():
            manager.clear()


def get(http: Connections, url: str, start: int, end: int | None, sink: Sink,
        stall: StallRule, cancel: Event, received: Callable[[int], None], size: int | None = None) -> None:
    """GET ``url`` bytes ``[start, end)`` (``end`` None: to the end of the file) into ``sink``;
    ``size``: the file's declared size, which the answer's own total must agree with."""
    ranged = start > 0 or end is not None
    headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if ranged else {}
    resp = _follow(http, url, headers)
    finished = False
    try:
        if size is not None and resp.status in (200, 206, 416):
            _check_total(resp, size)
        if resp.status == 200 and ranged:
            sink.restart()
        elif resp.status not in (200, 206):
            _refuse(resp, url)
        watch = StallWatch(stall)
        while True:
            if cancel.is_set():
                raise Retry("cancelled")
            data = resp.read1(READ_SIZE)
            if not data:
                break
            watch.feed(len(data))
            sink.write(data)
            received(len(data))
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and watch.total < int(length):
            raise Retry(f"the connection closed after {watch.total} of {length} bytes")
        finished = True
    except urllib3.exceptions.HTTPError as exc:
        raise Retry(_reason(exc)) from None
    finally:
        if not finished and resp.connection is not None:
            resp.connection.close()  # body unread (a stall, an error): never reuse this connection
        resp.release_conn()


def _follow(http: Connections, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
    """The first answer that is not a redirect. Redirects go to any host, and the request never
    carries credentials (signed links need none), so nothing can leak to the next host."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = http.request(url, headers)
        except urllib3.exceptions.HTTPError as exc:
            raise Retry(_reason(exc)) from None
        location = resp.headers.get("Location")
        if resp.status not in REDIRECTS or not location:
            return resp
        resp.drain_conn()
        resp.release_conn()
        url = urljoin(url, location)
        if urlsplit(url).scheme not in ("http", "https"):
            raise Failed(f"the link redirected to {shown(url)}, which is not an http(s) link.")
    raise Failed(f"the link redirected more than {MAX_REDIRECTS} times (last: {shown(url)}).")


def _check_total(resp: urllib3.BaseHTTPResponse, size: int) -> None:
    """Raise ``WrongSize`` when the answer's headers give the whole file another size: the
    ``Content-Range`` total of a 206 or a 416 (a range past the real end), the ``Content-Length``
    of a plain 200 (not one the server compressed on the way). Checked on the first answer,
    before any byte is written."""
    if resp.status in (206, 416):
        total = resp.headers.get("Content-Range", "").rpartition("/")[2].strip()
        source = "Content-Range"
    elif not resp.headers.get("Content-Encoding"):
        total, source = (resp.headers.get("Content-Length") or "").strip(), "Content-Length"
    else:
        return
    if total.isdigit() and int(total) != size:
        resp.drain_conn()
        raise WrongSize(f"the server's {source} gives the file {int(total):,} bytes; its listing declared {size:,}")


def _refuse(resp: urllib3.BaseHTTPResponse, url: str) -> None:
    """Raise what an error status means for the download."""
    status = resp.status
    if status in RETRYABLE_STATUS:
        resp.drain_conn()
        raise Retry(f"HTTP {status}", _retry_after(resp.headers.get("Retry-After")))
    body = resp.read(4096) or b""
    resp.drain_conn()
    if status in (401, 403) or (status == 400 and b"ExpiredToken" in body):
        raise LinkRefused(f"HTTP {status}{_code(body)}")
    raise Failed(f"the server answered HTTP {status}{_code(body)}.")


def _code(body: bytes) -> str:
    """The error code of a cloud's XML error document (``<Code>ExpiredToken</Code>``), if any."""
    start = body.find(b"<Code>")
    end = body.find(b"</Code>", start)
    if start < 0 or end < 0:
        return ""
    return " " + body[start + 6 : min(end, start + 70)].decode("ascii", "replace")


def shown(url: str) -> str:
    """A link as messages may show it: without user info and query string (the signature)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these servers; fall back to our backoff


def _reason(exc: Exception) -> str:
    text = str(exc)
    # urllib3 puts the full URL (signature included) into some messages: cut the query off.
    text = " ".join(shown(w) if "://" in w else w for w in text.split(" "))
    return text if len(text) < 200 else text[:200] + "..."
