"""GDN kernel costs per call of the roofline model: a bandwidth model from documented numbers, or
measured sweep rows.

* :class:`GDNKernel` / :data:`GDN_KERNELS` — ``time = launch + bytes / (eff * HBM peak)`` per call,
  efficiencies from FlashInfer's PR texts.
* :class:`MeasuredGDN` — medians of measured kernel times, interpolated in log(batch)-log(time).
  It takes a DataFrame (as :func:`gdnlab.results.load_sweep` returns) and never reads files itself.
  :func:`gdnlab.model.gdn_sweep.comparable_rows` keeps the rows that stand for a kernel inside a
  CUDA-graph decode step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...seed import SEED_FLASHINFER, SEED_TRITON
from ...shapes import GDNShape, dtype_name
from .._args import nonneg
from ..gdn_sweep import comparable_rows

__all__ = ["GDNKernel", "GDN_KERNELS", "MeasuredGDN"]


@dataclass(frozen=True)
class GDNKernel:
    """A GDN kernel's bandwidth model: ``time = launch_us + bytes / (eff * HBM peak)`` per call.

    Attributes:
        decode_eff, verify_eff: fraction of the datasheet HBM bandwidth reached at large batch.
        launch_us: small-batch floor per call (µs).
        source: where the numbers come from.
    """

    name: str
    decode_eff: float
    verify_eff: float
    launch_us: float
    source: str


#: Keyed by the seed's run labels (:data:`gdnlab.seed.SEED_BACKENDS`) and one variant of FlashInfer's:
#:
#: * ``flashinfer`` (after flashinfer#3147, bf16 state, SM100): 6.57 TB/s at B=256 T=1 and
#:   6.17 TB/s at B=256 T=4 of a B200's 8 TB/s (#3147 PR text) -> 0.82 / 0.77; B=1 T=1 takes
#:   3.49 µs (#3127) -> ~3 µs floor.
#: * ``flashinfer_pre3147`` (the seed's OSL sweep and first TPOT table ran before #3147): #3147
#:   reports "4-6 % less time at T=1 for B>=16; 6-18 % less at T>=2 with caching" -> x0.95 / x0.88.
#: * ``triton`` (SGLang's fused_sigmoid_gating recurrent kernel): flashinfer#2405 (B200) measured
#:   FlashInfer 1.35x faster for decode and 1.13x on average for MTP against the Triton kernels ->
#:   0.82/1.35 and 0.77/1.13 (fp32-state measurements; carrying them to bf16 is an assumption).
GDN_KERNELS: dict[str, GDNKernel] = {
    SEED_FLASHINFER: GDNKernel(SEED_FLASHINFER, 0.82, 0.77, 3.0, "flashinfer PR #3147 / #3127 (B200, bf16 state)"),
    "flashinfer_pre3147": GDNKernel("flashinfer_pre3147", 0.82 * 0.95, 0.77 * 0.88, 3.0,
                                    "flashinfer PR #3147's speed-up claims applied backwards"),
    SEED_TRITON: GDNKernel(SEED_TRITON, 0.82 / 1.35, 0.77 / 1.13, 3.0,
                           "flashinfer PR #2405 FlashInfer-vs-Triton ratios applied to the FlashInfer numbers"),
}


class MeasuredGDN:
    """GDN kernel times from a measured sweep, interpolated in log(batch)-log(time).

    ``rows`` needs columns ``backend, mode, batch, draft_tokens, state_dtype, time_us`` (one call of
    one layer, µs; repeated points are reduced to their median), e.g. ``gdnlab.results.load_sweep(path)``
    passed whole: :func:`comparable_rows` keeps what a CUDA-graph decode step would see. Between
    measured batch sizes the time is interpolated, beyond them extrapolated with the end segment's
    slope (a single point scales proportionally to batch). ``draft_tokens`` must have been measured
    (no interpolation in T). With ``shape`` given and ``H, HV, K, V`` columns present, only rows of
    that per-GPU GDN shape are kept; with ``intermediate_dtype`` given and an ``intermediate_dtype``
    column present, only verify rows whose intermediate buffer has that dtype (decode rows have none).

    Attributes:
        table: the medians used, ``backend, mode, draft_tokens, state_dtype, batch, time_us``.
        source: one line for footnotes (GPU, timing, rows kept, sweep ids when present).
    """

    REQUIRED = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "time_us")

    def __init__(self, rows: pd.DataFrame, *, shape: GDNShape | None = None, intermediate_dtype=None) -> None:
        if not isinstance(rows, pd.DataFrame):
            raise ValueError(f"gdn_rows must be a pandas DataFrame, got {type(rows).__name__}")
        have = set(rows.columns) | ({"batch"} if "concurrency" in rows.columns else set())
        missing = [c for c in self.REQUIRED if c not in have]
        if missing:
            raise ValueError(f"gdn_rows is missing columns {missing}; needs {list(self.REQUIRED)}")
        rows = comparable_rows(rows)
        if shape is not None and {"H", "HV", "K", "V"} <= set(rows.columns):
            want = (shape.H, shape.HV, shape.K, shape.V)
            dims = rows[["H", "HV", "K", "V"]].apply(pd.to_numeric, errors="coerce")
            same = (dims == pd.Series(want, index=dims.columns)).all(axis=1)
            if not same.any():
                have_dims = sorted({tuple(int(x) for x in r) for r in dims.dropna().itertuples(index=False)})
                raise ValueError(f"gdn_rows has no row of the model's GDN shape (H, HV, K, V) = {want}; "
                                 f"measured: {have_dims}")
            rows = rows[same]
        if intermediate_dtype is not None and "intermediate_dtype" in rows.columns:
            inter = rows["intermediate_dtype"].map(lambda v: None if pd.isna(v) else dtype_name(v))
            rows = rows[inter.isna() | (inter == dtype_name(intermediate_dtype))]
        df = rows[list(self.REQUIRED)].dropna().copy()
        df = df[(df["time_us"] > 0) & (df["batch"] > 0)]
        if df.empty:
            raise ValueError("gdn_rows has no row with time_us > 0 and batch > 0")
        self.table = df.groupby(["backend", "mode", "draft_tokens", "state_dtype", "batch"],
                                as_index=False)["time_us"].median()
        parts = []
        if "gpu" in rows.columns:
            parts.append(", ".join(sorted({str(g) for g in rows["gpu"].dropna().unique()})) or "GPU not recorded")
        timing = next((c for c in ("timing_method", "timing") if c in rows.columns), None)
        if timing is not None:
            parts.append(", ".join(sorted({str(t) for t in rows[timing].dropna().unique()})) + " timing")
        parts.append(f"{len(df)} rows")
        if "sweep_id" in rows.columns:
            parts.append("sweep " + ", ".join(sorted({str(t) for t in rows["sweep_id"].dropna().unique()})))
        self.source = "measured GDN kernel times (" + " · ".join(parts) + ")"

    def backends(self) -> list[str]:
        return sorted(self.table["backend"].unique())

    def time_us(self, backend: str, mode: str, batch: float, T: int, state_dtype) -> float:
        """One call (µs) at ``batch`` rows (0 -> 0.0) and ``T`` tokens."""
        batch = nonneg("batch", batch)
        if batch == 0:
            return 0.0
        sd = dtype_name(state_dtype)
        t = self.table
        sel = t[(t["backend"] == backend) & (t["mode"] == mode) & (t["draft_tokens"] == T) & (t["state_dtype"] == sd)]
        if sel.empty:
            have = t[["backend", "mode", "draft_tokens", "state_dtype"]].drop_duplicates().to_dict("records")
            raise ValueError(f"no measured GDN rows for backend={backend!r} mode={mode!r} draft_tokens={T} "
                             f"state_dtype={sd!r}; measured: {have}")
        sel = sel.sort_values("batch")
        x = np.log(sel["batch"].to_numpy(float))
        y = np.log(sel["time_us"].to_numpy(float))
        lx = math.log(batch)
        if x.size == 1:
            return float(math.exp(y[0]) * batch / math.exp(x[0]))
        if lx < x[0]:
            return float(math.exp(y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (lx - x[0])))
        if lx > x[-1]:
            return float(math.exp(y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * (lx - x[-1])))
        return float(math.exp(np.interp(lx, x, y)))
