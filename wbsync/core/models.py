"""Typed, frozen data that flows between the stages (manifest -> lock -> plan -> place).

Nothing here does I/O. Each stage takes these values and returns new ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union

REGISTRY_PREFIX = "wandb-registry-"
Algorithm = Literal["md5", "xxh128"]

# The largest file size wbsync accepts from a server, a mirror or a lock: 2^53 - 1 (8 PiB), the
# largest integer JSON readers (W&B's own manifests included) keep exact. A size above it is
# a lie, and taken as true it would overflow a sparse file's length or a progress total.
MAX_FILE_SIZE = 2**53 - 1


def valid_size(size: object) -> bool:
    """A file size as a listing may declare it: an integer (not a bool), 0 to MAX_FILE_SIZE."""
    return isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_FILE_SIZE
ALGORITHMS: tuple[Algorithm, ...] = ("md5", "xxh128")


@dataclass(frozen=True)
class Reference:
    """A registry artifact reference: [org/]wandb-registry-{registry}/{collection}:{alias|vN}.

    Exactly one of ``alias`` and ``version`` is set (``version`` is ``"vN"``).
    """

    registry: str
    collection: str
    alias: str | None = None
    version: str | None = None
    org: str | None = None

    @property
    def project(self) -> str:
        return REGISTRY_PREFIX + self.registry

    @property
    def selector(self) -> str:
        return self.version if self.version is not None else str(self.alias)

    def full_name(self) -> str:
        """The name as W&B's App shows it under "Full Name" (with the org when known)."""
        prefix = f"{self.org}/" if self.org else ""
        return f"{prefix}{self.project}/{self.collection}:{self.selector}"

    def __str__(self) -> str:
        return self.full_name()


@dataclass(frozen=True)
class Entry:
    """One validated manifest entry, defaults applied."""

    name: str
    reference: Reference
    path: str  # POSIX, relative to the manifest's folder, normalized, inside it
    type: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    entity: str | None = None
    line: int = 0  # line of the entry in artifacts.yaml, for messages

    def normalized(self) -> dict[str, object]:
        """What the lock pins: a change here makes the entry stale. The line is not part of it."""
        ref = self.reference
        return {
            "registry": ref.registry,
            "collection": ref.collection,
            "alias": ref.alias,
            "version": ref.version,
            "org": ref.org,
            "entity": self.entity,
            "path": self.path,
            "type": self.type,
            "include": list(self.include),
            "exclude": list(self.exclude),
        }

    def digest(self) -> str:
        text = json.dumps(self.normalized(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """artifacts.yaml, validated. ``root`` is the manifest's folder (absolute)."""

    file: str  # path of artifacts.yaml as given, for messages
    root: str
    entries: dict[str, Entry]
    source: str | None = None


@dataclass(frozen=True, slots=True)  # slots: a sync may hold many of them at once
class FileRecord:
    """One file of a locked artifact: path inside the artifact, size, base64 digest."""

    path: str
    size: int
    digest: str  # base64, as W&B stores it
    algorithm: Algorithm = "md5"


class FileList(Protocol):
    """A large entry's files, kept outside the lock (``wbsync.store.listing.StoredFiles``): counted
    and summed by the lock, streamed in path order on iteration."""

    count: int
    bytes: int

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[FileRecord]: ...


@dataclass(frozen=True)
class LockedArtifact:
    name: str
    entry_digest: str
    requested: str
    resolved: str  # {org entity}/wandb-registry-{registry}/{collection}:vN
    version: str
    type: str
    digest: str  # W&B's artifact (manifest) digest
    path: str
    # Small entries: the files, inline in the lock. Large ones: their stored listing (read it
    # with wbsync.store.listing.iter_files, which streams; see that module).
    files: Union[tuple[FileRecord, ...], FileList] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        stored = getattr(self.files, "bytes", None)
        return stored if stored is not None else sum(f.size for f in self.files)


@dataclass(frozen=True)
class Lock:
    artifacts: dict[str, LockedArtifact]


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file as a Source lists it: the lock's record plus anything the source needs to fetch it."""

    record: FileRecord
    ref: str | None = None  # set for reference entries (s3://...), which wbsync refuses


@dataclass(frozen=True)
class Resolved:
    """What a Source says a reference points to right now."""

    resolved: str
    version: str
    type: str
    digest: str
    files: Iterable[RemoteFile]  # every file, unfiltered; iterable more than once (sources stream it)


VersionState = Literal["committed", "pending", "deleted", "missing"]


@dataclass(frozen=True)
class VersionStatus:
    """What a Source says about a locked version today: whether it is still there, committed,
    and when (if ever) it is scheduled for deletion."""

    state: VersionState  # "missing": deleted for good, or unlinked from the collection
    digest: str | None = None  # W&B's artifact digest, when the version is there
    expires_at: str | None = None  # ISO 8601 UTC time of a scheduled deletion (TTL), if any


def vanished_reason(status: VersionStatus, old: LockedArtifact) -> tuple[str, str] | None:
    """(state, reason) when the locked version is no longer usable as locked, else None."""
    if status.state == "missing":
        return "missing", "not found (deleted, or unlinked from its collection)"
    if status.state == "deleted":
        return "deleted", "deleted (its state is DELETED)"
    if status.state == "pending":
        return "pending", "not committed (its state is PENDING)"
    if status.digest is not None and status.digest != old.digest:
        return "changed", f"holding other content (artifact digest {status.digest}; the lock has {old.digest})"
    return None


@dataclass(frozen=True)
class LineagePlan:
    """The run to record: where, under which id, with which tags and inputs."""

    project: str
    entity: str | None
    job_type: str
    run_id: str
    commit: str | None
    lock_sha256: str
    references: dict[str, str]  # entry name -> pinned reference
    digests: dict[str, str]  # entry name -> W&B artifact digest, to check what use_artifact got
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
