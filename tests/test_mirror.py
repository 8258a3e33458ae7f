"""Mirrors: `wbsync mirror DEST` from the fake W&B server, then lock / sync / outdated from the
mirror with W&B out of reach, on a folder, memory:// and an S3-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import run, run_json, tree, write_manifest
from test_lock_and_sync import MODEL, PHI3, publish

from wbsync.testing import FakeWandb, Fault

DATA = {"eval.jsonl": b'{"q": "2+2", "a": "4"}\n', "README.md": b"# eval\n"}
TWO = """
    version: 1
    artifacts:
      phi3:
        artifact: wandb-registry-model/phi3-finetuned:production
        path: models/phi3
      eval:
        artifact: wandb-registry-dataset/eval-set:v0
        path: data/eval
"""


def publish_two(srv: FakeWandb) -> None:
    publish(srv)
    srv.log_artifact("acme", "dataset", "eval-set", DATA, type="dataset")


def wandb_down(srv: FakeWandb) -> None:
    """Every GraphQL call and every file GET fails from now on."""
    srv.inject(Fault("graphql", "status", status=500, times=None))
    srv.inject(Fault("file", "status", status=500, times=None))
    srv.clear_requests()


def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "store2") -> Path:
    """A second machine: an empty content store."""
    store = tmp_path / name
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(store))
    return store


def mirrored(srv: FakeWandb, project: Path, dest: str = "../mirror", manifest: str = TWO) -> dict:
    publish_two(srv)
    write_manifest(project, manifest)
    run("lock")
    return run_json("mirror", dest)


def consumer(project: Path, source: str, manifest: str = TWO) -> Path:
    """A second project that reads from the mirror through `source:`."""
    other = project.parent / "consumer"
    other.mkdir()
    text = manifest.replace("version: 1\n", f"version: 1\n    source: {source}\n", 1)
    write_manifest(other, text)
    return other


# -- the round trip, with W&B out of reach -----------------------------------------------------


def test_a_project_locks_and_syncs_from_a_mirror_while_wandb_is_down(fake_wandb: FakeWandb, project: Path,
                                                                      tmp_path: Path, monkeypatch) -> None:
    mirrored(fake_wandb, project)
    wandb_down(fake_wandb)
    fresh_store(tmp_path, monkeypatch)
    other = consumer(project, "../mirror")  # relative to the manifest's folder, not the cwd
    monkeypatch.chdir(tmp_path)
    run("sync", "-m", str(other / "artifacts.yaml"))
    run("verify", "-m", str(other / "artifacts.yaml"))
    assert tree(other / "models/phi3") == MODEL and tree(other / "data/eval") == DATA
    assert fake_wandb.requests == []


def test_a_lock_made_against_a_mirror_is_identical_to_one_made_against_wandb(fake_wandb: FakeWandb,
                                                                            project: Path) -> None:
    fake_wandb.add_registry("acme", "Fine-tuned Models")
    fake_wandb.log_artifact("acme", "Fine-tuned Models", "tok", {"vocab.txt": b"a\nb\n"}, type="tokenizer",
                            aliases=["staging"], digest_algorithm="xxh128")
    publish(fake_wandb)
    publish(fake_wandb, {"config.json": b"{}", "extra.md": b"x"}, aliases=["candidate"])
    manifest = """
        version: 1
        defaults:
          entity: myteam
        artifacts:
          phi3:
            artifact: wandb-registry-model/phi3-finetuned:production
            path: models/phi3
            include: ["*.json", "weights/*"]
          cand:
            artifact: acme/wandb-registry-model/phi3-finetuned:candidate
            path: models/cand
            exclude: ["*.md"]
          pinned:
            registry: model
            collection: phi3-finetuned
            version: v0
            path: models/pinned
            type: model
          tok:
            artifact: acme-org/wandb-registry-Fine-tuned Models/tok:staging
            path: models/tok
    """
    write_manifest(project, manifest)
    run("lock")
    from_wandb = (project / "artifacts.lock").read_bytes()
    run("mirror", "../mirror")
    wandb_down(fake_wandb)
    (project / "artifacts.lock").unlink()
    run("lock", "--source", "../mirror")
    assert (project / "artifacts.lock").read_bytes() == from_wandb
    assert "xxh128" in from_wandb.decode()
    run("outdated", "--source", "../mirror")
    assert fake_wandb.requests == []


def test_sync_frozen_and_outdated_use_the_manifests_mirror(fake_wandb: FakeWandb, project: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    mirrored(fake_wandb, project)
    other = consumer(project, "../mirror")
    shutil.copy(project / "artifacts.lock", other / "artifacts.lock")
    wandb_down(fake_wandb)
    fresh_store(tmp_path, monkeypatch)
    monkeypatch.chdir(other)
    run("sync", "--frozen")
    assert tree(other / "models/phi3") == MODEL
    assert run_json("outdated")["outdated"] == []
    assert fake_wandb.requests == []


def test_outdated_against_a_mirror_shows_an_alias_that_moved_in_a_newer_mirror(fake_wandb: FakeWandb,
                                                                              project: Path) -> None:
    mirrored(fake_wandb, project)
    other = consumer(project, "../mirror")
    run("lock", "-m", str(other / "artifacts.yaml"))
    publish(fake_wandb, {"config.json": b'{"layers": 40}\n'})
    run("lock", "--upgrade")
    run("mirror", "../mirror")
    doc = run_json("outdated", "-m", str(other / "artifacts.yaml"), check=1)
    assert [(c["name"], c["old_version"], c["new_version"]) for c in doc["outdated"]] == [("phi3", "v0", "v1")]


def test_a_sync_from_a_mirror_never_imports_wandb(fake_wandb: FakeWandb, project: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    import subprocess

    mirrored(fake_wandb, project)
    other = consumer(project, "../mirror")
    fresh_store(tmp_path, monkeypatch)
    code = ("import sys\nfrom wbsync.cli import cli\ntry:\n    cli(['sync', '-q'], standalone_mode=False)\n"
            "finally:\n    print('wandb loaded:', 'wandb' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=other, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wandb loaded: False"
    assert tree(other / "models/phi3") == MODEL


# -- fsspec back ends ----------------------------------------------------------------------------


def test_a_memory_url_mirror_round_trips(fake_wandb: FakeWandb, project: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("fsspec", reason="the test extra installs fsspec (the mirror's URL backends)")
    url = f"memory://wbsync-test-{uuid.uuid4().hex}/mirror"
    try:
        mirrored(fake_wandb, project, url)
        assert run_json("mirror", url)["copied_files"] == 0
        wandb_down(fake_wandb)
        fresh_store(tmp_path, monkeypatch)
        other = consumer(project, url)
        run("sync", "-m", str(other / "artifacts.yaml"))
        assert tree(other / "models/phi3") == MODEL and tree(other / "data/eval") == DATA
    finally:
        import fsspec

        fsspec.filesystem("memory").rm(url.split("://", 1)[1].split("/")[0], recursive=True)


def test_an_s3_mirror_round_trips_through_an_s3_compatible_server(fake_wandb: FakeWandb, project: Path,
                                                                   tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("s3fs", reason="the test extra installs s3fs (the s3:// mirror backend)")
    moto_server = pytest.importorskip("moto.server", reason="the test extra installs moto[server] (a local S3)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}.items():  # botocore's own setting
            monkeypatch.setenv(name, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("wbsync-mirror")
        doc = mirrored(fake_wandb, project, "s3://wbsync-mirror/team")
        assert doc["copied_files"] == len(MODEL) + len(DATA)
        assert run_json("mirror", "s3://wbsync-mirror/team")["written"] == []
        wandb_down(fake_wandb)
        fresh_store(tmp_path, monkeypatch)
        other = consumer(project, "s3://wbsync-mirror/team")
        run("sync", "-m", str(other / "artifacts.yaml"))
        assert tree(other / "models/phi3") == MODEL and tree(other / "data/eval") == DATA
    finally:
        server.stop()
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()


def test_a_url_without_fsspec_asks_for_the_extra(project: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    write_manifest(project, PHI3)
    result = run("lock", "--source", "s3://bucket/mirror", check=2)
    assert "pip install 'wbsync-lock[s3]'" in result.stderr


# -- untrusted mirror content ---------------------------------------------------------------------


def test_a_corrupt_mirror_blob_is_exit_4_and_nothing_is_placed(fake_wandb: FakeWandb, project: Path,
                                                               tmp_path: Path, monkeypatch) -> None:
    mirrored(fake_wandb, project)
    blob = blob_of(tmp_path / "mirror", MODEL["config.json"])
    blob.write_bytes(b"[" + blob.read_bytes()[1:])  # same size, one byte changed
    store = fresh_store(tmp_path, monkeypatch)
    other = consumer(project, "../mirror")
    result = run("sync", "-m", str(other / "artifacts.yaml"), check=4)
    assert "config.json" in result.stderr
    assert not (other / "models/phi3").exists()
    assert not [p for p in (store / "blobs").rglob("*") if p.is_file() and p.name in blob.name]


def test_a_version_file_edited_to_match_bad_bytes_is_exit_4(fake_wandb: FakeWandb, project: Path,
                                                           tmp_path: Path) -> None:
    mirrored(fake_wandb, project)
    path = tmp_path / "mirror/acme-org/wandb-registry-model/phi3-finetuned/versions/v0.json"
    doc = json.loads(path.read_text())
    doc["contents"]["config.json"]["digest"] = b64md5(b"evil")
    path.write_text(json.dumps(doc))
    other = consumer(project, "../mirror")
    result = run("lock", "-m", str(other / "artifacts.yaml"), check=4)
    assert "does not match its file list" in result.stderr


def test_unsafe_paths_in_a_mirror_are_refused_like_wandb_data(fake_wandb: FakeWandb, project: Path,
                                                             tmp_path: Path) -> None:
    mirrored(fake_wandb, project)
    path = tmp_path / "mirror/acme-org/wandb-registry-model/phi3-finetuned/versions/v0.json"
    doc = json.loads(path.read_text())
    doc["contents"]["../../escape.sh"] = {"digest": b64md5(b"x"), "size": 1}
    doc["wbsync"]["digest"] = manifest_digest(doc["contents"])
    path.write_text(json.dumps(doc))
    other = consumer(project, "../mirror")
    result = run("sync", "-m", str(other / "artifacts.yaml"), check=4)
    assert "escape.sh" in result.stderr and not (other / "models").exists()


def test_a_mirror_holding_another_digest_for_a_locked_version_is_exit_4(fake_wandb: FakeWandb, project: Path,
                                                                        tmp_path: Path, monkeypatch) -> None:
    mirrored(fake_wandb, project)
    lock = project / "artifacts.lock"
    lock.write_text(lock.read_text().replace(yaml.safe_load(lock.read_text())["artifacts"]["phi3"]["digest"],
                                             "0" * 32))
    fresh_store(tmp_path, monkeypatch)
    result = run("sync", "--frozen", "--source", "../mirror", check=4)
    assert "digest" in result.stderr and not (project / "models/phi3").exists()


def test_a_file_no_mirrored_lock_selected_is_missing_from_the_mirror(fake_wandb: FakeWandb, project: Path,
                                                                    tmp_path: Path, monkeypatch) -> None:
    narrow = TWO.replace("path: models/phi3", "path: models/phi3\n        exclude: [\"weights/*\"]")
    mirrored(fake_wandb, project, manifest=narrow)
    fresh_store(tmp_path, monkeypatch)
    other = consumer(project, "../mirror")  # wants weights/ too: listed in the mirror, bytes absent
    run("lock", "-m", str(other / "artifacts.yaml"))
    result = run("sync", "-m", str(other / "artifacts.yaml"), check=3)
    assert "shard-0.bin" in result.stderr and "missing" in result.stderr


def test_a_folder_that_is_not_a_mirror_is_exit_2(project: Path) -> None:
    write_manifest(project, PHI3.replace("version: 1\n", "version: 1\n    source: ./nope\n"))
    result = run("lock", check=2)
    assert "not a wbsync mirror" in result.stderr and "nope" in result.stderr


def test_an_alias_or_org_the_mirror_lacks_is_not_found(fake_wandb: FakeWandb, project: Path) -> None:
    mirrored(fake_wandb, project)
    other = consumer(project, "../mirror", PHI3.replace(":production", ":staging"))
    result = run("lock", "-m", str(other / "artifacts.yaml"), check=3)
    assert "no alias 'staging'" in result.stderr and "production" in result.stderr
    write_manifest(other, PHI3.replace("wandb-registry-model", "globex/wandb-registry-model")
                   .replace("version: 1\n", "version: 1\n    source: ../mirror\n"))
    result = run("lock", "-m", str(other / "artifacts.yaml"), check=3)
    assert "no organization 'globex'" in result.stderr and "acme-org" in result.stderr


# -- writing a mirror --------------------------------------------------------------------------


def test_the_mirror_keeps_what_wandb_knows_in_its_layout(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    mirrored(fake_wandb, project, manifest=TWO.replace("wandb-registry-model", "acme/wandb-registry-model"))
    root = tmp_path / "mirror"
    index = json.loads((root / "wbsync-mirror.json").read_text())
    assert index == {"format": "wbsync-mirror", "version": 1, "default_org": "acme-org", "entities": {},
                     "orgs": {"acme": "acme-org", "acme-org": "acme-org"}}
    coll = root / "acme-org/wandb-registry-model/phi3-finetuned"
    assert json.loads((coll / "aliases.json").read_text()) == {"production": "v0"}
    assert json.loads((root / "acme-org/wandb-registry-dataset/eval-set/aliases.json").read_text()) == {}
    v0 = json.loads((coll / "versions/v0.json").read_text())
    assert v0["version"] == 1 and v0["storagePolicy"] == "wandb-storage-policy-v1"
    assert v0["contents"]["config.json"] == {"digest": b64md5(MODEL["config.json"]), "size": len(MODEL["config.json"])}
    assert v0["wbsync"]["resolved"] == "acme-org/wandb-registry-model/phi3-finetuned:v0"
    assert v0["wbsync"]["type"] == "model" and v0["wbsync"]["digest"] == manifest_digest(v0["contents"])
    assert blob_of(root, MODEL["weights/shard-0.bin"]).read_bytes() == MODEL["weights/shard-0.bin"]


def test_an_incremental_mirror_copies_only_blobs_it_lacks_and_asks_wandb_nothing_new(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    first = mirrored(fake_wandb, project)
    assert (first["copied_files"], first["present_files"]) == (len(MODEL) + len(DATA), 0)
    fake_wandb.clear_requests()
    again = run_json("mirror", "../mirror")
    assert (again["copied_files"], again["present_files"], again["written"]) == (0, len(MODEL) + len(DATA), [])
    assert fake_wandb.requests == []
    publish(fake_wandb, {**MODEL, "config.json": b'{"layers": 40}\n'})
    run("lock", "--upgrade", "phi3")
    third = run_json("mirror", "../mirror")
    assert (third["copied_files"], third["present_files"]) == (1, len(MODEL) + len(DATA) - 1)
    coll = tmp_path / "mirror/acme-org/wandb-registry-model/phi3-finetuned"
    assert sorted(p.name for p in (coll / "versions").iterdir()) == ["v0.json", "v1.json"]
    assert json.loads((coll / "aliases.json").read_text()) == {"production": "v1"}


def test_blobs_then_versions_then_aliases_then_the_index_are_written(fake_wandb: FakeWandb, project: Path) -> None:
    written = mirrored(fake_wandb, project)["written"]
    kinds = [_kind(p) for p in written]
    assert kinds == sorted(kinds, key=["blob", "version", "aliases", "index"].index)
    assert kinds.count("blob") == len(MODEL) + len(DATA) and kinds[-1] == "index"


def test_a_failed_mirror_run_writes_no_version_or_alias(fake_wandb: FakeWandb, project: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("WBSYNC_RETRIES", "2")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    publish_two(fake_wandb)
    write_manifest(project, TWO)
    run("lock")
    fake_wandb.inject(Fault("file", "status", status=500, times=None, match="shard-0.bin"))
    run("mirror", "../mirror", check=3)
    written = [p.relative_to(tmp_path / "mirror").as_posix() for p in (tmp_path / "mirror").rglob("*") if p.is_file()]
    assert written and all(p.startswith("blobs/") for p in written)
    fake_wandb.clear_faults()
    doc = run_json("mirror", "../mirror")
    assert doc["present_files"] == len(written) and doc["copied_files"] == len(MODEL) + len(DATA) - len(written)


def test_mirror_without_a_lock_says_to_lock_first(project: Path) -> None:
    write_manifest(project, PHI3)
    assert "wbsync lock" in run("mirror", "../mirror", check=2).stderr


# -- helpers --------------------------------------------------------------------------------------


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def blob_of(root: Path, data: bytes) -> Path:
    hexdigest = hashlib.md5(data).hexdigest()
    return root / "blobs/md5" / hexdigest[:2] / hexdigest[2:]


def manifest_digest(contents: dict) -> str:
    text = "wandb-artifact-manifest-v1\n" + "".join(f"{p}:{contents[p]['digest']}\n" for p in sorted(contents))
    return hashlib.md5(text.encode()).hexdigest()


def _kind(rel: str) -> str:
    if rel.startswith("blobs/"):
        return "blob"
    if "/versions/" in rel:
        return "version"
    return "aliases" if rel.endswith("aliases.json") else "index"


def test_the_lock_made_from_a_mirror_names_no_mirror(fake_wandb: FakeWandb, project: Path) -> None:
    mirrored(fake_wandb, project)
    other = consumer(project, "../mirror")
    run("lock", "-m", str(other / "artifacts.yaml"))
    text = (other / "artifacts.lock").read_text()
    assert "mirror" not in text and yaml.safe_load(text)["artifacts"]["phi3"]["version"] == "v0"


# -- the offline quick start (examples/demo) ----------------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
DEMO_FILES = ("artifacts.yaml", "artifacts.lock", "mirror")


def demo_copy(to: Path) -> Path:
    if not DEMO.is_dir():
        pytest.skip("examples/demo is not in this tree")
    to.mkdir()
    for name in DEMO_FILES:
        src = DEMO / name
        shutil.copytree(src, to / name) if src.is_dir() else shutil.copy(src, to / name)
    return to


def test_the_offline_demo_syncs_and_verifies_with_wandb_out_of_reach(fake_wandb: FakeWandb, tmp_path: Path,
                                                                    monkeypatch) -> None:
    demo = demo_copy(tmp_path / "demo")
    wandb_down(fake_wandb)
    monkeypatch.chdir(demo)
    run("sync")
    run("verify")
    assert set(tree(demo / "models/phi3")) == {"README.md", "config.json", "model.safetensors", "tokenizer.json"}
    committed = (demo / "artifacts.lock").read_bytes()
    (demo / "artifacts.lock").unlink()
    run("sync")  # without the committed lock: locked again from the mirror, to the same bytes
    assert (demo / "artifacts.lock").read_bytes() == committed
    assert fake_wandb.requests == []


def test_the_committed_demo_mirror_is_what_its_script_generates(tmp_path: Path) -> None:
    import subprocess

    if not DEMO.is_dir():
        pytest.skip("examples/demo is not in this tree")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(DEMO / "regenerate.py"), str(out)], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    committed = {n: (tree(DEMO / n) if (DEMO / n).is_dir() else (DEMO / n).read_bytes()) for n in DEMO_FILES}
    generated = {n: (tree(out / n) if (out / n).is_dir() else (out / n).read_bytes()) for n in DEMO_FILES}
    assert generated == committed, "run `python examples/demo/regenerate.py` and commit examples/demo"
    assert sum(len(b) for b in tree(DEMO / "mirror").values()) < 100_000
