"""Finding artifacts.yaml: upwards from the current folder to the git repository's root, one
rule for the CLI and the Python API; `-m` wins; `add` edits the manifest it finds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import wbsync
from helpers import run, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.api import discover
from wbsync.testing import FakeWandb

EVAL = {"eval.jsonl": b'{"q": 1}\n'}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository (a `.git` folder is all the search looks for), made the current folder."""
    folder = tmp_path / "repo"
    (folder / ".git").mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


def test_sync_in_a_subfolder_uses_the_manifest_above_and_says_which(fake_wandb: FakeWandb, repo: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(repo, PHI3)
    (repo / "models").mkdir()
    monkeypatch.chdir(repo / "models")
    result = run("sync")
    assert "using ../artifacts.yaml" in result.stderr
    assert tree(repo / "models/phi3") == MODEL and not (repo / "models/artifacts.lock").exists()
    assert "using" not in run("verify", "-q").stderr  # -q: errors only


def test_the_current_folder_is_not_announced(fake_wandb: FakeWandb, repo: Path) -> None:
    publish(fake_wandb)
    write_manifest(repo, PHI3)
    assert "using" not in run("sync").stderr


def test_the_search_stops_at_the_git_repository_root(fake_wandb: FakeWandb, repo: Path) -> None:
    write_manifest(repo.parent, PHI3)  # outside the repository: never this project's
    result = run("sync", check=2)
    assert "no artifacts.yaml" in result.stderr and f"repository root {repo}" in result.stderr
    assert "wbsync add" in result.stderr
    with pytest.raises(wbsync.WbsyncError, match="repository root"):
        wbsync.lock()


def test_outside_a_repository_the_search_goes_to_the_filesystem_root(fake_wandb: FakeWandb, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(tmp_path, PHI3)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert "using ../../artifacts.yaml" in run("lock").stderr
    assert (tmp_path / "artifacts.lock").is_file()


def test_a_lone_lockfile_serves_commands_that_need_only_the_lock(fake_wandb: FakeWandb, repo: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(repo, PHI3)
    run("sync")
    (repo / "artifacts.yaml").unlink()  # as in an image that ships the lock and the files
    monkeypatch.chdir(repo / "models")
    assert "using ../artifacts.lock" in run("verify").stderr
    run("sync", "--frozen")
    assert "no artifacts.yaml" in run("lock", check=2).stderr  # lock needs the manifest itself


def test_a_lone_lock_does_not_hide_the_manifest_above_from_lock(fake_wandb: FakeWandb, repo: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(repo, PHI3)
    sub = repo / "image"
    sub.mkdir()
    (sub / "artifacts.lock").write_text("# not this one\n")
    monkeypatch.chdir(sub)
    run("lock")
    assert (repo / "artifacts.lock").is_file()


def test_an_explicit_manifest_wins_over_the_search(fake_wandb: FakeWandb, repo: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(repo, PHI3)
    other = repo / "other"
    other.mkdir()
    write_manifest(other, PHI3.replace("models/phi3", "weights"))
    result = run("sync", "-m", str(other / "artifacts.yaml"))
    assert "using" not in result.stderr
    assert tree(other / "weights") == MODEL and not (repo / "artifacts.lock").exists()


def test_the_cli_and_the_python_api_pick_the_same_manifest(fake_wandb: FakeWandb, repo: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    write_manifest(repo.parent, PHI3)  # above the repository: neither may take it
    (repo / "ml").mkdir()
    write_manifest(repo / "ml", PHI3)
    deep = repo / "ml" / "notebooks" / "eda"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert discover().manifest_path == repo / "ml" / "artifacts.yaml"
    assert "using ../../artifacts.yaml" in run("sync").stderr
    assert wbsync.path("phi3") == repo / "ml" / "models" / "phi3"


def test_add_in_a_subfolder_edits_the_manifest_above_with_its_path_relative_to_it(
        fake_wandb: FakeWandb, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "dataset", "eval-set", EVAL, type="dataset")
    write_manifest(repo, PHI3)
    (repo / "models").mkdir()
    monkeypatch.chdir(repo / "models")
    result = run("add", "wandb-registry-dataset/eval-set:v0", "--path", "data/eval")
    assert "../artifacts.yaml" in result.stdout and "../data/eval/" in result.stdout  # the resolved destination
    assert sorted(p.name for p in (repo / "models").iterdir()) == []  # no second manifest or lock
    entries = yaml.safe_load((repo / "artifacts.yaml").read_text())["artifacts"]
    assert entries["eval-set"]["path"] == "data/eval"
    run("sync", "eval-set")
    assert tree(repo / "data/eval") == EVAL


def test_add_with_no_manifest_anywhere_starts_one_here_and_says_so(fake_wandb: FakeWandb, repo: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wandb.log_artifact("acme", "dataset", "eval-set", EVAL, type="dataset")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    result = run("add", "wandb-registry-dataset/eval-set:v0", "--path", "data/eval")
    assert "started one here" in result.stdout
    assert (repo / "sub" / "artifacts.yaml").is_file() and not (repo / "artifacts.yaml").exists()
