"""File digests in W&B's own format: standard base64 (with padding) of the raw digest.

W&B keeps one digest per file: md5, or xxh3-128 for artifacts logged with
``digest_algorithm="XXH128"``. The lock stores that string as it is, so checking bytes
against the lock never needs the network.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from typing import Protocol

import xxhash

from wbsync.core.models import Algorithm
from wbsync.core.safeio import open_regular

# 1 MiB: large enough that per-call overhead vanishes, small enough to stay in cache.
CHUNK_SIZE = 1 << 20

# Both algorithms give 16 raw bytes (24 base64 characters).
DIGEST_SIZE = 16


class Hasher(Protocol):
    """What hashlib's md5 and xxhash's xxh3_128 have in common."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


def new_hasher(algorithm: Algorithm) -> Hasher:
    if algorithm == "md5":
        # Not used for security: it names content W&B already named with md5.
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "xxh128":
        hasher: Hasher = xxhash.xxh3_128()  # xxhash ships no type hints
        return hasher
    raise ValueError(f"unknown digest algorithm {algorithm!r} (expected md5 or xxh128)")


def b64(hasher: Hasher) -> str:
    """The digest so far, as W&B writes it: base64 with padding."""
    return base64.b64encode(hasher.digest()).decode("ascii")


def hash_bytes(data: bytes, algorithm: Algorithm) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return b64(hasher)


_buffers = threading.local()  # one read buffer per thread, reused by every call in it


def _buffer() -> tuple[bytearray, memoryview]:
    pair: tuple[bytearray, memoryview] | None = getattr(_buffers, "pair", None)
    if pair is None:
        buffer = bytearray(CHUNK_SIZE)
        pair = _buffers.pair = (buffer, memoryview(buffer))
    return pair


def hash_file(path: str | os.PathLike[str], algorithm: Algorithm) -> str:
    """Digest of a file's bytes, streamed through this thread's reused buffer (no allocation
    per call or per chunk: re-checking a million small files allocated a MiB each)."""
    hasher = new_hasher(algorithm)
    buffer, view = _buffer()
    with os.fdopen(open_regular(path, os.O_RDONLY, follow=True), "rb", buffering=0) as f:  # never a FIFO
        while n := f.readinto(buffer):
            hasher.update(view[:n])
    return b64(hasher)


def hex_of(b64digest: str) -> str:
    """Hex form of a base64 digest, used to name blobs. Raises ValueError when malformed.

    ``validate=True`` refuses characters outside the base64 alphabet, so a digest from a
    remote manifest can never smuggle "/" or ".." into a store path (only hex comes out).
    """
    try:
        raw = base64.b64decode(b64digest, validate=True)
    except binascii.Error as e:
        raise ValueError(f"digest {b64digest!r} is not valid base64: {e}") from None
    if len(raw) != DIGEST_SIZE:
        raise ValueError(f"digest {b64digest!r} has {len(raw)} bytes, expected {DIGEST_SIZE}")
    return raw.hex()
