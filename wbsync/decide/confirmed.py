"""Lock entries this user already confirmed against a source, so that re-placing them (a deleted
folder restored from the content store) needs no network.

A placing sync asks the source whether each lock entry it places holds what the lock says
(wbsync.decide.agreement.confirm_with_source). Once it said yes, the answer is remembered here:
one empty file per confirmation, named by an HMAC of what was confirmed (the source's identity,
the entry's resolved version, artifact digest, type, files and filters). The HMAC key is created
once, mode 0600, in the user's own state folder (``WBSYNC_STATE_DIR``, else
``$XDG_STATE_HOME/wbsync``, else ``~/.local/state/wbsync``), never in the content store: a store
restored from an archive, shared on a runner or written by someone else carries no confirmation
this user's key made, so its entries are asked again. A changed entry has another name, so it is
asked too. Anything unusable (no state folder, a key someone else can read or owns) means
"not confirmed": the source is asked, as before this existed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from wbsync.core import settings
from wbsync.core.models import Entry, LockedArtifact

_KEY = "confirm.key"
_RECORDS = "confirmed"


def state_dir() -> Path:
    """WBSYNC_STATE_DIR, else $XDG_STATE_HOME/wbsync, else ~/.local/state/wbsync."""
    override = settings.text("WBSYNC_STATE_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: relative values are ignored
        return Path(xdg) / "wbsync"
    return Path.home() / ".local" / "state" / "wbsync"


def fingerprint(source: str, art: LockedArtifact, entry: Entry | None) -> bytes:
    """Everything the source's confirmation vouched for, as bytes to authenticate."""
    files = art.files
    if isinstance(files, tuple):
        listed: object = hashlib.sha256("".join(
            f"{f.path}\0{f.size}\0{f.algorithm}\0{f.digest}\n" for f in files).encode()).hexdigest()
    else:  # a stored listing: the lock pins it by digest, filters, count and bytes
        listed = [getattr(files, k, None) for k in ("digest", "include", "exclude", "count", "bytes")]
    doc = [1, source, art.resolved, art.digest, art.type, listed, entry.digest() if entry else None]
    return json.dumps(doc, sort_keys=True, default=list).encode()


class Confirmations:
    """The confirmations under ``folder`` (default: ``state_dir()``)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder if folder is not None else state_dir()

    def confirmed(self, facts: bytes) -> bool:
        key = self._key(create=False)
        return key is not None and self._record(key, facts).is_file()

    def remember(self, all_facts: Iterable[bytes]) -> None:
        """Record each confirmation; a state folder that cannot be written only costs the next
        offline re-placement (it asks the source, as before)."""
        try:
            key = self._key(create=True)
            if key is None:
                return
            for facts in all_facts:
                path = self._record(key, facts)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
        except OSError:
            return

    def _record(self, key: bytes, facts: bytes) -> Path:
        name = hmac.new(key, facts, hashlib.sha256).hexdigest()
        return self.folder / _RECORDS / name[:2] / name[2:]

    def _key(self, create: bool) -> bytes | None:
        """The key, if it is this user's alone (owned by us, mode 0600); created atomically on
        first use (written under a temp name, then linked into place: never half-written, and
        two syncs at once end up with one key)."""
        path = self.folder / _KEY
        try:
            return _read_key(path)
        except FileNotFoundError:
            if not create:
                return None
        except OSError:
            return None
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.folder / f".{_KEY}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(temp, path)  # fails if another sync made the key first: then use theirs
            except FileExistsError:
                pass
        finally:
            temp.unlink(missing_ok=True)
        return _read_key(path)


def _read_key(path: Path) -> bytes | None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_mode & 0o077 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            return None  # readable by others or not ours: its records prove nothing
        key = fh.read()
    return key if len(key) == 32 else None
