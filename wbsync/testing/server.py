"""`python -m wbsync.testing.server`: the fake W&B server on its own (see wbsync.testing.standalone)."""

from __future__ import annotations

from wbsync.testing.standalone import main

if __name__ == "__main__":
    main()
