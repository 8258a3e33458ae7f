"""Attacks from the remote side (issue 26, round three): a server, a mirror, a fork's pull request,
a co-tenant on the same machine. Each test plays the attacker against the real CLI (the fake W&B
server, a folder mirror, the bump workflow's own script) and checks the promise that holds now:
the exit code, the bytes placed, what reaches the terminal. docs/reliability.md lists the verdicts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_bump_workflow import NEWER, Runner, runner  # noqa: F401 (runner is a fixture)
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.core.settings import SETTINGS
from wbsync.repo.lockfile import dumps, loads
from wbsync.store.blobs import Store, blob_hex, default_store_dir
from wbsync.store.claims import _offset_hex
from wbsync.store.partial import PartialBlob
from wbsync.testing import FakeWandb


# -- item 9: a fork's pull request with the bump branch's name ----------------------------------


@pytest.mark.skipif(shutil.which("jq") is None, reason="the gh stand-in evaluates the workflow's --jq with jq")
def test_the_bump_workflow_never_edits_a_forks_pull_request_of_the_same_branch_name(
        fake_wandb: FakeWandb, runner: Runner) -> None:  # noqa: F811
    fork = {"number": 1, "head": "wbsync/bump-phi3", "base": "main", "title": "fork", "body": "the fork's own",
            "cross": True}
    runner.state.write_text(json.dumps({"prs": [fork]}))
    publish(fake_wandb, NEWER)
    done = runner.run_bump()
    assert done.returncode == 0, done.stderr
    theirs, ours = runner.prs()
    assert theirs == fork
    assert ours["head"] == "wbsync/bump-phi3" and "phi3" in ours["body"]
    assert [c[:2] for c in runner.gh_calls()][-2:] == [["pr", "list"], ["pr", "create"]]


# -- item 13: absurd sizes from the server -------------------------------------------------------


def store_tmp() -> Path:
    return Path(os.environ["WBSYNC_CACHE_DIR"])


def leftovers() -> list[str]:
    """Files in the store's tmp/ (part-done files, journals) after a run."""
    return sorted(p.name for p in store_tmp().rglob("tmp/*"))


@pytest.mark.parametrize("size", [2**63, 2**53])
def test_a_server_declaring_an_impossible_size_is_refused_at_lock_time(
        fake_wandb: FakeWandb, project: Path, size: object) -> None:
    publish(fake_wandb)
    fake_wandb.declare_size("acme", "model", "phi3-finetuned", 0, "weights/shard-0.bin", size)
    write_manifest(project, PHI3)
    result = run("lock", check=4)
    assert "weights/shard-0.bin" in result.stderr and "2^53" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (project / "artifacts.lock").exists()


def test_a_file_larger_than_the_stores_filesystem_is_refused_before_its_first_byte(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    fake_wandb.declare_size("acme", "model", "phi3-finetuned", 0, "weights/shard-0.bin", 2**52)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.clear_requests()
    result = run("sync", "--locked", check=2)
    assert "disk is full" in result.stderr and "4,503,599,627,370,496 bytes" in result.stderr, result.stderr
    assert not any("shard-0" in r.path for r in fake_wandb.requests if "/blobs/" in r.path or "artifactsV2" in r.path)
    assert leftovers() == []


@pytest.mark.parametrize("ranged", [True, False], ids=["ranged", "one-stream"])
def test_an_answer_whose_total_size_disagrees_with_the_listing_is_exit_4_on_the_first_answer(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch, ranged: bool) -> None:
    publish(fake_wandb)  # the shard is 6,000 bytes; the listing says 3 MiB
    fake_wandb.declare_size("acme", "model", "phi3-finetuned", 0, "weights/shard-0.bin", 3 << 20)
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", "1MiB" if ranged else "1GiB")
    monkeypatch.setenv("WBSYNC_PART_SIZE", "2MiB")
    monkeypatch.setenv("WBSYNC_RETRIES", "6")
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.clear_requests()
    started = time.monotonic()
    result = run("sync", "--locked", check=4)
    assert time.monotonic() - started < 10
    assert "3,145,728" in result.stderr and "6,000 bytes" in result.stderr, result.stderr
    assert len([r for r in fake_wandb.requests if "shard-0" in r.path]) <= 2  # one per part, no retries
    assert leftovers() == [] and not (project / "models/phi3/weights").exists()


# -- item 11: a claim held by a stopped process or another user's lock ---------------------------

HOLDER = """
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2]))
print("held", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)  # a sync paused with Ctrl-Z, holding the blob's claim
"""


def test_a_claim_held_by_a_stopped_process_is_waited_for_boundedly_then_fetched_anyway(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    lock = yaml.safe_load((project / "artifacts.lock").read_text())
    shard = next(f for f in lock["artifacts"]["phi3"]["files"] if f["path"] == "weights/shard-0.bin")
    record = FileRecord(shard["path"], shard["size"], shard["md5"], "md5")
    store = Store(default_store_dir())
    store.locks_dir.mkdir(parents=True, exist_ok=True)
    offset = str(_offset_hex(blob_hex(record)))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.locks_dir / "claims"), offset],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setenv("WBSYNC_STALL_SECONDS", "3")
        started = time.monotonic()
        result = run("sync", "--locked")
        assert time.monotonic() - started < 20
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
    assert f"waiting for process {holder.pid}" in result.stderr, result.stderr
    assert f"process {holder.pid} landed no byte of 'weights/shard-0.bin' in 3 s" in result.stderr
    assert tree(project / "models/phi3") == MODEL
    run("verify")


def test_the_stores_lock_files_are_not_open_to_other_users(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    locks = Store(default_store_dir()).locks_dir
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in locks.iterdir() if p.is_file()}
    assert "claims" in modes and "store" in modes, modes
    assert all(mode == 0o600 for mode in modes.values()), modes


# -- item 12: a damaged part-done file on our own disk ------------------------------------------


def test_a_damaged_part_done_file_is_discarded_and_fetched_again_in_the_same_run(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)  # the shard: 6,000 bytes, three parts of 2 KiB
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", "1KiB")
    monkeypatch.setenv("WBSYNC_PART_SIZE", "2KiB")
    write_manifest(project, PHI3)
    run("lock")
    lock = yaml.safe_load((project / "artifacts.lock").read_text())
    shard = next(f for f in lock["artifacts"]["phi3"]["files"] if f["path"] == "weights/shard-0.bin")
    record = FileRecord(shard["path"], shard["size"], shard["md5"], "md5")
    part = PartialBlob.open(Store(default_store_dir()), record, 2048)  # an earlier run's, then damaged
    part.write_at(0, b"\xff" * 2048)
    part.part_done(0)
    part.close()
    result = run("sync", "--locked")
    assert "corrupt" not in result.stderr and "report it" not in result.stderr, result.stderr
    assert tree(project / "models/phi3") == MODEL
    assert leftovers() == []


# -- item 15: the standalone fake server's registry file -----------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(20))
DEEP = "version: 1\nregistries: " + "[" * 20000 + "]" * 20000 + "\n"
HUGE = "version: 1\nregistries:\n  model:\n    x:\n      versions:\n        - files:\n" + "".join(
    f"            f{i}: {{size: 1073741824}}\n" for i in range(4))


@pytest.mark.parametrize(("text", "words"), [
    (BOMB, ("line 1", "aliases")),
    (DEEP, ("nested deeper than 32",)),
    (HUGE, ("4,294,967,296 bytes",)),
    ("version: 1\nregistries: {}\n" + "# padding\n" * 500000, ("larger than",)),
], ids=["alias-bomb", "deep", "huge-content", "huge-text"])
def test_a_hostile_registry_file_is_refused_naming_the_file(tmp_path: Path, text: str,
                                                          words: tuple[str, ...]) -> None:
    spec = tmp_path / "registry.yaml"
    spec.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "wbsync.testing.server", "--registry", str(spec)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(spec) in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert "Traceback" not in proc.stderr


# -- items 7 and 8: one hostile value through every output channel -------------------------------

EVIL = "x\n::error::pwned\x1b[2J\u202e@octocat #1"


def assert_inert(text: str, where: str) -> None:
    """No line of ``text`` is a GitHub Actions workflow command, and no terminal control or bidi
    override passes raw (splitlines: every line break a reader may honour, not only "\\n")."""
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), (where, line)
    assert "\x1b[2J" not in text and "\u202e" not in text, (where, text)


def outputs(where: str, *args: str, check: int | None = None) -> str:
    result = run(*args, check=check)
    assert "Traceback" not in result.stderr, result.stderr
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert_inert(text, f"{where} {' '.join(args)} {stream}")
    return result.stdout + result.stderr


def test_a_hostile_file_name_is_escaped_in_every_channel(fake_wandb: FakeWandb, project: Path) -> None:
    evil = f"w/{EVIL}.bin"
    publish(fake_wandb, {**MODEL, evil: b"abc"})
    write_manifest(project, PHI3)
    outputs("lock", "lock", check=0)
    placed = project / "models/phi3" / evil
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"not the locked bytes")
    assert "pwned" in outputs("error", "sync", check=2)  # the conflict list names the path, escaped
    outputs("error json", "sync", "--json", check=2)
    placed.unlink()
    outputs("progress", "sync", "-v", check=0)  # LogProgress lines and the summary
    placed.write_bytes(b"edited")
    assert "pwned" in outputs("text", "verify", check=1)
    outputs("json", "verify", "--json", check=1)
    (project / "models/phi3" / f"{EVIL}.extra").write_bytes(b"mine")
    assert "pwned" in outputs("warning", "sync", "--force", check=0)  # "kept ... (not locked)"
    shutil.copy(project / "artifacts.lock", project / "old.lock")
    publish(fake_wandb, {**MODEL, "weights/shard-1.bin": b"more"})
    outputs("porcelain", "outdated", "--porcelain", check=1)
    outputs("upgrade", "lock", "--upgrade", check=0)
    for fmt in ((), ("--json",), ("--markdown",)):
        body = outputs("diff", "diff", "--lockfile", "artifacts.lock", "old.lock", *fmt, check=None)
        assert "pwned" in body
    markdown = run("diff", "--lockfile", "artifacts.lock", "old.lock", "--markdown", check=None).stdout
    assert "`w/x\\x0a::error::pwned\\x1b[2J\\u202e@octocat #1.bin`" in markdown  # a code span: no mention, no link


# -- item 16: settings from the environment -------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def documented_variables() -> set[str]:
    """The WBSYNC_* names in the first column of the documented environment table."""
    page = ROOT / "docs/configuration.md"
    text = (page if page.exists() else ROOT / "README.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`(WBSYNC_[A-Z0-9_]+)`", row)}


def test_the_documented_table_and_the_settings_module_list_the_same_variables() -> None:
    assert documented_variables() == set(SETTINGS)


@pytest.mark.parametrize(("name", "value"), [
    ("WBSYNC_STALL_SECONDS", "0"), ("WBSYNC_PART_SIZE", "0"), ("WBSYNC_PART_SIZE", "1"), ("WBSYNC_RETRIES", "many"),
    ("WBSYNC_TIMEOUT", "-1"), ("WBSYNC_CONNECTIONS", "0"), ("WBSYNC_PROGRESS_INTERVAL", "nan"),
    ("WBSYNC_LOCK_INLINE_MAX", "-5"), ("WBSYNC_FSYNC", "yes"), ("WBSYNC_RANGE_THRESHOLD", "lots"),
    ("WBSYNC_MANIFEST_TIMEOUT", "0"), ("WBSYNC_STATE_DELTA_MAX", "x"), ("WBSYNC_WAIT_NOTICE", "-1"),
    ("WBSYNC_SHARED_STORE", "yes"),
])
def test_a_setting_out_of_its_range_is_exit_2_naming_the_variable(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    monkeypatch.setenv(name, value)
    result = run("sync", check=2)
    assert name in result.stderr and "Traceback" not in result.stderr, result.stderr
    if SETTINGS[name].low is not None:
        assert f"it takes {SETTINGS[name].allowed()}" in result.stderr, result.stderr


@pytest.mark.parametrize("testing", ["", "1"])
def test_fault_injection_takes_effect_only_with_the_testing_switch_and_says_so(
        fake_wandb: FakeWandb, project: Path, testing: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    env = {**os.environ, "WBSYNC_KILL_AFTER_RENAMES": "1", "WBSYNC_TESTING": testing}
    done = subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)
    if testing:
        assert done.returncode == -signal.SIGKILL
        assert "WBSYNC_KILL_AFTER_RENAMES='1' is in effect" in done.stderr
    else:
        assert done.returncode == 0 and "KILL_AFTER" not in done.stderr, done.stderr


# -- item 17: a hand-formatted lock costs what the canonical one costs -----------------------------


def block_style(canonical: str, sort_keys: bool) -> str:
    """The lock as a YAML formatter lays it out: each file item over three lines (keys sorted,
    as yaml.safe_dump writes them, or in wbsync's order)."""
    out = []
    for line in canonical.splitlines():
        if line.startswith("      - {path: "):
            keys = line[len("      - {"):-1].split(", ")
            keys = sorted(keys) if sort_keys else keys
            out += ["      - " + keys[0], *("        " + k for k in keys[1:])]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("sort_keys", [False, True], ids=["wbsync-order", "sorted-keys"])
def test_a_block_style_lock_reads_as_the_canonical_one_in_bounded_memory(sort_keys: bool) -> None:
    files = tuple(FileRecord(f"train/{i:05d}.jpg", 1000 + i, "1B2M2Y8AsgTpgAmY7PhCfg==") for i in range(3_000))
    art = LockedArtifact(name="data", entry_digest="sha256:" + "0" * 64, requested="wandb-registry-dataset/images:v0",
                         resolved="acme-org/wandb-registry-dataset/images:v0", version="v0", type="dataset",
                         digest="0" * 32, path="data/images", files=files)
    canonical = dumps(Lock({"data": art}))
    hand = block_style(canonical, sort_keys)

    def peak(text: str) -> tuple[Lock, int]:
        tracemalloc.start()
        try:
            return loads(text), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    (fast, fast_peak), (read, hand_peak) = peak(canonical), peak(hand)
    assert read == fast
    assert hand_peak < 2 * fast_peak, (hand_peak, fast_peak)  # the YAML tree took 6x: the same bound instead


# -- item 3: a source relabels a large entry's digest algorithm ----------------------------------

LARGE = """
    version: 1
    artifacts:
      images:
        artifact: wandb-registry-dataset/images:production
        path: data/images
"""


def test_a_listing_that_relabels_an_md5_digest_as_xxh128_is_refused_against_the_lock(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "2")
    files = {f"train/{i}.jpg": b"image %d" % i for i in range(5)}
    v = fake_wandb.log_artifact("acme", "dataset", "images", files, type="dataset", aliases=["production"])
    write_manifest(project, LARGE)
    run("lock")
    assert '    sizes: "sha256:' in (project / "artifacts.lock").read_text()
    # What a mirror's listing would give: the same path:digest lines (W&B's artifact digest still
    # matches), one md5 digest now labelled XXH128, whose 16-byte preimage the mirror would serve.
    stored = default_store_dir() / "listings" / v.digest
    header, rest = stored.read_bytes().split(b"\n", 1)
    stored.write_bytes(header + b"\n" + rest.replace(b"7\n", b"7 x\n", 1))
    fake_wandb.clear_requests()
    result = run("sync", "--locked", check=4)
    assert "other digest algorithms or sizes than the lock binds" in result.stderr, result.stderr
    assert not (project / "data").exists()
    assert not [r for r in fake_wandb.requests if "/blobs/" in r.path]  # refused before any byte
