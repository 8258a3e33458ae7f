"""Every hint points at something a pip user has: commands, not files of the source tree; and
the common mistakes get the message that fixes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import wbsync
from helpers import run, run_json, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.cli import cli
from wbsync.testing import FakeWandb

PACKAGE = Path(wbsync.__file__).parent
# Files a pip user does not have: the repository's notes and docs, the example manifest.
SOURCE_TREE = re.compile(r"DESIGN\.md|protocol notes|wandb-protocol|docs/\w+\.md|artifacts\.yaml\.example")


def _all_help(group=cli, prefix=()) -> dict[str, str]:
    texts = {" ".join(prefix) or "wbsync": run(*prefix, "--help").stdout}
    for name, command in getattr(group, "commands", {}).items():
        texts.update(_all_help(command, (*prefix, name)))
    return texts


def test_no_help_text_cites_a_file_of_the_source_tree() -> None:
    offenders = {name: SOURCE_TREE.findall(text) for name, text in _all_help().items() if SOURCE_TREE.search(text)}
    assert offenders == {}


def test_no_message_in_the_package_cites_a_file_of_the_source_tree() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for string in re.findall(r'f?"[^"\n]*"', path.read_text()):
            if SOURCE_TREE.search(string):
                offenders.append(f"{path.relative_to(PACKAGE)}: {string}")
    assert offenders == []


@pytest.mark.parametrize("args", [("verify",), ("mirror", "../m"), ("sync", "--frozen")])
def test_commands_that_need_a_lock_in_an_empty_folder_point_at_add_not_lock(project: Path, args: tuple) -> None:
    err = run(*args, check=2).stderr
    assert "wbsync add" in err and "wbsync lock" not in err


def test_a_missing_lock_next_to_a_manifest_still_says_run_lock(fake_wandb: FakeWandb, project: Path) -> None:
    write_manifest(project, PHI3)
    assert "wbsync lock" in run("verify", check=2).stderr


def test_an_unknown_alias_lists_the_aliases_that_exist(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    fake_wandb.set_alias("acme", "model", "phi3-finetuned", "staging", 0)
    write_manifest(project, PHI3.replace("production", "prod"))
    err = run("lock", check=3).stderr
    assert "no alias 'prod'" in err and "production" in err and "staging" in err and "v0" in err
    assert "deleted" not in err  # nothing was deleted: the alias never existed


def test_an_unknown_version_lists_the_versions_that_exist(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3.replace("production", "v7"))
    err = run("lock", check=3).stderr
    assert "no version v7" in err and "v0" in err


def test_an_unknown_collection_is_named_and_the_registrys_collections_are_listed_closest_first(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "model", "bert-base", {"a.txt": b"a"}, type="model", aliases=["production"])
    write_manifest(project, PHI3.replace("phi3-finetuned", "phi3-finetune"))
    err = run("lock", check=3).stderr
    assert "no collection 'phi3-finetune' in the registry 'model'" in err
    assert "exist: phi3-finetuned, bert-base." in err  # the near miss first
    assert "project" not in err and "entity" not in err  # not W&B's internal words


def test_an_unknown_registry_is_named_and_the_registries_are_listed_closest_first(fake_wandb: FakeWandb,
                                                                                  project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3.replace("registry-model", "registry-modle"))
    err = run("lock", check=3).stderr
    assert "no registry 'modle'" in err and "exist: model, dataset." in err
    assert "project" not in err and "entity" not in err


def test_the_registry_prefix_in_the_parts_form_is_a_manifest_error_with_the_fix(project: Path,
                                                                                fake_wandb: FakeWandb) -> None:
    write_manifest(project, """
        version: 1
        artifacts:
          ft:
            registry: wandb-registry-Fine-tuned Models
            collection: ft
            alias: production
            path: models/ft
    """)
    err = run("lock", check=2).stderr
    assert "artifacts.yaml:4" in err and "registry" in err and 'registry: "Fine-tuned Models"' in err
    assert fake_wandb.requests == []  # refused before asking W&B


def test_an_unquoted_registry_name_with_a_space_gets_a_quoting_hint(project: Path) -> None:
    result = run("add", "wandb-registry-Fine-tuned", "Models/ft:production", "--path", "m", check=2)
    assert "quoted" in result.stderr and "'wandb-registry-Fine-tuned Models/ft:production'" in result.stderr


def test_outdated_exits_1_when_an_alias_moved_and_0_when_none_did(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    assert run_json("outdated", check=0)["outdated"] == []
    publish(fake_wandb, {"config.json": b"{}"})
    doc = run_json("outdated", check=1)
    assert {"command", "checked", "outdated"} <= set(doc) and doc["outdated"][0]["new_version"] == "v1"
