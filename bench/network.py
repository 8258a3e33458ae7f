"""Cold downloads over a simulated network: wbsync vs `Artifact.download()`, per profile.

Run by `python -m bench` as the case ``net`` (``--profiles cloud,far``, ``--net-cases``). The
fake server (its own process) switches network profile between blocks; every figure names the
profile it was measured on (wbsync.testing.network: ``cloud`` = 30 ms to first byte, 50 MB/s
per connection, 400 MB/s shared; ``far`` = 80 ms, 20 MB/s, 1 GB/s).

Cases (collections built by bench/server.py):

* ``one``: 1 file of 2,100 MiB (above the SDK's 2 GiB threshold: the SDK splits it too);
* ``two``: 2 files of 1,536 MiB (the SDK fetches each on one connection);
* ``small``: 2,000 files of 4 KiB (latency-bound);
* ``expiry``: the same 2,000 files with links that live shorter than the sync (``lifetime``).

For each profile and case, runs are interleaved (wbsync, SDK, wbsync, ...), each a whole
process timed from spawn to exit. The link's limit is bytes / shared bandwidth; "process
start" is the SDK floor (import wandb, artifact(), files(): what a cold sync does before its
first byte), measured in the same run.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING

from bench.server import NET_ONE, NET_SMALL, NET_TWO
from wbsync.testing.network import PROFILES

if TYPE_CHECKING:
    from bench.run import Bench

NET_CASES = ("one", "two", "small", "expiry")
COLLECTIONS = {"one": NET_ONE, "two": NET_TWO, "small": NET_SMALL, "expiry": NET_SMALL}


def run_network(bench: Bench, profiles: list[str], cases: list[str], lifetime_s: float) -> None:
    from bench.run import BENCH, PY, WBSYNC, _remove

    for profile in profiles:
        for case in cases:
            collection = COLLECTIONS[case]
            info = bench.server.info["collections"][collection]
            nbytes, nfiles = int(info["bytes"]), int(info["files"])
            reference = f"wandb-registry-dataset/{collection}:production"
            template = bench.project(f"net-{profile}-{case}", {case: collection})
            bench.server.ask(f"network {profile}")
            bench.server.ask(f"lifetime {lifetime_s if case == 'expiry' else 'none'}")
            key = f"net.{profile}.{case}"
            what = f"{nfiles:,} files, {nbytes / 2**20:,.0f} MiB"
            wb = bench.measure(f"{key}.wbsync", f"{profile} {case}: wbsync sync ({what})", nbytes)
            sdk = bench.measure(f"{key}.sdk", f"{profile} {case}: SDK Artifact.download()", nbytes)
            floor = bench.measure(f"{key}.floor", f"{profile} {case}: SDK floor (process start)")
            disk = bench.measure(f"{key}.disk", f"{profile} {case}: disk floor, write + copy each file", nbytes,
                                 note="internal = the file operations alone (bench/disk.py)")
            # Large files: one write instead of two (store, then a copy) is what a hardlink saves.
            hard = (bench.measure(f"{key}.hardlink", f"{profile} {case}: wbsync sync --link hardlink", nbytes)
                    if case in ("one", "two") else None)
            for i in range(bench.runs("net")):
                run_dir = bench.fresh(f"{key}-wbsync")
                project = bench.copy_project(template, run_dir)
                sample, _ = bench.timed(wb, WBSYNC + ["sync"], run_dir, project, count_requests=True)
                if case == "expiry":
                    sample.note = json.dumps(_renewals(bench.server.ops(), nfiles))
                if i == 0:
                    bench.check_synced(run_dir, project, nfiles, nbytes)
                _remove(run_dir)

                run_dir = bench.fresh(f"{key}-sdk")
                sample, out = bench.timed(sdk, [PY, str(BENCH / "sdk_download.py"), reference, str(run_dir / "out")],
                                          run_dir, run_dir, count_requests=True)
                doc = json.loads(out.strip().splitlines()[-1])
                if (doc["files"], doc["bytes"]) != (nfiles, nbytes):
                    raise SystemExit(f"bench: the SDK downloaded {doc['files']} files, {doc['bytes']} bytes")
                sample.internal_s = doc["download_s"]
                _remove(run_dir)

                run_dir = bench.fresh(f"{key}-floor")
                bench.timed(floor, [PY, str(BENCH / "sdk_floor.py"), reference], run_dir, run_dir)
                _remove(run_dir)

                run_dir = bench.fresh(f"{key}-disk")
                sample, out = bench.timed(disk, [PY, str(BENCH / "disk.py"), str(run_dir / "disk"), str(nfiles),
                                                 str(nbytes // nfiles), str(min(nfiles, 64))], run_dir, run_dir)
                sample.internal_s = json.loads(out.strip().splitlines()[-1])["total_s"]
                _remove(run_dir)

                if hard is not None:
                    run_dir = bench.fresh(f"{key}-hardlink")
                    project = bench.copy_project(template, run_dir)
                    bench.timed(hard, WBSYNC + ["sync", "--link", "hardlink"], run_dir, project, count_requests=True)
                    _remove(run_dir)
                print(f"  {profile} {case} round {i + 1}: wbsync {wb.samples[-1].wall_s:.2f} s "
                      f"({wb.samples[-1].requests} requests), SDK {sdk.samples[-1].wall_s:.2f} s "
                      f"({sdk.samples[-1].requests} requests), floor {floor.samples[-1].wall_s:.2f} s, "
                      f"disk {disk.samples[-1].wall_s:.2f} s"
                      + (f", hardlink {hard.samples[-1].wall_s:.2f} s" if hard else ""), flush=True)
    bench.server.ask("network loopback")
    bench.server.ask("lifetime none")


def _renewals(ops: list[str], nfiles: int) -> int:
    """wbsync's link renewal calls: listing calls (ArtifactMembershipFiles, 1,000 names each)
    beyond those that asked for the first links, batch by batch (wbsync.net.batches.FETCH_BATCH)."""
    from wbsync.net.batches import FETCH_BATCH

    first = sum(-(-min(FETCH_BATCH, nfiles - at) // 1000) for at in range(0, nfiles, FETCH_BATCH))
    return max(0, sum(1 for op in ops if op.endswith(" ArtifactMembershipFiles")) - first)


def evaluate_network(bench: Bench) -> None:
    from bench.run import Target

    m = bench.measures
    for profile in PROFILES:
        shared = PROFILES[profile].shared_bps
        for case in NET_CASES:
            key = f"net.{profile}.{case}"
            if f"{key}.wbsync" not in m:
                continue
            wb, sdk, floor = m[f"{key}.wbsync"], m[f"{key}.sdk"], m[f"{key}.floor"]
            ratio = sdk.median / wb.median
            if profile == "cloud" and case in ("one", "two"):
                want = 1.2 if case == "one" else 3.0
                bench.targets.append(Target(f"{profile} {case}: SDK time / wbsync time", ratio, ">=", want, "x"))
                disk = m[f"{key}.disk"]
                disk_s = disk.internal_median or disk.median
                bench.targets.append(Target(f"{profile} {case}: wbsync / (disk floor + process start) [bound]",
                                            wb.median / (disk_s + floor.median), "<", 1.25, "x",
                                            f"write + copy {disk_s:.2f} s + start {floor.median:.2f} s"))
                if f"{key}.hardlink" in m:
                    hard = m[f"{key}.hardlink"]
                    bench.targets.append(Target(f"{profile} {case}: SDK time / wbsync --link hardlink time [one write]",
                                                sdk.median / hard.median, ">=", want, "x"))
                if shared:
                    limit = wb.bytes / shared + floor.median
                    bench.targets.append(Target(f"{profile} {case}: wbsync / (link limit + process start)",
                                                wb.median / limit, "<", 1.25, "x",
                                                f"limit {wb.bytes / shared:.2f} s + start {floor.median:.2f} s"))
            elif profile == "cloud" and case == "small":
                # 2.5x faster than the SDK, or within 1.2x of this disk's floor (process start
                # plus creating the files) when that floor is what stops 2.5x.
                disk = m[f"{key}.disk"]
                floor_s = floor.median + (disk.internal_median or disk.median)
                bound = max(sdk.median / 2.5, 1.2 * floor_s)
                bench.targets.append(Target(
                    f"{profile} {case}: wbsync time / max(SDK time / 2.5, 1.2 x disk floor)", wb.median / bound,
                    "<", 1.0001, "x", f"SDK / 2.5 = {sdk.median / 2.5:.2f} s; 1.2 x (start {floor.median:.2f} s "
                    f"+ files {disk.internal_median or disk.median:.2f} s) = {1.2 * floor_s:.2f} s"))
                bench.targets.append(Target(f"{profile} {case}: SDK time / wbsync time", ratio, ">=", 2.5, "x"))
            else:
                bench.targets.append(Target(f"{profile} {case}: SDK time / wbsync time (not slower)", ratio, ">=",
                                            1.0, "x"))
            if case == "expiry":
                renewals = statistics.median(json.loads(s.note or "0") for s in wb.samples)
                bench.targets.append(Target(f"{profile} expiry: wbsync link renewal calls per sync (median)",
                                            renewals, ">=", 1, "", "the sync outlived its links and completed"))
