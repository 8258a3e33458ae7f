"""wbsync add: a new entry in artifacts.yaml, every other byte kept, then locked (or rolled back)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.core.errors import UsageError
from wbsync.repo.manifest import parse_manifest
from wbsync.repo.manifest_edit import add_entry, default_name, new_entry
from wbsync.testing import FakeWandb

REF = "wandb-registry-model/phi3-finetuned:production"
DATA = {"eval.jsonl": b'{"q": 1}\n', "README.md": b"# eval\n"}

# Four-space indents, comments everywhere, a blank line between entries, a column-0 comment and
# another top-level key after artifacts:, and a version quoted oddly: all of it must survive.
COMMENTED = """\
# Our models. Ask #ml-infra before changing aliases.
version: 1   # manifest format

artifacts:
    # the tokenizer moves with the model
    tokenizer:
        artifact: "wandb-registry-model/tok:v0"   # pinned on purpose
        path: models/tok

    # eval data, refreshed weekly
    eval:
        artifact: wandb-registry-dataset/eval-set:latest
        path: data/eval
        exclude: ["*.md"]
    # old: big-model (removed 2025-01)

# defaults go last in this repo
defaults:
    org: acme
"""

ADDED = """\

    phi3-finetuned:
        artifact: wandb-registry-model/phi3-finetuned:production
        path: models/phi3
"""


def publish_all(srv: FakeWandb) -> None:
    publish(srv)
    srv.log_artifact("acme", "model", "tok", {"tok.json": b"{}"}, type="model")
    srv.log_artifact("acme", "dataset", "eval-set", DATA, type="dataset")


def edit(text: str | None, reference: str = REF, path: str = "models/phi3", **kw: object) -> str:
    """The pure text edit, without locking."""
    return add_entry(text, new_entry(reference, path, **kw), "artifacts.yaml", "/project")  # type: ignore[arg-type]


def test_add_keeps_a_commented_manifest_byte_for_byte_outside_the_new_entry(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish_all(fake_wandb)
    manifest = write_manifest(project, COMMENTED)
    run("lock")
    before = manifest.read_bytes()
    run("add", REF, "--path", "models/phi3")
    after = manifest.read_bytes()
    cut = before.index(b"    # old: big-model")  # the new entry goes after the block's last line
    cut = before.index(b"\n", cut) + 1
    assert after == before[:cut] + ADDED.encode() + before[cut:]
    locked = yaml.safe_load((project / "artifacts.lock").read_text())["artifacts"]
    assert set(locked) == {"tokenizer", "eval", "phi3-finetuned"} and locked["phi3-finetuned"]["version"] == "v0"


def test_add_to_a_missing_manifest_creates_one_with_a_version_header_and_sync_then_fetches_it(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    out = run("add", REF, "--path", "models/phi3/").stdout
    assert "Created artifacts.yaml: added phi3-finetuned" in out and "new v0" in out
    text = (project / "artifacts.yaml").read_text()
    assert text.startswith("# artifacts.yaml:") and "\nversion: 1\n" in text
    manifest = parse_manifest(text, "artifacts.yaml", str(project))
    assert manifest.entries["phi3-finetuned"].path == "models/phi3"
    run("sync", "--locked")
    assert tree(project / "models/phi3") == MODEL


def test_add_with_a_name_that_exists_exits_2_and_leaves_the_file_untouched(
        fake_wandb: FakeWandb, project: Path) -> None:
    manifest = write_manifest(project, COMMENTED)
    before = manifest.read_bytes()
    err = run("add", REF, "--path", "models/other", "--name", "eval", check=2).stderr
    assert "artifacts.yaml:11: an entry named 'eval' already exists" in err and "--name" in err
    assert manifest.read_bytes() == before
    assert not (project / "artifacts.lock").exists()


@pytest.mark.parametrize("path", ["data/eval", "data/eval/more", "data", "Models/Tok"])
def test_add_with_a_path_that_overlaps_an_entry_exits_2_and_leaves_the_file_untouched(
        project: Path, path: str) -> None:
    manifest = write_manifest(project, COMMENTED)
    before = manifest.read_bytes()
    err = run("add", REF, "--path", path, check=2).stderr
    assert "overlaps" in err and "give each entry a folder of its own" in err
    assert manifest.read_bytes() == before


def test_add_with_an_unknown_alias_exits_3_and_leaves_the_manifest_as_it_was(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    manifest = write_manifest(project, PHI3)
    run("lock")
    before, lock_before = manifest.read_bytes(), (project / "artifacts.lock").read_bytes()
    err = run("add", "wandb-registry-model/phi3-finetuned:nosuch", "--path", "models/x", check=3).stderr
    assert "phi3-finetuned:nosuch" in err and "artifacts.yaml was left as it was" in err
    assert manifest.read_bytes() == before
    assert (project / "artifacts.lock").read_bytes() == lock_before


def test_add_to_a_missing_manifest_that_fails_to_lock_creates_nothing(fake_wandb: FakeWandb, project: Path) -> None:
    err = run("add", REF, "--path", "models/phi3", check=3).stderr
    assert "artifacts.yaml was not created" in err
    assert sorted(p.name for p in project.iterdir() if p.name != ".wbsync") == []


@pytest.mark.parametrize("reference", ["models/phi3", "wandb-registry-model/", "wandb-registry-model/phi3:v01"])
def test_add_with_an_invalid_reference_exits_2_without_touching_anything(project: Path, reference: str) -> None:
    assert "REFERENCE:" in run("add", reference, "--path", "models/phi3", check=2).stderr
    assert not (project / "artifacts.yaml").exists()


@pytest.mark.parametrize(("option", "value"), [("--path", "../outside"), ("--path", "/abs"),
                                               ("--name", "-bad"), ("--type", "a/b")])
def test_add_with_an_invalid_option_value_exits_2_naming_the_option(project: Path, option: str, value: str) -> None:
    args = {"--path": "models/phi3", option: value}
    err = run("add", REF, *[x for kv in args.items() for x in kv], check=2).stderr
    assert option in err


def test_add_with_include_and_exclude_writes_them_and_locks_only_the_matching_files(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, "version: 1\nartifacts: {}\n")
    doc = run_json("add", REF, "--path", "models/phi3", "--name", "phi3", "--type", "model",
                   "--include", "*.json", "--include", "weights/*", "--exclude", "*.md")
    assert (project / "artifacts.yaml").read_text() == textwrap.dedent("""\
        version: 1
        artifacts:
          phi3:
            artifact: wandb-registry-model/phi3-finetuned:production
            path: models/phi3
            type: model
            include: ["*.json", "weights/*"]
            exclude: ["*.md"]
        """)
    assert doc["lock"]["entries"]["phi3"]["files"] == 2


def test_the_name_defaults_to_the_collection_name_made_a_valid_entry_name() -> None:
    assert default_name("phi3-finetuned") == "phi3-finetuned"
    assert default_name("_phi3.v2") == "phi3.v2"
    assert default_name("...") == "artifact"
    assert "  eval-set:\n" in edit(None, "acme/wandb-registry-dataset/eval-set:v3", "data")


def test_an_empty_flow_mapping_is_rewritten_on_its_own_line_keeping_its_comment() -> None:
    text = "version: 1\nartifacts: {}   # nothing yet\ndefaults: {org: acme}\n"
    assert edit(text, name="phi3") == (
        "version: 1\nartifacts:   # nothing yet\n"
        "  phi3:\n    artifact: wandb-registry-model/phi3-finetuned:production\n    path: models/phi3\n"
        "defaults: {org: acme}\n")


@pytest.mark.parametrize("empty", ["artifacts:", "artifacts: ~", "artifacts: null", 'artifacts: ""'])
def test_an_artifacts_key_without_entries_gets_the_first_one(empty: str) -> None:
    out = edit(f"version: 1\n{empty}\n", name="phi3")
    assert out == "version: 1\nartifacts:\n  phi3:\n    artifact: " + REF + "\n    path: models/phi3\n"


def test_a_manifest_without_an_artifacts_key_gets_one_at_the_end() -> None:
    assert edit("version: 1  # no newline at the end", name="p").endswith(
        "# no newline at the end\nartifacts:\n  p:\n    artifact: " + REF + "\n    path: models/phi3\n")


def test_flow_style_entries_get_a_flow_style_neighbour() -> None:
    text = "version: 1\nartifacts:\n  a: {artifact: wandb-registry-model/a, path: a}\n"
    assert edit(text, name="b").endswith(
        '  a: {artifact: wandb-registry-model/a, path: a}\n'
        '  b: {artifact: "wandb-registry-model/phi3-finetuned:production", path: models/phi3}\n')
    text = "version: 1\nartifacts: {a: {artifact: wandb-registry-model/a, path: a}}  # one line\n"
    assert edit(text, name="b") == (
        'version: 1\nartifacts: {a: {artifact: wandb-registry-model/a, path: a}, '
        'b: {artifact: "wandb-registry-model/phi3-finetuned:production", path: models/phi3}}  # one line\n')


def test_values_yaml_would_misread_are_quoted_and_read_back_exactly() -> None:
    out = edit(None, "acme/wandb-registry-Fine-tuned Models/tok:v4", "models/tok #1: yes",
               name="true", type="1.10", include=("*.json", 'a"b'))
    assert '  "true":\n' in out and 'path: "models/tok #1: yes"' in out and 'type: "1.10"' in out
    entry = parse_manifest(out, "artifacts.yaml", "/project").entries["true"]
    assert (entry.path, entry.type, entry.include) == ("models/tok #1: yes", "1.10", ("*.json", 'a"b'))
    assert entry.reference.registry == "Fine-tuned Models" and entry.reference.org == "acme"


def test_crlf_line_endings_and_a_byte_order_mark_are_kept() -> None:
    text = "\ufeffversion: 1\r\nartifacts:\r\n  a:\r\n    artifact: wandb-registry-model/a\r\n    path: a\r\n"
    out = edit(text, name="b", path="b")
    assert out == text + "  b:\r\n    artifact: " + REF + "\r\n    path: b\r\n"


def test_an_invalid_manifest_is_reported_as_it_is_and_not_edited(project: Path) -> None:
    manifest = write_manifest(project, "version: 1\nartifacts:\n  a:\n    path: a\n")
    before = manifest.read_bytes()
    assert "artifacts.yaml:3: artifacts.a: names no artifact" in run("add", REF, "--path", "b", check=2).stderr
    assert manifest.read_bytes() == before
    with pytest.raises(UsageError):  # the same checks without the CLI
        edit("version: 1\nartifacts:\n  phi3: {artifact: wandb-registry-model/x, path: p}\n", name="phi3")


def test_add_keeps_the_manifests_permissions(fake_wandb: FakeWandb, project: Path) -> None:
    publish_all(fake_wandb)
    manifest = write_manifest(project, COMMENTED)
    manifest.chmod(0o600)
    run("add", REF, "--path", "models/phi3", "-q")
    assert os.stat(manifest).st_mode & 0o777 == 0o600


def test_add_help_shows_an_example() -> None:
    out = run("add", "--help").stdout
    assert "Examples:" in out and "wbsync add wandb-registry-model/" in out and "--path" in out
