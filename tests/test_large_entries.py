"""Large entries (issue 17): the lock keeps digest, count and bytes; the file list lives in the
content store, checked against W&B's artifact digest. Small sizes: the inline limit is lowered
to 10 files through WBSYNC_LOCK_INLINE_MAX."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from wbsync.testing import FakeWandb
from wbsync.tree.state import load_state

DATA = """
    version: 1
    artifacts:
      images:
        artifact: wandb-registry-dataset/images:production
        path: data/images
        exclude: ["*.md"]
"""


def dataset(n: int = 100, changed: int = 0) -> dict[str, bytes]:
    files = {f"train/{i:04d}.jpg": b"image %d" % i for i in range(n)}
    for i in range(changed):
        files[f"train/{i:04d}.jpg"] = b"new image %d" % i
    files["README.md"] = b"# images\n"  # excluded by the entry
    return files


def publish(srv: FakeWandb, files: dict[str, bytes]) -> object:
    return srv.log_artifact("acme", "dataset", "images", files, type="dataset", aliases=["production"])


@pytest.fixture(autouse=True)
def small_inline_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "10")


def listings() -> Path:
    return Path(os.environ["WBSYNC_CACHE_DIR"]) / "listings"


def blob_gets(srv: FakeWandb) -> list[str]:
    return [r.path for r in srv.requests if r.method == "GET" and r.path.startswith("/blobs/")]


def test_a_large_entry_is_locked_by_digest_count_and_bytes_with_its_list_in_the_store(
        fake_wandb: FakeWandb, project: Path) -> None:
    v = publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    entry = yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]["images"]
    assert "files" not in entry
    assert entry["digest"] == v.digest and entry["file_count"] == 100 and entry["exclude"] == ["*.md"]
    assert entry["bytes"] == sum(len(b) for p, b in dataset().items() if p != "README.md")
    assert (listings() / v.digest).is_file()
    assert tree(project / "data/images") == {p: b for p, b in dataset().items() if p != "README.md"}
    assert run_json("verify")["ok"] is True


def test_small_entries_keep_their_inline_file_list(fake_wandb: FakeWandb, project: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "1000")
    publish(fake_wandb, dataset(20))
    write_manifest(project, DATA)
    run("lock")
    entry = yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]["images"]
    assert len(entry["files"]) == 20 and "file_count" not in entry
    assert not listings().exists()


def test_a_version_move_of_a_large_entry_changes_a_handful_of_lock_lines(fake_wandb: FakeWandb,
                                                                          project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    before = (project / "artifacts.lock").read_text().splitlines()
    publish(fake_wandb, dataset(101, changed=1))
    run("lock", "--upgrade")
    after = (project / "artifacts.lock").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 12  # resolved, version, digest, file_count, bytes, sizes: old and new
    assert any(line.startswith("+    file_count: 101") for line in changed)


def test_a_lock_version_1_keeps_working_and_lock_rewrites_it_as_version_3(fake_wandb: FakeWandb,
                                                                           project: Path) -> None:
    publish(fake_wandb, dataset(5))
    write_manifest(project, DATA)
    run("lock")
    v2 = (project / "artifacts.lock").read_text()
    assert "lock_version: 3\n" in v2 and '"train/0000.jpg"' in v2  # 5 files: inline
    (project / "artifacts.lock").write_text(v2.replace("lock_version: 3\n", "lock_version: 1\n"))
    run("lock", "--check")
    run("sync", "--locked")
    assert len(tree(project / "data/images")) == 5
    run("verify")
    run("lock")
    assert (project / "artifacts.lock").read_text() == v2


def test_a_version_1_lock_cannot_hold_a_stored_entry(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    lock = project / "artifacts.lock"
    lock.write_text(lock.read_text().replace("lock_version: 3\n", "lock_version: 1\n"))
    result = run("verify", check=2)
    assert "artifacts.lock" in result.stderr and "files" in result.stderr


def test_a_lock_from_a_newer_wbsync_says_to_upgrade(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset(5))
    write_manifest(project, DATA)
    run("lock")
    lock = project / "artifacts.lock"
    lock.write_text(lock.read_text().replace("lock_version: 3\n", "lock_version: 4\n"))
    assert "newer wbsync" in run("verify", check=2).stderr


def test_a_version_2_lock_with_a_stored_entry_keeps_working_and_lock_binds_its_sizes(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    lock = project / "artifacts.lock"
    v3 = lock.read_text()
    assert "lock_version: 3\n" in v3 and "    sizes: \"sha256:" in v3
    v2 = "".join(line for line in v3.splitlines(keepends=True) if not line.startswith("    sizes: "))
    lock.write_text(v2.replace("lock_version: 3\n", "lock_version: 2\n"))
    run("lock", "--check")
    run("sync", "--locked")
    run("verify")
    run("lock")  # the pin is kept as it was (sizes are optional in version 3)...
    assert lock.read_text() == v2.replace("lock_version: 2\n", "lock_version: 3\n")
    run("lock", "--upgrade")  # ...and bound once the entry is resolved again
    assert lock.read_text() == v3


def test_verify_works_offline_from_the_stored_listing(fake_wandb: FakeWandb, project: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    fake_wandb.clear_requests()
    run("verify")
    (project / "data/images/train/0042.jpg").write_bytes(b"edited!!")
    (project / "data/images/train/0007.jpg").unlink()
    [report] = run_json("verify", check=1)["entries"]
    assert report["modified"] == ["train/0042.jpg"] and report["missing"] == ["train/0007.jpg"]
    assert fake_wandb.requests == []


def test_verify_without_the_listing_says_to_sync_first(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    shutil.rmtree(listings())
    message = run("verify", check=2).stderr
    assert "images" in message and "wbsync sync" in message and "not in the content store" in message


def test_a_stored_listing_that_does_not_match_the_digest_is_refused(fake_wandb: FakeWandb,
                                                                     project: Path) -> None:
    v = publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    stored = listings() / v.digest
    text = stored.read_bytes()
    os.chmod(stored, 0o644)
    stored.write_bytes(text.replace(b"train/0042.jpg:", b"train/0042.jpeg:"))
    result = run("verify", check=4)
    assert "does not hash to the lock's artifact digest" in result.stderr and str(stored) in result.stderr
    assert run("sync", check=4).stderr


def test_a_listing_whose_sizes_were_edited_is_refused(fake_wandb: FakeWandb, project: Path) -> None:
    v = publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    stored = listings() / v.digest
    header, rest = stored.read_bytes().split(b"\n", 1)
    stored.write_bytes(header + b"\n" + rest.replace(b"7\n", b"8\n", 1))
    assert "other digest algorithms or sizes than the lock binds" in run("verify", check=4).stderr
    lock = project / "artifacts.lock"  # a version 2 lock binds no sizes: the count and bytes still catch it
    lock.write_text("".join(line for line in lock.read_text().splitlines(keepends=True)
                            if not line.startswith("    sizes: ")).replace("lock_version: 3\n", "lock_version: 2\n"))
    assert "bytes" in run("verify", check=4).stderr


def test_a_source_whose_file_list_does_not_match_the_locked_digest_is_refused(fake_wandb: FakeWandb,
                                                                               project: Path) -> None:
    v = publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    shutil.rmtree(listings())
    lock = project / "artifacts.lock"
    lock.write_text(lock.read_text().replace(v.digest, "0" * 32))
    result = run("sync", "--frozen", check=4)
    assert "0" * 32 in result.stderr and not (project / "data").exists()
    assert not (listings() / ("0" * 32)).exists()  # "nothing was written": no listing under that digest


def test_a_fresh_machine_fetches_the_listing_once_then_works_offline(fake_wandb: FakeWandb, project: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(tmp_path / "other-machine"))
    fake_wandb.clear_requests()
    run("sync", "--frozen")
    # the listing, the lock confirmed with W&B before placing, then the file URLs
    assert fake_wandb.operations().count("ArtifactMembershipByName") == 3
    fake_wandb.clear_requests()
    run("sync", "--frozen")
    run("verify")
    assert fake_wandb.requests == []


def test_a_mirror_carries_what_a_frozen_sync_needs(fake_wandb: FakeWandb, project: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    run("mirror", str(tmp_path / "mirror"))
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(tmp_path / "runner-cache"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    fake_wandb.clear_requests()
    run("sync", "--frozen", "--source", str(tmp_path / "mirror"))
    assert len(tree(project / "data/images")) == 100 and fake_wandb.requests == []


def test_a_one_percent_version_move_fetches_places_and_records_only_what_changed(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    state_file = project / ".wbsync/state.json"
    before = json.loads(state_file.read_text())["entries"]["images"]["files"]
    publish(fake_wandb, dataset(changed=1))
    run("lock", "--upgrade")
    fake_wandb.clear_requests()
    state_bytes = state_file.read_bytes()
    summary = run_json("sync")
    assert [p.rsplit("/", 1)[1] for p in blob_gets(fake_wandb)] == ["train%2F0000.jpg"]
    assert summary["placed"] == 1
    # Recorded as a delta of one record: the state's other records are not rewritten.
    assert state_file.read_bytes() == state_bytes
    delta = json.loads((project / ".wbsync/state-delta.json").read_text())["entries"]["images"]["files"]
    assert list(delta) == ["train/0000.jpg"]
    after = {p: [*f.stat[:3], f.digest, *f.stat[3:]] for p, f in load_state(project).entries["images"].files.items()}
    assert after.keys() == before.keys()
    assert [p for p in after if after[p] != before[p]] == ["train/0000.jpg"]
    assert (project / "data/images/train/0000.jpg").read_bytes() == b"new image 0"
    fake_wandb.clear_requests()
    assert run_json("sync")["placed"] == 0 and fake_wandb.requests == []  # the move left a no-op
    assert run_json("verify")["ok"] is True


def moved_dataset() -> dict[str, bytes]:
    """v1 of ``dataset()``: two files changed, one dropped, two new (one in a new folder)."""
    files = dataset(changed=2)
    del files["train/0050.jpg"]
    files["train/0100.jpg"] = b"image 100"
    files["val/0000.jpg"] = b"val 0"
    return files


def synced_then_moved(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    publish(fake_wandb, moved_dataset())
    run("lock", "--upgrade")


def expected_tree() -> dict[str, bytes]:
    return {p: b for p, b in moved_dataset().items() if p != "README.md"}


def test_a_version_move_places_changed_and_new_files_removes_dropped_ones_and_records_a_delta(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced_then_moved(fake_wandb, project)
    summary = run_json("sync")
    assert (summary["placed"], summary["removed"]) == (4, 1)
    assert tree(project / "data/images") == expected_tree()
    delta = json.loads((project / ".wbsync/state-delta.json").read_text())["entries"]["images"]["files"]
    assert sorted(delta) == ["train/0000.jpg", "train/0001.jpg", "train/0050.jpg", "train/0100.jpg",
                             "val/0000.jpg"]
    assert delta["train/0050.jpg"] is None
    assert sorted(load_state(project).entries["images"].files) == sorted(expected_tree())
    assert run_json("verify")["ok"] is True


def test_a_file_edited_before_a_version_move_is_put_back_as_the_full_plan_would(
        fake_wandb: FakeWandb, project: Path) -> None:
    """The move trusts the tree only when every file is as the last sync left it; an edited
    file (the same in both versions, so the move itself would not touch it) is restored."""
    synced_then_moved(fake_wandb, project)
    edited = project / "data/images/train/0070.jpg"
    edited.write_bytes(b"edited")
    summary = run_json("sync")
    assert edited.read_bytes() == b"image 70"
    assert summary["restored"] == ["data/images/train/0070.jpg"]
    assert summary["placed"] == 5  # the 4 changed or new files and the restored one: not every file
    assert tree(project / "data/images") == expected_tree()
    assert run_json("verify")["ok"] is True


def test_a_file_of_someone_else_where_the_new_version_puts_one_stops_the_move_with_nothing_changed(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced_then_moved(fake_wandb, project)
    (project / "data/images/val").mkdir()
    (project / "data/images/val/0000.jpg").write_bytes(b"mine")
    out = run("sync", check=2)
    assert "data/images/val/0000.jpg" in out.stderr
    assert (project / "data/images/val/0000.jpg").read_bytes() == b"mine"
    assert (project / "data/images/train/0000.jpg").read_bytes() == b"image 0"


def test_a_version_move_killed_in_its_swap_is_finished_by_the_next_sync_with_its_delta(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced_then_moved(fake_wandb, project)
    env = {**os.environ, "WBSYNC_KILL_AFTER_RENAMES": "2", "WBSYNC_TESTING": "1"}
    killed = subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "state_delta" in json.loads((project / ".wbsync/swap.json").read_text())  # the move's own journal
    run("sync")
    assert not (project / ".wbsync/swap.json").exists()
    assert tree(project / "data/images") == expected_tree()
    # Finished as the move would have: its delta recorded (nothing left to re-hash and rewrite).
    delta_file = project / ".wbsync/state-delta.json"
    assert delta_file.exists()
    assert len(json.loads(delta_file.read_text())["entries"]["images"]["files"]) == 5
    assert sorted(load_state(project).entries["images"].files) == sorted(expected_tree())
    fake_wandb.clear_requests()
    assert run_json("sync")["placed"] == 0 and fake_wandb.requests == []
    assert run_json("verify")["ok"] is True


def test_the_state_delta_stays_bounded_a_sync_past_the_bound_rewrites_the_state_whole(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_then_moved(fake_wandb, project)
    monkeypatch.setenv("WBSYNC_STATE_DELTA_MAX", "3")  # the move's 5 records exceed it
    run("sync")
    assert not (project / ".wbsync/state-delta.json").exists()
    assert sorted(load_state(project).entries["images"].files) == sorted(expected_tree())
    assert run_json("verify")["ok"] is True


def test_a_file_list_that_does_not_hash_to_the_artifact_digest_is_never_stored(tmp_path: Path) -> None:
    """The store's own check, beneath the source's: a list that W&B's digest does not vouch for
    gets no name in the store (the sources check it too, so only a direct call reaches this)."""
    from wbsync.core.errors import IntegrityError
    from wbsync.core.models import FileRecord, RemoteFile
    from wbsync.store.listing import write_listing

    files = [RemoteFile(FileRecord(f"f{i}.txt", 1, "7MvIfktc4v4oMI/Z8qe68w==")) for i in range(3)]
    folder = tmp_path / "listings"
    with pytest.raises(IntegrityError, match="does not match artifact digest"):
        write_listing(files, "0" * 32, "data (acme-org/wandb-registry-dataset/images:v0)", folder)
    assert list(folder.iterdir()) == []


def test_verify_hashes_a_large_entry_in_worker_processes_and_finds_every_difference(
        fake_wandb: FakeWandb, project: Path) -> None:
    from wbsync.repo.lockfile import read_lock
    from wbsync.store.listing import iter_files
    from wbsync.store.rehash import compare_folder

    publish(fake_wandb, dataset(600))
    write_manifest(project, DATA)
    run("sync")
    folder = project / "data/images"
    (folder / "train/0100.jpg").write_bytes(b"edited")
    (folder / "train/0200.jpg").unlink()
    (folder / "train/0300.jpg").write_bytes(b"same size!!")  # size differs from "image 300"
    (folder / "train/0599.jpg.bak").write_bytes(b"x")
    (folder / "zz").mkdir()
    (folder / "zz/extra.bin").write_bytes(b"x")
    art = read_lock(project / "artifacts.lock").artifacts["images"]
    found = compare_folder(str(folder), iter_files(art), count=len(art.files), jobs=2, process_min=0)
    assert found.missing == ["train/0200.jpg"]
    assert found.modified == ["train/0100.jpg", "train/0300.jpg"]
    assert found.extra == ["train/0599.jpg.bak", "zz/extra.bin"]


def test_the_sorted_walk_lists_files_in_the_order_their_paths_sort(tmp_path: Path) -> None:
    from wbsync.store.rehash import walk_sorted

    for rel in ("a/b", "a-b", "a.txt", "a0", "a/c/d", "b", "A"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    walked = list(walk_sorted(str(tmp_path)))
    assert walked == sorted(walked) == ["A", "a-b", "a.txt", "a/b", "a/c/d", "a0", "b"]


def test_a_no_op_sync_checks_the_tree_against_its_fingerprint_without_reading_the_state(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    state = project / ".wbsync/state.json"
    st = state.stat()
    with open(state, "r+b") as fh:  # same size, inode and mtime: only a reader of the state notices
        fh.write(b"X" * st.st_size)
    os.utime(state, ns=(st.st_atime_ns, st.st_mtime_ns))
    fake_wandb.clear_requests()
    assert run_json("sync")["noop"] is True
    assert run("sync").stdout == "" and fake_wandb.requests == []  # a clean no-op says nothing in a log


def test_a_file_changed_after_the_fingerprint_falls_back_to_the_full_plan(fake_wandb: FakeWandb,
                                                                          project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    run("sync")
    assert (project / ".wbsync/fingerprint.json").is_file()
    target = project / "data/images/train/0042.jpg"
    target.unlink()
    target.write_bytes(b"image 42")  # same bytes, new inode: re-hashed, adopted, no fetch
    fake_wandb.clear_requests()
    summary = run_json("sync")
    assert summary["noop"] is False and blob_gets(fake_wandb) == []
    (project / "data/images/train/0043.jpg").write_bytes(b"edited!")
    assert run_json("sync")["placed"] == 1
    assert (project / "data/images/train/0043.jpg").read_bytes() == b"image 43"
    assert run_json("sync")["noop"] is True


def test_a_lost_state_is_recorded_again_even_though_the_tree_did_not_change(fake_wandb: FakeWandb,
                                                                            project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    (project / ".wbsync/state.json").unlink()
    assert run_json("sync")["noop"] is False  # every file re-hashed and adopted: wbsync owns them again
    assert len(json.loads((project / ".wbsync/state.json").read_text())["entries"]["images"]["files"]) == 100


def test_outdated_reports_a_moved_alias_of_a_large_entry_file_by_file(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("lock")
    publish(fake_wandb, dataset(102, changed=3))
    result = run("outdated", check=None)
    assert "v0 -> v1" in result.stdout and "+2 files" in result.stdout and "3 changed" in result.stdout


def test_a_prune_removes_the_file_lists_no_lockfile_names_and_keeps_the_rest(
        fake_wandb: FakeWandb, project: Path) -> None:
    v0 = publish(fake_wandb, dataset())
    write_manifest(project, DATA)
    run("sync")
    v1 = publish(fake_wandb, dataset(changed=1))
    run("lock", "--upgrade")
    run("sync")
    old, new = listings() / v0.digest, listings() / v1.digest
    assert old.is_file() and new.is_file()
    # A killed writer's temp file, and one fresh listing no lock names yet (a sync between
    # fetching its listings and registering its lock): only what is old and unnamed goes.
    killed = listings() / f".{'a' * 32}.123.456.tmp"
    killed.write_text("half")
    fresh = listings() / ("b" * 32)
    fresh.write_text("just fetched")
    hour_ago = time.time() - 2 * 3600
    for path in (old, new, killed):
        os.utime(path, (hour_ago, hour_ago))
    dry = run_json("cache", "prune", "--dry-run")
    assert dry["listings"]["count"] == 2 and old.is_file() and killed.is_file()
    text = run("cache", "prune").stdout
    assert "2 file lists of large lock entries no lockfile names" in text
    assert sorted(p.name for p in listings().iterdir()) == sorted([new.name, fresh.name])
    assert run_json("verify")["ok"] is True  # the lock's own listing stayed: verify works offline


def test_a_state_delta_amends_only_the_state_file_it_was_written_for(tmp_path: Path) -> None:
    """A delta is tied to the identity of its state.json: once that file is replaced (another
    wbsync, a restore from a backup), the delta is ignored, never applied to the wrong state."""
    from wbsync.core.atomic import write_atomic
    from wbsync.tree.state import (
        EntryState,
        PlacedFile,
        State,
        delta_to_json,
        save_state,
        state_path,
        write_state_delta,
    )

    save_state(tmp_path, State({"e": EntryState("d", {"a": PlacedFile((1, 2, 3, 4), "md5:x")})}))
    write_state_delta(tmp_path, delta_to_json({"e": ("d", {"a": None, "b": PlacedFile((5, 6, 7, 8), "md5:y")})}))
    assert sorted(load_state(tmp_path).entries["e"].files) == ["b"]
    write_atomic(state_path(tmp_path), state_path(tmp_path).read_bytes())  # the same text, another file
    assert sorted(load_state(tmp_path).entries["e"].files) == ["a"]


def test_a_moves_journal_whose_state_delta_names_an_unsafe_path_is_refused(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced_then_moved(fake_wandb, project)
    env = {**os.environ, "WBSYNC_KILL_AFTER_RENAMES": "2", "WBSYNC_TESTING": "1"}
    subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, env=env, capture_output=True, timeout=120)
    journal = project / ".wbsync/swap.json"
    journal.write_text(journal.read_text().replace('"val/0000.jpg":', '"../../../outside.jpg":', 1))
    result = run("sync", check=2)
    assert "swap.json" in result.stderr and "Delete" in result.stderr
    assert not (project / ".wbsync/state-delta.json").exists()  # nothing of it was recorded
