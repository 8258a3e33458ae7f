"""`wbsync diff`: real lock pairs made by `wbsync lock` against the fake W&B server, in a
temporary git repository, compared in text, JSON and Markdown."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import run, run_json, write_manifest
from test_lineage import git
from test_lock_and_sync import MODEL, PHI3, publish
from wbsync.cli.render_diff import md, md_code, plain
from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.repo.lockfile import dumps, read_lock
from wbsync.testing import FakeWandb

CHURN = {"config.json": b'{"layers": 40}\n', "weights/shard-0.bin": MODEL["weights/shard-0.bin"],
         "weights/shard-1.bin": b"\x02" * 1000}
RESOLVED = "acme-org/wandb-registry-model/phi3-finetuned:v{}"


def committed(fake_wandb: FakeWandb, project: Path, manifest: str = PHI3) -> None:
    """phi3 locked at v0 and committed: HEAD holds the lock a pull request changes."""
    publish(fake_wandb)
    write_manifest(project, manifest)
    run("lock")
    git(project, "init", "-q")
    git(project, "add", "artifacts.yaml", "artifacts.lock")
    git(project, "commit", "-q", "-m", "pin phi3")


def moved(fake_wandb: FakeWandb, project: Path) -> None:
    committed(fake_wandb, project)
    publish(fake_wandb, CHURN)
    run("lock", "--upgrade")


def test_a_version_move_lists_the_file_churn_in_text(fake_wandb: FakeWandb, project: Path) -> None:
    moved(fake_wandb, project)
    out = run("diff").stdout
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        f"artifacts.lock against HEAD ({head.strip()}):",  # the header names the commit compared
        "  phi3  moved  v0 -> v1  (+1 files, -1, 1 changed, +993 B)",
        "    + weights/shard-1.bin (1.0 kB)",
        "    - README.md (7 B)",
        "    ~ config.json (15 B -> 15 B)",
        "1 of 1 entries differ.",
    ]


def test_a_version_move_in_json(fake_wandb: FakeWandb, project: Path) -> None:
    moved(fake_wandb, project)
    doc = run_json("diff")
    assert (doc["base"], doc["differs"], doc["alerts"]) == ("HEAD", True, [])
    [entry] = doc["entries"]
    assert (entry["status"], entry["change"]) == ("changed", "moved")
    assert (entry["old"]["resolved"], entry["new"]["resolved"]) == (RESOLVED.format(0), RESOLVED.format(1))
    assert entry["files_added"] == [{"path": "weights/shard-1.bin", "size": 1000}]
    assert entry["files_removed"] == [{"path": "README.md", "size": 7}]
    assert entry["files_changed"] == [{"path": "config.json", "old_size": 15, "new_size": 15}]
    assert entry["bytes_delta"] == sum(map(len, CHURN.values())) - sum(map(len, MODEL.values()))


def test_a_version_move_in_markdown(fake_wandb: FakeWandb, project: Path) -> None:
    moved(fake_wandb, project)
    out = run("diff", "--markdown").stdout
    assert "| `phi3` | moved | `v0 -> v1` | \\+1 files, \\-1, 1 changed | \\+993 B |" in out
    assert "  - added: `weights/shard-1.bin` (1\\.0 kB)" in out
    assert "[!CAUTION]" not in out  # nothing to warn about


def test_no_difference_exits_0_even_with_exit_code(fake_wandb: FakeWandb, project: Path) -> None:
    committed(fake_wandb, project)
    assert "no differences (1 entries)" in run("diff", "--exit-code").stdout
    publish(fake_wandb, CHURN)
    run("lock", "--upgrade")
    run("diff")  # differences alone exit 0
    run("diff", "--exit-code", check=1)
    assert run_json("diff", "--exit-code", check=1)["differs"] is True


def test_a_changed_destination_is_a_loud_warning_in_every_format(fake_wandb: FakeWandb, project: Path) -> None:
    committed(fake_wandb, project)
    write_manifest(project, PHI3.replace("models/phi3", "src"))
    run("lock")
    out = run("diff").stdout
    assert "  WARNING phi3: destination changed: models/phi3 -> src" in out
    assert run_json("diff")["alerts"] == [
        {"name": "phi3", "kind": "path", "message": "destination changed: models/phi3 -> src"}]
    body = run("diff", "--markdown").stdout
    assert "> - `phi3`: destination changed\\: models/phi3 \\-&gt; src" in body
    assert body.index("[!CAUTION]") < body.index("| entry |")  # warnings come first


COLLECTION_SWAP = """
    version: 1
    artifacts:
      phi3:
        artifact: wandb-registry-dataset/eval-set:production
        path: models/phi3
"""


def test_a_collection_and_registry_swap_warns_about_each_part_and_the_type(fake_wandb: FakeWandb,
                                                                         project: Path) -> None:
    committed(fake_wandb, project)
    fake_wandb.log_artifact("acme", "dataset", "eval-set", {"eval.jsonl": b"{}\n"}, type="dataset",
                            aliases=["production"])
    write_manifest(project, COLLECTION_SWAP)
    run("lock")
    kinds = [(a["kind"], a["message"]) for a in run_json("diff")["alerts"]]
    assert kinds == [("registry", "registry changed: model -> dataset"),
                     ("collection", "collection changed: phi3-finetuned -> eval-set"),
                     ("type", "artifact type changed: model -> dataset")]
    out = run("diff").stdout
    assert "requested: wandb-registry-model/phi3-finetuned:production -> wandb-registry-dataset/eval-set:production" in out
    body = run("diff", "--markdown").stdout
    assert body.count("> - `phi3`:") == 3


def test_a_resolved_that_does_not_match_its_request_is_flagged(fake_wandb: FakeWandb, project: Path,
                                                              tmp_path: Path) -> None:
    """A hand-edited lock in a pull request: it says it locked phi3-finetuned, but fetches another collection."""
    committed(fake_wandb, project)
    lock = read_lock(project / "artifacts.lock")
    assert lock is not None
    art = lock.artifacts["phi3"]
    forged = art.__class__(**{**art.__dict__, "resolved": "acme-org/wandb-registry-model/evil:v0"})
    (project / "artifacts.lock").write_text(dumps(Lock({"phi3": forged})))
    [alert, *rest] = run_json("diff")["alerts"]
    assert alert["kind"] == "collection"
    assert rest == [{"name": "phi3", "kind": "mismatch", "message":
                     "resolved: the lock pins 'acme-org/wandb-registry-model/evil:v0', which is not in "
                     "wandb-registry-model/phi3-finetuned as artifacts.yaml asks (the lock was edited by hand)"}]


def test_added_and_removed_entries_and_another_lock_file(fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    committed(fake_wandb, project)
    old = tmp_path / "old.lock"
    old.write_text((project / "artifacts.lock").read_text())
    fake_wandb.log_artifact("acme", "dataset", "eval-set", {"eval.jsonl": b"{}\n"}, type="dataset", aliases=["v-ok"])
    write_manifest(project, """
        version: 1
        artifacts:
          eval:
            artifact: wandb-registry-dataset/eval-set:v0
            path: data/eval
    """)
    run("lock")
    lines = run("diff", str(old)).stdout.splitlines()
    assert lines[1:3] == ["  eval  added  v0  -> data/eval/  (1 files, 3 B)",
                          "  phi3  removed  (was v0 at models/phi3/, 3 files)"]
    assert [(e["name"], e["status"]) for e in run_json("diff", str(old), "eval")["entries"]] == [("eval", "added")]


def test_a_lock_new_in_the_working_tree_is_all_added(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    git(project, "init", "-q")
    git(project, "commit", "-q", "--allow-empty", "-m", "empty")
    run("lock")
    doc = run_json("diff")
    assert doc["base"] == "HEAD (no artifacts.lock there)"
    assert [e["status"] for e in doc["entries"]] == ["added"]


@pytest.mark.parametrize("rev, says", [("nosuch", "neither a lock file nor a git revision"),
                                        ("--output=/tmp/x", "is not a git revision")])
def test_a_bad_revision_exits_2_naming_it(fake_wandb: FakeWandb, project: Path, rev: str, says: str) -> None:
    committed(fake_wandb, project)
    assert says in run("diff", "--", rev, check=2).stderr


def test_an_entry_name_given_as_the_revision_says_to_give_the_revision_first(fake_wandb: FakeWandb,
                                                                            project: Path) -> None:
    committed(fake_wandb, project)
    assert "`wbsync diff HEAD phi3`" in run("diff", "phi3", check=2).stderr
    run("diff", "HEAD", "phi3")


def test_outside_git_a_revision_exits_2_and_suggests_a_lock_file(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    assert "wbsync diff OTHER.lock" in run("diff", check=2).stderr


def test_a_repository_without_commits_says_so_and_how_to_commit_the_lock(fake_wandb: FakeWandb,
                                                                         project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    git(project, "init", "-q")
    err = run("diff", check=2).stderr
    assert "no commits yet" in err and "git add artifacts.lock && git commit" in err
    assert "neither a lock file nor a git revision" not in err


# -- escaping: a lock in a pull request is written by whoever opened it -----------------------

HOSTILE = ["a|b.bin", "<!-- hide", "x\n> [!NOTE]\n| fake | row |", "</details>", "`code`", "@octocat",
           "rtl\u202eexe.txt", "[link](javascript:alert)", "# heading", "\x1b[2Jclear"]


def test_hostile_file_names_stay_inert_in_markdown_and_text(fake_wandb: FakeWandb, project: Path,
                                                           tmp_path: Path) -> None:
    committed(fake_wandb, project)
    lock = read_lock(project / "artifacts.lock")
    assert lock is not None
    art = lock.artifacts["phi3"]
    files = art.files + tuple(FileRecord(n, 1, "1B2M2Y8AsgTpgAmY7PhCfg==") for n in HOSTILE)
    path_change = art.__class__(**{**art.__dict__, "files": tuple(sorted(files, key=lambda f: f.path)),
                                   "path": "models/<!--x"})
    new = tmp_path / "new.lock"
    new.write_text(dumps(Lock({"phi3": path_change})))
    body = run("diff", "--lockfile", str(new), str(project / "artifacts.lock"), "--markdown").stdout
    for bad in ("\n> [!NOTE]", "\u202e", "\x1b", "\n# heading"):
        assert bad not in body, bad
    prose = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", body)  # code spans are inert: GitHub links nothing there
    for bad in ("<!--", "</details>x", "@octocat", "](javascript", "`"):
        assert bad not in prose, bad
    table = [line for line in body.splitlines() if line.startswith("| ")]
    assert all(line.count("|") == 6 for line in table), table
    assert "> - `phi3`: destination changed\\: models/phi3 \\-&gt; models/&lt;\\!\\-\\-x" in body
    text = run("diff", "--lockfile", str(new), str(project / "artifacts.lock")).stdout
    assert "\x1b" not in text and "\u202e" not in text and "\\x1b[2Jclear" in text
    assert "    + x\\x0a> [!NOTE]\\x0a| fake | row | (1 B)" in text


@given(st.text())
@example("weights|v2.bin `x` <b> @team")  # every character the table and HTML read, for sure
def test_md_escapes_every_character_markdown_or_html_could_read(text: str) -> None:
    out = md(text)
    assert not re.search(r"[<>|\n\r]", out)
    rest = re.sub("`[@#]`|&[#a-z0-9]+;", "", out)  # "@" and "#" only as one-character code spans
    assert not re.search("[@#`]", rest)
    assert all(c.isprintable() for c in out)
    assert re.fullmatch(r"(?:`[@#]`|[^\\&`]|\\[^A-Za-z0-9 ]|\\[xuU][0-9a-f]+|&[#a-z0-9]+;)*", out), out


@given(st.text(min_size=1))
@example("`x``y` ")
@example(" a ")
def test_md_code_fences_any_text_in_one_code_span(text: str) -> None:
    out = md_code(text, in_table=True)
    fence = re.match("`+", out).group()
    inner = out[len(fence):-len(fence)]
    assert out.endswith(fence) and len(fence) > max((len(r) for r in re.findall("`+", inner)), default=0)
    assert all(c.isprintable() for c in out) and "|" not in inner.replace("\\|", "")
    shown = inner[1:-1] if inner[:1] == inner[-1:] == " " and inner.strip() else inner  # CommonMark strips one
    assert shown == plain(text).replace("|", "\\|")


@given(st.text())
def test_plain_shows_every_invisible_character_as_an_escape(text: str) -> None:
    assert all(c.isprintable() for c in plain(text))


# -- large entries: file lists in the content store, compared file by file --------------------

DATASET = """
    version: 1
    artifacts:
      images:
        artifact: wandb-registry-dataset/images:production
        path: data/images
"""


def images(n: int, changed: int = 0) -> dict[str, bytes]:
    files = {f"train/{i:04d}.jpg": b"image %d" % i for i in range(n)}
    files.update({f"train/{i:04d}.jpg": b"new image %d" % i for i in range(changed)})
    return files


def test_a_large_entrys_move_is_compared_file_by_file_from_the_stored_listings(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "10")
    fake_wandb.log_artifact("acme", "dataset", "images", images(30), type="dataset", aliases=["production"])
    committed(fake_wandb, project, DATASET)
    fake_wandb.log_artifact("acme", "dataset", "images", images(31, changed=2), type="dataset",
                            aliases=["production"])
    run("lock", "--upgrade")
    [entry] = run_json("diff")["entries"]
    assert entry["files_added"] == [{"path": "train/0030.jpg", "size": 8}]
    assert [f["path"] for f in entry["files_changed"]] == ["train/0000.jpg", "train/0001.jpg"]
    assert (entry["old"]["files"], entry["new"]["files"], entry["bytes_delta"]) == (30, 31, 8 + 2 * 4)


def test_a_large_entry_whose_old_listing_this_machine_lacks_compares_totals_and_says_so(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LOCK_INLINE_MAX", "10")
    fake_wandb.log_artifact("acme", "dataset", "images", images(30), type="dataset", aliases=["production"])
    committed(fake_wandb, project, DATASET)
    fake_wandb.log_artifact("acme", "dataset", "images", images(31, changed=2), type="dataset",
                            aliases=["production"])
    run("lock", "--upgrade")
    for listing in (Path(os.environ["WBSYNC_CACHE_DIR"]) / "listings").iterdir():
        listing.unlink()
    [entry] = run_json("diff")["entries"]
    assert (entry["change"], entry["files_added"], entry["bytes_delta"]) == ("moved", [], 8 + 2 * 4)
    assert any("file lists not compared" in n for n in entry["notes"])


def test_a_hand_edited_lock_with_unsorted_files_is_still_compared_correctly() -> None:
    from wbsync.repo.lockdiff import diff_entry

    def pin(files: tuple[FileRecord, ...]) -> LockedArtifact:
        return LockedArtifact("x", "sha256:" + "0" * 64, "wandb-registry-model/x:v1",
                              "acme-org/wandb-registry-model/x:v1", "v1", "model", "d", "m", files)

    a, b, c = (FileRecord(p, 1, "1B2M2Y8AsgTpgAmY7PhCfg==") for p in "abc")
    d = diff_entry("x", pin((c, a)), pin((b, a, c)))
    assert ([f.path for f in d.files.added], d.files.removed, d.files.changed) == (["b"], (), ())
