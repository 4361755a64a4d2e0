"""Shared pytest fixtures: the CUDA device (GPU tests skip cleanly without one), the results of a
test module's Triton-interpreter child process, and one build of the report for the tests that read it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one, with the reason)")
    config.addinivalue_line("markers", "browser: needs headless Chromium")


@pytest.fixture
def cuda_device() -> torch.device:
    """The current CUDA device; skips the test (saying why) when there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU test skipped (run with a GPU, see README 'GPU machine')")
    return torch.device("cuda", torch.cuda.current_device())


@pytest.fixture(scope="module")
def interpreter_results(request, tmp_path_factory) -> dict:
    """Run the requesting test module as ``python MODULE --child OUT.json`` with ``TRITON_INTERPRET=1``
    (Triton reads it at import, so the kernels run on the CPU in a fresh process) and return the JSON
    it wrote: ``{case: {"ok": bool, "msg": str, ...}}``. The module may set ``INTERPRETER_TIMEOUT_S``
    (default 300 s). Skips, saying why, without triton or numpy."""
    pytest.importorskip("triton", reason="triton not installed: the interpreter tests need the triton package")
    pytest.importorskip("numpy", reason="Triton's interpreter needs numpy")
    script = Path(request.module.__file__).resolve()
    out = tmp_path_factory.mktemp(f"interp_{script.stem}") / "results.json"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(script), "--child", str(out)], env=env, capture_output=True,
                          text=True, timeout=getattr(request.module, "INTERPRETER_TIMEOUT_S", 300), cwd=str(REPO))
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"interpreter child failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def built_report(tmp_path_factory) -> tuple[Path, dict, float]:
    """(index path, report.json as dict, wall seconds) of one full build on the bundled data, shared by
    tests/test_notebooks.py and tests/test_report_browser.py. Skips without the notebook extras."""
    pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")
    from gdnlab import report

    out = tmp_path_factory.mktemp("report")
    t0 = time.perf_counter()
    index = report.build_report(out, raise_on_error=False)
    seconds = time.perf_counter() - t0
    return index, json.loads((out / "report.json").read_text()), seconds

def run_interpreter_cases(cases, out_path: str) -> int:
    """The child side of :func:`interpreter_results`: run each ``{name: zero-argument check}`` and write
    ``{name: {"ok", "msg", "seconds"}}`` as JSON to ``out_path`` (a failing check records its error and
    the next one runs). Called as ``python MODULE --child OUT.json`` with ``TRITON_INTERPRET=1``."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "child must run with TRITON_INTERPRET=1"
    results = {}
    for name, fn in cases.items():
        t0 = time.perf_counter()
        try:
            fn()
            results[name] = {"ok": True, "msg": ""}
        except Exception as exc:
            results[name] = {"ok": False, "msg": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 3)
    Path(out_path).write_text(json.dumps(results, indent=1))
    return 0
