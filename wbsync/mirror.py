"""`wbsync mirror DEST`: copy every locked version into a self-describing mirror (docs/mirror.md).

The mirror keeps what W&B knows: organization, registry, collection, each version as W&B's
manifest (version 1) with its type and digest, the aliases the lock followed, and the bytes
by digest. It is written so that a reader never meets a name before what it names:

1. blobs, verified: from the content store, fetched into it from the source when missing;
2. version files;
3. each collection's alias index;
4. ``wbsync-mirror.json``, the organization index.

Each file is written atomically where the back end allows it (a folder: temp file + rename;
an object store: one PUT). A failed run writes no version and no alias; the blobs it copied
stay, and the next run skips them, like every blob already present.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbsync.core.digests import hash_file
from wbsync.core.errors import IntegrityError, NotFoundError, WbsyncError
from wbsync.core.models import Entry, FileRecord, Lock, LockedArtifact, Resolved
from wbsync.core.references import parse_reference
from wbsync.decide.plan import digest_key
from wbsync.net.fetch import Fetcher, FetchJob
from wbsync.repo.locked import locked_entries
from wbsync.repo.project import Project, project_source
from wbsync.sources import RESOLVE_JOBS, Source
from wbsync.sources.listings import ensure_listings
from wbsync.sources.mirror import (
    ALIASES,
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    Location,
    blob_rel,
    check_aliases,
    collection_rel,
    json_bytes,
    load_index,
    parse_version_doc,
    read_json,
    split_resolved,
    version_doc,
    version_rel,
)
from wbsync.store.blobs import Store, default_store_dir
from wbsync.store.home import writable_store
from wbsync.store.listing import iter_files


@dataclass
class MirrorResult:
    dest: str
    versions: list[str] = field(default_factory=list)  # resolved names, sorted
    copied: int = 0  # blobs written to the mirror
    copied_bytes: int = 0
    present: int = 0  # blobs the mirror had already
    written: list[str] = field(default_factory=list)  # mirror files written, in order


def run_mirror(project: Project, dest: str, names: tuple[str, ...] = (), *, source: Source | None = None,
               jobs: int = 16, progress: Callable[[int], None] | None = None,
               on_copy_start: Callable[[int, int], None] | None = None) -> MirrorResult:
    """Mirror the locked versions (all, or NAMES) to ``dest``, a folder or an fsspec URL."""
    entries = locked_entries(project, names)
    artifacts = list(entries.values())
    source = source or project_source(project)
    ensure_listings(Lock(entries), source)  # large entries: their file lists, from the source
    writer = _Writer(Location(dest), writable_store(), source, jobs)
    writer.progress, writer.on_copy_start = progress or (lambda n: None), on_copy_start
    return writer.run(artifacts, _entities(project, artifacts))


def _entities(project: Project, artifacts: list[LockedArtifact]) -> dict[str, str]:
    """Team entity -> org entity, for entries locked with `entity:` (so they resolve the same
    way against the mirror). Best effort: the lock alone is enough to mirror."""
    try:
        manifest = project.manifest()
    except WbsyncError:
        return {}
    found = {}
    for a in artifacts:
        entry = manifest.entries.get(a.name)
        if entry is not None and entry.entity and entry.digest() == a.entry_digest:
            found[entry.entity] = split_resolved(a.resolved)[0]
    return found


class _Writer:
    def __init__(self, target: Location, store: Store, source: Source, jobs: int) -> None:
        self.target, self.store, self.source, self.jobs = target, store, source, max(1, jobs)
        self.progress: Callable[[int], None] = lambda n: None
        self.on_copy_start: Callable[[int, int], None] | None = None
        self._lock = threading.Lock()

    def run(self, artifacts: list[LockedArtifact], entities: dict[str, str]) -> MirrorResult:
        result = MirrorResult(self.target.spec)
        index = self._held_index()
        versions = self._versions(artifacts)  # first: a mismatch with the lock stops before any write
        self._blobs(artifacts, result)
        for resolved, res in sorted(versions.items()):
            self._write(version_rel(_folder(resolved), res.version), json_bytes(version_doc(res)), result)
        for folder, aliases in sorted(_aliases(artifacts).items()):
            self._write(f"{folder}/{ALIASES}", json_bytes(self._merged_aliases(folder, aliases)), result)
        self._write(INDEX, json_bytes(_index(index, artifacts, entities)), result)
        result.versions = sorted(versions)
        return result

    def _held_index(self) -> dict[str, Any] | None:
        if self.target.read(INDEX) is None:
            return None
        try:
            return load_index(self.target)  # a newer format raises: never overwrite it
        except IntegrityError:
            return None  # damaged: written again from this lock

    # -- versions: from the mirror when it holds them already, else from the source --

    def _versions(self, artifacts: list[LockedArtifact]) -> dict[str, Resolved]:
        unique = {a.resolved: a for a in artifacts}
        with ThreadPoolExecutor(max(1, min(RESOLVE_JOBS, len(unique)))) as pool:
            return dict(zip(unique, pool.map(self._version, unique.values())))

    def _version(self, artifact: LockedArtifact) -> Resolved:
        rel = version_rel(_folder(artifact.resolved), artifact.version)
        try:
            doc = read_json(self.target, rel)
            held = parse_version_doc(doc, self.target.url(rel)) if doc is not None else None
        except IntegrityError:
            held = None  # damaged: write it again from the source
        if held is not None and _matches(artifact, held):
            return held
        res = self.source.resolve(_pinned(artifact))
        if not _matches(artifact, res):
            raise IntegrityError(
                f"{artifact.name}: the {self.source.description} answers {res.resolved} with artifact digest "
                f"{res.digest}, but the lock records {artifact.resolved} with digest {artifact.digest}. "
                "Nothing was mirrored. Re-lock the entry (`wbsync lock --upgrade "
                f"{artifact.name}`) or mirror from the source it was locked against (`--source`).")
        return res

    # -- blobs: what the mirror lacks, through the verified content store --

    def _blobs(self, artifacts: list[LockedArtifact], result: MirrorResult) -> None:
        wanted = {digest_key(f): (a, f) for a in artifacts for f in iter_files(a)}
        with ThreadPoolExecutor(self.jobs) as pool:
            held = list(pool.map(lambda af: self.target.size(blob_rel(af[1])) == af[1].size, wanted.values()))
        missing = [af for af, ok in zip(wanted.values(), held) if not ok]
        result.present = len(wanted) - len(missing)
        if not missing:
            return
        if self.on_copy_start:
            self.on_copy_start(len(missing), sum(f.size for _, f in missing))
        with self.store.shared():  # a prune cannot delete a blob between fetch and copy
            failure = self._fetch([af for af in missing if not self.store.has(af[1])])
            arrived = [af for af in missing if self.store.has(af[1])]  # copied even after a failure
            with ThreadPoolExecutor(self.jobs) as pool:
                for record in pool.map(lambda af: self._copy(af[1], result), arrived):
                    self.progress(record.size)
        if failure is not None:
            raise failure

    def _fetch(self, needed: list[tuple[LockedArtifact, FileRecord]]) -> WbsyncError | None:
        """Fetch into the store; returns the first failure (the others' bytes are kept)."""
        jobs: list[FetchJob] = []
        by_artifact: dict[str, list[FileRecord]] = {}
        artifacts = {a.name: a for a, _ in needed}
        for a, f in needed:
            by_artifact.setdefault(a.name, []).append(f)
        for name, records in by_artifact.items():
            urls = self.source.file_urls(artifacts[name])
            jobs.extend(FetchJob(name, f, urls.get(f.path, "")) for f in records)
        for job in jobs:
            if not job.url:
                raise NotFoundError(f"{job.artifact}: the {self.source.description} does not list "
                                     f"{job.record.path!r} for {artifacts[job.artifact].resolved}; nothing was mirrored.")
        failures = Fetcher(self.store, self.jobs, opener=self.source.open_file,
                           renew=lambda name, paths: self.source.file_urls(artifacts[name], paths)).fetch_all(jobs)
        return next(iter(failures.values()), None)

    def _copy(self, record: FileRecord, result: MirrorResult) -> FileRecord:
        blob = self.store.blob_path(record)
        # The store checked these bytes when they entered; check again before they serve
        # every reader of the mirror (bit rot, a hardlinked blob made writable and edited).
        if blob.stat().st_size != record.size or hash_file(blob, record.algorithm) != record.digest:
            raise IntegrityError(f"{record.path}: the content store's copy at {blob} is damaged (its digest is "
                                 f"not {record.digest}). Delete that file and run `wbsync mirror` again.")
        rel = blob_rel(record)
        self.target.put(rel, Path(blob))
        with self._lock:
            result.written.append(rel)
            result.copied += 1
            result.copied_bytes += record.size
        return record

    # -- indexes --

    def _merged_aliases(self, folder: str, aliases: dict[str, str]) -> dict[str, str]:
        rel = f"{folder}/{ALIASES}"
        try:
            doc = read_json(self.target, rel)
            held = check_aliases(doc, self.target.url(rel)) if doc is not None else {}
        except IntegrityError:
            held = {}
        return {**held, **aliases}

    def _write(self, rel: str, data: bytes, result: MirrorResult) -> None:
        if self.target.read(rel) == data:
            return
        self.target.write(rel, data)
        result.written.append(rel)


def _folder(resolved: str) -> str:
    org, project, collection, _ = split_resolved(resolved)
    return collection_rel(org, project, collection)


def _pinned(artifact: LockedArtifact) -> Entry:
    """An entry for exactly the locked version, by its resolved name (org entity and vN)."""
    return Entry(name=artifact.name, reference=parse_reference(artifact.resolved), path=artifact.path)


def _matches(artifact: LockedArtifact, res: Resolved) -> bool:
    listed = {f.record for f in res.files if f.ref is None}
    return ((res.resolved, res.version, res.digest) == (artifact.resolved, artifact.version, artifact.digest)
            and all(f in listed for f in iter_files(artifact)))


def _aliases(artifacts: list[LockedArtifact]) -> dict[str, dict[str, str]]:
    """Collection folder -> {alias: vN} as the lock followed them. Every mirrored collection gets
    an index, maybe empty. Two entries that pinned one alias to two versions: the newer wins."""
    found: dict[str, dict[str, str]] = {}
    for a in sorted(artifacts, key=lambda a: int(a.version[1:])):
        aliases = found.setdefault(_folder(a.resolved), {})
        alias = parse_reference(a.requested).alias
        if alias is not None:
            aliases[alias] = a.version
    return found


def _index(held: dict[str, Any] | None, artifacts: list[LockedArtifact], entities: dict[str, str]) -> dict[str, Any]:
    """The organization index: every name a lock used for an org (display or entity name), and
    team entities, mapped to the org entity; the default org when the mirror holds one org."""
    orgs = dict(held["orgs"]) if held else {}
    for a in artifacts:
        entity = split_resolved(a.resolved)[0]
        orgs[entity] = entity
        requested_org = parse_reference(a.requested).org
        if requested_org is not None:
            orgs[requested_org] = entity
    held_orgs = sorted(set(orgs.values()))
    default = held["default_org"] if held else None
    if len(held_orgs) == 1:
        default = held_orgs[0]
    elif default not in held_orgs:
        default = None  # several orgs: references must name one (or set default_org by hand)
    return {"format": FORMAT, "version": FORMAT_VERSION, "orgs": orgs,
            "entities": {**(held["entities"] if held else {}), **entities}, "default_org": default}
