"""The loopback HTTP/1.1 server under ``FakeWandb``: one daemon thread per connection.

Requests are parsed by hand instead of through ``BaseHTTPRequestHandler``: its header parsing
goes through the ``email`` package and cost about half of each small request's time, and
when the SDK runs in the same process (as in the tests) every such microsecond competes with
its 32 download threads for the GIL.
"""

from __future__ import annotations

import socket
import threading
from socketserver import StreamRequestHandler, ThreadingTCPServer

from wbsync.testing.network import ConnectionClock
from wbsync.testing.routes import RecordedRequest, ServerState, route
from wbsync.testing.transport import Pacing, error_response, send

_MAX_LINE = 65536


class _Handler(StreamRequestHandler):
    server: LoopbackServer
    disable_nagle_algorithm = True  # Nagle + delayed ACK add ~40 ms to small kept-alive answers
    close_connection = False

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.clock = ConnectionClock()  # this connection's bandwidth budget

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def handle(self) -> None:
        """Answer requests on this connection until the client or a fault closes it."""
        try:
            while not self.close_connection:
                self._handle_one()
        except OSError:  # the client went away (or stop() shut the socket); nothing to tell it
            pass

    def _handle_one(self) -> None:
        line = self.rfile.readline(_MAX_LINE)
        if not line:
            self.close_connection = True
            return
        state = self.server.state
        try:
            method, target, version = line.decode("latin-1").split()
            headers = self._read_headers()
            body = self._read_body(headers)
        except ValueError:
            send(self, error_response(400, "fake W&B server: malformed request"), None, state.hang_release)
            self.close_connection = True
            return
        self.close_connection = version != "HTTP/1.1" or headers.get("connection", "").lower() == "close"
        request = RecordedRequest(method, target, headers)
        response, fault = route(state, request, body)
        if fault is None:
            request.status = response.status  # logged before the client can act on the answer
        pacing = Pacing(state.shaper, self.clock) if response.shaped and state.shaper.profile.shaped else None
        request.status = send(self, response, fault, state.hang_release, pacing)

    def _read_headers(self) -> dict[str, str]:
        """Header names lower-cased; a repeated header keeps its last value."""
        headers = {}
        while (line := self.rfile.readline(_MAX_LINE)) not in (b"\r\n", b"\n", b""):
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ValueError(f"malformed header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return headers

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        return self.rfile.read(int(headers.get("content-length") or 0))

    def _read_chunked(self) -> bytes:
        """Go's HTTP client streams file uploads chunked when it doesn't know their size."""
        parts = []
        while size := int(self.rfile.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE)
        while self.rfile.readline(_MAX_LINE).strip():  # trailers, up to the blank line
            pass
        return b"".join(parts)


class LoopbackServer(ThreadingTCPServer):
    """Listens on 127.0.0.1 at ``port`` (0: a random free one); tracks connections so ``close_connections`` works."""

    daemon_threads = True
    block_on_close = False  # stopping must not wait for handlers hung by a fault
    request_queue_size = 128  # the SDK opens up to 32 download connections at once

    def __init__(self, state: ServerState, port: int = 0) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handler threads idling on kept-alive sockets so nothing outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by its handler
                pass
