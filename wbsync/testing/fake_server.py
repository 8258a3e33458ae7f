"""A fake W&B server on 127.0.0.1 for running the real ``wandb`` SDK in tests.

It speaks only HTTP (it never imports wandb): the GraphQL operations, manifest and file GETs
that wandb 0.31 sends, answered from an in-memory world
each test builds; every request is recorded and faults can be injected.

    with FakeWandb() as srv:
        srv.log_artifact("acme", "model", "phi3", {"w.bin": b"..."}, aliases=["production"])
        # WANDB_BASE_URL=srv.url WANDB_API_KEY=srv.api_key, then wandb.Api().artifact(...)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from wbsync.testing.faults import Fault
from wbsync.testing.graphql import blob_url
from wbsync.testing.loopback import LoopbackServer
from wbsync.testing.network import LinkPolicy, NetworkProfile, Shaper, profile_named
from wbsync.testing.routes import RecordedRequest, ServerState
from wbsync.testing.world import ArtifactState, DigestAlgorithm, LoggedVersion, api_key_for, default_world

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_FEATURES = ("ARTIFACT_REGISTRY_SEARCH", "TOTAL_COUNT_IN_FILE_CONNECTION", "ARTIFACT_DIGEST_ALGORITHM")


class FakeWandb:
    """A fake W&B server on 127.0.0.1 (random port) with an in-memory registry.

    The default world: org "acme" (org entity "acme-org"), team entity "myteam" in it, user
    "alice" (personal entity "alice", member of acme, key ``api_key``), registries "model"
    and "dataset". ``org`` arguments take the display name or the org entity; registry names
    are given without the ``wandb-registry-`` prefix.
    """

    def __init__(self, features: Iterable[str] = DEFAULT_FEATURES,
                 network: str | NetworkProfile = "loopback", port: int = 0) -> None:
        self._port = port  # 0: a random free port
        self._default_features = list(features)
        self._default_network = network
        self._state = ServerState(default_world(), "", list(self._default_features))
        self.network = network
        self._server: LoopbackServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on the loopback port (a random one unless given) and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._server = LoopbackServer(self._state, self._port)
        self._state.base_url = f"http://127.0.0.1:{self._server.port}"
        threading.Thread(  # stop() waits for it through shutdown()
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-wandb", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving; hung (faulted) requests are released and their connections reset."""
        if self._server is None:
            return
        self._state.release_hung()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the default world and features; faults, request log and ``unhandled`` cleared.

        Requests hung by a ``hang`` fault are released (reset), so a session-wide server starts
        each test clean.
        """
        self._state.release_hung()
        with self._state.lock:
            self._state.world = default_world()
            self._state.features[:] = self._default_features
            self.clear_faults()
            self._state.log.clear()
            self._state.unhandled.clear()
            self.network = self._default_network
            self.links = LinkPolicy()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (set by ``start()``)."""
        if not self._state.base_url:
            raise RuntimeError("FakeWandb is not started")
        return self._state.base_url

    @property
    def api_key(self) -> str:
        """The key of the default user "alice" (40 characters, as the SDK requires)."""
        return api_key_for("alice")

    @property
    def features(self) -> list[str]:
        """The server features advertised by ServerFeaturesQuery; edit the list in place."""
        return self._state.features

    @property
    def network(self) -> NetworkProfile:
        """The network file links cross: ``"loopback"``, ``"cloud"``, ``"far"`` or a profile."""
        return self._state.shaper.profile

    @network.setter
    def network(self, value: str | NetworkProfile) -> None:
        self._state.shaper = Shaper(profile_named(value) if isinstance(value, str) else value)

    @property
    def links(self) -> LinkPolicy:
        """How file links behave (lifetime, expiry answer, redirects); see ``LinkPolicy``."""
        return self._state.links

    @links.setter
    def links(self, value: LinkPolicy) -> None:
        self._state.links = value

    # -- building the world ---------------------------------------------------------------

    def add_org(self, name: str, entity: str) -> None:
        with self._state.lock:
            self._state.world.add_org(name, entity)

    def add_team(self, team: str, org: str) -> None:
        with self._state.lock:
            self._state.world.add_team(team, org)

    def add_user(self, username: str, orgs: Iterable[str] = (), api_key: str | None = None) -> str:
        """Add a user (personal entity ``username``) in ``orgs``; returns the API key."""
        with self._state.lock:
            return self._state.world.add_user(username, orgs, api_key)

    def add_registry(self, org: str, name: str) -> None:
        """A registry such as "Fine-tuned Models" (project "wandb-registry-Fine-tuned Models")."""
        with self._state.lock:
            self._state.world.add_registry(org, name)

    def log_artifact(
        self,
        org: str,
        registry: str,
        collection: str,
        files: Mapping[str, bytes],
        *,
        type: str = "model",
        aliases: Iterable[str] = (),
        digest_algorithm: DigestAlgorithm = "md5",
        refs: Mapping[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        source_entity: str = "myteam",
        source_project: str = "training",
        source_collection: str | None = None,
    ) -> LoggedVersion:
        """Log a source version and link it into the registry collection as its next vN.

        ``latest`` and ``aliases`` move to the new version. ``refs`` adds reference entries
        (``path -> "s3://bucket/key"``) that have an etag-like digest and no bytes.
        ``source_collection`` defaults to ``<collection>-src``, so that code confusing the
        source name with the registry name is caught.
        """
        with self._state.lock:
            world = self._state.world
            portfolio = world.ensure_collection(
                world.registry(org, registry), collection, "ArtifactPortfolio", type
            )
            source = (source_entity, source_project, source_collection or f"{collection}-src")
            return world.log_artifact(
                portfolio, source, files, refs or {}, digest_algorithm, aliases, metadata
            )

    def set_alias(self, org: str, registry: str, collection: str, alias: str, version_index: int) -> None:
        """Move (or create) ``alias`` to ``v{version_index}`` of the registry collection."""
        with self._state.lock:
            self._state.world.portfolio(org, registry, collection).set_alias(alias, version_index)

    def version_count(self, org: str, registry: str, collection: str) -> int:
        """How many versions the registry collection has logged (0 if it does not exist)."""
        with self._state.lock:
            try:
                return self._state.world.portfolio(org, registry, collection).next_index
            except KeyError:
                return 0

    def has_registry(self, org: str, registry: str) -> bool:
        with self._state.lock:
            try:
                self._state.world.registry(org, registry)
            except KeyError:
                return False
            return True

    def set_aliases(self, org: str, registry: str, collection: str, aliases: Mapping[str, int]) -> None:
        """Make ``aliases`` (name -> version index) the collection's named aliases: moved, added, and
        any other removed; ``latest`` keeps following the newest version."""
        with self._state.lock:
            portfolio = self._state.world.portfolio(org, registry, collection)
            for alias in [a for a in portfolio.aliases if a != "latest" and a not in aliases]:
                del portfolio.aliases[alias]
            for alias, index in aliases.items():
                portfolio.set_alias(alias, index)

    def delete_version(self, org: str, registry: str, collection: str, version_index: int) -> None:
        """Remove ``v{version_index}`` from the collection: it and its aliases are "not found" after."""
        with self._state.lock:
            self._state.world.portfolio(org, registry, collection).remove_version(version_index)

    def set_state(self, org: str, registry: str, collection: str, version_index: int, state: ArtifactState) -> None:
        """Set the state of the artifact behind ``v{version_index}``: "DELETED" is a deletion the
        server still answers for (with that state), "PENDING" a version that was never committed."""
        with self._state.lock:
            self._state.world.portfolio(org, registry, collection).versions[version_index].artifact.state = state

    def set_ttl(self, org: str, registry: str, collection: str, version_index: int, seconds: int | None) -> None:
        """Schedule the deletion of the artifact behind ``v{version_index}``, ``seconds`` after it
        was created (W&B's TTL); None removes the TTL."""
        with self._state.lock:
            self._state.world.portfolio(org, registry, collection).versions[version_index].artifact.ttl_seconds = seconds

    def declare_size(self, org: str, registry: str, collection: str, version_index: int, path: str,
                     size: Any) -> None:
        """A lying server: the manifest of ``v{version_index}`` declares ``path`` as ``size`` bytes
        while the bytes served stay as logged. W&B's artifact digest covers only the path:digest
        lines, so the version's digest does not change."""
        with self._state.lock:
            artifact = self._state.world.portfolio(org, registry, collection).versions[version_index].artifact
            artifact.contents[path]["size"] = size
            manifest = json.loads(artifact.manifest)
            manifest["contents"][path]["size"] = size
            artifact.manifest = json.dumps(manifest, indent=2).encode()

    def file_url(self, artifact_id: str, path: str) -> str:
        """The directUrl the server hands out for file ``path`` of a logged artifact."""
        with self._state.lock:
            links = self._state.links
            return links.sign(blob_url(links.base(self.url), self._state.world.artifacts[artifact_id], path))

    # -- observing ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order, faulted ones included."""
        return self._state.log.snapshot()

    def clear_requests(self) -> None:
        self._state.log.clear()

    def operations(self) -> list[str]:
        """The GraphQL operation names received so far, in order."""
        return [r.operation or "<anonymous>" for r in self.requests if r.path == "/graphql"]

    @property
    def unhandled(self) -> list[str]:
        """GraphQL operations the fake did not know (answered 400); a newer SDK shows up here."""
        with self._state.lock:
            return list(self._state.unhandled)

    def inject(self, fault: Fault) -> None:
        """Arm ``fault`` for the next matching requests (see ``Fault``)."""
        self._state.faults.add(fault)

    def release_hung(self) -> None:
        """Let the requests a ``hang`` fault holds go now (their connections are reset); a test
        uses this to hold a client at a known point, then let it carry on (it retries)."""
        self._state.release_hung()

    def clear_faults(self) -> None:
        """Disarm every injected fault (requests already hung stay hung until reset or stop)."""
        self._state.faults.clear()

    def pending_faults(self) -> list[Fault]:
        """Injected faults that have not fired their ``times`` yet."""
        return self._state.faults.pending()
