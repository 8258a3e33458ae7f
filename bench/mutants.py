"""Mutation check: plant known bugs one at a time and see which test catches each.

    python -m bench.mutants                              # every mutant, 2 at a time; prints the table
    python -m bench.mutants --list                       # names and the tests each runs
    python -m bench.mutants orphan-only-noop no-journal  # only these
    python -m bench.mutants --only orphan-only-noop,no-journal   # the same, as one argument
    python -m bench.mutants --check                      # only: does every patch apply and import?
    python -m bench.mutants --markdown docs/mutation.md --baseline

Each mutant is a few small patches (an exact snippet of the current code and its replacement),
applied to a temporary copy of the package, tests and schemas (never to the working tree), with
``PYTHONPATH`` pointing at that copy, so runs are independent of each other and of anyone
working in the tree. A bug counts as caught only if every patch applies (a snippet must occur
exactly once, starting at a line start; one that does not fails loudly: "patch does not
apply"), the package still imports, and one of the selected tests fails on its own assertion
(see ``bench/mutant_plugin.py``); an import error, a collection error or a crash of the
mutated code is not a catch.

``--baseline`` first runs every selected test on the unpatched copy: a catch means something
only if those tests pass without the bug.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.mutant_list import MUTANTS, Mutant, Patch

REPO = Path(__file__).resolve().parent.parent
TOOL_SECTION = "## Mutation testing by a tool"
COPIED = ("wbsync", "tests", "schema", "bench", "examples", "docs", "README.md", "pyproject.toml")
TIMEOUT_S = 600  # per mutant: a planted bug that makes a test hang ends as "timed out"


class PatchDoesNotApply(Exception):
    pass


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # "caught", "survived", "patch does not apply", "does not import", "timed out", ...
    caught_by: str = ""
    detail: str = ""
    seconds: float = 0.0
    failures: list[dict[str, object]] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        return self.status == "caught"


def make_copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def locate(text: str, snippet: str) -> int | str:
    """Where ``snippet`` starts in ``text``: it must occur exactly once (anywhere) and that once
    at the start of a line, so a snippet cannot land in the middle of a longer line that merely
    ends the same way. Returns the offset, or why the snippet does not apply."""
    if not snippet:
        return "the snippet is empty"
    found = text.count(snippet)
    if found != 1:
        return f"occurs {found} times, not once (the code moved?)"
    at = text.index(snippet)
    if at and text[at - 1] != "\n":
        line = text.count("\n", 0, at) + 1
        return f"occurs once, but in the middle of line {line}, not at a line start"
    return at


def apply(copy: Path, patches: tuple[Patch, ...]) -> None:
    for patch in patches:
        path = copy / patch.file
        text = path.read_text(encoding="utf-8")
        at = locate(text, patch.old)
        if isinstance(at, str):
            first = patch.old.strip().splitlines()[0] if patch.old.strip() else "(empty)"
            raise PatchDoesNotApply(f"patch does not apply: {patch.file}: the snippet starting {first!r} {at}")
        path.write_text(text[:at] + patch.new + text[at + len(patch.old):], encoding="utf-8")


def environment(copy: Path, report: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBSYNC_"))}
    env.update(PYTHONPATH=str(copy), WBSYNC_MUTANT_REPORT=str(report), WBSYNC_MUTANT_TESTS=str(copy / "tests"),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONDONTWRITEBYTECODE="1")
    return env


def imports(copy: Path, mutant: Mutant, env: dict[str, str]) -> str:
    """"" if the patched package imports, else the error."""
    modules = {"wbsync.cli"} | {p.file[:-3].replace("/", ".") for p in mutant.patches if p.file.startswith("wbsync/")}
    code = "; ".join(f"import {m}" for m in sorted(modules))
    proc = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=120)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def check_applies(mutant: Mutant) -> str:
    """"" if every patch applies and the patched package imports, else why not."""
    copy = Path(tempfile.mkdtemp(prefix=f"wbsync-mutant-{mutant.name}-"))
    try:
        make_copy(copy)
        apply(copy, mutant.patches)
        error = imports(copy, mutant, environment(copy, copy / "unused.json"))
        return f"does not import: {error}" if error else ""
    except PatchDoesNotApply as exc:
        return str(exc)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def run_mutant(mutant: Mutant, keep: bool = False) -> Outcome:
    started = time.monotonic()
    copy = Path(tempfile.mkdtemp(prefix=f"wbsync-mutant-{mutant.name}-"))
    try:
        outcome = _run_in(copy, mutant)
    finally:
        if not keep:
            shutil.rmtree(copy, ignore_errors=True)
    outcome.seconds = time.monotonic() - started
    return outcome


def _run_in(copy: Path, mutant: Mutant) -> Outcome:
    make_copy(copy)
    try:
        apply(copy, mutant.patches)
    except PatchDoesNotApply as exc:
        return Outcome(mutant, "patch does not apply", detail=str(exc))
    report = copy / "mutant-report.json"
    env = environment(copy, report)
    error = imports(copy, mutant, env)
    if error:
        return Outcome(mutant, "does not import", detail=error)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench.mutant_plugin",
            "-o", "addopts=", "--basetemp", str(copy / "pytest-tmp"), *mutant.tests]
    try:
        proc = subprocess.run(args, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Outcome(mutant, "timed out", detail=f"the tests ran over {TIMEOUT_S} s")
    if not report.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return Outcome(mutant, "pytest did not run", detail=" | ".join(tail))
    data = json.loads(report.read_text())
    records = data["records"]
    caught = [r for r in records if r["caught"]]
    if caught:
        return Outcome(mutant, "caught", caught_by=str(caught[0]["nodeid"]), detail=str(caught[0]["message"]),
                       failures=records)
    if data["collected"] == 0:
        return Outcome(mutant, "no test selected", detail="the selected tests were not found", failures=records)
    if records:
        first = records[0]
        return Outcome(mutant, "not caught (errors only)", failures=records,
                       detail=f"{first['nodeid']}: {first['type']} {first['message']}")
    skipped = "skipped" in proc.stdout
    return Outcome(mutant, "survived", detail="every selected test passed" + (" (some skipped)" if skipped else ""))


def baseline(mutants: list[Mutant]) -> Outcome:
    """Every selected test on the unpatched copy: all must pass (skips are reported)."""
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    unpatched = Mutant("baseline", "no bug planted", (), tests)
    outcome = run_mutant(unpatched)
    if outcome.status == "survived":
        outcome.status = "all passed"
    return outcome


def short(test: str) -> str:
    return test.removeprefix("tests/").replace(".py::", "::")


def markdown(outcomes: list[Outcome]) -> str:
    lines = ["| # | planted bug | tests run | caught by | result |", "|---|---|---|---|---|"]
    for i, o in enumerate(outcomes, 1):
        tests = "<br>".join(f"`{short(t)}`" for t in o.mutant.tests)
        by = f"`{short(o.caught_by)}`" if o.caught_by else "—"
        result = o.status if o.caught else f"**{o.status}**: {o.detail}"
        lines.append(f"| {i} | {o.mutant.bug} (`{o.mutant.name}`) | {tests} | {by} | {result} |")
    caught = sum(o.caught for o in outcomes)
    lines.append("")
    lines.append(f"{caught} of {len(outcomes)} planted bugs caught.")
    return "\n".join(lines) + "\n"


def document(table: str, complete: bool, seconds: float = 0.0, jobs: int = 2) -> str:
    # The commit whose package and tests were mutated: the last one that changed either.
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h (%cs)", "--", "wbsync", "tests"],
                            capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "wbsync", "tests"],
                           capture_output=True, text=True, check=False).stdout.strip()
    scope = "every mutant" if complete else "a selection of the mutants"
    return (
        "# Mutation check\n\n"
        "Each row is a bug planted on purpose (a small patch to a temporary copy of the package), the\n"
        "tests run against it, and the first test whose own assertion failed. A bug counts as caught\n"
        "only if its patch applies, the package imports and a test assertion fails: an import error,\n"
        "a collection error or a crash of the mutated code is not a catch. The patches and the tests\n"
        "chosen for each are in `bench/mutant_list.py`.\n\n"
        "Rows 1-22 are the 22 kinds of bug the audit of issue 15 planted (its \"orphan-only plans\" in\n"
        "two places, rows 15-16; \"digest checks reduced to size\" as the re-hash of untrusted files,\n"
        "row 1). The rest are the rules of the issues worked on beside it, as each landed: link modes,\n"
        "ownership and the swap journal, blob re-checks, reserved names, the lock's agreement with\n"
        "the manifest and the source, downloads over a real network, vanished versions, `diff` and\n"
        "automated bumps, large entries and the lock format, what may be shown, and diagnosis hints.\n\n"
        "```bash\npython -m bench.mutants --baseline --markdown docs/mutation.md\n```\n\n"
        "Each snippet a patch replaces must occur exactly once in its file and start at a line start;\n"
        "one that does not (the code moved) fails loudly as \"patch does not apply\", never silently.\n"
        "`python -m bench.mutants --check` checks that every patch applies and the package imports,\n"
        "without running tests; `--only NAME,NAME` runs a few.\n\n"
        f"Last run: {scope}, on the package and tests of commit {commit}"
        f"{' with uncommitted changes' if dirty else ''}"
        + (f", {jobs} mutants at a time on {os.cpu_count()} cores, {seconds / 60:.0f} min in all" if seconds else "")
        + ".\n\n" + table
    )


def main(argv: list[str] | None = None) -> int:
    # Started in the background (`cmd &`, nohup), this process ignores SIGINT, and the test
    # processes would inherit that: a test that presses Ctrl-C on a sync would wait forever.
    # A handler (not an ignore) is reset to the default in every child.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog="python -m bench.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--only", default="", metavar="NAME[,NAME...]",
                        help="only these mutants (comma-separated; adds to the names given)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants at a time (default 2, at most 2)")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--baseline", action="store_true", help="first run the selected tests without any bug")
    parser.add_argument("--check", action="store_true",
                        help="only check that every patch applies and the package imports (no tests; fast)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep each mutant's temporary copy (for debugging)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if len(known) != len(MUTANTS):
        parser.error("two mutants share a name in bench/mutant_list.py")
    args.names = list(dict.fromkeys([*args.names, *(n.strip() for n in args.only.split(",") if n.strip())]))
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(unknown)}; see --list")
    selected = [known[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for m in selected:
            print(f"{m.name}: {m.bug}\n    " + "\n    ".join(m.tests))
        return 0
    if args.check:
        problems = [(m.name, why) for m in selected if (why := check_applies(m))]
        for name, why in problems:
            print(f"{name}: {why}")
        print(f"{len(selected) - len(problems)} of {len(selected)} mutants apply and import")
        return 1 if problems else 0
    started = time.monotonic()  # the run time reported includes the baseline
    if args.baseline:
        base = baseline(selected)
        print(f"baseline: {base.status} {base.detail} ({base.seconds:.0f} s)", flush=True)
        if base.status != "all passed":
            return 2
    jobs = max(1, min(args.jobs, 2))  # the machine is shared: never more than 2 test runs at once
    with ThreadPoolExecutor(jobs) as pool:
        outcomes = []
        for outcome in pool.map(lambda m: run_mutant(m, args.keep), selected):
            print(f"{outcome.mutant.name}: {outcome.status} {outcome.caught_by or outcome.detail} "
                  f"({outcome.seconds:.0f} s)", flush=True)
            outcomes.append(outcome)
    seconds = time.monotonic() - started
    table = markdown(outcomes)
    print("\n" + table + f"\n{len(outcomes)} mutants in {seconds:.0f} s")
    if args.markdown:
        # The tool's section (bench/mutate_tool.py) is written by hand: kept as it is.
        kept = args.markdown.read_text().partition(TOOL_SECTION)[1:] if args.markdown.exists() else ("", "")
        args.markdown.write_text(document(table, len(selected) == len(MUTANTS), seconds, jobs)
                                 + ("\n" + "".join(kept) if kept[0] else ""))
    return 0 if all(o.caught for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
