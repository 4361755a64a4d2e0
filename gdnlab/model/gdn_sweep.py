"""GDN kernel times per (backend, strategy, T, state dtype, batch) from a kernel sweep, optionally
projected to another GPU by the HBM-bandwidth ratio.

:class:`SweepGDN` takes a sweep frame (:func:`gdnlab.results.load_sweep`) and reads two kinds of rows:

* **call rows** (``measure == "call"``, or a frame without ``measure``): one kernel call, ``mode``
  ``decode`` or ``verify``; they give the decode kernel and, where no strategy row exists, the
  verify call alone (the caller adds a commit). Kept: what a CUDA-graph decode step sees
  (:func:`comparable_rows`: ``ok``, graph timing, batch-scoped intermediates).
* **strategy step rows** (``measure == "step"``): one verify strategy's verify + commit per step and
  GDN layer (``step_us``; ``verify_us`` / ``commit_us`` beside). A strategy row is *eligible* to be
  priced only when ``status == "ok"``, its timing replays a CUDA graph (``timing_method`` not
  ``"eager"``: an eager row carries host launch gaps a graph step does not have, so it is not
  comparable) and its correctness check did not fail (``correct`` not False). Rows whose check
  could not run (``correct`` NA) are kept and flagged ``checked = False`` ("unchecked"). What was
  left out, and why, is in :attr:`SweepGDN.excluded`.

Times are per call as measured. A ``single``-call graph timing includes one graph replay's fixed
cost; an ``amortised`` one (a graph of ``calls_per_sample`` calls) includes that cost divided by
``calls_per_sample``: ``overhead_us`` arguments remove exactly that share.

Projection (:meth:`SweepGDN.projected`): ``t' = floor + (t - floor) * BW_src / BW_dst`` with
``floor`` the series' smallest-batch time (a launch/latency floor that does not scale with
bandwidth); bandwidths: datasheet peaks (:mod:`gdnlab.hardware`) unless ``ratio`` is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import DataError, InputError
from ..hardware import GPUSpec, spec_for
from ..shapes import GDNShape, dtype_name
from ..strategies.registry import BASELINE
from .numeric import loglog_interp

__all__ = ["SweepGDN", "STEP_COLUMNS", "comparable_rows", "GRAPH_TIMINGS"]

_KEY = ["backend", "mode", "strategy", "draft_tokens", "state_dtype"]
_SKEY = ["backend", "strategy", "draft_tokens", "state_dtype"]
#: columns of :attr:`SweepGDN.steps`
STEP_COLUMNS = _SKEY + ["batch", "step_us", "verify_us", "commit_us", "calls_per_sample", "checked"]


#: timing methods that replay a CUDA graph (``gdnlab.instrument``: ``amortised`` = one graph of
#: ``calls_per_sample`` calls, per call; ``single`` / older ``graph`` = a graph of one call)
GRAPH_TIMINGS = ("graph", "amortised", "single")


def _timing_method(s: pd.DataFrame) -> pd.Series | None:
    """Each row's timing method (``timing_method``, else the older ``timing`` column), lower-case."""
    cols = [c for c in ("timing_method", "timing") if c in s]
    if not cols:
        return None
    m = s[cols[0]].astype("object")
    for c in cols[1:]:
        m = m.where(m.notna(), s[c].astype("object"))
    return m.map(lambda v: "" if pd.isna(v) else str(v).strip().lower())


def comparable_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Sweep rows that stand for a GDN kernel inside a CUDA-graph decode step.

    Kept: ``status == "ok"``; CUDA-graph timing (``timing_method``, or an older frame's ``timing``,
    in :data:`GRAPH_TIMINGS` when the frame has graph rows: eager timing adds host launch overhead);
    ``buffer_scope`` (``intermediate`` in earlier files) not ``"pool"`` (SGLang slices the buffer to
    the batch since PR #23273); no ``rotate``. Each filter applies only when its column is present. An older frame with
    ``concurrency`` and no ``batch`` column has it renamed to ``batch``. Keys are normalised:
    ``backend`` / ``mode`` lower-case, ``state_dtype`` a dtype name (``"bfloat16"``), ``batch`` /
    ``draft_tokens`` numbers. Raises ``ValueError`` when no row is left.
    """
    if not isinstance(rows, pd.DataFrame) or rows.empty:
        raise ValueError("gdn_rows must be a non-empty pandas DataFrame of sweep results")
    s = rows.rename(columns={"concurrency": "batch"}) if "batch" not in rows and "concurrency" in rows else rows
    keep = pd.Series(True, index=s.index)
    if "status" in s:
        keep &= s["status"].astype(str).eq("ok")
    method = _timing_method(s)
    if method is not None and method.isin(GRAPH_TIMINGS).any():
        keep &= method.isin(GRAPH_TIMINGS)
    for scope in ("buffer_scope", "intermediate"):     # (the earlier name of buffer_scope)
        if scope in s:
            keep &= ~s[scope].astype(str).eq("pool")
    if "rotate" in s:
        keep &= ~s["rotate"].fillna(False).astype(bool)
    s = s[keep].copy()
    if s.empty:
        raise ValueError("gdn_rows has no measured rows (status 'ok', CUDA-graph timed, batch-scoped "
                         "intermediates) to build kernel costs from")
    s["backend"] = s["backend"].astype(str).str.strip().str.lower()
    s["mode"] = s["mode"].astype(str).str.strip().str.lower()
    s["batch"] = pd.to_numeric(s["batch"], errors="coerce")
    s["draft_tokens"] = pd.to_numeric(s["draft_tokens"], errors="coerce")
    s["state_dtype"] = s["state_dtype"].map(lambda v: None if pd.isna(v) else dtype_name(v))
    return s


def _shape_filter(s: pd.DataFrame, shape: GDNShape | None) -> pd.DataFrame:
    if shape is None or not {"H", "HV", "K", "V"} <= set(s.columns):
        return s
    dims = s[["H", "HV", "K", "V"]].apply(pd.to_numeric, errors="coerce")
    return s[(dims == pd.Series((shape.H, shape.HV, shape.K, shape.V), index=dims.columns)).all(axis=1)]


def norm_keys(s: pd.DataFrame) -> pd.DataFrame:
    """A copy of sweep rows with their key columns in one spelling: ``backend`` lower case, ``batch``
    and ``draft_tokens`` numeric, ``state_dtype`` a dtype name (``float32`` / ``bfloat16``)."""
    s = s.copy()
    s["backend"] = s["backend"].astype(str).str.strip().str.lower()
    s["batch"] = pd.to_numeric(s["batch"], errors="coerce")
    s["draft_tokens"] = pd.to_numeric(s["draft_tokens"], errors="coerce")
    s["state_dtype"] = s["state_dtype"].map(lambda v: None if pd.isna(v) else dtype_name(v))
    return s


def _step_rows(rows: pd.DataFrame, shape: GDNShape | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(eligible, excluded)`` strategy step rows; ``excluded`` has a ``reason`` column."""
    s = _shape_filter(norm_keys(rows), shape)
    s["step_us"] = pd.to_numeric(s.get("step_us"), errors="coerce")
    for c in ("verify_us", "commit_us", "calls_per_sample"):
        s[c] = pd.to_numeric(s[c], errors="coerce") if c in s else np.nan
    status = s["status"].astype(str) if "status" in s else pd.Series("ok", index=s.index)
    method = _timing_method(s)
    method = method if method is not None else pd.Series("", index=s.index)
    correct = s["correct"] if "correct" in s else pd.Series(pd.NA, index=s.index, dtype="boolean")
    correct = correct.astype("boolean")
    reason = pd.Series("", index=s.index, dtype=object)
    reason[~status.eq("ok")] = "not run: " + status[~status.eq("ok")].str.slice(0, 80)
    reason[(reason == "") & s["step_us"].isna()] = "no step_us"
    reason[(reason == "") & method.eq("eager")] = "eager timing (CUDA-graph capture failed): not comparable"
    reason[(reason == "") & correct.eq(False).fillna(False)] = "correctness check failed"
    s["checked"] = correct.eq(True).fillna(False).astype(bool)
    excl = s.loc[reason != "", _SKEY + ["batch", "step_us"]].assign(reason=reason[reason != ""])
    ok = s.loc[reason == "", STEP_COLUMNS]
    return ok.reset_index(drop=True), excl.reset_index(drop=True)


@dataclass
class SweepGDN:
    """Per-call GDN kernel times and per-step verify-strategy costs from a sweep.

    Attributes:
        table: call medians ``backend, mode, strategy, draft_tokens, state_dtype, batch, time_us,
            step_us, calls_per_sample`` (``step_us`` NaN: a call row has none).
        gpu: the GPU the times stand for.
        status: ``"measured"`` or ``"projected"``.
        source: one line for footnotes.
        steps: eligible strategy step rows (:data:`STEP_COLUMNS`; medians per point; ``checked``:
            every row of the point passed its correctness check; False = unchecked).
        excluded: strategy step rows left out of pricing, with ``reason``.
        copy_bw_gbps: the device-to-device copy bandwidth the sweep measured (GB/s; NaN if none).
    """

    table: pd.DataFrame
    gpu: GPUSpec
    status: str = "measured"
    source: str = ""
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STEP_COLUMNS))
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_SKEY + ["batch", "step_us",
                                                                                          "reason"]))
    copy_bw_gbps: float = float("nan")

    @classmethod
    def from_sweep(cls, rows: pd.DataFrame, *, shape: GDNShape | None = None, gpu: GPUSpec | str | None = None
                   ) -> SweepGDN:
        """Keep the comparable call rows and eligible strategy rows of ``rows`` (of ``shape``'s
        per-GPU dims when given)."""
        need = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "time_us")
        if not isinstance(rows, pd.DataFrame) or rows.empty:
            raise DataError("the GDN sweep is empty")
        missing = [c for c in need if c not in rows.columns]
        if missing:
            raise DataError(f"the GDN sweep misses columns {missing}")
        measure = rows["measure"].astype(str) if "measure" in rows else pd.Series("call", index=rows.index)
        is_step = measure.eq("step")
        calls, step_rows = rows[~is_step], rows[is_step]
        try:
            s = comparable_rows(calls)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        s = _shape_filter(s, shape)
        if s.empty:
            raise DataError(f"the GDN sweep has no call row of the per-GPU shape H={shape.H} HV={shape.HV} "
                            f"K={shape.K} V={shape.V}")
        # call rows are keyed like the strategy they stand for: decode, or the baseline's (full_cache) verify call
        # (an earlier frame read without load_sweep may still name it in ``strategy``)
        strat = s["strategy"].astype("string") if "strategy" in s else pd.Series(pd.NA, index=s.index, dtype="string")
        s = s.assign(strategy=np.where(s["mode"] == "decode", "decode", strat.fillna(BASELINE).astype(str)))
        s = s.assign(step_us=np.nan,
                     calls_per_sample=pd.to_numeric(s["calls_per_sample"], errors="coerce").fillna(1.0)
                     if "calls_per_sample" in s else 1.0)
        if gpu is None:
            names = sorted({str(g) for g in rows.get("gpu", pd.Series(dtype=str)).dropna().unique()})
            if not names:
                raise DataError("the GDN sweep has no 'gpu' column; pass gpu=")
            gpu = names[0]
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        t = s.groupby(_KEY + ["batch"], as_index=False)[["time_us", "step_us", "calls_per_sample"]].median()
        t = t[t["time_us"] > 0]
        steps, excl = (_step_rows(step_rows, shape) if not step_rows.empty else
                       (pd.DataFrame(columns=STEP_COLUMNS), cls.__dataclass_fields__["excluded"].default_factory()))
        if not steps.empty:
            steps["calls_per_sample"] = steps["calls_per_sample"].fillna(1.0)
            steps = steps.groupby(_SKEY + ["batch"], as_index=False).agg(
                step_us=("step_us", "median"), verify_us=("verify_us", "median"), commit_us=("commit_us", "median"),
                calls_per_sample=("calls_per_sample", "median"), checked=("checked", "all"))
            steps = steps[STEP_COLUMNS]
        copy = pd.to_numeric(rows["copy_bw_gbps"], errors="coerce").median() if "copy_bw_gbps" in rows else np.nan
        src = (f"GDN kernel sweep measured on {spec.name} ({len(s)} call rows, "
               f"{len(steps)} strategy step points, CUDA-graph timing)")
        return cls(t.reset_index(drop=True), spec, "measured", src, steps.reset_index(drop=True), excl,
                   float(copy) if pd.notna(copy) else float("nan"))

    # ------------------------------------------------------------------ queries
    def backends(self) -> list[str]:
        return sorted(set(self.table["backend"]) | set(self.steps["backend"]))

    def options(self) -> pd.DataFrame:
        """Distinct priceable ``backend, mode, strategy, draft_tokens, state_dtype`` with
        ``has_step_us`` (verify + commit measured as a strategy step) and ``checked`` (every point's
        correctness check passed; a decode or verify call row counts as checked)."""
        calls = self.table[_KEY].drop_duplicates().assign(has_step_us=False, checked=True)
        st = self.steps.groupby(_SKEY, as_index=False)["checked"].all().assign(mode="verify", has_step_us=True)
        if not st.empty:
            k = calls.merge(st[_SKEY], on=_SKEY, how="left", indicator=True)
            calls = calls[~((k["_merge"] == "both") & (k["mode"] == "verify")).to_numpy()]
        out = pd.concat([calls, st[_KEY + ["has_step_us", "checked"]]], ignore_index=True)
        out["draft_tokens"] = out["draft_tokens"].astype(int)
        return out.sort_values(_KEY).reset_index(drop=True)

    def measured_T(self, mode: str = "verify") -> list[int]:
        """Draft tokens T the sweep measured for ``mode`` (``verify`` includes strategy steps)."""
        o = self.options()
        return sorted({int(t) for t in o.loc[o["mode"] == mode, "draft_tokens"]})

    def _memo(self, key: tuple, fn):
        """``fn()`` once per ``key`` for this object (lookups repeat for every batch and layer)."""
        memo = self.__dict__.setdefault("_lookups", {})
        if key not in memo:
            memo[key] = fn()
        return memo[key]

    def _split(self, name: str, frame: pd.DataFrame, key: list[str]) -> dict:
        """``frame`` split once by ``key`` (T as an integer): every later lookup is a dict access."""
        def split():
            if frame.empty:
                return {}
            return {(*k[:-2], int(k[-2]), k[-1]): g for k, g in frame.groupby(key, sort=False)}
        return self._memo(("split", name), split)

    def _series(self, backend: str, mode: str, strategy: str, T: int, state_dtype) -> pd.DataFrame:
        sd = dtype_name(state_dtype)
        sel = self._split("table", self.table, _KEY).get((backend, mode, strategy, int(T), sd), self.table.iloc[:0])
        if sel.empty:
            raise InputError(f"no GDN sweep rows for backend={backend!r} mode={mode!r} strategy={strategy!r} "
                             f"T={T} state_dtype={dtype_name(state_dtype)!r}")
        return sel

    def _steps(self, backend: str, strategy: str, T: int, state_dtype) -> pd.DataFrame:
        sd = dtype_name(state_dtype)
        return self._split("steps", self.steps, _SKEY).get((backend, strategy, int(T), sd), self.steps.iloc[:0])

    def has(self, backend: str, mode: str, strategy: str, T: int, state_dtype) -> bool:
        if mode == "verify" and not self._steps(backend, strategy, T, state_dtype).empty:
            return True
        try:
            self._series(backend, mode, strategy, T, state_dtype)
            return True
        except InputError:
            return False

    def checked(self, backend: str, strategy: str, T: int, state_dtype) -> bool:
        """Whether the priced rows passed their correctness check (False: unchecked)."""
        st = self._steps(backend, strategy, T, state_dtype)
        return bool(st["checked"].all()) if not st.empty else True

    @staticmethod
    def _interp(s: pd.DataFrame, col: str, batch: float, overhead_us: float) -> float:
        net = s[col].to_numpy(float) - overhead_us / s["calls_per_sample"].to_numpy(float)
        return loglog_interp(s["batch"].to_numpy(float), np.maximum(net, 1e-3), float(batch))

    def decode_us(self, backend: str, batch: float, state_dtype, *, overhead_us: float = 0.0) -> float:
        """One decode call (µs) at ``batch`` rows, less ``overhead_us / calls_per_sample`` (the
        share of one graph replay's fixed cost the measured time holds)."""
        s = self._series(backend, "decode", "decode", 1, state_dtype)
        return self._interp(s, "time_us", batch, overhead_us)

    def verify_us(self, backend: str, strategy: str, batch: float, T: int, state_dtype, *,
                  overhead_us: float = 0.0) -> tuple[float, bool]:
        """``(µs, includes_commit)``: the strategy's step (verify + commit) when measured, else the
        verify call alone; less the graph-replay share as in :meth:`decode_us`."""
        st = self._steps(backend, strategy, T, state_dtype)
        if not st.empty:
            return self._interp(st, "step_us", batch, overhead_us), True
        s = self._series(backend, "verify", strategy, T, state_dtype)
        return self._interp(s, "time_us", batch, overhead_us), False

    def projected(self, gpu: GPUSpec | str, *, ratio: float | None = None, ratio_source: str = "") -> SweepGDN:
        """The same kernels on ``gpu``: above the smallest-batch floor, times scale with the
        bandwidth ratio (datasheet peaks ``BW_self / BW_gpu`` unless ``ratio`` is given)."""
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        r = self.gpu.peak_hbm_gbps / spec.peak_hbm_gbps if ratio is None else float(ratio)
        how = ratio_source or ("datasheet peaks" if ratio is None else "given")

        def scale(t: pd.DataFrame, key: list[str], cols: tuple[str, ...]) -> pd.DataFrame:
            t = t.copy()
            for col in cols:
                if t.empty or col not in t:
                    continue
                first = t.sort_values("batch").groupby(key)[col].transform("first")
                t[col] = first + (t[col] - first).clip(lower=0) * r
            return t

        src = (f"projected {self.gpu.name} -> {spec.name} (bandwidth ratio {r:.3f}, {how}; smallest-batch floor "
               f"kept) from {self.source}")
        return replace(self, table=scale(self.table, _KEY, ("time_us", "step_us")),
                       steps=scale(self.steps, _SKEY, ("step_us", "verify_us", "commit_us")), gpu=spec,
                       status="projected", source=src)
