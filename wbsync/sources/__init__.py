"""Sources answer three questions: what does a reference resolve to now, what files does a
version hold, and where are the bytes of each file. The rest of wbsync does not know which
source it talks to."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from wbsync.models import Entry, LockedArtifact, Resolved


class Source(Protocol):
    #: Shown in messages ("W&B at https://...", "mirror ./mirror").
    description: str

    def resolve(self, entry: Entry) -> Resolved:
        """Where the entry's alias or version points now, with every file (unfiltered)."""
        ...

    def file_urls(self, artifact: LockedArtifact) -> dict[str, str]:
        """For a locked version: artifact path -> URL. http(s) URLs are fetched by wbsync.fetch;
        any other URL is handed to ``open_file``. Raises NotFoundError when the version vanished."""
        ...

    def open_file(self, url: str, offset: int) -> BinaryIO:
        """Open a non-HTTP URL from ``file_urls`` positioned at ``offset`` (mirrors)."""
        ...


def open_source(spec: str | None) -> Source:
    """The W&B source unless ``spec`` names a mirror."""
    if spec:
        from wbsync.errors import UsageError

        raise UsageError(f"source {spec!r}: mirror sources are not available in this version of wbsync.")
    from wbsync.sources.wandb_registry import WandbSource

    return WandbSource()
