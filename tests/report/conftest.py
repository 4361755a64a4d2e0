"""Fixtures of the report tests: one full report build, shared by the notebook and browser tests."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def built_report(tmp_path_factory) -> tuple[Path, dict, float]:
    """(index path, report.json as dict, wall seconds) of one full build on the bundled data, shared by
    tests/report/test_notebooks.py and tests/report/test_report_browser.py. Skips without the notebook
    extras."""
    pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")
    from gdnlab import report

    out = tmp_path_factory.mktemp("report")
    t0 = time.perf_counter()
    index = report.build_report(out, raise_on_error=False)
    seconds = time.perf_counter() - t0
    return index, json.loads((out / "report.json").read_text()), seconds
