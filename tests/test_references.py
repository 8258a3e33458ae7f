"""Registry references: every form the W&B App shows, and the mistakes users make typing them."""

from __future__ import annotations

import pytest

from wbsync.core.models import Reference
from wbsync.core.references import check_alias, check_registry, check_version, parse_reference, reference_from_parts

FORMS = {
    "wandb-registry-model/phi3-finetuned:production": Reference("model", "phi3-finetuned", alias="production"),
    "wandb-registry-model/phi3-finetuned:v3": Reference("model", "phi3-finetuned", version="v3"),
    "wandb-registry-dataset/eval-set:v0": Reference("dataset", "eval-set", version="v0"),
    "acme/wandb-registry-model/phi3:latest": Reference("model", "phi3", alias="latest", org="acme"),
    "acme-org/wandb-registry-model/phi3:v12": Reference("model", "phi3", version="v12", org="acme-org"),
    "Acme Corp/wandb-registry-model/phi3:prod": Reference("model", "phi3", alias="prod", org="Acme Corp"),
    "wandb-registry-Fine-tuned Models/phi3-finetuned:production": Reference(
        "Fine-tuned Models", "phi3-finetuned", alias="production"
    ),
    "wandb-registry-model/my_model.v2:release-1.0": Reference("model", "my_model.v2", alias="release-1.0"),
}


@pytest.mark.parametrize("text", FORMS)
def test_every_full_name_form_parses_to_its_parts(text: str) -> None:
    assert parse_reference(text) == FORMS[text]


@pytest.mark.parametrize("text", FORMS)
def test_a_parsed_reference_prints_back_as_the_same_full_name(text: str) -> None:
    reference = parse_reference(text)
    assert reference.full_name() == text
    assert parse_reference(str(reference)) == reference


def test_a_name_without_an_alias_means_latest_as_in_wandb() -> None:
    reference = parse_reference("wandb-registry-model/phi3")
    assert (reference.alias, reference.version) == ("latest", None)
    assert reference.full_name() == "wandb-registry-model/phi3:latest"


def test_a_v_and_a_number_is_a_version_and_anything_else_an_alias() -> None:
    assert parse_reference("wandb-registry-model/c:v7").version == "v7"
    assert parse_reference("wandb-registry-model/c:v7-rc").alias == "v7-rc"
    assert parse_reference("wandb-registry-model/c:v1.10").alias == "v1.10"


@pytest.mark.parametrize("typed", ["Model", "MODEL", "model"])
def test_core_registries_typed_as_the_app_shows_them_become_model(typed: str) -> None:
    assert parse_reference(f"wandb-registry-{typed}/phi3:prod").registry == "model"
    assert check_registry(typed.replace("odel", "ODEL")) == "model"
    assert check_registry("Dataset") == "dataset"


def test_custom_registry_names_keep_their_case_and_spaces() -> None:
    assert check_registry("Fine-tuned Models") == "Fine-tuned Models"
    assert check_registry("Models") == "Models"


def test_a_project_artifact_is_refused_with_the_registry_form_to_use() -> None:
    with pytest.raises(ValueError) as caught:
        parse_reference("entity/project/name:v1")
    message = str(caught.value)
    assert "wbsync only handles W&B Registry artifacts" in message
    assert "[ORG/]wandb-registry-REGISTRY/COLLECTION:ALIAS" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("phi3:v1", "not a registry artifact"),
        ("wandb-registry-/phi3:v1", "registry name is empty"),
        ("wandb-registry-model/:v1", "collection name is empty"),
        ("wandb-registry-model:v1", "names no collection"),
        ("wandb-registry-model/phi3:", "nothing after ':'"),
        ("/wandb-registry-model/phi3:v1", "org name is empty"),
        ("a/b/wandb-registry-model/phi3:v1", "too many '/'"),
        ("wandb-registry-model/phi3/extra:v1", "too many '/'"),
        ("wandb-registry-model/phi3:pro/d", "'pro/d' is not a valid alias"),
        ("wandb-registry-model/phi3:pro@d", "not a valid alias"),
        ("wandb-registry-model/phi3:a:b", "not a valid alias"),
        ("wandb-registry-model/phi 3:v1", "collection name 'phi 3' is invalid"),
        ("wandb-registry-my#reg/phi3:v1", "contains #"),
        ("wandb-registry-model/phi3:v01", "write v1"),
        (" wandb-registry-model/phi3:v1", "spaces at the start or end"),
        ("wandb-registry- model/phi3:v1", "spaces at the start or end"),
    ],
)
def test_malformed_references_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_reference(text)
    assert says in str(caught.value)
    assert str(caught.value).endswith(".")


def test_parts_need_exactly_one_of_alias_and_version() -> None:
    assert reference_from_parts("Model", "phi3", version="v2") == Reference("model", "phi3", version="v2")
    for selector in ({}, {"alias": "prod", "version": "v2"}):
        with pytest.raises(ValueError, match="exactly one"):
            reference_from_parts("model", "phi3", **selector)


def test_an_alias_that_is_a_version_says_to_write_it_as_a_version() -> None:
    with pytest.raises(ValueError, match="version: v3"):
        check_alias("v3")


def test_a_version_that_is_not_v_and_a_number_suggests_an_alias() -> None:
    with pytest.raises(ValueError, match="use alias instead"):
        check_version("production")
