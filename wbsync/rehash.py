"""Re-hash a folder against an entry's locked files, on every core, in memory flat in the file
count (a dataset of a million files).

The locked files stream in path order (``listing.iter_files``) and the folder is walked in the
same order (each folder's names sorted with a "/" after folder names, which is exactly how the
full paths sort), so missing and extra files fall out of one merge, with no set of a million
paths. Files on both sides go in chunks to worker processes: hashing small files is mostly
Python work per file (open, read, close), which threads would serialize on the GIL. Workers are
spawned, not forked (a fork of a process with threads can deadlock), and import only this module.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from wbsync.digests import hash_file
from wbsync.models import FileRecord

#: Entries with fewer files are hashed on threads in this process (no start-up cost).
PROCESS_MIN_FILES = 2000
CHUNK = 256  # files per task: large enough to amortize a round trip, small enough to spread
Item = tuple[str, int, str, str]  # path, size, algorithm, digest


@dataclass
class Differences:
    missing: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def compare_folder(folder: str, files: Iterable[FileRecord], *, count: int, jobs: int | None = None,
                   process_min: int = PROCESS_MIN_FILES) -> Differences:
    """``files`` in path order (as the lock keeps them); ``count`` says how many, to choose
    processes or threads before reading them."""
    jobs = jobs or os.cpu_count() or 1
    found = Differences()
    if count >= process_min and jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            _run(pool, jobs, folder, files, found)
    else:
        with ThreadPoolExecutor(min(jobs * 4, 8)) as threads:
            _run(threads, jobs * 4, folder, files, found)
    found.missing.sort()
    found.modified.sort()
    return found


def _run(pool: Executor, workers: int, folder: str, files: Iterable[FileRecord], found: Differences) -> None:
    window: list[Future[list[tuple[str, str]]]] = []
    chunk: list[Item] = []

    def collect(keep: int) -> None:
        while len(window) > keep:
            for path, problem in window.pop(0).result():
                (found.missing if problem == "missing" else found.modified).append(path)

    for record, on_disk in _merge(files, walk_sorted(folder)):
        if record is None:
            found.extra.append(on_disk or "")
        elif on_disk is None:
            found.missing.append(record.path)
        else:
            chunk.append((record.path, record.size, record.algorithm, record.digest))
            if len(chunk) == CHUNK:
                window.append(pool.submit(check_chunk, folder, chunk))
                chunk = []
                collect(workers * 2)  # bounded: memory stays flat however many files
    if chunk:
        window.append(pool.submit(check_chunk, folder, chunk))
    collect(0)


def _merge(files: Iterable[FileRecord], disk: Iterator[str]) -> Iterator[tuple[FileRecord | None, str | None]]:
    locked = iter(files)
    a, b = next(locked, None), next(disk, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.path < b):
            yield a, None
            a = next(locked, None)
        elif a is None or b < a.path:
            yield None, b
            b = next(disk, None)
        else:
            yield a, b
            a, b = next(locked, None), next(disk, None)


def walk_sorted(folder: str, prefix: str = "") -> Iterator[str]:
    """Every non-folder under ``folder`` (relative POSIX paths), in the order the full paths
    sort. Symlinks to folders are neither followed nor listed (as os.walk does)."""
    try:
        with os.scandir(folder) as it:
            entries = [(e.name + "/" if e.is_dir() else e.name, e) for e in it]
    except OSError:
        return
    entries.sort(key=lambda pair: pair[0])
    for key, entry in entries:
        if key.endswith("/"):
            if not entry.is_symlink():
                yield from walk_sorted(entry.path, prefix + key)
        else:
            yield prefix + entry.name


def check_chunk(folder: str, chunk: list[Item]) -> list[tuple[str, str]]:
    """(path, "missing" | "modified") for each file of ``chunk`` that does not match."""
    problems = []
    for path, size, algorithm, digest in chunk:
        problem = _check(os.path.join(folder, path), size, algorithm, digest)
        if problem:
            problems.append((path, problem))
    return problems


def _check(path: str, size: int, algorithm: str, digest: str) -> str | None:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return "missing"
        if st.st_size != size:
            return "modified"
        return None if hash_file(path, algorithm) == digest else "modified"  # type: ignore[arg-type]
    except OSError:
        return "missing"
