"""Mutation testing by a tool (mutmut 3), in resumable shards whose results merge.

    python -m bench.mutate_tool                      # every shard, smallest first; fails on a new survivor
    python -m bench.mutate_tool shown ownership      # only these shards
    python -m bench.mutate_tool --list               # the shards: modules mutated, tests run
    python -m bench.mutate_tool --sanity-only        # only: do CLI subprocesses run the mutated tree?

docs/mutation.md ("Mutation testing by a tool") explains the choices. In short:

* A shard is one group of modules and the test files that reach them. It runs in its own copy
  of the repository's tracked files under ``.mutation/<shard>/`` (never in the working tree),
  whose ``pyproject.toml`` gets a ``[tool.mutmut]`` table naming the shard's modules
  (``only_mutate``) and tests. mutmut keeps each mutant's result in that copy's ``mutants/``:
  a killed or stopped run resumes where it was. A copy made from another commit is rebuilt.
* mutmut records which tests reach each mutated function (its "stats" run) and runs only those
  per mutant: coverage-based selection. One worker, ``nice -n 19`` (a shared 2-core machine).
* CLI subprocesses (``python -m wbsync`` in tests) import the mutated tree: a ``sitecustomize``
  on ``PYTHONPATH`` puts the copy's ``mutants/`` first in every process, and the active mutant's name is inherited through the
  environment (``MUTANT_UNDER_TEST``). The same ``sitecustomize`` turns mutmut's stats mode off
  in subprocesses (mutmut records hits only in the test process). The sanity check proves it
  before any shard runs: a mutant that changes the CLI's exit code must fail a subprocess test.
* Timeouts, crashes, "no tests" (no test reaches the line) and suspicious results count as
  survivors. ``bench/mutation_survivors.txt`` lists the survivors explained in
  docs/mutation.md; any other survivor fails the run (exit 1). ``.mutation/results.json`` holds
  the merged status of every mutant of every shard run so far.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutation"
KNOWN = REPO / "bench" / "mutation_survivors.txt"
KILLED = {"killed", "caught by type check"}
# Files the tests read besides the package and the tests (mutmut copies these into mutants/).
ALSO_COPY = ["schema/", "bench/", "docs/", "examples/", ".pre-commit-hooks.yaml", "README.md", "constraints.txt",
             "artifacts.yaml.example", "LICENSE"]


@dataclass(frozen=True)
class Shard:
    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]


# Smallest first, so that a run cut short has finished the most shards.
SHARDS = (
    Shard("shown", ("wbsync/core/shown.py",),
          ("tests/test_redaction.py", "tests/test_cli_output.py", "tests/test_hostile.py",
           "tests/test_whole_promises.py")),
    Shard("outdated", ("wbsync/decide/outdated.py",),
          ("tests/test_commands.py", "tests/test_vanished.py", "tests/test_hints.py", "tests/test_whole_promises.py")),
    Shard("agreement", ("wbsync/decide/agreement.py",), ("tests/test_hostile.py", "tests/test_commands.py")),
    Shard("ownership", ("wbsync/tree/ownership.py",), ("tests/test_ownership.py", "tests/test_whole_promises.py")),
    Shard("verify", ("wbsync/tree/verify.py", "wbsync/store/rehash.py"),
          ("tests/test_whole_promises.py", "tests/test_blob_recheck.py", "tests/test_lock_and_sync.py")),
    Shard("swap", ("wbsync/tree/swap.py",), ("tests/test_swap.py",)),
    Shard("state", ("wbsync/tree/state.py",), ("tests/test_ownership.py", "tests/test_swap.py")),
    Shard("store", ("wbsync/store/blobs.py", "wbsync/store/partial.py"),
          ("tests/test_store.py", "tests/test_partial.py", "tests/test_whole_promises.py")),
    Shard("transfer", ("wbsync/net/transfer.py", "wbsync/net/fetch.py"),
          ("tests/test_failures.py", "tests/test_network.py", "tests/test_whole_promises.py")),
    Shard("mirror", ("wbsync/mirror.py", "wbsync/sources/mirror.py"), ("tests/test_mirror.py",)),
)

# The sanity mutant: the CLI's exit code for a wbsync error (here: None, so exit 0).
SANITY_MODULE = "wbsync/cli/__init__.py"
SANITY_LINE = "ctx.exit(_report(exc.message, None, ctx))"  # a line the mutant adds (its diff's "+")
SANITY_TEST = "tests/test_mutation_tool.py::test_a_bad_manifest_exits_2_in_a_fresh_process"
SITECUSTOMIZE = '''import os
import sys

# Every process started with the shard's PYTHONPATH: the mutated tree first, once mutmut made it.
# (Not on PYTHONPATH itself: a folder that does not exist yet when mutmut starts is cached as
# "no importer" for that path, and mutmut's own sys.path entry for it would then find nothing.)
_MUTANTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mutants")
if os.path.isdir(os.path.join(_MUTANTS, "wbsync")) and _MUTANTS not in sys.path:
    sys.path.insert(0, _MUTANTS)
# A CLI subprocess of a test: mutmut records stats in the test process only; run the original.
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    os.environ["MUTANT_UNDER_TEST"] = ""
'''


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def prepare(name: str, modules: tuple[str, ...], tests: tuple[str, ...]) -> Path:
    """The shard's copy of the repository, reused when it was made from this commit (resume)."""
    where = WORK / name
    commit = head()
    if (where / ".commit").exists() and (where / ".commit").read_text() == commit:
        return where
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (REPO / rel).is_file():
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, where / rel)
    table = {"source_paths": ["wbsync/"], "only_mutate": list(modules),
             "pytest_add_cli_args_test_selection": list(tests), "also_copy": ALSO_COPY}
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    with open(where / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    (where / ".mutate-site").mkdir()
    (where / ".mutate-site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (where / ".commit").write_text(commit)
    return where


def env_for(where: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(where / ".mutate-site")  # its sitecustomize puts mutants/ first
    return env


def mutmut(where: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", *args]
    return subprocess.run(cmd, cwd=where, env=env_for(where), capture_output=True, text=True, check=check)


def statuses(where: Path) -> dict[str, str]:
    out = mutmut(where, "results", "--all", "true", check=False).stdout
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", out, re.M))


def sanity() -> str | None:
    """None when a CLI mutant changing the exit code fails a subprocess test, else why not."""
    where = prepare("sanity", (SANITY_MODULE,), (SANITY_TEST.split("::")[0],))
    mutmut(where, "run", "--max-children", "1", "wbsync.cli.nothing*", check=False)  # generate mutants only
    chosen = None
    for name in sorted(statuses(where), key=lambda n: "invoke" not in n):  # where the line is: first
        shown = mutmut(where, "show", name, check=False).stdout.splitlines()
        if any(line.startswith("+") and line[1:].strip() == SANITY_LINE for line in shown):
            chosen = name
            break
    if chosen is None:
        return f"no mutant of {SANITY_MODULE} adds {SANITY_LINE!r} (update SANITY_LINE)"
    test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SANITY_TEST]
    for mutant, should_pass in (("", True), (chosen, False)):
        env = env_for(where) | {"MUTANT_UNDER_TEST": mutant}
        passed = subprocess.run(test, cwd=where / "mutants", env=env, capture_output=True).returncode == 0
        if passed != should_pass:
            return (f"{SANITY_TEST} {'failed' if should_pass else 'passed'} with "
                    f"{'no mutant' if should_pass else chosen}: subprocesses do not run the mutated tree")
    return None


def run_shard(shard: Shard) -> dict[str, str]:
    where = prepare(shard.name, shard.modules, shard.tests)
    started = time.monotonic()
    ran = mutmut(where, "run", "--max-children", "1", check=False)
    (where / "mutmut.log").write_text(ran.stdout + ran.stderr)
    # Its first run of the tests failed, or reached no mutated function: nothing was measured.
    if any(why in ran.stdout for why in ("failed to collect stats", "Stopping early")):
        raise SystemExit(f"{shard.name}: mutmut measured nothing; see {where / 'mutmut.log'}")
    found = statuses(where)
    print(f"{shard.name}: {score(found)} in {time.monotonic() - started:.0f} s", flush=True)
    return found


def score(found: dict[str, str]) -> str:
    killed = sum(1 for s in found.values() if s in KILLED)
    return f"{killed} of {len(found)} killed ({100 * killed / max(len(found), 1):.0f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutate_tool", description=__doc__.split("\n")[0])
    parser.add_argument("shards", nargs="*", help="shard names (default: all, smallest first)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--sanity-only", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for s in SHARDS:
            print(f"{s.name}: {' '.join(s.modules)}  <-  {' '.join(s.tests)}")
        return 0
    unknown = set(args.shards) - {s.name for s in SHARDS}
    if unknown:
        parser.error(f"unknown shard(s) {sorted(unknown)}; --list names them")
    why = sanity()
    if why is not None:
        print(f"sanity check failed: {why}", file=sys.stderr)
        return 2
    print("sanity: a CLI mutant that changes the exit code fails a subprocess test", flush=True)
    if args.sanity_only:
        return 0
    results_path = WORK / "results.json"
    merged = json.loads(results_path.read_text()) if results_path.exists() else {}
    for shard in [s for s in SHARDS if not args.shards or s.name in args.shards]:
        merged[shard.name] = run_shard(shard)
        results_path.write_text(json.dumps(merged, indent=2, sort_keys=True))
    known = {line.split("#")[0].strip() for line in KNOWN.read_text().splitlines()} - {""}
    new = sorted(n for found in merged.values() for n, s in found.items() if s not in KILLED and n not in known)
    for name in new:
        print(f"new survivor: {name} ({next(f[name] for f in merged.values() if name in f)})")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
