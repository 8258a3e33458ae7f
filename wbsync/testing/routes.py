"""What the fake server answers to each request: GraphQL, manifests, file bytes, run plumbing.

Everything here decides; nothing writes to a socket (``transport.py`` does, bending the answer
when a fault says so). Each request is recorded, faulted ones too.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from wbsync.testing.faults import Fault, FaultBook, FaultTarget
from wbsync.testing.graphql import OPERATIONS, Context, GraphQLError, execute, operation_name
from wbsync.testing.network import PROFILES, LinkPolicy, Shaper, expired_answer, link_problem
from wbsync.testing.transport import Response, error_response, json_response
from wbsync.testing.world import User, World

_BLOB = re.compile(r"/blobs/([0-9a-f]+)/([^/?]+)")
_MANIFEST = re.compile(r"/manifests/([0-9a-f]+)\.json")
_FALLBACK = re.compile(r"/artifactsV2?/.*/([0-9a-f]+)/[^/]+")  # .../<hex digest>/<basename>
_FILE_STREAM = re.compile(r"/files/[^/]+/[^/]+/[^/]+/file_stream")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_PREEMPTIVE = ("status", "reset", "hang")  # faults that replace the answer entirely


@dataclass
class RecordedRequest:
    """One request as the server saw it.

    ``status`` is what it answered: None while the answer is being made, and for good when a
    ``reset`` or ``hang`` fault meant no answer. The log records a request on arrival.
    """

    method: str
    path: str  # the raw request target, query string included
    headers: dict[str, str]
    operation: str | None = None  # GraphQL operation name
    variables: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    fault: str | None = None  # the kind of fault injected, if any
    at: float = field(default_factory=time.monotonic)


class RequestLog:
    """Thread-safe record of every request; reads return snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    def add(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


@dataclass
class ServerState:
    """What the routes read; the ``FakeWandb`` facade mutates it under ``lock``."""

    world: World
    base_url: str
    features: list[str]
    lock: threading.RLock = field(default_factory=threading.RLock)
    faults: FaultBook = field(default_factory=FaultBook)
    log: RequestLog = field(default_factory=RequestLog)
    unhandled: list[str] = field(default_factory=list)
    hang_release: threading.Event = field(default_factory=threading.Event)
    links: LinkPolicy = field(default_factory=LinkPolicy)
    shaper: Shaper = field(default_factory=lambda: Shaper(PROFILES["loopback"]))

    def release_hung(self) -> None:
        """Let hung requests go (their connections are reset); later hangs wait for the next call."""
        released, self.hang_release = self.hang_release, threading.Event()
        released.set()


def route(state: ServerState, request: RecordedRequest, body: bytes) -> tuple[Response, Fault | None]:
    """The answer to ``request`` and the fault that bends it, recording the request."""
    state.log.add(request)
    path = urlsplit(request.path).path
    if request.method == "POST" and path == "/graphql":
        return _graphql(state, request, body)
    if request.method == "GET" and path.startswith(
        ("/blobs/", "/manifests/", "/artifactsV2/", "/artifacts/")
    ):
        return _file(state, request, path)
    return _run_plumbing(request, path), None


# -- GraphQL ------------------------------------------------------------------------------


def _graphql(state: ServerState, request: RecordedRequest, body: bytes) -> tuple[Response, Fault | None]:
    try:
        payload = json.loads(body)
    except ValueError:
        return error_response(400, "fake W&B server: body is not JSON"), None
    query = payload.get("query") or ""
    request.operation = operation_name(query)
    request.variables = payload.get("variables") or {}
    fault = _take(state, request, "graphql", [request.operation])
    if fault and fault.kind in _PREEMPTIVE:
        return Response(500), fault  # a placeholder: the fault's answer (or silence) replaces it
    return _answer_graphql(state, request, query), fault


def _answer_graphql(state: ServerState, request: RecordedRequest, query: str) -> Response:
    user = _authenticated_user(state, request.headers)
    if user is None:
        return error_response(401, "user is not logged in")
    name = request.operation
    with state.lock:
        if name not in OPERATIONS:
            state.unhandled.append(name or "<anonymous>")
            return error_response(400, f"fake W&B server: unhandled operation {name}")
        ctx = Context(state.world, user, state.base_url, tuple(state.features), state.links)
        try:
            return json_response(200, {"data": execute(name, request.variables, query, ctx)})
        except GraphQLError as error:
            return json_response(200, {"errors": [{"message": str(error)}]})
        except Exception as error:  # noqa: BLE001 - a bug in the fake: fail at once (400: no retry)
            traceback.print_exc()
            return error_response(400, f"fake W&B server: error in {name}: {error!r}")


def _authenticated_user(state: ServerState, headers: Mapping[str, str]) -> User | None:
    """The user of ``Authorization: Basic base64("api:<key>")``, as wandb sends it."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, _, key = base64.b64decode(token).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    with state.lock:
        return state.world.user_by_key(key)


# -- manifests and file bytes -------------------------------------------------------------


def _file(state: ServerState, request: RecordedRequest, path: str) -> tuple[Response, Fault | None]:
    response, fault = _file_answer(state, request, path)
    response.shaped = True  # a file link: the network profile applies
    return response, fault


def _file_answer(state: ServerState, request: RecordedRequest, path: str) -> tuple[Response, Fault | None]:
    with state.lock:
        data, file_path = _lookup_bytes(state.world, path)
    needs_auth = path.startswith("/artifacts")  # the fallback URLs; presigned ones need none
    fault = _take(state, request, "file", [request.path, file_path, request.headers.get("range")])
    if fault and fault.kind in _PREEMPTIVE:
        return Response(500), fault  # a placeholder, as above
    if data is None:
        return error_response(404, f"fake W&B server: nothing at {path}"), fault
    if needs_auth and _authenticated_user(state, request.headers) is None:
        return error_response(401, "user is not logged in"), fault
    query = urlsplit(request.path).query
    problem = link_problem(path, query) if query else None
    if problem == "expired":
        status, body = expired_answer(state.links.style)
        return Response(status, body, "application/xml"), fault
    if problem:
        return Response(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "application/xml"), fault
    if state.links.redirect and path.startswith("/blobs/"):
        redirect = _redirect(state, path, query)
        if redirect is not None:
            return redirect, fault
    return _ranged(data, request.headers.get("range")), fault


def _redirect(state: ServerState, path: str, query: str) -> Response | None:
    """A redirect to the same link on another host name, ``hops`` times (counted in the query)."""
    params = parse_qs(query)
    hop = int(params.pop("hop", ["0"])[0])
    if hop >= state.links.hops:
        return None
    other = state.base_url.replace("127.0.0.1", "localhost", 1) if hop % 2 == 0 else state.base_url
    target = f"{other}{path}?{urlencode({**{k: v[0] for k, v in params.items()}, 'hop': hop + 1})}"
    return Response(state.links.redirect or 302, b"", "text/plain", {"Location": target})


def _lookup_bytes(world: World, path: str) -> tuple[bytes | None, str | None]:
    """The bytes at a manifest, blob or fallback URL, and the artifact file path they are."""
    if match := _BLOB.fullmatch(path):
        artifact = world.artifacts.get(_unhex(match.group(1)))
        file_path = unquote(match.group(2))
        return (artifact.blobs.get(file_path) if artifact else None), file_path
    if match := _MANIFEST.fullmatch(path):
        artifact = world.artifacts.get(_unhex(match.group(1)))
        return (artifact.manifest if artifact else None), None
    if match := _FALLBACK.fullmatch(path):
        return world.blobs_by_hex.get(match.group(1)), None
    return None, None


def _unhex(text: str) -> str:
    try:
        return bytes.fromhex(text).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _ranged(data: bytes, header: str | None) -> Response:
    """200 with the whole body, or 206 for ``Range: bytes=a-b`` (the SDK's multipart download)."""
    kind = "application/octet-stream"
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return Response(200, data, kind)
    first, last = match.groups()
    total = len(data)
    if first:
        start, end = int(first), min(int(last) if last else total - 1, total - 1)
    else:  # a suffix range: the last N bytes
        start, end = max(total - int(last), 0), total - 1
    if start >= total or start > end:
        return Response(416, b"", kind, {"Content-Range": f"bytes */{total}"})
    body = memoryview(data)[start : end + 1]
    return Response(206, body, kind, {"Content-Range": f"bytes {start}-{end}/{total}"})


# -- runs: telemetry, file_stream, uploads (protocol §6) ----------------------------------


def _run_plumbing(request: RecordedRequest, path: str) -> Response:
    if request.method == "POST" and path.startswith("/sdk/otel/v1/"):
        return json_response(200, {})
    if request.method == "POST" and _FILE_STREAM.fullmatch(path):
        return json_response(200, {"exitcode": None, "limits": {}})
    if request.method == "PUT" and path.startswith("/upload/"):
        return json_response(200, {})
    return error_response(404, f"fake W&B server: no route for {request.method} {path}")


def _take(
    state: ServerState, request: RecordedRequest, target: FaultTarget, subjects: list[str | None]
) -> Fault | None:
    fault = state.faults.take(target, subjects)
    request.fault = fault.kind if fault else None
    return fault
