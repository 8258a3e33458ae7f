"""Manifest + old lock + source -> new lock. Keeps every pin whose entry did not change."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wbsync import listing
from wbsync.errors import IntegrityError, UnsafePathError
from wbsync.listing import StoredFiles, iter_files
from wbsync.models import Entry, FileRecord, Lock, LockedArtifact, Manifest, RemoteFile, Resolved
from wbsync.reserved import exclude_glob, reserved_segment
from wbsync.sources import Source

RESOLVE_JOBS = 8
#: Deepest artifact file path or entry folder wbsync accepts, in folders: a path 1,000 folders
#: deep is an attack on the tools that walk it (Python's own recursion limit among them).
MAX_DEPTH = 64


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
    """Entries that are new or that the lock does not pin as the manifest asks (wbsync.agreement)."""
    from wbsync.agreement import stale_entries

    return list(stale_entries(manifest, lock))


def dropped_names(manifest: Manifest, lock: Lock | None) -> list[str]:
    from wbsync.agreement import dropped_names as dropped

    return dropped(manifest, lock)


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
    kept = [f for f in res.files if selected(entry, f.record.path)]
    _refuse_references(entry, res, kept)
    files = tuple(sorted((f.record for f in kept), key=lambda r: r.path))
    check_paths(entry.name, files, entry.path)
    if len(files) > listing.inline_max():
        # Too many to review in the lock: it keeps the digest, and the list goes to the store.
        listing.write_listing(res.files, res.digest, f"{entry.name} ({res.resolved})")
        stored: tuple[FileRecord, ...] | StoredFiles = StoredFiles(
            entry.name, res.resolved, res.digest, entry.include, entry.exclude, len(files), sum(f.size for f in files))
    else:
        stored = files
    return LockedArtifact(
        name=entry.name,
        entry_digest=entry.digest(),
        requested=entry.reference.full_name(),
        resolved=res.resolved,
        version=res.version,
        type=res.type,
        digest=res.digest,
        path=entry.path,
        files=stored,
    )


def _refuse_references(entry: Entry, res: Resolved, kept: Iterable[RemoteFile]) -> None:
    for f in kept:
        if f.ref is not None:
            # Reference entries keep their bytes outside W&B (s3://, gs://, https://) and their
            # digest is an ETag, not a content hash: wbsync could not verify them, so it refuses.
            raise IntegrityError(
                f"{entry.name}: file {f.record.path!r} of {res.resolved} is a reference to {f.ref}, "
                "stored outside W&B. wbsync only syncs files stored in W&B, whose bytes it can verify. "
                f"Leave it out with `exclude: [{f.record.path!r}]` in the entry, or log the file into the artifact."
            )


def selected(entry: Entry, path: str) -> bool:
    """include/exclude are fnmatch globs over the artifact path (``*`` also crosses ``/``)."""
    return listing.selected(entry.include, entry.exclude, path)


def check_paths(name: str, files: tuple[FileRecord, ...], base: str = "") -> None:
    """Refuse artifact file lists that could write outside the destination, into git's or
    wbsync's folders, or collide on disk, before anything is written (the lock is the first
    thing written). ``base`` is the entry's folder: the two together must fit a path."""
    seen: dict[str, str] = {}
    folders: set[str] = set()
    for f in files:
        problem = unsafe_reason(f.path) or too_long_with(base, f.path)
        if problem:
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {f.path!r}, which {problem}. wbsync refuses "
                f"to write it; nothing was written. Leave it out with `exclude: [{json.dumps(f.path)}]` in "
                "the entry, and report the artifact to its owner."
            )
        reserved = reserved_segment(f.path)
        if reserved:
            prefix, what = reserved
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {f.path!r}, inside {prefix!r}, which filesystems "
                f"treat as {what}: {_RESERVED_WHY[what]}. wbsync refuses it; nothing was written. Leave "
                f"it out with `exclude: [{json.dumps(exclude_glob(f.path, prefix))}]` in the entry, and "
                "report the artifact to its owner."
            )
        folded = f.path.casefold()
        if folded in seen:
            raise UnsafePathError(
                f"{name}: the artifact lists {seen[folded]!r} and {f.path!r}, which differ only by case "
                "and would overwrite each other on case-insensitive filesystems (macOS, Windows). "
                "wbsync refuses it; nothing was written."
            )
        seen[folded] = f.path
        parts = f.path.split("/")
        folders.update("/".join(parts[:i]).casefold() for i in range(1, len(parts)))
    for folded, path in seen.items():
        if folded in folders:
            raise UnsafePathError(
                f"{name}: the artifact lists {path!r} both as a file and as a folder of other files. "
                "wbsync refuses it; nothing was written."
            )


_RESERVED_WHY = {
    ".git": "git's own folder, where a file such as config or a hook runs as a command on the next "
            "`git status` or commit",
    ".wbsync": "wbsync's own records of what it placed",
}


def too_long_with(base: str, path: str) -> str | None:
    """Entry folder and file path together: the same limits as a file path alone."""
    if not base:
        return None
    joined = f"{base}/{path}"
    if joined.count("/") + 1 > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} folders deep below the project (with the entry's folder {base!r})"
    if len(joined.encode()) >= 4096:
        return f"is longer than 4095 bytes with the entry's folder {base!r}"
    return None


# Most artifact paths: ASCII names that do not start with a dot, no ':' or '\\', each at most
# 255 bytes. Such a path needs none of the checks below but depth and length.
_PLAIN = re.compile(r"[\w+=,@%-][\w.+=,@% -]{0,254}(?:/[\w+=,@%-][\w.+=,@% -]{0,254})*", re.ASCII)


def unsafe_reason(path: str) -> str | None:
    if len(path) < 4096 and path.count("/") < MAX_DEPTH and _PLAIN.fullmatch(path):
        return None
    if not path or "\x00" in path:
        return "is empty or holds a NUL byte"
    if not path.isascii() and any("\ud800" <= c <= "\udfff" for c in path):
        return "is not valid Unicode (it holds a lone surrogate)"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' segment"
    if posixpath.normpath(path) != path:
        return "is not a normalized path"
    if any(len(p.encode()) > 255 for p in parts):
        return "has a name longer than 255 bytes"
    if len(parts) > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} folders deep"
    if len(path.encode()) >= 4096:  # PATH_MAX: no folder could hold it (placement checks the full path)
        return "is longer than 4095 bytes"
    return None
