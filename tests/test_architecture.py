"""Project rules that keep the architecture honest: import boundaries, published schemas."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

import wbsync
from wbsync.core.schemas import schema_dir
from wbsync.repo.lockfile import dumps

PACKAGE = Path(wbsync.__file__).parent
REPO = Path(__file__).resolve().parent.parent
REPO_SCHEMA = REPO / "schema"


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


# -- the layers (pyproject.toml, [tool.importlinter]; docs/architecture.md) --------------------


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package and contracts under ``root``, as CI runs it."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (the dev extra brings it, on Python 3.11 or later)")
    return subprocess.run([exe, "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)}, timeout=300)


def test_every_import_linter_contract_is_kept() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("core/models.py", "from wbsync.tree import place", "Layers"),  # the bottom layer reaching up
    ("store/blobs.py", "import wandb", "Only the W&B source module imports wandb"),
    ("decide/agreement.py", "def _later():\n    from wbsync.sync import run_sync", "Layers"),  # inside a function
    ("cli/commands/verify.py", "from wbsync.cli import main", "never import the CLI's entry point"),
    ("lineage.py", "from wbsync.sources import wandb_registry", "through wbsync.sources"),
    ("newcomer.py", "from wbsync.core import models", "Layers"),  # a module no layer names
    ("tree/place.py", "import wbsync.errors", "old addresses"),
])
def test_a_planted_upward_import_breaks_its_contract(tmp_path: Path, module: str, planted: str, contract: str) -> None:
    shutil.copytree(PACKAGE, tmp_path / "wbsync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "wbsync" / module
    before = target.read_text(encoding="utf-8") if target.exists() else ""
    target.write_text(before + f"\n{planted}\n", encoding="utf-8")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, proc.stdout


def test_no_module_imports_another_that_imports_it_back() -> None:
    """No circle of any length between modules, packages' ``__init__`` modules included (the
    contracts compare folders; this compares modules), function-level imports included."""
    grimp = pytest.importorskip("grimp", reason="grimp (import-linter's graph) is not installed: dev extra, 3.11+")
    graph = grimp.build_graph("wbsync", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    circles = [sorted(c) for c in _strongly_connected(modules, edges) if len(c) > 1]
    assert circles == []


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a long chain)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in nodes:
        if root in order:
            continue
        work = [(root, iter(edges[root]))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    nodes = sorted(edges)
    parts = _strongly_connected(nodes, edges)
    assert sorted(sorted(c) for c in parts if len(c) > 1) == [["a", "b", "c"]]


# Paths the README and the docs give, which must keep importing whatever moves inside.
OLD_PATHS = [
    ("wbsync", "WbsyncError"), ("wbsync", "NotSyncedError"), ("wbsync.errors", "WbsyncError"),
    ("wbsync.errors", "NotSyncedError"), ("wbsync.errors", "UsageError"), ("wbsync.api", "SyncResult"),
    ("wbsync.api", "LockResult"), ("wbsync.api", "LockedArtifact"), ("wbsync.cli", "main"),
    ("wbsync.sync", "run_sync"), ("wbsync.sync", "run_lock"), ("wbsync.listing", "iter_files"),
    ("wbsync.testing", "FakeWandb"), ("wbsync.testing.server", "main"), ("wbsync.testing.demo", "main"),
]


@pytest.mark.parametrize(("module", "name"), OLD_PATHS)
def test_a_path_the_docs_give_still_imports(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


def test_the_console_script_and_the_module_entry_points_run() -> None:
    for args in (["-m", "wbsync", "--version"], ["-m", "wbsync.testing.server", "--help"]):
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert "wbsync = \"wbsync.cli:main\"" in (REPO / "pyproject.toml").read_text()
