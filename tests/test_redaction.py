"""A signed link's signature is never shown, whatever wording carries it: urllib3 names a link by
its path alone (``Max retries exceeded with url: /blob?X-Amz-Signature=...``), with no ``://``
for the URL rule to find. The exact wording goes through each place wbsync prints or raises
text: an error message on stderr, the ``--json`` error document, an error raised to Python
code, and a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb

SECRET = "5ecret5ignature0f5ignedl1nk"
# urllib3's wording (requests' ConnectionError of a refused GET of a signed link), verbatim.
URLLIB3 = (f"HTTPSConnectionPool(host='bucket.example', port=443): Max retries exceeded with url: "
           f"/blobs/ab12.bin?X-Amz-Expires=3600&X-Amz-Signature={SECRET} (Caused by NewConnectionError("
           "'<urllib3.connection.HTTPSConnection object>: Failed to establish a new connection: "
           "[Errno 111] Connection refused'))")
PATH_ONLY = f"url: /blobs/ab12.bin?X-Amz-Expires=3600&X-Amz-Signature={SECRET}"


def quoting_manifest(project: Path) -> None:
    """A manifest whose alias is the wording: its error message quotes it back."""
    write_manifest(project, f"""
        version: 1
        artifacts:
          phi3:
            artifact: "wandb-registry-model/phi3-finetuned:{PATH_ONLY}"
            path: models/phi3
    """)


def test_an_error_message_on_stderr_never_shows_the_signature_of_a_path_only_link(project: Path) -> None:
    quoting_manifest(project)
    result = run("lock", check=2)
    assert "url: /blobs/ab12.bin?..." in result.stderr, result.stderr  # the link is named, its query dropped
    assert SECRET not in result.stderr + result.stdout


def test_the_json_error_document_never_shows_the_signature_of_a_path_only_link(project: Path) -> None:
    quoting_manifest(project)
    result = run("lock", "--json", check=2)
    message = json.loads(result.stdout)["error"]["message"]
    assert "url: /blobs/ab12.bin?..." in message and SECRET not in result.stdout + result.stderr


def test_an_error_raised_to_python_code_never_shows_the_signature_of_urllib3s_wording() -> None:
    from wbsync.errors import RemoteError

    error = RemoteError(f"phi3: downloading 'weights.bin': {URLLIB3}")
    assert SECRET not in str(error) and "with url: /blobs/ab12.bin?... (Caused by" in str(error)


@pytest.mark.parametrize("wording", [URLLIB3, PATH_ONLY])
def test_a_warning_never_shows_the_signature_of_a_path_only_link(
        fake_wandb: FakeWandb, project: Path, wording: str) -> None:
    """A state file's entry is quoted in the warning that ignores it (the state file may come
    from anywhere: a copy, another checkout)."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("sync")
    state = project / ".wbsync" / "state.json"
    doc = json.loads(state.read_text())
    doc["entries"]["copied"] = {"path": f".git/{wording}", "files": {}}
    state.write_text(json.dumps(doc))
    result = run("sync")
    assert "warning:" in result.stderr and "url: /blobs/ab12.bin?..." in result.stderr, result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_an_error_raised_to_python_code_never_shows_the_user_info_of_a_link_without_a_query() -> None:
    from wbsync.errors import RemoteError

    error = RemoteError("cannot reach W&B at https://api:5ecretkey@bucket.example/graphql: refused")
    assert str(error) == "cannot reach W&B at https://***@bucket.example/graphql: refused"


def test_a_key_written_into_wandb_base_url_is_used_as_the_key_and_shown_nowhere(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process (the subprocess test in test_hostile.py guards the same promise end to end)."""
    publish(fake_wandb)
    write_manifest(project, PHI3)
    key = fake_wandb.api_key
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_BASE_URL", fake_wandb.url.replace("://", f"://api:{key}@"))
    result = run("lock", "-v")
    assert key not in result.stdout + result.stderr
    assert (project / "artifacts.lock").exists()


def test_the_json_document_is_sorted_and_indented_by_two(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    for args, code in ((("sync", "--json"), 0), (("verify", "--json", "-v"), 0)):
        out = run(*args, check=code).stdout
        assert out == json.dumps(json.loads(out), indent=2, sort_keys=True) + "\n"
        assert out.startswith('{\n  "')
