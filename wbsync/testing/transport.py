"""Writing HTTP responses fast, and misbehaving on purpose when a fault says so.

Speed: the stock ``http.server`` writes the header block and the body separately, which
with Nagle's algorithm and delayed ACKs caps a keep-alive connection at ~180 small responses
a second. Here the accepted socket has TCP_NODELAY (see ``server.py``) and a response's
head and small body leave in one ``sendall``; large bodies are streamed from a memoryview
in chunks, never copied whole.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from io import BufferedIOBase
from typing import Any, Protocol

from wbsync.testing.faults import Fault
from wbsync.testing.network import ConnectionClock, Shaper

_ONE_WRITE_LIMIT = 256 * 1024  # bodies up to this size share a write with the head
_CHUNK = 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class Channel(Protocol):
    """The connection a response goes out on (the server's request handler)."""

    connection: socket.socket
    wfile: BufferedIOBase
    close_connection: bool


@dataclass
class Response:
    status: int
    body: bytes | memoryview = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    shaped: bool = False  # a file answer: the network profile's latency and bandwidth apply


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


def error_response(status: int, message: str) -> Response:
    """The error shape W&B uses; the SDK shows ``errors[0].message`` to the user."""
    return json_response(status, {"errors": [{"message": message}]})


@dataclass
class Pacing:
    """The network a response crosses: the server's shaper and this connection's clock."""

    shaper: Shaper
    clock: ConnectionClock

    def __call__(self, nbytes: int) -> None:
        self.shaper.pace(self.clock, nbytes)


def send(
    handler: Channel, response: Response, fault: Fault | None, hang_release: threading.Event,
    pacing: Pacing | None = None,
) -> int | None:
    """Answer ``response``, bent by ``fault``. Returns the status sent (None if none was).

    A ``hang`` waits for ``hang_release`` (set by ``stop()`` or ``reset()``), then resets.
    A shaped response (file links) waits the profile's time to first byte, then is paced.
    """
    if not (response.shaped and pacing and pacing.shaper.profile.shaped):
        pacing = None
    if pacing is not None:
        pacing.shaper.first_byte()
    if fault is None:
        _write(handler, _head(response, len(response.body)), memoryview(response.body), pace=pacing)
        return response.status
    return _send_faulted(handler, response, fault, hang_release)


def _send_faulted(
    handler: Channel, response: Response, fault: Fault, hang_release: threading.Event
) -> int | None:
    if fault.kind in ("hang", "reset"):
        if fault.kind == "hang":
            hang_release.wait()
        _abort(handler)
        return None
    if fault.kind == "slow":
        time.sleep(fault.delay)
    if fault.kind == "status":
        response = _status_fault(fault)
    body = memoryview(response.body)
    head = _head(response, len(body))
    if fault.kind == "trickle":
        _trickle(handler, head, body, fault.delay, hang_release)
        return response.status
    if fault.kind in ("reset_mid_body", "truncate"):
        _write(handler, head, body[: len(body) // 2])
        if fault.kind == "reset_mid_body":
            _abort(handler)
        handler.close_connection = True  # closing sends FIN: the body just ends early
        return response.status
    _write(handler, head, body, corrupt=fault.kind == "wrong_bytes")
    return response.status


def _status_fault(fault: Fault) -> Response:
    response = error_response(fault.status, f"fake W&B server: injected HTTP {fault.status}")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response


def _head(response: Response, length: int) -> bytes:
    reason = _REASONS.get(response.status, "")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {length}",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write(handler: Channel, head: bytes, body: memoryview, corrupt: bool = False,
           pace: Pacing | None = None) -> None:
    """The head with the start of the body in one write, the rest in chunks straight from memory.

    ``corrupt`` flips the first byte: same length, wrong bytes, no copy of a large body.
    ``pace``: smaller chunks, each written when the network profile lets it through.
    """
    limit, chunk = (Shaper.CHUNK, Shaper.CHUNK) if pace else (_ONE_WRITE_LIMIT, _CHUNK)
    first = bytearray(body[:limit])
    if corrupt and first:
        first[0] ^= 0xFF
    if pace:
        pace(len(first))
    handler.wfile.write(head + first)
    for start in range(len(first), len(body), chunk):
        piece = body[start : start + chunk]
        if pace:
            pace(len(piece))
        handler.wfile.write(piece)


def _trickle(handler: Channel, head: bytes, body: memoryview, delay: float, stop: threading.Event) -> None:
    """The head, then one byte every ``delay`` seconds: alive, but never done in useful time."""
    handler.wfile.write(head)
    handler.wfile.flush()
    for start in range(len(body)):
        if stop.wait(delay):
            break
        handler.wfile.write(body[start : start + 1])
        handler.wfile.flush()
    handler.close_connection = True


def _abort(handler: Channel) -> None:
    """Close with SO_LINGER 0, so the peer sees a TCP RST rather than an orderly FIN."""
    connection: socket.socket = handler.connection
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()  # the fd really closes once the handler's rfile/wfile are closed
    handler.close_connection = True
