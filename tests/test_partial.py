"""The in-order hash of a file fetched in ranges (wbsync.store.partial): the same digest whether the
part-done file is mapped or read, and a file shorter than recorded refused, never hashed short."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from pathlib import Path

import pytest

from wbsync.core.digests import b64, hash_bytes
from wbsync.core.errors import IntegrityError
from wbsync.core.models import FileRecord
from wbsync.store.blobs import Store
from wbsync.store.partial import PartialBlob

DATA = os.urandom(3 * mmap.ALLOCATIONGRANULARITY + 1234)
# Pieces that start and end off the mapping granularity, as the parts' frontier does.
PIECES = ((0, 1000), (1000, mmap.ALLOCATIONGRANULARITY + 1077), (mmap.ALLOCATIONGRANULARITY + 1077, len(DATA)))


def part_done_file(tmp_path: Path) -> PartialBlob:
    record = FileRecord("big.bin", len(DATA), hash_bytes(DATA, "md5"))
    blob = PartialBlob.open(Store(tmp_path / "store"), record, part_size=4096)
    blob.write_at(0, DATA)
    return blob


def hashed_in_pieces(blob: PartialBlob) -> str:
    hasher = hashlib.md5()
    for start, end in PIECES:
        blob.hash_range(hasher, start, end - start)
    return b64(hasher)


def test_pieces_hashed_through_a_mapping_give_the_whole_files_digest(tmp_path: Path) -> None:
    blob = part_done_file(tmp_path)
    assert hashed_in_pieces(blob) == blob.record.digest
    blob.close()


def test_where_files_cannot_be_mapped_the_hash_reads_them_and_gets_the_same_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = part_done_file(tmp_path)

    def no_mapping(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(errno.ENODEV, "No such device")  # what a FUSE mount without mmap answers

    monkeypatch.setattr(mmap, "mmap", no_mapping)
    assert hashed_in_pieces(blob) == blob.record.digest
    blob.close()


def test_a_part_done_file_shorter_than_recorded_is_refused_not_hashed_short(tmp_path: Path) -> None:
    blob = part_done_file(tmp_path)
    os.truncate(blob.path, len(DATA) - 10)  # damaged behind the fetcher's back
    with pytest.raises(IntegrityError, match="shorter than recorded"):
        hashed_in_pieces(blob)
    blob.close()
