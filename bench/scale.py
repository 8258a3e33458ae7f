"""Issue 17's case: one dataset of a million tiny files (`python -m bench --only scale`).

Each measured command runs once (the sizes make a run minutes long; the machine is shared),
its floor right beside it, so the ratios come from one run on one machine state:

* SDK manifest: `import wandb`, `api.artifact(ref).manifest` of the million-file version, the
  cost no client of the SDK avoids (whole process; its own timing of the manifest load too);
* `wbsync lock` of that entry, against it: time and memory;
* the tree (a second dataset, `--scale-tree-files`, the same size unless told), built by the
  harness as a hardlinked sync leaves it (blobs of the known bytes in a content store, a
  hardlink of each, the state recording them: placing a million files through a sync took
  most of an hour of setup on this disk) and synced once (timed, no target), then no-op
  `wbsync sync` against a bare `os.scandir` + `stat` walk of the same tree;
* `wbsync verify` against a plain md5 of every file on every core (bench/scale_floors.py);
* `wbsync outdated` after the alias moved to a version with 1% of the files changed; then
  `wbsync lock --upgrade` (lock size, diff lines) and `wbsync sync`, checked from the server's
  log (only the changed files fetched) and the state file (only their entries rewritten);
* cold `wbsync sync` of 100,000 files against the SDK's `Artifact.download()`.

Memory is the peak of the *summed* RSS of the command and every process under it (wandb-core,
verify's workers), sampled from /proc (bench.run's TreeSampler).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.server import SCALE, SCALE_COLD, SCALE_TREE, scale_content, scale_path

if TYPE_CHECKING:
    from bench.run import Bench, Measure

RSS_LIMIT_MB = 300
TREE_ROUNDS = 3  # rounds of the no-op, verify and their floors (the other commands run once)


# -- the case ------------------------------------------------------------------------------


class Scale:
    def __init__(self, bench: Bench) -> None:
        from bench.run import WBSYNC

        self.bench, self.wbsync = bench, WBSYNC
        self.info = bench.server.info["collections"]
        self.n = int(self.info[SCALE]["files"])
        self.results: dict[str, float] = {}

    def timed(self, key: str, label: str, cmd: list[str], home: Path, cwd: Path, any_exit: bool = False,
              count_requests: bool = False) -> tuple[Measure, str]:
        from bench.run import _drain_writeback, run

        bench = self.bench
        m = bench.measure(f"scale.{key}", label)
        if count_requests:
            bench.server.clear()
        _drain_writeback()
        server_cpu = bench.server.cpu_s()
        # check: a failed command stops the run, except where any exit is an answer (outdated)
        sample, out = run(cmd, env=bench.env(home), cwd=cwd, check=not any_exit,
                          log=bench.workdir / "logs" / f"scale-{key}")
        sample.server_cpu_s = bench.server.cpu_s() - server_cpu
        if count_requests:
            sample.requests = bench.server.count()
        m.samples.append(sample)
        print(f"  {label}: {sample.wall_s:.2f} s, peak summed RSS {sample.tree_rss_mb:.0f} MB", flush=True)
        return m, out

    def project(self, name: str, collection: str) -> tuple[Path, Path]:
        home, project = self.bench.workdir / f"{name}-home", self.bench.workdir / f"{name}-project"
        home.mkdir(parents=True)
        project.mkdir()
        (project / "artifacts.yaml").write_text(
            f"version: 1\nartifacts:\n  images:\n    artifact: wandb-registry-dataset/{collection}:production\n"
            "    path: data/images\n")
        return home, project

    def move_alias(self, collection: str) -> None:
        answer = self.bench.server._ask(f"alias {collection} production 1")
        if answer != "ok":
            raise SystemExit(f"bench: the server did not move the alias: {answer}")

    def run(self) -> None:
        self.lock_side()
        self.tree_side()
        if SCALE_COLD in self.info:  # --scale-cold-files 0 leaves the cold syncs out
            self.cold()

    def lock_side(self) -> None:
        """The SDK's manifest against lock, outdated and a version move of the lock."""
        from bench.run import PY

        n = self.n
        home, project = self.project("scale", SCALE)
        ref = f"wandb-registry-dataset/{SCALE}:production"
        self.timed("sdk_manifest", f"floor: SDK api.artifact().manifest ({n:,} files)",
                   [PY, "-m", "bench.scale_floors", "manifest", ref], home, self.bench.workdir)
        self.timed("lock", f"wbsync lock ({n:,} files)", self.wbsync + ["lock"], home, project)
        before = (project / "artifacts.lock").read_text()
        self.move_alias(SCALE)
        self.timed("outdated", f"wbsync outdated (alias moved, {n:,} files)", self.wbsync + ["outdated"],
                   home, project, any_exit=True)
        self.timed("upgrade", f"wbsync lock --upgrade ({n:,} files, 1% changed)", self.wbsync + ["lock", "--upgrade"],
                   home, project)
        after = (project / "artifacts.lock").read_text()
        self.results["lock_bytes"] = len(before.encode())
        self.results["lock_bytes_after"] = len(after.encode())
        self.results["diff_lines"] = sum(1 for line in difflib.unified_diff(
            before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---"))

    def tree_side(self) -> None:
        """A placed tree: no-op sync, verify, and the sync after a 1% version move."""
        from bench.run import PY, run

        bench = self.bench
        n = int(self.info[SCALE_TREE]["files"])
        home, project = self.project("scale-tree", SCALE_TREE)
        run(self.wbsync + ["lock", "-q"], env=bench.env(home), cwd=project, log=bench.workdir / "logs" / "scale-tree-lock")
        started = time.perf_counter()
        fill_store(home / "wbsync-cache", n)
        place_tree(home / "wbsync-cache", project, n)
        print(f"  (harness: content store filled with {n:,} blobs and the tree hardlinked from it, with its "
              f"state, in {time.perf_counter() - started:.0f} s)")
        # The first sync plans in full (it stats every file and finds every one as the state
        # records it), then records the fingerprint that the measured no-op uses.
        self.timed("place", f"first sync over the tree the harness built ({n:,} files, setup)",
                   self.wbsync + ["sync"], home, project)
        for _ in range(TREE_ROUNDS):  # seconds each: medians of a few interleaved rounds
            self.timed("noop", f"no-op: wbsync sync ({n:,} files)", self.wbsync + ["sync"], home, project,
                       count_requests=True)
            self.timed("walk", f"floor: os.scandir + stat walk ({n:,} files)",
                       [PY, "-m", "bench.scale_floors", "walk", str(project / "data")], home, bench.workdir)
            self.timed("verify", f"wbsync verify ({n:,} files)", self.wbsync + ["verify"], home, project)
            self.timed("md5", f"floor: md5 of every file, {os.cpu_count()} processes ({n:,} files)",
                       [PY, "-m", "bench.scale_floors", "md5", str(project / "data")], home, bench.workdir)
        self.move_alias(SCALE_TREE)
        run(self.wbsync + ["lock", "--upgrade", "-q"], env=bench.env(home), cwd=project,
            log=bench.workdir / "logs" / "scale-tree-upgrade")
        state_before = _state_files(project)
        state_json = project / ".wbsync" / "state.json"
        state_bytes = state_json.read_bytes()
        self.timed("move", f"wbsync sync after the 1% version move ({n:,} files)",
                   self.wbsync + ["sync", "--json"], home, project, count_requests=True)
        ops = bench.server.ops()
        self.results["move_blob_gets"] = sum(1 for o in ops if o.startswith("GET /blobs/"))
        state_after = _state_files(project)
        self.results["move_state_changed"] = sum(1 for p, v in state_after.items() if state_before.get(p) != v)
        # Records written: the delta's, unless the state was rewritten whole.
        delta = project / ".wbsync" / "state-delta.json"
        self.results["move_state_written"] = (
            sum(len(e["files"]) for e in json.loads(delta.read_text())["entries"].values())
            if state_json.read_bytes() == state_bytes and delta.exists() else len(state_after))
        self.results["move_expected"] = n // 100

    def cold(self) -> None:
        from bench.run import BENCH, PY, _remove

        bench = self.bench
        cold_n = int(self.info[SCALE_COLD]["files"])
        home = bench.workdir / "scale-cold-home"
        project = bench.workdir / "scale-cold-project"
        for folder in (home, project):
            folder.mkdir()
        (project / "artifacts.yaml").write_text(
            f"version: 1\nartifacts:\n  cold:\n    artifact: wandb-registry-dataset/{SCALE_COLD}:production\n"
            "    path: data/cold\n")
        from bench.run import run as run_plain

        run_plain(self.wbsync + ["lock", "-q"], env=bench.env(home), cwd=project,
                  log=bench.workdir / "logs" / "scale-cold-lock")
        _remove(home)
        home.mkdir()
        self.timed("cold", f"cold: wbsync sync ({cold_n:,} files)", self.wbsync + ["sync"], home, project)
        sdk_home = bench.workdir / "scale-sdk-home"
        sdk_home.mkdir()
        _m, out = self.timed("cold_sdk", f"cold: SDK Artifact.download() ({cold_n:,} files)",
                             [PY, str(BENCH / "sdk_download.py"), f"wandb-registry-dataset/{SCALE_COLD}:production",
                              str(sdk_home / "out")], sdk_home, sdk_home)
        files = json.loads(out.strip().splitlines()[-1])["files"]
        if files != cold_n:
            raise SystemExit(f"bench: the SDK downloaded {files} files, expected {cold_n}")

    def evaluate(self) -> None:
        from bench.run import Target

        bench, m, r = self.bench, self.bench.measures, self.results
        sdk = m["scale.sdk_manifest"]
        sdk_rss = sdk.tree_rss_max
        for key in ("lock", "outdated", "noop", "verify", "cold"):
            if f"scale.{key}" not in m:
                continue
            rss = m[f"scale.{key}"].tree_rss_max
            bound = max(RSS_LIMIT_MB, 1.2 * sdk_rss) if key in ("lock", "outdated") else RSS_LIMIT_MB
            detail = (f"< {RSS_LIMIT_MB} MB or 1.2 x the SDK manifest process ({sdk_rss:.0f} MB)"
                      if key in ("lock", "outdated") else "")
            bench.targets.append(Target(f"scale: peak summed RSS, wbsync {key}", rss, "<", bound, " MB", detail))
        bench.targets.append(Target("scale: wbsync lock / SDK manifest load (whole processes)",
                                    m["scale.lock"].median / sdk.median, "<", 1.5, "x"))
        bench.targets.append(Target("scale: no-op sync / scandir+stat walk", m["scale.noop"].median
                                    / m["scale.walk"].median, "<", 3, "x"))
        requests = sum(s.requests or 0 for s in m["scale.noop"].samples)
        bench.targets.append(Target("scale: no-op sync requests to the server", requests, "==", 0))
        bench.targets.append(Target("scale: verify / parallel md5 floor", m["scale.verify"].median
                                    / m["scale.md5"].median, "<", 1.5, "x"))
        bench.targets.append(Target("scale: lock file size", max(r["lock_bytes"], r["lock_bytes_after"]) / 1000, "<",
                                    100, " KB"))
        bench.targets.append(Target("scale: version-move diff of the lock", r["diff_lines"], "<", 20, " lines"))
        bench.targets.append(Target("scale: 1% move, files fetched", r["move_blob_gets"], "==", r["move_expected"]))
        bench.targets.append(Target("scale: 1% move, state records changed", r["move_state_changed"], "==",
                                    r["move_expected"]))
        bench.targets.append(Target("scale: 1% move, state records written", r["move_state_written"], "==",
                                    r["move_expected"]))
        if "scale.move" in m:
            bench.targets.append(Target("scale: peak summed RSS, wbsync sync after the 1% move",
                                        m["scale.move"].tree_rss_max, "<", RSS_LIMIT_MB, " MB"))
        if "scale.cold" in m:
            bench.targets.append(Target("scale: cold sync, SDK download() / wbsync (whole processes)",
                                        m["scale.cold_sdk"].median / m["scale.cold"].median, ">=", 2, "x"))


def fill_store(store: Path, n: int) -> None:
    """Put the blobs of version v0 into a content store as wbsync would (read-only files named
    by md5, with the mtime that marks a verified blob), so that placing a million files needs no
    million downloads."""
    from wbsync.store.blobs import VERIFIED_MTIME_NS

    made: set[str] = set()
    for i in range(n):
        data = scale_content(i)
        hexd = hashlib.md5(data).hexdigest()
        folder = store / "blobs" / "md5" / hexd[:2]
        if hexd[:2] not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(hexd[:2])
        path = folder / hexd[2:]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        os.write(fd, data)
        os.utime(fd, ns=(time.time_ns(), VERIFIED_MTIME_NS))
        os.close(fd)
    assert scale_path(0)  # the server's layout (documented there)


def place_tree(store: Path, project: Path, n: int, entry: str = "images", path: str = "data/images") -> None:
    """The tree and state `wbsync sync --link hardlink` leaves, built directly (a hardlink of
    each blob, the state recording each file's identity, through wbsync.tree.state): placing a
    million files through a sync took most of an hour of setup on this disk. What is measured
    afterwards (no-op, verify, the 1% move) runs the real commands on it."""
    from wbsync.tree.state import EntryState, PlacedFile, State, save_state

    root = project / path
    files: dict[str, PlacedFile] = {}
    made: set[str] = set()
    for i in range(n):
        digest = hashlib.md5(scale_content(i)).digest()
        hexd, rel = digest.hex(), scale_path(i)
        folder, _, _name = rel.rpartition("/")
        if folder not in made:
            (root / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        dest = f"{root}/{rel}"
        os.link(f"{store}/blobs/md5/{hexd[:2]}/{hexd[2:]}", dest)
        st = os.lstat(dest)
        files[rel] = PlacedFile((st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev),
                                "md5:" + base64.b64encode(digest).decode())
    save_state(project, State({entry: EntryState(path, files)}))


def _state_files(project: Path) -> dict[str, object]:
    """Every record the state holds (its delta applied), by entry/path."""
    from wbsync.tree.state import load_state

    return {f"{name}/{p}": (f.stat, f.digest) for name, e in load_state(project).entries.items()
            for p, f in e.files.items()}
