"""Synthetic sweep rows of engine backends and their gdnlab twins, written out by hand (the engine-gap
analysis and its figures are checked against numbers chosen here, not computed by gdnlab)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from gdnlab import results

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"
#: provenance of a row gdnlab made on a GPU (what gdnlab.plots.provenance.frame_status calls measured)
PROV = {"sm": "sm90", "gdnlab": "0.1.0", "git_commit": "0123456789abcdef", "torch": "2.11", "triton": "3.6.0",
        "act_dtype": "bfloat16", "preset": "qwen3.5-397b-a17b", "tp": 4, "timing": "amortised", "l2_flush": True,
        "timing_method": "amortised"}


def step_row(backend: str, strategy: str, batch: int, step_us: float, *, gpu: str = H200, T: int = 4,
             accept_len: float = 3.17, state_dtype: str = "bfloat16", status: str = "ok", correct: Any = True,
             **extra: Any) -> dict:
    """One step row (``measure == "step"``): µs per step ``step_us``."""
    return {"backend": backend, "mode": "step", "measure": "step", "strategy": strategy, "draft_tokens": T,
            "batch": batch, "state_dtype": state_dtype, "accept_len": accept_len, "status": status,
            "step_us": step_us, "time_us": step_us, "correct": correct, "gpu": gpu, **PROV, **extra}


def call_row(backend: str, mode: str, batch: int, time_us: float, *, gpu: str = H200, T: int = 4,
             state_dtype: str = "bfloat16", buffer_scope: str = "batch", status: str = "ok", correct: Any = True,
             **extra: Any) -> dict:
    """One kernel-call row (``measure == "call"``): µs per call ``time_us``."""
    return {"backend": backend, "mode": mode, "measure": "call", "draft_tokens": T, "batch": batch,
            "state_dtype": state_dtype, "buffer_scope": buffer_scope, "status": status, "time_us": time_us,
            "correct": correct, "gpu": gpu, **PROV, **extra}


def frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as :func:`gdnlab.results.load_sweep` would return them (every schema column)."""
    return results.to_frame(rows)
