"""The fault matrix: every kind of misbehaviour on every kind of request, all or nothing after it.

Each cell starts from a project synced at v0 whose lock was then upgraded to v1 (v1 changes two
files, drops one and adds one). It injects a fault, runs `wbsync sync` and checks:

* the exit code is the cell's expected one: 0 when the fault is a burst that retries absorb,
  else the documented code (3 remote failure, 4 remote content rejected);
* the project is either exactly v1 (recovered) or exactly the snapshot taken before the sync:
  never a mix of versions, never a wrong byte, never a temp file left behind;
* the content store holds only blobs whose bytes match their names, and no temp file;
* with the fault gone, the next `sync` succeeds and `verify` passes.

Columns:

* ``graphql``: wandb-core's POST /graphql, faulted on ``ArtifactMembershipFiles`` (the listing
  that hands out the file URLs, the one GraphQL call a sync with a fresh lock depends on), plus
  persistent-fault cells on ``Viewer`` and ``ArtifactMembershipByName``, which go through other
  SDK paths. The SDK's own retries apply (conftest: 1 retry, 1 s apart).
* ``file``: wbsync's own fetcher (wbsync/net/fetch.py), faulted on ``weights/shard-0.bin``.
* ``manifest``: the W&B manifest GET, done by the SDK's ``requests`` when a stale lock is
  re-resolved by `sync` (here the manifest entry is re-pinned to ``:v1``); bounded by
  WBSYNC_MANIFEST_TIMEOUT.

docs/reliability.md has the table of outcomes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import run, run_json, run_process, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.digests import hash_file
from wbsync.testing import FakeWandb, Fault

V0 = MODEL
V1 = {
    "config.json": b'{"layers": 48}\n',
    # 3 MiB: more than the fetcher's 1 MiB read, so a body cut after half can be resumed.
    "weights/shard-0.bin": bytes(range(256)) * (3 * 4096),
    "tokenizer.json": b'{"vocab": 32000}\n',
}
DEST = "models/phi3"
SHARD = "shard-0.bin"
FILE_OPS = "ArtifactMembershipFiles"
MANIFEST_GET = "/manifests/"
SHOW_TIMES = bool(os.environ.get("WBSYNC_MATRIX_VERBOSE"))  # print each cell's exit code and time (-s)


@pytest.fixture(autouse=True)
def fast_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_RETRIES", "3")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    monkeypatch.setenv("WBSYNC_TIMEOUT", "1")
    monkeypatch.setenv("WBSYNC_MANIFEST_TIMEOUT", "3")


# -- shared checks (also used by test_disk_full.py and bench/crash_trials.py) -------------


def project_tree(project: Path) -> dict[str, bytes]:
    """Every file of the project but wbsync's own state folder, with its bytes."""
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file() and ".wbsync" not in p.relative_to(project).parts
    }


def store_root() -> Path:
    return Path(os.environ["WBSYNC_CACHE_DIR"])


def store_problems(root: Path | None = None) -> list[str]:
    """Blobs whose bytes do not hash to their name, and temp files left in the store."""
    root = root or store_root()
    problems = []
    for algorithm in ("md5", "xxh128"):
        folder = root / "blobs" / algorithm
        for blob in sorted(folder.glob("*/*")) if folder.exists() else []:
            want = blob.parent.name + blob.name
            got = __import__("base64").b64decode(hash_file(blob, algorithm)).hex()
            if got != want:
                problems.append(f"{blob}: holds bytes with {algorithm} {got}")
    tmp = root / "tmp"
    problems += [f"{p}: temp file left in the store" for p in (tmp.iterdir() if tmp.exists() else [])]
    return problems


def with_entry(tree: dict[str, bytes], files: dict[str, bytes]) -> dict[str, bytes]:
    """``tree`` with the entry's folder replaced by ``files``."""
    kept = {k: v for k, v in tree.items() if not k.startswith(DEST + "/")}
    return {**kept, **{f"{DEST}/{k}": v for k, v in files.items()}}


# -- the matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    id: str
    faults: tuple[Fault, ...]
    expect: int  # 0: recovered (the tree is v1); else the exit code (the tree is as before)
    says: tuple[str, ...] = ()  # what stderr must mention
    stale_lock: bool = False  # the manifest column: `sync` re-resolves (manifest GET) first
    min_seconds: float = 0.0  # e.g. a Retry-After that must have been honoured
    # Run `wbsync sync` in its own process: for faults that leave an SDK call running after
    # wbsync gave up on it (a hung GraphQL call inside wandb-core, the manifest GET's thread),
    # whose late requests must not land in another test's request log.
    process: bool = False
    max_seconds: float = 60.0
    resumes: bool = False  # the fetcher must have asked for the rest with a Range request


def g(kind: str, times: int | None, match: str = FILE_OPS, **kw: object) -> tuple[Fault, ...]:
    return (Fault("graphql", kind, times=times, match=match, **kw),)  # type: ignore[arg-type]


def f(kind: str, times: int | None, match: str = SHARD, **kw: object) -> tuple[Fault, ...]:
    return (Fault("file", kind, times=times, match=match, **kw),)  # type: ignore[arg-type]


GRAPHQL = [
    *[Cell(f"graphql-{s}-burst", g("status", 1, status=s), 0) for s in (500, 502, 503)],
    *[Cell(f"graphql-{s}-persistent", g("status", None, status=s), 3, ("giving up",)) for s in (500, 502, 503)],
    Cell("graphql-429-retry-after-burst", g("status", 1, status=429, retry_after=1), 0, min_seconds=1.0),
    Cell("graphql-429-burst", g("status", 1, status=429), 0),
    Cell("graphql-429-retry-after-persistent", g("status", None, status=429, retry_after=1), 3, ("429",)),
    Cell("graphql-429-persistent", g("status", None, status=429), 3, ("429",)),
    Cell("graphql-reset-burst", g("reset", 1), 0),
    Cell("graphql-reset-persistent", g("reset", None), 3, ("connection reset",)),
    # wandb-core retries statuses and connection errors, not a response whose body breaks:
    # a single one of these ends the call (documented in docs/reliability.md).
    Cell("graphql-reset-mid-body-once", g("reset_mid_body", 1), 3, ("connection reset",)),
    Cell("graphql-truncate-once", g("truncate", 1), 3, ("EOF",)),
    Cell("graphql-wrong-bytes-once", g("wrong_bytes", 1), 3, ("invalid character",)),
    # A hung GraphQL call: the SDK's per-call cap (WANDB_HTTP_TIMEOUT, 10 s here) ends it. Its
    # per-attempt timeout is the same knob, so even one hung attempt is never retried in time.
    Cell("graphql-hang-once", g("hang", 1), 3, ("did not respond in time",), process=True,
         min_seconds=10.0, max_seconds=25.0),
    # Other SDK paths: the credentials check, and the version lookup.
    Cell("graphql-viewer-503-persistent", g("status", None, match="Viewer", status=503), 3,
         ("credentials check", "giving up")),
    Cell("graphql-membership-503-persistent", g("status", None, match="ArtifactMembershipByName", status=503), 3,
         ("giving up",)),
]

FILE = [
    *[Cell(f"file-{s}-burst", f("status", 2, status=s), 0) for s in (500, 502, 503)],
    *[Cell(f"file-{s}-persistent", f("status", None, status=s), 3, ("shard-0.bin", "3 attempt")) for s in (500, 502, 503)],
    Cell("file-429-retry-after-burst", f("status", 1, status=429, retry_after=1), 0, min_seconds=1.0),
    Cell("file-429-burst", f("status", 2, status=429), 0),
    Cell("file-429-retry-after-persistent", f("status", None, status=429, retry_after=0.2), 3, ("HTTP 429",)),
    Cell("file-429-persistent", f("status", None, status=429), 3, ("HTTP 429",)),
    Cell("file-reset-burst", f("reset", 2), 0),
    Cell("file-reset-persistent", f("reset", None), 3, ("3 attempt",)),
    # An RST discards what the kernel still held (here: everything), so this one starts over;
    # a body that ends early with a FIN keeps what arrived and resumes with a Range request.
    Cell("file-reset-mid-body-burst", f("reset_mid_body", 2), 0),
    Cell("file-reset-mid-body-persistent", f("reset_mid_body", None), 3, ("3 attempt",)),
    Cell("file-truncate-burst", f("truncate", 2), 0, resumes=True),
    Cell("file-truncate-persistent", f("truncate", None), 3, ("3 attempt",)),
    # A body of the right length with the wrong bytes is not a network accident: refused at once.
    Cell("file-wrong-bytes-once", f("wrong_bytes", 1), 4, ("digest", "discarded")),
    Cell("file-wrong-bytes-persistent", f("wrong_bytes", None), 4, ("digest", "discarded")),
    Cell("file-hang-burst", f("hang", 1), 0),  # read timeout (1 s), then a retry
    Cell("file-hang-persistent", f("hang", None), 3, ("3 attempt",)),
    Cell("file-slow-within-timeout", f("slow", None, delay=0.3), 0),
    Cell("file-404-gone", f("status", None, status=404), 3, ("HTTP 404",)),
    Cell("file-403-refused-link", f("status", None, status=403), 3, ("HTTP 403", "fresh links")),
]

MANIFEST = [
    Cell("manifest-500-burst", f("status", 1, match=MANIFEST_GET, status=500), 0, stale_lock=True),
    Cell("manifest-503-persistent", f("status", None, match=MANIFEST_GET, status=503), 3,
         ("manifest within 3 s",), stale_lock=True, process=True),
    Cell("manifest-429-retry-after-burst", f("status", 1, match=MANIFEST_GET, status=429, retry_after=1), 0,
         stale_lock=True, min_seconds=1.0),
    Cell("manifest-reset-burst", f("reset", 1, match=MANIFEST_GET), 0, stale_lock=True),
    Cell("manifest-reset-mid-body-once", f("reset_mid_body", 1, match=MANIFEST_GET), 3, stale_lock=True),
    Cell("manifest-truncate-once", f("truncate", 1, match=MANIFEST_GET), 3, stale_lock=True),
    Cell("manifest-wrong-bytes-once", f("wrong_bytes", 1, match=MANIFEST_GET), 3, stale_lock=True),
    Cell("manifest-hang", f("hang", None, match=MANIFEST_GET), 3, ("manifest within 3 s",), stale_lock=True,
         process=True),
    Cell("graphql-manifest-url-503-persistent", g("status", None, match="FetchArtifactManifest", status=503), 3,
         ("giving up",), stale_lock=True),
]

CELLS = GRAPHQL + FILE + MANIFEST


def upgraded(srv: FakeWandb, project: Path, stale_lock: bool) -> None:
    """v0 synced; v1 published as `production`; the lock upgraded to v1 (or, for the manifest
    column, the manifest re-pinned to `:v1` so that the next sync re-resolves)."""
    publish(srv, V0)
    write_manifest(project, PHI3)
    run("sync")
    publish(srv, V1)
    if stale_lock:
        write_manifest(project, PHI3.replace(":production", ":v1"))
    else:
        run("lock", "--upgrade")


def without_lock(tree: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in tree.items() if k != "artifacts.lock"}


def assert_recovers(srv: FakeWandb, project: Path, expected: dict[str, bytes]) -> None:
    """With the faults gone, the next sync completes: the tree is ``expected`` (lock aside)."""
    srv.clear_faults()
    run("sync")
    assert without_lock(project_tree(project)) == without_lock(expected)
    assert '"v1"' in (project / "artifacts.lock").read_text()
    run("verify")
    assert store_problems() == []


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_fault_cell(fake_wandb: FakeWandb, project: Path, cell: Cell) -> None:
    upgraded(fake_wandb, project, cell.stale_lock)
    before = project_tree(project)
    for fault in cell.faults:
        fake_wandb.inject(fault)
    started = time.monotonic()
    if cell.process:
        proc = run_process(project, "sync")
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        result = run("sync", check=None)
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    elapsed = time.monotonic() - started
    assert code == cell.expect, f"exit {code}, expected {cell.expect}\n{stdout}\n{stderr}"
    after = project_tree(project)
    assert "Traceback" not in stdout + stderr
    assert elapsed <= cell.max_seconds
    if SHOW_TIMES:
        print(f"\nCELL {cell.id}: exit {code} in {elapsed:.2f} s: {stderr.strip()[:160]}")
    if cell.expect == 0:
        assert without_lock(after) == without_lock(with_entry(before, V1)), "recovered, but not exactly v1"
        assert elapsed >= cell.min_seconds
    else:
        assert after == before, "a failed sync changed the tree or the lock"
        for words in cell.says:
            assert words in stderr, stderr
    if cell.resumes:
        assert any(SHARD in r.path and r.headers.get("range", "").startswith("bytes=") for r in fake_wandb.requests)
    if all(fault.times is not None for fault in cell.faults):
        assert fake_wandb.pending_faults() == [], "the burst did not fire in full"
    assert store_problems() == []
    assert_recovers(fake_wandb, project, with_entry(before, V1))


def test_a_version_deleted_between_lock_and_sync_exits_3_and_changes_nothing(
        fake_wandb: FakeWandb, project: Path) -> None:
    upgraded(fake_wandb, project, stale_lock=False)
    before = project_tree(project)
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 1)
    result = run("sync", check=3)
    assert "`production` no longer resolves either" in result.stderr and "Traceback" not in result.stderr
    assert project_tree(project) == before
    assert store_problems() == []
    # What the message says to do: the alias went with the version, so point it back, re-lock, sync.
    fake_wandb.set_alias("acme", "model", "phi3-finetuned", "production", 0)
    run("lock", "--upgrade")
    run("sync")
    assert without_lock(project_tree(project)) == without_lock(before)
    run("verify")


DATA = """
      eval:
        artifact: wandb-registry-dataset/eval-set:production
        path: data/eval
"""


def test_one_failing_entry_leaves_every_entry_as_it_was(fake_wandb: FakeWandb, project: Path) -> None:
    """All or nothing holds for the whole sync: one entry's bytes did not all arrive, so no
    entry is touched (the other's blobs stay in the store), and the next sync completes both."""
    fake_wandb.log_artifact("acme", "dataset", "eval-set", {"e.txt": b"e0"}, type="dataset", aliases=["production"])
    publish(fake_wandb, V0)
    write_manifest(project, PHI3 + DATA)
    run("sync")
    fake_wandb.log_artifact("acme", "dataset", "eval-set", {"e.txt": b"e1", "f.txt": b"f1"}, type="dataset",
                            aliases=["production"])
    publish(fake_wandb, V1)
    run("lock", "--upgrade")
    before = project_tree(project)
    fake_wandb.inject(Fault("file", "status", times=None, status=503, match=SHARD))
    run("sync", check=3)
    assert project_tree(project) == before
    assert store_problems() == []
    fake_wandb.clear_faults()
    run("sync")
    after = project_tree(project)
    assert {k: v for k, v in after.items() if k.startswith("data/eval")} == {
        "data/eval/e.txt": b"e1", "data/eval/f.txt": b"f1"}
    assert without_lock(after) == without_lock(with_entry(after, V1))
    run("verify")


def test_a_copied_project_keeps_the_files_an_upgrade_dropped_and_names_them(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every copied file has a new inode: the state's record no longer proves wbsync placed it,
    and a state file alone never makes wbsync delete anything. A file the next version drops is
    kept and named on every sync (verify lists it as extra); the files both versions share are
    adopted by their bytes."""
    publish(fake_wandb, V0)
    write_manifest(project, PHI3)
    run("sync")
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)  # CI cache restore, cp -r, a new worktree
    monkeypatch.chdir(copy)
    publish(fake_wandb, {k: v for k, v in V0.items() if k != "README.md"})
    run("lock", "--upgrade")
    result = run("sync")
    assert f"{DEST}/README.md" in result.stderr and "verify" in result.stderr
    assert (copy / DEST / "README.md").read_bytes() == V0["README.md"]
    assert f"{DEST}/README.md" in run("sync").stderr  # a no-op names it too


# -- crash trials (bench/crash_trials.py; `python -m bench.crash_trials` runs 50) ---------------


def _crash_trials_module() -> Any:
    path = Path(__file__).resolve().parents[1] / "bench" / "crash_trials.py"
    spec = importlib.util.spec_from_file_location("wbsync_bench_crash_trials", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _in_process(project: Path, store: Path, args: tuple[str, ...]) -> tuple[int, str, str]:
    """The bench's setup and checking commands, through the CLI in this process (the wandb SDK
    is warm here: a second a command less than a fresh process)."""
    saved_dir, saved_store = os.getcwd(), os.environ["WBSYNC_CACHE_DIR"]
    os.chdir(project)
    os.environ["WBSYNC_CACHE_DIR"] = str(store)
    try:
        result = run(*args, check=None)
        return result.exit_code, result.stdout, result.stderr
    finally:
        os.chdir(saved_dir)
        os.environ["WBSYNC_CACHE_DIR"] = saved_store


def test_crash_trials_reduced(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    """SIGKILL at random moments (WBSYNC_CRASH_TRIALS trials, default 5; seed WBSYNC_CRASH_SEED):
    no final file ever holds bytes of no version, the next sync and verify succeed."""
    bench = _crash_trials_module()
    trials = int(os.environ.get("WBSYNC_CRASH_TRIALS", "5"))
    seed = int(os.environ.get("WBSYNC_CRASH_SEED", "11"))
    lines: list[str] = []
    report = bench.run_trials(fake_wandb, tmp_path / "crash", dict(os.environ), trials, seed,
                              log=lines.append, runner=_in_process, kinds=("upgrade", "place"))
    print("\n".join(lines + [report.summary()]))
    assert len(report.trials) == trials
    assert not report.failed, report.summary() + "\n" + "\n".join(lines)
