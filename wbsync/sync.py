"""lock and sync: the flow manifest -> resolve -> lock -> plan -> fetch -> place.

Deciding is pure (resolve.lock_manifest, plan.make_plan); this module observes the disk,
carries a plan out and records what it placed.
"""

from __future__ import annotations

import copy
import fcntl
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from wbsync.digests import hash_file
from wbsync.agreement import check_frozen, confirm_with_source, describe, stale_report
from wbsync.errors import CheckFailed, VanishedError, WbsyncError, local_io_error
from wbsync.listing import ensure_listings, iter_files
from wbsync.lockfile import write_lock
from wbsync.models import Lock, LockedArtifact, Manifest
from wbsync.place import (
    LinkMode,
    Staged,
    clean_temp_files,
    commit_staged,
    discard_staged,
    remove_placed,
    safe_join,
    stage,
)
from wbsync.plan import EntryPlan, FileAction, Plan, dest_of, digest_key, make_plan
from wbsync.project import Project, check_names
from wbsync.resolve import PinChange, lock_manifest
from wbsync.sources import Source, project_source
from wbsync.state import (
    STATE_DIR,
    EntryState,
    PlacedFile,
    Stat,
    load_state,
    save_state,
    stat_of,
)
from wbsync.store import Store, default_store_dir

if TYPE_CHECKING:
    from wbsync.fetch import FetchJob


@dataclass
class LockResult:
    lock: Lock
    changes: list[PinChange]
    written: bool


@dataclass
class SyncResult:
    lock: LockResult | None
    plan: Plan
    fetched_files: int = 0
    fetched_bytes: int = 0
    placed: int = 0
    removed: int = 0
    kept_modified: list[str] = field(default_factory=list)  # placed files edited since: not removed
    dry_run: bool = False

    @property
    def noop(self) -> bool:
        return self.plan.is_noop


def run_lock(project: Project, names: tuple[str, ...] = (), upgrade: bool = False,
             check: bool = False, source: Source | None = None) -> LockResult:
    manifest = project.manifest()
    old = project.lock()
    selected = check_names(names, set(manifest.entries), str(project.manifest_path))
    if check:
        stale = stale_report(manifest, old)
        if old is None or stale:
            raise CheckFailed(_stale_message(project, old is None, stale))
        return LockResult(old, [], False)
    upgrading = frozenset(manifest.entries if selected is None else selected) if upgrade else frozenset()
    lock, changes = lock_manifest(manifest, old, source or project_source(project, manifest), upgrading)
    written = write_lock(project.lock_path, lock)
    return LockResult(lock, changes, written)


def _stale_message(project: Project, missing: bool, stale: dict[str, str]) -> str:
    if missing:
        return f"{project.lock_path}: no lockfile. Run `wbsync lock` and commit {project.lock_path.name}."
    return (f"{project.lock_path} is out of date with {project.manifest_path} for: {describe(stale)}. "
            "Run `wbsync lock` and commit the lockfile.")


def run_sync(project: Project, names: tuple[str, ...] = (), *, locked: bool = False, frozen: bool = False,
             dry_run: bool = False, jobs: int = 64, link_mode: LinkMode = "auto",
             progress: Callable[[int], None] | None = None, on_fetch_start: Callable[[int, int], None] | None = None,
             source: Source | None = None) -> SyncResult:
    lock_result: LockResult | None = None
    manifest: Manifest | None = None
    fresh: set[str] = set()  # entries resolved by this run: the source's own answer
    if frozen:
        lock = project.require_lock()
        check_frozen(lock, str(project.lock_path))
        source = source or project_source(project)  # deferred: a no-op reads nothing more
    else:
        manifest = project.manifest()
        source = source or project_source(project, manifest)
        old = project.lock()
        stale = stale_report(manifest, old)
        if old is None or stale:
            if locked:
                raise CheckFailed(_stale_message(project, old is None, stale)
                                  + " (`--locked` never writes the lock.)")
            lock, changes = lock_manifest(manifest, old, source)
            fresh = set(stale)
            written = False if dry_run else write_lock(project.lock_path, lock)
            lock_result = LockResult(lock, changes, written)
        else:
            lock = old
    selected = check_names(names, set(lock.artifacts), str(project.lock_path))
    root = project.root
    with _explaining_vanished(project, lock, source):
        ensure_listings(lock, source, selected)  # large entries' file lists: fetched once, then offline
    plan = plan_tree(root, lock, selected)
    result = SyncResult(lock_result, plan, dry_run=dry_run)
    if not dry_run:  # no-op syncs too, where it writes nothing unless the lock changed
        from wbsync.cache import register_lock
        register_lock(Store(default_store_dir()), project.lock_path, lock, used=not plan.is_noop)
    if plan.is_noop or dry_run:
        return result
    with project_lock(root):
        plan = plan_tree(root, lock, selected)  # another sync may have done part of it while we waited
        result.plan = plan
        actor = _Actor(root, Store(default_store_dir()), jobs, link_mode, progress, on_fetch_start, source)
        actor.confirm = lambda arts: confirm_with_source([a for a in arts if a.name not in fresh], source,
                                                         manifest, str(project.lock_path))
        with _explaining_vanished(project, lock, source):
            actor.apply(plan, result)
    from wbsync.cache import (
        auto_prune,  # does nothing unless WBSYNC_CACHE_MAX_SIZE is exceeded
    )
    auto_prune(Store(default_store_dir()))
    return result


@contextmanager
def _explaining_vanished(project: Project, lock: Lock, source: Source) -> Iterator[None]:
    """A locked version that vanished: say where the alias points now and which command fixes it."""
    try:
        yield
    except VanishedError as exc:
        from wbsync.outdated import explain_vanished

        raise explain_vanished(exc, _manifest_if_any(project), lock.artifacts[exc.name], source) from None


def _manifest_if_any(project: Project) -> Manifest | None:
    """The manifest, for a message only: `sync --frozen` may run without one (or with a broken one)."""
    try:
        return project.manifest() if project.manifest_path.exists() else None
    except WbsyncError:
        return None


def plan_tree(root: Path, lock: Lock, names: frozenset[str] | None) -> Plan:
    """Observe the locked destinations on disk (stat only) and plan against the recorded state."""
    state = load_state(root)
    observed: dict[str, Stat | None] = {}
    for name, art in lock.artifacts.items():
        if names is not None and name not in names:
            continue
        # Plain string concatenation: pathlib costs ~20 us per path, a third of a 10k-file no-op.
        prefix = f"{art.path}/"
        absolute = f"{root}{os.sep}{prefix}"
        for f in iter_files(art):
            observed[prefix + f.path] = stat_of(absolute + f.path)
    return make_plan(lock, state, observed, names)


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """One sync at a time per project: a second one waits here, then re-plans."""
    folder = root / STATE_DIR
    folder.mkdir(exist_ok=True)
    with open(folder / "sync.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _Actor:
    """Carries a plan out: re-hash doubtful files, fetch missing blobs, then place and prune."""

    def __init__(self, root: Path, store: Store, jobs: int, link_mode: LinkMode,
                 progress: Callable[[int], None] | None, on_fetch_start: Callable[[int, int], None] | None,
                 source: Source) -> None:
        self.root, self.store, self.jobs, self.link_mode = root, store, jobs, link_mode
        self.progress, self.on_fetch_start, self.source = progress, on_fetch_start, source
        self.made_dirs: set[Path] = set()  # folders already created in this run
        # Asks the source whether the lock entries to place hold what the lock says (run_sync
        # sets it: wbsync.agreement.confirm_with_source).
        self.confirm: Callable[[list[LockedArtifact]], None] = lambda artifacts: None
        self.before = load_state(root)  # what earlier syncs placed: decides what may be removed
        self.state = copy.deepcopy(self.before)  # updated as files are placed, saved at the end

    def apply(self, plan: Plan, result: SyncResult) -> None:
        # A shared store lock: a prune (which takes it exclusively) cannot delete a blob
        # between our has() and place().
        with self.store.shared():
            entries = [self._settle_checks(e) for e in plan.entries]
            self.confirm([e.artifact for e in entries if e.place])  # before any byte is fetched or placed
            failures = self._fetch(entries, result)
            for entry in entries:
                if entry.name not in failures:
                    self._place_entry(entry, result)
        self._remove_orphans(plan.orphans, result)
        save_state(self.root, self.state)
        if failures:
            raise next(iter(failures.values()))

    def _settle_checks(self, entry: EntryPlan) -> EntryPlan:
        """Files on disk that the state does not vouch for: re-hash; equal ones are kept (and
        recorded, so the next sync trusts them), others are replaced."""
        if not entry.check:
            return entry
        with ThreadPoolExecutor(min(self.jobs, 8)) as pool:
            same = list(pool.map(self._matches, entry.check))
        keep = [a for a, ok in zip(entry.check, same) if ok]
        for action in keep:
            self._record(action)
        replace_ = [a for a, ok in zip(entry.check, same) if not ok]
        return replace(entry, keep=entry.keep + tuple(keep), check=(), place=entry.place + tuple(replace_))

    def _matches(self, action: FileAction) -> bool:
        path = self.root / action.dest
        try:
            return hash_file(path, action.record.algorithm) == action.record.digest
        except OSError:
            return False

    def _fetch(self, entries: list[EntryPlan], result: SyncResult) -> dict[str, WbsyncError]:
        from wbsync.fetch import (  # urllib3: ~50 ms a no-op sync never pays
            Fetcher,
            FetchJob,
        )

        missing = [(e, [a for a in e.place if not self.store.has(a.record)]) for e in entries]
        missing = [(e, acts) for e, acts in missing if acts]
        if not missing:
            return {}
        self.store.clean_tmp()  # leftovers of killed runs (only files no live process holds)
        source = self.source
        jobs: list[FetchJob] = []
        failures: dict[str, WbsyncError] = {}
        for entry, actions in missing:
            try:
                urls = source.file_urls(entry.artifact)
            except WbsyncError as exc:
                failures[entry.name] = exc
                continue
            jobs.extend(FetchJob(entry.name, a.record, urls.get(a.record.path, "")) for a in actions)
        unique = list({digest_key(j.record): j for j in jobs}.values())  # same bytes, fetch once
        result.fetched_files = len(unique)
        result.fetched_bytes = sum(j.record.size for j in unique)
        if self.on_fetch_start:
            self.on_fetch_start(len(unique), result.fetched_bytes)
        artifacts = {e.name: e.artifact for e, _ in missing}
        fetcher = Fetcher(self.store, self.jobs, progress=self.progress, opener=source.open_file,
                          renew=lambda name, paths: source.file_urls(artifacts[name], paths))
        failures.update(fetcher.fetch_all(j for j in unique if self._has_url(j, failures)))
        return failures

    def _has_url(self, job: FetchJob, failures: dict[str, WbsyncError]) -> bool:
        if job.url:
            return True
        from wbsync.errors import NotFoundError

        failures.setdefault(job.artifact, NotFoundError(
            f"{job.artifact}: the source no longer lists {job.record.path!r} for this version. "
            "Run `wbsync lock --upgrade` to re-resolve."))
        return False

    def _place_entry(self, entry: EntryPlan, result: SyncResult) -> None:
        # The lock's path is checked like any destination before even the cleanup touches it.
        folder = safe_join(self.root, entry.artifact.path, context=entry.name)
        if folder.is_dir():
            clean_temp_files(folder)
        # Every destination is checked (symlink escapes) before the first file is written.
        dests = [safe_join(self.root, a.dest, context=entry.name) for a in entry.place]
        blobs = [self.store.blob_path(a.record) for a in entry.place]
        # Two phases: stage every file (create + copy, the slow part; threads overlap it), then
        # rename them all. A crash or a full disk while staging leaves the entry as it was; only
        # the short rename loop can leave it part old, part new (each file whole either way).
        staged = self._stage_all(blobs, dests)
        for i, one in enumerate(staged):
            try:
                commit_staged(one)
            except BaseException:
                for rest in staged[i + 1:]:
                    discard_staged(rest)
                raise
        for action in entry.place:
            self._record(action)
            result.placed += 1
        recorded = self.before.entries.get(entry.name)
        for dest in entry.remove:
            if self._remove_if_unchanged(dest, recorded):
                result.removed += 1
            else:
                result.kept_modified.append(dest)
        self._forget(entry)

    def _stage_all(self, blobs: list[Path], dests: list[Path]) -> list[Staged]:
        """Stage every file, or none: on any failure the temp files already made are removed."""
        with ThreadPoolExecutor(min(self.jobs, 8), thread_name_prefix="wbsync-place") as pool:
            futures = [pool.submit(self._stage_one, b, d) for b, d in zip(blobs, dests)]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                for f in futures:
                    if not f.cancelled() and f.exception() is None:
                        discard_staged(f.result())
                raise

    def _stage_one(self, blob: Path, dest: Path) -> Staged:
        try:
            return stage(blob, dest, self.link_mode, made_dirs=self.made_dirs)
        except OSError as exc:  # disk full, read-only, ...: stage() removed its temp file
            raise local_io_error(exc, dest) from None

    def _record(self, action: FileAction) -> None:
        state = self.state.entries.get(action.entry)
        if state is None or state.path != action.base:
            state = self.state.entries[action.entry] = EntryState(action.base, {})
        stat = stat_of(self.root / action.dest)
        if stat is not None:
            state.files[action.record.path] = PlacedFile(stat, digest_key(action.record))

    def _forget(self, entry: EntryPlan) -> None:
        """After an entry is placed, its state holds exactly the locked files."""
        locked = {f.path for f in iter_files(entry.artifact)}
        state = self.state.entries.get(entry.name)
        if state is not None:
            state.files = {p: f for p, f in state.files.items() if p in locked}

    def _remove_if_unchanged(self, dest: str, recorded: EntryState | None) -> bool:
        """Remove a file wbsync placed, unless it was edited since (then it is the user's now)."""
        path = self.root / dest
        stat = stat_of(path)
        if stat is None:
            return True
        if recorded is not None:
            rel = os.path.relpath(dest, recorded.path).replace(os.sep, "/")
            known = recorded.files.get(rel)
            # A new stat with the placed bytes (a copied or restored project: new inodes) is not an edit.
            if known is not None and known.stat != stat and not _holds(path, known.digest):
                return False
        remove_placed(self.root, dest)
        return True

    def _remove_orphans(self, orphans: tuple[str, ...], result: SyncResult) -> None:
        by_dest = {dest_of(e.path, p): (n, e) for n, e in self.before.entries.items() for p in e.files}
        for dest in orphans:
            entry = by_dest[dest][1] if dest in by_dest else None
            if self._remove_if_unchanged(dest, entry):
                result.removed += 1
            else:
                result.kept_modified.append(dest)
        for name in {by_dest[d][0] for d in orphans if d in by_dest}:
            self.state.entries.pop(name, None)


def _holds(path: Path, key: str) -> bool:
    """Whether the file at ``path`` has the content of ``key`` (``digest_key``: "md5:<base64>")."""
    algorithm, _, digest = key.partition(":")
    try:
        return hash_file(path, algorithm) == digest  # type: ignore[arg-type]
    except (OSError, ValueError):
        return False
