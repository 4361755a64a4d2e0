"""The child side of the Triton-interpreter tests (the ``interpreter_results`` fixture of
tests/conftest.py runs a test module as ``python MODULE --child OUT.json``)."""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path


def run_interpreter_cases(cases, out_path: str) -> int:
    """The child side of ``conftest.interpreter_results``: run each ``{name: zero-argument check}`` and write
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
