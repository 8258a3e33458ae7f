"""The disk floor: `python -m bench.disk ROOT FILES SIZE THREADS [--fsync]`.

The filesystem work a sync into an empty store and an empty folder cannot avoid, with no
network and no hashing: write each file's bytes once into a store-like tree (a temp name, then
a rename into ``blobs/<xx>/``) from ``THREADS`` threads, then put a copy of each into a project
tree (a temp name, copy_file_range, a rename), from ``THREADS`` threads. ``--fsync`` adds one
fsync per store file. Prints {"store_s", "place_s", "total_s"}: on a filesystem where creating
a file costs a fraction of a millisecond, this, not the network, bounds a sync of many small
files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20


def main() -> None:
    root, files, size, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    fsync = "--fsync" in sys.argv[5:]
    block = os.urandom(min(size, MiB))
    store, tmp, project = (os.path.join(root, d) for d in ("blobs", "tmp", "project"))
    os.makedirs(tmp)

    def blob(i: int) -> str:
        name = f"{i:032x}"
        return os.path.join(store, name[-2:], name[:-2])

    def write(i: int) -> None:
        temp = os.path.join(tmp, f"{i}.part")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            left = size
            while left:
                left -= os.write(fd, block[: min(left, len(block))])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        target = blob(i)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(temp, target)

    def place(i: int) -> None:
        dest = os.path.join(project, f"d{i // 100:03d}", f"f{i:05d}.bin")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        temp = dest + ".tmp"
        src = os.open(blob(i), os.O_RDONLY | os.O_CLOEXEC)
        dst = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            while os.copy_file_range(src, dst, 1 << 30):
                pass
        finally:
            os.close(src)
            os.close(dst)
        os.replace(temp, dest)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(files)))
    stored = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(place, range(files)))
    done = time.perf_counter()
    print(json.dumps({"store_s": stored - started, "place_s": done - stored, "total_s": done - started}))


if __name__ == "__main__":
    main()
