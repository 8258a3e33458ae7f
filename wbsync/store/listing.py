"""File lists of large entries, kept in the content store instead of the lock.

A lock entry with more than ``inline_max()`` files (a dataset of a million images) records
only W&B's artifact digest, its include/exclude filters, the file count and the byte total.
Its file list lives in the content store under ``listings/<artifact digest>``, and the lock
stays small: a version move changes a handful of lines, not a million.

W&B computes the artifact digest from the sorted file list alone::

    md5_hex("wandb-artifact-manifest-v1\\n" + "".join(f"{path}:{digest}\\n" for path in sorted))

(xxh128 instead of md5 for artifacts logged with ``digest_algorithm="XXH128"``), so a stored
listing holds the *whole* artifact's list (the filters apply when it is read) and is checked
against the lock's digest every time it is opened: a listing that does not match is exit 4.
The file keeps that digest text verbatim, so the check is one hash over one byte range::

    wbsync-listing 1 <md5|xxh128> <file count> <bytes of the sizes block>\\n
    <size>[ x]\\n ...                 one line per file, in path order; " x": an xxh128 digest,
                                     "-": a reference entry (s3://...), which has no bytes here
    wandb-artifact-manifest-v1\\n
    <path>:<digest>\\n ...            exactly the text W&B hashes

Reading streams it through two file positions (sizes and paths in step): memory stays flat in
the file count. ``iter_files`` is the one way to read an entry's files, inline or stored;
every command (plan, verify, diff, mirror, cache) goes through it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import xxhash

from wbsync.core import settings
from wbsync.core.errors import IntegrityError, UsageError
from wbsync.core.models import FileRecord, RemoteFile
from wbsync.core.paths import selected
from wbsync.store.blobs import default_store_dir

if TYPE_CHECKING:
    from wbsync.core.models import LockedArtifact

MAGIC = b"wbsync-listing 1"
DIGEST_HEADER = b"wandb-artifact-manifest-v1\n"
#: Entries with more files than this (after include/exclude) keep their list in the store.
INLINE_MAX = 1000
_ALGORITHMS = {"md5": lambda: hashlib.md5(usedforsecurity=False), "xxh128": xxhash.xxh3_128}


def inline_max() -> int:
    """``WBSYNC_LOCK_INLINE_MAX`` or 1000: above it, an entry's file list leaves the lock."""
    return settings.count("WBSYNC_LOCK_INLINE_MAX")


class ListingMissing(UsageError):
    """The lock names a stored listing that this machine's content store does not hold."""


@dataclass(frozen=True, eq=False)
class StoredFiles:
    """The files of a large lock entry: its stored listing, filtered. Iterating streams them in
    path order (one FileRecord at a time); ``len()`` and ``bytes`` come from the lock."""

    name: str  # the lock entry, for messages
    resolved: str
    digest: str  # W&B's artifact digest: the listing's key and its check
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    count: int
    bytes: int
    # "sha256:<hex>" of the listing's digest algorithm and sizes block (lock version 3): W&B's
    # artifact digest covers only the path:digest lines, so without it a mirror could relabel a
    # file's md5 as XXH128 (invertible on 16-byte inputs) or change its size. "" in older locks.
    sizes: str = ""

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[FileRecord]:
        return _read_filtered(self, default_listing_dir())

    def _key(self) -> tuple[object, ...]:
        return (self.digest, self.include, self.exclude, self.count, self.bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredFiles) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def iter_files(artifact: LockedArtifact) -> Iterator[FileRecord]:
    """Every locked file of ``artifact`` in path order, from the lock (small entries) or from the
    stored listing (large ones; raises ListingMissing when this machine has not fetched it, and
    IntegrityError when it does not match the lock's digest, count or bytes)."""
    return iter(artifact.files)


def is_stored(artifact: LockedArtifact) -> bool:
    return isinstance(artifact.files, StoredFiles)


# -- where listings live ----------------------------------------------------------------------


def default_listing_dir() -> Path:
    return default_store_dir() / "listings"


def listing_path(folder: Path, digest: str) -> Path:
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise IntegrityError(f"{digest!r} is not a W&B artifact digest (32 hex digits); the lock is damaged.")
    return folder / digest


def has_listing(digest: str, folder: Path | None = None) -> bool:
    return listing_path(folder or default_listing_dir(), digest).is_file()


# -- writing ------------------------------------------------------------------------------------


def sizes_digest(digest: str, folder: Path | None = None) -> str:
    """The lock's binding of a stored listing's algorithm and sizes (StoredFiles.sizes)."""
    path = listing_path(folder or default_listing_dir(), digest)
    with open(path, "rb") as fh:
        line = fh.readline(200)
        parts = line.rstrip(b"\n").split(b" ")
        if len(parts) != 5 or not parts[4].isdigit():
            raise IntegrityError(f"the stored file list {path} is not a wbsync listing; delete it and run again.")
        return _sizes_hash(fh, parts[2], int(parts[4]))


def _sizes_hash(fh: BinaryIO, algorithm: bytes, length: int) -> str:
    """sha256 over "<algorithm>\n" and the sizes block, read from ``fh``'s position."""
    hasher = hashlib.sha256(algorithm + b"\n")
    while length > 0 and (chunk := fh.read(min(1 << 20, length))):
        hasher.update(chunk)
        length -= len(chunk)
    return f"sha256:{hasher.hexdigest()}"


def write_listing(files: Iterable[RemoteFile], digest: str, what: str, folder: Path | None = None) -> Path:
    """Store the whole artifact's file list under ``digest``, after checking that it hashes to it
    (md5 or xxh128, as W&B may use either). ``files`` streams, in path order (sorted here if
    a source gave another order)."""
    folder = folder or default_listing_dir()
    target = listing_path(folder, digest)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        algorithm = _write(tmp, files, digest, what)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _VERIFIED.add(_identity(target, algorithm))
    return target


class _Unsorted(Exception):
    pass


def _write(tmp: Path, files: Iterable[RemoteFile], digest: str, what: str) -> str:
    try:
        return _write_sorted(tmp, files, digest, what)
    except _Unsorted:
        return _write_sorted(tmp, sorted(files, key=lambda f: f.record.path), digest, what)


def _write_sorted(tmp: Path, files: Iterable[RemoteFile], digest: str, what: str) -> str:
    """The sizes block goes to the final file's place after the header, the digest text to a
    second temp file, hashed with both algorithms as it is written; then the two are joined."""
    hashers = {name: new() for name, new in _ALGORITHMS.items()}
    text_tmp = tmp.with_name(tmp.name + ".text")
    count = 0
    previous = None
    try:
        with open(tmp.with_name(tmp.name + ".sizes"), "wb") as sizes, open(text_tmp, "wb") as text:
            _emit(text, hashers, DIGEST_HEADER)
            for f in files:
                r = f.record
                if previous is not None and r.path <= previous:
                    raise _Unsorted
                previous = r.path
                if "\n" in r.path or ":" in r.digest or "\n" in r.digest:
                    raise IntegrityError(f"{what}: the artifact lists {r.path!r} with digest {r.digest!r}, which "
                                         "W&B's artifact digest cannot tell apart from other files. wbsync refuses it.")
                sizes.write(b"-\n" if f.ref is not None else
                            (f"{r.size} x\n" if r.algorithm == "xxh128" else f"{r.size}\n").encode())
                _emit(text, hashers, f"{r.path}:{r.digest}\n".encode("utf-8", "surrogatepass"))
                count += 1
            sizes_len = sizes.tell()
        algorithm = next((name for name, h in hashers.items() if h.hexdigest() == digest), None)
        if algorithm is None:
            raise IntegrityError(f"{what}: the file list the source sent does not match artifact digest {digest}. "
                                 "Nothing was written. Run again; if it persists, report it to the source's owner.")
        with open(tmp, "wb") as out:
            out.write(b"%s %s %d %d\n" % (MAGIC, algorithm.encode(), count, sizes_len))
            for part in (tmp.with_name(tmp.name + ".sizes"), text_tmp):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        return algorithm
    finally:
        tmp.with_name(tmp.name + ".sizes").unlink(missing_ok=True)
        text_tmp.unlink(missing_ok=True)


def _emit(fh: BinaryIO, hashers: dict[str, Any], data: bytes) -> None:
    fh.write(data)
    for h in hashers.values():
        h.update(data)


# -- reading ------------------------------------------------------------------------------------

# Listings checked in this process, by path and file identity (a sync reads one several times;
# a file replaced since is checked again).
_VERIFIED: set[tuple[object, ...]] = set()


def _identity(path: Path, algorithm: str) -> tuple[object, ...]:
    st = os.stat(path)
    return (str(path), algorithm, st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class _Header:
    algorithm: str
    count: int
    sizes_at: int  # offset of the sizes block
    text_at: int  # offset of the digest text


def _read_filtered(files: StoredFiles, folder: Path) -> Iterator[FileRecord]:
    path = listing_path(folder, files.digest)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise ListingMissing(
            f"{files.name}: the file list of {files.resolved} ({files.count} files) is not in the content "
            f"store ({folder}). `wbsync sync` fetches it from the source (W&B or a mirror); after that, "
            "every command works offline.") from None
    with fh:
        header = _header(fh, path, files)
        _verify(fh, path, header, files)
        yield from _records(fh, path, header, files)


def _bad(path: Path, files: StoredFiles, problem: str) -> IntegrityError:
    return IntegrityError(
        f"{files.name}: the stored file list {path} {problem}, so it is not the list of {files.resolved} "
        f"(artifact digest {files.digest}). Nothing was changed. Delete that file and run `wbsync sync`, "
        "which fetches the list again from the source.")


def _header(fh: BinaryIO, path: Path, files: StoredFiles) -> _Header:
    line = fh.readline(200)
    parts = line.rstrip(b"\n").split(b" ")
    if len(parts) != 5 or b" ".join(parts[:2]) != MAGIC or parts[2] not in (b"md5", b"xxh128") \
            or not parts[3].isdigit() or not parts[4].isdigit():
        raise _bad(path, files, "is not a wbsync listing")
    return _Header(parts[2].decode(), int(parts[3]), len(line), len(line) + int(parts[4]))


def _verify(fh: BinaryIO, path: Path, header: _Header, files: StoredFiles) -> None:
    identity = (*_identity(path, header.algorithm), files.sizes)
    if identity in _VERIFIED:
        return
    if files.sizes:
        fh.seek(header.sizes_at)
        if _sizes_hash(fh, header.algorithm.encode(), header.text_at - header.sizes_at) != files.sizes:
            raise _bad(path, files, "gives its files other digest algorithms or sizes than the lock binds "
                                    f"({files.sizes}; a source that relabels an md5 digest as XXH128 does this)")
    hasher = _ALGORITHMS[header.algorithm]()
    fh.seek(header.text_at)
    while chunk := fh.read(1 << 20):
        hasher.update(chunk)
    if hasher.hexdigest() != files.digest:
        raise _bad(path, files, "does not hash to the lock's artifact digest")
    _VERIFIED.add(identity)


def _records(fh: BinaryIO, path: Path, header: _Header, files: StoredFiles) -> Iterator[FileRecord]:
    include, exclude = files.include, files.exclude
    filtered = bool(include or exclude)
    count = total = 0
    with open(path, "rb") as sizes:
        sizes.seek(header.sizes_at)
        fh.seek(header.text_at)
        if fh.readline() != DIGEST_HEADER:
            raise _bad(path, files, "has no W&B digest header")
        # zip: the sizes block is read in step with the digest text (one line each per file).
        for n, (line, size_line) in enumerate(zip(fh, sizes)):
            if n >= header.count:
                raise _bad(path, files, "lists more files than its header says")
            name, _, digest = line[:-1].decode("utf-8", "surrogatepass").rpartition(":")
            if filtered and not selected(include, exclude, name):
                continue
            try:
                if size_line[-3:] == b" x\n":
                    record = FileRecord(name, int(size_line[:-3]), digest, "xxh128")
                else:
                    record = FileRecord(name, int(size_line), digest, "md5")
            except ValueError:  # "-": a reference entry, which the lock never selects; or damage
                raise _bad(path, files, f"has no valid size for {name!r}") from None
            count += 1
            total += record.size
            yield record
    if (count, total) != (files.count, files.bytes):
        raise _bad(path, files, f"selects {count} files ({total} bytes) where the lock records "
                                f"{files.count} ({files.bytes} bytes)")
