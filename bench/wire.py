"""The wire limit: fetch the same URLs from the same server with a plain parallel HTTP client
that discards the bytes (no hashing, no disk). `python -m bench.wire URLS_JSON THREADS`.

Prints one JSON line: {"transfer_s", "files", "bytes"}; ``transfer_s`` covers only the
transfers (after imports and pool set-up), so it is the best any client in Python can do
against this server with this many connections.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import urllib3

CHUNK = 1 << 20


def main() -> None:
    with open(sys.argv[1]) as f:
        urls: list[str] = json.load(f)
    threads = int(sys.argv[2])
    http = urllib3.PoolManager(maxsize=threads, block=False, retries=False,
                               timeout=urllib3.Timeout(connect=10, read=60))

    def get(url: str) -> int:
        resp = http.request("GET", url, preload_content=False)
        try:
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status} for {url}")
            return sum(len(chunk) for chunk in resp.stream(CHUNK))
        finally:
            resp.release_conn()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(get, urls))
    elapsed = time.perf_counter() - started
    print(json.dumps({"transfer_s": elapsed, "files": len(urls), "bytes": total}))


if __name__ == "__main__":
    main()
