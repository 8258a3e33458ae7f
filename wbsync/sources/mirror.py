"""The mirror source: W&B Registry artifacts read from a folder or an object store instead of W&B.

A mirror is what `wbsync mirror DEST` writes (wbsync/mirror.py); docs/mirror.md describes the
layout. Everything read here is untrusted, exactly like W&B's answers: names are checked
before they are joined into a path, version files must be well formed and their artifact
digest must match their file list (protocol §3.2), bytes are verified against the lock by the
content store, and wbsync.decide.resolve path-checks every Resolved.

Local folders (and ``file://``) go through pathlib; any other URL (``s3://``, ``gs://``,
``memory://``) through fsspec, imported only then, so the base install needs no fsspec.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from wbsync.core import pip_install
from wbsync.core.atomic import write_atomic
from wbsync.core.errors import IntegrityError, NotFoundError, RemoteError, UsageError, VanishedError
from wbsync.core.models import (
    MAX_FILE_SIZE,
    REGISTRY_PREFIX,
    Algorithm,
    Entry,
    FileRecord,
    LockedArtifact,
    RemoteFile,
    Resolved,
    VersionStatus,
    valid_size,
)
from wbsync.store.blobs import blob_hex
from wbsync.store.listing import iter_files

INDEX = "wbsync-mirror.json"
FORMAT = "wbsync-mirror"
FORMAT_VERSION = 1
ALIASES = "aliases.json"
_VERSION = re.compile(r"v(0|[1-9][0-9]*)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


# -- layout ---------------------------------------------------------------------------------


def blob_rel(record: FileRecord) -> str:
    """``blobs/<md5|xxh128>/<hex[:2]>/<hex[2:]>``: the content store's own layout."""
    hexdigest = blob_hex(record)  # validates the algorithm and the digest
    return f"blobs/{record.algorithm}/{hexdigest[:2]}/{hexdigest[2:]}"


def collection_rel(org_entity: str, project: str, collection: str) -> str:
    """``<org-entity>/wandb-registry-<registry>/<collection>``, each part checked."""
    return "/".join(_segment(p) for p in (org_entity, project, collection))


def version_rel(collection_dir: str, version: str) -> str:
    if not _VERSION.fullmatch(version):
        raise IntegrityError(f"{version!r} is not a version (vN); the mirror is damaged.")
    return f"{collection_dir}/versions/{version}.json"


def split_resolved(resolved: str) -> tuple[str, str, str, str]:
    """``org/wandb-registry-x/collection:vN`` -> (org, project, collection, vN)."""
    path, _, version = resolved.rpartition(":")
    parts = path.split("/")
    if len(parts) != 3 or not parts[1].startswith(REGISTRY_PREFIX) or not _VERSION.fullmatch(version):
        raise IntegrityError(f"{resolved!r} is not a resolved registry name (ORG/wandb-registry-R/C:vN).")
    return parts[0], parts[1], parts[2], version


def _segment(name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise NotFoundError(f"{name!r} cannot be a folder of a mirror: no such organization, "
                            "registry or collection there.")
    return name


# -- version files: W&B's manifest v1, plus what W&B knows about the version -----------------


def version_doc(resolved: Resolved) -> dict[str, Any]:
    """The file ``versions/vN.json``: a W&B manifest (version 1) and a ``wbsync`` key."""
    contents: dict[str, Any] = {}
    for f in resolved.files:
        entry: dict[str, Any] = {"digest": f.record.digest, "size": f.record.size}
        if f.record.algorithm == "xxh128":
            entry["extra"] = {"alg": "XXH128"}
        if f.ref is not None:
            entry["ref"] = f.ref
        contents[f.record.path] = entry
    meta = {"resolved": resolved.resolved, "version": resolved.version, "type": resolved.type,
            "digest": resolved.digest}
    return {"version": 1, "storagePolicy": "wandb-storage-policy-v1", "storagePolicyConfig": {},
            "contents": contents, "wbsync": meta}


def parse_version_doc(doc: Any, where: str) -> Resolved:
    """Check a version file and turn it back into what W&B's source returns for that version."""
    def bad(problem: str) -> IntegrityError:
        return IntegrityError(f"mirror file {where}: {problem}. The mirror is damaged: write it again "
                              "with `wbsync mirror` from a project whose lock holds this version.")

    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("contents"), dict):
        raise bad("not a W&B manifest (version 1) with contents")
    meta = doc.get("wbsync")
    keys = ("resolved", "version", "type", "digest")
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in keys):
        raise bad(f"no `wbsync` object with {', '.join(keys)}")
    files = tuple(_remote_file(path, entry, bad) for path, entry in sorted(doc["contents"].items()))
    if meta["digest"] not in manifest_digests(doc["contents"]):
        raise bad(f"its artifact digest {meta['digest']} does not match its file list")
    return Resolved(resolved=meta["resolved"], version=meta["version"], type=meta["type"],
                    digest=meta["digest"], files=files)


def _remote_file(path: Any, entry: Any, bad: Any) -> RemoteFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        raise bad(f"the entry for {path!r} has no digest")
    ref = entry.get("ref")
    size = entry.get("size", 0 if ref else None)
    if not valid_size(size) or (ref is not None and not isinstance(ref, str)):
        raise bad(f"the entry for {path!r} has no valid size (0 to {MAX_FILE_SIZE:,} bytes)")
    extra = entry["extra"] if isinstance(entry.get("extra"), dict) else {}
    algorithm: Algorithm = "xxh128" if str(extra.get("alg", "")).upper() == "XXH128" else "md5"
    return RemoteFile(FileRecord(path=str(path), size=size, digest=entry["digest"], algorithm=algorithm), ref=ref)


def manifest_digests(contents: dict[str, Any]) -> set[str]:
    """W&B's artifact digest of a manifest, with md5 and with xxh128 (protocol §3.2 and §10)."""
    text = b"wandb-artifact-manifest-v1\n" + b"".join(
        f"{p}:{contents[p]['digest']}\n".encode() for p in sorted(contents))
    return {hashlib.md5(text, usedforsecurity=False).hexdigest(), xxhash.xxh128(text).hexdigest()}


# -- where a mirror lives: a local folder, or an fsspec URL -----------------------------------


class Location:
    """Read and write a mirror's files by path relative to its root. Local folders use pathlib
    (temp file + rename); URLs use fsspec (a PUT to an object store is atomic)."""

    def __init__(self, spec: str, base: str | os.PathLike[str] | None = None) -> None:
        self.spec = spec
        self._fs: Any = None
        self.local: Path | None = None
        spec = spec.removeprefix("file://")
        if _SCHEME.match(spec):
            self._fs, self.root = _filesystem(spec)
            self._prefix = str(self._fs.unstrip_protocol(self.root)).rstrip("/") + "/"
        else:
            path = Path(spec).expanduser()
            self.local = (path if path.is_absolute() else Path(base or os.getcwd()) / path).absolute()
            self.root = str(self.local)
            self._prefix = self.root.rstrip("/") + "/"

    def url(self, rel: str) -> str:
        return self._prefix + rel

    def rel_of(self, url: str) -> str:
        """The relative path of a URL this location handed out; refuses any other URL."""
        rel = url[len(self._prefix):]
        if not url.startswith(self._prefix) or any(p in ("", ".", "..") for p in rel.split("/")):
            raise RemoteError(f"{url!r} is not a file of the mirror at {self.spec}.")
        return rel

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        data: bytes | None = self._reading(rel, lambda path: path.read_bytes(), lambda fs, path: fs.cat_file(path))
        return data

    def size(self, rel: str) -> int | None:
        """The file's size, or None when it does not exist."""
        size: int | None = self._reading(rel, lambda path: path.stat().st_size, lambda fs, path: fs.size(path))
        return size

    def open(self, rel: str, offset: int) -> BinaryIO:
        """For the fetcher, which retries OSError and reports FileNotFoundError as missing."""
        if self.local is not None:
            fh: BinaryIO = open(self.local / rel, "rb")  # noqa: SIM115 (the caller closes it)
        else:
            fh = _as_oserror(lambda: self._fs.open(self._path(rel), "rb"))
        if offset:
            fh.seek(offset)
        return fh

    def write(self, rel: str, data: bytes) -> None:
        self._writing(rel, lambda path: write_atomic(path, data), lambda fs, path: fs.pipe_file(path, data))

    def put(self, rel: str, src: Path) -> None:
        """Copy a local file (already verified) to ``rel``, atomically where the back end allows."""
        self._writing(rel, lambda path: write_atomic_from(path, src), lambda fs, path: fs.put_file(str(src), path))

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _reading(self, rel: str, local: Callable[[Path], Any], remote: Callable[[Any, str], Any]) -> Any:
        try:
            return local(self.local / rel) if self.local is not None else remote(self._fs, self._path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:  # noqa: BLE001 (fsspec back ends raise their own kinds: botocore, aiohttp...)
            raise RemoteError(f"cannot read {self.url(rel)}: {_reason(exc)}. Check the mirror's location "
                              "and your access to it, then run again.") from None

    def _writing(self, rel: str, local: Callable[[Path], Any], remote: Callable[[Any, str], Any]) -> None:
        try:
            local(self.local / rel) if self.local is not None else remote(self._fs, self._path(rel))
        except Exception as exc:  # noqa: BLE001
            raise RemoteError(f"cannot write {self.url(rel)}: {_reason(exc)}. Check the mirror's location "
                              "and your access to it, then run `wbsync mirror` again.") from None


def _as_oserror(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise OSError(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def write_atomic_from(dest: Path, src: Path) -> None:
    """Like write_atomic, streaming from a file: a blob may be larger than memory."""
    import secrets
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.wbsync-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _filesystem(url: str) -> tuple[Any, str]:
    scheme = url.split("://", 1)[0].lower()
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        extra = _EXTRAS.get(scheme, "s3")
        raise UsageError(f"mirror {url}: URLs need fsspec and its back end for {scheme}://. "
                         f"Install them with: {pip_install(extra)}.") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        extra = _EXTRAS.get(scheme, "s3")
        raise UsageError(f"mirror {url}: fsspec has no back end for {scheme}:// here ({exc}). "
                         f"Install it with: {pip_install(extra)}.") from None
    except ValueError as exc:
        raise UsageError(f"mirror {url}: {exc}.") from None
    return fs, str(path).rstrip("/")


def read_json(location: Location, rel: str) -> Any | None:
    data = location.read(rel)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise IntegrityError(f"mirror file {location.url(rel)} is not valid JSON. The mirror is damaged: "
                             "write it again with `wbsync mirror`.") from None


def json_bytes(doc: Any) -> bytes:
    """Deterministic: a mirror written twice from the same lock is byte-identical."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# -- the source -----------------------------------------------------------------------------


class MirrorSource:
    """Answers like the W&B source, from a mirror. Opening reads nothing; the index is read on
    first use (``resolve`` runs on several threads)."""

    def __init__(self, spec: str, base: str | os.PathLike[str] | None = None) -> None:
        self.location = Location(spec, base)
        self.description = f"mirror {spec}"
        self._index: dict[str, Any] | None = None
        self._aliases: dict[str, dict[str, str]] = {}
        self._urls: dict[str, dict[str, str]] = {}  # resolved -> path -> link (file_urls)
        self._lock = threading.Lock()

    def identity(self) -> str:
        """The mirror's absolute folder or its URL: what remembered confirmations are keyed by."""
        return f"mirror {self.location.local or self.location.spec}"

    def resolve(self, entry: Entry) -> Resolved:
        ref = entry.reference
        org = self._org(entry)
        folder = collection_rel(org, ref.project, ref.collection)
        version = ref.version or self._alias(entry, folder, str(ref.alias))
        res = self._version(folder, version, f"{entry.name!r} ({ref})")
        expected = f"{org}/{ref.project}/{ref.collection}:{version}"
        # Case may differ on a case-insensitive disk; W&B too answers with its own spelling.
        if res.resolved.casefold() != expected.casefold() or res.version != version:
            raise IntegrityError(f"mirror file {self.location.url(version_rel(folder, version))} says it holds "
                                 f"{res.resolved}, not {expected}. The mirror is damaged: write it again.")
        if entry.type is not None and res.type != entry.type:
            raise NotFoundError(f"{ref}: is a {res.type!r} artifact but artifacts.yaml entry "
                                f"{entry.name!r} says type: {entry.type}. Fix `type` or the reference.")
        return res

    def file_urls(self, artifact: LockedArtifact, paths: Collection[str] | None = None) -> dict[str, str]:
        """Mirror links never expire (a folder, or fsspec with its own credentials), so ``paths``
        only narrows the answer. A sync asks batch by batch: every link of a version is worked
        out once (reading the version's record) and kept for the next batches."""
        with self._lock:
            known = self._urls.get(artifact.resolved)
        if known is None:
            known = self._all_urls(artifact)
            with self._lock:
                self._urls[artifact.resolved] = known
        return dict(known) if paths is None else {p: known[p] for p in paths if p in known}

    def _all_urls(self, artifact: LockedArtifact) -> dict[str, str]:
        res = self._locked_version(artifact)
        if res is None:
            reason = "not in the mirror"
            raise VanishedError(f"{artifact.name}: the {self.description} does not hold {artifact.resolved}. "
                                f"{_HOW_TO_MIRROR}", artifact.name, reason)
        if res.digest != artifact.digest:
            raise IntegrityError(
                f"{artifact.name}: the {self.description} holds {artifact.resolved} with artifact digest "
                f"{res.digest}, but the lock records {artifact.digest}. Nothing was placed. Write the "
                "mirror again from this lock (`wbsync mirror`), or re-lock against it.")
        listed = {f.record.path for f in res.files}
        return {f.path: self.location.url(blob_rel(f)) for f in iter_files(artifact) if f.path in listed}

    def open_file(self, url: str, offset: int) -> BinaryIO:
        return self.location.open(self.location.rel_of(url), offset)

    def status(self, artifact: LockedArtifact) -> VersionStatus:
        """A mirror keeps committed versions only, and has no TTL."""
        res = self._locked_version(artifact)
        return VersionStatus("missing") if res is None else VersionStatus("committed", res.digest)

    def _locked_version(self, artifact: LockedArtifact) -> Resolved | None:
        org, project, collection, version = split_resolved(artifact.resolved)
        folder = collection_rel(org, project, collection)
        doc = read_json(self.location, version_rel(folder, version))
        return None if doc is None else parse_version_doc(doc, self.location.url(version_rel(folder, version)))

    # -- reading the mirror's indexes --

    def index(self) -> dict[str, Any]:
        with self._lock:
            if self._index is None:
                self._index = load_index(self.location)
            return self._index

    def _org(self, entry: Entry) -> str:
        index = self.index()
        orgs, held = index["orgs"], sorted(set(index["orgs"].values()))
        if entry.reference.org is not None:
            if entry.reference.org in orgs:
                return str(orgs[entry.reference.org])
            raise NotFoundError(f"{entry.name!r} ({entry.reference}): the {self.description} holds no "
                                f"organization {entry.reference.org!r}; it holds {_names(orgs)}.")
        if entry.entity is not None and entry.entity in index["entities"]:
            return str(index["entities"][entry.entity])
        if index["default_org"]:
            return str(index["default_org"])
        raise NotFoundError(
            f"{entry.name!r} ({entry.reference}): the {self.description} holds several organizations "
            f"({', '.join(held)}), so it cannot tell which one is meant. Give the organization in the "
            "reference (`ORG/wandb-registry-...`) or as `org:` in the manifest's `defaults`.")

    def _alias(self, entry: Entry, folder: str, alias: str) -> str:
        with self._lock:
            aliases = self._aliases.get(folder)
        if aliases is None:
            doc = read_json(self.location, f"{folder}/{ALIASES}")
            if doc is None:
                raise NotFoundError(f"{entry.name!r} ({entry.reference}): not in the {self.description} "
                                    f"(no {folder}). {_HOW_TO_MIRROR}")
            aliases = check_aliases(doc, self.location.url(f"{folder}/{ALIASES}"))
            with self._lock:
                self._aliases[folder] = aliases
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise NotFoundError(f"{entry.name!r} ({entry.reference}): the {self.description} has no alias "
                                f"{alias!r} for {folder} (it has: {known}). {_HOW_TO_MIRROR}")
        return aliases[alias]

    def _version(self, folder: str, version: str, what: str) -> Resolved:
        rel = version_rel(folder, version)
        doc = read_json(self.location, rel)
        if doc is None:
            raise NotFoundError(f"{what}: the {self.description} does not hold {folder}:{version}. "
                                f"{_HOW_TO_MIRROR}")
        return parse_version_doc(doc, self.location.url(rel))


_HOW_TO_MIRROR = ("Add it with `wbsync mirror DEST` from a project whose lock holds it, or lock against "
                  "W&B (`--source wandb`).")


def _names(orgs: dict[str, str]) -> str:
    return ", ".join(sorted(set(orgs) | set(orgs.values()))) or "none"


def load_index(location: Location) -> dict[str, Any]:
    """``wbsync-mirror.json``, checked; a folder without one is not a mirror."""
    doc = read_json(location, INDEX)
    if doc is None:
        raise UsageError(f"{location.spec} is not a wbsync mirror: it has no {INDEX}. Check the `source:` "
                         "in artifacts.yaml (relative paths start at the manifest's folder), --source or "
                         "WBSYNC_SOURCE; create a mirror with `wbsync mirror DEST`.")
    where = location.url(INDEX)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("version"), int):
        raise IntegrityError(f"mirror file {where} is not a wbsync mirror index.")
    if doc["version"] > FORMAT_VERSION:
        raise UsageError(f"{where}: mirror format version {doc['version']} is newer than this wbsync reads "
                         f"({FORMAT_VERSION}). Upgrade wbsync.")
    orgs, entities, default = doc.get("orgs"), doc.get("entities", {}), doc.get("default_org")
    if not _str_map(orgs) or not _str_map(entities) or not (default is None or isinstance(default, str)):
        raise IntegrityError(f"mirror file {where}: `orgs` and `entities` must map names to org entities.")
    return {"orgs": orgs, "entities": entities, "default_org": default}


def check_aliases(doc: Any, where: str) -> dict[str, str]:
    if not _str_map(doc) or not all(_VERSION.fullmatch(v) for v in doc.values()):
        raise IntegrityError(f"mirror file {where} must map aliases to versions (vN). The mirror is damaged: "
                             "write it again with `wbsync mirror`.")
    return dict(doc)


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
