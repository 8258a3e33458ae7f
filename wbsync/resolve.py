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
    """One pass over the source's list (which may hold a million files): filter, refuse
    references and unsafe paths, count; keep the records only while they fit inline."""
    limit = listing.inline_max()
    kept: list[FileRecord] = []
    count = total = 0
    paths = PathCheck(entry.name, entry.path)
    for f in res.files:
        path = f.record.path
        if not selected(entry, path):
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
        files = StoredFiles(entry.name, res.resolved, res.digest, entry.include, entry.exclude, count, total)
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


def selected(entry: Entry, path: str) -> bool:
    """include/exclude are fnmatch globs over the artifact path (``*`` also crosses ``/``)."""
    return listing.selected(entry.include, entry.exclude, path)


def check_paths(name: str, files: Iterable[FileRecord], base: str = "") -> None:
    """Refuse artifact file lists that could write outside the destination, into git's or
    wbsync's folders, or collide on disk, before anything is written (the lock is the first
    thing written). ``base`` is the entry's folder: the two together must fit a path."""
    paths = PathCheck(name, base)
    for f in files:
        paths.add(f.path)
    paths.finish()


class PathCheck:
    """check_paths one path at a time. It remembers the hash of each case-folded path, not a
    case-folded copy, so a million-file artifact costs tens of MB here, not hundreds; a hash
    that repeats is confirmed against the path it came from before anything is refused."""

    def __init__(self, name: str, base: str = "") -> None:
        self.name, self.base = name, base
        self.seen: dict[int, str] = {}  # hash(casefolded path) -> path
        self.folders: set[int] = set()  # hash(casefolded folder)
        self.parent = ""  # folders of the previous path are already in ``folders``

    def add(self, path: str) -> None:
        name = self.name
        problem = unsafe_reason(path) or too_long_with(self.base, path)
        if problem:
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {path!r}, which {problem}. wbsync refuses "
                f"to write it; nothing was written. Leave it out with `exclude: [{json.dumps(path)}]` in "
                "the entry, and report the artifact to its owner."
            )
        reserved = reserved_segment(path)
        if reserved:
            prefix, what = reserved
            raise UnsafePathError(
                f"{name}: the artifact lists a file at {path!r}, inside {prefix!r}, which filesystems "
                f"treat as {what}: {_RESERVED_WHY[what]}. wbsync refuses it; nothing was written. Leave "
                f"it out with `exclude: [{json.dumps(exclude_glob(path, prefix))}]` in the entry, and "
                "report the artifact to its owner."
            )
        folded = path.casefold()
        key = hash(folded)
        other = self.seen.get(key)
        if other is not None and other.casefold() == folded:
            raise UnsafePathError(
                f"{name}: the artifact lists {other!r} and {path!r}, which differ only by case "
                "and would overwrite each other on case-insensitive filesystems (macOS, Windows). "
                "wbsync refuses it; nothing was written."
            )
        self.seen[key] = path
        parent = folded.rpartition("/")[0]
        if parent and parent != self.parent:  # sorted lists: a folder's files come together
            self.parent = parent
            parts = parent.split("/")
            self.folders.update(hash("/".join(parts[:i])) for i in range(1, len(parts) + 1))

    def finish(self) -> None:
        for key in self.seen.keys() & self.folders:
            path = self.seen[key]
            if path.casefold() in self._folder_names():
                raise UnsafePathError(
                    f"{self.name}: the artifact lists {path!r} both as a file and as a folder of other files. "
                    "wbsync refuses it; nothing was written."
                )

    def _folder_names(self) -> set[str]:
        """The folders themselves (only on a hash match, to confirm it): one more pass."""
        names: set[str] = set()
        for path in self.seen.values():
            parts = path.casefold().split("/")
            names.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return names


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
