"""The SDK's own download, for comparison: `python -m bench.sdk_download REFERENCE DEST`.

``wandb.Api().artifact(REFERENCE).download(root=DEST)``, with the endpoint, key and a fresh
WANDB_CACHE_DIR from the environment the harness sets. Prints one JSON line:
{"download_s", "files", "bytes"}; ``download_s`` covers ``download()`` alone (the harness
also times the whole process, imports and resolution included, as it does for wbsync).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    reference, dest = sys.argv[1], sys.argv[2]
    import wandb

    artifact = wandb.Api().artifact(reference)
    started = time.perf_counter()
    artifact.download(root=dest)
    elapsed = time.perf_counter() - started
    files = total = 0
    for folder, _dirs, names in os.walk(dest):
        for name in names:
            files += 1
            total += os.path.getsize(os.path.join(folder, name))
    print(json.dumps({"download_s": elapsed, "files": files, "bytes": total}))


if __name__ == "__main__":
    main()
