"""Attacks on a repository through wbsync, each followed by the promise it must keep.

wbsync runs in CI on pull requests: the lockfile is written by whoever opened the pull request,
an artifact's file list by whoever published it, and the folder holds other people's files.
Each test plays one of them against the real CLI and the fake W&B server, then checks the
promise: the exit code, the bytes on disk unchanged, nothing written outside, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.testing import FakeWandb

EVIL = {"config.json": b'{"layers": 32, "backdoor": true}\n', "weights/shard-0.bin": b"\xde\xad" * 3000,
        "README.md": b"# phi3\n"}
TRAIN = b"print('the user's own training code')\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included), for "nothing changed" checks."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def locked_project(fake_wandb: FakeWandb, project: Path) -> dict:
    """A synced project with a src/ folder of the user's, and the lock as data."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    (project / "src").mkdir()
    (project / "src/train.py").write_bytes(TRAIN)
    return yaml.safe_load((project / "artifacts.lock").read_text())


def write_lock(project: Path, data: dict) -> None:
    """A hand-edited lock, as a pull request could bring it (entry_digest left as it was)."""
    (project / "artifacts.lock").write_text(yaml.safe_dump(data, sort_keys=True))


def publish_evil(fake_wandb: FakeWandb) -> object:
    """Another collection the reader can also see, holding backdoored weights."""
    return fake_wandb.log_artifact("acme", "model", "evil-model", EVIL, type="model", aliases=["production"])


def git_repo(project: Path) -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True)


# -- a tampered lock -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".git", "models/.GIT", "git~1", ".git. ", ".wbsync", "artifacts.lock",
                                  "artifacts.yaml", ".g\u200cit/hooks"])
def test_a_lock_whose_path_points_at_a_reserved_folder_is_refused_by_every_command(
        fake_wandb: FakeWandb, project: Path, path: str) -> None:
    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["path"] = path
    write_lock(project, data)
    before = snapshot(project)
    for args in (["lock", "--check"], ["sync", "--locked"], ["sync"], ["sync", "--frozen"], ["verify"], ["lock"]):
        result = run(*args, check=2)
        assert "phi3" in result.stderr and "refuses this lockfile" in result.stderr, result.stderr
    assert snapshot(project) == before


def test_a_lock_listing_a_file_inside_git_is_refused_even_when_frozen(fake_wandb: FakeWandb, project: Path) -> None:
    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["path"] = "models"
    data["artifacts"]["phi3"]["files"][0]["path"] = "../.git/config"
    write_lock(project, data)
    before = snapshot(project)
    run("sync", "--frozen", check=2)
    data["artifacts"]["phi3"]["files"][0]["path"] = "x/.Git./config"
    write_lock(project, data)
    assert "x/.Git." in run("sync", "--frozen", check=2).stderr
    before.pop("artifacts.lock")
    assert {p: b for p, b in snapshot(project).items() if p != "artifacts.lock"} == before


def test_a_lock_pointing_an_entry_at_the_users_code_is_stale_and_never_overwrites_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["path"] = "src"
    data["artifacts"]["phi3"]["files"][0]["path"] = "train.py"
    write_lock(project, data)
    for args in (["lock", "--check"], ["sync", "--locked"]):
        err = run(*args, check=1).stderr
        assert "phi3" in err and "path" in err and "'src'" in err, err
    assert run_json("verify", check=1)["entries"][0]["stale"].startswith("path")
    assert (project / "src/train.py").read_bytes() == TRAIN
    run("sync")  # re-locks the entry from artifacts.yaml
    assert (project / "src/train.py").read_bytes() == TRAIN
    assert yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]["phi3"]["path"] == "models/phi3"
    assert tree(project / "models/phi3") == MODEL
    run("verify")


def test_a_lock_pointing_at_another_collection_is_stale_and_its_bytes_are_never_placed(
        fake_wandb: FakeWandb, project: Path) -> None:
    data = locked_project(fake_wandb, project)
    evil = publish_evil(fake_wandb)
    phi3 = data["artifacts"]["phi3"]
    phi3["resolved"] = "acme-org/wandb-registry-model/evil-model:v0"
    phi3["digest"] = evil.digest
    phi3["files"] = [{"path": p, "size": s, "md5": d} for p, (s, d) in sorted(evil.files.items())]
    write_lock(project, data)
    for path in (project / "models/phi3").rglob("*"):
        if path.is_file():
            path.unlink()
    for args in (["lock", "--check"], ["sync", "--locked"]):
        err = run(*args, check=1).stderr
        assert "resolved" in err and "evil-model" in err, err
    doc = run_json("verify", check=1)
    assert doc["entries"][0]["stale"].startswith("resolved")
    assert not any((project / "models/phi3").rglob("*.json"))
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_a_lock_whose_version_disagrees_with_resolved_is_stale(fake_wandb: FakeWandb, project: Path) -> None:
    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["version"] = "v7"
    write_lock(project, data)
    assert "version" in run("lock", "--check", check=1).stderr


def test_a_lock_listing_a_file_the_entrys_filters_leave_out_is_stale(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3 + "        exclude: ['*.md']\n")
    run("sync")
    data = yaml.safe_load((project / "artifacts.lock").read_text())
    data["artifacts"]["phi3"]["files"].append({"path": "README.md", "size": 7, "md5": "x" * 22 + "=="})
    write_lock(project, data)
    assert "README.md" in run("sync", "--locked", check=1).stderr


def test_the_python_api_refuses_a_tampered_lock(fake_wandb: FakeWandb, project: Path) -> None:
    import wbsync
    from wbsync.core.errors import LockfileError, NotSyncedError

    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["requested"] = "wandb-registry-model/evil-model:production"
    write_lock(project, data)
    with pytest.raises(NotSyncedError, match="requested"):
        wbsync.path("phi3")
    data["artifacts"]["phi3"]["path"] = ".git"
    write_lock(project, data)
    with pytest.raises(LockfileError, match="refuses this lockfile"):
        wbsync.path("phi3")


# -- an artifact that plants a repository ---------------------------------------------------


@pytest.mark.parametrize("name", [".git/config", ".GIT/config", "sub/.git/hooks/pre-commit", ".git./config",
                                  ".git /config", "git~1/config", "GIT~1/config", ".git::$INDEX_ALLOCATION/config",
                                  ".g\u200cit/config", "\ufeff.git/config", ".git", ".wbsync/state.json",
                                  ".WBSYNC./state.json"])
def test_an_artifact_with_files_in_a_git_folder_is_refused_before_anything_is_written(
        fake_wandb: FakeWandb, project: Path, name: str) -> None:
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, name: b"[core]\n\tfsmonitor = touch pwned\n"},
                            type="model", aliases=["production"])
    write_manifest(project, PHI3)
    err = run("sync", check=4).stderr
    assert "exclude" in err and "nothing was written" in err, err
    assert sorted(os.listdir(project)) == ["artifacts.yaml"]


def test_the_exclude_the_message_names_lets_the_rest_of_the_artifact_sync(fake_wandb: FakeWandb, project: Path) -> None:
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, "sub/.GIT/config": b"x", "sub/.GIT/HEAD": b"y"},
                            type="model", aliases=["production"])
    write_manifest(project, PHI3)
    doc = run_json("sync", check=4)
    glob = doc["error"]["message"].split("exclude: [")[1].split("]")[0]
    write_manifest(project, PHI3 + f"        exclude: [{glob}]\n")
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_a_git_status_after_syncing_an_artifact_never_runs_its_command(fake_wandb: FakeWandb, project: Path) -> None:
    hook = f"[core]\n\tfsmonitor = touch {project}/pwned\n".encode()
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, ".git/config": hook, ".git/HEAD": b"ref: x\n"},
                            type="model", aliases=["production"])
    write_manifest(project, PHI3)
    run("sync", check=4)
    assert not (project / "models").exists()
    git_repo(project)
    subprocess.run(["git", "status"], cwd=project, capture_output=True, check=True)
    assert not (project / "pwned").exists()


# -- a manifest that aims at the repository ---------------------------------------------------


@pytest.mark.parametrize("path", [".git", "models/.Git", ".git::$INDEX_ALLOCATION", ".wbsync", "artifacts.lock",
                                  "artifacts.yaml", "ARTIFACTS.LOCK", "/".join(["d"] * 70)])
def test_a_manifest_entry_aimed_at_a_reserved_folder_is_refused_before_the_lock_is_written(
        fake_wandb: FakeWandb, project: Path, path: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3.replace("models/phi3", json.dumps(path)))
    for args in (["lock"], ["sync"], ["lock", "--check"]):
        err = run(*args, check=2).stderr
        assert "artifacts.yaml:3: artifacts.phi3.path" in err, err
    assert sorted(os.listdir(project)) == ["artifacts.yaml"]


def test_an_entry_holding_the_lockfile_is_refused(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    err = run("sync", "--lockfile", "models/phi3/artifacts.lock", check=2).stderr
    assert "lockfile" in err
    assert sorted(os.listdir(project)) == ["artifacts.yaml"]


# -- bounded paths ------------------------------------------------------------------------------


def test_an_artifact_path_a_thousand_folders_deep_fails_cleanly_before_the_lock(fake_wandb: FakeWandb,
                                                                                  project: Path) -> None:
    deep = "/".join(["a"] * 1000) + "/x.bin"
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, deep: b"x"}, type="model",
                            aliases=["production"])
    write_manifest(project, PHI3)
    proc = subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr and "folders deep" in proc.stderr
    assert sorted(os.listdir(project)) == ["artifacts.yaml"]


def test_a_large_entrys_lock_cannot_lift_its_exclude_to_place_a_git_folder(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "2")  # the file list goes to the content store
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, ".git/config": b"[core]\n"}, type="model",
                            aliases=["production"])
    write_manifest(project, PHI3 + "        exclude: ['.git/*']\n")
    run("sync")
    assert tree(project / "models/phi3") == MODEL
    lock = (project / "artifacts.lock").read_text()
    assert "file_count" in lock and "exclude" in lock
    count = len(MODEL)
    size = sum(map(len, MODEL.values()))
    lock = lock.replace(f"file_count: {count}\n", f"file_count: {count + 1}\n").replace(
        f"bytes: {size}\n", f"bytes: {size + len(b'[core]')+1}\n")  # as the lifted filter would count
    (project / "artifacts.lock").write_text("\n".join(line for line in lock.split("\n")
                                                    if not line.startswith("    exclude:")))
    assert "include/exclude" in run("lock", "--check", check=1).stderr
    run("sync", "--locked", check=1)
    err = run("sync", "--frozen", check=4).stderr  # no manifest read: the placement check refuses it
    assert ".git" in err
    assert not (project / "models/phi3/.git").exists()


# -- what reaches the terminal -------------------------------------------------------------------

# ESC sequences that erase the line above, a carriage return, BEL, an 8-bit CSI and a
# right-to-left override: a file name built to overwrite verify's "differs" with a fake "ok".
SPOOF = "w.bin\x1b[1A\x1b[2K\r\x07\x9b2K\u202e  phi3  ok  All files match the lock."
TERMINAL_CONTROLS = [chr(c) for c in (*range(0x00, 0x0a), *range(0x0b, 0x20), *range(0x7f, 0xa0))] + [
    chr(c) for c in (*range(0x202a, 0x202f), *range(0x2066, 0x206a))]


def raw_controls(text: str) -> list[str]:
    """Control characters in ``text`` other than wbsync's own colour codes and line breaks."""
    import re

    return [c for c in re.sub(r"\x1b\[(?:0|1|31|32|33|36)m", "", text) if c in TERMINAL_CONTROLS]


def test_a_file_name_cannot_write_control_characters_to_the_terminal(fake_wandb: FakeWandb, project: Path) -> None:
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, SPOOF: b"weights"}, type="model",
                            aliases=["production"])
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3" / SPOOF).write_bytes(b"tampered")
    env = {**os.environ, "FORCE_COLOR": "1"}  # as at a terminal: colour codes are not stripped
    proc = subprocess.run([sys.executable, "-m", "wbsync", "verify"], cwd=project, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert raw_controls(proc.stdout + proc.stderr) == []
    assert "w.bin\\x1b[1A\\x1b[2K\\x0d\\x07\\x9b2K\\u202e" in proc.stdout  # shown, escaped
    doc = json.loads(run("verify", "--json", check=1).stdout)
    assert doc["entries"][0]["modified"] == [SPOOF]  # JSON keeps the name, as JSON escapes


def test_del_is_escaped_in_json_output(fake_wandb: FakeWandb, project: Path) -> None:
    fake_wandb.log_artifact("acme", "model", "phi3-finetuned", {**MODEL, "a\x7fb.bin": b"x"}, type="model",
                            aliases=["production"])
    write_manifest(project, PHI3)
    run("sync")
    (project / "models/phi3/a\x7fb.bin").write_bytes(b"y")
    out = run("verify", "--json", check=1).stdout
    assert "\x7f" not in out and json.loads(out)["entries"][0]["modified"] == ["a\x7fb.bin"]


# -- secrets in URLs --------------------------------------------------------------------------------


def test_a_key_written_into_wandb_base_url_is_used_and_never_shown_or_stored(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    key = fake_wandb.api_key
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_BASE_URL", fake_wandb.url.replace("://", f"://api:{key}@"))
    outputs = []
    for args in (["lock"], ["sync"], ["verify"], ["outdated"]):
        proc = subprocess.run([sys.executable, "-m", "wbsync", *args, "-v"], cwd=project, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]
    monkeypatch.setenv("WANDB_BASE_URL", fake_wandb.url.replace("://", f"://api:{'r' * 40}@"))  # refused
    proc = subprocess.run([sys.executable, "-m", "wbsync", "lock", "--upgrade", "--json"], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    outputs += [proc.stdout, proc.stderr]
    assert not [o for o in outputs if key in o or "r" * 40 in o], outputs
    assert fake_wandb.url.split("://")[1] in proc.stderr  # the server is named, without credentials
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()
              and (key.encode() in p.read_bytes() or b"r" * 40 in p.read_bytes())]
    assert leaked == []


def test_a_signed_links_signature_is_never_printed(fake_wandb: FakeWandb, project: Path) -> None:
    from wbsync.testing import Fault

    publish(fake_wandb)
    write_manifest(project, PHI3)
    fake_wandb.inject(Fault("file", "status", status=404, times=None, match="/manifests/"))
    for doc_or_text in (run("lock", check=3).stderr, run("lock", "--json", check=3).stdout):
        assert "/manifests/" in doc_or_text and "Signature" not in doc_or_text, doc_or_text


def test_an_error_raised_to_python_code_carries_no_signature(fake_wandb: FakeWandb, project: Path) -> None:
    """The Python API raises the SDK's failure as its own error, past the CLI's output layer."""
    import wbsync
    from wbsync.core.errors import RemoteError
    from wbsync.testing import Fault

    publish(fake_wandb)
    write_manifest(project, PHI3)
    fake_wandb.inject(Fault("file", "status", status=404, times=None, match="/manifests/"))
    with pytest.raises(RemoteError) as caught:
        wbsync.lock()
    assert "/manifests/" in str(caught.value) and "Signature" not in str(caught.value), caught.value


def test_credentials_in_the_links_a_server_hands_out_are_never_printed(fake_wandb: FakeWandb, project: Path) -> None:
    """A self-hosted server whose bucket URL holds the bucket's password hands out links that
    carry it (``http://bucket:PASSWORD@host/...``); the SDK names the link when its GET fails."""
    from wbsync.testing import Fault, LinkPolicy

    publish(fake_wandb)
    write_manifest(project, PHI3)
    fake_wandb.links = LinkPolicy(userinfo="bucket:Bucket-Password-123")
    fake_wandb.inject(Fault("file", "status", status=404, times=None, match="/manifests/"))
    for doc_or_text in (run("lock", check=3).stderr, run("lock", "--json", check=3).stdout):
        assert "/manifests/" in doc_or_text, doc_or_text  # the link is named: the message is the SDK's
        assert "Bucket-Password-123" not in doc_or_text, doc_or_text


# -- a lock that smuggles another collection's bytes through the content store -------------------


def smuggling_lock(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> dict:
    """phi3's lock entry, unchanged but for its files: the evil collection's, whose blobs an
    earlier job on this runner already put in the content store."""
    data = locked_project(fake_wandb, project)
    evil = publish_evil(fake_wandb)
    other = tmp_path / "earlier-job"
    other.mkdir()
    write_manifest(other, PHI3.replace("phi3-finetuned", "evil-model"))
    run("sync", "-m", str(other / "artifacts.yaml"))
    data["artifacts"]["phi3"]["files"] = [{"path": p, "size": s, "md5": d} for p, (s, d) in sorted(evil.files.items())]
    write_lock(project, data)
    for path in (project / "models/phi3").rglob("*"):
        if path.is_file():
            path.unlink()
    return data


@pytest.mark.parametrize("args", [["sync", "--locked"], ["sync"], ["sync", "--frozen"]])
def test_a_lock_cannot_place_another_collections_bytes_from_the_store(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, args: list[str]) -> None:
    smuggling_lock(fake_wandb, project, tmp_path)
    run("lock", "--check")  # every offline check passes: only the source can tell
    err = run(*args, check=4).stderr
    assert "config.json" in err and "does not hold what the lock records" in err, err
    assert not [p for p in (project / "models/phi3").rglob("*") if p.is_file()]
    assert not [r for r in fake_wandb.requests if "/blobs/" in r.path and "evil" in r.path]


def test_a_changed_digest_is_caught_by_the_source_too(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    data = smuggling_lock(fake_wandb, project, tmp_path)
    data["artifacts"]["phi3"]["digest"] = "0" * 32
    data["artifacts"]["phi3"]["files"] = [f for f in data["artifacts"]["phi3"]["files"] if f["path"] != "README.md"]
    write_lock(project, data)
    assert "artifact digest" in run("sync", "--locked", check=4).stderr


def test_a_sync_with_nothing_to_place_still_asks_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    locked_project(fake_wandb, project)
    fake_wandb.clear_requests()
    assert run_json("sync")["noop"] is True
    assert fake_wandb.requests == []


def test_a_lock_that_drops_a_file_its_filters_keep_is_refused_before_placing(fake_wandb: FakeWandb,
                                                                              project: Path) -> None:
    data = locked_project(fake_wandb, project)
    data["artifacts"]["phi3"]["files"] = [f for f in data["artifacts"]["phi3"]["files"] if f["path"] != "README.md"]
    write_lock(project, data)
    (project / "models/phi3/config.json").unlink()
    assert "leaves out 'README.md'" in run("sync", "--locked", check=4).stderr
    run("sync", "--frozen")  # without the manifest the lock's filters are trusted: the lock is placed as it is
    assert tree(project / "models/phi3") == {p: b for p, b in MODEL.items() if p != "README.md"}


def test_a_frozen_sync_refuses_a_lock_whose_resolved_is_not_what_it_requested(fake_wandb: FakeWandb,
                                                                               project: Path) -> None:
    data = locked_project(fake_wandb, project)
    publish_evil(fake_wandb)
    data["artifacts"]["phi3"]["resolved"] = "acme-org/wandb-registry-model/evil-model:v0"
    write_lock(project, data)
    (project / "artifacts.yaml").unlink()
    assert "evil-model" in run("sync", "--frozen", check=2).stderr
    data["artifacts"]["phi3"]["resolved"] = "acme-org/wandb-registry-model/phi3-finetuned:v0"
    data["artifacts"]["phi3"]["files"][0]["path"] = "../../outside.txt"
    write_lock(project, data)
    assert "outside.txt" in run("sync", "--frozen", check=2).stderr
    assert not (project.parent / "outside.txt").exists()


def test_a_lock_pointing_resolved_at_another_org_is_refused_by_the_source_before_placing(
        fake_wandb: FakeWandb, project: Path) -> None:
    data = locked_project(fake_wandb, project)
    fake_wandb.add_org("rival", "rival-org")
    fake_wandb.add_registry("rival", "model")
    evil = fake_wandb.log_artifact("rival", "model", "phi3-finetuned", EVIL, type="model", aliases=["production"])
    phi3 = data["artifacts"]["phi3"]
    phi3["resolved"] = "rival-org/wandb-registry-model/phi3-finetuned:v0"
    phi3["digest"] = evil.digest
    phi3["files"] = [{"path": p, "size": s, "md5": d} for p, (s, d) in sorted(evil.files.items())]
    write_lock(project, data)
    for path in (project / "models/phi3").rglob("*"):
        if path.is_file():
            path.unlink()
    run("lock", "--check")  # the registry and collection agree; only the org differs
    err = run("sync", "--locked", check=4).stderr
    assert "resolves to acme-org/wandb-registry-model/phi3-finetuned:v0" in err, err
    assert not [p for p in (project / "models/phi3").rglob("*") if p.is_file()]
