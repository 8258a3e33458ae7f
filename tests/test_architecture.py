"""Project rules that keep the architecture honest: import boundaries, published schemas."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import yaml

import wbsync
from wbsync.repo.lockfile import dumps
from wbsync.core.schemas import schema_dir

PACKAGE = Path(wbsync.__file__).parent
REPO_SCHEMA = Path(__file__).parent.parent / "schema"


WANDB_MODULE = "sources/wandb_registry.py"  # the one module allowed to import wandb


def imports(tree: ast.AST, package: str) -> Iterator[tuple[ast.AST, str | None]]:
    """Every module a parsed file imports, as ``(node, absolute dotted name)``: import
    statements (relative ones resolved against ``package``), ``importlib.import_module(...)``
    and ``__import__(...)``. A dynamic import whose name is not a literal yields ``None``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield node, base
            for alias in node.names:  # `from wbsync import x` may import the module wbsync.x
                yield node, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _dynamic_import(node.func):
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            yield node, first.value if literal else None  # type: ignore[union-attr]


def _dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr in ("import_module", "__import__")


def package_modules() -> Iterator[tuple[str, ast.Module, str]]:
    """Every module of the package: ``(path relative to the package, its AST, its package)``."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        package = ".".join(["wbsync", *path.relative_to(PACKAGE).parent.parts])
        yield rel, ast.parse(path.read_text(encoding="utf-8"), str(path)), package


def test_wandb_is_imported_in_the_wandb_source_module_only() -> None:
    offenders = []
    for rel, tree, package in package_modules():
        for node, name in imports(tree, package):
            if name is None:
                offenders.append(f"{rel}:{node.lineno}: a dynamic import of a computed name")
            elif (name == "wandb" or name.startswith("wandb.")) and rel != WANDB_MODULE:
                offenders.append(f"{rel}:{node.lineno}: imports {name}")
    assert offenders == []


def test_the_wandb_import_in_the_source_module_is_lazy() -> None:
    """No import of wandb runs when the module is imported: each sits inside a function."""
    tree = ast.parse((PACKAGE / WANDB_MODULE).read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(node) for f in functions for node in ast.walk(f)}
    eager = [node.lineno for node, name in imports(tree, "wbsync.sources")
             if name is not None and name.split(".")[0] == "wandb" and id(node) not in inside]
    assert eager == [], f"wandb imported at module level in {WANDB_MODULE}, line(s) {eager}"


# What a command does. Sources (wbsync/sources/) sit below every one of them: they answer
# "what does this reference hold" and "where are its bytes", and know nothing of a feature.
FEATURES = ("agreement", "api", "cli", "commands", "fetch", "fingerprint", "lineage", "lockdiff", "mirror",
            "outdated", "ownership", "place", "plan", "progress", "render", "render_diff", "rehash", "resolve",
            "swap", "sync", "verify")


def test_source_adapters_import_no_feature_module() -> None:
    offenders = []
    for rel, tree, package in package_modules():
        if not rel.startswith("sources/"):
            continue
        for node, name in imports(tree, package):
            parts = (name or "").split(".")
            if len(parts) > 1 and parts[0] == "wbsync" and parts[1] in FEATURES:
                offenders.append(f"{rel}:{node.lineno}: imports {name}")
    assert offenders == []


def test_the_import_rule_sees_every_spelling_of_an_import() -> None:
    spellings = {
        "import wandb": "wandb",
        "import wandb.apis as a": "wandb.apis",
        "from wandb import Api": "wandb",
        "import importlib; importlib.import_module('wandb')": "wandb",
        "from importlib import import_module; import_module('wandb.sdk')": "wandb.sdk",
        "__import__('wandb')": "wandb",
        "from .. import sources": "wbsync.sources",
    }
    for code, module in spellings.items():
        found = [name for _node, name in imports(ast.parse(code), "wbsync.commands")]
        assert module in found, code
    assert [n for _node, n in imports(ast.parse("importlib.import_module(name)"), "wbsync")] == [None]


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
