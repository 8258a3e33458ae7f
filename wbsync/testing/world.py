"""The in-memory W&B world the fake server answers from.

Orgs, entities, users, projects, collections (source sequences and registry portfolios),
artifact versions with their bytes, manifests and digests. Pure data plus bookkeeping; it
knows nothing about HTTP or GraphQL (see ``graphql.py`` for the response shapes).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import xxhash

REGISTRY_PREFIX = "wandb-registry-"
DigestAlgorithm = Literal["md5", "xxh128"]
CollectionKind = Literal["ArtifactSequence", "ArtifactPortfolio"]
ArtifactState = Literal["COMMITTED", "PENDING", "DELETED"]
_VERSION_ALIAS = re.compile(r"v(\d+)")
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def gql_id(kind: str, key: int | str) -> str:
    """A W&B-style node id: base64 of ``Kind:key`` (``entry.ref_url()`` assumes base64 ids)."""
    return base64.b64encode(f"{kind}:{key}".encode()).decode()


def api_key_for(username: str) -> str:
    """A deterministic 40-hex-character key, so a reset world keeps the same credentials."""
    return hashlib.sha1(f"fake-wandb:{username}".encode()).hexdigest()


def b64_digest(data: bytes, algorithm: DigestAlgorithm) -> str:
    """The per-file digest W&B keeps in manifests: base64 of md5 or of xxh3-128."""
    raw = hashlib.md5(data).digest() if algorithm == "md5" else xxhash.xxh128(data).digest()
    return base64.b64encode(raw).decode()


def manifest_digest(contents: Mapping[str, Mapping[str, Any]], algorithm: DigestAlgorithm) -> str:
    """The artifact digest the SDK recomputes from a loaded manifest (protocol §3.2)."""
    hasher = hashlib.md5() if algorithm == "md5" else xxhash.xxh128()
    hasher.update(b"wandb-artifact-manifest-v1\n")
    for path in sorted(contents):
        hasher.update(f"{path}:{contents[path]['digest']}\n".encode())
    return hasher.hexdigest()


@dataclass
class Org:
    name: str  # display name, e.g. "acme"
    entity: str  # org entity, e.g. "acme-org"


@dataclass
class User:
    username: str
    orgs: list[str]
    api_key: str


@dataclass
class Project:
    entity: str
    name: str
    id: str
    internal_id: str
    collections: dict[str, Collection] = field(default_factory=dict)


@dataclass
class Artifact:
    """A logged (source) artifact version; registry versions link to it."""

    id: str
    sequence: Collection
    version_index: int
    type: str
    algorithm: DigestAlgorithm
    contents: dict[str, dict[str, Any]]  # manifest "contents", path -> entry
    blobs: dict[str, bytes]  # stored files only; reference entries have no bytes
    manifest: bytes
    digest: str
    metadata: dict[str, Any] | None
    created_at: datetime
    memberships: list[Membership] = field(default_factory=list)
    state: ArtifactState = "COMMITTED"
    ttl_seconds: int | None = None  # a TTL: W&B deletes the version this long after created_at
    _sorted: tuple[int, list[str]] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.blobs.values())

    def stored_paths(self) -> list[str]:
        """The stored files' paths, sorted once (a million-file artifact is paged 1,000 at a time)."""
        if self._sorted is None or self._sorted[0] != len(self.blobs):
            self._sorted = (len(self.blobs), sorted(self.blobs))
        return self._sorted[1]


@dataclass
class Membership:
    """One version of a collection: ``collection:v{index}`` points at ``artifact``."""

    id: str
    collection: Collection
    index: int
    artifact: Artifact
    created_at: datetime

    @property
    def version(self) -> str:
        return f"v{self.index}"

    def aliases(self) -> list[str]:
        """``vN`` first, then the named aliases pointing here (the SDK needs exactly one vN)."""
        named = sorted(a for a, i in self.collection.aliases.items() if i == self.index)
        return [self.version, *named]


@dataclass
class Collection:
    kind: CollectionKind
    id: str
    name: str
    type: str
    project: Project
    created_at: datetime
    versions: dict[int, Membership] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)  # named aliases only, never vN
    next_index: int = 0

    def resolve(self, selector: str) -> Membership | None:
        """``vN`` or a named alias; an empty selector means ``latest`` (the SDK sends ``coll``)."""
        selector = selector or "latest"
        if match := _VERSION_ALIAS.fullmatch(selector):
            return self.versions.get(int(match.group(1)))
        index = self.aliases.get(selector)
        return None if index is None else self.versions.get(index)

    def set_alias(self, alias: str, index: int) -> None:
        if _VERSION_ALIAS.fullmatch(alias):
            raise ValueError(f"{alias!r} is a version, not an alias")
        if index not in self.versions:
            raise KeyError(f"{self.name} has no version v{index}")
        self.aliases[alias] = index

    def remove_version(self, index: int) -> Membership:
        """Unlink ``v{index}``; its aliases go with it and ``latest`` falls back to the newest left."""
        membership = self.versions.pop(index)
        membership.artifact.memberships.remove(membership)
        self.aliases = {a: i for a, i in self.aliases.items() if i != index}
        if self.versions:
            self.aliases["latest"] = max(self.versions)
        return membership


@dataclass(frozen=True)
class LoggedVersion:
    """What ``FakeWandb.log_artifact`` made, for tests to assert against."""

    version: str  # "v0", "v1", ... in the registry collection
    index: int
    artifact_id: str
    digest: str  # the W&B manifest digest (md5 or xxh128 hex)
    files: dict[str, tuple[int, str]]  # stored files: path -> (size, base64 digest)
    source_version: str
    manifest: dict[str, Any]
    created_at: datetime | None = None  # the source artifact's creation (a TTL counts from it)


class World:
    """Everything the fake server knows. Not thread-safe by itself: the server holds a lock."""

    def __init__(self) -> None:
        self.orgs: dict[str, Org] = {}
        self.team_orgs: dict[str, str] = {}  # team entity -> org display name
        self.users: dict[str, User] = {}
        self.projects: dict[tuple[str, str], Project] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.collections_by_id: dict[str, Collection] = {}
        self.blobs_by_hex: dict[str, bytes] = {}  # for the /artifactsV2 fallback URL
        self._ids = itertools.count(1)
        self._ticks = itertools.count(0)

    def next_id(self, kind: str) -> str:
        return gql_id(kind, next(self._ids))

    def now(self) -> datetime:
        """A deterministic clock: each event happens one minute after the previous one."""
        return _EPOCH + timedelta(minutes=next(self._ticks))

    # -- orgs, entities, users ------------------------------------------------------------

    def org(self, name_or_entity: str) -> Org:
        for org in self.orgs.values():
            if name_or_entity in (org.name, org.entity):
                return org
        raise KeyError(f"no org {name_or_entity!r}")

    def add_org(self, name: str, entity: str) -> Org:
        self.orgs[name] = Org(name, entity)
        return self.orgs[name]

    def add_team(self, team: str, org: str) -> None:
        self.team_orgs[team] = self.org(org).name

    def add_user(self, username: str, orgs: Iterable[str], api_key: str | None) -> str:
        key = api_key or api_key_for(username)
        self.users[username] = User(username, [self.org(o).name for o in orgs], key)
        return key

    def user_by_key(self, api_key: str) -> User | None:
        return next((u for u in self.users.values() if u.api_key == api_key), None)

    def orgs_of_entity(self, entity: str) -> tuple[Org | None, list[Org] | None]:
        """(team's org, None) for a team, (None, user's orgs) for a user, (None, None) if unknown."""
        if entity in self.team_orgs:
            return self.orgs[self.team_orgs[entity]], None
        if entity in self.users:
            return None, [self.orgs[o] for o in self.users[entity].orgs]
        return None, None

    def teams_of(self, user: User) -> list[str]:
        return sorted(t for t, org in self.team_orgs.items() if org in user.orgs)

    # -- projects and collections ---------------------------------------------------------

    def project(self, entity: str, name: str) -> Project | None:
        return self.projects.get((entity, name))

    def ensure_project(self, entity: str, name: str) -> Project:
        if (entity, name) not in self.projects:
            number = next(self._ids)
            self.projects[entity, name] = Project(
                entity, name, gql_id("Project", number), gql_id("ProjectInternalId", number)
            )
        return self.projects[entity, name]

    def add_registry(self, org: str, name: str) -> Project:
        return self.ensure_project(self.org(org).entity, REGISTRY_PREFIX + name)

    def registry(self, org: str, name: str) -> Project:
        project = self.project(self.org(org).entity, REGISTRY_PREFIX + name)
        if project is None:
            raise KeyError(f"org {org!r} has no registry {name!r}")
        return project

    def portfolio(self, org: str, registry: str, collection: str) -> Collection:
        return self.registry(org, registry).collections[collection]

    def ensure_collection(self, project: Project, name: str, kind: CollectionKind, type_: str) -> Collection:
        existing = project.collections.get(name)
        if existing is not None:
            if existing.type != type_:
                raise ValueError(f"collection {name!r} holds {existing.type!r}, not {type_!r}")
            return existing
        collection = Collection(kind, self.next_id(kind), name, type_, project, self.now())
        project.collections[name] = collection
        self.collections_by_id[collection.id] = collection
        return collection

    def link(self, collection: Collection, artifact: Artifact, aliases: Iterable[str]) -> Membership:
        """Add ``artifact`` as the collection's next version; ``latest`` and ``aliases`` move to it."""
        index = collection.next_index
        collection.next_index += 1
        membership = Membership(
            self.next_id("ArtifactCollectionMembership"), collection, index, artifact, self.now()
        )
        collection.versions[index] = membership
        artifact.memberships.append(membership)
        for alias in ("latest", *aliases):
            collection.set_alias(alias, index)
        return membership

    # -- artifacts ------------------------------------------------------------------------

    def create_artifact(
        self,
        sequence: Collection,
        files: Mapping[str, bytes],
        refs: Mapping[str, str],
        algorithm: DigestAlgorithm,
        metadata: dict[str, Any] | None,
    ) -> Artifact:
        """A new source version in ``sequence`` (linked there as its next vN)."""
        artifact_id = self.next_id("Artifact")
        contents = {path: _stored_entry(data, algorithm, artifact_id) for path, data in files.items()}
        contents.update({path: _reference_entry(uri) for path, uri in refs.items()})
        manifest = {
            "version": 1,
            "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": contents,
        }
        artifact = Artifact(
            id=artifact_id,
            sequence=sequence,
            version_index=sequence.next_index,
            type=sequence.type,
            algorithm=algorithm,
            contents=contents,
            blobs=dict(files),
            manifest=json.dumps(manifest, indent=2).encode(),
            digest=manifest_digest(contents, algorithm),
            metadata=metadata,
            created_at=self.now(),
        )
        self.artifacts[artifact_id] = artifact
        for path, data in files.items():
            self.blobs_by_hex[base64.b64decode(contents[path]["digest"]).hex()] = data
        self.link(sequence, artifact, ())
        return artifact

    def log_artifact(
        self,
        portfolio: Collection,
        source: tuple[str, str, str],
        files: Mapping[str, bytes],
        refs: Mapping[str, str],
        algorithm: DigestAlgorithm,
        aliases: Iterable[str],
        metadata: dict[str, Any] | None,
    ) -> LoggedVersion:
        """Log a source version in ``source`` = (entity, project, collection), link it to ``portfolio``."""
        entity, project, name = source
        sequence = self.ensure_collection(
            self.ensure_project(entity, project), name, "ArtifactSequence", portfolio.type
        )
        artifact = self.create_artifact(sequence, files, refs, algorithm, metadata)
        membership = self.link(portfolio, artifact, aliases)
        return LoggedVersion(
            version=membership.version,
            index=membership.index,
            artifact_id=artifact.id,
            digest=artifact.digest,
            files={p: (len(d), artifact.contents[p]["digest"]) for p, d in files.items()},
            source_version=f"v{artifact.version_index}",
            manifest=json.loads(artifact.manifest),
            created_at=artifact.created_at,
        )


def default_world() -> World:
    """Org "acme" (entity "acme-org") with team "myteam", user "alice", registries model and dataset."""
    world = World()
    world.add_org("acme", "acme-org")
    world.add_team("myteam", "acme")
    world.add_user("alice", ["acme"], None)
    for registry in ("model", "dataset"):
        world.add_registry("acme", registry)
    return world


def _stored_entry(data: bytes, algorithm: DigestAlgorithm, artifact_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "digest": b64_digest(data, algorithm),
        "size": len(data),
        "birthArtifactID": artifact_id,
    }
    if algorithm == "xxh128":  # only non-md5 entries are tagged; untagged means md5
        entry["extra"] = {"alg": "XXH128"}
    return entry


def _reference_entry(uri: str) -> dict[str, Any]:
    """A reference entry (e.g. ``s3://bucket/key``): an etag-like digest and no stored bytes."""
    etag = hashlib.md5(uri.encode()).hexdigest()
    return {"digest": etag, "ref": uri, "extra": {"etag": f'"{etag}"'}}
