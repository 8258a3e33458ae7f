"""A realistic network in front of the fake server's file links: latency, bandwidth, expiry.

Cloud buckets are not loopback. Each file GET waits tens of milliseconds for its first byte,
one connection tops out at tens of MB/s while many in parallel fill the link, signed links
expire, and CDNs answer with redirects. ``NetworkProfile`` names the first three so every
figure says which network it was measured on; ``LinkPolicy`` covers expiry and redirects.

Only file GETs (manifests and blobs) are shaped; GraphQL answers as fast as before, so a
profile measures the download path the two clients (wbsync and the SDK) implement differently.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

MB = 1_000_000  # bandwidths in decimal MB/s, as link speeds are quoted

ExpiryStyle = Literal["gcs", "s3"]


@dataclass(frozen=True)
class NetworkProfile:
    """Time to first byte of every file answer, and bandwidth caps (bytes/s; None: unlimited)."""

    name: str
    ttfb_s: float = 0.0
    per_connection_bps: float | None = None
    shared_bps: float | None = None

    @property
    def shaped(self) -> bool:
        return bool(self.ttfb_s or self.per_connection_bps or self.shared_bps)


PROFILES: dict[str, NetworkProfile] = {
    "loopback": NetworkProfile("loopback"),
    # A cloud VM pulling from a bucket in the same region.
    "cloud": NetworkProfile("cloud", 0.030, 50 * MB, 400 * MB),
    # Another continent: longer round trips, slower single connections, a fat shared link.
    "far": NetworkProfile("far", 0.080, 20 * MB, 1000 * MB),
}


def profile_named(name: str) -> NetworkProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown network profile {name!r}; known: {', '.join(PROFILES)}") from None


class Shaper:
    """Paces file bodies: a bucket per connection and one shared by all of them.

    Each chunk reserves its transfer time on the connection's clock and on the shared clock
    and is written when both have reached it, so N connections get min(N x per-connection,
    shared) in total, as on a real link.
    """

    CHUNK = 128 * 1024  # 2.6 ms at 50 MB/s: fine-grained enough for the caps to be smooth

    def __init__(self, profile: NetworkProfile) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self._shared_next = 0.0

    def first_byte(self) -> None:
        if self.profile.ttfb_s:
            time.sleep(self.profile.ttfb_s)

    def pace(self, connection: ConnectionClock, nbytes: int) -> None:
        now = time.monotonic()
        due = now
        if self.profile.per_connection_bps:
            connection.next = max(now, connection.next) + nbytes / self.profile.per_connection_bps
            due = connection.next
        if self.profile.shared_bps:
            with self._lock:
                self._shared_next = max(now, self._shared_next) + nbytes / self.profile.shared_bps
                due = max(due, self._shared_next)
        if due > now:
            time.sleep(due - now)


@dataclass
class ConnectionClock:
    """When one connection may send its next byte (kept by the server's handler)."""

    next: float = 0.0


@dataclass(frozen=True)
class LinkPolicy:
    """How file links behave: signed with a lifetime, and answered with a redirect first.

    ``lifetime_s``: links carry ``expires`` and ``sig`` query parameters; a GET after
    ``expires`` is refused as GCS (``400 ExpiredToken``) or S3 (``403 AccessDenied``,
    "Request has expired") does, by ``style``. ``redirect``: 302 or 307 to the same bytes on
    another host name (``localhost`` for ``127.0.0.1``), at most ``hops`` times in a row.
    ``userinfo``: file and manifest links carry it before their host (``user:password@``), as a
    self-hosted server whose bucket URL holds the bucket's credentials hands them out.
    """

    lifetime_s: float | None = None
    style: ExpiryStyle = "gcs"
    redirect: int | None = None
    hops: int = 1
    userinfo: str | None = None

    def base(self, base_url: str) -> str:
        """The server's address as links name it (with ``userinfo``, when set)."""
        if self.userinfo is None:
            return base_url
        scheme, _, rest = base_url.partition("://")
        return f"{scheme}://{self.userinfo}@{rest}"

    def sign(self, url: str) -> str:
        if self.lifetime_s is None:
            return url
        expires = f"{time.time() + self.lifetime_s:.3f}"
        return f"{url}?expires={expires}&sig={_signature(url.split('/', 3)[-1], expires)}"


_SECRET = b"fake-bucket-key"


def _signature(path: str, expires: str) -> str:
    return hashlib.sha256(_SECRET + path.encode() + b"|" + expires.encode()).hexdigest()[:32]


def link_problem(path: str, query: str) -> Literal["expired", "bad signature"] | None:
    """Why a signed link is refused, or None when it is good (or not signed at all)."""
    params = parse_qs(query)
    if "expires" not in params:
        return None
    expires = params["expires"][0]
    if params.get("sig", [""])[0] != _signature(path.lstrip("/"), expires):
        return "bad signature"
    return "expired" if time.time() > float(expires) else None


def expired_answer(style: ExpiryStyle) -> tuple[int, bytes]:
    """The status and XML body each cloud sends for an expired signed link."""
    if style == "s3":
        return 403, (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                     b"<Message>Request has expired</Message></Error>")
    return 400, (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
                 b"<Message>The provided token has expired.</Message></Error>")
