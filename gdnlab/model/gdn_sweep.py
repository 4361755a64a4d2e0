"""GDN kernel times per (backend, strategy, T, state dtype, batch) from a kernel sweep, optionally
projected to another GPU by the HBM-bandwidth ratio.

:class:`SweepGDN` takes a sweep frame (:func:`gdnlab.results.load_sweep`); it keeps what a
CUDA-graph decode step sees (:func:`gdnlab.model.costs.comparable_rows`: ``ok``, graph timing,
batch-scoped intermediates). Decode rows give the decode kernel; verify rows the verify kernel of
their ``strategy``. A verify row with a ``step_us`` value (a strategy's verify + commit per step
and layer) stands for both the verify and the commit; without it only the verify kernel is known
and the caller adds a commit (:meth:`SweepGDN.verify_us` says which).

Projection (:meth:`SweepGDN.projected`): ``t' = floor + (t - floor) * BW_src / BW_dst`` with
``floor`` the series' smallest-batch time (a launch/latency floor that does not scale with
bandwidth); datasheet bandwidths (:mod:`gdnlab.hardware`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import DataError, InputError
from ..hardware import GPUSpec, spec_for
from ..shapes import GDNShape, dtype_name
from .costs import comparable_rows
from .measured import _loglog

__all__ = ["SweepGDN"]

_KEY = ["backend", "mode", "strategy", "draft_tokens", "state_dtype"]


@dataclass
class SweepGDN:
    """Per-call GDN kernel times from a sweep.

    Attributes:
        table: medians ``backend, mode, strategy, draft_tokens, state_dtype, batch, time_us,
            step_us`` (``step_us`` NaN where the sweep has none).
        gpu: the GPU the times stand for.
        status: ``"measured"`` or ``"projected"``.
        source: one line for footnotes.
    """

    table: pd.DataFrame
    gpu: GPUSpec
    status: str = "measured"
    source: str = ""

    @classmethod
    def from_sweep(cls, rows: pd.DataFrame, *, shape: GDNShape | None = None, gpu: GPUSpec | str | None = None
                   ) -> SweepGDN:
        """Keep the comparable rows of ``rows`` (of ``shape``'s per-GPU dims when given)."""
        need = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "time_us")
        if not isinstance(rows, pd.DataFrame) or rows.empty:
            raise DataError("the GDN sweep is empty")
        missing = [c for c in need if c not in rows.columns]
        if missing:
            raise DataError(f"the GDN sweep misses columns {missing}")
        try:
            s = comparable_rows(rows)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        if shape is not None and {"H", "HV", "K", "V"} <= set(s.columns):
            dims = s[["H", "HV", "K", "V"]].apply(pd.to_numeric, errors="coerce")
            s = s[(dims == pd.Series((shape.H, shape.HV, shape.K, shape.V), index=dims.columns)).all(axis=1)]
            if s.empty:
                raise DataError(f"the GDN sweep has no row of the per-GPU shape H={shape.H} HV={shape.HV} "
                                f"K={shape.K} V={shape.V}")
        if "strategy" not in s:
            s = s.assign(strategy=np.where(s["mode"] == "decode", "decode", "full_cache"))
        s = s.assign(strategy=s["strategy"].fillna("full_cache").astype(str))
        s = s.assign(step_us=pd.to_numeric(s["step_us"], errors="coerce") if "step_us" in s else np.nan)
        if gpu is None:
            names = sorted({str(g) for g in s.get("gpu", pd.Series(dtype=str)).dropna().unique()})
            if not names:
                raise DataError("the GDN sweep has no 'gpu' column; pass gpu=")
            gpu = names[0]
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        t = s.groupby(_KEY + ["batch"], as_index=False)[["time_us", "step_us"]].median()
        t = t[t["time_us"] > 0]
        src = f"GDN kernel sweep measured on {spec.name} ({len(s)} rows, CUDA-graph timing)"
        return cls(t.reset_index(drop=True), spec, "measured", src)

    # ------------------------------------------------------------------ queries
    def backends(self) -> list[str]:
        return sorted(self.table["backend"].unique())

    def options(self) -> pd.DataFrame:
        """Distinct ``backend, mode, strategy, draft_tokens, state_dtype`` with ``has_step_us``."""
        g = self.table.groupby(_KEY, as_index=False)["step_us"].apply(lambda x: bool(x.notna().any()))
        return g.rename(columns={"step_us": "has_step_us"})

    def _series(self, backend: str, mode: str, strategy: str, T: int, state_dtype) -> pd.DataFrame:
        t = self.table
        sel = t[(t["backend"] == backend) & (t["mode"] == mode) & (t["strategy"] == strategy)
                & (t["draft_tokens"] == T) & (t["state_dtype"] == dtype_name(state_dtype))]
        if sel.empty:
            raise InputError(f"no GDN sweep rows for backend={backend!r} mode={mode!r} strategy={strategy!r} "
                             f"T={T} state_dtype={dtype_name(state_dtype)!r}")
        return sel

    def has(self, backend: str, mode: str, strategy: str, T: int, state_dtype) -> bool:
        try:
            self._series(backend, mode, strategy, T, state_dtype)
            return True
        except InputError:
            return False

    def decode_us(self, backend: str, batch: float, state_dtype) -> float:
        """One decode call (µs) at ``batch`` rows."""
        s = self._series(backend, "decode", "decode", 1, state_dtype)
        return _loglog(s["batch"].to_numpy(float), s["time_us"].to_numpy(float), float(batch))

    def verify_us(self, backend: str, strategy: str, batch: float, T: int, state_dtype) -> tuple[float, bool]:
        """``(µs, includes_commit)``: the strategy's ``step_us`` (verify + commit) when measured,
        else the verify call alone."""
        s = self._series(backend, "verify", strategy, T, state_dtype)
        st = s.dropna(subset=["step_us"])
        if not st.empty:
            return _loglog(st["batch"].to_numpy(float), st["step_us"].to_numpy(float), float(batch)), True
        return _loglog(s["batch"].to_numpy(float), s["time_us"].to_numpy(float), float(batch)), False

    def projected(self, gpu: GPUSpec | str) -> SweepGDN:
        """The same kernels on ``gpu``: above the smallest-batch floor, times scale with the
        bandwidth ratio."""
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        r = self.gpu.peak_hbm_gbps / spec.peak_hbm_gbps
        t = self.table.copy()
        for col in ("time_us", "step_us"):
            first = t.sort_values("batch").groupby(_KEY)[col].transform("first")
            t[col] = first + (t[col] - first).clip(lower=0) * r
        src = (f"projected {self.gpu.name} -> {spec.name} (bandwidth ratio {r:.3f}, smallest-batch floor kept) "
               f"from {self.source}")
        return replace(self, table=t, gpu=spec, status="projected", source=src)
