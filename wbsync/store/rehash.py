"""Re-hash a folder against an entry's locked files, on every core, in memory flat in the file
count (a dataset of a million files).

The locked files stream in path order (``listing.iter_files``) and the folder is walked in the
same order (each folder's names sorted with a "/" after folder names, which is exactly how the
full paths sort), so missing and extra files fall out of one merge, with no set of a million
paths. Files on both sides go in chunks to worker processes: hashing small files is mostly
Python work per file (open, read, close), which threads would serialize on the GIL.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from wbsync.core.digests import hash_bytes, hash_file
from wbsync.core.models import FileRecord

#: Entries with fewer files are hashed on threads in this process (no start-up cost).
PROCESS_MIN_FILES = 2000
SMALL_FILE = 1 << 16
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
        with _Workers(folder, jobs) as workers:
            _run(workers.submit, folder, files, found)
        for path, problem in workers.problems:
            (found.missing if problem == "missing" else found.modified).append(path)
    else:
        with ThreadPoolExecutor(min(jobs * 4, 8)) as threads:
            window: list[Future[list[tuple[str, str]]]] = []

            def submit(chunk: list[Item]) -> None:
                window.append(threads.submit(check_chunk, folder, chunk))

            _run(submit, folder, files, found)
            for future in window:
                for path, problem in future.result():
                    (found.missing if problem == "missing" else found.modified).append(path)
    found.missing.sort()
    found.modified.sort()
    return found


def _run(submit: Callable[[list[Item]], None], folder: str, files: Iterable[FileRecord], found: Differences) -> None:
    chunk: list[Item] = []
    for record, on_disk in merge_sorted(files, walk_sorted(folder)):
        if record is None:
            found.extra.append(on_disk or "")
        elif on_disk is None:
            found.missing.append(record.path)
        else:
            chunk.append((record.path, record.size, record.algorithm, record.digest))
            if len(chunk) == CHUNK:
                submit(chunk)
                chunk = []
    if chunk:
        submit(chunk)


class _Workers:
    """``jobs`` processes running this module (``python -m wbsync.store.rehash FOLDER``), fed chunks of
    "size, algorithm, digest, path" lines round-robin through their stdin; each prints the files
    that do not match. Plain subprocesses rather than multiprocessing: its "spawn" re-imports
    the main module (the whole CLI) in every worker, and "fork" is unsafe in a threaded process.
    A full pipe makes the feeder wait: memory stays flat however many files."""

    def __init__(self, folder: str, jobs: int) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-m", "wbsync.store.rehash", folder], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE) for _ in range(jobs)]
        self.problems: list[tuple[str, str]] = []
        self.readers = [threading.Thread(target=self._read, args=(p,), daemon=True) for p in self.procs]
        for reader in self.readers:
            reader.start()
        self.next = 0

    def submit(self, chunk: list[Item]) -> None:
        proc = self.procs[self.next % len(self.procs)]
        self.next += 1
        assert proc.stdin is not None
        proc.stdin.write(b"".join(_encode(item) for item in chunk))

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, path = line[:1], _decode_path(line[1:-1].decode("utf-8", "surrogatepass"))
            self.problems.append((path, "missing" if kind == b"m" else "modified"))

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            if exc[0] is not None:
                proc.kill()
        for proc, reader in zip(self.procs, self.readers):
            proc.wait()
            reader.join()
        if exc[0] is None and any(p.returncode for p in self.procs):
            raise OSError(f"a verify worker failed (exit {max(p.returncode for p in self.procs)})")


def _encode(item: Item) -> bytes:
    path, size, algorithm, digest = item
    return f"{size}\t{algorithm}\t{digest}\t{_encode_path(path)}\n".encode("utf-8", "surrogatepass")


def _encode_path(path: str) -> str:
    """Paths go as they are, one a line; the rare one with a newline or backslash as JSON."""
    return "\\" + json.dumps(path) if "\n" in path or "\\" in path else path


def _decode_path(text: str) -> str:
    return json.loads(text[1:]) if text.startswith("\\") else text


def _worker(folder: str) -> None:
    out = sys.stdout.buffer
    prefix = os.path.join(folder, "")  # joined by concatenation: this loop runs once per file
    for line in sys.stdin.buffer:
        size, algorithm, digest, path = line[:-1].decode("utf-8", "surrogatepass").split("\t", 3)
        if path[:1] == "\\":
            path = _decode_path(path)
        problem = _check(prefix + path, int(size), algorithm, digest)
        if problem:
            out.write((("m" if problem == "missing" else "d") + _encode_path(path) + "\n").encode(
                "utf-8", "surrogatepass"))
    out.flush()


def merge_sorted(files: Iterable[FileRecord], disk: Iterator[str]) -> Iterator[tuple[FileRecord | None, str | None]]:
    """Pairs (locked file, the same path on disk), either side None where the other has no
    match; both sides must come in path order (``iter_files``, ``walk_sorted``)."""
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
        if size <= SMALL_FILE:  # one read: hash_file's 1 MiB buffer costs more than a small file
            with open(path, "rb", buffering=0) as fh:
                data = fh.read(size + 1)
            return None if len(data) == size and hash_bytes(data, algorithm) == digest else "modified"  # type: ignore[arg-type]
        return None if hash_file(path, algorithm) == digest else "modified"  # type: ignore[arg-type]
    except OSError:
        return "missing"


if __name__ == "__main__":
    _worker(sys.argv[1])
