"""lock and sync: the flow manifest -> resolve -> lock -> plan -> fetch -> place.

Deciding is pure (resolve.lock_manifest, plan.make_plan); this module observes the disk,
carries a plan out and records what it placed.
"""

from __future__ import annotations

import fcntl
import gc
import itertools
import os
import posixpath
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

from wbsync.core.digests import hash_file
from wbsync.core.errors import (
    CheckFailed,
    NotFoundError,
    UsageError,
    VanishedError,
    WbsyncError,
    local_io_error,
)
from wbsync.core.models import Lock, LockedArtifact, Manifest
from wbsync.core.placed import same_file, untouched
from wbsync.decide.agreement import (
    check_frozen,
    confirm_with_source,
    describe,
    stale_report,
)
from wbsync.decide.plan import EntryPlan, FileAction, Plan, Stale, digest_key, make_plan
from wbsync.decide.resolve import PinChange, lock_manifest
from wbsync.repo.lockfile import write_lock
from wbsync.repo.project import Project, check_names, project_source
from wbsync.sources import Source
from wbsync.sources.listings import ensure_listings
from wbsync.store.blobs import Store, default_store_dir
from wbsync.tree import fingerprint, move, swap
from wbsync.tree.ownership import (
    Conflict,
    Evidence,
    conflict_error,
    load_evidence,
    state_tracked_by_git,
)
from wbsync.tree.place import (
    LinkMode,
    Staged,
    clean_temp_files,
    is_temp_name,
    safe_join,
    stage,
)
from wbsync.tree.state import (
    Delta,
    EntryState,
    Observed,
    PlacedFile,
    Stat,
    State,
    check_state_dir,
    observe,
    stat_of,
)
from wbsync.tree.verify import unlocked_files

if TYPE_CHECKING:
    from wbsync.net.fetch import FetchJob
    from wbsync.repo.manifest_edit import NewEntry

#: Files whose links are asked for, and then fetched, at once (see _Actor._fetch).
FETCH_BATCH = 2000
#: A staged file, as small as it can be: (its temp name, project-relative; whether it is the
#: store's blob itself (a hardlink); its stat, which the rename keeps).
StagedFile = tuple[str, bool, Stat | None]


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
    kept_not_placed: list[str] = field(default_factory=list)  # recorded, but another file stands there now
    restored: list[str] = field(default_factory=list)  # wbsync's files edited in place: put back
    replaced: list[str] = field(default_factory=list)  # others' files replaced (`--force`)
    extra: list[str] = field(default_factory=list)  # in a locked folder, not locked: `verify` lists them
    warnings: list[str] = field(default_factory=list)
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


@dataclass
class AddResult:
    manifest: str
    created: bool  # the manifest did not exist before
    entry: NewEntry
    lock: LockResult


def run_add(project: Project, entry: NewEntry) -> AddResult:
    """`wbsync add`: write the entry into the manifest, then lock it; if locking fails, put the
    manifest back."""
    from wbsync.repo.manifest_edit import (  # only `add` edits the manifest: a no-op never loads it
        undo,
        write_entry,
    )

    written = write_entry(project, entry)
    try:
        result = run_lock(project, (entry.name,))
    except (WbsyncError, KeyboardInterrupt) as error:
        undone = undo(written)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise type(error)(f"{error.message} {undone}") from error
    return AddResult(str(project.manifest_path), written.before is None, entry, result)


def _stale_message(project: Project, missing: bool, stale: dict[str, str]) -> str:
    if missing:
        return f"{project.lock_path}: no lockfile. Run `wbsync lock` and commit {project.lock_path.name}."
    return (f"{project.lock_path} is out of date with {project.manifest_path} for: {describe(stale)}. "
            "Run `wbsync lock` and commit the lockfile.")


def run_sync(project: Project, names: tuple[str, ...] = (), *, locked: bool = False, frozen: bool = False,
             dry_run: bool = False, jobs: int = 64, link_mode: LinkMode = "auto",
             progress: Callable[[int], None] | None = None, on_fetch_start: Callable[[int, int], None] | None = None,
             source: Source | None = None, force: bool = False,
             on_entry: Callable[[str, EntryPlan], None] | None = None,
             on_placed: Callable[[int], None] | None = None) -> SyncResult:
    """``progress`` (bytes arrived), ``on_fetch_start`` (files, bytes), ``on_entry`` ("start",
    "placing" or "done", with the entry's plan) and ``on_placed`` (files staged) report what a
    running sync does; wbsync.progress draws them."""
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
            lock_result = LockResult(lock, changes, False)
        else:
            lock = old
    selected = check_names(names, set(lock.artifacts), str(project.lock_path))
    root = project.root
    with _explaining_vanished(project, lock, source):
        if ensure_listings(lock, source, selected):  # large entries' file lists: fetched once, then offline
            gc.collect()  # the SDK's manifest objects hold reference cycles: free them before the plan
    whole = selected is None and not dry_run and not swap.pending(root)
    fast = whole and fingerprint.unchanged(root, lock) is not None
    # A version move of a large entry since the last sync: planned (in proportion to what
    # changed) under the project lock only, not first in full to find out there is work.
    moving = whole and not fast and move.candidate(root, lock)
    if fast or moving:  # fast: the tree is exactly as the last sync left it: no state, no plan
        plan = Plan(tuple(EntryPlan(n, a) for n, a in sorted(lock.artifacts.items())))
        result = SyncResult(lock_result, plan, dry_run=dry_run)
    else:
        evidence = load_evidence(root)
        plan = plan_tree(root, lock, selected, evidence.state)
        result = SyncResult(lock_result, plan, dry_run=dry_run, warnings=list(evidence.warnings))

    moved: move.Move | None = None

    def write_lock_now(used: bool = True) -> None:  # after every check that can refuse the sync, before any change
        if lock_result is not None and not dry_run:
            lock_result.written = write_lock(project.lock_path, lock)
        # Tell the store this lock needs its blobs (a prune then keeps them), no-op syncs too:
        # it writes nothing unless the lock changed.
        _register(project, lock, used=used, placed=moved)

    if dry_run:
        return result
    if not moving and plan.is_noop and not swap.pending(root):
        result.extra = unlocked_files(root, plan)
        if not any(is_temp_name(posixpath.basename(p)) for p in result.extra):  # else: clean a killed run's
            write_lock_now(used=False)
            if not fast and selected is None and not result.warnings:
                fingerprint.record(root, lock, evidence.state)  # the next no-op skips the state
            return result
    with project_lock(root):
        swap.complete(root)  # a swap a killed sync left: finish it before looking at the tree
        moved = move.plan_move(root, lock) if moving and not state_tracked_by_git(root) else None
        if moved is not None:
            evidence = Evidence(State())  # the fingerprint vouched for every file: no state read
            result.plan = plan = moved.plan
        else:
            evidence = load_evidence(root, ask_git=True)
            result.plan = plan = plan_tree(root, lock, selected, evidence.state)  # another sync may have done it
        result.warnings = list(evidence.warnings)
        if plan.is_noop:  # a journal or another sync finished it: only a killed run's temp files are left
            write_lock_now()
            for entry in plan.entries:
                clean_entry_temps(root, entry)
        else:
            actor = _Actor(root, Store(default_store_dir()), jobs, link_mode, progress, on_fetch_start, source,
                           evidence.state, force, tuple(a.path for a in lock.artifacts.values()))
            actor.on_entry, actor.on_placed = on_entry or _ignore, on_placed or _ignore
            actor.move = moved
            actor.confirm = lambda arts: confirm_with_source([a for a in arts if a.name not in fresh], source,
                                                             manifest, str(project.lock_path))
            with _explaining_vanished(project, lock, source):
                actor.apply(plan, result, write_lock_now, prune_state=selected is None)
            if moved is not None:
                if moved.complete:
                    fingerprint.record_stats(root, lock, moved.stats)
                else:
                    fingerprint.forget(root)
            elif selected is None and actor.state is not None:
                fingerprint.record(root, lock, actor.state)
    from wbsync.cache import (
        auto_prune,  # does nothing unless WBSYNC_CACHE_MAX_SIZE is exceeded
    )

    auto_prune(Store(default_store_dir()))
    result.extra = unlocked_files(root, plan)
    return result


@contextmanager
def _explaining_vanished(project: Project, lock: Lock, source: Source) -> Iterator[None]:
    """A locked version that vanished: say where the alias points now and which command fixes it."""
    try:
        yield
    except VanishedError as exc:
        from wbsync.decide.outdated import explain_vanished

        raise explain_vanished(exc, _manifest_if_any(project), lock.artifacts[exc.name], source) from None


def _manifest_if_any(project: Project) -> Manifest | None:
    """The manifest, for a message only: `sync --frozen` may run without one (or with a broken one)."""
    try:
        return project.manifest() if project.manifest_path.exists() else None
    except WbsyncError:
        return None


def _register(project: Project, lock: Lock, used: bool, placed: move.Move | None = None) -> None:
    from wbsync.cache import register_lock

    keys = None if placed is None else placed.blob_keys()
    register_lock(Store(default_store_dir()), project.lock_path, lock, used=used, placed=keys)


def plan_tree(root: Path, lock: Lock, names: frozenset[str] | None, state: State | None = None) -> Plan:
    """Observe the locked destinations on disk (lstat only) and plan against the recorded state."""
    if state is None:
        state = load_evidence(root).state
    return make_plan(lock, state, _Disk(root), names)


class _Disk(Mapping[str, Observed]):
    """What stands at each project-relative destination, observed (one lstat) when the planner
    asks for it: no dict of every locked path and its stat, whose size grows with the file count."""

    def __init__(self, root: Path) -> None:
        # Plain string concatenation: pathlib costs ~20 us per path, a third of a 10k-file no-op.
        self.prefix = f"{root}{os.sep}"

    def __getitem__(self, dest: str) -> Observed:
        return observe(self.prefix + dest)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the tree is observed path by path, not listed")

    def __len__(self) -> int:
        raise TypeError("the tree is observed path by path, not counted")


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """One sync at a time per project: a second one waits here, then re-plans."""
    folder = check_state_dir(root)
    with open(folder / "sync.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _ignore(*args: object) -> None:
    pass


def complete_pending_swap(root: Path) -> bool:
    """Finish a swap a killed sync left (``verify`` asks before it looks); False if there was none."""
    if not swap.pending(root):
        return False
    with project_lock(root):
        return swap.complete(root)


class _Actor:
    """Carries a plan out as one swap: re-hash doubtful files and refuse conflicts, fetch every
    missing blob, stage every file of every entry, then rename them all under a journal."""

    def __init__(self, root: Path, store: Store, jobs: int, link_mode: LinkMode,
                 progress: Callable[[int], None] | None, on_fetch_start: Callable[[int, int], None] | None,
                 source: Source, before: State, force: bool, destinations: tuple[str, ...]) -> None:
        self.root, self.store, self.jobs, self.link_mode = root, store, jobs, link_mode
        self.progress, self.on_fetch_start, self.source = progress, on_fetch_start, source
        self.before = before  # what earlier syncs placed, as far as it is evidence
        self.force = force
        self.destinations = destinations  # the locked folders, project-relative
        self.made: list[Path] = []  # folders this sync created for its files
        self.made_dirs: set[Path] = set()
        self.adopted: dict[str, PlacedFile] = {}  # dest -> new record, for files re-hashed and kept
        self.state: State | None = None  # what the state records once the swap is done
        self.move: move.Move | None = None  # a version move: the state gets a delta, not a rewrite
        self.on_entry: Callable[[str, EntryPlan], None] = _ignore
        self.on_placed: Callable[[int], None] = _ignore
        # Asks the source whether the lock entries to place hold what the lock says (run_sync
        # sets it: wbsync.decide.agreement.confirm_with_source).
        self.confirm: Callable[[list[LockedArtifact]], None] = lambda artifacts: None

    def apply(self, plan: Plan, result: SyncResult, before_changes: Callable[[], None], *,
              prune_state: bool) -> None:
        # A shared store lock: a prune (which takes it exclusively) cannot delete a blob
        # between our has() and place().
        with self.store.shared():
            changing = [e for e in plan.entries if e.changes]
            for entry in changing:
                self.on_entry("start", entry)
            conflicts: list[Conflict] = []
            entries = [self._settle(e, result, conflicts) for e in plan.entries]
            refused = [c for c in conflicts if not (self.force and c.forceable)]
            if refused:
                raise conflict_error(refused, self.force)
            result.replaced = [c.dest for c in conflicts]
            self.confirm([e.artifact for e in entries if e.place])  # before any byte is fetched or placed
            before_changes()
            failures = self._fetch(entries, result)
            if failures:
                raise next(iter(failures.values()))
            self._clean_temps(entries)
            removes = self._decide_removals([*(s for e in entries for s in e.remove), *plan.orphans], result)
            for entry in entries:
                if entry.place:
                    self.on_entry("placing", entry)
            placing = [a for e in entries for a in e.place]
            staged = self._stage_all(placing)
            renames = [(temp, a.dest, same_inode) for a, (temp, same_inode, _stat) in zip(placing, staged)]
            state: State | Delta
            if self.move is not None:
                state = self.move.delta([stat for _temp, _same_inode, stat in staged])
            else:
                state = self.state = self._new_state(entries, placing, staged, prune_state)
            try:
                journal = swap.journal(self.root, renames, removes, state)
            except BaseException:
                self._unstage(staged)
                raise
            swap.carry_out(self.root, journal)
            for entry in changing:
                self.on_entry("done", entry)
        result.placed = len(staged)
        result.removed = len(removes)

    def _clean_temps(self, entries: list[EntryPlan]) -> None:
        """Remove the temp files killed runs left: in every planned entry's folder, or for a
        version move only in the folders it stages into (a walk of a million files would cost
        what the move saves; temp files elsewhere show as extra files, and the next sync,
        which lists every folder anyway, removes them)."""
        if self.move is None:
            for entry in entries:
                clean_entry_temps(self.root, entry)
            return
        folders = {posixpath.dirname(a.dest): a.entry for e in entries for a in e.place}
        for rel, name in sorted(folders.items()):
            folder = safe_join(self.root, rel, context=name)  # no symlink on the way leads out
            if folder.is_dir():
                clean_temp_files(folder, recursive=False)

    # -- deciding -------------------------------------------------------------------------

    def _settle(self, entry: EntryPlan, result: SyncResult, conflicts: list[Conflict]) -> EntryPlan:
        """Files on disk that the state does not vouch for: re-hash. The locked bytes are kept
        (and recorded, so the next sync trusts them); wbsync's own file with other bytes is
        restored; anyone else's is a conflict. Whatever stands in the way is a conflict too."""
        for action, kind in entry.blocked:
            conflicts.append(self._blocker(action.dest) if kind == "blocked" else Conflict(action.dest, kind))
        forced = [a for a, kind in entry.blocked if kind == "symlink"] if self.force else []
        if not entry.check:
            return replace(entry, place=entry.place + tuple(forced), blocked=())
        with ThreadPoolExecutor(min(self.jobs, 8)) as pool:
            seen = list(pool.map(self._hash_check, entry.check))
        keep, place = list(entry.keep), list(entry.place) + forced
        for action, (stat, same) in zip(entry.check, seen):
            known = entry.recorded.get(action.record.path)
            if same and stat is not None:
                keep.append(action)
                self.adopted[action.dest] = PlacedFile(stat, digest_key(action.record))
            elif known is not None and stat is not None and same_file(known.stat, stat):
                place.append(action)
                result.restored.append(action.dest)
            else:
                conflicts.append(Conflict(action.dest, "file"))
                place.append(action)
        return replace(entry, keep=tuple(keep), check=(), place=tuple(place), blocked=())

    def _hash_check(self, action: FileAction) -> tuple[Stat | None, bool]:
        path = self.root / action.dest
        stat = stat_of(path)
        try:
            return stat, hash_file(path, action.record.algorithm) == action.record.digest
        except OSError:
            return stat, False

    def _blocker(self, dest: str) -> Conflict:
        """The file standing where a folder of ``dest`` should be."""
        parts = dest.split("/")
        for i in range(1, len(parts)):
            head = "/".join(parts[:i])
            if os.path.lexists(self.root / head) and not (self.root / head).is_dir():
                return Conflict(head, "blocked")
        return Conflict(dest, "blocked")

    def _decide_removals(self, stale: list[Stale], result: SyncResult) -> list[tuple[str, Stat]]:
        """Files wbsync placed that are no longer locked: removed only while they are still the
        file it placed (same identity) with the bytes it placed; otherwise kept and reported."""
        removes: list[tuple[str, Stat]] = []
        for dest, placed in stale:
            path = self.root / dest
            seen = stat_of(path)
            if seen is None:
                continue  # gone already (or something else stands there: not ours either way)
            if not same_file(placed.stat, seen) or not self._may_remove(dest, placed.stat):
                result.kept_not_placed.append(dest)
            elif untouched(placed.stat, seen) or _holds(path, placed.digest):
                removes.append((dest, seen))
            else:
                result.kept_modified.append(dest)
        return removes

    def _may_remove(self, dest: str, recorded: Stat) -> bool:
        """A record without a device (a state written before devices were recorded, or by
        hand) proves ownership only inside the folders the lock names now: an inode number
        alone is too easy to match by chance (or on purpose) anywhere else."""
        return len(recorded) >= 4 or any(dest.startswith(f"{p}/") for p in self.destinations)

    # -- fetching ------------------------------------------------------------------------

    def _fetch(self, entries: list[EntryPlan], result: SyncResult) -> dict[str, WbsyncError]:
        """Fetch every blob the placed files need and the store lacks, each once, in batches of
        ``FETCH_BATCH`` files: the links of one batch are asked for (the next batch's while this
        one downloads) and fetched, so neither the links nor the jobs of a million files are
        ever held at once, and no link waits long enough to expire."""
        todo: list[tuple[EntryPlan, list[FileAction]]] = []
        queued: dict[str, set[str]] = {}  # algorithm -> digests: the same bytes are fetched once
        for entry in entries:
            actions = []
            for a in entry.place:
                seen = queued.setdefault(a.record.algorithm, set())
                if a.record.digest not in seen and not self.store.has(a.record):
                    seen.add(a.record.digest)  # the record's own string: the set holds no copies
                    actions.append(a)
            if actions:
                todo.append((entry, actions))
        del queued
        if not todo:
            return {}
        from wbsync.net.fetch import (  # urllib3: a sync that fetches nothing never pays for it
            Fetcher,
        )

        self.store.clean_tmp()  # leftovers of killed runs (only files no live process holds)
        source = self.source
        result.fetched_files = sum(len(actions) for _e, actions in todo)
        result.fetched_bytes = sum(a.record.size for _e, actions in todo for a in actions)
        if self.on_fetch_start:
            self.on_fetch_start(result.fetched_files, result.fetched_bytes)
        artifacts = {e.name: e.artifact for e, _ in todo}
        fetcher = Fetcher(self.store, self.jobs, progress=self.progress, opener=source.open_file,
                          renew=lambda name, paths: source.file_urls(artifacts[name], paths))
        batches = [(e, actions[at:at + FETCH_BATCH]) for e, actions in todo
                   for at in range(0, len(actions), FETCH_BATCH)]
        failures: dict[str, WbsyncError] = {}
        with _collector_skips_what_exists(), ThreadPoolExecutor(1, thread_name_prefix="wbsync-links") as links:
            def ask(i: int) -> Future[dict[str, str]]:
                entry, batch = batches[i]
                return links.submit(source.file_urls, entry.artifact, [a.record.path for a in batch])

            upcoming = ask(0)
            for i, (entry, batch) in enumerate(batches):
                current, upcoming = upcoming, (ask(i + 1) if i + 1 < len(batches) else None)
                if entry.name in failures:
                    continue  # that entry is lost already: spend nothing more on it
                try:
                    urls = current.result()
                except WbsyncError as exc:
                    failures[entry.name] = exc
                    continue
                jobs = [self._job(entry, a, urls.get(a.record.path, "")) for a in batch]
                del urls
                failures.update(fetcher.fetch_all(j for j in jobs if self._has_url(j, failures)))
        return failures

    @staticmethod
    def _job(entry: EntryPlan, action: FileAction, url: str) -> FetchJob:
        from wbsync.net.fetch import FetchJob

        return FetchJob(entry.name, action.record, url)

    def _has_url(self, job: FetchJob, failures: dict[str, WbsyncError]) -> bool:
        if job.url:
            return True
        failures.setdefault(job.artifact, NotFoundError(
            f"{job.artifact}: the source no longer lists {job.record.path!r} for this version. "
            "Run `wbsync lock --upgrade` to re-resolve."))
        return False

    # -- staging -------------------------------------------------------------------------

    def _stage_all(self, actions: list[FileAction]) -> list[StagedFile]:
        """Stage every file of every entry, or none: on any failure the temp files and the
        folders made for them are removed, and every entry is as it was. The answer is in the
        order of ``actions``."""
        # Every destination is checked (symlink escapes) before the first file is written.
        folders: dict[Path, None] = {}
        for a in actions:
            folders[safe_join(self.root, a.dest, context=a.entry).parent] = None
        made = self.made = []
        staged: list[StagedFile] = []
        try:
            self._make_folders(folders, made)
            threads = min(self.jobs, 8)
            stop = threading.Event()
            with ThreadPoolExecutor(threads, thread_name_prefix="wbsync-place") as pool:
                # One task per folder: its files are staged one after another by one thread,
                # folders in parallel. Creating a file holds its folder's lock, so threads
                # creating in one folder only queue (and spin) behind each other: 2,000 files of
                # 4 KiB in one folder took 0.9-2 s on 8 or 2 threads, 0.5 s on one (ext4).
                # A bounded window of futures, not one per file: a million Futures alone are
                # over a GB.
                window: deque[Future[list[StagedFile]]] = deque()
                try:
                    for run in _by_folder(actions):
                        if len(window) >= 4 * threads:
                            staged.extend(window.popleft().result())
                        window.append(pool.submit(self._stage_run, run, stop))
                    while window:
                        staged.extend(window.popleft().result())
                    return staged
                except BaseException:
                    stop.set()
                    for f in window:
                        f.cancel()
                    for f in window:
                        if not f.cancelled() and f.exception() is None:
                            staged.extend(f.result())
                    self._unstage(staged)
                    raise
        except BaseException:
            self._remove_made_folders()
            raise

    def _unstage(self, staged: list[StagedFile]) -> None:
        for temp, _same_inode, _stat in staged:
            discard_staged_name(self.root, temp)
        self._remove_made_folders()

    def _remove_made_folders(self) -> None:
        for folder in reversed(self.made):  # the deepest were made last
            try:
                folder.rmdir()
            except OSError:
                pass
        self.made = []

    def _make_folders(self, folders: Iterable[Path], made: list[Path]) -> None:
        known: set[Path] = set()
        for folder in folders:
            parent = folder
            if parent in known:
                continue
            missing = []
            while not folder.is_dir():
                missing.append(folder)
                folder = folder.parent
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:
                    raise UsageError(f"cannot create folder {folder}: a file is in the way; move it aside") from None
                except OSError as exc:
                    raise local_io_error(exc, folder) from None
                made.append(folder)
            known.add(parent)
        self.made_dirs = known

    def _stage_run(self, actions: list[FileAction], stop: threading.Event) -> list[StagedFile]:
        """Stage files of one folder in order; on failure (or once ``stop`` is set) remove what
        this run staged and raise."""
        done: list[StagedFile] = []
        try:
            for action in actions:
                if stop.is_set():
                    raise StagingStopped()
                done.append(self._stage_one(action))
        except BaseException:
            for temp, _same_inode, _stat in done:
                discard_staged_name(self.root, temp)
            raise
        return done

    def _stage_one(self, action: FileAction) -> StagedFile:
        """Stage one file; the answer is small (a sync holds one per placed file until the swap)."""
        blob, dest = self.store.blob_path(action.record), Path(f"{self.root}{os.sep}{action.dest}")
        try:
            staged = stage(blob, dest, self.link_mode, made_dirs=self.made_dirs)
        except OSError as exc:  # disk full, read-only, ...: stage() removed its temp file
            raise local_io_error(exc, dest) from None
        self.on_placed(1)
        # A rename keeps the inode and mtime: this is what the state records once it is done.
        return _rel_temp(action, staged), staged.mode == "hardlink", stat_of(staged.temp)

    def _new_state(self, entries: list[EntryPlan], placing: list[FileAction], staged: list[StagedFile],
                   prune_state: bool) -> State:
        """What the state records once the swap is done: every locked file of every planned
        entry; kept and removed files are no longer wbsync's. ``staged`` answers ``placing``,
        the place actions of ``entries`` in order."""
        answers = iter(zip(placing, staged))
        state = State(dict(self.before.entries))
        for entry in entries:
            files: dict[str, PlacedFile] = {}
            for action in entry.keep:
                known = self.adopted.get(action.dest) or entry.recorded.get(action.record.path)
                if known is not None:
                    files[action.record.path] = known
            for action, (_temp, _same_inode, stat) in itertools.islice(answers, len(entry.place)):
                if stat is not None:
                    files[action.record.path] = PlacedFile(stat, digest_key(action.record))
            state.entries[entry.name] = EntryState(entry.artifact.path, files)
        if prune_state:
            locked = {e.name for e in entries}
            state.entries = {n: e for n, e in state.entries.items() if n in locked}
        return state


def clean_entry_temps(root: Path, entry: EntryPlan) -> None:
    """Remove the temp files killed runs left in an entry's folder."""
    # The lock's path is checked like any destination before even the cleanup touches it.
    folder = safe_join(root, entry.artifact.path, context=entry.name)
    if folder.is_dir():
        clean_temp_files(folder)


def _rel_temp(action: FileAction, staged: Staged) -> str:
    return posixpath.join(posixpath.dirname(action.dest), staged.temp.name)


def discard_staged_name(root: Path, temp: str) -> None:
    """Remove a staged file by its project-relative temp name."""
    Path(f"{root}{os.sep}{temp}").unlink(missing_ok=True)


def _holds(path: Path, key: str) -> bool:
    """Whether the file at ``path`` has the content of ``key`` (``digest_key``: "md5:<base64>")."""
    algorithm, _, digest = key.partition(":")
    try:
        return hash_file(path, algorithm) == digest  # type: ignore[arg-type]
    except (OSError, ValueError):
        return False


class StagingStopped(Exception):
    """Another folder's staging failed (or Ctrl-C): this one stops at its next file."""


def _by_folder(actions: list[FileAction]) -> Iterator[list[FileAction]]:
    """The actions in runs of one destination folder each, in order. Paths sort a folder's
    files together, except around its subfolders ("a/b", "a/c/d", "a/e"): such a folder is
    two runs, which may meet in parallel; rare, and only slower."""
    for _folder, run in itertools.groupby(actions, key=lambda a: a.dest.rpartition("/")[0]):
        yield list(run)


@contextmanager
def _collector_skips_what_exists() -> Iterator[None]:
    """Exempt every object alive now (the SDK's modules and classes, the plan) from the cyclic
    garbage collector until the block ends. Downloads allocate fast, and each collection of the
    oldest generation would walk those hundreds of thousands of objects again: with this, a cold
    sync of 2,000 small files on ``cloud`` spent 0.4-0.5 s less CPU (of ~5). ``unfreeze`` hands
    them back, so a program calling wbsync keeps its collections as they were."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
