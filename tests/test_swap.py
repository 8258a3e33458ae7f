"""One sync, one swap: a sync killed between two entries' renames is finished by the next
command, and the Python API refuses a half-swapped tree meanwhile.

The kill lands at a deterministic point through the documented fault-injection setting
``WBSYNC_KILL_AFTER_RENAMES=N`` (SIGKILL right after the N-th rename of the swap); the crash
trials (bench/crash_trials.py) add kills at random moments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import wbsync
from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.errors import NotSyncedError
from wbsync.testing import FakeWandb

TWO = PHI3 + """
      eval:
        artifact: wandb-registry-dataset/eval:production
        path: data/eval
"""
EVAL0 = {"e.txt": b"e0", "f.txt": b"f0"}
EVAL1 = {"e.txt": b"e1", "f.txt": b"f1", "g.txt": b"g1"}
MODEL1 = {"config.json": b'{"layers": 64}\n', "weights/shard-0.bin": b"\x02" * 5000, "README.md": b"# phi3 v1\n"}


def publish_eval(srv: FakeWandb, files: dict[str, bytes]) -> None:
    srv.log_artifact("acme", "dataset", "eval", files, type="dataset", aliases=["production"])


def two_entries_upgraded(srv: FakeWandb, project: Path) -> None:
    """Both entries synced at v0, then both locked at v1: the next sync swaps 3 + 3 files."""
    publish(srv)
    publish_eval(srv, EVAL0)
    write_manifest(project, TWO)
    run("sync")
    publish(srv, MODEL1)
    publish_eval(srv, EVAL1)
    run("lock", "--upgrade")
    prefetch(project)


def prefetch(project: Path) -> None:
    """Put v1's blobs in the store (a sync of a copy of the manifest and lock, in this process),
    so the killed sync in its own process needs no network and starts no wandb."""
    other = project.parent / "prefetch"
    other.mkdir()
    for name in ("artifacts.yaml", "artifacts.lock"):
        (other / name).write_bytes((project / name).read_bytes())
    os.chdir(other)
    try:
        run("sync")
    finally:
        os.chdir(project)


def killed_sync(project: Path, after_renames: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WBSYNC_KILL_AFTER_RENAMES": str(after_renames), "WBSYNC_TESTING": "1"}
    return subprocess.run([sys.executable, "-m", "wbsync", "sync"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)


def final(folder: Path) -> dict[str, bytes]:
    """The files under their final names (a killed swap leaves its staged temp files too)."""
    return {k: v for k, v in tree(folder).items() if ".wbsync-" not in k}


def trees(project: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    return final(project / "data/eval"), final(project / "models/phi3")


def test_a_sync_killed_between_two_entries_is_finished_by_the_next_sync(
        fake_wandb: FakeWandb, project: Path) -> None:
    two_entries_upgraded(fake_wandb, project)
    proc = killed_sync(project, after_renames=len(EVAL1))  # entries swap in name order: eval, then phi3
    assert proc.returncode == -signal.SIGKILL
    assert trees(project) == (EVAL1, MODEL)  # the mixed tree a kill can leave ...
    assert (project / ".wbsync/swap.json").exists()
    fake_wandb.clear_requests()
    run("sync")  # ... is rolled forward, from the store: nothing to fetch
    assert trees(project) == (EVAL1, MODEL1)
    assert not (project / ".wbsync/swap.json").exists()
    assert [r for r in fake_wandb.requests if "/blobs/" in r.path] == []
    assert tree(project / "models/phi3") == MODEL1  # no temp file left
    run("verify")
    assert run_json("sync")["noop"] is True


def test_verify_finishes_an_interrupted_swap_before_it_looks(fake_wandb: FakeWandb, project: Path) -> None:
    two_entries_upgraded(fake_wandb, project)
    killed_sync(project, after_renames=len(EVAL1))
    run("verify")
    assert trees(project) == (EVAL1, MODEL1)


def test_the_python_api_refuses_a_half_swapped_tree_and_names_the_fix(
        fake_wandb: FakeWandb, project: Path) -> None:
    two_entries_upgraded(fake_wandb, project)
    killed_sync(project, after_renames=len(EVAL1))
    with pytest.raises(NotSyncedError) as caught:
        wbsync.path("eval")  # its own files are all new: the tree as a whole is not
    assert "wbsync sync" in str(caught.value) and "interrupted" in str(caught.value)
    run("sync")
    assert wbsync.path("phi3") == project / "models/phi3"


@pytest.mark.parametrize("after", [1, 4, 6])
def test_a_kill_after_any_rename_ends_all_new_after_the_next_sync(
        fake_wandb: FakeWandb, project: Path, after: int) -> None:
    two_entries_upgraded(fake_wandb, project)
    assert killed_sync(project, after_renames=after).returncode == -signal.SIGKILL
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
    run("verify")


def test_a_failure_in_one_entry_before_the_swap_leaves_both_entries_as_they_were(
        fake_wandb: FakeWandb, project: Path) -> None:
    two_entries_upgraded(fake_wandb, project)
    (project / "data/eval/g.txt").mkdir()  # a folder where eval's new file goes
    before = trees(project)
    result = run("sync", check=2)
    assert "data/eval/g.txt" in result.stderr
    assert trees(project) == before
    (project / "data/eval/g.txt").rmdir()
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)


def test_an_unusable_journal_is_refused_with_the_fix(fake_wandb: FakeWandb, project: Path) -> None:
    two_entries_upgraded(fake_wandb, project)
    killed_sync(project, after_renames=1)
    journal = project / ".wbsync/swap.json"
    journal.write_text(journal.read_text().replace('"models/phi3/config.json"', '"../outside.json"', 1))
    result = run("sync", check=2)
    assert "swap.json" in result.stderr and "Delete" in result.stderr
    assert not (project.parent / "outside.json").exists()
    journal.unlink()
    run("sync", "--force")  # the files the killed sync renamed are not provably wbsync's: named, replaced
    assert trees(project) == (EVAL1, MODEL1)


def test_a_file_edited_after_a_killed_swap_chose_to_remove_it_is_kept(fake_wandb: FakeWandb, project: Path) -> None:
    """The journal lists a removal with the file's identity at the time; finishing the swap later
    removes the file only if it is still exactly that file, never one the user edited since."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    dropped = {p: b for p, b in MODEL.items() if p != "README.md"}
    publish(fake_wandb, {**dropped, "config.json": b'{"layers": 64}\n'})  # one rename, one removal
    run("lock", "--upgrade")
    prefetch(project)
    assert killed_sync(project, after_renames=1).returncode == -signal.SIGKILL  # before the removal
    assert (project / ".wbsync/swap.json").exists()
    readme = project / "models/phi3/README.md"
    readme.write_bytes(b"# phi3, with my notes\n")
    run("sync")
    assert not (project / ".wbsync/swap.json").exists()
    assert readme.is_file(), "the edited file was removed"
    assert readme.read_bytes() == b"# phi3, with my notes\n"
    assert final(project / "models/phi3") == {**dropped, "config.json": b'{"layers": 64}\n',
                                              "README.md": b"# phi3, with my notes\n"}


def _pending(project: Path) -> list[tuple[str, str]]:
    """The journal's renames whose staged file is still there: (staged, destination)."""
    doc = json.loads((project / ".wbsync/swap.json").read_text())
    return [(temp, dest) for temp, dest, _same in doc["renames"] if (project / temp).exists()]


def test_a_folder_at_a_final_name_stops_finishing_the_swap_with_exit_2_and_the_journal_kept(
        fake_wandb: FakeWandb, project: Path) -> None:
    """A rename of a journaled swap that fails for real (EISDIR: the user made a folder where a
    staged file goes) exits 2 naming the path and the fix, puts nothing wrong under a final name,
    and keeps the journal, so the sync after the fix finishes the swap."""
    two_entries_upgraded(fake_wandb, project)
    assert killed_sync(project, after_renames=1).returncode == -signal.SIGKILL
    _staged, dest = _pending(project)[-1]  # one of phi3's files, after eval's
    (project / dest).unlink()
    (project / dest).mkdir()
    (project / dest / "mine.txt").write_bytes(b"mine")
    result = run("sync", check=2)
    assert dest in result.stderr and "Move it aside" in result.stderr and "wbsync sync" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / ".wbsync/swap.json").exists()
    assert tree(project / dest) == {"mine.txt": b"mine"}  # the user's folder, untouched
    shutil.rmtree(project / dest)
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
    assert not (project / ".wbsync/swap.json").exists()
    run("verify")


def test_a_rename_that_fails_while_finishing_the_swap_exits_2_and_the_next_sync_finishes_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    """Any other failed rename (here ENOTDIR: a folder in place of a staged file) exits 2 with
    the path and "the swap is journaled", leaves the destination as it was and keeps the journal."""
    two_entries_upgraded(fake_wandb, project)
    killed_sync(project, after_renames=1)
    staged, dest = _pending(project)[-1]
    before = (project / dest).read_bytes()
    content = (project / staged).read_bytes()
    (project / staged).unlink()
    (project / staged).mkdir()
    (project / staged / "x").write_bytes(b"x")
    result = run("sync", check=2)
    assert dest in result.stderr and "journaled" in result.stderr and "Traceback" not in result.stderr
    assert (project / dest).read_bytes() == before  # the old file, whole, under its final name
    assert (project / ".wbsync/swap.json").exists()
    assert dest in run("verify", check=2).stderr  # verify finishes a swap first, through the same path
    assert (project / ".wbsync/swap.json").exists()
    shutil.rmtree(project / staged)
    (project / staged).write_bytes(content)
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
    assert not (project / ".wbsync/swap.json").exists()


def _unshare_works() -> bool:
    """Whether this user may bind-mount read-only in a mount namespace of its own (GitHub's Ubuntu
    24.04 runners may refuse unprivileged user namespaces through AppArmor)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(["unshare", "-rm", "mount", "--bind", "-o", "ro", folder, folder], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unprivileged user and mount namespaces (unshare -rm)")
def test_a_read_only_folder_while_finishing_the_swap_exits_2_and_the_next_sync_finishes_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    """EROFS for real: the sync that finishes the swap runs with phi3's folder bind-mounted
    read-only in its own mount namespace."""
    two_entries_upgraded(fake_wandb, project)
    killed_sync(project, after_renames=1)
    folder = project / "models/phi3"
    script = f'mount --bind -o ro "{folder}" "{folder}" && exec "{sys.executable}" -m wbsync sync'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=project, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "models/phi3/" in proc.stderr and "journaled" in proc.stderr and "Traceback" not in proc.stderr
    assert final(folder) == MODEL and (project / ".wbsync/swap.json").exists()
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
    assert not (project / ".wbsync/swap.json").exists()


@pytest.mark.skipif(not _unshare_works(), reason="needs unprivileged user and mount namespaces (unshare -rm)")
def test_a_rename_that_fails_in_the_swap_itself_exits_2_keeps_the_journal_and_the_next_sync_finishes_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    """EBUSY for real, in a sync's own swap (not a finish): phi3's config.json is a mount point
    (bind-mounted onto itself in the sync's mount namespace), so staging beside it works and the
    rename onto it fails after eval's files are swapped. The journal stays; the next sync
    (outside the namespace, where the mount is gone) finishes the swap."""
    two_entries_upgraded(fake_wandb, project)
    config = project / "models/phi3/config.json"
    script = f'mount --bind "{config}" "{config}" && exec "{sys.executable}" -m wbsync sync'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=project, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "models/phi3/config.json" in proc.stderr and "journaled" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert config.read_bytes() == MODEL["config.json"]  # the old file, whole, under its final name
    assert (project / ".wbsync/swap.json").exists()
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
    assert not (project / ".wbsync/swap.json").exists()
    run("verify")


def test_a_sync_stopped_while_it_builds_the_state_takes_its_staged_files_back(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or any failure) after every file was staged but before the journal is written:
    the old tree stays whole and no staged temp file is left beside it. Building the state of a
    large sync takes a while, so this window is real; the failure is injected into wbsync's own
    state builder, the one thing no outside fault can reach at that moment."""
    two_entries_upgraded(fake_wandb, project)
    before = trees(project)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(sys.modules["wbsync.sync"], "state_after", interrupted)  # the module, not wbsync.sync()
        result = run("sync", check=130)
    assert "Traceback" not in result.stderr
    assert trees(project) == before
    assert [k for k in [*tree(project / "data/eval"), *tree(project / "models/phi3")] if ".wbsync-" in k] == []
    assert not (project / ".wbsync/swap.json").exists()
    run("sync")
    assert trees(project) == (EVAL1, MODEL1)
