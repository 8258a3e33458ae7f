"""Is the lock still current? Which aliases moved, which locked versions vanished, which expire.

`wbsync outdated` asks the source about every locked entry; a cold `sync` that meets a vanished
version asks here how to word it. One place decides what counts as vanished and what fixes it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wbsync.core.errors import NotFoundError, VanishedError, WbsyncError
from wbsync.core.models import Entry, LockedArtifact, Manifest, VersionStatus, vanished_reason
from wbsync.decide.resolve import PinChange, to_locked
from wbsync.sources import Source

JOBS = 8


@dataclass(frozen=True)
class Vanished:
    """A locked version the source no longer has (or no longer has as locked)."""

    name: str
    resolved: str
    state: str  # "missing", "deleted", "pending" (not committed) or "changed" (other content)
    reason: str
    alias: str | None  # the alias the manifest follows; None for a pinned version
    now: str | None  # where that alias points today, when it still resolves
    fix: str  # one sentence, with the command to run


@dataclass(frozen=True)
class Expiring:
    """A locked version that is still there but scheduled for deletion (a TTL)."""

    name: str
    resolved: str
    expires_at: str


@dataclass(frozen=True)
class OutdatedReport:
    moved: list[PinChange]
    vanished: list[Vanished]
    expiring: list[Expiring]
    checked: int  # locked entries asked about

    @property
    def ok(self) -> bool:
        return not self.vanished


@dataclass(frozen=True)
class _Answer:
    moved: PinChange | None
    vanished: Vanished | None
    expiring: Expiring | None


def check_outdated(manifest: Manifest, locked: dict[str, LockedArtifact], source: Source,
                   names: frozenset[str] | None) -> OutdatedReport:
    """Ask the source about every selected entry that is both in the manifest and locked."""
    todo = [(manifest.entries[n], locked[n]) for n in sorted(manifest.entries)
            if n in locked and (names is None or n in names)]
    if not todo:
        return OutdatedReport([], [], [], 0)
    with ThreadPoolExecutor(max(1, min(JOBS, len(todo))), thread_name_prefix="wbsync-outdated") as pool:
        answers = list(pool.map(lambda pair: _check_entry(pair[0], pair[1], source, manifest.file), todo))
    return OutdatedReport(
        moved=[a.moved for a in answers if a.moved],
        vanished=[a.vanished for a in answers if a.vanished],
        expiring=[a.expiring for a in answers if a.expiring],
        checked=len(todo),
    )


def following(manifest: Manifest, collection: str, alias: str) -> frozenset[str]:
    """The entries that follow ``collection`` and ``alias`` (an empty one matches any): how an
    event that names a collection and an alias (a W&B automation's webhook) maps to entries. The
    names come from the manifest, never from the event; an event naming nothing here selects none."""
    return frozenset(n for n, e in manifest.entries.items()
                     if (not collection or e.reference.collection == collection)
                     and (not alias or e.reference.alias == alias))


def _check_entry(entry: Entry, old: LockedArtifact, source: Source, manifest_file: str) -> _Answer:
    status = source.status(old)
    problem = vanished_reason(status, old)
    alias = entry.reference.alias
    if alias is None:
        vanished = _vanished(entry, old, problem, None, manifest_file) if problem else None
        return _Answer(None, vanished, _expiring(old, status))
    if problem is None:
        new: LockedArtifact | None = to_locked(entry, source.resolve(entry))  # errors are the command's
    else:
        try:  # the version is gone: where the alias points now is what the fix needs
            new = to_locked(entry, source.resolve(entry))
        except NotFoundError:
            new = None
    moved = None
    if new is not None and (old.version, old.digest) != (new.version, new.digest):
        moved = PinChange(entry.name, alias, old, new)
    vanished = _vanished(entry, old, problem, new.version if new else None, manifest_file) if problem else None
    return _Answer(moved, vanished, _expiring(old, status))


def _vanished(entry: Entry, old: LockedArtifact, problem: tuple[str, str], now: str | None,
              manifest_file: str) -> Vanished:
    state, reason = problem
    return Vanished(entry.name, old.resolved, state, reason, entry.reference.alias, now,
                    fix_for(entry, old, now, manifest_file))


def _expiring(old: LockedArtifact, status: VersionStatus) -> Expiring | None:
    if status.expires_at is None or status.state != "committed":
        return None
    return Expiring(old.name, old.resolved, status.expires_at)


def fix_for(entry: Entry | None, old: LockedArtifact, now: str | None, manifest_file: str) -> str:
    """What to run when ``old`` vanished: re-lock where the alias points now, or change the manifest."""
    name = old.name
    upgrade = f"run `wbsync lock --upgrade {name}`, then `wbsync sync`, and commit the lockfile."
    if entry is None:  # `sync --frozen` without a manifest: the usual fix, unverified
        return upgrade
    alias = entry.reference.alias
    if alias is None:
        return (f"{_at(manifest_file, entry)} pins {old.version}: pick another version in the W&B App, change "
                f"entry {name!r} to it, then run `wbsync lock`.")
    if now is not None and now != old.version:
        return f"its alias `{alias}` now points at {now}: {upgrade}"
    where = "still points at the vanished version" if now == old.version else "no longer resolves either"
    return (f"its alias `{alias}` {where}: point entry {name!r} in {_at(manifest_file, entry)} at another "
            "alias or version, then run `wbsync lock`.")


def _at(manifest_file: str, entry: Entry | None) -> str:
    return f"{manifest_file} line {entry.line}" if entry is not None and entry.line else manifest_file


def explain_vanished(exc: VanishedError, manifest: Manifest | None, locked: LockedArtifact,
                     source: Source) -> VanishedError:
    """A cold sync met a vanished version: say where the alias points now and what to run."""
    entry = manifest.entries.get(exc.name) if manifest else None
    manifest_file = manifest.file if manifest else "the manifest"
    try:
        now = source.resolve(entry).version if entry is not None and entry.reference.alias else None
        fix = fix_for(entry, locked, now, manifest_file)
    except NotFoundError:
        fix = fix_for(entry, locked, None, manifest_file)
    except WbsyncError as err:  # the alias could not be asked about: the usual fix, and why it is unsure
        fix = f"run `wbsync lock --upgrade {exc.name}` (where its alias points now is unknown: {err.message})"
    message = (f"{exc.name}: the locked version {locked.resolved} is {exc.reason} in {source.description}, "
               f"so its files cannot be fetched. Fix: {fix}")
    return VanishedError(message, exc.name, exc.reason)
