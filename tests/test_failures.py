"""Bad input and remote surprises: the documented exit code, a clear message, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run, run_process, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import Fault, FakeWandb


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_RETRIES", "3")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    monkeypatch.setenv("WBSYNC_TIMEOUT", "2")


def blob_gets(srv: FakeWandb) -> list:
    return [r for r in srv.requests if r.method == "GET" and "/blobs/" in r.path]


def test_an_unknown_alias_exits_3_naming_the_reference(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3.replace(":production", ":nosuch"))
    result = run("lock", check=3)
    assert "phi3-finetuned:nosuch" in result.stderr and "no alias 'nosuch'" in result.stderr and "production" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (project / "artifacts.lock").exists()


def test_an_unknown_collection_exits_3(fake_wandb: FakeWandb, project: Path) -> None:
    write_manifest(project, PHI3)
    assert "phi3-finetuned" in run("lock", check=3).stderr


def test_an_unknown_registry_exits_3(fake_wandb: FakeWandb, project: Path) -> None:
    write_manifest(project, PHI3.replace("wandb-registry-model", "wandb-registry-nosuch"))
    assert "wandb-registry-nosuch" in run("lock", check=3).stderr


def test_a_wrong_type_exits_3_naming_both_types(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3 + "        type: dataset\n")
    err = run("lock", check=3).stderr
    assert "'model'" in err and "dataset" in err


def test_a_refused_api_key_exits_3_says_how_to_log_in_and_never_prints_the_key(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_key = "k" * 40
    monkeypatch.setenv("WANDB_API_KEY", bad_key)
    publish(fake_wandb)
    write_manifest(project, PHI3)
    result = run("lock", check=3)
    assert "wandb login" in result.stderr
    assert bad_key not in result.stdout + result.stderr


def test_a_missing_api_key_exits_3_and_says_how_to_log_in(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    proc = run_process(project, "lock", drop_env=("WANDB_API_KEY",))
    assert proc.returncode == 3, proc.stderr
    assert "wandb login" in proc.stderr and "Traceback" not in proc.stderr


def test_reference_entries_are_refused_with_exit_4_naming_the_file(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, refs={"big.bin": "s3://bucket/big.bin"})
    write_manifest(project, PHI3)
    err = run("lock", check=4).stderr
    assert "big.bin" in err and "s3://bucket/big.bin" in err and "exclude" in err


def test_reference_entries_can_be_excluded(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, refs={"big.bin": "s3://bucket/big.bin"})
    write_manifest(project, PHI3 + "        exclude: [big.bin]\n")
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_server_errors_on_file_downloads_are_retried_and_recovered(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=503, times=2, match="config.json"))
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_a_429_retry_after_is_honoured(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=429, times=1, retry_after=1, match="config.json"))
    run("sync")
    # The retry came a whole Retry-After later (the usual first backoff is at most 0.5 s).
    refused, retried = [r for r in fake_wandb.requests if r.method == "GET" and r.path.endswith("/config.json")]
    assert refused.status == 429 and retried.status == 200
    assert retried.at - refused.at >= 1.0
    assert tree(project / "models/phi3") == MODEL


def _retry_gap(srv: FakeWandb, project: Path, retry_after: float) -> float:
    """Seconds, by the server's own log, between a refusal carrying ``retry_after`` and the retry."""
    publish(srv)
    write_manifest(project, PHI3)
    run("lock")
    srv.inject(Fault("file", "status", status=503, times=1, retry_after=retry_after, match="config.json"))
    run("sync")
    refused, retried = [r for r in srv.requests if r.method == "GET" and r.path.endswith("/config.json")]
    assert refused.status == 503 and retried.status == 200
    assert tree(project / "models/phi3") == MODEL
    return retried.at - refused.at


def test_a_retry_after_above_the_cap_waits_the_cap_not_the_header(fake_wandb: FakeWandb, project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_MAX_WAIT", "0.3")
    gap = _retry_gap(fake_wandb, project, retry_after=20)
    assert 0.3 <= gap < 3.0  # the cap (backoff alone is 0.01 s), 10x margin, far below the header's 20 s


def test_a_retry_after_below_the_cap_waits_the_header_not_the_cap(fake_wandb: FakeWandb, project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_MAX_WAIT", "5")
    gap = _retry_gap(fake_wandb, project, retry_after=0.3)
    assert 0.3 <= gap < 3.0  # the header, not the cap's 5 s


def test_a_connection_reset_mid_body_resumes_and_completes(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "reset_mid_body", times=1, match="shard-0.bin"))
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_a_truncated_body_is_retried(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "truncate", times=1, match="shard-0.bin"))
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_persistent_server_errors_exit_3_naming_the_artifact_and_file_and_change_nothing(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=500, times=None, match="shard-0.bin"))
    err = run("sync", check=3).stderr
    assert "phi3" in err and "weights/shard-0.bin" in err and "3 attempt" in err
    assert not (project / "models/phi3").exists() or tree(project / "models/phi3") == {}


def test_wrong_bytes_exit_4_are_discarded_and_leave_the_tree_intact(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "wrong_bytes", times=1, match="config.json"))
    err = run("sync", check=4).stderr
    assert "config.json" in err and "digest" in err
    assert not (project / "models/phi3").exists() or tree(project / "models/phi3") == {}
    run("sync")  # the next sync completes
    assert tree(project / "models/phi3") == MODEL


def test_a_version_deleted_with_its_alias_exits_3_and_says_to_change_the_manifest(fake_wandb: FakeWandb,
                                                                                   project: Path) -> None:
    publish(fake_wandb)
    publish(fake_wandb, {"config.json": b"{}"}, aliases=["production"])
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.delete_version("acme", "model", "phi3-finetuned", 1)  # `production` goes with it
    err = run("sync", check=3).stderr
    assert "its alias `production` no longer resolves either" in err
    assert "then run `wbsync lock`" in err


def test_an_artifact_with_a_traversal_path_is_refused_before_anything_is_written(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, {"ok.txt": b"ok", "../escape.txt": b"evil"})
    write_manifest(project, PHI3)
    err = run("sync", check=4).stderr
    assert "../escape.txt" in err
    assert not (project / "models").exists() and not (project / "escape.txt").exists()
    assert not (project / "models/escape.txt").exists()


def test_a_destination_symlink_leading_outside_the_project_is_refused(fake_wandb: FakeWandb, project: Path,
                                                                      tmp_path: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "models/phi3").mkdir(parents=True)
    (project / "models/phi3/weights").symlink_to(outside)
    run("sync", check=4)
    assert list(outside.iterdir()) == []


def test_a_personal_entity_in_several_organizations_is_told_to_give_the_org_or_a_team_entity(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wandb.add_org("globex", "globex-org")
    key = fake_wandb.add_user("bob", orgs=["acme", "globex"])
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    publish(fake_wandb)
    write_manifest(project, PHI3)
    err = run("lock", check=3).stderr
    assert "org" in err and "entity" in err
    write_manifest(project, PHI3.replace("wandb-registry-model", "acme/wandb-registry-model"))
    run("sync")
    assert tree(project / "models/phi3") == MODEL
