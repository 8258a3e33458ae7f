"""Where wbsync's download defaults come from: `python -m bench.tune [--mib N] [--files N]`.

Runs cold `wbsync sync` (whole processes) over the fake server's ``cloud`` and ``far``
profiles while varying one setting at a time:

* large file: ``WBSYNC_CONNECTIONS`` x ``WBSYNC_PART_SIZE`` on one file of ``--mib`` MiB;
* small files: ``--jobs`` on ``--files`` files of 4 KiB.

Prints the median wall time of ``--runs`` runs per point; fewer seconds is better. The chosen
defaults (wbsync/net/fetch.py, RangePolicy and DEFAULT_JOBS) cite these tables in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

from bench.run import WBSYNC, Bench, _remove
from bench.server import NET_ONE, NET_SMALL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="size of the large file (MiB, default 1024)")
    parser.add_argument("--files", type=int, default=2000, help="number of 4 KiB files (default 2000)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--profiles", default="cloud,far")
    parser.add_argument("--connections", default="4,8,16,32")
    parser.add_argument("--parts", default="16,32,64", help="part sizes in MiB")
    parser.add_argument("--jobs", default="16,32,64,128")
    parser.add_argument("--only", default="large,small")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    ns = argparse.Namespace(quick=False, runs=args.runs, large_mib=None, only=["net"], wire_threads=16,
                            net_cases=[c for c, k in (("one", "large"), ("small", "small")) if k in only],
                            sizes=f'{{"net_one_mib": {args.mib}, "net_two_mib": 0, "net_small_files": {args.files}}}')
    workdir = Path(tempfile.mkdtemp(prefix="wbsync-tune-"))
    bench = Bench(ns, workdir)
    try:
        for profile in args.profiles.split(","):
            bench.server.ask(f"network {profile}")
            if "large" in only:
                template = bench.project(f"tune-{profile}-one", {"one": NET_ONE})
                for conns, part in itertools.product(args.connections.split(","), args.parts.split(",")):
                    env = {"WBSYNC_CONNECTIONS": conns, "WBSYNC_PART_SIZE": f"{part}MiB"}
                    wall = _median(bench, template, env, [], args.runs)
                    print(f"{profile} large {args.mib} MiB: connections {conns:>3} part {part:>3} MiB: "
                          f"{wall:.2f} s ({args.mib * 2**20 / 1e6 / wall:.0f} MB/s)", flush=True)
            if "small" in only:
                template = bench.project(f"tune-{profile}-small", {"small": NET_SMALL})
                for jobs in args.jobs.split(","):
                    wall = _median(bench, template, {}, ["--jobs", jobs], args.runs)
                    print(f"{profile} small {args.files} x 4 KiB: jobs {jobs:>3}: {wall:.2f} s", flush=True)
    finally:
        bench.server.stop()
        _remove(workdir)


def _median(bench: Bench, template: Path, env: dict[str, str], extra: list[str], runs: int) -> float:
    walls = []
    for _ in range(runs):
        run_dir = bench.fresh("tune")
        project = bench.copy_project(template, run_dir)
        measure = bench.measure(f"tune-{len(bench.measures)}", "tune")
        real_env = bench.env

        def with_settings(home: Path, _env: dict[str, str] = env) -> dict[str, str]:
            return {**real_env(home), **_env}

        bench.env = with_settings  # type: ignore[method-assign]
        try:
            sample, _ = bench.timed(measure, WBSYNC + ["sync", *extra], run_dir, project)
        finally:
            bench.env = real_env  # type: ignore[method-assign]
        walls.append(sample.wall_s)
        _remove(run_dir)
    return statistics.median(walls)


if __name__ == "__main__":
    main()
