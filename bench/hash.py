"""The hash floor: `python -m bench.hash FILES SIZE THREADS [md5|xxh128]`.

Digest FILES in-memory buffers of SIZE bytes (1 MiB updates, THREADS threads), as any client
that verifies what it downloads must: no network, no disk. Prints {"hash_s"}. On two cores,
md5 of large files is slower than this server's wire, so it bounds a verified download.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import xxhash

MiB = 1 << 20


def main() -> None:
    files, size, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    algorithm = sys.argv[4] if len(sys.argv) > 4 else "md5"
    block = memoryview(os.urandom(min(size, MiB)))

    def digest(_: int) -> bytes:
        hasher = hashlib.md5(usedforsecurity=False) if algorithm == "md5" else xxhash.xxh3_128()
        left = size
        while left:
            n = min(left, len(block))
            hasher.update(block[:n])
            left -= n
        return hasher.digest()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(digest, range(files)))
    print(json.dumps({"hash_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
