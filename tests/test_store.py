import multiprocessing
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from wbsync.core.digests import hash_bytes, hex_of
from wbsync.core.errors import IntegrityError
from wbsync.core.models import FileRecord
from wbsync.store.blobs import Store, default_store_dir

DATA = b"weights " * 5000


def record_for(data: bytes, algorithm="md5", path="model/weights.bin") -> FileRecord:
    return FileRecord(
        path=path, size=len(data), digest=hash_bytes(data, algorithm), algorithm=algorithm
    )


def write_in_pieces(store: Store, record: FileRecord, data: bytes, pause: float = 0.0) -> Path:
    with store.incoming(record) as writer:
        for start in range(0, len(data), 4096):
            writer.write(data[start : start + 4096])
            time.sleep(pause)
        return writer.commit()


def leftovers(store: Store) -> list[str]:
    return sorted(os.listdir(store.tmp_dir)) if store.tmp_dir.exists() else []


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


# -- where the store lives


def test_wbsync_cache_dir_overrides_every_other_location(monkeypatch, tmp_path):
    monkeypatch.setenv("WBSYNC_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", "/elsewhere")
    assert default_store_dir() == tmp_path / "c"


def test_xdg_cache_home_is_used_when_absolute_and_ignored_when_relative(monkeypatch, tmp_path):
    monkeypatch.delenv("WBSYNC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_dir() == tmp_path / "xdg" / "wbsync"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_dir().is_relative_to(tmp_path / "home")


# -- bytes in


def test_committed_bytes_become_a_read_only_blob_named_by_their_digest(store):
    record = record_for(DATA)
    path = write_in_pieces(store, record, DATA)
    hexdigest = hex_of(record.digest)
    assert path == store.root / "blobs" / "md5" / hexdigest[:2] / hexdigest[2:]
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.has(record)
    assert leftovers(store) == []


def test_xxh128_records_are_stored_apart_from_md5_records(store):
    record = record_for(DATA, "xxh128")
    assert write_in_pieces(store, record, DATA).parent.parent.name == "xxh128"
    assert store.has(record) and not store.has(record_for(DATA, "md5"))


def test_an_empty_file_is_a_blob_like_any_other(store):
    record = record_for(b"")
    write_in_pieces(store, record, b"")
    assert store.has(record)


def test_wrong_bytes_raise_integrity_error_and_leave_no_blob_and_no_temp_file(store):
    record = record_for(DATA)
    wrong = DATA[:-1] + b"X"
    with pytest.raises(IntegrityError) as info:
        write_in_pieces(store, record, wrong)
    message = str(info.value)
    assert (
        record.path in message and record.digest in message and hash_bytes(wrong, "md5") in message
    )
    assert info.value.exit_code == 4
    assert not store.blob_path(record).exists()
    assert leftovers(store) == []


def test_too_few_bytes_raise_integrity_error_and_leave_nothing(store):
    record = record_for(DATA)
    with pytest.raises(IntegrityError, match="received 4096 bytes"):
        write_in_pieces(store, record, DATA[:4096])
    assert not store.has(record) and leftovers(store) == []


def test_too_many_bytes_are_refused_as_they_arrive(store):
    record = record_for(DATA)
    with pytest.raises(IntegrityError, match="more than"):
        write_in_pieces(store, record, DATA + b"extra")
    assert not store.has(record) and leftovers(store) == []


def test_leaving_the_block_without_commit_deletes_the_temp_file(store):
    record = record_for(DATA)
    with pytest.raises(KeyboardInterrupt), store.incoming(record) as writer:
        writer.write(DATA[:100])
        assert writer.temp_path.exists()
        raise KeyboardInterrupt
    assert leftovers(store) == [] and not store.has(record)


def test_a_dropped_download_resumes_from_the_writers_offset(store):
    record = record_for(DATA)
    with store.incoming(record) as writer:
        writer.write(DATA[:10_000])  # then the connection drops
        assert writer.offset == 10_000
        writer.write(DATA[writer.offset :])  # what a "Range: bytes=10000-" request returns
        writer.commit()
    assert store.blob_path(record).read_bytes() == DATA


def test_reset_starts_over_when_the_server_ignores_the_range(store):
    record = record_for(DATA)
    with store.incoming(record) as writer:
        writer.write(b"garbage" * 10)
        writer.reset()
        assert writer.offset == 0
        writer.write(DATA)
        writer.commit()
    assert store.blob_path(record).read_bytes() == DATA


def test_has_is_false_for_a_blob_of_the_wrong_size(store):
    record = record_for(DATA)
    path = write_in_pieces(store, record, DATA)
    path.chmod(0o644)
    path.write_bytes(DATA[:10])
    assert not store.has(record)


def test_a_malformed_digest_is_rejected_as_remote_content(store):
    record = FileRecord(path="x.bin", size=1, digest="../../etc/passwd", algorithm="md5")
    with pytest.raises(IntegrityError, match="x.bin"):
        store.blob_path(record)


def test_an_unknown_algorithm_never_becomes_part_of_a_store_path(store):
    digest = hash_bytes(b"x", "md5")
    record = FileRecord("x.bin", 1, digest, algorithm="../md5")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="unknown digest algorithm"):
        store.blob_path(record)


def test_put_file_brings_a_local_file_in_verified(store, tmp_path):
    src = tmp_path / "local.bin"
    src.write_bytes(DATA)
    assert store.put_file(record_for(DATA), src).read_bytes() == DATA
    with pytest.raises(IntegrityError):
        store.put_file(record_for(b"other bytes"), src)


def test_committing_a_blob_that_is_already_there_replaces_it_with_the_same_bytes(store):
    record = record_for(DATA)
    write_in_pieces(store, record, DATA)
    assert write_in_pieces(store, record, DATA).read_bytes() == DATA


# -- concurrency


def test_concurrent_threads_writing_one_blob_all_succeed_with_one_correct_blob(store):
    record = record_for(DATA)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            write_in_pieces(store, record, DATA, pause=0.0005)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.blob_path(record).read_bytes() == DATA
    assert leftovers(store) == []


def test_lock_blob_makes_other_threads_wait_and_then_find_the_blob(store):
    record = record_for(DATA)
    fetches = []

    def fetch_once() -> None:
        with store.lock_blob(record):
            if store.has(record):  # another thread may have done this already
                return
            fetches.append(1)
            write_in_pieces(store, record, DATA, pause=0.0005)

    threads = [threading.Thread(target=fetch_once) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 1 and store.has(record)


def _process_writer(root: str, barrier, use_lock: bool) -> None:
    store, record = Store(Path(root)), record_for(DATA)
    barrier.wait()
    if not use_lock:
        write_in_pieces(store, record, DATA, pause=0.0005)
        return
    with store.lock_blob(record):
        if store.has(record):
            os._exit(11)
        write_in_pieces(store, record, DATA, pause=0.0005)
        os._exit(10)


@pytest.mark.parametrize("use_lock", [False, True], ids=["unlocked", "locked"])
def test_two_processes_fetching_one_blob_end_with_one_correct_blob(store, use_lock):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_process_writer, args=(str(store.root), barrier, use_lock))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    codes = sorted(p.exitcode for p in procs)
    assert codes == ([10, 11] if use_lock else [0, 0])
    assert store.blob_path(record_for(DATA)).read_bytes() == DATA
    assert leftovers(store) == []


def test_exclusive_waits_until_shared_holders_are_done(store):
    acquired = threading.Event()

    def prune() -> None:
        with store.exclusive():
            acquired.set()

    with store.shared(), store.shared():  # many syncs at once are fine
        thread = threading.Thread(target=prune)
        thread.start()
        assert not acquired.wait(0.2)
    assert acquired.wait(5)
    thread.join()


# -- leftovers


def _killed_writer(root: str) -> None:
    store = Store(Path(root))
    writer = store.incoming(record_for(DATA)).__enter__()
    writer.write(DATA[:1000])
    writer._file.flush()  # type: ignore[union-attr]
    os.kill(os.getpid(), signal.SIGKILL)


def test_clean_tmp_removes_files_of_killed_writers_and_keeps_live_ones(store):
    proc = multiprocessing.get_context("spawn").Process(
        target=_killed_writer, args=(str(store.root),)
    )
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == -signal.SIGKILL
    assert len(leftovers(store)) == 1

    record = record_for(DATA)
    with store.incoming(record) as live:
        live.write(DATA[:10])
        assert store.clean_tmp() == 0  # the dead writer's file is too recent for the default
        assert store.clean_tmp(min_age_s=0) == 1
        assert leftovers(store) == [live.temp_path.name]
        live.write(DATA[10:])
        live.commit()
    assert store.has(record)


def test_clean_tmp_on_a_new_store_does_nothing(store):
    assert store.clean_tmp(min_age_s=0) == 0
