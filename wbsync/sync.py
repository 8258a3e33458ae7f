"""lock and sync: the flow manifest -> resolve -> lock -> plan -> fetch -> place.

Deciding is pure (resolve.lock_manifest, plan.make_plan); this module observes the disk,
carries a plan out and records what it placed. Carrying it out (``apply``) is a few phases,
each in the module of its layer: settle what is in doubt on disk (wbsync.tree.settle), confirm
with the source (wbsync.decide.agreement), fetch (wbsync.net.batches), stage
(wbsync.tree.stage), then journal and swap (wbsync.tree.swap), which records the state.
"""

from __future__ import annotations

import gc
import os
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from wbsync.core.errors import CheckFailed, LocalIOError, VanishedError, WbsyncError
from wbsync.core.models import Entry, Lock, LockedArtifact, Manifest
from wbsync.decide.agreement import check_frozen, confirm_with_source, describe, stale_report
from wbsync.decide.plan import EntryPlan, FileAction, Plan, make_plan
from wbsync.decide.resolve import PinChange, lock_manifest
from wbsync.net.batches import fetch_missing
from wbsync.repo.lockfile import write_lock
from wbsync.repo.project import Project, check_names, project_source
from wbsync.sources import Source
from wbsync.sources.listings import ensure_listings
from wbsync.store.blobs import Store, default_store_dir, store_elsewhere
from wbsync.tree import fingerprint, move, swap
from wbsync.tree.ownership import Evidence, load_evidence, state_tracked_by_git
from wbsync.tree.place import LinkMode, is_temp_name
from wbsync.tree.settle import decide_removals, settle
from wbsync.tree.stage import StagedFile, Stager, clean_entry_temps, clean_temps, state_after
from wbsync.tree.state import Delta, Disk, Stat, State
from wbsync.tree.swap import complete_pending_swap, project_lock
from wbsync.tree.verify import unlocked_files

if TYPE_CHECKING:
    from wbsync.repo.manifest_edit import NewEntry

__all__ = ["AddResult", "LockResult", "SyncResult", "complete_pending_swap", "plan_tree", "project_lock",
           "run_add", "run_lock", "run_sync"]


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
    from wbsync.repo.manifest_edit import undo, write_entry  # only `add` edits the manifest: a no-op never loads it

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
        journal_warnings: list[str] = []
        swap.complete(root, tuple(a.path for a in lock.artifacts.values()), journal_warnings)  # a killed sync's swap
        moved = move.plan_move(root, lock) if moving and not state_tracked_by_git(root) else None
        if moved is not None:
            evidence = Evidence(State())  # the fingerprint vouched for every file: no state read
            result.plan = plan = moved.plan
        else:
            evidence = load_evidence(root, ask_git=True)
            result.plan = plan = plan_tree(root, lock, selected, evidence.state)  # another sync may have done it
        result.warnings = [*journal_warnings, *evidence.warnings]
        if plan.is_noop:  # a journal or another sync finished it: only a killed run's temp files are left
            write_lock_now()
            for entry in plan.entries:
                clean_entry_temps(root, entry)
        else:
            from wbsync.store.home import writable_store  # lazy: a no-op sync never opens the store

            check_writable(root, plan)  # before the first download, not after the last one
            run = _Run(root, writable_store(), source, jobs, link_mode, force, progress, on_fetch_start,
                       on_entry or _ignore, on_placed or _ignore)
            if (elsewhere := store_elsewhere(run.store, root, link_mode)) is not None:
                result.warnings.append(elsewhere)  # once per sync, not per file

            def confirm(artifacts: list[LockedArtifact]) -> None:
                confirm_unless_confirmed(artifacts, fresh, source, manifest, str(project.lock_path))

            with _explaining_vanished(project, lock, source):
                state = apply(run, plan, result, before=evidence.state, moved=moved, confirm=confirm,
                              destinations=tuple(a.path for a in lock.artifacts.values()),
                              before_changes=write_lock_now, prune_state=selected is None)
            if moved is not None:
                if moved.complete:
                    fingerprint.record_stats(root, lock, moved.stats)
                else:
                    fingerprint.forget(root)
            elif selected is None and state is not None:
                fingerprint.record(root, lock, state)
    from wbsync.cache import auto_prune  # does nothing unless WBSYNC_CACHE_MAX_SIZE is exceeded

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


def confirm_unless_confirmed(artifacts: list[LockedArtifact], fresh: set[str], source: Source,
                             manifest: Manifest | None, lock_file: str) -> None:
    """Ask the source about the entries to place that this user has not confirmed against this
    very source before (wbsync.decide.confirmed); remember every entry it vouched for, and those
    this run resolved itself. A source without an identity is always asked."""
    if not artifacts:
        return
    from wbsync.decide.confirmed import Confirmations, fingerprint

    identity = getattr(source, "identity", None)
    where = identity() if identity is not None else None
    if where is None:
        confirm_with_source([a for a in artifacts if a.name not in fresh], source, manifest, lock_file)
        return
    known = Confirmations()

    def entry(art: LockedArtifact) -> Entry | None:
        return manifest.entries.get(art.name) if manifest else None

    asked = [a for a in artifacts if a.name not in fresh and not known.confirmed(fingerprint(where, a, entry(a)))]
    confirm_with_source(asked, source, manifest, lock_file)
    # A confirmation with the manifest's filters also covers `sync --frozen`, which trusts the lock's.
    known.remember(f for a in artifacts for f in {fingerprint(where, a, entry(a)), fingerprint(where, a, None)})


def check_writable(root: Path, plan: Plan) -> None:
    """LocalIOError (exit 2) naming the folder when a file the plan places would land in a folder
    that cannot be written: found before anything is downloaded. Each folder is looked at once,
    through its nearest existing ancestor (a folder wbsync would create is as writable as that)."""
    looked: set[Path] = set()
    for entry in plan.entries:
        folders = {posixpath.dirname(posixpath.join(a.base, a.record.path)) for a in entry.place}
        for folder in sorted(folders):
            existing = _nearest_existing(root, root / folder)
            if existing in looked:
                continue
            looked.add(existing)
            if not os.access(existing, os.W_OK):
                raise LocalIOError(_unwritable_message(root, entry, existing))


def _nearest_existing(root: Path, path: Path) -> Path:
    """The nearest folder at or above ``path``: a file in the way (an earlier version's, which the
    sync removes) is not the folder that decides."""
    while path != root and not _is_dir(path):
        path = path.parent
    return path


def _is_dir(path: Path) -> bool:
    """A name too long for the filesystem is no folder: the destination check names it (exit 4)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _unwritable_message(root: Path, entry: EntryPlan, folder: Path) -> str:
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    why = "is on a read-only filesystem" if read_only else "is not writable (permission denied)"
    shown = folder.relative_to(root).as_posix() if folder != root else "."
    return (f"{entry.name}: cannot place files under {entry.artifact.path}/: the folder {shown} ({folder}) {why}. "
            "Nothing was downloaded. Make the folder writable, or change the entry's `path` in artifacts.yaml "
            "(then `wbsync lock`); then run again.")


def plan_tree(root: Path, lock: Lock, names: frozenset[str] | None, state: State | None = None) -> Plan:
    """Observe the locked destinations on disk (lstat only) and plan against the recorded state."""
    if state is None:
        state = load_evidence(root).state
    return make_plan(lock, state, Disk(root), names)


def _ignore(*args: object) -> None:
    pass


@dataclass(frozen=True)
class _Run:
    """How a sync carries its plan out: where, from which store and source, how, and whom it tells."""

    root: Path
    store: Store
    source: Source
    jobs: int
    link_mode: LinkMode
    force: bool
    progress: Callable[[int], None] | None  # bytes arrived
    on_fetch_start: Callable[[int, int], None] | None  # files, bytes
    on_entry: Callable[[str, EntryPlan], None]  # "start", "placing" or "done"
    on_placed: Callable[[int], None]  # files staged


def apply(run: _Run, plan: Plan, result: SyncResult, *, before: State, moved: move.Move | None,
          destinations: tuple[str, ...], confirm: Callable[[list[LockedArtifact]], None],
          before_changes: Callable[[], None], prune_state: bool) -> State | None:
    """Carry a plan out as one swap: re-hash doubtful files and refuse conflicts, fetch every
    missing blob, stage every file of every entry, then rename them all under a journal.

    ``before``: what earlier syncs placed, as far as it is evidence; ``moved``: a version move
    (the state gets a delta, not a rewrite); ``destinations``: the locked folders,
    project-relative; ``confirm`` asks the source whether the lock entries to place hold what
    the lock says (wbsync.decide.agreement.confirm_with_source). Returns the state recorded
    (None for a move)."""
    # A shared store lock: a prune (which takes it exclusively) cannot delete a blob
    # between our has() and place().
    with run.store.shared():
        changing = [e for e in plan.entries if e.changes]
        for entry in changing:
            run.on_entry("start", entry)
        # Settle: re-hash what the state does not vouch for; any conflict refuses the sync here.
        settled = settle(run.root, plan.entries, jobs=run.jobs, force=run.force)
        result.restored, result.replaced = settled.restored, settled.replaced
        entries = settled.entries
        # Confirm, then fetch:
        confirm([e.artifact for e in entries if e.place])  # before any byte is fetched or placed
        before_changes()
        _fetch(run, entries, result)
        # Stage, once what killed runs left is gone and the removals are decided:
        clean_temps(run.root, entries, staged_folders_only=moved is not None)
        removals = decide_removals(run.root, [*(s for e in entries for s in e.remove), *plan.orphans], destinations)
        result.kept_modified, result.kept_not_placed = removals.kept_modified, removals.kept_not_placed
        for entry in entries:
            if entry.place:
                run.on_entry("placing", entry)
        placing = [a for e in entries for a in e.place]
        stager = Stager(run.root, run.store, run.link_mode, run.jobs, run.on_placed)
        staged = stager.stage_all(placing)
        # Journal and swap, recording the state:
        def record() -> State | Delta:
            if moved is not None:  # a version move: the state gets a delta, not a rewrite
                return moved.delta([stat for _temp, _same_inode, stat in staged])
            return state_after(before, entries, placing, staged, settled.adopted, prune_state)

        recorded = _swap(run.root, stager, placing, staged, removals.removes, record)
        for entry in changing:
            run.on_entry("done", entry)
    result.placed = len(staged)
    result.removed = len(removals.removes)
    return recorded if isinstance(recorded, State) else None


def _fetch(run: _Run, entries: list[EntryPlan], result: SyncResult) -> None:
    """Every blob the files to place need, in the store; the first entry that failed raises."""
    fetched = fetch_missing(run.store, ((e.name, e.artifact, (a.record for a in e.place)) for e in entries),
                            jobs=run.jobs, file_urls=run.source.file_urls, open_file=run.source.open_file,
                            progress=run.progress, on_start=run.on_fetch_start)
    result.fetched_files, result.fetched_bytes = fetched.files, fetched.size
    if fetched.failures:
        raise next(iter(fetched.failures.values()))


def _swap(root: Path, stager: Stager, placing: list[FileAction], staged: list[StagedFile],
          removes: list[tuple[str, Stat]], record: Callable[[], State | Delta]) -> State | Delta:
    """Build the state to record, journal it with every rename and removal, then carry the
    journal out; a sync stopped before the journal is written (a failure building the state
    included) takes its staged files back. Returns the state recorded."""
    renames = [(temp, a.dest, same_inode) for a, (temp, same_inode, _stat) in zip(placing, staged)]
    try:
        recorded = record()
        journal = swap.journal(root, renames, removes, recorded)
    except BaseException:
        stager.unstage(staged)
        raise
    swap.carry_out(root, journal)
    return recorded
