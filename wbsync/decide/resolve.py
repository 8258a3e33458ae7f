"""Manifest + old lock + source -> new lock. Keeps every pin whose entry did not change."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wbsync.core.errors import IntegrityError
from wbsync.core.models import Entry, FileRecord, Lock, LockedArtifact, Manifest, RemoteFile, Resolved
from wbsync.core.paths import PathCheck, selected
from wbsync.decide.agreement import dropped_names, stale_entries
from wbsync.sources import RESOLVE_JOBS, Source
from wbsync.store import listing
from wbsync.store.listing import StoredFiles, iter_files


@dataclass(frozen=True)
class PinChange:
    """One entry whose pin the lock run added, moved or dropped."""

    name: str
    selector: str  # the alias or version the manifest asks for
    old: LockedArtifact | None
    new: LockedArtifact | None

    @property
    def delta(self) -> "FileDelta":
        return FileDelta.between(self.old, self.new)


@dataclass(frozen=True)
class FileDelta:
    added: int
    removed: int
    changed: int
    bytes: int  # new size minus old size

    @classmethod
    def between(cls, old: LockedArtifact | None, new: LockedArtifact | None) -> "FileDelta":
        """Counted by walking both sorted file lists side by side: memory stays flat in the file
        count. An old stored listing this machine never fetched counts as not comparable:
        every new file is then "added"."""
        size = (new.size if new else 0) - (old.size if old else 0)
        added = removed = changed = 0
        for before, after in paired_files(old, new):
            if before is None:
                added += 1
            elif after is None:
                removed += 1
            elif before != after:
                changed += 1
        return cls(added, removed, changed, size)


def paired_files(old: LockedArtifact | None, new: LockedArtifact | None
                 ) -> Iterator[tuple[FileRecord | None, FileRecord | None]]:
    """(old, new) per path, in path order; None on the side that does not hold the path."""
    left = _files_or_nothing(old)
    right = _files_or_nothing(new)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.path < b.path):
            yield a, None
            a = next(left, None)
        elif a is None or b.path < a.path:
            yield None, b
            b = next(right, None)
        else:
            yield a, b
            a, b = next(left, None), next(right, None)


def _files_or_nothing(artifact: LockedArtifact | None) -> Iterator[FileRecord]:
    if artifact is None:
        return iter(())
    if isinstance(artifact.files, StoredFiles) and not listing.has_listing(artifact.files.digest):
        return iter(())
    return iter_files(artifact)


def stale_names(manifest: Manifest, lock: Lock | None) -> list[str]:
    """Entries that are new or that the lock does not pin as the manifest asks (wbsync.decide.agreement)."""
    return list(stale_entries(manifest, lock))


def lock_manifest(manifest: Manifest, old: Lock | None, source: Source,
                  upgrade: frozenset[str] = frozenset()) -> tuple[Lock, list[PinChange]]:
    """Resolve what is stale or named in ``upgrade``; keep every other pin as it is."""
    todo = sorted(set(stale_names(manifest, old)) | (upgrade & set(manifest.entries)))
    resolved = _resolve_all([manifest.entries[n] for n in todo], source)
    artifacts: dict[str, LockedArtifact] = {}
    changes: list[PinChange] = []
    for name, entry in manifest.entries.items():
        before = old.artifacts.get(name) if old else None
        after = resolved[name] if name in resolved else before
        assert after is not None
        artifacts[name] = after
        if before is None or before.version != after.version or before.digest != after.digest or before.files != after.files:
            changes.append(PinChange(name, entry.reference.selector, before, after))
    for name in dropped_names(manifest, old):
        changes.append(PinChange(name, "", old.artifacts[name] if old else None, None))
    return Lock(artifacts), changes


def _resolve_all(entries: list[Entry], source: Source) -> dict[str, LockedArtifact]:
    """Resolution is latency-bound (several GraphQL round trips each): run entries concurrently."""
    if not entries:
        return {}
    with ThreadPoolExecutor(min(RESOLVE_JOBS, len(entries)), thread_name_prefix="wbsync-resolve") as pool:
        results = list(pool.map(lambda e: to_locked(e, source.resolve(e)), entries))
    return {a.name: a for a in results}


def to_locked(entry: Entry, res: Resolved) -> LockedArtifact:
    """One pass over the source's list (which may hold a million files): filter, refuse
    references and unsafe paths, count; keep the records only while they fit inline."""
    limit = listing.inline_max()
    kept: list[FileRecord] = []
    count = total = 0
    paths = PathCheck(entry.name, entry.path)
    for f in res.files:
        path = f.record.path
        if not selected(entry.include, entry.exclude, path):
            continue
        if f.ref is not None:
            _refuse_reference(entry, res, f)
        paths.add(path)
        count += 1
        total += f.record.size
        if count <= limit:
            kept.append(f.record)
    paths.finish()
    files: tuple[FileRecord, ...] | StoredFiles
    if count > limit:
        # Too many to review in the lock: it keeps the digest, and the list goes to the store.
        listing.write_listing(res.files, res.digest, f"{entry.name} ({res.resolved})")
        files = StoredFiles(entry.name, res.resolved, res.digest, entry.include, entry.exclude, count, total,
                            listing.sizes_digest(res.digest))
    else:
        files = tuple(sorted(kept, key=lambda r: r.path))
    return LockedArtifact(
        name=entry.name,
        entry_digest=entry.digest(),
        requested=entry.reference.full_name(),
        resolved=res.resolved,
        version=res.version,
        type=res.type,
        digest=res.digest,
        path=entry.path,
        files=files,
    )


def _refuse_reference(entry: Entry, res: Resolved, f: RemoteFile) -> None:
    # Reference entries keep their bytes outside W&B (s3://, gs://, https://) and their
    # digest is an ETag, not a content hash: wbsync could not verify them, so it refuses.
    raise IntegrityError(
        f"{entry.name}: file {f.record.path!r} of {res.resolved} is a reference to {f.ref}, "
        "stored outside W&B. wbsync only syncs files stored in W&B, whose bytes it can verify. "
        f"Leave it out with `exclude: [{f.record.path!r}]` in the entry, or log the file into the artifact."
    )
