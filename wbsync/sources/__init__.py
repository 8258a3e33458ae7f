"""Sources answer three questions: what does a reference resolve to now, what files does a
version hold, and where are the bytes of each file. The rest of wbsync does not know which
source it talks to."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, BinaryIO, Protocol

from wbsync.models import Entry, LockedArtifact, Manifest, Resolved, VersionStatus

if TYPE_CHECKING:
    from wbsync.project import Project


class Source(Protocol):
    #: Shown in messages ("W&B at https://...", "mirror ./mirror").
    description: str

    def resolve(self, entry: Entry) -> Resolved:
        """Where the entry's alias or version points now, with every file (unfiltered)."""
        ...

    def file_urls(self, artifact: LockedArtifact, paths: Collection[str] | None = None) -> dict[str, str]:
        """For a locked version: artifact path -> URL, for every file or only ``paths`` (fresh
        links for the files still missing when the first ones expired; one call, not one per
        file). http(s) URLs are fetched by wbsync.fetch; any other URL is handed to
        ``open_file``. Raises VanishedError when the version vanished."""
        ...

    def status(self, artifact: LockedArtifact) -> VersionStatus:
        """Whether a locked version is still there and committed, and any scheduled deletion.
        Cheap: no file listing. A missing version is an answer (state "missing"), not an error."""
        ...

    def open_file(self, url: str, offset: int) -> BinaryIO:
        """Open a non-HTTP URL from ``file_urls`` positioned at ``offset`` (mirrors)."""
        ...


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


def project_source(project: Project, manifest: Manifest | None = None) -> Source:
    """The project's source, chosen on first use so that a no-op sync reads nothing more:
    ``--source`` / WBSYNC_SOURCE (relative to the current folder), else the manifest's
    ``source:`` (relative to the manifest's folder), else W&B."""
    return _Deferred(lambda: _choose(project, manifest))


def _choose(project: Project, manifest: Manifest | None) -> Source:
    if project.source:
        return open_source(project.source)
    if manifest is None and project.manifest_path.exists():  # `sync --frozen` may have no manifest
        manifest = project.manifest()
    if manifest is not None and manifest.source:
        return open_source(manifest.source, manifest.root)
    return open_source(None)


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
