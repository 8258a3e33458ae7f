"""Hostile input: generated manifests, lockfiles and artifact file lists (hypothesis).

Every outcome must be a success or a documented error: a WbsyncError subclass carrying the exit
code the README gives its kind (2 for a bad manifest or lockfile, 4 for an unsafe artifact path),
with a message. Any other exception is a bug. Every target runs 500 examples, the end-to-end one
too (a real sync of a fake-server artifact holding generated paths).

Malicious artifacts (path traversal in every spelling, names equal but for case, names too long
for the filesystem, a file and a folder at one path) must be refused before anything is written:
the destination does not exist afterwards and no lock was written.
"""

from __future__ import annotations

import base64
import hashlib
import os
import string
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from helpers import run, write_manifest
from wbsync.core.errors import LockfileError, ManifestError, UnsafePathError, WbsyncError
from wbsync.core.models import MAX_FILE_SIZE, FileRecord, Lock, LockedArtifact
from wbsync.core.paths import check_paths
from wbsync.repo.lockfile import dumps, loads
from wbsync.repo.manifest import load_manifest, parse_manifest
from wbsync.testing import FakeWandb
from wbsync.tree.place import safe_join

EXAMPLES = 500
ROOT = "/work/fuzz-project"  # parse_manifest only reasons about it; nothing is written there
T = TypeVar("T")

pure = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fn: Callable[[], T], error: type[WbsyncError], code: int) -> T | WbsyncError:
    """``fn()``'s value, or the documented error it raised (checked); anything else propagates."""
    try:
        return fn()
    except WbsyncError as exc:
        assert isinstance(exc, error), f"{type(exc).__name__} ({exc.exit_code}), expected {error.__name__}: {exc}"
        assert exc.exit_code == code
        assert exc.message.strip(), "an error without a message"
        assert "Traceback" not in exc.message
        return exc


# -- strategies ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.dates(), st.binary(max_size=8),
)
keys = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)
# Text built from what YAML and the manifest care about: separators, quotes, anchors, tags,
# indentation, the manifest's own keys, and a little of everything else.
FRAGMENTS = [
    "version: 1\n", "artifacts:\n", "  phi3:\n", "    artifact: ", "    path: ", "defaults:\n", "source: ",
    "wandb-registry-model/phi3:production", "acme/wandb-registry-model/x:v3", ":", "/", "-", "- ", "'", '"',
    "&a ", "*a", "<<: *a\n", "!!python/object:os.system ", "!!binary ", "!!str ", "? ", "---\n", "...\n",
    "{", "}", "[", "]", "\t", "  ", "\n", "#", "~", "null", "yes", "on", "1.10", "2024-01-01", "..", "../",
    "\\", "\x00", "\ufeff", "é", "\u202e", "🤗", "include: [", "exclude: ", "registry: ", "collection: ",
    "alias: ",
]
yaml_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=40).map("".join),
)

NAME_CHARS = string.ascii_letters + string.digits + "._-"
names = st.one_of(st.text(NAME_CHARS, min_size=1, max_size=12), st.text(max_size=8), st.integers())
refs = st.one_of(
    st.builds(
        lambda org, reg, coll, sel: f"{org}{reg}/{coll}{sel}",
        st.sampled_from(["", "acme/", "acme-org/", "a/b/", "/", "../"]),
        st.sampled_from(["wandb-registry-model", "wandb-registry-", "wandb-registry-Fine tuned", "model", ""]),
        st.text(NAME_CHARS + " /:", max_size=12),
        st.sampled_from(["", ":production", ":v0", ":v-1", ":latest", "::", ":v99999999999999999999"]),
    ),
    st.text(max_size=30),
)
dest_paths = st.one_of(
    st.sampled_from(["models/phi3", ".", "..", "../x", "/abs", "a//b", "a/./b", "C:/x", "a\\b", "", " ", "~"]),
    st.text(max_size=20),
)
entry_fields: dict[str, st.SearchStrategy[Any]] = {
    "artifact": refs | scalars, "path": dest_paths | scalars, "type": st.text(max_size=6) | scalars,
    "include": st.lists(st.text(max_size=6), max_size=3) | scalars,
    "exclude": st.lists(st.text(max_size=6), max_size=3) | scalars,
    "registry": st.text(max_size=8) | scalars, "collection": st.text(max_size=8) | scalars,
    "alias": st.text(max_size=8) | scalars, "version": st.sampled_from(["v0", "v12", "12", "vx"]) | scalars,
    "org": st.text(max_size=6) | scalars, "entity": st.text(max_size=6) | scalars, "extra": scalars,
}
entries = st.fixed_dictionaries({}, optional=entry_fields) | scalars
manifests = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([1, 2, 0, "1", 1.0, True, None]),
    "artifacts": st.dictionaries(names, entries, max_size=4) | scalars,
    "defaults": st.fixed_dictionaries({}, optional={"org": scalars, "entity": scalars, "x": scalars}) | scalars,
    "source": st.text(max_size=10) | scalars,
    "unknown": scalars,
})
VALID_MANIFEST = """\
version: 1
defaults:
  org: acme
artifacts:
  phi3:
    artifact: wandb-registry-model/phi3-finetuned:production
    path: models/phi3
    include: ["*.safetensors", "config.json"]
  eval:
    registry: dataset
    collection: eval-set
    version: v12
    path: data/eval
"""


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few random edits: characters inserted, deleted or replaced, lines dropped or doubled."""
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "drop-line", "double-line"]))
        piece = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=3))
        if edit == "insert":
            text = text[:at] + piece + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)):]
        elif edit == "replace":
            text = text[:at] + piece + text[at + len(piece):]
        else:
            lines = text.split("\n")
            i = at % len(lines)
            lines[i:i + 1] = [] if edit == "drop-line" else [lines[i], lines[i]]
            text = "\n".join(lines)
    return text


def dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)


# -- manifests -------------------------------------------------------------------------------


def check_manifest(text: str) -> None:
    result = outcome(lambda: parse_manifest(text, "artifacts.yaml", ROOT), ManifestError, 2)
    if isinstance(result, WbsyncError):
        return
    for name, entry in result.entries.items():  # what a valid manifest promises
        assert name == entry.name and name[:1].isalnum()
        full = os.path.normpath(os.path.join(ROOT, entry.path))
        assert full.startswith(ROOT + os.sep), f"{name}: {entry.path!r} leaves the project"
        assert entry.reference.alias is None or entry.reference.version is None


@pure
@given(values)
def test_manifest_random_yaml_values(value: Any) -> None:
    check_manifest(dump(value))


@pure
@given(manifests)
@example({"version": 1, "artifacts": {"a": {"artifact": "wandb-registry-model/x:v1", "path": ".."}}})
@example({"version": 1, "artifacts": {"a": {"artifact": "wandb-registry-model/x:v1", "path": "a/../.."}}})
def test_manifest_shaped_documents(doc: dict[str, Any]) -> None:
    check_manifest(dump(doc))


@pure
@given(yaml_text)
@example("a: &a [*a, *a]\n")
@example("version: 1\nartifacts: !!python/object/apply:os.system ['true']\n")
@example("version: 1\nartifacts:\n  x: {artifact: wandb-registry-model/x, path: p}\n  x: {artifact: y, path: q}\n")
@example("\ufeffversion: 1\n")
@example("---\nversion: 1\n---\nversion: 1\n")
def test_manifest_random_text(text: str) -> None:
    check_manifest(text)


@pure
@given(mutated(VALID_MANIFEST))
def test_manifest_mutations_of_a_valid_one(text: str) -> None:
    check_manifest(text)


@pure
@given(st.binary(max_size=300) | st.builds(lambda b: VALID_MANIFEST.encode() + b, st.binary(max_size=20)))
@example(b"\xff\xfeversion: 1\n")
@example("version: 1\nartifacts: {}\n".encode("utf-16"))
def test_manifest_file_of_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "artifacts.yaml"
        path.write_bytes(data)
        outcome(lambda: load_manifest(path), ManifestError, 2)


def bomb(levels: int) -> str:
    """A 'billion laughs' flow list: ``levels`` anchored lists of 10 aliases each to the one before."""
    lists = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    lists += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return f"[{', '.join(lists)}]"


def test_an_alias_bomb_in_a_manifest_is_refused_at_once() -> None:
    text = ("version: 1\nartifacts:\n  m:\n    artifact: wandb-registry-model/x:v1\n    path: p\n"
            f"    exclude: {bomb(9)}\n    include: *a8\n")
    started = time.monotonic()
    outcome(lambda: parse_manifest(text, "artifacts.yaml", ROOT), ManifestError, 2)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("where", ["artifacts: *a7", "artifacts: {m: {files: *a7}}"])
def test_an_alias_bomb_in_a_lock_is_refused_at_once(where: str) -> None:
    """Found by this test: 10^9 items took the schema check 98 s (a list) or all the memory (in
    a lock's files); 10^8 here, which took about 10 s before."""
    text = f"lock_version: 1\nbomb: {bomb(8)}\n{where}\n"
    started = time.monotonic()
    error = outcome(lambda: loads(text, "artifacts.lock"), LockfileError, 2)
    assert isinstance(error, LockfileError) and "alias" in error.message
    assert time.monotonic() - started < 2.0


# -- lockfiles -------------------------------------------------------------------------------

b64_digests = st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())
file_records = st.builds(
    FileRecord,
    path=st.text(min_size=1, max_size=20),
    size=st.integers(0, MAX_FILE_SIZE),  # what a lock may hold (larger sizes are refused, exit 2 or 4)
    digest=b64_digests,
    algorithm=st.sampled_from(["md5", "xxh128"]),
)


@st.composite
def locks(draw: st.DrawFn) -> Lock:
    artifacts = {}
    for name in draw(st.lists(st.text(NAME_CHARS, min_size=1, max_size=10).filter(lambda n: n[0].isalnum()),
                              max_size=3, unique=True)):
        files = draw(st.lists(file_records, max_size=4, unique_by=lambda r: r.path))
        artifacts[name] = LockedArtifact(
            name=name,
            entry_digest="sha256:" + hashlib.sha256(name.encode()).hexdigest(),
            requested=draw(st.text(min_size=1, max_size=20)),
            resolved=draw(st.text(min_size=1, max_size=20)),
            version=f"v{draw(st.integers(0, 10**6))}",
            type=draw(st.text(max_size=8)),
            digest=draw(st.text(min_size=1, max_size=12)),
            path=draw(st.text(min_size=1, max_size=12)),
            files=tuple(sorted(files, key=lambda r: r.path)),
        )
    return Lock(artifacts)


def check_lock(text: str) -> None:
    result = outcome(lambda: loads(text, "artifacts.lock"), LockfileError, 2)
    if isinstance(result, Lock):
        for name, art in result.artifacts.items():
            assert name == art.name
            for f in art.files:
                assert isinstance(f.size, int) and f.size >= 0 and f.algorithm in ("md5", "xxh128")
                assert isinstance(f.path, str) and isinstance(f.digest, str)


@pure
@given(locks())
@example(Lock({"a": LockedArtifact("a", "sha256:" + "0" * 64, "r", "r", "v0", "", "d", "🤗", ())}))
def test_lock_round_trips(lock: Lock) -> None:
    """What wbsync writes, it reads back unchanged, on the canonical fast path and on the YAML
    path a hand-edited lock takes (so the written text is valid YAML, emoji included)."""
    text = dumps(lock)
    assert loads(text) == lock
    assert loads(text.replace("# Generated", "# Edited by hand. Generated")) == lock


@pure
@given(values)
def test_lock_random_yaml_values(value: Any) -> None:
    check_lock(dump(value))


@pure
@given(locks().map(dumps).flatmap(mutated))
@example('# Generated by wbsync. Do not edit: run `wbsync lock` to update it.\nlock_version: 1\nartifacts:\n'
         '  "\\q":\n')
def test_lock_mutations_of_a_written_one(text: str) -> None:
    check_lock(text)


@pure
@given(yaml_text)
def test_lock_random_text(text: str) -> None:
    check_lock(text)


# -- artifact file lists ----------------------------------------------------------------------

SEGMENTS = ["a", "A", "b", "B", "ß", "SS", "ss", ".", "..", "...", "", " ", "~", "-", "é", "e\u0301",
            "\u212a", "K", "k", "con", "a.txt", "A.TXT", "\x00", "\\", "..\\..", "C:", "c:x", "%2e%2e",
            "\uff0e\uff0e", "\u2215", "x" * 255, "é" * 128, "y" * 256, "\ud800", "\udcff"]
artifact_paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=4), min_size=1, max_size=5).map("/".join),
    st.builds(lambda p, s: p + s, st.sampled_from(["/", "./", "../", "//", "\\", "C:\\", ""]),
              st.text(max_size=12)),
    st.text(max_size=20),
)
file_lists = st.lists(
    st.builds(FileRecord, path=artifact_paths, size=st.just(1), digest=st.just("AAAAAAAAAAAAAAAAAAAAAA==")),
    max_size=6,
)


@pure
@given(file_lists)
@example([FileRecord("a/b", 1, "AAAAAAAAAAAAAAAAAAAAAA=="), FileRecord("A", 1, "AAAAAAAAAAAAAAAAAAAAAA==")])
@example([FileRecord("\ud800.bin", 1, "AAAAAAAAAAAAAAAAAAAAAA==")])  # JSON can carry one; no filesystem can
def test_check_paths(files: list[FileRecord]) -> None:
    result = outcome(lambda: check_paths("x", tuple(files)), UnsafePathError, 4)
    if isinstance(result, WbsyncError):
        return
    paths = [f.path for f in files]  # accepted: each lands inside the destination, no two collide
    assert len({p.casefold() for p in paths}) == len(paths)
    folders = {"/".join(p.split("/")[:i]).casefold() for p in paths for i in range(1, p.count("/") + 1)}
    assert not folders & {p.casefold() for p in paths}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for p in paths:
            joined = outcome(lambda p=p: safe_join(root, p), UnsafePathError, 4)  # type: ignore[misc]
            assert isinstance(joined, Path), f"check_paths accepted {p!r}, placement refuses it: {joined}"
            assert os.path.normpath(joined).startswith(str(root) + os.sep)
            os.fsencode(joined)  # a name the filesystem can be asked for


MANIFEST = """
    version: 1
    artifacts:
      evil:
        artifact: wandb-registry-model/evil:production
        path: models/evil
"""
TRAVERSALS = [
    "../escape.txt", "../../escape.txt", "a/../../escape.txt", "a/b/../../../escape.txt", "/etc/passwd",
    "//server/share/x", "..", "..\\escape.txt", "a\\..\\..\\escape.txt", "C:\\escape.txt", "C:escape.txt",
    "c:/escape.txt", "x\x00.txt", "a/..", "...//../x", "a/b/..",
]
# Spellings the wandb SDK normalizes when it reads the manifest (PurePosixPath: "./x" -> "x")
# while the file listing keeps them: the normalized path is safe but has no download URL, so
# the sync stops with exit 3 before placing anything (docs/reliability.md, findings).
NORMALIZED = ["./x", "a/./b", "a//b", "a/", "./../escape.txt"]
MALICIOUS: dict[str, tuple[dict[str, bytes], int]] = {
    **{f"traversal {p!r}": ({"ok.txt": b"ok", p: b"evil"}, 4) for p in TRAVERSALS},
    **{f"normalized {p!r}": ({"ok.txt": b"ok", p: b"odd"}, 4 if ".." in p else 3) for p in NORMALIZED},
    "names equal but for case": ({"Model.bin": b"1", "model.bin": b"2"}, 4),
    "paths equal but for case": ({"Sub/a.txt": b"1", "sub/A.txt": b"2"}, 4),
    "unicode case folding (sharp s)": ({"STRASSE.txt": b"1", "straße.txt": b"2"}, 4),
    "a name longer than 255 bytes": ({"ok.txt": b"ok", "x" * 256: b"long"}, 4),
    "a folder name longer than 255 bytes": ({"ok.txt": b"ok", "é" * 128 + "/x": b"long"}, 4),
    "a path longer than 4095 bytes": ({"ok.txt": b"ok", "/".join(["p" * 200] * 21): b"long"}, 4),
    "a file and a folder at one path": ({"weights": b"file", "weights/shard-0.bin": b"in folder"}, 4),
    "a file and a folder equal but for case": ({"Weights": b"file", "weights/shard-0.bin": b"in folder"}, 4),
}


@pytest.mark.parametrize("files,code", list(MALICIOUS.values()), ids=list(MALICIOUS))
def test_a_malicious_artifact_is_refused_before_anything_is_written(
        fake_wandb: FakeWandb, project: Path, files: dict[str, bytes], code: int) -> None:
    fake_wandb.log_artifact("acme", "model", "evil", files, type="model", aliases=["production"])
    write_manifest(project, MANIFEST)
    result = run("sync", check=code)
    assert "Traceback" not in result.stderr
    assert not (project / "models").exists()
    assert sorted(p.name for p in project.parent.iterdir()) == ["env", "project"]  # nothing beside it
    if code == 4:
        assert "nothing was written" in result.stderr
        assert not (project / "artifacts.lock").exists()


def test_a_path_too_long_for_where_the_project_is_is_refused_before_placing(
        fake_wandb: FakeWandb, project: Path) -> None:
    """Short enough to lock (under 4096 bytes), too long once under the project's folder: refused
    (exit 4) when the destinations are checked, before any file of the entry is written."""
    deep = "/".join(["d" * 250] * 16) + "/w.bin"  # about 4000 bytes
    assert len(deep) < 4096 < len(str(project / "models/evil" / deep))
    fake_wandb.log_artifact("acme", "model", "evil", {"ok.txt": b"ok", deep: b"x"}, type="model",
                            aliases=["production"])
    write_manifest(project, MANIFEST)
    result = run("sync", check=4)
    assert "too long" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "models").exists()


def test_folders_that_differ_only_by_case_are_accepted(fake_wandb: FakeWandb, project: Path) -> None:
    """Two folders equal but for case holding different files: nothing is overwritten, even on a
    case-insensitive filesystem (there the files share one folder)."""
    files = {"Sub/a.txt": b"1", "sub/b.txt": b"2"}
    fake_wandb.log_artifact("acme", "model", "evil", files, type="model", aliases=["production"])
    write_manifest(project, MANIFEST)
    run("sync")
    run("verify")


# The end-to-end target: each example logs an artifact on the fake server and runs the real
# `wbsync sync` in-process (the wandb SDK through wandb-core, 10-60 ms an example, about 15 s in
# all). About a quarter of the examples sync (exit 0), most are refused (exit 4), a few stop at
# exit 3 (NORMALIZED above); `--hypothesis-show-statistics` shows the spread.
END_TO_END_EXAMPLES = 500
# Lone surrogates are left to the pure layers: the fake server hashes its manifest as UTF-8.
real_files = st.dictionaries(artifact_paths.filter(lambda p: not any("\ud800" <= c <= "\udfff" for c in p)),
                             st.binary(max_size=16), min_size=1, max_size=4)


@settings(max_examples=END_TO_END_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=real_files)
@example(files={"a" * 200 + "/" + "b" * 200 + "/" + "/".join(["c" * 250] * 16): b"deep"})
@example(files={"🤗/model.safetensors": b"emoji"})
def test_sync_of_an_artifact_with_generated_paths(fake_wandb: FakeWandb, project: Path,
                                                  files: dict[str, bytes]) -> None:
    assume(len({str(PurePosixPath(k)) for k in files}) == len(files))  # "a/" and "a": one path to the SDK
    fake_wandb.reset()
    folder = Path(tempfile.mkdtemp(dir=project))
    write_manifest(folder, MANIFEST)
    fake_wandb.log_artifact("acme", "model", "evil", files, type="model", aliases=["production"])
    result = run("sync", "-q", "-m", str(folder / "artifacts.yaml"), check=None)
    assert "Traceback" not in result.stdout + result.stderr
    event(f"exit {result.exit_code}")  # the spread shows with --hypothesis-show-statistics
    dest = folder / "models" / "evil"
    if result.exit_code == 0:
        got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        assert got == {str(PurePosixPath(k)): v for k, v in files.items()}  # the paths as the SDK reads them
        assert run("verify", "-q", "-m", str(folder / "artifacts.yaml"), check=None).exit_code == 0
    else:
        assert result.exit_code in (3, 4), result.stderr  # 3: see NORMALIZED above
        assert not (folder / "models").exists()
