"""wbsync benchmarks (issue 6): `python -m bench [--quick] [--runs N] [--only CASES] [--large-mib N]`.

Starts the fake W&B server with generated data in its own process (bench/server.py), then
measures, each command as a fresh subprocess timed from spawn to exit (Python start included):

* cold: `wbsync sync` of a locked project into an empty folder with an empty content store, for
  one artifact of many small files and one of a few large files; the same artifact through the
  SDK's `Artifact.download()` (fresh WANDB_CACHE_DIR, fresh folder); and the wire limit, a plain
  parallel urllib3 client that discards the same bytes (its transfer time only);
* no-op: `wbsync sync` and `wbsync sync --frozen` of an intact project of 5 artifacts, with the
  number of requests the server saw (must be 0);
* lock: `wbsync lock` of 50 artifacts and of 1 (no lockfile: every entry resolved);
* memory: lock, cold sync, no-op sync, outdated, verify and mirror of the many-small-files artifact;
* peak memory of every command: the peak of the summed RSS of the command's process and every
  process it starts (wandb-core included), sampled every 5 ms (bench/memory.py), beside
  `ru_maxrss` from wait4() on that very child (the largest single process).

Runs of the compared commands are interleaved (wbsync, SDK, wire, wbsync, ...) so that noise from
other work on the machine spreads over all of them. Prints a table of medians, min/max, ratios
and PASS/MISS per target, and writes bench/results/<time>.json and .md (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.memory import TreeSampler
from bench.network import NET_CASES, evaluate_network, run_network
from bench.server import (
    LARGE,
    LARGE_QUARTER,
    SMALL,
    Sizes,
    lock_collection,
    noop_collection,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable
_SCRIPT = Path(PY).parent / "wbsync"
WBSYNC = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "wbsync"]  # the console script
MB = 1e6
RUN_TIMEOUT_S = 1800.0
DEFAULT_CASES = ("small", "large", "noop", "lock", "memory", "net")
CASES = (*DEFAULT_CASES, "scale")  # scale (issue 17: a million files) only when asked for


# -- running one measured command ---------------------------------------------------------


@dataclass
class Sample:
    wall_s: float  # spawn to exit
    rss_mb: float  # ru_maxrss: peak RSS of the largest single process (the child or one it waited for)
    cpu_s: float = 0.0  # user + system CPU time of that child (and its waited-for children)
    sys_s: float = 0.0  # the system (kernel) part of cpu_s: syscalls, file creation, copies
    server_cpu_s: float = 0.0  # CPU time the fake server spent meanwhile
    internal_s: float | None = None  # the phase the command timed itself (SDK download, wire transfer)
    requests: int | None = None  # requests the server saw during the command
    tree_rss_mb: float = 0.0  # peak of the summed RSS of the child and all its descendants, sampled
    note: str = ""  # case-specific detail (the network case: link renewals)


def run(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path, check: bool = True) -> tuple[Sample, str]:
    """Run ``cmd`` to completion; (its wall time and peak RSS, its stdout).

    wait4() gives the rusage of exactly this child, so the harness's own memory and that of
    earlier commands never leak into ``rss_mb`` (as they would with RUSAGE_CHILDREN).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log.with_suffix(".out"), "w+b") as out, open(log.with_suffix(".err"), "w+b") as err:
        start = time.perf_counter()
        # The harness's own peak (not its RSS now): that is what a child's ru_maxrss starts from.
        harness_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid).start()
        watchdog = threading.Timer(RUN_TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
            tree_mb = sampler.stop()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(cmd)}` (in {cwd}) exited {proc.returncode}:\n{stderr[-3000:]}")
    sample = Sample(wall, usage.ru_maxrss * 1024 / MB, usage.ru_utime + usage.ru_stime, usage.ru_stime)
    if sample.rss_mb <= harness_mb * 1.02:
        # Linux starts a child's ru_maxrss at the peak RSS of the process that spawned it (the
        # vfork()ed child's memory is the harness's until exec), so next to a harness that held
        # a million-file state it says 466 MB for a bare scandir walk. Only the samples count.
        sample.rss_mb = sample.tree_rss_mb = tree_mb
    else:
        sample.tree_rss_mb = max(tree_mb, sample.rss_mb)  # a peak between two samples: the sum is at least that
    return sample, stdout


# -- the server process -------------------------------------------------------------------


class Server:
    """bench/server.py in its own process, driven over its stdin/stdout."""

    def __init__(self, workdir: Path, quick: bool, sizes: dict[str, Any]) -> None:
        info_path = workdir / "server.json"
        cmd = [PY, "-m", "bench.server", "--info", str(info_path), "--sizes", json.dumps(sizes)]
        cmd += ["--quick"] if quick else []
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = open(workdir / "server.err", "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        assert self.proc.stdin and self.proc.stdout
        self._in, self._out = self.proc.stdin, self.proc.stdout
        ready = self._out.readline().strip()
        if ready != "READY":
            raise SystemExit(f"bench: the server did not start ({ready!r}); see {workdir / 'server.err'}")
        self.info: dict[str, Any] = json.loads(info_path.read_text())

    def ask(self, command: str) -> str:
        return self._ask(command)

    def _ask(self, command: str) -> str:
        self._in.write(command + "\n")
        self._in.flush()
        return self._out.readline().strip()

    def count(self) -> int:
        return int(self._ask("count"))

    def ops(self) -> list[str]:
        return list(json.loads(self._ask("ops")))

    def clear(self) -> None:
        self._ask("clear")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._in.write("quit\n")
                self._in.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
        except OSError:
            pass
        return float("nan")


# -- measures and targets -----------------------------------------------------------------


@dataclass
class Measure:
    key: str
    label: str
    bytes: int = 0  # payload, for MB/s
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def walls(self) -> list[float]:
        return [s.wall_s for s in self.samples]

    def internals(self) -> list[float]:
        return [s.internal_s for s in self.samples if s.internal_s is not None]

    @property
    def median(self) -> float:
        return statistics.median(self.walls())

    @property
    def internal_median(self) -> float | None:
        values = self.internals()
        return statistics.median(values) if values else None

    @property
    def rss_max(self) -> float:
        return max(s.rss_mb for s in self.samples)

    @property
    def tree_rss_max(self) -> float:
        return max(s.tree_rss_mb for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        walls = self.walls()
        doc: dict[str, Any] = {
            "label": self.label, "runs": len(walls), "wall_s": walls, "median_s": self.median,
            "min_s": min(walls), "max_s": max(walls), "rss_mb": [s.rss_mb for s in self.samples],
            "cpu_s": [s.cpu_s for s in self.samples], "sys_s": [s.sys_s for s in self.samples],
            "server_cpu_s": [s.server_cpu_s for s in self.samples],
            "rss_max_mb": self.rss_max, "tree_rss_mb": [s.tree_rss_mb for s in self.samples],
            "tree_rss_max_mb": self.tree_rss_max, "bytes": self.bytes, "note": self.note,
        }
        if self.internals():
            doc.update(internal_s=self.internals(), internal_median_s=self.internal_median)
        if any(s.requests is not None for s in self.samples):
            doc["requests"] = [s.requests for s in self.samples]
        return doc


@dataclass
class Target:
    name: str
    value: float
    op: str  # ">=", "<" or "=="
    threshold: float
    unit: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        if self.op == ">=":
            return self.value >= self.threshold
        if self.op == "<":
            return self.value < self.threshold
        return self.value == self.threshold

    @property
    def margin(self) -> str:
        """By how much a missed target is missed: the factor between value and threshold."""
        if self.passed or self.op == "==" or not self.value or not self.threshold:
            return ""
        factor = self.threshold / self.value if self.op == ">=" else self.value / self.threshold
        return f"{factor:.2f}x off"

    def describe(self) -> str:
        value = f"{self.value:.0f}" if self.op == "==" else f"{self.value:.3g}"
        return f"{value}{self.unit} (target {self.op} {self.threshold:g}{self.unit})"


# -- the benchmark ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.measures: dict[str, Measure] = {}
        self.targets: list[Target] = []
        self.seq = 0
        sizes: dict[str, Any] = {} if args.large_mib is None else {"large_mib": args.large_mib}
        # Leave out of the world what is not measured (it costs server memory and start-up time).
        if "small" not in args.only and "memory" not in args.only:
            sizes["small_files"] = 0
        if "large" not in args.only:
            sizes["large_files"] = 0
        if "noop" not in args.only:
            sizes["noop_files"] = 0
        if "lock" not in args.only:
            sizes["lock_artifacts"] = 0
        if "net" not in args.only:
            sizes.update(net_one_mib=0, net_two_mib=0, net_small_files=0)
        else:
            if "one" not in args.net_cases:
                sizes["net_one_mib"] = 0
            if "two" not in args.net_cases:
                sizes["net_two_mib"] = 0
            if not {"small", "expiry"} & set(args.net_cases):
                sizes["net_small_files"] = 0
        if "scale" in args.only:
            sizes.update(scale_files=args.scale_files, scale_cold_files=args.scale_cold_files,
                         scale_tree_files=args.scale_tree_files or args.scale_files)
        sizes.update(json.loads(args.sizes))
        started = time.perf_counter()
        compile_wbsync()
        self.server = Server(workdir, args.quick, sizes)
        self.sizes = Sizes(**self.server.info["sizes"])
        self.server_start_s = time.perf_counter() - started
        print(f"fake W&B server pid {self.server.info['pid']} at {self.server.info['url']} "
              f"(world built in {self.server_start_s:.1f} s)", flush=True)

    # helpers

    def measure(self, key: str, label: str, nbytes: int = 0, note: str = "") -> Measure:
        if key not in self.measures:
            self.measures[key] = Measure(key, label, nbytes, note=note)
        return self.measures[key]

    def fresh(self, name: str) -> Path:
        self.seq += 1
        path = self.workdir / "runs" / f"{self.seq:03d}-{name}"
        (path / "home").mkdir(parents=True)
        return path

    def env(self, home: Path) -> dict[str, str]:
        # PYTHONDONTWRITEBYTECODE (set in some dev shells) would make every measured process compile
        # wbsync's sources again; an installed wbsync has its .pyc files (see compile_wbsync).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WANDB_", "WBSYNC_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            WANDB_BASE_URL=self.server.info["url"], WANDB_API_KEY=self.server.info["api_key"],
            WANDB_ENTITY="myteam", WANDB_SILENT="true", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
            HOME=str(home), WANDB_CACHE_DIR=str(home / "wandb-cache"), WANDB_CONFIG_DIR=str(home / "wandb-config"),
            WANDB_DATA_DIR=str(home / "wandb-data"), WBSYNC_CACHE_DIR=str(home / "wbsync-cache"),
        )
        return env

    def timed(self, measure: Measure, cmd: list[str], run_dir: Path, cwd: Path, *,
              count_requests: bool = False) -> tuple[Sample, str]:
        if count_requests:
            self.server.clear()
        _drain_writeback()
        server_cpu = self.server.cpu_s()
        sample, stdout = run(cmd, env=self.env(run_dir / "home"), cwd=cwd,
                             log=self.workdir / "logs" / f"{run_dir.name}-{measure.key}")
        sample.server_cpu_s = self.server.cpu_s() - server_cpu
        if count_requests:
            sample.requests = self.server.count()
        measure.samples.append(sample)
        return sample, stdout

    def project(self, name: str, entries: dict[str, str]) -> Path:
        """A locked project (artifacts.yaml + artifacts.lock) to copy from; entries: name -> collection."""
        template = self.workdir / "templates" / name
        template.mkdir(parents=True)
        lines = ["version: 1", "artifacts:"]
        for entry, collection in entries.items():
            lines += [f"  {entry}:", f"    artifact: wandb-registry-dataset/{collection}:production",
                      f"    path: data/{entry}"]
        (template / "artifacts.yaml").write_text("\n".join(lines) + "\n")
        home = self.fresh(f"{name}-lock")
        run(WBSYNC + ["lock", "-q"], env=self.env(home / "home"), cwd=template,
            log=self.workdir / "logs" / f"{name}-setup-lock")
        shutil.rmtree(home)
        return template

    def copy_project(self, template: Path, run_dir: Path, with_lock: bool = True) -> Path:
        project = run_dir / "project"
        project.mkdir()
        names = ["artifacts.yaml", "artifacts.lock"] if with_lock else ["artifacts.yaml"]
        for name in names:
            shutil.copy2(template / name, project / name)
        return project

    def runs(self, kind: str) -> int:
        """Runs per measure: 3 rounds of the slow many-small-files case, 5 of the large-files one,
        10 of the fast commands (no-op, lock); 2, 2 and 3 with --quick. --runs overrides."""
        if self.args.runs:
            return int(self.args.runs)
        table = {"small": (3, 2), "large": (5, 2), "fast": (10, 3), "net": (3, 2)}
        full, quick = table[kind]
        return quick if self.args.quick else full

    # cases

    def cold(self, case: str, collection: str, extra: tuple[tuple[str, str, tuple[str, ...], str], ...] = ()) -> None:
        """``extra``: more wbsync syncs per round, as (key, collection, sync arguments, label prefix)."""
        """wbsync vs SDK vs wire for one artifact, interleaved, ``runs`` rounds."""
        info = self.server.info["collections"][collection]
        nbytes, nfiles = int(info["bytes"]), int(info["files"])
        what = f"{nfiles:,} files, {nbytes / MB:,.0f} MB"
        reference = f"wandb-registry-dataset/{collection}:production"
        template = self.project(case, {case: collection})
        templates = {collection: template}
        for _key, coll, _args, _label in extra:
            if coll not in templates:
                templates[coll] = self.project(f"{case}-{len(templates)}", {case: coll})
        urls = self.workdir / f"{case}-urls.json"
        urls.write_text(json.dumps(info["urls"]))
        threads = self.args.wire_threads
        wb = self.measure(f"{case}.wbsync", f"cold {case}: wbsync sync ({what})", nbytes)
        sdk = self.measure(f"{case}.sdk", f"cold {case}: SDK Artifact.download()", nbytes,
                           note="internal = download() alone")
        wire = self.measure(f"{case}.wire", f"cold {case}: wire limit, urllib3 x{threads}, discard", nbytes,
                            note="internal = transfers alone (the wire limit)")
        disk = self.measure(f"{case}.disk", f"cold {case}: disk floor, write + copy each file, x{threads}",
                            nbytes, note="internal = the file operations alone (bench/disk.py)")
        hashing = self.measure(f"{case}.hash", f"cold {case}: hash floor, md5 of the same sizes in memory, x{threads}",
                               nbytes, note="internal = hashing alone (bench/hash.py)")
        floor = self.measure(f"{case}.floor", f"cold {case}: SDK floor, import wandb + artifact() + files()",
                             note="what wbsync asks the SDK before its first byte (bench/sdk_floor.py)")
        for i in range(self.runs(case)):
            run_dir = self.fresh(f"{case}-wbsync")
            project = self.copy_project(template, run_dir)
            self.timed(wb, WBSYNC + ["sync"], run_dir, project)
            if i == 0:
                self.check_synced(run_dir, project, nfiles, nbytes)
            _remove(run_dir)

            run_dir = self.fresh(f"{case}-sdk")
            sample, out = self.timed(sdk, [PY, str(BENCH / "sdk_download.py"), reference, str(run_dir / "out")],
                                     run_dir, run_dir)
            doc = json.loads(out.strip().splitlines()[-1])
            if (doc["files"], doc["bytes"]) != (nfiles, nbytes):
                raise SystemExit(f"bench: the SDK downloaded {doc['files']} files, {doc['bytes']} bytes")
            sample.internal_s = doc["download_s"]
            _remove(run_dir)

            run_dir = self.fresh(f"{case}-wire")
            sample, out = self.timed(wire, [PY, str(BENCH / "wire.py"), str(urls), str(threads)], run_dir, run_dir)
            doc = json.loads(out.strip().splitlines()[-1])
            if doc["bytes"] != nbytes:
                raise SystemExit(f"bench: the wire client got {doc['bytes']} bytes, expected {nbytes}")
            sample.internal_s = doc["transfer_s"]
            _remove(run_dir)

            run_dir = self.fresh(f"{case}-disk")
            sample, out = self.timed(disk, [PY, str(BENCH / "disk.py"), str(run_dir / "disk"), str(nfiles),
                                            str(nbytes // nfiles), str(threads)], run_dir, run_dir)
            sample.internal_s = json.loads(out.strip().splitlines()[-1])["total_s"]
            _remove(run_dir)

            run_dir = self.fresh(f"{case}-hash")
            sample, out = self.timed(hashing, [PY, str(BENCH / "hash.py"), str(nfiles), str(nbytes // nfiles),
                                               str(threads)], run_dir, run_dir)
            sample.internal_s = json.loads(out.strip().splitlines()[-1])["hash_s"]
            _remove(run_dir)

            run_dir = self.fresh(f"{case}-floor")
            self.timed(floor, [PY, str(BENCH / "sdk_floor.py"), reference], run_dir, run_dir)
            _remove(run_dir)

            for key, coll, sync_args, prefix in extra:
                coll_info = self.server.info["collections"][coll]
                args_text = " ".join(sync_args)
                m = self.measure(f"{case}.{key}", f"cold {case}: wbsync sync {args_text}".rstrip()
                                 + f" ({prefix}{coll_info['files']:,} files, "
                                 f"{coll_info['bytes'] / MB:,.0f} MB)", int(coll_info["bytes"]))
                run_dir = self.fresh(f"{case}-{key}")
                self.timed(m, WBSYNC + ["sync", *sync_args], run_dir, self.copy_project(templates[coll], run_dir))
                _remove(run_dir)
            print(f"  {case} round {i + 1}: wbsync {wb.samples[-1].wall_s:.2f} s, "
                  f"SDK {sdk.samples[-1].wall_s:.2f} s, wire {wire.samples[-1].internal_s:.2f} s, "
                  f"disk {disk.samples[-1].internal_s:.2f} s, md5 {hashing.samples[-1].internal_s:.2f} s, "
                  f"SDK floor {floor.samples[-1].wall_s:.2f} s", flush=True)

    def check_synced(self, run_dir: Path, project: Path, nfiles: int, nbytes: int) -> None:
        """Untimed: the first cold run really placed every byte (wbsync verify re-hashes)."""
        files = total = 0
        for folder, _dirs, names in os.walk(project / "data"):
            for name in names:
                files += 1
                total += os.path.getsize(os.path.join(folder, name))
        if (files, total) != (nfiles, nbytes):
            raise SystemExit(f"bench: wbsync sync placed {files} files, {total} bytes; expected {nfiles}, {nbytes}")
        run(WBSYNC + ["verify", "-q"], env=self.env(run_dir / "home"), cwd=project,
            log=self.workdir / "logs" / f"{run_dir.name}-verify")

    def noop(self) -> None:
        n = self.sizes.noop_artifacts
        entries = {f"part{i}": noop_collection(i) for i in range(n)}
        template = self.project("noop", entries)
        run_dir = self.fresh("noop")
        project = self.copy_project(template, run_dir)
        run(WBSYNC + ["sync", "-q"], env=self.env(run_dir / "home"), cwd=project,
            log=self.workdir / "logs" / "noop-setup-sync")
        _, out = run(WBSYNC + ["sync", "--json"], env=self.env(run_dir / "home"), cwd=project,
                     log=self.workdir / "logs" / "noop-check")
        if not json.loads(out)["noop"]:
            raise SystemExit("bench: the second sync of the no-op project was not a no-op")
        what = f"{self.sizes.noop_files:,} files in {n} artifacts"
        floor = self.measure("noop.python", "floor: `python -c pass`")
        cli = self.measure("noop.version", "floor: `wbsync --version` (CLI imports)")
        plain = self.measure("noop.sync", f"no-op: wbsync sync ({what})")
        frozen = self.measure("noop.frozen", f"no-op: wbsync sync --frozen ({what})")
        for _ in range(self.runs("fast")):
            self.timed(floor, [PY, "-c", "pass"], run_dir, project)
            self.timed(cli, WBSYNC + ["--version"], run_dir, project)
            self.timed(plain, WBSYNC + ["sync"], run_dir, project, count_requests=True)
            self.timed(frozen, WBSYNC + ["sync", "--frozen"], run_dir, project, count_requests=True)
        print(f"  no-op: sync {plain.median:.3f} s, --frozen {frozen.median:.3f} s", flush=True)
        _remove(run_dir)

    def lock(self) -> None:
        n = self.sizes.lock_artifacts
        many = self.workdir / "templates" / "lock-many"
        one = self.workdir / "templates" / "lock-one"
        for template, count in ((many, n), (one, 1)):
            template.mkdir(parents=True)
            lines = ["version: 1", "artifacts:"]
            for i in range(count):
                lines += [f"  a{i:02d}:", f"    artifact: wandb-registry-dataset/{lock_collection(i)}:production",
                          f"    path: data/a{i:02d}"]
            (template / "artifacts.yaml").write_text("\n".join(lines) + "\n")
        m_one = self.measure("lock.one", "lock: wbsync lock, 1 artifact")
        m_many = self.measure("lock.many", f"lock: wbsync lock, {n} artifacts")
        for _ in range(self.runs("fast")):
            for template, m in ((one, m_one), (many, m_many)):
                run_dir = self.fresh(m.key)
                project = self.copy_project(template, run_dir, with_lock=False)
                self.timed(m, WBSYNC + ["lock"], run_dir, project, count_requests=True)
                if not (project / "artifacts.lock").exists():
                    raise SystemExit("bench: wbsync lock wrote no lockfile")
                _remove(run_dir)
        print(f"  lock: 1 -> {m_one.median:.2f} s, {n} -> {m_many.median:.2f} s", flush=True)

    def memory(self) -> None:
        """Peak memory (the summed RSS of each command's process tree) of every command that does
        work on the many-small-files artifact: lock, cold sync, no-op sync, outdated, verify, mirror."""
        info = self.server.info["collections"][SMALL]
        what = f"{int(info['files']):,} files"
        template = self.workdir / "templates" / "memory"
        template.mkdir(parents=True)
        (template / "artifacts.yaml").write_text(
            f"version: 1\nartifacts:\n  many:\n    artifact: wandb-registry-dataset/{SMALL}:production\n"
            "    path: data/many\n")
        steps = (("lock", ["lock"]), ("sync", ["sync"]), ("noop", ["sync"]), ("outdated", ["outdated"]),
                 ("verify", ["verify"]), ("mirror", ["mirror", "MIRROR"]))
        for _ in range(max(1, self.runs("small"))):
            run_dir = self.fresh("memory")
            project = self.copy_project(template, run_dir, with_lock=False)
            for key, args in steps:
                label = f"memory: wbsync {' '.join(args).replace('MIRROR', 'DEST')}"
                label += {"sync": " (cold)", "noop": " (no-op)"}.get(key, "") + f" ({what})"
                cmd = WBSYNC + [str(run_dir / "mirror") if a == "MIRROR" else a for a in args]
                self.timed(self.measure(f"memory.{key}", label), cmd, run_dir, project)
            _remove(run_dir)
        print("  memory: " + ", ".join(f"{k} {self.measures[f'memory.{k}'].tree_rss_max:.0f} MB"
                                       for k, _ in steps), flush=True)

    # targets

    def evaluate(self) -> None:
        m = self.measures
        for case, what, wire_target in (("small", "small files", 0.5), ("large", "large files", 0.8)):
            if f"{case}.wbsync" not in m:
                continue
            wb, sdk, wire, floor = (m[f"{case}.{k}"] for k in ("wbsync", "sdk", "wire", "floor"))
            wire_s = wire.internal_median or wire.median
            if case == "small":
                self.targets.append(Target(f"cold {what}: SDK time / wbsync time", sdk.median / wb.median, ">=", 5,
                                           "x", "whole process, both"))
            else:
                self.targets.append(Target(f"cold {what}: SDK time / wbsync time (not slower)",
                                           sdk.median / wb.median, ">=", 1, "x", "whole process, both"))
            self.targets.append(Target(f"cold {what}: wbsync throughput / wire limit", wire_s / wb.median, ">=",
                                       wire_target, "", "wbsync whole process vs. the wire client's transfers"))
            net = wb.median - floor.median
            if net > 0:
                self.targets.append(Target(f"cold {what}: wbsync throughput / wire limit, net of the SDK floor",
                                           wire_s / net, ">=", wire_target, "",
                                           f"wbsync minus {floor.median:.2f} s of import wandb + artifact() + files()"))
        if "large.quarter" in m:
            full, quarter = m["large.wbsync"].tree_rss_max, m["large.quarter"].tree_rss_max
            self.targets.append(Target("peak RSS flat in file size: RSS(full) / RSS(quarter size)",
                                       full / quarter, "<", 1.1, "x", f"{full:.0f} MB vs {quarter:.0f} MB"))
        for key, label in (("noop.sync", "no-op sync"), ("noop.frozen", "no-op sync --frozen")):
            if key in m:
                self.targets.append(Target(f"{label}: median wall time", m[key].median, "<", 0.5, " s",
                                           "whole process"))
                requests = sum(s.requests or 0 for s in m[key].samples)
                self.targets.append(Target(f"{label}: requests to the server (all runs)", requests, "==", 0))
        if "lock.many" in m:
            ratio = m["lock.many"].median / m["lock.one"].median
            self.targets.append(Target(f"lock {self.sizes.lock_artifacts} artifacts / lock 1", ratio, "<", 3, "x"))
        wbsync_rss = [(mm.tree_rss_max, mm.label) for mm in m.values()
                      if "wbsync" in mm.label and not mm.key.startswith("scale.")]  # scale: its own targets
        if wbsync_rss:
            worst, label = max(wbsync_rss)
            self.targets.append(Target("peak memory of every wbsync command: summed RSS of its process tree (max)",
                                       worst, "<", 200, " MB", label))


def compile_wbsync() -> None:
    """Byte-compile wbsync (into its git-ignored __pycache__ folders), as installing it would.

    Without this, a run after someone edited a module (or under PYTHONDONTWRITEBYTECODE) would
    time the compiler. The SDK and urllib3 in site-packages were compiled when installed."""
    import wbsync

    subprocess.run([PY, "-m", "compileall", "-q", str(Path(wbsync.__file__).parent)], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


#: Where ``_remove`` sets aside the trees of many files until the bench ends (see there).
_TRASH: list[Path] = []
SET_ASIDE_OVER = 200  # files in a run's tree above which it is set aside instead of deleted


def _remove(path: Path, now: bool = False) -> None:
    """Delete a run's files (store, project, SDK cache): the large case writes GBs per run.

    A tree of many files is only moved aside (``trash/`` in the work folder) and deleted when the
    bench ends. Freeing thousands of inodes makes every file created in the next minutes slower on
    ext4 without a journal (this machine's disk): each create scans past the recently deleted
    inodes (the kernel's ``recently_deleted``; 0.6-1 ms a create for minutes after 20,000 files
    were deleted, against 0.05 ms, measured with ``perf``), so the next command measured,
    whichever tool it is, would pay for the previous one's clean-up. Trees of a few large files
    are deleted at once (few inodes, GBs of disk).
    """
    if not now and _TRASH and _count_files(path, SET_ASIDE_OVER) > SET_ASIDE_OVER:
        _TRASH[0].mkdir(exist_ok=True)
        path.rename(_TRASH[0] / path.name)  # run folders are numbered: no two share a name
        return
    for folder, dirs, _files in os.walk(path):  # store blobs and their folders are read-only
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _count_files(path: Path, enough: int) -> int:
    """Files under ``path``, counted up to just past ``enough``."""
    count = 0
    for _folder, _dirs, files in os.walk(path):
        count += len(files)
        if count > enough:
            break
    return count


def _drain_writeback() -> None:
    """Flush the previous run's dirty pages now, so their write-back does not land in this run."""
    os.sync()


# -- reporting ----------------------------------------------------------------------------


def machine(workdir: Path) -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    fs = subprocess.run(["df", "-T", str(workdir)], capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "wbsync"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**30, 1),
        "filesystem": f"{fs[1]} ({fs[0]}) at {workdir.parent}", "kernel": platform.release(),
        "python": platform.python_version(), "wandb": metadata.version("wandb"),
        "wbsync": metadata.version("wbsync"), "urllib3": metadata.version("urllib3"),
        "commit": commit + (" (wbsync/ modified)" if dirty else ""),
    }


def table(bench: Bench) -> list[str]:
    rows = ["| measure | runs | median | min | max | MB/s | internal median | CPU (sys) / server CPU "
            "| peak RSS, process tree summed (largest process) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in bench.measures.values():
        walls = m.walls()
        rate = f"{m.bytes / MB / m.median:,.0f}" if m.bytes else ""
        internal = m.internal_median
        inner = f"{internal:.3f} s ({m.bytes / MB / internal:,.0f} MB/s)" if internal and m.bytes else ""
        cpu = statistics.median(s.cpu_s for s in m.samples)
        kernel = statistics.median(s.sys_s for s in m.samples)
        server = statistics.median(s.server_cpu_s for s in m.samples)
        rows.append(f"| {m.label} | {len(walls)} | {m.median:.3f} s | {min(walls):.3f} s | {max(walls):.3f} s | "
                    f"{rate} | {inner} | {cpu:.2f} s ({kernel:.2f}) / {server:.2f} s | "
                    f"{m.tree_rss_max:.0f} MB ({m.rss_max:.0f} MB) |")
    return rows


def targets_table(bench: Bench) -> list[str]:
    rows = ["| target | result | verdict |", "|---|---|---|"]
    for t in bench.targets:
        detail = f" ({t.detail})" if t.detail else ""
        verdict = "PASS" if t.passed else f"**MISS** ({t.margin})" if t.margin else "**MISS**"
        rows.append(f"| {t.name}{detail} | {t.describe()} | {verdict} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (1,000 small files, 3 x 32 MiB, 2,000-file no-op, lock of 10) for a smoke run")
    parser.add_argument("--runs", type=int, default=0,
                        help="runs per measure (default: 3 for cold small files, 5 for cold large files, 10 for no-op "
                             "and lock; 2, 2 and 3 with --quick)")
    parser.add_argument("--large-mib", type=int, default=None, help="size of each large file in MiB (default 256)")
    parser.add_argument("--only", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases among {','.join(CASES)} (default: all but scale)")
    parser.add_argument("--scale-files", type=int, default=1_000_000, help="files of the scale case's dataset")
    parser.add_argument("--scale-tree-files", type=int, default=0,
                        help="files of the scale case's placed tree (no-op, verify, version move; default: --scale-files)")
    parser.add_argument("--scale-cold-files", type=int, default=100_000,
                        help="files of the scale case's cold sync (against Artifact.download()); 0 leaves it out")
    parser.add_argument("--wire-threads", type=int, default=64,
                        help="connections of the wire-limit client (default 64, wbsync's default --jobs)")
    parser.add_argument("--profiles", default="cloud,far",
                        help="network profiles of the net case (default cloud,far; see wbsync/testing/network.py)")
    parser.add_argument("--net-cases", default=",".join(NET_CASES),
                        help=f"cases of the net case among {','.join(NET_CASES)} (default: all)")
    parser.add_argument("--link-lifetime", type=float, default=2.0,
                        help="seconds a file link lives in the net expiry case (default 2: shorter than the sync)")
    parser.add_argument("--sizes", default="{}", help="JSON overrides of bench.server.Sizes fields")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs of every command)")
    args = parser.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    args.profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    args.net_cases = [c.strip() for c in args.net_cases.split(",") if c.strip()]
    unknown = set(args.only) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}")

    workdir = Path(tempfile.mkdtemp(prefix="wbsync-bench-", dir=args.workdir))
    _TRASH[:] = [workdir / "trash"]
    started = time.perf_counter()
    load_before = os.getloadavg()
    info = machine(workdir)
    bench = Bench(args, workdir)
    from bench.scale import Scale

    scale = Scale(bench) if "scale" in args.only else None
    try:
        steps: dict[str, Callable[[], None]] = {
            "small": lambda: bench.cold("small", SMALL, extra=(("hardlink", SMALL, ("--link", "hardlink"), ""),)),
            "large": lambda: bench.cold("large", LARGE, extra=(("hardlink", LARGE, ("--link", "hardlink"), ""),
                                                             ("quarter", LARGE_QUARTER, (), "quarter size: "))),
            "noop": bench.noop,
            "lock": bench.lock,
            "memory": bench.memory,
            "net": lambda: run_network(bench, args.profiles, args.net_cases, args.link_lifetime),
            "scale": lambda: scale.run() if scale else None,
        }
        for case in args.only:
            print(f"== {case}", flush=True)
            case_started = time.perf_counter()
            steps[case]()
            print(f"   ({case}: {time.perf_counter() - case_started:.0f} s)", flush=True)
        server_rss = bench.server.rss_mb
    finally:
        bench.server.stop()
        if not args.keep:
            _remove(workdir, now=True)
    bench.evaluate()
    evaluate_network(bench)
    if scale:
        scale.evaluate()
    elapsed = time.perf_counter() - started
    load = {"before": load_before, "after": os.getloadavg()}
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    header = [f"wbsync benchmarks: {command.strip()}",
              (f"machine: {info['nproc']} cores, {info['cpu']}, {info['mem_gib']} GiB, {info['filesystem']}; "
               f"Python {info['python']}, wandb {info['wandb']}, wbsync {info['wbsync']} @ {info['commit']}"),
              f"sizes: {json.dumps(bench.sizes.__dict__)}"
              + (" (--quick: smoke sizes, where fixed costs dominate; the targets are for the full sizes)"
                 if args.quick else ""),
              (f"load average before/after: {load['before'][0]:.2f} / {load['after'][0]:.2f}; "
               f"fake server peak RSS {server_rss:.0f} MB; total {elapsed:.0f} s")]
    lines = header + [""] + table(bench) + [""] + targets_table(bench)
    print("\n" + "\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    doc = {"command": command.strip(), "machine": info, "sizes": bench.sizes.__dict__, "load_average": load,
           "server_peak_rss_mb": server_rss, "total_s": elapsed, "wire_threads": args.wire_threads,
           "measures": {k: m.to_json() for k, m in bench.measures.items()},
           "targets": [{"name": t.name, "value": t.value, "op": t.op, "threshold": t.threshold, "pass": t.passed,
                        "detail": t.detail} for t in bench.targets]}
    (RESULTS / f"{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    print(f"\nresults: {RESULTS / stamp}.json, .md" + (f"; scratch kept in {workdir}" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
