"""The fake W&B server, driven by the real wandb SDK (nothing in wandb is patched)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import wandb
from wandb.errors import AuthenticationError, CommError

from wbsync.testing import FakeWandb, Fault, LoggedVersion

FILES = {"model.txt": b"weights v0\n", "config/params.json": b'{"lr": 0.1}', "README.md": b"# readme\n"}
REF = "wandb-registry-model/phi3:production"


def make_api(entity: str | None = "myteam") -> wandb.Api:
    return wandb.Api(overrides={"entity": entity} if entity else None)


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def read_tree(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def raw_request(
    srv: FakeWandb, method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request through http.client, for what the SDK can't show (ranges, raw statuses)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def graphql(srv: FakeWandb, query: str, variables: dict | None = None) -> tuple[int, dict]:
    auth = base64.b64encode(f"api:{srv.api_key}".encode()).decode()
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    status, _, payload = raw_request(srv, "POST", f"{srv.url}/graphql", body, Authorization=f"Basic {auth}")
    return status, json.loads(payload)


@pytest.fixture
def two_versions(fake_wandb: FakeWandb) -> tuple[LoggedVersion, LoggedVersion]:
    """phi3 v0 (production) and v1 (latest) in the model registry."""
    v0 = fake_wandb.log_artifact(
        "acme", "model", "phi3", FILES, aliases=["production"], metadata={"acc": 0.9}
    )
    v1 = fake_wandb.log_artifact("acme", "model", "phi3", {**FILES, "model.txt": b"weights v1\n"})
    return v0, v1


# -- resolving --------------------------------------------------------------------------


@pytest.mark.core
def test_an_alias_resolves_to_the_registry_version_it_points_at(two_versions, fake_wandb):
    v0, _ = two_versions
    artifact = make_api().artifact(REF)
    assert (artifact.version, artifact.name, artifact.id) == ("v0", "phi3:production", v0.artifact_id)
    assert (artifact.entity, artifact.project, artifact.source_name) == (
        "acme-org",
        "wandb-registry-model",
        "phi3-src:v0",
    )
    assert artifact.aliases == ["production"] and artifact.metadata == {"acc": 0.9} and artifact.is_link
    assert artifact.digest == v0.digest
    assert fake_wandb.operations() == [
        "Viewer",
        "FetchOrgInfoFromEntity",
        "ServerFeaturesQuery",
        "ArtifactMembershipByName",
    ]


def test_a_version_number_or_no_alias_resolves_by_the_registry_numbering(two_versions):
    api = make_api()
    assert api.artifact("wandb-registry-model/phi3:v1").version == "v1"
    latest = api.artifact("wandb-registry-model/phi3")
    assert (latest.version, latest.name, latest.digest) == ("v1", "phi3:v1", two_versions[1].digest)


@pytest.mark.parametrize("org", ["acme", "acme-org"])
def test_an_org_prefix_may_be_the_display_name_or_the_org_entity(two_versions, fake_wandb, org):
    artifact = make_api().artifact(f"{org}/{REF}")
    assert (artifact.version, artifact.entity) == ("v0", "acme-org")
    membership = [r for r in fake_wandb.requests if r.operation == "ArtifactMembershipByName"]
    assert membership[0].variables["entity"] == "acme-org"


def test_a_personal_entity_finds_its_org_when_no_entity_is_configured(two_versions, fake_wandb):
    assert make_api(entity=None).artifact(REF).version == "v0"
    org_lookup = [r for r in fake_wandb.requests if r.operation == "FetchOrgInfoFromEntity"]
    assert "GetDefaultEntity" in fake_wandb.operations() and org_lookup[0].variables == {"entity": "alice"}


def test_a_source_project_path_resolves_to_the_logged_sequence(two_versions):
    artifact = make_api().artifact("myteam/training/phi3-src:v1")
    assert (artifact.version, artifact.is_link, artifact.digest) == ("v1", False, two_versions[1].digest)


def test_a_registry_with_a_space_in_its_name_resolves_and_downloads(fake_wandb, tmp_path):
    fake_wandb.add_registry("acme", "Fine-tuned Models")
    fake_wandb.log_artifact("acme", "Fine-tuned Models", "phi3", FILES)
    artifact = make_api().artifact("wandb-registry-Fine-tuned Models/phi3:latest")
    assert artifact.project == "wandb-registry-Fine-tuned Models"
    assert read_tree(artifact.download(tmp_path / "out")) == FILES


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("wandb-registry-model/phi3:nosuch", "artifact membership 'phi3:nosuch' not found"),
        ("wandb-registry-model/nosuch:latest", "artifact membership 'nosuch:latest' not found"),
        ("wandb-registry-nosuch/phi3:latest", "project 'wandb-registry-nosuch' not found"),
    ],
)
def test_an_unknown_alias_collection_or_registry_raises_comm_error(two_versions, name, message):
    with pytest.raises(CommError, match=message):
        make_api().artifact(name)


def test_a_bad_api_key_raises_authentication_error(fake_wandb):
    with pytest.raises(AuthenticationError, match="user is not logged in"):
        wandb.Api(api_key="k" * 40, overrides={"base_url": fake_wandb.url})
    assert [(r.operation, r.status) for r in fake_wandb.requests] == [("Viewer", 401)]


def test_another_user_with_their_own_key_is_recognized(fake_wandb, two_versions):
    key = fake_wandb.add_user("bob", orgs=["acme"])
    api = wandb.Api(api_key=key, overrides={"base_url": fake_wandb.url, "entity": "bob"})
    assert api.artifact(REF).version == "v0"


# -- manifests, files, downloads --------------------------------------------------------


@pytest.mark.core
def test_the_manifest_lists_paths_sizes_and_base64_md5_digests(two_versions):
    v0, _ = two_versions
    artifact = make_api().artifact(REF)
    entries = {path: (e.size, e.digest) for path, e in artifact.manifest.entries.items()}
    assert entries == {path: (len(data), b64md5(data)) for path, data in FILES.items()} == v0.files
    assert artifact.digest == v0.digest  # recomputed from the manifest now; the same value


def test_files_are_listed_page_by_page_with_direct_urls(two_versions, fake_wandb):
    files = make_api().artifact(REF).files(per_page=2)
    listed = {f.name: (f.size, f.md5) for f in files}
    assert listed == {path: (len(data), b64md5(data)) for path, data in FILES.items()}
    assert len(files) == 3
    pages = [r.variables for r in fake_wandb.requests if r.operation == "ArtifactMembershipFiles"]
    assert [p["cursor"] for p in pages] == [None, "2"] and all(p["alias"] == "v0" for p in pages)
    file = next(iter(make_api().artifact(REF).files(names=["README.md"])))
    assert raw_request(fake_wandb, "GET", file.direct_url)[2] == FILES["README.md"]


@pytest.mark.core
def test_download_writes_every_md5_file_byte_for_byte(two_versions, fake_wandb, tmp_path):
    root = make_api().artifact(REF).download(tmp_path / "out")
    assert read_tree(root) == FILES
    urls = [r for r in fake_wandb.requests if r.operation == "GetArtifactMembershipFileUrls"]
    assert urls[0].variables["alias"] == "v0"  # the registry version, not the alias asked for


def test_download_writes_every_xxh128_file_byte_for_byte(fake_wandb, tmp_path):
    logged = fake_wandb.log_artifact("acme", "model", "phi3", FILES, digest_algorithm="xxh128")
    artifact = make_api().artifact("wandb-registry-model/phi3:latest")
    assert {e.extra.get("alg") for e in artifact.manifest.entries.values()} == {"XXH128"}
    assert artifact.digest == logged.digest
    root = artifact.download(tmp_path / "out")
    assert read_tree(root) == FILES
    artifact.verify(root)  # re-hashes with xxh128


def test_reference_entries_are_in_the_manifest_but_never_downloaded(fake_wandb, tmp_path):
    fake_wandb.log_artifact(
        "acme", "dataset", "eval", FILES, type="dataset", refs={"big.parquet": "s3://bucket/big.parquet"}
    )
    artifact = make_api().artifact("wandb-registry-dataset/eval:latest")
    assert artifact.manifest.entries["big.parquet"].ref == "s3://bucket/big.parquet"
    assert read_tree(artifact.download(tmp_path / "out")) == FILES


def test_collection_versions_and_aliases_are_listed(two_versions):
    collection = make_api().artifact_collection("model", "wandb-registry-model/phi3")
    assert set(collection.aliases) == {"v0", "v1", "latest", "production"}
    versions = {a.version: a.aliases for a in collection.artifacts()}
    assert versions == {"v1": ["latest"], "v0": ["production"]}


def test_artifact_by_id_answers_the_shape_the_sdk_validates(two_versions, fake_wandb):
    from wandb.sdk.artifacts._generated import ARTIFACT_BY_ID_GQL, ArtifactByID

    status, payload = graphql(fake_wandb, ARTIFACT_BY_ID_GQL, {"id": two_versions[0].artifact_id})
    artifact = ArtifactByID.model_validate(payload["data"]).artifact
    assert status == 200 and artifact.digest == two_versions[0].digest
    assert {(a.alias, a.artifact_collection.name) for a in artifact.aliases} >= {
        ("v0", "phi3"),
        ("production", "phi3"),
    }


# -- changing the world -----------------------------------------------------------------


def test_moving_an_alias_changes_what_it_resolves_to(two_versions, fake_wandb):
    fake_wandb.set_alias("acme", "model", "phi3", "production", 1)
    assert make_api().artifact(REF).version == "v1"


def test_a_deleted_version_is_not_found_and_latest_falls_back(two_versions, fake_wandb):
    fake_wandb.delete_version("acme", "model", "phi3", 1)
    api = make_api()
    with pytest.raises(CommError, match="not found"):
        api.artifact("wandb-registry-model/phi3:v1")
    assert api.artifact("wandb-registry-model/phi3:latest").version == "v0"


def test_reset_restores_the_default_world(fake_wandb):
    fake_wandb.log_artifact("acme", "model", "phi3", FILES)
    fake_wandb.inject(Fault("file", "status", times=None))
    fake_wandb.reset()
    assert fake_wandb.requests == [] and fake_wandb.pending_faults() == []
    with pytest.raises(CommError, match="not found"):
        make_api().artifact("wandb-registry-model/phi3:latest")


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("graphql", "status", status=503, match="ArtifactMembershipByName"),
        Fault("graphql", "status", status=429, retry_after=1, match="ArtifactMembershipByName"),
        Fault("graphql", "reset", match="ArtifactMembershipByName"),
    ],
    ids=["503", "429", "reset"],
)
def test_a_transient_graphql_fault_is_retried_by_wandb_core(two_versions, fake_wandb, fault):
    api = make_api()
    fake_wandb.inject(fault)
    assert api.artifact(REF).version == "v0"
    attempts = [(r.status, r.fault) for r in fake_wandb.requests if r.operation == "ArtifactMembershipByName"]
    expected_status = None if fault.kind == "reset" else fault.status
    assert attempts == [(expected_status, fault.kind), (200, None)]


def test_a_graphql_body_cut_short_fails_the_call(two_versions, fake_wandb):
    api = make_api()
    fake_wandb.inject(Fault("graphql", "truncate", match="ArtifactMembershipByName"))
    with pytest.raises(CommError, match="unexpected EOF"):
        api.artifact(REF)
    attempts = [r.fault for r in fake_wandb.requests if r.operation == "ArtifactMembershipByName"]
    assert attempts == ["truncate"]  # not retried


@pytest.mark.parametrize(
    "fault",
    [
        Fault("file", "status", status=503, match="model.txt"),
        Fault("file", "reset", match="model.txt"),
        Fault("file", "slow", delay=0.3),
    ],
    ids=["503", "reset", "slow"],
)
def test_a_transient_file_fault_is_retried_by_the_download(two_versions, fake_wandb, tmp_path, fault):
    artifact = make_api().artifact(REF)
    fake_wandb.inject(fault)
    assert read_tree(artifact.download(tmp_path / "out")) == FILES
    assert [r.fault for r in fake_wandb.requests].count(fault.kind) == 1


@pytest.mark.parametrize("kind", ["reset_mid_body", "truncate"])
def test_a_file_body_cut_short_fails_the_download(two_versions, fake_wandb, tmp_path, kind):
    artifact = make_api().artifact(REF)
    fake_wandb.inject(Fault("file", kind, match="model.txt"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        artifact.download(tmp_path / "out")
    assert next((r.status, r.fault) for r in fake_wandb.requests if "model.txt" in r.path) == (200, kind)


@pytest.mark.core
def test_wrong_bytes_are_downloaded_silently_and_caught_by_verify(two_versions, fake_wandb, tmp_path):
    artifact = make_api().artifact(REF)
    fake_wandb.inject(Fault("file", "wrong_bytes", match="model.txt"))
    root = artifact.download(tmp_path / "out")
    assert len(read_tree(root)["model.txt"]) == len(FILES["model.txt"]) != read_tree(root)["model.txt"]
    with pytest.raises(ValueError, match="Digest mismatch for file: model.txt"):
        artifact.verify(root)


def test_a_hung_request_waits_until_the_server_stops(tmp_path):
    with FakeWandb() as srv:
        logged = srv.log_artifact("acme", "model", "phi3", FILES)
        srv.inject(Fault("file", "hang", match="README.md"))
        url = srv.file_url(logged.artifact_id, "README.md")
        with pytest.raises((TimeoutError, socket.timeout)):
            parts = urlsplit(url)
            connection = http.client.HTTPConnection(parts.netloc, timeout=0.3)
            connection.request("GET", parts.path)
            connection.getresponse()
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert [(r.status, r.fault) for r in srv.requests] == [(None, "hang")]


# -- the HTTP layer ---------------------------------------------------------------------


def test_file_gets_honor_range_requests(fake_wandb):
    data = bytes(range(256)) * 4
    logged = fake_wandb.log_artifact("acme", "model", "phi3", {"w.bin": data})
    url = fake_wandb.file_url(logged.artifact_id, "w.bin")
    status, headers, body = raw_request(fake_wandb, "GET", url, Range="bytes=10-19")
    assert (status, headers["Content-Range"], headers["Content-Length"], body) == (
        206,
        "bytes 10-19/1024",
        "10",
        data[10:20],
    )
    assert raw_request(fake_wandb, "GET", url, Range="bytes=-4")[2] == data[-4:]
    assert raw_request(fake_wandb, "GET", url, Range="bytes=2000-")[0] == 416


def test_an_unknown_operation_is_answered_400_and_listed(fake_wandb):
    status, payload = graphql(fake_wandb, "query SomethingNew { viewer { id } }")
    assert (
        status == 400
        and payload["errors"][0]["message"] == "fake W&B server: unhandled operation SomethingNew"
    )
    assert fake_wandb.unhandled == ["SomethingNew"]


def test_small_gets_over_one_keep_alive_connection_are_fast(fake_wandb):
    """Stock http.server manages ~180/s here (Nagle); the fake must do thousands."""
    logged = fake_wandb.log_artifact("acme", "model", "phi3", {"f.bin": b"x" * 4096})
    parts = urlsplit(fake_wandb.file_url(logged.artifact_id, "f.bin"))
    connection = http.client.HTTPConnection(parts.netloc, timeout=5)
    started = time.perf_counter()
    for _ in range(2000):
        connection.request("GET", parts.path)
        assert len(connection.getresponse().read()) == 4096
    connection.close()
    assert time.perf_counter() - started < 5  # ~0.44 s measured on 2 cores: 10x margin
    assert len([r for r in fake_wandb.requests if r.path == parts.path]) == 2000  # each one answered


# -- runs and lineage -------------------------------------------------------------------


def test_an_online_run_records_its_use_of_an_artifact(two_versions, fake_wandb):
    run = wandb.init(entity="myteam", project="training", mode="online")
    run.use_artifact(REF)
    run.finish()
    used = [r.variables for r in fake_wandb.requests if r.operation == "UseArtifact"]
    assert [(u["artifactID"], u["runName"]) for u in used] == [(two_versions[0].artifact_id, run.id)]
    assert fake_wandb.unhandled == []


def test_a_run_is_found_by_id_once_it_exists_and_init_with_that_id_resumes_it(fake_wandb):
    with pytest.raises(CommError, match="Could not find run"):
        make_api().run("myteam/training/fixed-id")
    for resumed in (False, True):
        run = wandb.init(entity="myteam", project="training", id="fixed-id", resume="allow", job_type="eval",
                         tags=["a"], mode="online")
        assert run.resumed is resumed
        run.finish()
    found = make_api().run("myteam/training/fixed-id")
    assert (found.state, found.job_type, found.tags) == ("finished", "eval", ["a"])
    assert fake_wandb.operations().count("RunResumeStatus") == 2 and fake_wandb.unhandled == []


# -- the canary -------------------------------------------------------------------------


@pytest.mark.core
def test_the_installed_wandb_is_the_release_this_fake_server_speaks(fake_wandb, tmp_path):
    assert wandb.__version__ == "0.31.0", (
        f"wandb {wandb.__version__} is installed; the fake server was written against 0.31.0. "
        "Run this file, then teach wbsync/testing the operations listed in FakeWandb.unhandled."
    )
    logged = fake_wandb.log_artifact("acme", "model", "phi3", FILES, aliases=["production"])
    artifact = make_api().artifact(f"acme/{REF}")
    assert {p: e.digest for p, e in artifact.manifest.entries.items()} == {
        p: d for p, (_, d) in logged.files.items()
    }
    assert len(artifact.files()) == len(FILES)
    assert read_tree(artifact.download(tmp_path / "out")) == FILES
    assert fake_wandb.unhandled == [], (
        f"wandb {wandb.__version__} sent GraphQL operations the fake server does not know: "
        f"{fake_wandb.unhandled}. A newer SDK sent new queries; the fake server must learn them "
        "(see wbsync/testing/graphql.py)."
    )
