"""GraphQL operations of wandb 0.31, answered from a ``World`` with fixed JSON shapes.

No GraphQL engine: each operation name maps to a function that builds the ``data`` object
the SDK's pydantic models accept (read from wandb 0.31's queries and models). Responses always carry the superset of fields the SDK may ask for, since it
ignores extra ones; GraphQL aliases in the query text are copied on top afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

from wbsync.testing.network import LinkPolicy
from wbsync.testing.world import REGISTRY_PREFIX, Artifact, Collection, Membership, Project, User, World, gql_id

JSON = dict[str, Any]
_OPERATION = re.compile(r"\b(?:query|mutation)\s+(\w+)")
_ARGUMENTS = re.compile(r"\([^()]*\)")  # argument lists and variable definitions
_FIELD_ALIAS = re.compile(r"\b(\w+)\s*:\s*(\w+)")


class GraphQLError(Exception):
    """Answered as HTTP 200 with a top-level ``errors`` array (the SDK fails at once)."""


@dataclass(frozen=True)
class Context:
    world: World
    user: User
    base_url: str
    features: Sequence[str]
    links: LinkPolicy = LinkPolicy()


def operation_name(query: str) -> str | None:
    """The operation name from the query text (``operationName`` is "" for SDK queries)."""
    match = _OPERATION.search(query)
    return match.group(1) if match else None


def execute(name: str, variables: JSON, query: str, ctx: Context) -> JSON:
    """The ``data`` object for operation ``name``; ``KeyError`` if the fake doesn't know it."""
    data = OPERATIONS[name](ctx, variables)
    aliases = _field_aliases(query)
    if aliases:
        _apply_aliases(data, aliases)
    return data


@lru_cache(maxsize=256)
def _field_aliases(query: str) -> tuple[tuple[str, str], ...]:
    """``(field, alias)`` pairs such as ``("defaultArtifactType", "type")``."""
    selections = _ARGUMENTS.sub("", query)
    return tuple((field, alias) for alias, field in _FIELD_ALIAS.findall(selections))


def _apply_aliases(node: Any, aliases: tuple[tuple[str, str], ...]) -> None:
    if isinstance(node, list):
        for item in node:
            _apply_aliases(item, aliases)
    elif isinstance(node, dict):
        for value in node.values():
            _apply_aliases(value, aliases)
        for field, alias in aliases:
            if field in node:
                node[alias] = node[field]


# -- shared shapes ------------------------------------------------------------------------


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(items: Sequence[Any], variables: JSON, default_size: int | None) -> tuple[list[Any], JSON]:
    """One page of ``items``; the cursor is the offset as a string (opaque to the SDK)."""
    start = int(variables.get("cursor") or 0)
    size = variables.get("perPage") or default_size or len(items)
    end = min(start + size, len(items))
    info = {"__typename": "PageInfo", "endCursor": str(end), "hasNextPage": end < len(items)}
    return list(items[start:end]), info


def _project(project: Project) -> JSON:
    return {
        "id": project.id,
        "internalId": project.internal_id,
        "name": project.name,
        "entity": {"name": project.entity},
    }


def _collection_info(collection: Collection) -> JSON:
    return {"__typename": collection.kind, "name": collection.name, "project": _project(collection.project)}


def _alias(collection: Collection, alias: str, with_collection: bool) -> JSON:
    node: JSON = {
        "__typename": "ArtifactAlias",
        "id": gql_id("ArtifactAlias", f"{collection.id}:{alias}"),
        "alias": alias,
    }
    if with_collection:
        node["artifactCollection"] = _collection_info(collection)
    return node


def _artifact(artifact: Artifact) -> JSON:
    """ArtifactFragment, with ``aliases`` of every membership (each with its vN, §5.1)."""
    return {
        "__typename": "Artifact",
        "id": artifact.id,
        "artifactSequence": {**_collection_info(artifact.sequence), "__typename": "ArtifactSequence"},
        "versionIndex": artifact.version_index,
        "artifactType": {"name": artifact.type},
        "description": None,
        "metadata": None if artifact.metadata is None else json.dumps(artifact.metadata),
        # -2 means "no TTL" (null fails the SDK's validation)
        "ttlDurationSeconds": -2 if artifact.ttl_seconds is None else artifact.ttl_seconds,
        "ttlIsInherited": artifact.ttl_seconds is None,
        "tags": [],
        "historyStep": None,
        "state": artifact.state,
        "size": artifact.size,
        "digest": artifact.digest,
        "digestAlgorithm": "MANIFEST_XXH128" if artifact.algorithm == "xxh128" else "MANIFEST_MD5",
        "commitHash": artifact.digest[:12],
        "fileCount": len(artifact.contents),
        "createdAt": _time(artifact.created_at),
        "updatedAt": None,
        "aliases": [
            _alias(m.collection, alias, with_collection=True)
            for m in artifact.memberships
            for alias in m.aliases()
        ],
    }


def _membership(membership: Membership) -> JSON:
    return {
        "__typename": "ArtifactCollectionMembership",
        "id": membership.id,
        "versionIndex": membership.index,
        "createdAt": _time(membership.created_at),
        "aliases": [_alias(membership.collection, a, with_collection=False) for a in membership.aliases()],
        "artifactCollection": _collection_info(membership.collection),
        "artifact": _artifact(membership.artifact),
    }


def _collection(collection: Collection) -> JSON:
    """ArtifactCollectionFragment; ``type: defaultArtifactType`` comes from the query's alias."""
    return {
        "__typename": collection.kind,
        "id": collection.id,
        "name": collection.name,
        "description": None,
        "createdAt": _time(collection.created_at),
        "updatedAt": None,
        "project": _project(collection.project),
        "defaultArtifactType": {"name": collection.type},
        "tags": {"edges": []},
    }


def blob_url(base_url: str, artifact: Artifact, path: str) -> str:
    return f"{base_url}/blobs/{artifact.id.encode().hex()}/{quote(path, safe='')}"


def manifest_url(base_url: str, artifact: Artifact) -> str:
    return _signed(f"{base_url}/manifests/{artifact.id.encode().hex()}.json")


def _signed(url: str) -> str:
    """A link as a cloud bucket presigns it (the manifest's, which the SDK prints when its GET
    fails): the signature in the query string must never be printed. The server ignores it."""
    signature = hashlib.sha256(url.encode()).hexdigest()
    return f"{url}?X-Amz-Expires=3600&X-Amz-Signature={signature}"


def _file(ctx: Context, artifact: Artifact, path: str) -> JSON:
    entry = artifact.contents[path]
    url = ctx.links.sign(blob_url(ctx.links.base(ctx.base_url), artifact, path))
    return {
        "__typename": "File",
        "id": gql_id("File", f"{artifact.id}:{path}"),
        "name": path,  # must equal the manifest key: downloads follow this list
        "displayName": path,
        "url": url,
        "sizeBytes": entry["size"],
        "storagePath": None,
        "mimetype": "application/octet-stream",
        "updatedAt": _time(artifact.created_at),
        "digest": entry["digest"],
        "md5": entry["digest"] if artifact.algorithm == "md5" else None,
        "directUrl": url,
    }


# -- operations ---------------------------------------------------------------------------


def _viewer(ctx: Context, variables: JSON) -> JSON:
    user = ctx.user
    teams = [{"node": {"name": t}} for t in ctx.world.teams_of(user)]
    return {
        "viewer": {
            "id": gql_id("User", user.username),
            "entity": user.username,
            "username": user.username,
            "email": f"{user.username}@example.com",
            "teams": {"edges": teams},
        }
    }


def _default_entity(ctx: Context, variables: JSON) -> JSON:
    return {"viewer": {"id": gql_id("User", ctx.user.username), "entity": ctx.user.username}}


def _org_info(ctx: Context, variables: JSON) -> JSON:
    team_org, user_orgs = ctx.world.orgs_of_entity(variables["entity"])

    def info(org: Any) -> JSON:
        return {"name": org.name, "orgEntity": {"name": org.entity}}

    if team_org is None and user_orgs is None:
        return {"entity": None}
    return {
        "entity": {
            "organization": info(team_org) if team_org else None,
            "user": None if user_orgs is None else {"organizations": [info(o) for o in user_orgs]},
        }
    }


def _coreweave_org_id(ctx: Context, variables: JSON) -> JSON:
    """Sent by ``wandb.init`` (not needed by wbsync itself); fake orgs have no CoreWeave id."""
    team_org, user_orgs = ctx.world.orgs_of_entity(variables["entityName"])
    if team_org is None and user_orgs is None:
        return {"entity": None}
    return {"entity": {"organization": team_org and {"coreWeaveOrganizationId": None}}}


def _server_features(ctx: Context, variables: JSON) -> JSON:
    features = [{"name": name, "isEnabled": True} for name in ctx.features]
    return {"serverInfo": {"features": features}}


def _membership_by_name(ctx: Context, variables: JSON) -> JSON:
    project = ctx.world.project(variables["entity"], variables["project"])
    if project is None:
        return {"project": None}
    name, _, selector = variables["name"].partition(":")
    collection = project.collections.get(name)
    membership = collection.resolve(selector) if collection else None
    return {"project": {"artifactCollectionMembership": membership and _membership(membership)}}


def _membership_files(ctx: Context, variables: JSON, build: Callable[[Membership], JSON]) -> JSON:
    """``project.artifactCollection.artifactMembership(aliasName)`` with nulls where lookups fail."""
    project = ctx.world.project(variables["entity"], variables["project"])
    if project is None:
        return {"project": None}
    collection = project.collections.get(variables["collection"])
    if collection is None:
        return {"project": {"artifactCollection": None}}
    membership = collection.resolve(variables["alias"])
    node = {"__typename": collection.kind, "artifactMembership": membership and build(membership)}
    return {"project": {"artifactCollection": node}}


def _stored_paths(artifact: Artifact) -> list[str]:
    """Stored files only: reference entries have no bytes and are not in the File connection."""
    return artifact.stored_paths()


def _file_urls(ctx: Context, variables: JSON) -> JSON:
    def build(membership: Membership) -> JSON:
        artifact = membership.artifact
        paths, info = _page(_stored_paths(artifact), variables, default_size=None)
        edges = [{"node": _file(ctx, artifact, p)} for p in paths]
        return {"files": {"pageInfo": info, "edges": edges}}

    return _membership_files(ctx, variables, build)


def _files(ctx: Context, variables: JSON) -> JSON:
    def build(membership: Membership) -> JSON:
        artifact = membership.artifact
        paths = _stored_paths(artifact)
        if variables.get("fileNames") is not None:
            wanted = set(variables["fileNames"])
            paths = [p for p in paths if p in wanted]
        page, info = _page(paths, variables, default_size=50)
        edges = [{"node": _file(ctx, artifact, p)} for p in page]
        return {"files": {"totalCount": len(paths), "pageInfo": info, "edges": edges}}

    return _membership_files(ctx, variables, build)


def _manifest(ctx: Context, variables: JSON) -> JSON:
    artifact = ctx.world.artifacts.get(variables["id"])
    if artifact is None:
        return {"artifact": None}
    url = manifest_url(ctx.links.base(ctx.base_url), artifact)
    return {"artifact": {"currentManifest": {"file": {"directUrl": url}}}}


def _typed_collection(ctx: Context, variables: JSON, name: str, build: Callable[[Collection], JSON]) -> JSON:
    """``project.artifactType(type).artifactCollection(name)``, null at the level that fails."""
    project = ctx.world.project(variables["entity"], variables["project"])
    if project is None:
        return {"project": None}
    if not any(c.type == variables["type"] for c in project.collections.values()):
        return {"project": {"artifactType": None}}
    collection = project.collections.get(name)
    if collection is None or collection.type != variables["type"]:
        return {"project": {"artifactType": {"artifactCollection": None}}}
    return {"project": {"artifactType": {"artifactCollection": build(collection)}}}


def _project_collection(ctx: Context, variables: JSON) -> JSON:
    return _typed_collection(ctx, variables, variables["name"], _collection)


def _project_artifacts(ctx: Context, variables: JSON) -> JSON:
    def build(collection: Collection) -> JSON:
        newest_first = [collection.versions[i] for i in sorted(collection.versions, reverse=True)]
        page, info = _page(newest_first, variables, default_size=50)
        edges = [{"version": m.version, "node": _artifact(m.artifact)} for m in page]
        artifacts = {"totalCount": len(newest_first), "pageInfo": info, "edges": edges}
        return {"__typename": collection.kind, "artifacts": artifacts}

    return _typed_collection(ctx, variables, variables["collection"], build)


def _collection_aliases(ctx: Context, variables: JSON) -> JSON:
    collection = ctx.world.collections_by_id.get(variables["id"])
    if collection is None:
        return {"artifactCollection": None}
    names = [f"v{i}" for i in sorted(collection.versions)] + sorted(collection.aliases)
    page, info = _page(names, variables, default_size=1000)
    edges = [{"node": _alias(collection, a, with_collection=False)} for a in page]
    return {
        "artifactCollection": {"__typename": collection.kind, "aliases": {"pageInfo": info, "edges": edges}}
    }


def _artifact_by_id(ctx: Context, variables: JSON) -> JSON:
    artifact = ctx.world.artifacts.get(variables["id"])
    return {"artifact": artifact and _artifact(artifact)}


# -- registry search (protocol §5.2): api.registries() and .collections() ------------------


def _registries_of(ctx: Context, variables: JSON, filter_key: str) -> tuple[Any, list[Project]] | None:
    """The org named ``organization`` (display name) and its registries that match the filter
    (only ``{"name": exact}`` is understood, the SDK's own prefix included), or None."""
    org = ctx.world.orgs.get(variables["organization"])
    if org is None:
        return None
    wanted = json.loads(variables.get(filter_key) or "{}").get("name")
    projects = [p for (entity, name), p in sorted(ctx.world.projects.items())
                if entity == org.entity and name.startswith(REGISTRY_PREFIX) and wanted in (None, name)]
    return org, projects


def _fetch_registries(ctx: Context, variables: JSON) -> JSON:
    found = _registries_of(ctx, variables, "filters")
    if found is None:
        return {"organization": None}
    org, projects = found
    page, info = _page(projects, variables, default_size=100)
    edges = [{"node": _registry(p, org.name)} for p in page]
    return {"organization": {"orgEntity": {"projects": {"pageInfo": info, "edges": edges}}}}


def _registry(project: Project, org_name: str) -> JSON:
    return {**_project(project), "__typename": "Project", "entity": {"name": project.entity,
                                                                    "organization": {"name": org_name}},
            "description": None, "createdAt": _time(datetime(2026, 1, 1)), "updatedAt": None,
            "access": "PRIVATE", "allowAllArtifactTypesInRegistry": True, "artifactTypes": {"edges": []}}


def _registry_collections(ctx: Context, variables: JSON) -> JSON:
    found = _registries_of(ctx, variables, "registryFilter")
    if found is None:
        return {"organization": None}
    org, projects = found
    collections = [c for p in projects for _, c in sorted(p.collections.items()) if c.kind == "ArtifactPortfolio"]
    page, info = _page(collections, variables, default_size=100)
    edges = [{"node": _collection(c)} for c in page]
    connection = {"totalCount": len(collections), "pageInfo": info, "edges": edges}
    return {"organization": {"orgEntity": {"name": org.entity, "artifactCollections": connection}}}


# -- runs and lineage (protocol §6) -------------------------------------------------------


# Runs live beside the world rather than in it: a reset world forgets its runs with it.
_RUNS: WeakKeyDictionary[World, dict[tuple[str, str, str], JSON]] = WeakKeyDictionary()
_RUN_FIELDS = ("displayName", "description", "notes", "config", "jobType", "commit", "tags", "groupName")


def _runs(world: World) -> dict[tuple[str, str, str], JSON]:
    """Runs by (entity, project, name), as UpsertBucket left them (later non-null values win)."""
    return _RUNS.setdefault(world, {})


def _upsert_bucket(ctx: Context, variables: JSON) -> JSON:
    name = variables.get("name") or "run"
    entity = variables.get("entity") or ctx.user.username
    project = ctx.world.ensure_project(entity, variables.get("project") or "uncategorized")
    runs = _runs(ctx.world)
    key = (entity, project.name, name)
    inserted = key not in runs
    run = runs.setdefault(key, {"user": ctx.user.username})
    run.update({k: variables[k] for k in _RUN_FIELDS if variables.get(k) is not None})
    bucket = {
        "id": gql_id("Run", f"{entity}/{project.name}/{name}"),
        "name": name,
        "displayName": run.get("displayName") or name,
        "description": run.get("description"),
        "config": run.get("config") or "{}",
        "sweepName": None,
        "project": {
            "id": project.id,
            "name": project.name,
            "entity": {"id": gql_id("Entity", entity), "name": entity},
        },
        "historyLineCount": 0,
    }
    return {"upsertBucket": {"bucket": bucket, "inserted": inserted}}


def _run_node(ctx: Context, entity: str, project: Project, name: str) -> JSON | None:
    """RunFragment (``api.run()``), or None for an unknown run. The fake does not follow
    file_stream, so every run it knows reports state "finished"."""
    run = _runs(ctx.world).get((entity, project.name, name))
    if run is None:
        return None
    user = run["user"]
    return {
        "id": gql_id("Run", f"{entity}/{project.name}/{name}"),
        "projectId": int(base64.b64decode(project.internal_id).decode().rpartition(":")[2]),
        "name": name,
        "displayName": run.get("displayName") or name,
        "tags": run.get("tags") or [],
        "sweepName": None,
        "state": "finished",
        "config": run.get("config") or "{}",
        "group": run.get("groupName"),
        "jobType": run.get("jobType"),
        "commit": run.get("commit"),
        "readOnly": False,
        "createdAt": "2026-01-01T00:00:00Z",
        "heartbeatAt": None,
        "description": run.get("description"),
        "notes": run.get("notes"),
        "systemMetrics": "{}",
        "summaryMetrics": "{}",
        "historyLineCount": 0,
        "historyKeys": None,
        "user": {"name": user, "username": user},
    }


def _run(ctx: Context, variables: JSON) -> JSON:
    """``api.run("entity/project/id")``: ``run`` is null when the run does not exist."""
    project = ctx.world.project(variables["entity"], variables["project"])
    if project is None:
        return {"project": None}
    return {"project": {"run": _run_node(ctx, variables["entity"], project, variables["name"])}}


def _wandb_config(config: str) -> str:
    """``wandbConfig(keys: ["t"])``: wandb-core treats a run without ``t`` (the SDK's telemetry
    in ``config._wandb``) as never initialized, and resumes nothing."""
    telemetry = json.loads(config).get("_wandb", {}).get("value", {}).get("t")
    return json.dumps({} if telemetry is None else {"t": telemetry})


def _run_resume_status(ctx: Context, variables: JSON) -> JSON:
    """Sent by ``wandb.init(id=..., resume=...)``: ``bucket`` is null for a new run."""
    entity = variables.get("entity") or ctx.user.username
    project = ctx.world.project(entity, variables.get("project") or "uncategorized")
    if project is None:
        return {"model": None}
    node = _run_node(ctx, entity, project, variables["name"])
    bucket = node and {
        **{k: node[k] for k in ("id", "name", "displayName", "summaryMetrics", "config", "tags", "notes")},
        "logLineCount": 0,
        "historyLineCount": 0,
        "eventsLineCount": 0,
        "historyTail": "[]",
        "eventsTail": "[]",
        "wandbConfig": _wandb_config(node["config"]),
    }
    return {
        "model": {
            "id": project.id,
            "name": project.name,
            "entity": {"id": gql_id("Entity", entity), "name": entity},
            "bucket": bucket,
        }
    }


def _use_artifact(ctx: Context, variables: JSON) -> JSON:
    artifact = ctx.world.artifacts.get(variables.get("artifactID", ""))
    if artifact is None:
        raise GraphQLError(f"artifact {variables.get('artifactID')!r} not found")
    node = _artifact(artifact)
    keys = ("id", "digest", "description", "state", "createdAt", "metadata")
    return {"useArtifact": {"artifact": {k: node[k] for k in keys}}}


def _create_run_files(ctx: Context, variables: JSON) -> JSON:
    """Must be answered: wandb-core panics on a missing ``createRunFiles`` at ``run.finish()``."""
    run = variables.get("run", "run")
    files = [
        {"name": f, "uploadUrl": f"{ctx.base_url}/upload/{quote(run, safe='')}/{quote(f, safe='')}"}
        for f in variables.get("files", [])
    ]
    run_id = gql_id("Run", f"{variables.get('entity')}/{variables.get('project')}/{run}")
    return {"createRunFiles": {"runID": run_id, "uploadHeaders": [], "files": files}}


OPERATIONS: dict[str, Callable[[Context, JSON], JSON]] = {
    "Viewer": _viewer,
    "GetDefaultEntity": _default_entity,
    "FetchOrgInfoFromEntity": _org_info,
    "ServerFeaturesQuery": _server_features,
    "ArtifactMembershipByName": _membership_by_name,
    "FetchArtifactManifest": _manifest,
    "GetArtifactMembershipFileUrls": _file_urls,
    "ArtifactMembershipFiles": _files,
    "ProjectArtifactCollection": _project_collection,
    "ProjectArtifacts": _project_artifacts,
    "ArtifactCollectionAliases": _collection_aliases,
    "ArtifactByID": _artifact_by_id,
    "FetchRegistries": _fetch_registries,
    "RegistryCollections": _registry_collections,
    "UpsertBucket": _upsert_bucket,
    "Run": _run,
    "RunResumeStatus": _run_resume_status,
    "UseArtifact": _use_artifact,
    "CreateRunFiles": _create_run_files,
    "OrganizationCoreWeaveOrganizationID": _coreweave_org_id,
}
