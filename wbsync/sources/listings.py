"""A large entry's listing that this machine lacks: fetched from the source the project reads
(W&B or a mirror) by the locked version, checked against the lock's artifact digest, and kept
in the store (``wbsync.store.listing``), so every later sync reads it offline."""

from __future__ import annotations

from wbsync.core.errors import IntegrityError, NotFoundError, VanishedError
from wbsync.core.models import Entry, Lock, LockedArtifact, vanished_reason
from wbsync.core.references import parse_reference
from wbsync.sources import Source
from wbsync.store.listing import StoredFiles, has_listing, write_listing


def ensure_listings(lock: Lock, source: Source, names: frozenset[str] | None = None) -> int:
    """Fetch, check and store the listing of every stored entry (all, or ``names``) that the
    content store lacks: from the source the project reads (W&B or a mirror), by the locked
    version, checked against the lock's artifact digest. Returns how many it fetched."""
    missing = {a.files.digest: a for n, a in sorted(lock.artifacts.items())
               if (names is None or n in names) and isinstance(a.files, StoredFiles)
               and not has_listing(a.files.digest)}
    for artifact in missing.values():
        fetch_listing(artifact, source)
    return len(missing)


def raise_if_vanished(artifact: LockedArtifact, source: Source) -> None:
    """The locked version is gone (not an org or access problem): a VanishedError, which sync
    words with where the alias points now."""
    problem = vanished_reason(source.status(artifact), artifact)
    if problem is not None:
        raise VanishedError(f"{artifact.name}: the locked version {artifact.resolved} is {problem[1]}. "
                            f"Run `wbsync lock --upgrade {artifact.name}`.", artifact.name, problem[1])


def fetch_listing(artifact: LockedArtifact, source: Source) -> None:
    try:
        reference = parse_reference(artifact.resolved)
    except ValueError as exc:
        raise IntegrityError(f"{artifact.name}: the lock's `resolved` {artifact.resolved!r} is not a "
                             f"registry version ({exc}). Run `wbsync lock --upgrade {artifact.name}`.") from None
    try:
        res = source.resolve(Entry(artifact.name, reference, artifact.path))
    except NotFoundError:
        raise_if_vanished(artifact, source)
        raise
    what = f"{artifact.name} ({artifact.resolved})"
    if res.digest != artifact.digest:
        raise IntegrityError(
            f"{what}: {source.description} holds this version with artifact digest {res.digest}, but the "
            f"lock records {artifact.digest}. Nothing was changed. Run `wbsync lock --upgrade {artifact.name}` "
            "if the version was replaced on purpose.")
    write_listing(res.files, artifact.digest, what)
