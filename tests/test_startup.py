"""What a start costs: the modules that `wbsync --help`, `wbsync --version`, a no-op
`sync --frozen` and `wbsync.path()` import, and the one reason an import may sit inside a
function.

Each start runs in a fresh interpreter and reports the wbsync modules it loaded. A start may
load fewer modules than recorded here (then shrink the record), never more: a module that joins
a start is paid by every user on every run. An import inside a function is allowed only where
it keeps one of these starts from loading a module: some start loads the importing module but
not the imported one. Anywhere else it only hides a dependency (a circle, once), so it goes to
the top of the module.
"""

from __future__ import annotations

import ast
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest

import wbsync

PACKAGE = Path(wbsync.__file__).parent
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"

_REPORT = """
import json, sys
before = set(sys.modules)
{body}
others = {{m.split(".")[0] for m in set(sys.modules) - before}} - set(sys.stdlib_module_names)
json.dump({{"wbsync": sorted(m for m in sys.modules if m == "wbsync" or m.startswith("wbsync.")),
           "others": sorted(m for m in others if m != "wbsync" and not m.startswith("_") and m != "cython_runtime")}},
          sys.stderr)
"""
_CLI = """
sys.argv = ["wbsync", *{args!r}]
from wbsync.cli import main
try:
    main()
except SystemExit:
    pass
"""
STARTS = {
    "wbsync --help": _CLI.format(args=["--help"]),
    "wbsync --version": _CLI.format(args=["--version"]),
    "wbsync sync --frozen (no-op)": _CLI.format(args=["sync", "--frozen", "-q"]),
    "wbsync.path()": "import wbsync\nwbsync.path('phi3')\n",
}

_CLI_BASE = {
    "wbsync", "wbsync.cli", "wbsync.cli.commands", "wbsync.cli.commands.add", "wbsync.cli.commands.cache",
    "wbsync.cli.commands.diff", "wbsync.cli.commands.lineage", "wbsync.cli.commands.lock",
    "wbsync.cli.commands.mirror", "wbsync.cli.commands.outdated", "wbsync.cli.commands.sync",
    "wbsync.cli.commands.verify", "wbsync.cli.options", "wbsync.core", "wbsync.core.errors",
    "wbsync.core.notices",
}
# What a no-op sync and `wbsync.path()` share: reading the lock and the state, planning against
# the tree, and wbsync.sync with its phases (settle, stage, the batched fetch, which loads the
# fetcher and urllib3 only when something is missing).
_READ_AND_PLAN = {
    "wbsync.core", "wbsync.core.atomic", "wbsync.core.digests", "wbsync.core.errors", "wbsync.core.filelock",
    "wbsync.core.models", "wbsync.core.paths", "wbsync.core.placed", "wbsync.core.references",
    "wbsync.core.reserved", "wbsync.core.safeio", "wbsync.core.schemas", "wbsync.core.settings", "wbsync.decide",
    "wbsync.decide.agreement",
    "wbsync.decide.plan", "wbsync.decide.resolve", "wbsync.net", "wbsync.net.batches", "wbsync.repo", "wbsync.repo.lockfile", "wbsync.repo.manifest",
    "wbsync.repo.project", "wbsync.repo.projectfile", "wbsync.sources", "wbsync.sources.listings", "wbsync.store", "wbsync.store.blobs", "wbsync.store.trust",
    "wbsync.store.listing", "wbsync.store.rehash", "wbsync.sync", "wbsync.tree", "wbsync.tree.fingerprint",
    "wbsync.tree.move", "wbsync.tree.ownership", "wbsync.tree.place", "wbsync.tree.settle", "wbsync.tree.stage",
    "wbsync.tree.state", "wbsync.tree.swap", "wbsync.tree.verify",
}
RECORDED: dict[str, set[str]] = {
    "wbsync --help": _CLI_BASE,
    "wbsync --version": _CLI_BASE,
    "wbsync sync --frozen (no-op)": _CLI_BASE | _READ_AND_PLAN | {
        "wbsync.cache", "wbsync.cli.render", "wbsync.cli.style", "wbsync.core.shown", "wbsync.core.text",
        "wbsync.progress", "wbsync.store.partial",
    },
    "wbsync.path()": {"wbsync", "wbsync.api", "wbsync.repo.locked"} | _READ_AND_PLAN,
}


# The packages from outside the standard library that each start imports (their top-level names;
# a C extension's own runtime modules left out). wandb, urllib3 and jsonschema are in none.
RECORDED_OTHERS: dict[str, set[str]] = {
    "wbsync --help": {"click"},
    "wbsync --version": {"click"},
    "wbsync sync --frozen (no-op)": {"click", "xxhash", "yaml"},
    "wbsync.path()": {"xxhash", "yaml"},
}


def loaded(start: str) -> frozenset[str]:
    """The wbsync modules a start imports, in a fresh interpreter in a synced copy of the demo."""
    return frozenset(_report(start)["wbsync"])


@cache
def _report(start: str) -> dict[str, list[str]]:
    project = _synced_demo()
    proc = subprocess.run([sys.executable, "-c", _REPORT.format(body=STARTS[start])], cwd=project,
                          capture_output=True, text=True, timeout=120)
    *_, report = proc.stderr.strip().splitlines() or [""]
    assert report.startswith("{"), f"{start}: {proc.stdout}{proc.stderr}"
    return json.loads(report)


@cache
def _synced_demo() -> Path:
    folder = tempfile.mkdtemp(prefix="wbsync-startup-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    project = Path(folder) / "demo"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns(".wbsync", "models", "data"))
    proc = subprocess.run([sys.executable, "-m", "wbsync", "sync", "-q"], cwd=project, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return project


@pytest.mark.parametrize("start", list(STARTS))
def test_a_start_loads_no_module_beyond_its_record(start: str) -> None:
    grown = sorted(loaded(start) - RECORDED[start])
    assert grown == [], f"{start} now also imports {grown}: keep them out of that path, or record them here " \
                        "if every user must pay for them"


@pytest.mark.parametrize("start", list(STARTS))
def test_a_start_loads_no_package_from_outside_beyond_its_record(start: str) -> None:
    grown = sorted(set(_report(start)["others"]) - RECORDED_OTHERS[start])
    assert grown == [], f"{start} now also imports {grown}"


def test_no_start_loads_wandb_or_the_network_stack() -> None:
    for start in STARTS:
        assert not {"wbsync.sources.wandb_registry", "wbsync.net.fetch", "wbsync.net.transfer"} & loaded(start), start
        assert not {"wandb", "urllib3", "jsonschema", "requests"} & set(_report(start)["others"]), start


def test_every_layer_folder_s_init_imports_nothing() -> None:
    """A layer's ``__init__`` is its docstring: importing one module of a layer must not load the
    rest of it (``wbsync.sources``, whose ``__init__`` is the Source protocol itself, imports only
    core.models)."""
    offenders = []
    for init in sorted(PACKAGE.glob("*/__init__.py")) + sorted(PACKAGE.glob("*/*/__init__.py")):
        rel = init.relative_to(PACKAGE).as_posix()
        if rel in ("cli/__init__.py", "testing/__init__.py"):
            continue  # the CLI's entry point itself; the test kit's lazy names
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                    isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                names = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = (names or "").split(".")[0]
                if top in sys.stdlib_module_names or rel == "sources/__init__.py" and names.startswith("wbsync.core."):
                    continue
                offenders.append(f"{rel}:{node.lineno}: imports {names}")
    assert offenders == []


def function_level_imports() -> list[tuple[str, int, str, str]]:
    """``(importing module, line, imported wbsync module, its function)`` for every import of a
    wbsync module inside a function of the package (the innermost function, where they nest)."""
    found: dict[tuple[str, int, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                for name in _wbsync_modules(node, module):
                    found[(module, node.lineno, name)] = fn.name  # ast.walk meets an inner function later
    return sorted((module, line, name, fn) for (module, line, name), fn in found.items())


def _wbsync_modules(node: ast.AST, importer: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("wbsync")]
    if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("wbsync"):
        return []
    base = node.module or ""
    out = []
    for alias in node.names:  # `from wbsync.cli import render` imports the module wbsync.cli.render
        sub = f"{base}.{alias.name}"
        file = PACKAGE.parent / sub.replace(".", "/")
        out.append(sub if file.with_suffix(".py").exists() or (file / "__init__.py").exists() else base)
    return out


def test_an_import_inside_a_function_keeps_some_start_from_loading_a_module() -> None:
    starts = {start: loaded(start) for start in STARTS}
    unjustified = []
    for module, line, imported, function in function_level_imports():
        if module.startswith("wbsync.testing"):
            continue  # the test kit: no user's start loads it
        if not any(module in mods and imported not in mods for mods in starts.values()):
            unjustified.append(f"{module}:{line} ({function}) imports {imported}")
    assert unjustified == [], "imports inside functions that no start needs (move them to the module's top):\n" \
                              + "\n".join(unjustified)


def test_the_rule_sees_an_import_inside_a_function() -> None:
    found = {(m, i) for m, _line, i, _f in function_level_imports()}
    assert ("wbsync.cli.commands.sync", "wbsync.sync") in found  # keeps `wbsync --help` from loading sync
    assert ("wbsync.cli.commands.lock", "wbsync.cli.render") in found  # `from wbsync.cli import render`
