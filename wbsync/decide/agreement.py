"""Whether a lock may be acted on: the one rule every command asks (lock --check, sync,
sync --locked and --frozen, verify, mirror, lineage, wbsync.path and use_artifacts).

The lock in a pull request is written by whoever opened it. ``entry_digest`` only says which
manifest entry the lock *claims* to come from, so the lock's own fields are compared with the
manifest too; and no destination, in a manifest or in a lock, may be a place where a file
becomes a command (``.git``) or wbsync's own records (``.wbsync``), nor the project's root,
manifest or lock.

* ``check_manifest`` / ``check_lock``: unsafe destinations, exit 2, before anything else (an
  unsafe destination in a lock is refused whatever else is stale).
* ``stale_entries``: per entry, why the lock disagrees with the manifest (the field named);
  ``sync`` re-locks those entries, ``lock --check`` and ``sync --locked`` exit 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wbsync.core.errors import IntegrityError, LockfileError, ManifestError, NotFoundError
from wbsync.core.models import Entry, Lock, LockedArtifact, Manifest, Resolved
from wbsync.core.paths import MAX_DEPTH, normalize_path, selected, too_long_with, unsafe_reason
from wbsync.core.references import parse_reference
from wbsync.core.reserved import reserved_segment
from wbsync.sources import RESOLVE_JOBS, Source
from wbsync.sources.listings import raise_if_vanished
from wbsync.store.listing import StoredFiles


@dataclass(frozen=True)
class Places:
    """Where the project's own files are, relative to its root (None when outside it)."""

    root: Path
    manifest: str | None
    lock: str | None

    @classmethod
    def of(cls, manifest_path: Path, lock_path: Path) -> "Places":
        root = Path(os.path.abspath(manifest_path)).parent
        return cls(root, _relative(root, manifest_path), _relative(root, lock_path))


def _relative(root: Path, path: Path) -> str | None:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return None


# -- destinations --------------------------------------------------------------------------


def destination_problem(path: str, places: Places) -> str | None:
    """Why an entry's folder (a normalized relative POSIX path) must not receive files, or None."""
    found = reserved_segment(path)
    if found is not None:
        prefix, name = found
        what = "git's folder, where a file runs as a command on the next `git status`" \
            if name == ".git" else "wbsync's own records"
        stands = f", which filesystems treat as {name}" if prefix.rsplit("/", 1)[-1] != name else ""
        return f"{prefix!r}{stands} is {what}"
    if path.count("/") + 1 > MAX_DEPTH:
        return f"it is more than {MAX_DEPTH} folders deep"
    if len(path.encode()) >= 4096 or any(len(p.encode()) > 255 for p in path.split("/")):
        return "it is longer than a path or a name can be (4095 bytes, 255 per name)"
    for label, own in (("manifest", places.manifest), ("lockfile", places.lock)):
        if own is None:
            continue
        a, b = path.casefold(), own.casefold()  # case-blind, as macOS and Windows are
        if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
            return f"it would overwrite or hold the project's {label} {own!r}"
    return None


def check_manifest(manifest: Manifest, places: Places) -> None:
    """Refuse a manifest entry whose folder is unsafe (exit 2, naming the file and line)."""
    for entry in manifest.entries.values():
        problem = destination_problem(entry.path, places)
        if problem is not None:
            raise ManifestError(
                f"{manifest.file}:{entry.line}: artifacts.{entry.name}.path: {entry.path!r} cannot receive "
                f"files: {problem}. Give the entry a folder of its own, e.g. models/{entry.name}.")


def check_lock(lock: Lock, file: str, places: Places) -> None:
    """Refuse a lock that would write anywhere unsafe (exit 2): every entry's folder and every
    file path, checked as an artifact's are. This runs whenever a lock is read, before anything
    is compared or written: a lock is input from whoever committed it."""
    for name, art in sorted(lock.artifacts.items()):
        try:
            normal = normalize_path(art.path)
        except ValueError as exc:
            _refuse(file, name, f"its path {exc}")
        problem = destination_problem(art.path, places) if normal == art.path else \
            f"it is not a normalized folder (wbsync writes {normal!r})"
        if problem is not None:
            _refuse(file, name, f"its path {art.path!r} cannot receive files: {problem}")
        if isinstance(art.files, StoredFiles):
            # A large entry's list is in the content store, written from the source after its
            # paths passed these checks; placement checks each path again (wbsync.tree.place).
            continue
        for f in art.files:
            problem = unsafe_reason(f.path) or _reserved_file(f.path) or too_long_with(art.path, f.path)
            if problem is not None:
                _refuse(file, name, f"it lists a file at {f.path!r}, which {problem}")


def _reserved_file(path: str) -> str | None:
    found = reserved_segment(path)
    return None if found is None else f"holds {found[0]!r}, reserved for {found[1]}"


def _refuse(file: str, name: str, problem: str) -> None:
    raise LockfileError(
        f"{file}: entry {name!r}: {problem}. wbsync refuses this lockfile and changed nothing. It was "
        "edited or damaged: restore it from version control, or delete it and run `wbsync lock`.")


# -- agreement with the manifest ------------------------------------------------------------


def disagreement(entry: Entry, art: LockedArtifact) -> str | None:
    """Why the lock entry ``art`` does not pin what the manifest ``entry`` asks for, or None.

    ``entry_digest`` tells a changed manifest entry; the other fields catch a lock whose
    digest was kept while what it pins was changed by hand (path, reference, type, filters)."""
    if art.entry_digest != entry.digest():
        return "artifacts.yaml changed the entry since it was locked"
    ref = entry.reference
    if art.path != entry.path:
        return _field("path", art.path, entry.path)
    if art.requested != ref.full_name():
        return _field("requested", art.requested, ref.full_name())
    if entry.type is not None and art.type != entry.type:
        return _field("type", art.type, entry.type)
    problem = _resolved_problem(art, entry)
    if problem is not None:
        return problem

    if isinstance(art.files, StoredFiles):  # the filters the stored list is read with
        stored = art.files
        if (stored.include, stored.exclude) != (entry.include, entry.exclude):
            return _field("include/exclude", f"{list(stored.include)} / {list(stored.exclude)}",
                          f"{list(entry.include)} / {list(entry.exclude)}")
        return None
    for f in art.files:
        if not selected(entry.include, entry.exclude, f.path):
            return (f"files: the lock lists {f.path!r}, which the entry's include/exclude leave out "
                    "(the lock was edited by hand)")
    return None


def _field(name: str, locked: str, wanted: str) -> str:
    return (f"{name}: the lock has {locked!r} where artifacts.yaml has {wanted!r} "
            "(the lock was edited by hand)")


def _resolved_problem(art: LockedArtifact, entry: Entry) -> str | None:
    """``resolved`` must name the requested registry and collection, at the lock's version."""
    try:
        pinned = parse_reference(art.resolved)
    except ValueError:
        pinned = None
    ref = entry.reference
    if pinned is None or pinned.version is None or pinned.org is None:
        return f"resolved: {art.resolved!r} is not a pinned ORG/wandb-registry-REGISTRY/COLLECTION:vN"
    if (pinned.registry, pinned.collection) != (ref.registry, ref.collection):
        return (f"resolved: the lock pins {art.resolved!r}, which is not in "
                f"{ref.project}/{ref.collection} as artifacts.yaml asks (the lock was edited by hand)")
    if pinned.version != art.version:
        return f"version: the lock has {art.version!r} but its resolved {art.resolved!r} says {pinned.version}"
    if ref.version is not None and art.version != ref.version:
        return _field("version", art.version, ref.version)
    return None


def resolved_mismatch(art: LockedArtifact) -> str | None:
    """The ``resolved`` rule against the lock entry's own ``requested``, for when no manifest is at
    hand (`wbsync diff` compares two locks): why they disagree, or None."""
    try:
        reference = parse_reference(art.requested)
    except ValueError:
        return f"requested: {art.requested!r} is not a registry reference"
    return _resolved_problem(art, Entry(art.name, reference, art.path))


def check_frozen(lock: Lock, file: str) -> None:
    """``sync --frozen`` has no manifest to compare with: each entry must at least agree with
    itself, ``resolved`` naming the registry and collection of ``requested`` at ``version``
    (exit 2). The org in ``resolved`` is trusted: only the manifest says which one was meant."""
    for name, art in sorted(lock.artifacts.items()):
        problem = resolved_mismatch(art)
        if problem is not None:
            _refuse(file, name, problem.replace("as artifacts.yaml asks", "as its requested says")
                    .replace("where artifacts.yaml has", "where its requested has"))


def stale_entries(manifest: Manifest, lock: Lock | None) -> dict[str, str]:
    """Manifest entries the lock does not pin as asked, in manifest order: name -> why."""
    locked = lock.artifacts if lock else {}
    found: dict[str, str] = {}
    for name, entry in manifest.entries.items():
        if name not in locked:
            found[name] = "not locked yet"
        elif (why := disagreement(entry, locked[name])) is not None:
            found[name] = why
    return found


def dropped_names(manifest: Manifest, lock: Lock | None) -> list[str]:
    """Locked entries artifacts.yaml no longer has."""
    return sorted(set(lock.artifacts) - set(manifest.entries)) if lock else []


def stale_report(manifest: Manifest, lock: Lock | None) -> dict[str, str]:
    """Every entry that makes the lock out of date: stale ones and dropped ones, name -> why."""
    found = stale_entries(manifest, lock)
    for name in dropped_names(manifest, lock):
        found[name] = "no longer in artifacts.yaml"
    return found


def describe(report: dict[str, str]) -> str:
    """``name (why); name (why)`` for messages."""
    return "; ".join(f"{name} ({why})" for name, why in report.items())


# -- agreement with the source --------------------------------------------------------------


def confirm_with_source(artifacts: list[LockedArtifact], source: Source, manifest: Manifest | None,
                        lock_file: str) -> None:
    """Before bytes are placed: ask the source whether each locked version holds what the lock
    says (its artifact digest, and exactly the locked files once the entry's filters apply).

    Blobs in the content store are named by digest, and a store on a CI runner may hold bytes an
    earlier job put there: without this, a lock that lists another collection's files under a
    ``resolved`` that passed the offline checks would place them without a request. Entries
    the sync has just resolved are the source's answer already and are not asked again; a
    no-op sync places nothing and asks nothing. ``manifest`` is None for ``sync --frozen``: the
    lock's filters are then trusted, and the files must be files of ``resolved``."""
    if not artifacts:
        return
    from concurrent.futures import ThreadPoolExecutor


    def one(art: LockedArtifact) -> None:
        entry = manifest.entries.get(art.name) if manifest else None
        try:
            res = source.resolve(pinned_entry(art, entry))
        except NotFoundError:
            raise_if_vanished(art, source)
            raise
        problem = source_disagreement(art, res, entry)
        if problem is not None:
            raise IntegrityError(
                f"{lock_file}: entry {art.name!r}: {source.description} does not hold what the lock records "
                f"for {art.resolved}: {problem}. Nothing was placed. The lock was edited or made against "
                f"another source: restore it from version control, or run `wbsync lock --upgrade {art.name}`.")

    with ThreadPoolExecutor(min(RESOLVE_JOBS, len(artifacts)), thread_name_prefix="wbsync-confirm") as pool:
        list(pool.map(one, artifacts))


def pinned_entry(art: LockedArtifact, entry: Entry | None) -> Entry:
    """What to ask the source: the manifest entry (its org and entity as written) at exactly the
    locked version; without a manifest, the lock's ``resolved`` itself."""
    import dataclasses


    if entry is not None:
        return dataclasses.replace(entry, reference=dataclasses.replace(entry.reference, alias=None,
                                                                         version=art.version))
    try:
        reference = parse_reference(art.resolved)
    except ValueError as exc:
        raise LockfileError(f"entry {art.name!r}: the lock's resolved {art.resolved!r} is not a registry "
                            f"version ({exc}). Restore the lockfile, or run `wbsync lock --upgrade {art.name}`.") from None
    return Entry(name=art.name, reference=reference, path=art.path)


def source_disagreement(art: LockedArtifact, res: Resolved, entry: Entry | None) -> str | None:
    """How the source's answer ``res`` differs from the lock entry ``art``, or None."""
    if res.resolved != art.resolved:
        return f"the version resolves to {res.resolved}"
    if res.digest != art.digest:
        return f"its artifact digest is {res.digest}, the lock's {art.digest}"
    if res.type != art.type:
        return f"its type is {res.type!r}, the lock's {art.type!r}"
    if isinstance(art.files, StoredFiles):
        return None  # the stored list is read only after it matched this digest (wbsync.store.listing)
    held = {f.record.path: f.record for f in res.files if f.ref is None}
    for record in art.files:
        if held.get(record.path) != record:
            what = "does not hold" if record.path not in held else "holds other bytes at"
            return f"it {what} {record.path!r}"
    if entry is not None:

        locked = {f.path for f in art.files}
        left_out = sorted(p for p in held if p not in locked and selected(entry.include, entry.exclude, p))
        if left_out:
            return f"the lock leaves out {left_out[0]!r}, which the entry's filters keep"
    return None
