"""Reading a project's lock or manifest, which a pull request writes: the one rule every reader
of ``artifacts.lock`` and ``artifacts.yaml`` (and the registered locks of other projects) uses.

A pull request can commit ``artifacts.lock`` as a symlink to ``~/.netrc``, an SSH key or
``/dev/zero``. The file is read only when it is a regular file, or a symlink whose target is
a regular file inside the same git repository and tracked by git (outside a git repository:
inside the project's folder); it is read with a size limit. A refusal names the link, never
its target's content or path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from wbsync.core.errors import UsageError
from wbsync.core.safeio import PROJECT_FILE_LIMIT, NotRegularFile, TooLarge, read_regular


def read_project_file(path: str | os.PathLike[str], error: type[UsageError], what: str,
                      limit: int = PROJECT_FILE_LIMIT) -> bytes:
    """The bytes of the lock or manifest at ``path``. FileNotFoundError when there is none;
    ``error`` (exit 2) when it is a link out of the project, not a regular file, or too large."""
    file = Path(path)
    follow = os.path.islink(file)
    if follow:
        problem = _link_problem(file)
        if problem is not None:
            raise error(f"{file}: the {what} is a symlink {problem}; wbsync does not follow it. Replace the link "
                        f"with the {what} itself (or a link to a file git tracks in this repository).")
    try:
        return read_regular(file, limit, follow=follow)
    except TooLarge:
        raise error(f"{file}: the {what} is larger than {limit >> 20} MiB, more than wbsync ever writes. "
                    "Restore it from version control.") from None
    except NotRegularFile as exc:
        raise error(f"{file}: cannot read the {what}: it is {exc.what}, and wbsync reads only regular files. "
                    f"Replace it with the {what} itself.") from None


def _link_problem(link: Path) -> str | None:
    """Why the symlink at ``link`` must not be followed, or None when its target is fine."""
    folder = link.absolute().parent
    target = Path(os.path.realpath(link))
    if not target.is_file():
        return "to something that is not a regular file"
    top = _git_top(folder)
    if top is None:
        return None if _inside(target, Path(os.path.realpath(folder))) else "leading out of the project's folder"
    if not _inside(target, top):
        return "leading out of the git repository"
    if not _tracked(top, target):
        return "to a file git does not track"
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def _git_top(folder: Path) -> Path | None:
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True,
                               timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if found.returncode != 0 or not found.stdout.strip():
        return None
    return Path(os.path.realpath(found.stdout.strip()))


def _tracked(top: Path, target: Path) -> bool:
    rel = target.relative_to(top).as_posix()
    try:
        found = subprocess.run(["git", "ls-files", "--error-unmatch", "-z", "--", f":(literal){rel}"], cwd=top,
                               capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return found.returncode == 0
