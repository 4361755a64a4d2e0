"""Shared pytest fixtures: the CUDA device (GPU tests skip cleanly without one) and the results of a
test module's Triton-interpreter child process.

The tests mirror the package: ``tests/<part>/`` holds the tests of ``gdnlab/<part>/``, and tests of
the top-level modules and of the package as a whole sit here. Basenames stay unique across folders
(pytest's default import mode). Helpers shared by several test files live in ``tests/helpers/``
(imported as ``helpers``: pytest puts ``tests/`` on ``sys.path``, see ``pythonpath`` in pyproject.toml);
fixtures shared within one folder live in that folder's ``conftest.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


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
    it wrote: ``{case: {"ok": bool, "msg": str, ...}}`` (the child calls
    :func:`helpers.interpreter.run_interpreter_cases`). The module may set ``INTERPRETER_TIMEOUT_S``
    (default 300 s). Skips, saying why, without triton or numpy."""
    pytest.importorskip("triton", reason="triton not installed: the interpreter tests need the triton package")
    pytest.importorskip("numpy", reason="Triton's interpreter needs numpy")
    script = Path(request.module.__file__).resolve()
    out = tmp_path_factory.mktemp(f"interp_{script.stem}") / "results.json"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(script), "--child", str(out)], env=env, capture_output=True,
                          text=True, timeout=getattr(request.module, "INTERPRETER_TIMEOUT_S", 300), cwd=str(REPO))
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"interpreter child failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())
