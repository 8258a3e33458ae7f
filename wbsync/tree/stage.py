"""Stage every file a sync places, next to its destination, before any is renamed into place.

All of them or none: a failure anywhere removes every temp file and every folder made for
them, so each entry stays as it was. The swap (wbsync.tree.swap) renames what was staged; the
state it records once done is ``state_after``.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

from wbsync.core.errors import UsageError, local_io_error
from wbsync.decide.plan import EntryPlan, FileAction, digest_key
from wbsync.store.blobs import Store
from wbsync.tree.place import LinkMode, Staged, clean_temp_files, safe_join, stage
from wbsync.tree.state import EntryState, PlacedFile, Stat, State, stat_of

#: A staged file, as small as it can be: (its temp name, project-relative; whether it is the
#: store's blob itself (a hardlink); its stat, which the rename keeps).
StagedFile = tuple[str, bool, Stat | None]


class StagingStopped(Exception):
    """Another folder's staging failed (or Ctrl-C): this one stops at its next file."""


class Stager:
    """Stages the files of a sync from the store, and takes them back if the sync stops
    before the swap."""

    def __init__(self, root: Path, store: Store, link_mode: LinkMode, jobs: int,
                 on_placed: Callable[[int], None]) -> None:
        self.root, self.store, self.link_mode, self.jobs = root, store, link_mode, jobs
        self.on_placed = on_placed  # called with 1 as each file is staged
        self.made: list[Path] = []  # folders this sync created for its files
        self.made_dirs: set[Path] = set()

    def stage_all(self, actions: list[FileAction]) -> list[StagedFile]:
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
                    self.unstage(staged)
                    raise
        except BaseException:
            self._remove_made_folders()
            raise

    def unstage(self, staged: list[StagedFile]) -> None:
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


def state_after(before: State, entries: list[EntryPlan], placing: list[FileAction], staged: list[StagedFile],
                adopted: dict[str, PlacedFile], prune_state: bool) -> State:
    """What the state records once the swap is done: every locked file of every planned
    entry; kept and removed files are no longer wbsync's. ``staged`` answers ``placing``,
    the place actions of ``entries`` in order; ``adopted``: files re-hashed and kept
    (wbsync.tree.settle)."""
    answers = iter(zip(placing, staged))
    state = State(dict(before.entries))
    for entry in entries:
        files: dict[str, PlacedFile] = {}
        for action in entry.keep:
            known = adopted.get(action.dest) or entry.recorded.get(action.record.path)
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


def clean_temps(root: Path, entries: list[EntryPlan], *, staged_folders_only: bool) -> None:
    """Remove the temp files killed runs left: in every planned entry's folder, or for a
    version move (``staged_folders_only``) only in the folders it stages into (a walk of a
    million files would cost what the move saves; temp files elsewhere show as extra files,
    and the next sync, which lists every folder anyway, removes them)."""
    if not staged_folders_only:
        for entry in entries:
            clean_entry_temps(root, entry)
        return
    folders = {posixpath.dirname(a.dest): a.entry for e in entries for a in e.place}
    for rel, name in sorted(folders.items()):
        folder = safe_join(root, rel, context=name)  # no symlink on the way leads out
        if folder.is_dir():
            clean_temp_files(folder, recursive=False)


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


def _by_folder(actions: list[FileAction]) -> Iterator[list[FileAction]]:
    """The actions in runs of one destination folder each, in order. Paths sort a folder's
    files together, except around its subfolders ("a/b", "a/c/d", "a/e"): such a folder is
    two runs, which may meet in parallel; rare, and only slower."""
    for _folder, run in itertools.groupby(actions, key=lambda a: a.dest.rpartition("/")[0]):
        yield list(run)
