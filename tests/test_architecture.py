"""Project rules that keep the architecture honest (DESIGN.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

import wbsync
from wbsync.lockfile import dumps
from wbsync.schemas import schema_dir

PACKAGE = Path(wbsync.__file__).parent
REPO_SCHEMA = Path(__file__).parent.parent / "schema"


def test_wandb_is_imported_in_the_wandb_source_module_only() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(import wandb|from wandb)", text, re.M) and path.name != "wandb_registry.py":
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_wandb_import_in_the_source_module_is_lazy() -> None:
    text = (PACKAGE / "sources" / "wandb_registry.py").read_text()
    assert not re.search(r"^(import wandb|from wandb)", text, re.M), "import wandb at module level"


def test_the_installed_schemas_are_the_published_ones() -> None:
    for name in ("manifest", "lock"):
        installed = json.loads((schema_dir() / f"{name}.schema.json").read_text())
        published = json.loads((REPO_SCHEMA / f"{name}.schema.json").read_text())
        assert installed == published, f"{name}.schema.json in the package differs from schema/"


def test_a_lock_wbsync_writes_is_valid_against_the_published_lock_schema() -> None:
    from test_lockfile import sample_lock

    schema = json.loads((REPO_SCHEMA / "lock.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(dumps(sample_lock())), schema)
