"""Crash trials: kill `wbsync sync` with SIGKILL at random moments, then check nothing was lost.

    python -m bench.crash_trials [--kills 50] [--max-attempts 200] [--seed 7] [--delay 0.05] [--keep]

Starts the fake W&B server (wbsync.testing) in this process, publishes v0 of an artifact of
many small files and one large one, then v1 (half the files changed, some removed, some added).
Each trial sets up one starting point, runs the real CLI (`python -m wbsync sync --jobs 4`, every
file GET slowed by ``--delay`` seconds) in its own process group and kills it with SIGKILL after
a random time counted from one of three moments, each drawn up to 1.15 times what an undisturbed
sync of that kind (measured first) spends after it: the start (start-up, resolution, requests),
the server's first file GET (transfers, verification) or the first placement (placement,
removals, the state write). Then it checks:

* every file under a final name in the destination holds the whole bytes of a version of that
  path (v0 or v1), never anything else: killed temp files are allowed, they are not final names;
* the lock was not touched, and every blob in the content store hashes to its name;
* the next `wbsync sync` exits 0 and leaves exactly v1 (no temp file left), `wbsync verify` exits 0.

Only some kills test anything: one during start-up or resolution finds nothing written yet, one
after the last rename finds the work done. A kill counts toward ``--kills`` only if it landed
in the window that matters, read from what the killed run left: after the first blob reached
the store (for ``place``, where the store already holds every blob: after placement began, a
temp file or a new file in the folder) and before the last rename (some changed file still
holds its old bytes or is missing). Kill times are then counted from the first file GET or the
first placement only, and trials go on until that many kills landed in the window, or
``--max-attempts`` trials ran (then the run fails and says so).

Starting points (drawn per trial): ``fresh`` (empty folder, empty store, locked at v1),
``upgrade`` (synced at v0, lock upgraded to v1, the store holds v0), ``place`` (the same, but
the store already holds v1 and the sync is `--frozen`: no network, the kill lands in re-hashing
or placement). Prints one line per trial and a summary; exit status 1 if any trial failed.
Seedable: the same seed gives the same data, starting points and kill-time draws (which scale
with the durations measured on the machine).

tests/test_fault_matrix.py runs a reduced version (5 trials) through ``run_trials``.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wbsync.core.digests import hash_file
from wbsync.testing import FakeWandb, Fault

MANIFEST = """\
version: 1
artifacts:
  model:
    artifact: wandb-registry-model/crash-model:production
    path: models/crash
"""
DEST = "models/crash"
KINDS = ("fresh", "upgrade", "place")
ANCHORS = {"fresh": ("start", "first GET", "placing"), "upgrade": ("start", "first GET", "placing"),
           "place": ("start", "placing")}
# Aiming at the window (--kills): kill times count from moments inside it, never from the start.
WINDOW_ANCHORS = {"fresh": ("first GET", "placing"), "upgrade": ("first GET", "placing"), "place": ("placing",)}
ADDED = "a-new"  # the folder of the files v1 adds: sorted first, it appears as placement starts
TEMP_NAME = re.compile(r"\..*\.wbsync-(\d+)-[0-9a-f]{8}\.tmp", re.DOTALL)  # wbsync.tree.place's temp names
Files = dict[str, bytes]
#: Runs `wbsync ARGS` for a project and a store to completion: (exit code, stdout, stderr).
Runner = Callable[[Path, Path, tuple[str, ...]], tuple[int, str, str]]


def make_versions(rng: random.Random, small: int = 120) -> tuple[Files, Files]:
    """v0: ``small`` files of 1-24 KiB in a few folders and one 2 MiB file; v1 changes half of
    the small files and the large one, drops a sixth and adds a sixth."""
    v0 = {f"part-{i % 4}/file-{i:03}.bin": rng.randbytes(rng.randint(1, 24) * 1024) for i in range(small)}
    v0["weights/big.bin"] = rng.randbytes(2 << 20)
    v1 = dict(v0)
    names = sorted(n for n in v0 if n.startswith("part-"))
    for name in names[: small // 2]:
        v1[name] = rng.randbytes(len(v0[name]) + rng.randint(-512, 512))
    for name in names[small // 2 : small // 2 + small // 6]:
        del v1[name]
    for i in range(small // 6):
        v1[f"{ADDED}/added-{i:03}.bin"] = rng.randbytes(rng.randint(1, 32) * 1024)
    v1["weights/big.bin"] = rng.randbytes(2 << 20)
    return v0, v1


@dataclass
class Trial:
    index: int
    kind: str
    kill_after: float
    anchor: str = "start"  # what kill_after counts from: "start", "first GET" or "placing"
    killed: bool = False  # False: the sync had exited before the kill came
    in_window: bool = False  # killed after the first blob reached the store and before the last rename
    state: str = ""  # what the folder held when the kill came (see _describe)
    temp_left: int = 0  # temp files the killed run left in the folder (the next sync removes them)
    store_temp_left: int = 0  # partial downloads left in the store's tmp/ (removed once abandoned)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    seed: int
    trials: list[Trial]
    seconds: float
    wanted: int | None = None  # kills in the window asked for (None: a fixed number of trials)

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if not t.ok]

    @property
    def short_of_window(self) -> bool:
        return self.wanted is not None and sum(t.in_window for t in self.trials) < self.wanted

    def summary(self) -> str:
        killed = sum(t.killed for t in self.trials)
        window = sum(t.in_window for t in self.trials)
        early = sum(t.killed and not t.in_window and t.state != "all placed" for t in self.trials)
        late = sum(t.killed and not t.in_window and t.state == "all placed" for t in self.trials)
        states = Counter(t.state for t in self.trials if t.killed)
        kinds = Counter(t.kind for t in self.trials)
        temps = sum(t.temp_left for t in self.trials)
        store_temps = sum(t.store_temp_left for t in self.trials)
        verdict = "PASS" if not self.failed else f"FAIL ({len(self.failed)} trial(s) failed)"
        if self.short_of_window:
            verdict = f"FAIL (only {window} of {self.wanted} kills landed in the window)"
        return (
            f"crash trials: {len(self.trials)} (seed {self.seed}) in {self.seconds:.0f} s: "
            f"{len(self.trials) - len(self.failed)} passed, {len(self.failed)} failed: {verdict}\n"
            f"  starting points: {dict(sorted(kinds.items()))}\n"
            f"  killed inside the window (first blob stored .. last rename): {window}"
            + (f" of {self.wanted} wanted" if self.wanted else "") + "\n"
            f"  killed outside it: {early} before the first blob was stored, {late} after the last rename; "
            f"had exited before the kill: {len(self.trials) - killed}\n"
            f"  folder when killed: {dict(sorted(states.items()))}\n"
            f"  temp files left by killed runs: {temps} in folders (all removed by the next sync), "
            f"{store_temps} in the store's tmp/ (never blobs)"
        )


class Bench:
    """One fake server world and the template folders every trial starts from."""

    def __init__(self, srv: FakeWandb, work: Path, env: dict[str, str], seed: int, delay: float,
                 log: Callable[[str], None] = print, runner: Runner | None = None,
                 kinds: tuple[str, ...] = KINDS, aim_at_window: bool = False) -> None:
        self.anchors = WINDOW_ANCHORS if aim_at_window else ANCHORS
        self.srv, self.work, self.env, self.seed, self.delay, self.log = srv, work, env, seed, delay, log
        self.runner = runner or self._subprocess
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.v0, self.v1 = make_versions(random.Random(seed))
        self.durations: dict[tuple[str, str], float] = {}

    # -- setup ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Templates: a project synced at v0 (store holding v0), the v1 lock, a store holding both."""
        self.srv.log_artifact("acme", "model", "crash-model", self.v0, type="model", aliases=["production"])
        t0 = self.work / "template-v0"
        t0.mkdir(parents=True)
        (t0 / "artifacts.yaml").write_text(MANIFEST)
        self._cli(t0, self.work / "store-v0", "sync", check=True)
        self.srv.log_artifact("acme", "model", "crash-model", self.v1, type="model", aliases=["production"])
        t1 = self.work / "template-v1"
        clone_project(t0, t1)
        shutil.copytree(self.work / "store-v0", self.work / "store-v01", symlinks=True)
        self._cli(t1, self.work / "store-v01", "lock", "--upgrade", check=True)
        self.lock_v1 = (t1 / "artifacts.lock").read_bytes()
        self._cli(t1, self.work / "store-v01", "sync", check=True)
        self._slow()
        for kind in self.kinds:  # how long an undisturbed sync of each kind takes: kill times scale with it
            project, store = self._start(kind, self.work / f"calibrate-{kind}")
            proc, started = self._launch(kind, project, store)
            seen = self._watch(proc, project, {*ANCHORS[kind], "saved"})
            if proc.wait(timeout=300) != 0:
                raise RuntimeError(f"the undisturbed {kind} sync exited {proc.returncode}")
            ended = time.monotonic()
            for anchor in ANCHORS[kind]:
                # From "placing", the window is the placement phase itself (up to the state write):
                # what follows (the process exiting) is not worth most of the kills.
                until = seen["saved"] if anchor == "placing" else ended
                self.durations[(kind, anchor)] = until - (started if anchor == "start" else seen[anchor])
        self.log("undisturbed sync: " + ", ".join(f"{k} {v:.2f} s from {a}" for (k, a), v in self.durations.items()))

    def _start(self, kind: str, folder: Path) -> tuple[Path, Path]:
        """A fresh project and store for one trial of ``kind``."""
        folder.mkdir(parents=True)
        project, store = folder / "project", folder / "store"
        if kind == "fresh":
            project.mkdir()
            (project / "artifacts.yaml").write_text(MANIFEST)
            store.mkdir()
        else:
            clone_project(self.work / "template-v0", project)
            shutil.copytree(self.work / ("store-v0" if kind == "upgrade" else "store-v01"), store, symlinks=True)
        (project / "artifacts.lock").write_bytes(self.lock_v1)
        return project, store

    @staticmethod
    def _command(kind: str) -> tuple[str, ...]:
        return ("sync", "-q", "--jobs", "4") + (("--frozen",) if kind == "place" else ())

    def _slow(self) -> None:
        self.srv.clear_faults()
        self.srv.inject(Fault("file", "slow", times=None, delay=self.delay))

    def _subprocess(self, project: Path, store: Path, args: tuple[str, ...]) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "wbsync", *args], cwd=project, capture_output=True,
                              text=True, env={**self.env, "WBSYNC_CACHE_DIR": str(store)}, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    def _cli(self, project: Path, store: Path, *args: str, check: bool = False) -> tuple[int, str, str]:
        code, out, err = self.runner(project, store, args)
        if check and code != 0:
            raise RuntimeError(f"`wbsync {' '.join(args)}` exited {code}:\n{err}")
        return code, out, err

    # -- one trial --------------------------------------------------------------------------

    def _launch(self, kind: str, project: Path, store: Path) -> tuple[subprocess.Popen[bytes], float]:
        """Start the sync in its own process group; returns it and its start time."""
        self.srv.clear_requests()
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "wbsync", *self._command(kind)], cwd=project,
                                env={**self.env, "WBSYNC_CACHE_DIR": str(store)}, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, started

    def _watch(self, proc: subprocess.Popen[bytes], project: Path, anchors: set[str]) -> dict[str, float]:
        """When each anchor was first seen (polled every millisecond) until all were or the process
        ended: "first GET" in the server's log, "placing" when the folder of added files appears,
        "saved" when the state file is rewritten (placement is over)."""
        seen: dict[str, float] = {}
        todo = anchors - {"start"}
        state = project / ".wbsync" / "state.json"
        before = state.stat().st_mtime_ns if state.exists() else 0
        while todo:
            if "first GET" in todo:
                gets = [r.at for r in self.srv.requests if r.method == "GET" and "/blobs/" in r.path]
                if gets:
                    seen["first GET"] = min(gets)
            if "placing" in todo and (project / DEST / ADDED).exists():
                seen["placing"] = time.monotonic()
            if "saved" in todo and state.exists() and state.stat().st_mtime_ns != before:
                seen["saved"] = time.monotonic()
            todo -= seen.keys()
            if proc.poll() is not None:
                break
            time.sleep(0.001)
        return {a: seen.get(a, time.monotonic()) for a in anchors - {"start"}}

    def trial(self, index: int) -> Trial:
        kind = self.rng.choice(self.kinds)
        # Kill times count from one of: the start (Python start-up, resolution, the first
        # requests), the first file GET (transfers and verification) or the first placement
        # (placement, removals, the state write), each drawn up to 1.15 times what remains then.
        anchor = self.rng.choice(self.anchors[kind])
        trial = Trial(index, kind, round(self.rng.uniform(0, 1.15 * self.durations[(kind, anchor)]), 4), anchor)
        project, store = self._start(kind, self.work / f"trial-{index:03}")
        blobs_before = count_blobs(store)
        proc, started = self._launch(kind, project, store)
        origin = started if anchor == "start" else self._watch(proc, project, {anchor})[anchor]
        time.sleep(max(0.0, origin + trial.kill_after - time.monotonic()))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own process group: wbsync and its wandb-core
            trial.killed = True
        proc.wait(timeout=60)
        if not trial.killed and proc.returncode != 0:
            trial.problems.append(f"the undisturbed sync exited {proc.returncode}")
        self._check_after_kill(trial, project, store)
        if trial.killed:  # read from what the killed run left, so no race with the kill itself
            began = count_blobs(store) > blobs_before if kind != "place" else self._placement_began(project)
            trial.in_window = began and trial.state != "all placed"
        self.srv.clear_faults()  # the next sync need not be slow
        try:
            self._check_recovery(trial, project, store)
        finally:
            self._slow()
        if trial.ok:
            shutil.rmtree(project.parent, ignore_errors=True)
        return trial

    def _placement_began(self, project: Path) -> bool:
        """Whether the folder shows placement work: a staged temp file, or a file of v1 that
        v0 did not have (only for starting points whose folder held v0)."""
        folder = project / DEST
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                if TEMP_NAME.fullmatch(path.name) or (rel in self.v1 and self.v1[rel] != self.v0.get(rel)
                                                      and path.read_bytes() == self.v1[rel]):
                    return True
        return False

    def _check_after_kill(self, trial: Trial, project: Path, store: Path) -> None:
        allowed = {p: {self.v1[p]} | ({self.v0[p]} if trial.kind != "fresh" and p in self.v0 else set())
                   for p in self.v1}
        if trial.kind != "fresh":
            allowed.update({p: {self.v0[p]} for p in self.v0.keys() - self.v1.keys()})
        folder = project / DEST
        v1_placed = 0
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if not path.is_file():
                continue
            rel = path.relative_to(folder).as_posix()
            if TEMP_NAME.fullmatch(path.name):
                trial.temp_left += 1
                continue
            data = path.read_bytes()
            if data not in allowed.get(rel, set()):
                trial.problems.append(f"{DEST}/{rel} holds {len(data)} bytes that are no version of it")
            elif data == self.v1.get(rel) and data != self.v0.get(rel):
                v1_placed += 1
        trial.state = _describe(v1_placed, sum(1 for p in self.v1 if self.v1[p] != self.v0.get(p)))
        if (project / "artifacts.lock").read_bytes() != self.lock_v1:
            trial.problems.append("the lock changed")
        trial.problems += blob_problems(store)
        trial.store_temp_left = len(list((store / "tmp").glob("*"))) if (store / "tmp").exists() else 0

    def _check_recovery(self, trial: Trial, project: Path, store: Path) -> None:
        code, _, err = self._cli(project, store, "sync", "-q")
        if code != 0:
            trial.problems.append(f"the next sync exited {code}: {err[-400:]}")
            return
        folder = project / DEST
        got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        if got != self.v1:
            extra, missing = sorted(got.keys() - self.v1.keys()), sorted(self.v1.keys() - got.keys())
            wrong = sorted(p for p in got.keys() & self.v1.keys() if got[p] != self.v1[p])
            trial.problems.append(f"after the next sync: extra {extra[:3]}, missing {missing[:3]}, wrong {wrong[:3]}")
        code, out, err = self._cli(project, store, "verify", "-q")
        if code != 0:
            trial.problems.append(f"verify exited {code}: {out[-300:]}{err[-300:]}")
        trial.problems += blob_problems(store)


def clone_project(src: Path, dest: Path) -> None:
    """A project copy whose files are the template's own (hardlinks: same inode and device), as
    if this project had synced them: wbsync proves what it placed by identity, and a plain copy
    would make every file the user's. Syncs replace files by renaming, so the template is safe."""
    shutil.copytree(src, dest, symlinks=True, copy_function=os.link)


def _describe(v1_placed: int, v1_changed: int) -> str:
    if v1_placed == 0:
        return "as before"
    if v1_placed < v1_changed:
        return "mid-placement"
    return "all placed"


def count_blobs(store: Path) -> int:
    return sum(1 for _ in store.glob("blobs/*/*/*"))


def blob_problems(store: Path) -> list[str]:
    """Blobs in the store whose bytes do not hash to their name."""
    problems = []
    for algorithm in ("md5", "xxh128"):
        for blob in sorted((store / "blobs" / algorithm).glob("*/*")):
            got = base64.b64decode(hash_file(blob, algorithm)).hex()
            if got != blob.parent.name + blob.name:
                problems.append(f"store blob {blob} holds bytes with {algorithm} {got}")
    return problems


def run_trials(srv: FakeWandb, work: Path, env: dict[str, str], trials: int, seed: int, delay: float = 0.05,
               log: Callable[[str], None] = print, runner: Runner | None = None,
               kinds: tuple[str, ...] = KINDS, window_kills: int | None = None) -> Report:
    """Set up, then run trials of the starting points ``kinds``: ``trials`` of them, or, with
    ``window_kills``, until that many kills landed in the window (at most ``trials`` attempts).
    ``runner`` runs the setup and the checking commands (default: a subprocess each); the killed
    sync is always a subprocess of its own."""
    started = time.monotonic()
    bench = Bench(srv, work, env, seed, delay, log, runner, kinds, aim_at_window=window_kills is not None)
    bench.prepare()
    results: list[Trial] = []
    in_window = 0
    for index in range(trials):
        if window_kills is not None and in_window >= window_kills:
            break
        trial = bench.trial(index)
        results.append(trial)
        in_window += trial.in_window
        outcome = "ok" if trial.ok else "FAILED: " + "; ".join(trial.problems)
        when = f"{'killed' if trial.killed else 'exited before'} {trial.kill_after:.3f} s after {trial.anchor}"
        window = "in window" if trial.in_window else ("outside" if trial.killed else "-")
        log(f"trial {index + 1:3} {trial.kind:7} {when:38} {window:9} folder {trial.state or '-':13} "
            f"temp left {trial.temp_left}: {outcome}")
    return Report(seed, results, time.monotonic() - started, window_kills)


def isolated_env(home: Path, srv: FakeWandb) -> dict[str, str]:
    """The environment of every wbsync process: the fake server, fast SDK retries, nothing shared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WBSYNC_"))}
    for name in ("wandb-cache", "wandb-config", "wandb-data"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update({
        "WANDB_BASE_URL": srv.url, "WANDB_API_KEY": srv.api_key, "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "HOME": str(home), "WANDB_CACHE_DIR": str(home / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(home / "wandb-config"), "WANDB_DATA_DIR": str(home / "wandb-data"),
        "WANDB__GRAPHQL_RETRY_MAX": "1", "WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS": "1",
        "WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS": "1", "WANDB_HTTP_TIMEOUT": "10",
        "WBSYNC_RETRIES": "3", "WBSYNC_BACKOFF": "0.05", "WBSYNC_TIMEOUT": "5",
    })
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_trials", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="kills inside the window to reach (default 50)")
    parser.add_argument("--max-attempts", type=int, default=200, help="give up after this many trials (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each file GET is slowed by")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (a passed trial's folders are removed as it ends)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wbsync-crash-"))
    try:
        with FakeWandb() as srv:
            report = run_trials(srv, work / "trials", isolated_env(work / "home", srv), args.max_attempts,
                                args.seed, args.delay, window_kills=args.kills)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(report.summary())
    for trial in report.failed:
        print(f"  trial {trial.index + 1} ({trial.kind}, kill at {trial.kill_after} s): {'; '.join(trial.problems)}")
    if report.failed and not args.keep:
        print("  (run again with --keep to inspect the folders)")
    return 1 if report.failed or report.short_of_window else 0


if __name__ == "__main__":
    sys.exit(main())
