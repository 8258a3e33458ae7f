"""artifacts.yaml: what loads, what it becomes, and one clear exit-2 message for each mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from wbsync.core.errors import ManifestError
from wbsync.core.models import Manifest, Reference
from wbsync.core.paths import normalize_path
from wbsync.core.schemas import load_schema, validator
from wbsync.repo import manifest as manifest_module
from wbsync.repo.manifest import load_manifest, parse_manifest

REPO = Path(__file__).resolve().parent.parent
HEAD = "version: 1\nartifacts:\n  phi3:\n"  # entry keys of phi3 follow, from line 4 on
PHI3 = "    artifact: wandb-registry-model/phi3:production\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "artifacts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Manifest:
    return load_manifest(write(tmp_path, text))


def mistake(tmp_path: Path, text: str) -> str:
    """The message of the one ManifestError ``text`` raises, checked for its exit code and form."""
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    error = caught.value
    assert error.exit_code == 2
    assert error.message.startswith(f"{path}:")
    assert "\n" not in error.message and "Traceback" not in error.message
    return error.message.removeprefix(f"{path}:")


@dataclass(frozen=True)
class Mistake:
    text: str
    at: str  # "LINE: FIELD" the message starts with, after the file
    says: str  # what the message must also say
    schema_rejects: bool = True  # jsonschema on the same data rejects it too


MISTAKES = {
    "a YAML syntax error names the line and quotes it": Mistake(
        HEAD + PHI3 + "    path: m\n    include: [*.md]\n", "6: invalid YAML at `include: [*.md]`",
        'must be quoted: "*.md"', schema_rejects=False),
    "tabs for indentation say to use spaces": Mistake(
        "version: 1\nartifacts:\n\tphi3: {}\n", "3: invalid YAML at `phi3: {}`", "spaces, not tabs",
        schema_rejects=False),
    "a key indented deeper than its siblings gets an indentation hint, not a quoting one": Mistake(
        HEAD + PHI3 + "      path: m\n", "5: invalid YAML at `path: m`",
        "check the indentation (`path: m` is indented 6 spaces, `artifact: wandb-registry-model/phi3:production` "
        "above it 4)", schema_rejects=False),
    "a key indented less than its siblings gets an indentation hint": Mistake(
        HEAD + PHI3 + "   path: m\n", "5: invalid YAML at `path: m`", "check the indentation", schema_rejects=False),
    "a value with an unquoted colon still gets the quoting hint": Mistake(
        HEAD + PHI3 + "    path: m\n    type: a: b\n", "6: invalid YAML at `type: a: b`",
        'quote values that contain ": "', schema_rejects=False),
    "a missing version asks for version 1": Mistake(
        "artifacts:\n  phi3:\n" + PHI3 + "    path: m\n", "1: version", "add version: 1"),
    "a newer manifest version says to upgrade wbsync": Mistake(
        "version: 2\nlockfiles: {}\n", "1: version", "reads manifest version 1: upgrade wbsync"),
    "a quoted version number asks for the number": Mistake(
        "version: '1'\nartifacts: {}\n", "1: version", "write version: 1"),
    "an alias and a version together": Mistake(
        HEAD + "    registry: model\n    collection: phi3\n    alias: prod\n    version: v3\n    path: m\n",
        "7: artifacts.phi3.version", "either alias or version, not both"),
    "neither an alias nor a version": Mistake(
        HEAD + "    registry: model\n    collection: phi3\n    path: m\n",
        "3: artifacts.phi3", "missing alias or version"),
    "an artifact name and parts together": Mistake(
        HEAD + PHI3 + "    registry: model\n    path: m\n", "5: artifacts.phi3.registry", "not both"),
    "no artifact at all": Mistake(HEAD + "    path: m\n", "3: artifacts.phi3", "names no artifact"),
    "a registry without a collection": Mistake(
        HEAD + "    registry: model\n    alias: a\n    path: m\n", "3: artifacts.phi3", "missing collection"),
    "a missing path": Mistake(HEAD + PHI3, "3: artifacts.phi3", "missing path"),
    "an absolute path": Mistake(
        HEAD + PHI3 + "    path: /srv/models\n", "5: artifacts.phi3.path", "is absolute"),
    "a Windows drive letter": Mistake(
        HEAD + PHI3 + "    path: 'C:/models'\n", "5: artifacts.phi3.path", "is absolute"),
    "a backslash in a path": Mistake(
        HEAD + PHI3 + "    path: models\\phi3\n", "5: artifacts.phi3.path", "write paths with '/'"),
    "a path escaping with ..": Mistake(
        HEAD + PHI3 + "    path: models/../../elsewhere\n", "5: artifacts.phi3.path",
        "leads outside the manifest's folder", schema_rejects=False),
    "the manifest's own folder as a path": Mistake(
        HEAD + PHI3 + "    path: .\n", "5: artifacts.phi3.path", "a folder of its own", schema_rejects=False),
    "two entries with the same path": Mistake(
        HEAD + PHI3 + "    path: models/phi3\n  copy:\n    artifact: wandb-registry-model/x\n"
        "    path: ./models/phi3/\n", "8: artifacts.copy.path",
        "'models/phi3' is the same folder as 'models/phi3', the path of artifacts.phi3 (line 5)",
        schema_rejects=False),
    "a path inside another entry's path": Mistake(
        HEAD + PHI3 + "    path: models\n  tok:\n    artifact: wandb-registry-model/tok\n"
        "    path: models/tok\n", "8: artifacts.tok.path",
        "'models/tok' is inside 'models', the path of artifacts.phi3 (line 5)", schema_rejects=False),
    "paths that differ only in case": Mistake(
        HEAD + PHI3 + "    path: Models/phi3\n  b:\n    artifact: wandb-registry-model/b\n"
        "    path: models\n", "8: artifacts.b.path", "ignoring case", schema_rejects=False),
    "a misspelt key suggests the right one": Mistake(
        HEAD + PHI3 + "    path: m\n    aliass: prod\n", "6: artifacts.phi3.aliass",
        "unknown key. Did you mean alias?"),
    "an entry at the top level says where entries go": Mistake(
        "version: 1\nphi3:\n  path: m\nartifacts: {}\n", "2: phi3", "entries go under artifacts:"),
    "a number for a collection says to quote it": Mistake(
        HEAD + "    registry: model\n    collection: 2024\n    alias: a\n    path: m\n",
        "5: artifacts.phi3.collection", 'got a number (YAML reads unquoted digits as numbers). '
        'Quote it: collection: "2024".'),
    "on as an alias says YAML made it a boolean": Mistake(
        HEAD + "    registry: model\n    collection: c\n    alias: on\n    path: m\n",
        "6: artifacts.phi3.alias", 'expected a string, got a boolean (YAML reads unquoted '
        'yes/no/on/off/true/false as booleans). Quote it: alias: "on".'),
    "1.10 as an alias says YAML made it 1.1": Mistake(
        HEAD + "    registry: model\n    collection: c\n    alias: 1.10\n    path: m\n",
        "6: artifacts.phi3.alias", 'Quote it: alias: "1.10".'),
    "a date as a collection": Mistake(
        HEAD + "    registry: model\n    collection: 2024-05-01\n    alias: a\n    path: m\n",
        "5: artifacts.phi3.collection", "got a date"),
    "a bare number as a version": Mistake(
        HEAD + "    registry: model\n    collection: c\n    version: 3\n    path: m\n",
        "6: artifacts.phi3.version", "write version: v3"),
    "a version that is not v and a number": Mistake(
        HEAD + "    registry: model\n    collection: c\n    version: v1.10\n    path: m\n",
        "6: artifacts.phi3.version", "'v1.10' is not a version"),
    "a version written as an alias": Mistake(
        HEAD + "    registry: model\n    collection: c\n    alias: v3\n    path: m\n",
        "6: artifacts.phi3.alias", "write it as version: v3"),
    "an empty alias": Mistake(
        HEAD + "    registry: model\n    collection: c\n    alias:\n    path: m\n",
        "6: artifacts.phi3.alias", "has no value"),
    "a bad entry name": Mistake(
        "version: 1\nartifacts:\n  my model:\n" + PHI3 + "    path: m\n",
        "3: artifacts.my model", "not a valid entry name"),
    "a number as an entry name": Mistake(
        "version: 1\nartifacts:\n  2024:\n" + PHI3 + "    path: m\n", "3: artifacts.2024", 'Quote it: "2024"',
        schema_rejects=False),  # JSON keys are strings: only YAML can tell 2024 from "2024"
    "a key given twice in YAML": Mistake(
        HEAD + PHI3 + "    path: a\n    path: b\n", "6: artifacts.phi3.path",
        "appears twice (lines 5 and 6)", schema_rejects=False),
    "an entry name given twice": Mistake(
        HEAD + PHI3 + "    path: a\n  phi3:\n" + PHI3 + "    path: b\n", "6: artifacts.phi3",
        "appears twice (lines 3 and 6)", schema_rejects=False),
    "no entries under artifacts": Mistake("version: 1\nartifacts:\n", "2: artifacts", "add at least one"),
    "an empty artifacts mapping": Mistake("version: 1\nartifacts: {}\n", "2: artifacts", "add at least one"),
    "a project artifact instead of a registry one": Mistake(
        HEAD + "    artifact: entity/project/name:v1\n    path: m\n", "4: artifacts.phi3.artifact",
        "wbsync only handles W&B Registry artifacts"),
    "an empty registry name": Mistake(
        HEAD + "    artifact: wandb-registry-/phi3\n    path: m\n", "4: artifacts.phi3.artifact",
        "registry name is empty"),
    "two different orgs for one entry": Mistake(
        HEAD + "    artifact: acme/wandb-registry-model/phi3\n    org: other\n    path: m\n",
        "5: artifacts.phi3.org", "keep one of them", schema_rejects=False),
    "a single glob instead of a list": Mistake(
        HEAD + PHI3 + "    path: m\n    include: '*.md'\n", "6: artifacts.phi3.include", 'write include: ["*.md"]'),
    "an empty include list": Mistake(
        HEAD + PHI3 + "    path: m\n    include: []\n", "6: artifacts.phi3.include", "no file would be synced"),
    "an entity with a space": Mistake(
        HEAD + PHI3 + "    path: m\n    entity: my team\n", "6: artifacts.phi3.entity", "not an entity name"),
    "an empty defaults block": Mistake(
        "version: 1\ndefaults:\nartifacts:\n  phi3:\n" + PHI3 + "    path: m\n", "2: defaults", "got nothing"),
    "an entry that is a string": Mistake(
        "version: 1\nartifacts:\n  phi3: wandb-registry-model/phi3\n", "3: artifacts.phi3", "got a string"),
    "a YAML merge key": Mistake(
        "version: 1\nartifacts:\n  phi3: &base\n" + PHI3 + "    path: a\n  b:\n    <<: *base\n    path: b\n",
        "7: artifacts.b.<<", "merge keys are not supported", schema_rejects=False),
    "a list instead of a mapping": Mistake("- phi3\n", "1: expected a mapping", "got a list"),
    "an empty file": Mistake("# nothing yet\n", "1: the file is empty", "version: 1"),
}


@pytest.mark.parametrize("case", MISTAKES.values(), ids=MISTAKES.keys())
def test_each_mistake_is_one_exit_2_message_naming_the_file_line_and_field(tmp_path: Path, case: Mistake) -> None:
    message = mistake(tmp_path, case.text)
    assert message.startswith(case.at)
    assert case.says in message


@pytest.mark.parametrize("case", [m for m in MISTAKES.values() if m.schema_rejects],
                         ids=[k for k, m in MISTAKES.items() if m.schema_rejects])
def test_the_published_schema_rejects_the_same_mistakes(case: Mistake) -> None:
    assert list(validator("manifest").iter_errors(yaml.safe_load(case.text)))


def test_an_alias_and_a_version_together_is_an_error_naming_the_line(tmp_path: Path) -> None:
    text = HEAD + "    registry: model\n    collection: phi3\n    version: v3\n    alias: prod\n    path: m\n"
    assert mistake(tmp_path, text).startswith("7: artifacts.phi3.alias: give either alias or version")


def test_a_missing_manifest_says_where_it_looked_and_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "artifacts.yaml")
    assert caught.value.exit_code == 2
    assert f"no artifacts.yaml found at {tmp_path / 'artifacts.yaml'}" in caught.value.message
    assert "wbsync add" in caught.value.message and ".example" not in caught.value.message  # pip users have no example file


def test_a_folder_given_as_the_manifest_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        load_manifest(tmp_path)


GOOD = """\
version: 1
source: ./mirror
defaults:
  org: acme
  entity: ml-team
artifacts:
  phi3:
    artifact: wandb-registry-model/phi3-finetuned:production
    path: models/phi3
    type: model
    include: ["*.safetensors", "config.json"]
    exclude: ["*.md"]
  eval:
    registry: Dataset
    collection: eval-set
    version: v12
    path: ./data/raw/../eval/
  ft:
    artifact: other-org/wandb-registry-Fine-tuned Models/phi3
    entity: nlp-team
    path: models/ft
  pinned:
    registry: model
    collection: tok
    alias: "on"
    org: third
    path: models/tok
"""


def test_a_good_manifest_becomes_entries_with_defaults_references_and_lines(tmp_path: Path) -> None:
    result = load(tmp_path, GOOD)
    assert (result.file, result.root, result.source) == (str(tmp_path / "artifacts.yaml"), str(tmp_path), "./mirror")
    assert list(result.entries) == ["phi3", "eval", "ft", "pinned"]
    phi3, eval_, ft, pinned = result.entries.values()
    assert phi3.reference == Reference("model", "phi3-finetuned", alias="production", org="acme")
    assert (phi3.type, phi3.include, phi3.exclude, phi3.entity, phi3.line) == (
        "model", ("*.safetensors", "config.json"), ("*.md",), "ml-team", 7)
    assert eval_.reference == Reference("dataset", "eval-set", version="v12", org="acme")
    assert (eval_.path, eval_.line) == ("data/eval", 13)


def test_an_entry_overrides_the_defaults_and_an_org_in_the_name_wins(tmp_path: Path) -> None:
    ft, pinned = list(load(tmp_path, GOOD).entries.values())[2:]
    assert ft.reference == Reference("Fine-tuned Models", "phi3", alias="latest", org="other-org")
    assert ft.entity == "nlp-team"
    assert pinned.reference == Reference("model", "tok", alias="on", org="third")
    assert pinned.entity == "ml-team"


def test_without_defaults_entries_have_no_org_or_entity(tmp_path: Path) -> None:
    entry = load(tmp_path, HEAD + PHI3 + "    path: m\n").entries["phi3"]
    assert (entry.reference.org, entry.entity, entry.include, entry.exclude) == (None, None, (), ())


@pytest.mark.parametrize(
    ("given", "normal"),
    [("models/phi3", "models/phi3"), ("./models//phi3/", "models/phi3"), ("a/b/../c/.", "a/c"), ("m", "m")],
)
def test_paths_are_normalized_to_plain_posix_paths(given: str, normal: str) -> None:
    assert normalize_path(given) == normal


@pytest.mark.parametrize("given", ["/abs", "C:\\x", "c:x", "~/models", "..", "a/../..", ".", "./", "a/.."])
def test_paths_outside_or_at_the_manifests_folder_are_refused(given: str) -> None:
    with pytest.raises(ValueError):
        normalize_path(given)


def digest_of(text: str, name: str = "phi3") -> str:
    return parse_manifest(text, "artifacts.yaml", "/repo").entries[name].digest()


def test_an_entry_digest_is_stable_across_loads() -> None:
    assert digest_of(GOOD) == digest_of(GOOD)
    assert digest_of(GOOD).startswith("sha256:")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (":production", ":staging"),
        (":production", ":v3"),
        ("path: models/phi3", "path: models/phi-3"),
        ("type: model", "type: dataset"),
        ('"config.json"]', '"config.yaml"]'),
        ('exclude: ["*.md"]', 'exclude: ["*.txt"]'),
        ("org: acme", "org: acme-org"),
        ("entity: ml-team", "entity: other-team"),
    ],
)
def test_an_entry_digest_changes_when_a_field_changes(old: str, new: str) -> None:
    assert old in GOOD
    assert digest_of(GOOD.replace(old, new)) != digest_of(GOOD)


def test_an_entry_digest_ignores_lines_comments_and_key_order() -> None:
    moved = "# pinned for the demo\n\n" + GOOD.replace(
        "    path: models/phi3\n    type: model\n", "    type: model  # checked\n\n    path: models/phi3\n")
    before = parse_manifest(GOOD, "artifacts.yaml", "/repo").entries["phi3"]
    after = parse_manifest(moved, "artifacts.yaml", "/repo").entries["phi3"]
    assert after.line != before.line
    assert after.digest() == before.digest()


def test_a_full_name_and_the_same_parts_give_the_same_digest() -> None:
    parts = HEAD + "    registry: model\n    collection: phi3\n    alias: production\n    path: m\n"
    assert digest_of(parts) == digest_of(HEAD + PHI3 + "    path: m\n")


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    from jsonschema import Draft202012Validator

    schema = load_schema("manifest")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_and_the_loader_allow_the_same_keys() -> None:
    schema = json.loads((REPO / "schema" / "manifest.schema.json").read_text())
    assert set(schema["properties"]) == set(manifest_module._TOP_KEYS)
    assert set(schema["properties"]["defaults"]["properties"]) == set(manifest_module._OWNER_KEYS)
    assert set(schema["$defs"]["entry"]["properties"]) == set(manifest_module._ENTRY_KEYS)


def test_the_example_manifest_loads_cleanly_and_the_schema_accepts_it() -> None:
    example = REPO / "artifacts.yaml.example"
    assert list(load_manifest(example).entries) == ["phi3", "eval", "tokenizer"]
    assert not list(validator("manifest").iter_errors(yaml.safe_load(example.read_text())))
    assert not list(validator("manifest").iter_errors(yaml.safe_load(GOOD)))


def test_a_manifest_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "artifacts.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + PHI3 + "    path: m\n").encode())
    assert load_manifest(path).entries["phi3"].line == 3


def test_loading_a_manifest_does_not_import_jsonschema(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    code = (f"import sys; from wbsync.repo.manifest import load_manifest; load_manifest({str(path)!r}); "
            "sys.exit('jsonschema' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_loading_a_five_entry_manifest_takes_a_few_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  extra:\n" + PHI3 + "    path: extra\n")
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        assert len(load_manifest(path).entries) == 5
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.010
