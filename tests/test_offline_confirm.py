"""A lock entry confirmed against W&B once is re-placed from the content store without asking
again: by this user only (an HMAC key in their own state folder), for this very entry and
source only. Request counts come from the fake server's log."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from helpers import run, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.decide.confirmed import Confirmations
from wbsync.testing import FakeWandb

DEST = "models/phi3"


@pytest.fixture
def synced(fake_wandb: FakeWandb, project: Path) -> Path:
    """phi3 locked and synced once: confirmed against the session's fake W&B."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    fake_wandb.clear_requests()
    return project


def graphql_calls(server: FakeWandb) -> int:
    return sum(1 for r in server.requests if r.path == "/graphql")


def test_a_confirmed_entry_is_re_placed_with_the_server_stopped(project: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeWandb() as own:  # a server of this test's own, to stop
        monkeypatch.setenv("WANDB_BASE_URL", own.url)
        monkeypatch.setenv("WANDB_API_KEY", own.api_key)
        publish(own)
        write_manifest(project, PHI3)
        run("sync")
    shutil.rmtree(project / DEST)
    run("sync", "--frozen")
    run("sync")  # with the manifest's filters too
    assert tree(project / DEST) == MODEL


def test_re_placing_a_confirmed_entry_sends_no_request(fake_wandb: FakeWandb, synced: Path) -> None:
    shutil.rmtree(synced / DEST)
    run("sync")
    assert fake_wandb.requests == [] and tree(synced / DEST) == MODEL


def test_a_store_restored_from_another_home_folder_is_asked_again(fake_wandb: FakeWandb, synced: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The store and even the other home's records travel; the other home's key does not."""
    store, state = Path(tmp_path / "env" / "wbsync_cache_dir"), Path(tmp_path / "env" / "wbsync_state_dir")
    with tarfile.open(tmp_path / "store.tar", "w") as archive:
        archive.add(store, "store")
    with tarfile.open(tmp_path / "store.tar") as archive:
        archive.extractall(tmp_path / "elsewhere", filter="data")
    other_state = tmp_path / "other-home-state"
    Confirmations(other_state).remember([])  # this home has synced before: it has a key of its own
    shutil.copytree(state / "confirmed", other_state / "confirmed")  # the other home's records, not its key
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(tmp_path / "elsewhere" / "store"))
    monkeypatch.setenv("WBSYNC_STATE_DIR", str(other_state))
    shutil.rmtree(synced / DEST)
    run("sync")
    assert graphql_calls(fake_wandb) > 0  # asked W&B: nothing this home's key vouches for
    assert not [r for r in fake_wandb.requests if r.path.startswith("/blobs/")]  # the bytes came from the store
    assert tree(synced / DEST) == MODEL
    fake_wandb.clear_requests()
    shutil.rmtree(synced / DEST)
    run("sync")
    assert fake_wandb.requests == []  # confirmed now, by this home


def test_a_changed_entry_still_asks(fake_wandb: FakeWandb, synced: Path) -> None:
    publish(fake_wandb, dict(list(MODEL.items())[1:]))  # v1: fewer files, every blob in the store already
    run("lock", "--upgrade")
    shutil.rmtree(synced / DEST)
    fake_wandb.clear_requests()
    run("sync", "--frozen")
    assert graphql_calls(fake_wandb) > 0  # v1 was never confirmed: `wbsync lock` does not record


def test_the_key_is_the_users_alone_and_a_readable_key_vouches_for_nothing(fake_wandb: FakeWandb, synced: Path,
                                                                           tmp_path: Path) -> None:
    key = tmp_path / "env" / "wbsync_state_dir" / "confirm.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    key.chmod(0o644)
    shutil.rmtree(synced / DEST)
    run("sync")
    assert graphql_calls(fake_wandb) > 0
