"""Where things are: the manifest, the lockfile and the project root, from the CLI's options."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from wbsync.core.errors import LockfileError, ManifestError, UsageError
from wbsync.core.models import Lock, Manifest
from wbsync.decide import agreement
from wbsync.repo.lockfile import default_lock_path, read_lock
from wbsync.repo.manifest import load_manifest
from wbsync.sources import Source, deferred, open_source

MANIFEST = "artifacts.yaml"
_EXAMPLE_ADD = "wbsync add wandb-registry-model/phi3:production --path models/phi3"


def find_manifest(start: Path, *, lock_only: bool = True) -> Path | None:
    """The nearest artifacts.yaml in ``start`` or a folder above it, as git, uv and npm find
    their files: the search stops at the root of the git repository ``start`` is in (a folder
    holding ``.git``), or at the filesystem root outside one, so a project never picks up a
    manifest from outside its repository. With ``lock_only``, a folder holding only
    artifacts.lock counts too (an image that ships the lock and the files, without the manifest)."""
    for folder in search_folders(start):
        candidate = folder / MANIFEST
        if candidate.is_file() or (lock_only and default_lock_path(candidate).is_file()):
            return candidate
    return None


def search_folders(start: Path) -> list[Path]:
    """``start`` and the folders above it, up to and including the git repository's root."""
    folders = []
    for folder in (start, *start.parents):
        folders.append(folder)
        if (folder / ".git").exists():  # a folder, or a file in worktrees and submodules
            break
    return folders


def not_found_message(start: Path, needs: str = "manifest") -> str:
    """Where the search looked and how to start a project; ``needs`` is "manifest" or "lock"."""
    top = search_folders(start)[-1]
    where = (f"in {start} or a folder above it up to the repository root {top}" if (top / ".git").exists()
             else f"in {start} or any folder above it")
    what = f"no {MANIFEST}" if needs == "manifest" else f"neither {default_lock_path(MANIFEST)} nor {MANIFEST}"
    return (f"{what} {where}. Start one with `{_EXAMPLE_ADD}` (it writes {MANIFEST} here and locks "
            "the entry), or pass -m PATH to use a manifest elsewhere.")


@dataclass(frozen=True)
class Project:
    manifest_path: Path
    lock_path: Path
    source: str | None = None  # --source / WBSYNC_SOURCE; else the manifest's `source:`
    #: Where the search for artifacts.yaml started, when it found none (messages say so).
    searched_from: Path | None = None

    @classmethod
    def find(cls, manifest: str | os.PathLike[str] | None = None,
             lockfile: str | os.PathLike[str] | None = None, source: str | None = None) -> "Project":
        """Exactly the given manifest, else ./artifacts.yaml (no search: ``discover`` searches)."""
        m = Path(manifest) if manifest else Path(MANIFEST)
        lock = Path(lockfile) if lockfile else default_lock_path(m)
        return cls(m, lock, source or os.environ.get("WBSYNC_SOURCE") or None)

    @classmethod
    def discover(cls, manifest: str | os.PathLike[str] | None = None,
                 lockfile: str | os.PathLike[str] | None = None, source: str | None = None,
                 start: Path | None = None, *, lock_only: bool = True, relative: bool = False) -> "Project":
        """The project of an explicit ``manifest`` (it wins), else of the nearest artifacts.yaml
        found by ``find_manifest`` from ``start`` (the current folder). The CLI and the Python
        API both call this: one rule. ``lock_only``: the caller needs only the lockfile, so a
        lone artifacts.lock counts. Found nothing: ./artifacts.yaml, whose absence
        ``manifest()`` and ``require_lock()`` report with where the search looked. ``relative``:
        name a found manifest relative to the current folder (``../artifacts.yaml``), for messages."""
        if manifest is not None:
            return cls.find(manifest, lockfile, source)
        here = start or Path.cwd()
        found = find_manifest(here, lock_only=lock_only)
        if found is None:
            missing = here / MANIFEST
            project = cls.find(os.path.relpath(missing) if relative else missing, lockfile, source)
            return dataclasses.replace(project, searched_from=here)
        return cls.find(os.path.relpath(found) if relative else found, lockfile, source)

    @property
    def elsewhere(self) -> bool:
        """The manifest is not in the current folder (the CLI then says which one it uses)."""
        return Path(os.path.abspath(self.manifest_path)).parent != Path.cwd()

    @property
    def root(self) -> Path:
        """Entry paths are relative to the manifest's folder."""
        return self.manifest_path.resolve().parent

    def manifest(self) -> Manifest:
        """The manifest, every entry's folder checked against the project's own files."""
        if self.searched_from is not None and not self.manifest_path.exists():
            raise ManifestError(not_found_message(self.searched_from))
        manifest = load_manifest(self.manifest_path)
        agreement.check_manifest(manifest, agreement.Places.of(self.manifest_path, self.lock_path))
        return manifest

    def lock(self) -> Lock | None:
        """The lock, or None; a lock that would write anywhere unsafe is refused (exit 2)."""
        lock = read_lock(self.lock_path)
        if lock is not None:
            agreement.check_lock(lock, str(self.lock_path), agreement.Places.of(self.manifest_path, self.lock_path))
        return lock

    def require_lock(self) -> Lock:
        lock = self.lock()
        if lock is not None:
            return lock
        if self.searched_from is not None and not self.manifest_path.exists():
            raise ManifestError(not_found_message(self.searched_from, needs="lock"))
        if not self.manifest_path.exists():  # `wbsync lock` would fail too: say what would work
            raise LockfileError(f"{self.lock_path}: no lockfile, and no manifest ({self.manifest_path}) to "
                                f"lock. Pass --lockfile PATH, or start a manifest with `{_EXAMPLE_ADD}`.")
        raise LockfileError(f"{self.lock_path}: no lockfile. Run `wbsync lock` to create it.")


def check_names(names: tuple[str, ...], known: set[str], where: str) -> frozenset[str] | None:
    """NAMES given on the command line must all exist; None means all entries."""
    if not names:
        return None
    unknown = sorted(set(names) - known)
    if unknown:
        choices = ", ".join(sorted(known)) or "none"
        raise UsageError(f"unknown entry name(s) {', '.join(unknown)} in {where}. Known entries: {choices}.")
    return frozenset(names)


def project_source(project: Project, manifest: Manifest | None = None) -> Source:
    """The project's source, chosen on first use so that a no-op sync reads nothing more:
    ``--source`` / WBSYNC_SOURCE (relative to the current folder), else the manifest's
    ``source:`` (relative to the manifest's folder), else W&B."""
    return deferred(lambda: _choose(project, manifest))


def _choose(project: Project, manifest: Manifest | None) -> Source:
    if project.source:
        return open_source(project.source)
    if manifest is None and project.manifest_path.exists():  # `sync --frozen` may have no manifest
        manifest = project.manifest()
    if manifest is not None and manifest.source:
        return open_source(manifest.source, manifest.root)
    return open_source(None)
