"""The lock as a git revision has it (`wbsync diff REV`): `git show REV:path`, nothing else.

git is run as a subprocess with the revision checked first, so that a revision such as
``--output=x`` can never become an option, and a lock that does not exist at that revision is
told apart from a revision that does not exist.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from wbsync.core.errors import UsageError


def lock_text_at(rev: str, lock_path: Path) -> str | None:
    """The lockfile's text at ``rev``, or None when the file did not exist there."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"{rev!r} is not a git revision or a lock file. Give a revision such as HEAD, "
                         "main or a commit, or the path of another lock file.")
    folder = lock_path.resolve().parent
    if _git(folder, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise UsageError(f"{lock_path}: not inside a git repository, so there is no revision {rev!r} to compare "
                         "with. Give another lock file instead: `wbsync diff OTHER.lock`.")
    if _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        if _git(folder, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:  # a fresh `git init`
            raise UsageError(f"this git repository has no commits yet, so there is no revision {rev!r} to compare "
                             f"{lock_path.name} with. Commit it first (`git add {lock_path.name} && git commit`), "
                             "or give another lock file: `wbsync diff OTHER.lock`.")
        raise UsageError(f"{rev!r} is neither a lock file nor a git revision of this repository. Give a revision "
                         "such as HEAD, main or a commit, or the path of another lock file.")
    spec = f"{rev}:./{lock_path.name}"
    if _git(folder, "cat-file", "-e", spec).returncode != 0:
        return None
    shown = _git(folder, "show", spec)
    if shown.returncode != 0:
        raise UsageError(f"git could not show {spec}: {shown.stderr.strip()}")
    return shown.stdout


def commit_of(rev: str, lock_path: Path) -> str:
    """The short commit id ``rev`` names (checked by ``lock_text_at`` first), for the header."""
    found = _git(lock_path.resolve().parent, "rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}")
    return found.stdout.strip() or rev


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              encoding="utf-8", errors="surrogateescape", check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed, so `wbsync diff REV` cannot read a revision. Install git, or "
                         "give another lock file: `wbsync diff OTHER.lock`.") from None
