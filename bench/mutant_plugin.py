"""pytest plugin for ``python -m bench.mutants``: records why each test failed, and stops the
run at the first failure that is a test's own assertion (the planted bug is caught).

A failure counts as a catch only when it is an ``AssertionError`` raised in the test suite's
own code (a test or tests/helpers.py), or a ``pytest.fail``/``pytest.raises`` failure: an
exception escaping the package (a crash of the mutated code), a fixture error or a collection
error is recorded but is not a catch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPORT_ENV = "WBSYNC_MUTANT_REPORT"  # where the records go (a JSON file)
TESTS_ENV = "WBSYNC_MUTANT_TESTS"  # the folder of the test suite (assertions must be raised there)
_records: list[dict[str, Any]] = []


def _is_test_assertion(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    tests = Path(os.environ.get(TESTS_ENV, "tests")).resolve()
    if excinfo.errisinstance(pytest.fail.Exception):
        return True
    if not excinfo.errisinstance(AssertionError):
        return False
    last = Path(str(excinfo.traceback[-1].path)).resolve()
    return last.is_relative_to(tests)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.excinfo is None:
        return
    caught = report.when == "call" and _is_test_assertion(call.excinfo)
    _records.append({
        "nodeid": item.nodeid,
        "when": report.when,
        "caught": caught,
        "type": call.excinfo.typename,
        "message": str(call.excinfo.value).strip().splitlines()[0][:200] if str(call.excinfo.value).strip() else "",
    })
    if caught:
        item.session.shouldstop = "a test assertion failed: the planted bug is caught"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _records.append({"nodeid": report.nodeid, "when": "collect", "caught": False, "type": "collection error",
                         "message": str(report.longrepr).strip().splitlines()[-1][:200]})


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(REPORT_ENV)
    if target:
        Path(target).write_text(json.dumps({"records": _records, "collected": session.testscollected}))
