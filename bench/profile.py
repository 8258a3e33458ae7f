"""Profile one benchmark command: `python -m bench.profile CASE [--quick] [--tool py-spy|cprofile]`.

CASE is one of:
  small, large   cold `wbsync sync` (empty store, empty folder) of the many-small-files or
                 large-files artifact
  noop, frozen   `wbsync sync` / `wbsync sync --frozen` of the intact no-op project
  lock           `wbsync lock` of the many-artifacts manifest (no lockfile)
  lock1          `wbsync lock` of one artifact

Starts the same server and builds the same project as `python -m bench`, then runs the
command once under py-spy (`record --idle --threads --nonblocking --format raw`: every thread,
waiting included, so the main thread's shares are shares of wall time; summarized by
bench/pyspy_report.py) or cProfile (main thread only; best for the no-op). The report goes to
stdout and to bench/results/profile-<case>[-quick].txt; py-spy needs `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import shutil
import sys
import time
from pathlib import Path

from bench.pyspy_report import parse, report
from bench.run import PY, RESULTS, WBSYNC, Bench, _remove, run
from bench.server import LARGE, SMALL, lock_collection, noop_collection

CASES = ("small", "large", "noop", "frozen", "lock", "lock1")
_ROLE = {"small": "small", "large": "large", "noop": "noop", "frozen": "noop", "lock": "lock", "lock1": "lock"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--quick", action="store_true", help="the --quick sizes")
    parser.add_argument("--large-mib", type=int, default=None)
    parser.add_argument("--tool", choices=("py-spy", "cprofile"), default=None,
                        help="default: cprofile for noop/frozen, py-spy otherwise")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--cpu", action="store_true",
                        help="py-spy --gil: sample only the thread holding the GIL (where Python's CPU goes), "
                             "not every thread, waiting included (where the time goes)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder parent (e.g. /dev/shm to take the disk out)")
    args = parser.parse_args()
    tool = args.tool or ("cprofile" if args.case in ("noop", "frozen") else "py-spy")
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if tool == "py-spy" and not Path(pyspy).exists():
        parser.error("py-spy is not installed: pip install py-spy (or use --tool cprofile)")

    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="wbsync-profile-", dir=args.workdir))
    ns = argparse.Namespace(quick=args.quick, large_mib=args.large_mib, only=[_ROLE[args.case]], runs=1,
                            wire_threads=16)
    bench = Bench(ns, workdir)
    try:
        run_dir = bench.fresh(args.case)
        if args.case in ("small", "large"):
            template = bench.project(args.case, {args.case: SMALL if args.case == "small" else LARGE})
            project = bench.copy_project(template, run_dir)
            command = ["sync"]
        elif args.case in ("noop", "frozen"):
            entries = {f"part{i}": noop_collection(i) for i in range(bench.sizes.noop_artifacts)}
            project = bench.copy_project(bench.project("noop", entries), run_dir)
            run(WBSYNC + ["sync", "-q"], env=bench.env(run_dir / "home"), cwd=project, log=workdir / "setup")
            command = ["sync"] + (["--frozen"] if args.case == "frozen" else [])
        else:
            count = 1 if args.case == "lock1" else bench.sizes.lock_artifacts
            project = run_dir / "project"
            project.mkdir()
            lines = ["version: 1", "artifacts:"]
            for i in range(count):
                lines += [f"  a{i:02d}:", f"    artifact: wandb-registry-dataset/{lock_collection(i)}:production",
                          f"    path: data/a{i:02d}"]
            (project / "artifacts.yaml").write_text("\n".join(lines) + "\n")
            command = ["lock"]
        env = bench.env(run_dir / "home")
        out = workdir / "profile"
        bench.server.clear()
        started = time.perf_counter()
        if tool == "py-spy":
            cmd = [pyspy, "record", *(["--gil"] if args.cpu else ["--idle"]), "--threads", "--nonblocking",
                   "--rate", str(args.rate), "--format", "raw", "-o", str(out), "--", *WBSYNC, *command]
            sample, _ = run(cmd, env=env, cwd=project, log=workdir / "py-spy")
        else:
            script = [WBSYNC[0]] if len(WBSYNC) == 1 else ["-m", "wbsync"]
            cmd = [PY, "-m", "cProfile", "-o", str(out), *script, *command]
            sample, _ = run(cmd, env=env, cwd=project, log=workdir / "cprofile")
        wall = time.perf_counter() - started
        requests = bench.server.count()
        mode = " --gil (the thread holding the GIL only)" if args.cpu and tool == "py-spy" else ""
        header = [(f"profile of `wbsync {' '.join(command)}` ({args.case}{', quick' if args.quick else ''}) with "
                   f"{tool}{mode} in {workdir.parent}: {wall:.2f} s wall under the profiler, "
                   + ("" if tool == "py-spy" else f"CPU {sample.cpu_s:.2f} s, peak RSS {sample.rss_mb:.0f} MB, ")
                   + f"{requests} requests; sizes {json.dumps(bench.sizes.__dict__)}")]
        if tool == "py-spy":
            groups = parse(str(out))
            if args.cpu:  # one interpreter lock: all threads together are the Python CPU time
                groups = {"all threads, holding the GIL": [s for stacks in groups.values() for s in stacks]}
            body = report(groups, args.top, functions=False)
        else:
            text = io.StringIO()
            stats = pstats.Stats(str(out), stream=text)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top // 2)
            body = [ln.replace("/tmp/venv/lib/python3.11/site-packages/", "") for ln in text.getvalue().splitlines()]
        text_out = "\n".join(header + body)
        print(text_out)
        RESULTS.mkdir(exist_ok=True)
        suffix = ("-quick" if args.quick else "") + ("-cpu" if args.cpu else "") + ("-tmpfs" if args.workdir and
                                                                                   "shm" in str(args.workdir) else "")
        target = RESULTS / f"profile-{args.case}{suffix}.txt"
        target.write_text(text_out + "\n")
        print(f"\nwritten to {target}")
    finally:
        bench.server.stop()
        if not args.keep:
            _remove(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
