"""The SDK floor: what wbsync asks the SDK before its first byte. `python -m bench.sdk_floor REFERENCE`.

``import wandb``, ``wandb.Api().artifact(REFERENCE)`` and the directUrl of every file
(``artifact.files()``, 1,000 a page), as wbsync's W&B source does for a cold sync of a locked
entry, then exit. Timed by the harness as a whole process, like the commands it bounds: a cold
`wbsync sync` cannot take less than this plus the transfers.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import wandb

    artifact = wandb.Api().artifact(sys.argv[1])
    urls = {f.name: f.direct_url for f in artifact.files(per_page=1000)}
    print(json.dumps({"files": len(urls)}))


if __name__ == "__main__":
    main()
