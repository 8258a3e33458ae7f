"""The promises an audit found half-asserted or reached by no test: a size on each side of
each threshold, two-digit versions, the status codes a download branches on, and each
documented promise whole (the lock, the tree and the exit code together). Each test is a
promise of README.md; each failed with its bug planted (docs/mutation.md lists them)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import Fault, FakeWandb

DEST = "models/phi3"
SMALL_FILE = 1 << 16  # wbsync.store.rehash reads files up to this size in one read, hashes others in chunks


def same_size_change(path: Path) -> None:
    """The last byte flipped: the size, and so any check that trusts it, unchanged."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def test_verify_finds_a_changed_file_of_the_same_size_on_each_side_of_the_one_read_threshold(
        fake_wandb: FakeWandb, project: Path) -> None:
    """Real weights are far above the size below which verify reads a file in one go; a file
    above it that changed without changing size must be found as surely as a small one."""
    sizes = {"at.bin": SMALL_FILE, "above.bin": SMALL_FILE + 1, "large.bin": 3 * (1 << 20) + 5}
    files = {name: bytes(range(256)) * (size // 256) + b"x" * (size % 256) for name, size in sizes.items()}
    publish(fake_wandb, {**files, "kept.bin": files["large.bin"][::-1]})
    write_manifest(project, PHI3)
    run("sync")
    for name in sizes:
        same_size_change(project / DEST / name)
    doc = run_json("verify", check=1)
    (entry,) = doc["entries"]
    assert sorted(entry["modified"]) == sorted(sizes), entry
    assert entry["missing"] == [] and entry["extra"] == []


def test_a_lock_that_disagrees_with_the_manifest_makes_verify_exit_1_with_every_file_intact(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    run("verify")
    write_manifest(project, PHI3.replace(":production", ":v0"))  # the same bytes, asked for otherwise
    assert tree(project / DEST) == MODEL
    doc = run_json("verify", check=1)
    (entry,) = doc["entries"]
    assert entry["stale"] and not (entry["missing"] or entry["modified"] or entry["extra"]), entry
    assert "stale" in run("verify", check=1).stdout


def test_a_conflict_leaves_the_lock_unwritten_the_tree_and_the_state_unchanged_and_exits_2(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    publish(fake_wandb, {**MODEL, "tokenizer.json": b"{}", "vocab.txt": b"a\n"})  # v1 adds what the user has
    (project / DEST / "tokenizer.json").write_text("my tokenizer")
    (project / DEST / "vocab.txt").write_text("my vocabulary")
    write_manifest(project, PHI3.replace(":production", ":v1"))
    lock, state = (project / "artifacts.lock").read_bytes(), (project / ".wbsync/state.json").read_bytes()
    before = tree(project / DEST)
    result = run("sync", check=2)
    assert "Traceback" not in result.stderr
    named = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith(f"  {DEST}/")]
    assert named == [f"  {DEST}/tokenizer.json", f"  {DEST}/vocab.txt"], result.stderr  # a line each
    assert (project / "artifacts.lock").read_bytes() == lock
    assert tree(project / DEST) == before
    assert (project / ".wbsync/state.json").read_bytes() == state


def test_a_legacy_state_cannot_remove_a_file_in_a_folder_that_only_shares_a_prefix_with_a_locked_one(
        fake_wandb: FakeWandb, project: Path) -> None:
    """A record without a device proves ownership only inside today's locked folders; ``models/phi3b``
    is not inside ``models/phi3``, though its name starts with it."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    mine = project / f"{DEST}b" / "train.py"
    mine.parent.mkdir()
    mine.write_text("print('train')\n")
    st = os.stat(mine)
    digest = base64.b64encode(hashlib.md5(mine.read_bytes()).digest()).decode()
    doc = json.loads((project / ".wbsync/state.json").read_text())
    doc["entries"]["gone"] = {"path": f"{DEST}b",
                              "files": {"train.py": [st.st_size, st.st_mtime_ns, st.st_ino, f"md5:{digest}"]}}
    (project / ".wbsync/state.json").write_text(json.dumps(doc))
    run("sync")
    assert mine.read_text() == "print('train')\n"


def test_a_collections_versions_are_listed_in_number_order_past_v9(fake_wandb: FakeWandb, project: Path) -> None:
    """v10 comes after v9, not after v1: an unknown version's message names the range v0 to v10."""
    for n in range(11):
        publish(fake_wandb, {"n.txt": str(n).encode()})
    write_manifest(project, PHI3.replace(":production", ":v11"))
    err = run("lock", check=None).stderr
    assert "v0 to v10 (11 versions)" in err, err


def test_escaping_keeps_wbsyncs_own_colours_and_escapes_any_other_sgr_sequence(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An extra file named with "conceal" (ESC[8m) and "blink" (ESC[5m) codes: its name is shown
    with the codes escaped, next to wbsync's own colour codes, kept."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / DEST / "a\x1b[8mhidden\x1b[5m\n\u202e.txt").write_text("x")
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = run("verify", check=1).stdout
    assert "a\\x1b[8mhidden\\x1b[5m\\x0a\\u202e.txt" in out, out  # a newline and a bidi override too
    assert "\x1b[8m" not in out and "\x1b[5m" not in out
    assert "\x1b[33m" in out or "\x1b[31m" in out, out  # wbsync's own label colours stay


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_file_link_is_renewed_and_the_sync_completes(fake_wandb: FakeWandb, project: Path,
                                                               status: int) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=status, times=1, match="shard-0"))
    run("sync")
    assert tree(project / DEST) == MODEL
    refused = [r for r in fake_wandb.requests if r.status == status]
    assert len(refused) == 1, [(r.path, r.status) for r in fake_wandb.requests]


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_file_link_answered_with_another_error_fails_the_sync_with_exit_3_and_no_tree(
        fake_wandb: FakeWandb, project: Path, status: int) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=status, times=None, match="shard-0"))
    result = run("sync", check=3)
    assert f"HTTP {status}" in result.stderr and "Traceback" not in result.stderr
    assert not (project / DEST).exists()
    answered = [r for r in fake_wandb.requests if r.status == status]
    assert len(answered) == 1, "a final answer is neither retried nor renewed"


def store_tmp() -> Path:
    from wbsync.store.blobs import Store, default_store_dir

    tmp = Store(default_store_dir()).tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"x" * 100)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_an_explicit_prune_removes_part_done_files_young_and_old_that_no_sync_holds(project: Path) -> None:
    """The week a large download may resume is the automatic prune's rule (tests/test_cache.py
    tests both sides of it); `wbsync cache prune`, the advice of a full disk, removes every
    part-done file no running sync holds, six days idle or eight."""
    tmp = store_tmp()
    young = [aged(tmp / name, 6 * 24 * 3600) for name in ("md5-aa.ranged", "md5-aa.ranged.json")]
    old = [aged(tmp / name, 8 * 24 * 3600) for name in ("md5-bb.ranged", "md5-bb.ranged.json")]
    assert run_json("cache", "prune")["tmp_files"] == 4
    assert not any(p.exists() for p in young + old)


def test_a_prune_keeps_a_temp_file_written_in_the_last_minute_and_drops_an_older_one(project: Path) -> None:
    """A temp file a running sync is writing this instant is never swept; one of a killed sync is."""
    tmp = store_tmp()
    fresh = aged(tmp / "0123456789abcdef.1.token.part", 5)
    killed = aged(tmp / "fedcba9876543210.1.token.part", 10 * 60)
    assert run_json("cache", "prune")["tmp_files"] == 1
    assert fresh.exists() and not killed.exists()


def test_a_prune_keeps_every_blob_and_listing_of_a_large_entry_locked(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry above the inline limit keeps its file list in the store (a stored listing): the
    lock names the listing, and the listing the blobs. A prune keeps both; a sync from the
    store alone then needs no file request."""
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "2")  # MODEL's 3 files: above it
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    assert "files" not in yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]["phi3"]
    listings = [p for p in (store_tmp().parent / "listings").iterdir()]
    assert listings
    for listing in listings:  # past the grace a listing gets while its sync registers its lock
        os.utime(listing, (time.time() - 2 * 3600,) * 2)
    doc = run_json("cache", "prune")
    assert doc["removed"]["blobs"] == 0 and all(p.exists() for p in listings), doc
    shutil.rmtree(project / DEST)
    (project / ".wbsync" / "state.json").unlink()
    fake_wandb.inject(Fault("file", "status", status=500, times=None))
    run("sync", "--frozen")
    assert tree(project / DEST) == MODEL


@pytest.mark.parametrize("limit, inline", [(3, True), (2, False)])
def test_an_entry_at_the_inline_limit_keeps_its_files_in_the_lock_and_one_above_it_does_not(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch, limit: int, inline: bool) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", str(limit))  # MODEL has 3 files
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    entry = yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]["phi3"]
    assert ("files" in entry) is inline, entry
    assert tree(project / DEST) == MODEL
    run("verify")


def shard_ranges(srv: FakeWandb) -> list[str | None]:
    """The Range header of each GET of shard-0.bin (its link names the file's path)."""
    return sorted((r.headers.get("range") for r in srv.requests if r.method == "GET" and "shard-0" in r.path),
                  key=str)


@pytest.mark.parametrize("threshold, ranges", [
    (6000, ["bytes=0-2047", "bytes=2048-4095", "bytes=4096-5999"]),  # at the threshold: parts of 2048
    (6001, [None]),  # below it: one plain GET
])
def test_a_file_at_the_ranged_download_threshold_is_fetched_in_parts_of_the_part_size_and_one_below_in_one_get(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch, threshold: int,
        ranges: list[str | None]) -> None:
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", str(threshold))  # MODEL's shard-0.bin: 6000 bytes
    monkeypatch.setenv("WBSYNC_PART_SIZE", "2048")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    run("sync")
    assert tree(project / DEST) == MODEL
    assert shard_ranges(fake_wandb) == ranges, [(r.path, r.headers.get("range")) for r in fake_wandb.requests]


def test_sync_with_link_reflink_where_the_filesystem_cannot_clone_exits_2_and_places_nothing(
        fake_wandb: FakeWandb, project: Path) -> None:
    """The reflink path's decision through the CLI, on the test's own filesystem (ext4 or tmpfs
    in CI: no clone): `--link reflink` refuses with exit 2, naming the folder and `auto`, with
    no tree and no state; `--link auto` then copies."""
    from test_place import can_reflink

    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    if can_reflink(project):
        pytest.skip("this filesystem can clone files: tests/test_place.py's cow_fs test covers it")
    err = run("sync", "--link", "reflink", check=2).stderr
    assert "cannot reflink" in err and "'auto'" in err and "models/phi3" in err and "Traceback" not in err
    assert not (project / "models").exists() and not (project / ".wbsync/state.json").exists()
    run("sync", "--link", "auto")
    assert tree(project / "models/phi3") == MODEL
