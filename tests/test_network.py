"""Downloads over a network that is not loopback: expiring and redirected links, stalls,
large files in byte ranges (failing, stalling, out of order, resumed after a kill), and many
processes sharing one store. Sizes and settings are small so each test takes seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import popen_interruptible, run, tree, write_manifest
from test_lock_and_sync import PHI3, publish
from wbsync.testing import FakeWandb, Fault, LinkPolicy, NetworkProfile

KiB = 1024
PART = 16 * KiB


@pytest.fixture(autouse=True)
def fast_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_RETRIES", "3")
    monkeypatch.setenv("WBSYNC_BACKOFF", "0.01")
    monkeypatch.setenv("WBSYNC_TIMEOUT", "3")
    # Ranges for anything from 64 KiB, in 16 KiB parts, 4 at once.
    monkeypatch.setenv("WBSYNC_RANGE_THRESHOLD", str(64 * KiB))
    monkeypatch.setenv("WBSYNC_PART_SIZE", str(PART))
    monkeypatch.setenv("WBSYNC_CONNECTIONS", "4")


def many_files(count: int, size: int = 100) -> dict[str, bytes]:
    return {f"f{i:03d}.bin": os.urandom(size) for i in range(count)}


def blob_gets(srv: FakeWandb) -> list:
    return [r for r in srv.requests if r.method == "GET" and "/blobs/" in r.path]


def renewals(srv: FakeWandb) -> list[list[str]]:
    """The file names of each link renewal: the listing calls after the first (a sync asks for
    the links of the files it is about to fetch, a batch at a time; these entries are one batch)."""
    named = [r.variables.get("fileNames") for r in srv.requests if r.operation == "ArtifactMembershipFiles"]
    assert named and named[0], "the first listing call asks for the links of the missing files by name"
    return named[1:]


def synced(project: Path) -> dict[str, bytes]:
    return tree(project / "models" / "phi3")


# -- the fake server's network --------------------------------------------------------------


def test_the_cloud_profile_delays_each_file_and_caps_one_connections_bandwidth(fake_wandb: FakeWandb) -> None:
    import urllib3

    v = publish(fake_wandb, {"w.bin": b"x" * 2_000_000})
    url = fake_wandb.file_url(v.artifact_id, "w.bin")
    fake_wandb.network = "cloud"
    start = time.monotonic()
    assert len(urllib3.request("GET", url).data) == 2_000_000
    assert time.monotonic() - start >= 0.03 + 2_000_000 / 50e6  # time to first byte + 2 MB at 50 MB/s


def test_a_profile_caps_the_link_shared_by_all_connections(fake_wandb: FakeWandb) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    v = publish(fake_wandb, {f"w{i}.bin": b"x" * 1_000_000 for i in range(4)})
    urls = [fake_wandb.file_url(v.artifact_id, f"w{i}.bin") for i in range(4)]
    fake_wandb.network = NetworkProfile("test", 0.0, 100e6, 10e6)  # 4 connections share 10 MB/s
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        assert sum(len(r.data) for r in pool.map(lambda u: urllib3.request("GET", u), urls)) == 4_000_000
    assert time.monotonic() - start >= 0.35  # 4 MB at 10 MB/s, less the first chunks' head start


@pytest.mark.parametrize("style, status", [("gcs", 400), ("s3", 403)])
def test_an_expired_link_is_answered_as_the_cloud_does(fake_wandb: FakeWandb, style: str, status: int) -> None:
    import urllib3

    v = publish(fake_wandb)
    fake_wandb.links = LinkPolicy(lifetime_s=-1, style=style)  # type: ignore[arg-type]
    resp = urllib3.request("GET", fake_wandb.file_url(v.artifact_id, "README.md"))
    assert resp.status == status
    assert (b"ExpiredToken" if style == "gcs" else b"Request has expired") in resp.data


# -- expiring links -------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["gcs", "s3"])
def test_links_that_expire_mid_sync_are_renewed_in_one_batch_and_the_sync_completes(
        fake_wandb: FakeWandb, project: Path, style: str) -> None:
    files = many_files(20)
    publish(fake_wandb, files)
    write_manifest(project, PHI3)
    run("lock")
    # One file at a time; the first answer takes longer than every link's lifetime.
    fake_wandb.links = LinkPolicy(lifetime_s=1.5, style=style)  # type: ignore[arg-type]
    fake_wandb.inject(Fault("file", "slow", delay=2.0, match="f000.bin"))
    fake_wandb.clear_requests()
    run("sync", "--jobs", "1")
    assert synced(project) == files
    batches = renewals(fake_wandb)
    assert len(batches) == 1 and len(batches[0]) == 19  # every file still missing, in one call
    refused = [r for r in blob_gets(fake_wandb) if r.status in (400, 403)]
    assert len(refused) == 1


def test_a_server_that_keeps_refusing_fresh_links_exits_3_after_a_bounded_number_of_renewals(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_LINK_REFRESHES", "2")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.links = LinkPolicy(lifetime_s=-1)  # born expired
    fake_wandb.clear_requests()
    result = run("sync", "--jobs", "1", check=3)
    assert "refused" in result.stderr and "fresh links" in result.stderr
    assert "sig=" not in result.stderr and "expires=" not in result.stderr  # no signed link printed
    assert len(renewals(fake_wandb)) == 2
    assert not (project / "models").exists()


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [302, 307])
def test_redirected_links_are_followed_to_another_host_without_credentials(
        fake_wandb: FakeWandb, project: Path, status: int) -> None:
    from test_lock_and_sync import MODEL

    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.links = LinkPolicy(redirect=status, hops=2)
    fake_wandb.clear_requests()
    run("sync")
    assert synced(project) == MODEL
    gets = blob_gets(fake_wandb)
    assert {r.status for r in gets} == {status, 200}
    assert any(r.headers.get("host", "").startswith("localhost") for r in gets)
    assert all("authorization" not in r.headers for r in gets)


def test_a_redirect_loop_exits_3(fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.links = LinkPolicy(redirect=302, hops=50)
    result = run("sync", check=3)
    assert "redirected more than 10 times" in result.stderr
    assert not (project / "models").exists()


# -- stalls ---------------------------------------------------------------------------------


@pytest.fixture
def stall_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBSYNC_STALL_SECONDS", "0.5")
    monkeypatch.setenv("WBSYNC_STALL_BYTES", "1000")


def test_a_server_that_sends_a_byte_at_a_time_is_dropped_as_stalled_and_retried(
        fake_wandb: FakeWandb, project: Path, stall_fast: None) -> None:
    from test_lock_and_sync import MODEL

    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "trickle", times=1, delay=0.02, match="shard-0.bin"))
    run("sync")
    assert synced(project) == MODEL


def test_a_link_that_stays_stalled_exits_3_without_waiting_for_the_whole_file(
        fake_wandb: FakeWandb, project: Path, stall_fast: None) -> None:
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "trickle", times=None, delay=0.02, match="shard-0.bin"))
    start = time.monotonic()
    result = run("sync", check=3)
    assert "stalled" in result.stderr and "3 attempt" in result.stderr
    # A stall deadline is about time: 3.8 s measured, 10x margin, still far below the whole
    # file's 2 minutes (6,000 bytes at 50 a second); and the event: three attempts, each dropped.
    assert time.monotonic() - start < 40
    assert [r.fault for r in blob_gets(fake_wandb) if "shard-0.bin" in r.path] == ["trickle"] * 3
    assert not (project / "models").exists()


# -- large files in byte ranges -------------------------------------------------------------

BIG = os.urandom(13 * PART + 123)  # 14 parts, the last one short


def ranges_of(srv: FakeWandb) -> list[str]:
    return [r.headers.get("range", "") for r in blob_gets(srv) if "big.bin" in r.path]


def test_a_large_file_arrives_as_parallel_ranges_and_is_verified_whole(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, {"big.bin": BIG, "small.txt": b"hi"})
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.clear_requests()
    run("sync")
    assert synced(project) == {"big.bin": BIG, "small.txt": b"hi"}
    starts = sorted(int(r.split("=")[1].split("-")[0]) for r in ranges_of(fake_wandb))
    assert starts == [i * PART for i in range(14)]  # each part once, nothing else


def test_ranges_that_fail_stall_or_land_out_of_order_still_give_the_exact_file(
        fake_wandb: FakeWandb, project: Path, stall_fast: None) -> None:
    publish(fake_wandb, {"big.bin": BIG})
    write_manifest(project, PHI3)
    run("lock")
    # The first part lands last; others drop mid-body, end early, get a 503 or stall.
    for fault in (Fault("file", "slow", delay=0.5, match="bytes=0-"),
                  Fault("file", "reset_mid_body", match=f"bytes={PART}-"),
                  Fault("file", "truncate", match=f"bytes={3 * PART}-"),
                  Fault("file", "status", status=503, match=f"bytes={5 * PART}-"),
                  Fault("file", "trickle", delay=0.05, match=f"bytes={7 * PART}-")):
        fake_wandb.inject(fault)
    run("sync")
    assert synced(project) == {"big.bin": BIG}
    assert fake_wandb.pending_faults() == []


def test_a_range_with_wrong_bytes_is_caught_by_the_whole_file_digest(
        fake_wandb: FakeWandb, project: Path) -> None:
    publish(fake_wandb, {"big.bin": BIG})
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "wrong_bytes", match=f"bytes={9 * PART}-"))
    result = run("sync", check=4)
    assert "digest" in result.stderr
    assert not (project / "models").exists()
    store = Path(os.environ["WBSYNC_CACHE_DIR"])
    assert not list(store.rglob("*.ranged*"))  # the bad part-done file is gone, not resumed


def killed_with_13_parts_done(fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sync of BIG killed while part 6 hangs and the 13 others are done; its part-done
    journal (next to the part-done file)."""
    publish(fake_wandb, {"big.bin": BIG})
    write_manifest(project, PHI3)
    run("lock")
    monkeypatch.setenv("WBSYNC_CONNECTIONS", "2")
    fake_wandb.inject(Fault("file", "hang", times=None, match=f"bytes={6 * PART}-"))
    child = subprocess.Popen([sys.executable, "-m", "wbsync", "sync"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        journals = list(Path(os.environ["WBSYNC_CACHE_DIR"]).rglob("*.ranged.json"))
        if journals and len(json.loads(journals[0].read_text())["done"]) == 13:
            journal = journals[0]
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert journal is not None, "the first sync never got 13 parts done"
    fake_wandb.clear_faults()
    fake_wandb.clear_requests()
    return journal


def test_a_sync_killed_in_the_middle_of_a_large_file_resumes_with_only_the_missing_ranges(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = killed_with_13_parts_done(fake_wandb, project, monkeypatch)
    done = json.loads(journal.read_text())["done"]
    run("sync")
    assert synced(project) == {"big.bin": BIG}
    missing = sorted(set(range(14)) - set(done))
    assert missing == [6]
    assert ranges_of(fake_wandb) == [f"bytes={6 * PART}-{7 * PART - 1}"]


def test_a_resumed_part_done_file_damaged_since_the_kill_is_caught_and_fetched_again(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = killed_with_13_parts_done(fake_wandb, project, monkeypatch)
    part_file = Path(str(journal).removesuffix(".json"))
    with part_file.open("r+b") as f:  # a part the journal calls done, changed on disk
        f.seek(2 * PART + 5)
        f.write(b"tampered")
    result = run("sync")  # our own disk's damage: discarded and fetched again in the same run
    assert "corrupt" not in result.stderr and "report it" not in result.stderr, result.stderr
    assert not part_file.exists() and not journal.exists()  # discarded, not resumed again
    assert synced(project) == {"big.bin": BIG}


# -- many processes, one store --------------------------------------------------------------


def test_projects_syncing_the_same_files_at_once_fetch_each_blob_once(
        fake_wandb: FakeWandb, tmp_path: Path) -> None:
    files = many_files(20)
    publish(fake_wandb, files)
    projects = []
    for i in range(4):
        folder = tmp_path / f"checkout-{i}"
        folder.mkdir()
        write_manifest(folder, PHI3)
        projects.append(folder)
    subprocess.run([sys.executable, "-m", "wbsync", "lock"], cwd=projects[0], check=True, capture_output=True)
    for folder in projects[1:]:
        (folder / "artifacts.lock").write_bytes((projects[0] / "artifacts.lock").read_bytes())
    # Each process takes seconds (0.5 s per file, 2 at a time), so all four overlap even when
    # they start seconds apart; without claims each fetches what the others are fetching.
    fake_wandb.network = NetworkProfile("test", ttfb_s=0.5)
    fake_wandb.clear_requests()
    children = [subprocess.Popen([sys.executable, "-m", "wbsync", "sync", "--jobs", "2"], cwd=folder,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for folder in projects]
    assert [c.wait(timeout=120) for c in children] == [0, 0, 0, 0]
    for folder in projects:
        assert tree(folder / "models" / "phi3") == files
    assert len(blob_gets(fake_wandb)) == 20


def test_a_sync_needing_other_blobs_does_not_wait_for_one_stuck_on_its_own(
        fake_wandb: FakeWandb, project: Path, tmp_path: Path) -> None:
    publish(fake_wandb)
    fake_wandb.log_artifact("acme", "model", "other", {"o.bin": b"other"}, aliases=["production"])
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "hang", times=None, match="shard-0.bin"))
    stuck = subprocess.Popen([sys.executable, "-m", "wbsync", "sync"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any("shard-0.bin" in r.path for r in blob_gets(fake_wandb)) and time.monotonic() < deadline:
            time.sleep(0.05)
        other = tmp_path / "other"
        other.mkdir()
        write_manifest(other, PHI3.replace("phi3-finetuned", "other"))
        os.chdir(other)
        run("sync")
        assert tree(other / "models" / "phi3") == {"o.bin": b"other"}
        assert stuck.poll() is None  # still waiting on its own file
    finally:
        stuck.kill()
        stuck.wait()


def test_ctrl_c_stops_a_sync_at_once_even_while_a_server_holds_a_download(
        fake_wandb: FakeWandb, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that never answers a file GET: the download thread sits in its socket until the
    # read timeout (here 60 s). Ctrl-C must not wait for it.
    monkeypatch.setenv("WBSYNC_TIMEOUT", "60")
    monkeypatch.setenv("WBSYNC_STALL_SECONDS", "60")
    publish(fake_wandb)
    write_manifest(project, PHI3)
    run("lock")
    fake_wandb.inject(Fault("file", "hang", times=None, match="shard-0.bin"))
    proc = popen_interruptible(project, "sync")
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + 60
    while "fetching" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    time.sleep(1.0)  # the other files arrive; the shard's GET hangs
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, seen + err
    assert time.monotonic() - started < 10, "Ctrl-C waited for the hung download"  # 0.2 s measured
    assert "hang" in [r.fault for r in blob_gets(fake_wandb) if "shard-0.bin" in r.path]  # it was held
    assert "Traceback" not in err
    assert not (project / "models").exists()
    fake_wandb.reset()
