"""The W&B source: the only module that imports ``wandb``, and only inside functions, so that
`wbsync --help`, manifest validation and a no-op sync never load the SDK (~1 s of imports).

What the SDK does for us and what it does not (measured with wandb 0.31.0):
* Resolution and listing go through ``wandb.Api().artifact(name)`` and ``artifact.manifest``:
  that keeps W&B's own conventions for credentials (WANDB_API_KEY, ~/.netrc), the endpoint
  (WANDB_BASE_URL), org lookup from a team or personal entity, and registry version numbering.
* Bytes do NOT go through ``Artifact.download()``: it does not check md5 (wrong bytes are
  written under the final name and kept in its cache), has no request timeout and retries for
  about 20 minutes, and ``skip_cache=True`` leaks state between calls. We ask the SDK only for
  each file's ``directUrl`` (see ``_all_file_urls``) and fetch those ourselves (wbsync.net.fetch), with
  timeouts, bounded retries and a digest check before a file gets its final name.
* Reference entries (``ref: s3://...``) are listed with their ref; wbsync.decide.resolve refuses the
  ones an entry's include/exclude keeps (see there for why).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Callable, TypeVar

from wbsync.core import settings
from wbsync.core.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    RemoteError,
    UsageError,
    VanishedError,
    WbsyncError,
)
from wbsync.core.models import (
    MAX_FILE_SIZE,
    Algorithm,
    Entry,
    FileRecord,
    LineagePlan,
    LockedArtifact,
    RemoteFile,
    Resolved,
    VersionState,
    VersionStatus,
    valid_size,
)
from wbsync.core.notices import waiting
from wbsync.core.shown import split_credentials
from wbsync.sources.diagnose import check_key_format, check_reachable, diagnose_server, public_url, unknown_name_message

_FILES_PAGE = 1000
T = TypeVar("T")


class WandbSource:
    def __init__(self) -> None:
        self._apis: dict[str | None, Any] = {}
        self._remotes: dict[str, Any] = {}  # resolved name -> SDK artifact: renewals skip the lookup
        self._lock = threading.Lock()
        base = os.environ.get("WANDB_BASE_URL")
        self.description = f"W&B at {public_url(base)}" if base else "W&B"

    def identity(self) -> str:
        """The server's URL (no user, password or query): what remembered confirmations are keyed by."""
        return f"W&B {public_url(base_url())}"

    def resolve(self, entry: Entry) -> Resolved:
        try:
            artifact = self._artifact(entry.reference.full_name(), entry.entity, entry)
        except NotFoundError as exc:
            raise self._explain_missing(entry, exc) from None
        if entry.type is not None and artifact.type != entry.type:
            raise NotFoundError(
                f"{entry.reference}: is a {artifact.type!r} artifact but artifacts.yaml entry "
                f"{entry.name!r} says type: {entry.type}. Fix `type` or the reference."
            )
        collection = artifact.name.split(":")[0]
        version = artifact.version
        # The digest W&B answers with the version (the SDK recomputes it once the manifest is
        # loaded; the two agree, and a file list that does not hash to it is refused, exit 4).
        digest = artifact.digest

        def manifest() -> Any:
            # The SDK GETs the manifest with no timeout and ~20 minutes of retries: bound it.
            return _call(lambda: _with_deadline(lambda: artifact.manifest, _manifest_deadline(), entry.name),
                         entry.reference.full_name(), entry)

        _forget(artifact)  # the Resolved keeps what it needs; the manifest goes when it goes
        return Resolved(
            resolved=f"{artifact.entity}/{artifact.project}/{collection}:{version}",
            version=version,
            type=artifact.type,
            digest=digest,
            files=_ManifestFiles(manifest, entry.name),
        )

    def file_urls(self, artifact: LockedArtifact, paths: Collection[str] | None = None) -> dict[str, str]:
        """Every file's signed link, or only ``paths``'s (renewing expired links: the SDK's
        ``files(names=...)``, a page of up to 1,000 names per call)."""
        with self._lock:
            remote = self._remotes.get(artifact.resolved)
        if remote is None:
            remote = self._locked_version(artifact)
            if remote is None or remote.state != "COMMITTED":
                reason = _vanished_reason(remote)
                raise VanishedError(f"{artifact.name}: the locked version {artifact.resolved} is {reason} in W&B. "
                                    f"Run `wbsync lock --upgrade {artifact.name}` to re-resolve it.",
                                    artifact.name, reason)
            with self._lock:
                self._remotes[artifact.resolved] = remote
        if paths is None:
            return _call(lambda: _file_urls(remote, None), artifact.resolved)
        names = sorted(paths)
        urls: dict[str, str] = {}
        for at in range(0, len(names), _FILES_PAGE):
            batch = names[at : at + _FILES_PAGE]
            urls.update(_call(lambda: _file_urls(remote, batch), artifact.resolved))
        return urls

    def status(self, artifact: LockedArtifact) -> VersionStatus:
        remote = self._locked_version(artifact)
        if remote is None:
            return VersionStatus("missing")
        state = _STATES.get(remote.state, "missing")
        if state != "committed":  # the SDK refuses to read digest or TTL of a PENDING artifact
            return VersionStatus(state)
        return VersionStatus(state, remote.digest, _expires_at(remote))

    def _locked_version(self, artifact: LockedArtifact) -> Any:
        """The SDK's Artifact for a locked ``resolved`` name, or None when W&B no longer has it
        (or _NOT_COMMITTED)."""
        api = self._api(None)
        try:
            return _call(lambda: _load_version(api, artifact.resolved), artifact.resolved)
        except _Missing:
            return None

    def open_file(self, url: str, offset: int) -> BinaryIO:
        raise RemoteError(f"W&B returned a file URL wbsync cannot fetch: {url!r}.")

    def _api(self, entity: str | None) -> Any:
        if entity not in self._apis:
            if not self._apis:  # the first SDK call of this command: a usable key, a server there at all?
                check_key_format()
                check_reachable(base_url())
            self._apis[entity] = _call(lambda: _new_api(entity), None)
        return self._apis[entity]

    def _explain_missing(self, entry: Entry, error: NotFoundError) -> NotFoundError:
        """A name W&B does not know, explained in the reference's words with the names that exist
        (one more lookup each), so the fix is a copy away: an unknown registry lists the
        organization's registries; an unknown collection (it has no ``latest`` either) lists the
        registry's collections; an unknown alias or version lists the collection's. If that lookup
        fails too, the original message stands."""
        ref = entry.reference
        if "not found under entity" in error.message:  # W&B's words for a registry it does not have
            return self._unknown_name(entry, error, "registry", lambda api: [r.name for r in api.registries(
                organization=ref.org)])
        if "membership" not in error.message:
            return error
        at_latest = dataclasses.replace(ref, alias="latest", version=None).full_name()
        try:
            names = _call(lambda: list(self._api(entry.entity).artifact(at_latest).collection.aliases), at_latest)
        except WbsyncError:  # no `latest` either: is it the collection that does not exist?
            return self._unknown_name(entry, error, "collection", lambda api: [c.name for c in api.registries(
                organization=ref.org, filter={"name": ref.registry}).collections()])
        if ref.selector == "latest":
            return error
        versions = sorted((a for a in names if _VERSION_ALIAS.fullmatch(a)), key=lambda a: int(a[1:]))
        aliases = sorted(a for a in names if not _VERSION_ALIAS.fullmatch(a))
        what = f"version {ref.version}" if ref.version else f"alias {ref.alias!r}"
        return NotFoundError(
            f"{entry.name!r} ({ref}): the collection {ref.collection} has no {what}. Its aliases: "
            f"{', '.join(aliases) or 'none'}; its versions: {_span(versions)}. Use one of them in the "
            "reference, then run again.")

    def _unknown_name(self, entry: Entry, error: NotFoundError, kind: str,
                      listing: Callable[[Any], list[str]]) -> NotFoundError:
        """A registry or collection W&B does not have: name it and list those that exist (one more
        lookup; if that fails too, the original message stands)."""
        where = f"registry {entry.reference.registry}" if kind == "collection" else "organization"
        try:
            names = _call(lambda: listing(self._api(entry.entity)), where)
        except WbsyncError:
            return error
        ref = entry.reference
        typed = ref.collection if kind == "collection" else ref.registry
        if typed in names:
            return error  # it exists after all: the alias or the access is what failed
        return NotFoundError(unknown_name_message(entry.name, str(ref), kind, typed, ref.registry, names))

    def _artifact(self, name: str, entity: str | None, entry: Entry | None) -> Any:
        api = self._api(entity)
        return _call(lambda: api.artifact(name), name, entry)


class _NotCommittedVersion:
    """Stands for an artifact the SDK cannot load: wandb 0.31 fails ``assert artifact.id is not
    None`` inside ``api.artifact()`` when W&B answers with state PENDING (a draft has no id)."""

    state = "PENDING"


_NOT_COMMITTED = _NotCommittedVersion()


def _load_version(api: Any, name: str) -> Any:
    import wandb.errors

    try:
        return api.artifact(name)
    except wandb.errors.CommError as exc:
        if isinstance(getattr(exc, "exc", None), AssertionError):
            return _NOT_COMMITTED
        raise


#: Artifact.state as wbsync reports it; a state this table does not know counts as missing.
_STATES: dict[str, VersionState] = {"COMMITTED": "committed", "PENDING": "pending", "DELETED": "deleted"}


def _vanished_reason(remote: Any) -> str:
    if remote is None:
        return "not found (deleted, or unlinked from its collection)"
    if remote.state == "PENDING":
        return "not committed (state PENDING)"
    return f"deleted (state {remote.state})"


def _expires_at(remote: Any) -> str | None:
    """When W&B will delete the version: its TTL counts from the (source) artifact's creation."""
    from datetime import datetime, timezone

    ttl = remote.ttl
    if ttl is None:
        return None
    created = datetime.fromisoformat(str(remote.created_at).replace("Z", "+00:00"))
    return (created + ttl).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_VERSION_ALIAS = re.compile(r"v[0-9]+")


def _span(versions: list[str]) -> str:
    """``v0 to v9`` for a long list, each one for a short one."""
    if len(versions) > 6:
        return f"{versions[0]} to {versions[-1]} ({len(versions)} versions)"
    return ", ".join(versions) or "none"


def _manifest_deadline() -> float:
    return settings.number("WBSYNC_MANIFEST_TIMEOUT")


def _with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """Run an SDK call that has no timeout of its own in a daemon thread and stop waiting after
    ``seconds``. The thread cannot be killed; it is abandoned and dies with the process."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="wbsync-sdk-call")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise RemoteError(f"{what}: W&B did not deliver the artifact manifest within {seconds:.0f} s. "
                          "Check the network or the server's status and run again.")
    if "error" in box:
        raise box["error"]
    return box["value"]


def base_url() -> str:
    """The server the SDK talks to: WANDB_BASE_URL, else its own settings (`wandb login --host`)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    import wandb

    return str(wandb.setup().settings.base_url)


def _new_api(entity: str | None) -> Any:
    import wandb

    overrides: dict[str, str] = {}
    if entity:
        overrides["entity"] = entity
    # Read the endpoint and key from the environment on every construction: the SDK caches
    # process-wide settings, and a long-lived process (tests, notebooks) may change them.
    base, key_in_url = _base_url()
    if base:
        overrides["base_url"] = base
    return wandb.Api(overrides=overrides, api_key=os.environ.get("WANDB_API_KEY") or key_in_url)


def _base_url() -> tuple[str | None, str | None]:
    """WANDB_BASE_URL without credentials, and the key it held (``https://api:KEY@host``): the
    SDK would neither use nor hide it, and wandb-core logs the URL it is given."""
    base = os.environ.get("WANDB_BASE_URL") or None
    if base is None:
        return None, None

    return split_credentials(base)


def _forget(artifact: Any) -> None:
    """Drop ``artifact`` from the SDK's process-wide caches (its last 100 artifacts, by id and by
    client id), which keep each one's manifest object (~1.6 KB a file) alive for the rest of
    the process: a sync that fetched a million-file listing would carry it through the whole
    download. Best effort: an SDK without those caches leaves nothing to drop."""
    try:
        from wandb.sdk.artifacts import artifact_instance_cache as caches
    except ImportError:
        return
    for cache in (getattr(caches, "artifact_instance_cache", {}), getattr(caches, "artifact_instance_cache_by_client_id", {})):
        for key in [k for k, v in list(cache.items()) if v is artifact]:
            cache.pop(key, None)


class _ManifestFiles:
    """The SDK manifest's entries as RemoteFiles, in path order, made one at a time on each
    iteration: a million-file manifest is already ~1.6 KB a file inside the SDK, and a second
    copy of it as our own objects would double that. The manifest is loaded on first use:
    a caller that needs only the version and its digest (a sync confirming a large entry whose
    file list it holds, checked against that digest) never loads it."""

    def __init__(self, load: Callable[[], Any], name: str) -> None:
        self._load, self.name = load, name
        self._entries: dict[str, Any] | None = None
        self._order: list[str] = []
        self._guard = threading.Lock()

    def _loaded(self) -> tuple[dict[str, Any], list[str]]:
        with self._guard:
            if self._entries is None:
                entries = self._load().entries
                self._order = sorted(entries)
                self._entries = entries
            return self._entries, self._order

    def __iter__(self) -> Iterator[RemoteFile]:
        entries, order = self._loaded()
        name = self.name
        return (_remote_file(entries[path], name, path) for path in order)

    def __len__(self) -> int:
        return len(self._loaded()[1])


def _remote_file(entry: Any, name: str, key: str) -> RemoteFile:
    # The SDK normalizes entry.path ("./x" -> "x") while the file listing keeps the key as
    # sent; use its spelling (the key itself when equal: no second copy of a million strings).
    path = key if entry.path == key else str(entry.path)
    extra = entry.extra
    algorithm: Algorithm = "xxh128" if extra and str(extra.get("alg", "")).upper() == "XXH128" else "md5"
    if entry.size is None and entry.ref is None:
        raise IntegrityError(f"{name}: file {path!r} has no size in the W&B manifest; wbsync cannot verify it.")
    size = entry.size or 0
    if not valid_size(size):
        raise IntegrityError(f"{name}: the W&B manifest declares file {path!r} as {size!r} "
                             f"bytes; wbsync accepts 0 to {MAX_FILE_SIZE:,} (2^53 - 1). Nothing was written: report "
                             "the version to its publisher.")
    record = FileRecord(path=path, size=size, digest=entry.digest, algorithm=algorithm)
    return RemoteFile(record, ref=entry.ref)


_URLS_PAGE = 5000  # the SDK's own page size for a whole listing (WANDB_ARTIFACT_FETCH_FILE_URL_BATCH_SIZE)

# The SDK's ``files(names=...)`` query with only the two fields a download needs. Named like the
# SDK's own operation (same arguments, fewer fields), so servers and proxies see nothing new.
_NAMED_URLS_GQL = """
query ArtifactMembershipFiles($entity: String!, $project: String!, $collection: String!, $alias: String!, \
$fileNames: [String!], $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    artifactCollection(name: $collection) {
      __typename
      artifactMembership(aliasName: $alias) {
        files(names: $fileNames, after: $cursor, first: $perPage) {
          pageInfo { __typename endCursor hasNextPage }
          edges { node { __typename name directUrl } }
        }
      }
    }
  }
}
"""


def _file_urls(remote: Any, names: list[str] | None) -> dict[str, str]:
    """Signed links of ``names`` (None: of every file), as plain JSON from a query that asks
    for name and directUrl only: the SDK's download query (``GetArtifactMembershipFileUrls``,
    5,000 a page) for a whole listing, the same fields with ``fileNames`` for some files.

    Why not ``artifact.files()``: it asks for ten fields a file and builds a pydantic ``File``
    object for each, about 1 ms of CPU a file on the 2-core bench machine: for a cold sync of
    2,000 small files over a 30 ms link that was a third of wbsync's time. Should a future SDK
    drop the private pieces used here, the public ``files()`` still works, only slower."""
    try:
        from wandb.sdk.artifacts._generated import GET_ARTIFACT_MEMBERSHIP_FILE_URLS_GQL as every_file
    except ImportError:
        every_file = None
    service = getattr(remote, "_service_api", None)
    if every_file is None or service is None or not hasattr(service, "execute_graphql"):
        files = remote.files(names=names, per_page=len(names)) if names is not None else remote.files(per_page=_FILES_PAGE)
        return {f.name: f.direct_url for f in files}
    variables: dict[str, Any] = {"entity": remote.entity, "project": remote.project,
                                 "collection": remote.name.split(":")[0], "alias": remote.version,
                                 "cursor": None, "perPage": _URLS_PAGE}
    query = every_file
    if names is not None:
        query = _NAMED_URLS_GQL
        variables.update(fileNames=names, perPage=len(names))
    urls: dict[str, str] = {}
    while True:
        doc = service.execute_graphql(query, variables=variables)
        files = (((((doc or {}).get("project") or {}).get("artifactCollection") or {})
                  .get("artifactMembership") or {}).get("files"))
        if not isinstance(files, dict):
            raise ValueError(f"Unable to fetch files for artifact: {remote.name!r}")
        for edge in files.get("edges") or ():
            node = edge.get("node") if isinstance(edge, dict) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and isinstance(node.get("directUrl"), str):
                urls[node["name"]] = node["directUrl"]
        page = files.get("pageInfo") or {}
        if not page.get("hasNextPage") or not page.get("endCursor"):
            return urls
        variables["cursor"] = page["endCursor"]


def _call(fn: Any, name: str | None, entry: Entry | None = None) -> Any:
    """Run an SDK call, turning its exceptions into wbsync errors with a complete message."""
    import wandb.errors

    try:
        with waiting(_wait_text(name), key=_shown_url()):
            return fn()
    except wandb.errors.AuthenticationError as exc:
        # The SDK raises this for any failed Viewer check (500s, resets, its timeout, a server
        # that is not W&B); only a 401/403 from the server is a refused key.
        response = getattr(exc.__cause__, "response", None)
        if response is not None and getattr(response, "http_status", None) in (401, 403):
            raise AuthError(_refused_message(str(exc))) from None
        raise RemoteError(_unanswered_message(str(exc))) from None
    except wandb.errors.UsageError as exc:
        if "api key" in str(exc).lower():
            raise AuthError(_no_key_message()) from None
        raise UsageError(f"{name or 'W&B'}: {exc}") from None
    except wandb.errors.CommError as exc:
        raise _comm_error(str(exc), name, entry) from None
    except ValueError as exc:
        raise _comm_error(str(exc), name, entry) from None
    except OSError as exc:  # requests' errors from the SDK's manifest GET
        raise RemoteError(f"{name or 'W&B'}: {_first_line(str(exc))}. Check the network and run again.") from None
    except Exception as exc:
        # Paginated calls (artifact.files()) let wandb-core's WandbApiFailedError out unwrapped
        # (retries exhausted, a reset, the per-call timeout); api.artifact() wraps it in CommError.
        if type(exc).__name__ != "WandbApiFailedError":
            raise
        raise _comm_error(str(exc), name, entry) from None


def _wait_text(name: str | None) -> str:
    what = f"its answer about {name}" if name else "its answer to the credentials check"
    return (f"W&B at {_shown_url()} accepted the connection, wbsync waits for {what}. The W&B SDK gives up after "
            "its own time-out and retries (WANDB_HTTP_TIMEOUT sets the time-out of each attempt); then wbsync "
            "says why.")


def _shown_url() -> str:
    try:
        return public_url(base_url())
    except Exception:  # the SDK's settings could not be read: say it generically
        return "your W&B server"


def _login_hint(url: str) -> str:
    host = "" if not os.environ.get("WANDB_BASE_URL") else f" --host {url}"
    return (f"Log in with `wandb login{host}` (it stores the key in ~/.netrc), or set WANDB_API_KEY to a key "
            f"made for {url} (User settings > API keys); then run again.")


def _no_key_message() -> str:
    url = _shown_url()
    return f"no W&B API key for {url}: wbsync uses the SDK's credentials and found none. {_login_hint(url)}"


def _sdk_said(detail: str) -> str:
    """The SDK's first line, with the server's URL as messages may show it (no user, password or query)."""
    said = _first_line(detail)
    raw = os.environ.get("WANDB_BASE_URL")
    return said.replace(raw, public_url(raw)) if raw else said


def _refused_message(detail: str) -> str:
    url = _shown_url()
    reason = _sdk_said(detail).split(f"{url}: ", 1)[-1]
    where = "WANDB_API_KEY" if os.environ.get("WANDB_API_KEY") else "~/.netrc (`wandb login`)"
    return (f"W&B at {url} refused the API key from {where} ({reason}): the key is wrong, revoked, or made "
            f"for another server. {_login_hint(url)}")


def _unanswered_message(detail: str) -> str:
    """The credentials check failed without a 401: find out why before blaming the key."""
    url = _shown_url()
    said = _sdk_said(detail)
    diagnosis = diagnose_server(base_url()) if url != "your W&B server" else None
    if diagnosis:
        return f"{diagnosis} (The SDK's credentials check said: {said})"
    return (f"W&B at {url} did not answer the credentials check ({said}). The server accepts connections "
            "and looks like W&B, so this may be passing: check its status and your network, then retry.")


def _comm_error(detail: str, name: str | None, entry: Entry | None) -> RemoteError:
    text = _first_line(detail).rstrip(".")
    if (cause := detail.strip().splitlines()[1:2]) and cause[0].startswith("while retrying"):
        text = f"{text} ({cause[0].strip()})"  # wandb-core's "giving up after N attempt(s)" says why here
    where = f"{entry.name!r} ({name})" if entry else (name or "W&B")
    lowered = detail.lower()
    if "organization" in lowered:
        return NotFoundError(
            f"{where}: W&B could not tell which organization the registry belongs to ({text}). "
            "Give the organization in the reference (`acme/wandb-registry-...`) or as `org:` in the "
            "manifest's `defaults`, or a team `entity:`; a personal entity in several organizations "
            "needs one of them."
        )
    if "not found" in lowered or "membership" in lowered:
        return _Missing(
            f"{where}: not found in W&B ({text}). Check the registry, collection and alias or version "
            "in the W&B App (Registry > collection > version > Full Name), and that your account "
            "can see that registry." + ("" if entry else " A locked version that was deleted or unlinked "
                                        "needs `wbsync lock --upgrade`.")
        )
    diagnosis = diagnose_server(base_url())  # the server looked fine when the command started
    advice = diagnosis or "Check your network and WANDB_BASE_URL, then retry."
    return RemoteError(f"{where}: W&B request failed: {text}. {advice}")


class _Missing(NotFoundError):
    """W&B answered that the name does not exist (as opposed to an org it could not work out)."""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"


# -- lineage: runs that record locked artifacts as inputs (wbsync.lineage decides what) -----


def find_finished_run(entity: str | None, project: str, run_id: str) -> str | None:
    """``entity/project/run_id`` when a finished run with this id exists, else None. A run that
    exists but did not finish (crashed half-way, or running right now) counts as missing: the
    caller resumes it rather than trusting inputs it may not have recorded."""
    check_key_format()
    check_reachable(base_url())
    api = _call(lambda: _new_api(entity), None)
    # As api.run() and wandb.init() pick it: --entity, else WANDB_ENTITY, else the user's default.
    owner = api.settings["entity"] or _call(lambda: api.default_entity, None)
    path = f"{owner}/{project}/{run_id}"
    found: str | None = _call(lambda: _finished(api, path), path)
    return found


def _finished(api: Any, path: str) -> str | None:
    try:
        run = api.run(path)
    except Exception as exc:
        # wandb 0.31 wraps RunNotFoundError in CommError (normalize_exceptions); others raise it.
        if any(type(e).__name__ == "RunNotFoundError" for e in (exc, getattr(exc, "exc", None))):
            return None
        raise
    return path if run.state == "finished" else None


@contextmanager
def lineage_run(plan: LineagePlan) -> Iterator[Any]:
    """An online run with ``plan``'s id (resumed if it exists), as light as wandb allows: no code,
    console, system stats, metadata or requirements capture; finished on exit (exit code 1 on an
    error). Its local files go to a temporary folder, not ./wandb of the project."""
    import wandb

    base, key_in_url = _base_url()
    endpoint: dict[str, str] = {"base_url": base} if base else {}
    if key_in_url and not os.environ.get("WANDB_API_KEY"):
        endpoint["api_key"] = key_in_url
    settings = wandb.Settings(save_code=False, console="off", x_disable_stats=True, x_disable_meta=True,
                              x_save_requirements=False, disable_job_creation=True, disable_git=True,
                              silent=True, git_commit=plan.commit, **endpoint)
    # `silent` in init's settings comes too late for the credentials check inside init, which
    # prints "wandb: [wandb.login()] Loaded credentials for ..." into `wbsync lineage`'s output;
    # the terminal settings are process-wide and only this command's process starts runs.
    wandb.termsetup(wandb.Settings(silent=True), None)
    where = f"{plan.entity + '/' if plan.entity else ''}{plan.project}/{plan.run_id}"
    with tempfile.TemporaryDirectory(prefix="wbsync-lineage-", ignore_cleanup_errors=True) as folder:
        run = _call(lambda: _init(wandb, plan, folder, settings, where), where)
        try:
            yield run
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()


def _init(wandb: Any, plan: LineagePlan, folder: str, settings: Any, where: str) -> Any:
    try:
        return wandb.init(project=plan.project, entity=plan.entity, job_type=plan.job_type, id=plan.run_id,
                          resume="allow", tags=list(plan.tags), config=plan.config, dir=folder, mode="online",
                          settings=settings)
    except (wandb.errors.CommError, wandb.errors.UsageError):
        raise  # _call words these
    except wandb.errors.Error as exc:  # e.g. the init timeout
        raise RemoteError(f"{where}: W&B could not start the lineage run ({_first_line(str(exc))}). "
                          "Check your network and WANDB_BASE_URL, then retry.") from None


def use_pinned(run: Any, reference: str, digest: str) -> bool:
    """``run.use_artifact(reference)`` for a pinned ``...:vN``; checks that W&B answered with the
    locked artifact digest. False when the run is offline, where wandb cannot record inputs."""
    try:
        artifact = _call(lambda: run.use_artifact(reference), reference)
    except TypeError as exc:  # "Cannot use artifact when in offline mode."
        if "offline" not in str(exc):
            raise
        return False
    if artifact is not None and artifact.digest != digest:  # None: mode="disabled"
        raise IntegrityError(f"{reference}: W&B reports digest {artifact.digest} but the lock has {digest}. "
                             "The version changed since it was locked; run `wbsync lock --upgrade`.")
    return True
