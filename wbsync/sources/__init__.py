"""Sources answer three questions: what does a reference resolve to now, what files does a
version hold, and where are the bytes of each file. The rest of wbsync does not know which
source it talks to."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, Protocol

from wbsync.core.models import Entry, LineagePlan, LockedArtifact, Resolved, VersionStatus


class Source(Protocol):
    #: Shown in messages ("W&B at https://...", "mirror ./mirror").
    description: str

    def resolve(self, entry: Entry) -> Resolved:
        """Where the entry's alias or version points now, with every file (unfiltered)."""
        ...

    def file_urls(self, artifact: LockedArtifact, paths: Collection[str] | None = None) -> dict[str, str]:
        """For a locked version: artifact path -> URL, for every file or only ``paths`` (fresh
        links for the files still missing when the first ones expired; one call, not one per
        file). http(s) URLs are fetched by wbsync.net.fetch; any other URL is handed to
        ``open_file``. Raises VanishedError when the version vanished."""
        ...

    def status(self, artifact: LockedArtifact) -> VersionStatus:
        """Whether a locked version is still there and committed, and any scheduled deletion.
        Cheap: no file listing. A missing version is an answer (state "missing"), not an error."""
        ...

    def open_file(self, url: str, offset: int) -> BinaryIO:
        """Open a non-HTTP URL from ``file_urls`` positioned at ``offset`` (mirrors)."""
        ...


#: Questions asked of a source at once (resolving entries, confirming locked versions).
RESOLVE_JOBS = 8

#: `--source wandb` (or WBSYNC_SOURCE=wandb) means W&B even when the manifest names a mirror.
WANDB = "wandb"


def open_source(spec: str | None, base: str | os.PathLike[str] | None = None) -> Source:
    """W&B unless ``spec`` names a mirror: a folder (relative to ``base``, by default the current
    folder) or an fsspec URL (``s3://``, ``gs://``, ``file://``). Opening reads nothing."""
    if spec and spec != WANDB:
        from wbsync.sources.mirror import MirrorSource

        return MirrorSource(spec, base)
    from wbsync.sources.wandb_registry import WandbSource

    return WandbSource()


def deferred(choose: Callable[[], Source]) -> Source:
    """A source chosen by ``choose`` on first use: opening it reads nothing, so a no-op sync that
    never asks its source never opens one."""
    return _Deferred(choose)


# W&B runs, for lineage: W&B only (a mirror has no runs). Here so that no feature imports the
# W&B module itself; it loads wandb only inside each call.
def find_finished_run(entity: str | None, project: str, run_id: str) -> str | None:
    from wbsync.sources import wandb_registry

    return wandb_registry.find_finished_run(entity, project, run_id)


def lineage_run(plan: LineagePlan) -> AbstractContextManager[Any]:
    from wbsync.sources import wandb_registry

    return wandb_registry.lineage_run(plan)


def use_pinned(run: Any, reference: str, digest: str) -> bool:
    from wbsync.sources import wandb_registry

    return wandb_registry.use_pinned(run, reference, digest)


class _Deferred:
    def __init__(self, choose: Callable[[], Source]) -> None:
        self._choose = choose
        self._source: Source | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return self._get().description

    @description.setter
    def description(self, value: str) -> None:
        self._get().description = value

    def identity(self) -> str | None:
        """Which source this is, for remembered confirmations (None: it cannot say)."""
        found = getattr(self._get(), "identity", None)
        return found() if found is not None else None

    def resolve(self, entry: Entry) -> Resolved:
        return self._get().resolve(entry)

    def file_urls(self, artifact: LockedArtifact, paths: Collection[str] | None = None) -> dict[str, str]:
        return self._get().file_urls(artifact, paths)

    def open_file(self, url: str, offset: int) -> BinaryIO:
        return self._get().open_file(url, offset)

    def status(self, artifact: LockedArtifact) -> VersionStatus:
        return self._get().status(artifact)

    def _get(self) -> Source:
        with self._lock:  # resolve runs on several threads
            if self._source is None:
                self._source = self._choose()
            return self._source
