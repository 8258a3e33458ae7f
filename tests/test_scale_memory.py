"""What keeps a sync's memory flat in the file count (issue 17), tested by behaviour at small
sizes: links asked for and fetched a batch at a time, no SDK manifest kept after the listing is
stored, extra files found by merging two sorted streams, one hashing buffer per thread."""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import threading
from pathlib import Path

import pytest

from helpers import run, run_json, tree, write_manifest
from wbsync.testing import FakeWandb

DATA = """
    version: 1
    artifacts:
      images:
        artifact: wandb-registry-dataset/images:production
        path: data/images
"""


def dataset(n: int) -> dict[str, bytes]:
    files = {f"train/{i:04d}.jpg": b"image %d" % i for i in range(n)}
    files["train/copy.jpg"] = b"image 3"  # the same bytes as 0003.jpg: fetched once
    return files


def publish(srv: FakeWandb, files: dict[str, bytes]) -> object:
    return srv.log_artifact("acme", "dataset", "images", files, type="dataset", aliases=["production"])


def link_calls(srv: FakeWandb) -> list[list[str] | None]:
    """The file names each listing call asked links for (None: every file)."""
    return [r.variables.get("fileNames") for r in srv.requests if r.operation == "ArtifactMembershipFiles"]


def blob_gets(srv: FakeWandb) -> list[str]:
    return [r.path for r in srv.requests if r.method == "GET" and r.path.startswith("/blobs/")]


def test_a_cold_sync_asks_for_links_and_fetches_a_batch_at_a_time(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.import_module("wbsync.net.batches"), "FETCH_BATCH", 4)
    files = dataset(10)
    publish(fake_wandb, files)
    write_manifest(project, DATA)
    run("lock")
    fake_wandb.clear_requests()
    summary = run_json("sync")
    assert tree(project / "data/images") == files
    calls = link_calls(fake_wandb)
    # 10 distinct contents (copy.jpg shares 0003.jpg's bytes): batches of 4, 4 and 2, by name.
    assert [len(c or ()) for c in calls] == [4, 4, 2]
    assert sorted(p for c in calls for p in c or ()) == sorted(p for p in files if p != "train/copy.jpg")
    assert len(blob_gets(fake_wandb)) == 10 and summary["fetched_files"] == 10


def test_after_a_sync_the_sdk_keeps_no_artifact_and_so_no_manifest_in_its_caches(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK caches its last 100 Artifact objects for the life of the process, each with its
    manifest (~1.6 KB a file): kept, a million-file listing would ride along the whole download."""
    from wandb.sdk.artifacts import artifact_instance_cache as caches

    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "5")  # a stored listing: fetched, then its manifest let go
    publish(fake_wandb, dataset(10))
    write_manifest(project, DATA)
    run("lock")
    caches.artifact_instance_cache.clear()
    caches.artifact_instance_cache_by_client_id.clear()
    listings = Path(os.environ["WBSYNC_CACHE_DIR"]) / "listings"
    for listing in listings.iterdir():
        listing.unlink()  # the sync fetches it again, as a cold machine does
    run("sync")
    held = [a for cache in (caches.artifact_instance_cache, caches.artifact_instance_cache_by_client_id)
            for a in cache.values() if a._manifest is not None]
    assert held == []


# Names whose order differs between "compare whole paths" and "compare folder by folder", or
# between bytes and code points: '.' (0x2e) sorts before '/' (0x2f), '-' before both, and the
# walk must list a folder's files where its full paths sort, not where the folder name does.
ODD_LOCKED = ["a-b", "a.txt", "a/b.txt", "a/b/c.txt", "a0", "b", "é.txt", "z/ß/x", "\u00ff/y", "\uff01.txt"]
ODD_EXTRA = ["a.txt.bak", "a/b.txt~", "a/b/c.txt.orig", "a/ba", "a.b/x", "a0/inside", "c", "z/ß.txt",
             "\U0001f600.txt"]


def test_unlocked_files_are_found_whatever_the_names_and_their_sort_order(tmp_path: Path) -> None:
    from wbsync.core.models import FileRecord, LockedArtifact
    from wbsync.decide.plan import EntryPlan, Plan
    from wbsync.tree.verify import unlocked_files

    folder = tmp_path / "data"
    for name in ODD_LOCKED + ODD_EXTRA:
        if name == "a0" or name.startswith("a0/"):
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "a0").mkdir()  # a folder where the lock wants the file a0: a0 is missing, not extra
    (folder / "a0/inside").write_bytes(b"x")
    records = tuple(FileRecord(p, 1, "x") for p in sorted(ODD_LOCKED))
    art = LockedArtifact(name="d", entry_digest="e", requested="r", resolved="o/p/c:v0", version="v0",
                         type="dataset", digest="d" * 32, path="data", files=records)
    plan = Plan((EntryPlan("d", art),))
    assert unlocked_files(tmp_path, plan) == sorted(f"data/{p}" for p in ODD_EXTRA)


def test_files_hashed_on_many_threads_at_once_each_get_their_own_digest(tmp_path: Path) -> None:
    """hash_file reuses one read buffer per thread: never one buffer shared by threads."""
    from wbsync.core.digests import hash_file

    paths = []
    for i in range(8):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * (3 << 20))  # several buffer fills each
        paths.append(path)
    expected = {p: base64.b64encode(hashlib.md5(p.read_bytes()).digest()).decode() for p in paths}
    got: dict[Path, list[str]] = {p: [] for p in paths}

    def work(path: Path) -> None:
        for _ in range(4):
            got[path].append(hash_file(path, "md5"))

    threads = [threading.Thread(target=work, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(digests == [expected[p]] * 4 for p, digests in got.items())


def test_the_state_written_in_pieces_is_byte_for_byte_the_documents_compact_json() -> None:
    import json

    from wbsync.tree.state import EntryState, PlacedFile, State, state_pieces, state_to_json

    files = {f"d/{i:04d}\u00e9\"\\.bin": PlacedFile((i, 10**18 + i, 7, 2049), "md5:abc==") for i in range(1203)}
    files["legacy"] = PlacedFile((1, 2, 3), "xxh128:q==")  # a record from before devices were recorded
    state = State({"zeta": EntryState("data/z", files), "alpha": EntryState("data/a", {}), "\u2603": EntryState("s", {})})
    text = b"".join(state_pieces(state))
    assert text == json.dumps(state_to_json(state), separators=(",", ":")).encode()


def test_a_sync_after_a_version_move_confirms_a_large_entry_without_loading_its_manifest(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored file list is checked against the artifact digest, so asking W&B for the
    version and its digest confirms it: no second manifest (~1.6 KB a file in the SDK) to load."""
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "5")
    publish(fake_wandb, dataset(10))
    write_manifest(project, DATA)
    run("sync")
    files = {**dataset(10), "train/0001.jpg": b"moved"}
    publish(fake_wandb, files)
    run("lock", "--upgrade")  # loads the new manifest once, and stores its file list
    fake_wandb.clear_requests()
    run("sync")
    assert tree(project / "data/images") == files
    assert [r.path for r in fake_wandb.requests if r.path.startswith("/manifests/")] == []
    assert len(blob_gets(fake_wandb)) == 1
