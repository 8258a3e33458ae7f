"""Registry references: ``[ORG/]wandb-registry-{REGISTRY}/{COLLECTION}[:{ALIAS}|:v{N}]``.

These are the forms the W&B App shows under "Full Name" (README, "Quick start", and artifacts.yaml.example).
Each check raises ValueError with a sentence a user can act on; the manifest layer puts the
file, line and field in front of it.
"""

from __future__ import annotations

import re

from wbsync.core.models import REGISTRY_PREFIX, Reference

EXPECTED_FORM = "[ORG/]wandb-registry-REGISTRY/COLLECTION:ALIAS (or :vN)"
# W&B resolves a name without ":ALIAS" to the version aliased "latest"; we write that alias
# out so the lock and messages say what was meant.
DEFAULT_ALIAS = "latest"
# The App lists the core registries as "Model" and "Dataset", but their projects are
# wandb-registry-model / wandb-registry-dataset and W&B matches project names exactly.
CORE_REGISTRIES = ("model", "dataset")

# W&B's rule for artifact (collection) names, from wandb/sdk/artifacts/artifact.py.
_COLLECTION = re.compile(r"[A-Za-z0-9._-]+")
_ALIAS = re.compile(r"[A-Za-z0-9._-]+")
_VERSION_LIKE = re.compile(r"v[0-9]+")
_VERSION = re.compile(r"v(0|[1-9][0-9]*)")
# W&B refuses these in project names, so in registry names (wandb/sdk/artifacts/_validators.py).
_REGISTRY_FORBIDDEN = frozenset("/\\#?%:")
_REGISTRY_MAXLEN = 128 - len(REGISTRY_PREFIX)


def parse_reference(text: str) -> Reference:
    """Parse a registry full name; a missing ``:ALIAS`` means ``:latest``.

    A ``vN`` selector sets ``Reference.version``, anything else ``Reference.alias``.
    Core registries typed in another case (``Model``) become ``model`` / ``dataset``.
    """
    if not text.strip():
        raise ValueError(f"the artifact name is empty: expected {EXPECTED_FORM}.")
    _check_no_outer_spaces("the artifact name", text)
    # Aliases cannot contain ":" (W&B splits the same way), so the first ":" ends the path.
    path, colon, selector = text.partition(":")
    parts = path.split("/")
    at = next((i for i, part in enumerate(parts) if part.startswith(REGISTRY_PREFIX)), None)
    if at is None:
        raise ValueError(
            f"{text!r} is not a registry artifact: wbsync only handles W&B Registry artifacts, "
            f"named {EXPECTED_FORM}, e.g. wandb-registry-model/phi3:production. Copy the "
            "\"Full Name\" from the Registry App, or link the artifact to a registry first."
        )
    if at > 1 or len(parts) - at > 2:
        raise ValueError(f"{text!r} has too many '/': expected {EXPECTED_FORM}.")
    if len(parts) - at < 2:
        raise ValueError(f"{text!r} names no collection: expected {EXPECTED_FORM}.")
    if colon and not selector:
        raise ValueError(f"{text!r} has nothing after ':': give an alias or a version such as v3.")
    selector = selector if colon else DEFAULT_ALIAS
    is_version = bool(_VERSION_LIKE.fullmatch(selector))
    return reference_from_parts(
        parts[at][len(REGISTRY_PREFIX) :],
        parts[at + 1],
        alias=None if is_version else selector,
        version=selector if is_version else None,
        org=parts[0] if at == 1 else None,
    )


def reference_from_parts(
    registry: str,
    collection: str,
    *,
    alias: str | None = None,
    version: str | None = None,
    org: str | None = None,
) -> Reference:
    """Check each part and build a Reference; exactly one of ``alias`` and ``version``."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of an alias and a version.")
    return Reference(
        registry=check_registry(registry),
        collection=check_collection(collection),
        alias=None if alias is None else check_alias(alias),
        version=None if version is None else check_version(version),
        org=None if org is None else check_org(org),
    )


def check_registry(name: str) -> str:
    """Return the registry name as W&B knows it (core registries lower-cased)."""
    if not name:
        raise ValueError(
            "the registry name is empty: write wandb-registry-REGISTRY, e.g. wandb-registry-model."
        )
    _check_no_outer_spaces("the registry name", name)
    if bad := sorted(_REGISTRY_FORBIDDEN.intersection(name)):
        raise ValueError(
            f"registry name {name!r} contains {' '.join(bad)}, which W&B does not allow."
        )
    if len(name) > _REGISTRY_MAXLEN:
        raise ValueError(f"registry name {name!r} is longer than {_REGISTRY_MAXLEN} characters.")
    return name.lower() if name.lower() in CORE_REGISTRIES else name


def check_registry_part(name: str) -> str:
    """``registry:`` in the parts form: the registry's name, which W&B's full names prefix with
    ``wandb-registry-``; the prefix written here too would name another registry."""
    if name.startswith(REGISTRY_PREFIX) and len(name) > len(REGISTRY_PREFIX):
        bare = name[len(REGISTRY_PREFIX):]
        shown = f'"{bare}"' if " " in bare else bare
        raise ValueError(f"{name!r} starts with {REGISTRY_PREFIX!r}, which the parts form leaves out (the "
                         f"registry's name alone, as the App lists it): write registry: {shown}.")
    return check_registry(name)


def check_collection(name: str) -> str:
    if not _COLLECTION.fullmatch(name):
        what = "the collection name is empty" if not name else f"collection name {name!r} is invalid"
        raise ValueError(f"{what}: collection names use only letters, digits, '-', '_' and '.'.")
    return name


def check_alias(alias: str) -> str:
    if _VERSION_LIKE.fullmatch(alias):
        raise ValueError(f"{alias!r} is a version, not an alias: write it as version: {alias}.")
    if not _ALIAS.fullmatch(alias):
        what = "the alias is empty" if not alias else f"{alias!r} is not a valid alias"
        raise ValueError(f"{what}: aliases use only letters, digits, '-', '_' and '.'.")
    return alias


def check_version(version: str) -> str:
    if _VERSION.fullmatch(version):
        return version
    if _VERSION_LIKE.fullmatch(version):
        # W&B never writes v01; it would be looked up as an alias and not be found.
        raise ValueError(f"{version!r} has a leading zero: write v{int(version[1:])}.")
    raise ValueError(
        f"{version!r} is not a version: versions are 'v' and a number, e.g. v3 "
        "(to follow an alias, use alias instead)."
    )


def check_org(org: str) -> str:
    if not org:
        raise ValueError("the org name is empty: give the org's display name or entity name.")
    _check_no_outer_spaces("the org name", org)
    if "/" in org or ":" in org:
        raise ValueError(f"org name {org!r} cannot contain '/' or ':'.")
    return org


def check_entity(entity: str) -> str:
    """A team entity (W&B entity names have no spaces)."""
    if not entity or any(c.isspace() or c in "/:" for c in entity):
        raise ValueError(f"{entity!r} is not an entity name: it cannot be empty or contain spaces, '/' or ':'.")
    return entity


def _check_no_outer_spaces(what: str, text: str) -> None:
    if text != text.strip():
        raise ValueError(f"{what} {text!r} has spaces at the start or end: remove them.")
