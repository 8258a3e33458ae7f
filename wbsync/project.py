"""Where things are: the manifest, the lockfile and the project root, from the CLI's options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wbsync.errors import LockfileError, UsageError
from wbsync.lockfile import default_lock_path, read_lock
from wbsync.manifest import load_manifest
from wbsync.models import Lock, Manifest

MANIFEST = "artifacts.yaml"


def find_manifest(start: Path) -> Path | None:
    """The nearest artifacts.yaml (or lone artifacts.lock) in ``start`` or a folder above it, as
    git and uv find their project (the Python API's discovery: training code runs anywhere)."""
    for folder in (start, *start.parents):
        candidate = folder / MANIFEST
        if candidate.is_file() or default_lock_path(candidate).is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Project:
    manifest_path: Path
    lock_path: Path
    source: str | None = None  # --source / WBSYNC_SOURCE; else the manifest's `source:`

    @classmethod
    def find(cls, manifest: str | os.PathLike[str] | None = None,
             lockfile: str | os.PathLike[str] | None = None, source: str | None = None) -> "Project":
        # The CLI's default is ./artifacts.yaml (README); only the Python API searches upwards.
        m = Path(manifest) if manifest else Path(MANIFEST)
        lock = Path(lockfile) if lockfile else default_lock_path(m)
        return cls(m, lock, source or os.environ.get("WBSYNC_SOURCE") or None)

    @property
    def root(self) -> Path:
        """Entry paths are relative to the manifest's folder."""
        return self.manifest_path.resolve().parent

    def manifest(self) -> Manifest:
        """The manifest, every entry's folder checked against the project's own files."""
        from wbsync import agreement

        manifest = load_manifest(self.manifest_path)
        agreement.check_manifest(manifest, agreement.Places.of(self.manifest_path, self.lock_path))
        return manifest

    def lock(self) -> Lock | None:
        """The lock, or None; a lock that would write anywhere unsafe is refused (exit 2)."""
        from wbsync import agreement

        lock = read_lock(self.lock_path)
        if lock is not None:
            agreement.check_lock(lock, str(self.lock_path), agreement.Places.of(self.manifest_path, self.lock_path))
        return lock

    def require_lock(self) -> Lock:
        lock = self.lock()
        if lock is None:
            raise LockfileError(f"{self.lock_path}: no lockfile. Run `wbsync lock` to create it.")
        return lock


def check_names(names: tuple[str, ...], known: set[str], where: str) -> frozenset[str] | None:
    """NAMES given on the command line must all exist; None means all entries."""
    if not names:
        return None
    unknown = sorted(set(names) - known)
    if unknown:
        choices = ", ".join(sorted(known)) or "none"
        raise UsageError(f"unknown entry name(s) {', '.join(unknown)} in {where}. Known entries: {choices}.")
    return frozenset(names)
