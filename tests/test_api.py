"""The Python API: wbsync.path / paths / locked / lock / sync / use_artifacts, in-process.

The online lineage (a real wandb run against the fake server) is in test_lineage.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wbsync
from helpers import tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.errors import CheckFailed, ManifestError, NotSyncedError, UsageError
from wbsync.testing import FakeWandb


@pytest.fixture
def synced(fake_wandb: FakeWandb, project: Path) -> Path:
    """phi3 published, locked and synced into the current project."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.sync()
    return project


def test_path_is_the_absolute_directory_of_a_synced_entry(synced: Path) -> None:
    found = wbsync.path("phi3")
    assert found == synced / "models/phi3" and found.is_absolute()
    assert tree(found) == MODEL


def test_path_before_any_sync_names_the_command_to_run(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.lock()
    with pytest.raises(NotSyncedError, match=r"3 files missing.*Run `wbsync sync phi3`") as err:
        wbsync.path("phi3")
    assert isinstance(err.value, CheckFailed) and err.value.exit_code == 1


def test_path_notices_a_deleted_and_an_edited_file(synced: Path) -> None:
    (synced / "models/phi3/README.md").unlink()
    (synced / "models/phi3/config.json").write_text('{"layers": 64}\n')
    with pytest.raises(NotSyncedError, match="1 file missing, 1 file changed or not verified") as err:
        wbsync.path("phi3")
    assert "wbsync sync phi3" in str(err.value)
    wbsync.sync("phi3")
    assert tree(wbsync.path("phi3")) == MODEL


def test_path_refuses_an_entry_the_manifest_changed_since_it_was_locked(synced: Path) -> None:
    write_manifest(synced, PHI3.replace("production", "v0"))
    with pytest.raises(NotSyncedError, match=r"changes to phi3 .*`wbsync sync phi3`"):
        wbsync.path("phi3")


def test_path_makes_no_request(synced: Path, fake_wandb: FakeWandb) -> None:
    fake_wandb.clear_requests()
    wbsync.path("phi3")
    assert fake_wandb.requests == []


def test_the_manifest_is_found_in_a_parent_folder_and_the_command_works_from_there(synced: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    notebooks = synced / "notebooks" / "eda"
    notebooks.mkdir(parents=True)
    monkeypatch.chdir(notebooks)
    assert wbsync.path("phi3") == synced / "models/phi3"
    (synced / "models/phi3/README.md").unlink()
    with pytest.raises(NotSyncedError, match=r"`wbsync sync phi3`"):  # the CLI finds it from here too
        wbsync.path("phi3")


def test_a_lone_lockfile_is_found_too_as_in_an_image_without_the_manifest(synced: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (synced / "artifacts.yaml").unlink()
    monkeypatch.chdir(synced / "models")
    assert wbsync.path("phi3") == synced / "models/phi3"


def test_an_explicit_manifest_and_lockfile_are_used_from_anywhere(fake_wandb: FakeWandb, tmp_path: Path,
                                                                  project: Path) -> None:
    publish(fake_wandb)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = write_manifest(elsewhere, PHI3)
    result = wbsync.sync(manifest=manifest, lockfile=elsewhere / "pins.lock")
    assert result.fetched_files == len(MODEL) and (elsewhere / "pins.lock").is_file()
    assert wbsync.path("phi3", manifest=manifest, lockfile=elsewhere / "pins.lock") == elsewhere / "models/phi3"
    (elsewhere / "models/phi3/README.md").unlink()
    with pytest.raises(NotSyncedError, match="--lockfile"):
        wbsync.path("phi3", manifest=manifest, lockfile=elsewhere / "pins.lock")


def test_no_manifest_here_or_above_is_a_manifest_error(project: Path) -> None:
    with pytest.raises(ManifestError, match="neither artifacts.lock nor artifacts.yaml") as err:
        wbsync.path("phi3")
    assert "wbsync add" in err.value.message


def test_locked_returns_the_lock_entry_with_the_pinned_reference(synced: Path) -> None:
    entry = wbsync.locked("phi3")
    assert entry.resolved == "acme-org/wandb-registry-model/phi3-finetuned:v0" and entry.version == "v0"
    assert entry.requested == "wandb-registry-model/phi3-finetuned:production"
    assert sorted(f.path for f in entry.files) == sorted(MODEL)


def test_an_unknown_name_is_a_usage_error_listing_the_known_ones(synced: Path) -> None:
    with pytest.raises(UsageError, match="Known entries: phi3"):
        wbsync.path("llama")
    with pytest.raises(UsageError, match="Known entries: phi3"):
        wbsync.locked("llama")


def test_lock_and_sync_return_results_and_print_nothing(fake_wandb: FakeWandb, project: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    locked = wbsync.lock()
    assert locked.written and [c.name for c in locked.changes] == ["phi3"]
    first = wbsync.sync()
    assert first.fetched_files == len(MODEL) and not first.noop
    assert wbsync.sync(["phi3"], frozen=True).noop
    assert capfd.readouterr() == ("", "")


def test_sync_locked_with_a_stale_lock_raises_instead_of_exiting(synced: Path) -> None:
    write_manifest(synced, PHI3.replace("models/phi3", "models/other"))
    with pytest.raises(CheckFailed, match="out of date"):
        wbsync.sync(locked=True)
    with pytest.raises(CheckFailed):
        wbsync.lock(check=True)


def test_a_bad_link_mode_is_a_usage_error(synced: Path) -> None:
    with pytest.raises(UsageError, match="link mode 'symlink'"):
        wbsync.sync(link_mode="symlink")  # type: ignore[arg-type]


def test_wbsync_sync_stays_the_function_after_the_submodule_is_imported() -> None:
    import wbsync.sync as module  # noqa: F401 - the import system assigns the submodule to the package
    from wbsync.sync import run_sync

    assert wbsync.sync.__module__ == "wbsync.api" and callable(run_sync)


IMPORT_PROBE = """
import sys
import wbsync
assert "wandb" not in sys.modules and "yaml" not in sys.modules, "import wbsync is not cheap"
print(wbsync.path("phi3"))
assert "wandb" not in sys.modules, "wbsync.path imported wandb"
print("NO-WANDB")
"""


def test_import_wbsync_and_path_do_not_import_wandb(synced: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=synced, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(synced / "models/phi3"), "NO-WANDB"]


class RecordingRun:
    """Stands in for a wandb Run where only the wiring is tested (test_lineage.py uses real runs)."""

    def __init__(self, digest: str | None = None, offline: bool = False) -> None:
        self.used: list[str] = []
        self.digest, self.offline = digest, offline

    def use_artifact(self, artifact_or_name: str, /) -> Any:
        if self.offline:
            raise TypeError("Cannot use artifact when in offline mode.")
        self.used.append(artifact_or_name)
        return type("Artifact", (), {"digest": self.digest})()


def test_use_artifacts_checks_the_tree_before_touching_the_run(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    wbsync.lock()
    run = RecordingRun()
    with pytest.raises(NotSyncedError, match="wbsync sync phi3"):
        wbsync.use_artifacts(run)
    assert run.used == []


def test_use_artifacts_uses_the_pinned_version_and_returns_the_paths(synced: Path) -> None:
    run = RecordingRun(digest=wbsync.locked("phi3").digest)
    assert wbsync.use_artifacts(run) == {"phi3": synced / "models/phi3"}
    assert run.used == ["acme-org/wandb-registry-model/phi3-finetuned:v0"]


def test_use_artifacts_refuses_an_artifact_whose_digest_is_not_the_locked_one(synced: Path) -> None:
    from wbsync.core.errors import IntegrityError

    with pytest.raises(IntegrityError, match="wbsync lock --upgrade"):
        wbsync.use_artifacts(RecordingRun(digest="0" * 32))


def test_use_artifacts_in_an_offline_run_warns_and_still_returns_the_paths(synced: Path) -> None:
    with pytest.warns(UserWarning, match="offline"):
        assert wbsync.use_artifacts(RecordingRun(offline=True), "phi3") == {"phi3": synced / "models/phi3"}


def test_py_typed_ships_with_the_package() -> None:
    assert (Path(wbsync.__file__).parent / "py.typed").is_file()
    assert os.path.getsize(Path(wbsync.__file__).parent / "py.typed") == 0
