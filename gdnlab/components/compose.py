"""Predict the slice's step time from its components and compare with the measured step.

One step of the slice is one CUDA graph of every op of its layers (:meth:`BoundSlice.step_ops`).
Each component was timed as a graph of its own, so each component time holds one graph overhead
``O`` (``launch.graph``: the replay's fixed cost). The prediction is::

    predicted_us = O + sum_c count_c * (median_us_c - O)

over the step's recipe (``count_c`` ops of component ``c``), with component times at the same mode,
B and strategy, and, for KV-dependent components (``attn.attention``), the same KV length.
``rel_err = (predicted_us - measured_us) / measured_us``; ``within_tol`` is ``|rel_err| <= tol``.
Rows are ``status = "measured"`` when both sides were measured on a GPU (``synthetic`` for CPU
runs); the tensor-parallel all-reduce is not part of this single-GPU check
(:mod:`gdnlab.components.allreduce` projects it separately).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

__all__ = ["predict_step_us", "check_frame", "recipe_from_frame", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 0.10
_KV = frozenset({"attn.attention", "mtp_draft"})
_STRATEGY = frozenset({"gdn.recurrent", "gdn.commit"})


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    if "outcome" in frame:
        frame = frame[frame["outcome"] == "ok"]
    return frame


def predict_step_us(components: pd.DataFrame, recipe: Mapping[str, int], *, mode: str, batch: int,
                    kv_len: int | None, strategy: str | None, overhead_us: float) -> tuple[float, list[str]]:
    """``(predicted_us, missing)``: the composed step time (µs) and the components without a usable
    row at this point (then ``predicted_us`` is NaN).

    ``components`` needs ``component``, ``mode``, ``batch``, ``kv_len``, ``strategy``, ``median_us``
    (and ``outcome``: only ``"ok"`` rows count). ``strategy`` is matched for ``gdn.recurrent`` and
    ``gdn.commit`` in MTP steps; ``kv_len`` for ``attn.attention``."""
    rows = _ok(components)
    rows = rows[(rows["mode"] == mode) & (rows["batch"] == batch)]
    total, missing = float(overhead_us), []
    for comp, count in recipe.items():
        r = rows[rows["component"] == comp]
        if comp in _KV:
            r = r[r["kv_len"] == kv_len]
        if comp in _STRATEGY and mode == "mtp" and strategy is not None:
            r = r[r["strategy"] == strategy]
        if r.empty:
            missing.append(comp)
            continue
        total += int(count) * (float(r["median_us"].median()) - float(overhead_us))
    return (math.nan if missing else total), missing


def recipe_from_frame(recipes: pd.DataFrame, mode: str) -> dict[str, int]:
    """``{component: count}`` of ``mode`` from a recipes frame (``mode``, ``component``, ``count``)."""
    r = recipes[recipes["mode"] == mode]
    return {str(c): int(n) for c, n in zip(r["component"], r["count"])}


def check_frame(components: pd.DataFrame, slices: pd.DataFrame, recipes: pd.DataFrame, overhead_us: float,
                tol: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per measured slice step: ``preset``, ``mode``, ``batch``, ``kv_len``, ``strategy``,
    ``predicted_us``, ``measured_us``, ``rel_err``, ``within_tol``, ``missing`` (components without
    a row), ``status``; slice rows that were skipped or failed keep their ``outcome`` and NaNs."""
    out = []
    for _, s in slices.iterrows():
        row = {k: s.get(k) for k in ("preset", "mode", "batch", "kv_len", "strategy")}
        row["status"] = s.get("status")
        if s.get("outcome") != "ok":
            out.append({**row, "predicted_us": math.nan, "measured_us": math.nan, "rel_err": math.nan,
                        "within_tol": False, "missing": "", "outcome": s.get("outcome")})
            continue
        pred, missing = predict_step_us(components, recipe_from_frame(recipes, s["mode"]), mode=s["mode"],
                                        batch=s["batch"], kv_len=s["kv_len"], strategy=s.get("strategy"),
                                        overhead_us=overhead_us)
        meas = float(s["median_us"])
        rel = (pred - meas) / meas if meas > 0 and not math.isnan(pred) else math.nan
        out.append({**row, "predicted_us": pred, "measured_us": meas, "rel_err": rel,
                    "within_tol": bool(abs(rel) <= tol) if not math.isnan(rel) else False,
                    "missing": ",".join(missing), "outcome": "ok" if not missing else "missing components"})
    cols = ["preset", "mode", "batch", "kv_len", "strategy", "predicted_us", "measured_us", "rel_err", "within_tol",
            "missing", "outcome", "status"]
    return pd.DataFrame(out, columns=cols)
