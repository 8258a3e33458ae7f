"""Artifact file lists are checked before anything is written."""

from __future__ import annotations

import pytest

from wbsync.core.errors import UnsafePathError
from wbsync.core.models import FileRecord
from wbsync.core.paths import check_paths

D = "XUFAKrxLKna5cZ2REBfFkg=="


def files(*paths: str) -> tuple[FileRecord, ...]:
    return tuple(FileRecord(p, 1, D) for p in paths)


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\x", "./a", "a//b", "a/", "", "a/\x00b", "x" * 300])
def test_every_spelling_of_an_unsafe_artifact_path_is_refused_with_exit_code_4(bad: str) -> None:
    with pytest.raises(UnsafePathError) as err:
        check_paths("phi3", files("ok.txt", bad))
    assert err.value.exit_code == 4 and "phi3" in err.value.message


def test_names_that_differ_only_by_case_are_refused() -> None:
    with pytest.raises(UnsafePathError, match="differ only by case"):
        check_paths("phi3", files("Model.bin", "model.bin"))


def test_a_file_and_a_folder_with_the_same_path_are_refused() -> None:
    with pytest.raises(UnsafePathError, match="both as a file and as a folder"):
        check_paths("phi3", files("a", "a/b"))


def test_ordinary_nested_and_unicode_paths_pass() -> None:
    check_paths("phi3", files("config.json", "weights/shard-0.bin", "données/é.txt", ".hidden"))
