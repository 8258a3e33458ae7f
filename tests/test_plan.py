"""Planning is pure: the same lock, state and observations always give the same plan."""

from __future__ import annotations

import pytest

from wbsync.core.models import FileRecord, Lock, LockedArtifact
from wbsync.decide.plan import digest_key, make_plan
from wbsync.tree.state import EntryState, PlacedFile, State

# The core: what CI runs on every supported Python (pytest -m core).
pytestmark = pytest.mark.core

A = FileRecord("a.txt", 3, "XUFAKrxLKna5cZ2REBfFkg==")
B = FileRecord("sub/b.txt", 5, "Clls3/ckw82dP8Kl9MPf6g==")


def lock_of(*files: FileRecord, path: str = "models/m") -> Lock:
    art = LockedArtifact("m", "sha256:" + "0" * 64, "r", "acme-org/wandb-registry-model/c:v1", "v1",
                         "model", "d", path, tuple(files))
    return Lock({"m": art})


def state_of(path: str = "models/m", **files: tuple[tuple[int, int, int], FileRecord]) -> State:
    return State({"m": EntryState(path, {r.path: PlacedFile(st, digest_key(r)) for st, r in files.values()})})


def test_missing_files_are_placed() -> None:
    plan = make_plan(lock_of(A, B), State(), {"models/m/a.txt": None, "models/m/sub/b.txt": None})
    assert [a.dest for a in plan.entries[0].place] == ["models/m/a.txt", "models/m/sub/b.txt"]
    assert not plan.is_noop


def test_files_whose_stat_matches_the_state_are_kept_without_rehashing() -> None:
    st = (3, 111, 7)
    plan = make_plan(lock_of(A), state_of(a=(st, A)), {"models/m/a.txt": st})
    assert plan.is_noop and len(plan.entries[0].keep) == 1


def test_a_file_touched_since_it_was_placed_is_rehashed_not_trusted() -> None:
    plan = make_plan(lock_of(A), state_of(a=((3, 111, 7), A)), {"models/m/a.txt": (3, 222, 7)})
    assert [a.dest for a in plan.entries[0].check] == ["models/m/a.txt"]


def test_a_file_on_disk_that_wbsync_never_placed_is_checked() -> None:
    plan = make_plan(lock_of(A), State(), {"models/m/a.txt": (3, 1, 1)})
    assert len(plan.entries[0].check) == 1


def test_files_placed_earlier_and_no_longer_locked_are_removed() -> None:
    plan = make_plan(lock_of(A), state_of(a=((3, 1, 1), A), b=((5, 1, 2), B)), {"models/m/a.txt": (3, 1, 1)})
    assert [d for d, _ in plan.entries[0].remove] == ["models/m/sub/b.txt"]


def test_moving_an_entry_removes_the_files_from_the_old_folder() -> None:
    plan = make_plan(lock_of(A, path="new"), state_of(a=((3, 1, 1), A)), {"new/a.txt": None})
    assert [d for d, _ in plan.entries[0].remove] == ["models/m/a.txt"]
    assert [a.dest for a in plan.entries[0].place] == ["new/a.txt"]


def test_entries_dropped_from_the_lock_leave_orphans_to_remove() -> None:
    plan = make_plan(Lock({}), state_of(a=((3, 1, 1), A)), {})
    assert [d for d, _ in plan.orphans] == ["models/m/a.txt"]


def test_restricting_to_names_never_touches_other_entries_files() -> None:
    plan = make_plan(Lock({}), state_of(a=((3, 1, 1), A)), {}, names=frozenset())
    assert plan.orphans == () and plan.is_noop


def test_an_untouched_file_whose_locked_digest_changed_is_replaced_without_rehashing() -> None:
    new_a = FileRecord("a.txt", 3, "Clls3/ckw82dP8Kl9MPf6g==")
    plan = make_plan(lock_of(new_a), state_of(a=((3, 1, 1), A)), {"models/m/a.txt": (3, 1, 1)})
    assert [a.dest for a in plan.entries[0].place] == ["models/m/a.txt"] and not plan.entries[0].check


def test_a_state_without_devices_still_vouches_for_untouched_files() -> None:
    plan = make_plan(lock_of(A), state_of(a=((3, 111, 7), A)), {"models/m/a.txt": (3, 111, 7, 42)})
    assert plan.is_noop


def test_a_recorded_device_must_match_too() -> None:
    plan = make_plan(lock_of(A), state_of(a=((3, 111, 7, 42), A)), {"models/m/a.txt": (3, 111, 7, 43)})
    assert len(plan.entries[0].check) == 1


def test_a_folder_in_the_way_is_planned_as_blocked_not_placed() -> None:
    plan = make_plan(lock_of(A), State(), {"models/m/a.txt": "folder"})
    entry = plan.entries[0]
    assert [(a.dest, kind) for a, kind in entry.blocked] == [("models/m/a.txt", "folder")] and not entry.place


def test_a_renamed_entry_keeps_the_files_and_the_evidence_of_its_old_name() -> None:
    st = (3, 1, 1, 9)
    renamed = Lock({"new": lock_of(A).artifacts["m"]})
    plan = make_plan(renamed, state_of(a=(st, A)), {"models/m/a.txt": st})
    assert plan.orphans == () and plan.is_noop and len(plan.entries[0].keep) == 1


def test_a_file_another_entry_now_locks_is_never_removed() -> None:
    inner = FileRecord("m/a.txt", 3, A.digest)
    moved = Lock({"m": LockedArtifact("m", "sha256:" + "0" * 64, "r", "acme-org/wandb-registry-model/c:v1", "v1",
                                      "model", "d", "models", (inner,))})
    plan = make_plan(moved, state_of(a=((3, 1, 1, 9), A)), {"models/m/a.txt": (3, 1, 1, 9)})
    assert plan.entries[0].remove == ()
