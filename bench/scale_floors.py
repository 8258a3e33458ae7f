"""Floors for the scale case: `python -m bench.scale_floors manifest REF | walk DIR | md5 DIR`.

* manifest: ``import wandb``, ``wandb.Api().artifact(REF).manifest``: the SDK's own cost of a
  million-file manifest, which every client of the SDK pays. Prints {"manifest_s", "entries"}.
* walk: ``os.scandir`` + ``stat`` of every file under DIR, the least a no-op check can do.
* md5: md5 of every file under DIR in a pool of one process per core, in chunks: a plain
  parallel hash, what `wbsync verify` is compared with.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor


def manifest(ref: str) -> None:
    import wandb

    artifact = wandb.Api().artifact(ref)
    started = time.perf_counter()
    entries = len(artifact.manifest.entries)
    print(json.dumps({"manifest_s": time.perf_counter() - started, "entries": entries}))


def _files(folder: str) -> Iterator[str]:
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                yield from _files(entry.path)
            else:
                yield entry.path


def walk(folder: str) -> None:
    started = time.perf_counter()
    count = total = 0
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
                    count += 1
    print(json.dumps({"walk_s": time.perf_counter() - started, "files": count, "bytes": total}))


def _md5_chunk(paths: list[str]) -> int:
    for path in paths:
        with open(path, "rb") as fh:
            hashlib.md5(fh.read(), usedforsecurity=False).digest()
    return len(paths)


def md5(folder: str) -> None:
    started = time.perf_counter()
    chunk: list[str] = []
    chunks: list[list[str]] = []
    for path in _files(folder):
        chunk.append(path)
        if len(chunk) == 256:
            chunks.append(chunk)
            chunk = []
    chunks.append(chunk)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        count = sum(pool.map(_md5_chunk, chunks))
    print(json.dumps({"md5_s": time.perf_counter() - started, "files": count}))


if __name__ == "__main__":
    {"manifest": manifest, "walk": walk, "md5": md5}[sys.argv[1]](sys.argv[2])
