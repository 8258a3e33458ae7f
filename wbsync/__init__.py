"""wbsync: lockfile-style sync of Weights & Biases Registry artifacts.

The Python API (``wbsync.path``, ``locked``, ``sync``, ``lock``, ``use_artifacts``; see
wbsync/api.py) is imported on first use, so ``import wbsync`` loads neither YAML nor wandb.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbsync.core import DISTRIBUTION
from wbsync.core.errors import NotSyncedError, WbsyncError


def _version() -> str:
    """The installed version: the build writes it next to this file (from the git tag); a source
    tree on sys.path without a build asks the installed metadata, else says it does not know."""
    try:
        return (Path(__file__).parent / "_version.txt").read_text(encoding="utf-8").strip()
    except OSError:
        pass
    from importlib import metadata  # lazy: only a tree that was never built pays for it

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


if TYPE_CHECKING:
    from wbsync.api import lock, locked, path, paths, sync, use_artifacts  # noqa: TC004 - for type checkers

__version__ = _version()
__all__ = ["NotSyncedError", "WbsyncError", "__version__", "lock", "locked", "path", "paths", "sync",
           "use_artifacts"]


class _FromApi:
    """A function of wbsync.api, imported when first read.

    A data descriptor rather than a module ``__getattr__`` because of ``sync``: importing the
    submodule wbsync/sync.py assigns it to the package attribute ``sync``, which would replace
    the function. The assignment is ignored here; the module stays in sys.modules, so
    ``from wbsync.sync import run_sync`` works as before.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, package: object, owner: type | None = None) -> Any:
        from wbsync import api

        return getattr(api, self.name)

    def __set__(self, package: object, value: object) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError(f"wbsync.{self.name} is read-only")  # noqa: TRY004 - as for a property


class _Package(types.ModuleType):
    lock = _FromApi()
    locked = _FromApi()
    path = _FromApi()
    paths = _FromApi()
    sync = _FromApi()
    use_artifacts = _FromApi()


sys.modules[__name__].__class__ = _Package
