"""Counters vs formula: is gdnlab's byte formula honest, and is the sweep's timing?

Two independent estimates of the bandwidth each configuration achieves:

* **counters** (Nsight Compute): ``(dram__bytes_read + dram__bytes_write) / gpu__time_duration`` summed
  over the kernels of one call — what the memory system actually moved, in the kernel's own time;
* **formula + sweep**: ``gdnlab.roofline.gdn_bytes(...).total / sweep time`` — the roofline numerator over
  the time the sweep measured.

They agree (``agree``; default within 10 %) only if the byte formula counts what the kernel moves *and*
the sweep times the kernel rather than host overhead, launch gaps or an L2-warm replay. ``bytes_ratio``
(counter bytes / formula bytes) and ``time_ratio`` (sweep time / ncu duration) say which side is off.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .profile import JOIN_KEYS, summarize_calls

__all__ = ["compare_with_sweep", "normalize_sweep", "TIME_COLUMNS"]

#: sweep timing columns tried in order (µs), then millisecond ones (converted).
TIME_COLUMNS = ("time_us", "median_us", "gpu_time_us", "kernel_time_us", "kernel_us", "latency_us", "t_us")
_TIME_MS = ("time_ms", "median_ms", "latency_ms")
_ALIASES = {"B": "batch", "batch_size": "batch", "bs": "batch", "T": "draft_tokens", "tokens": "draft_tokens",
            "num_draft_tokens": "draft_tokens", "op": "mode", "state": "state_dtype", "ssm_dtype": "state_dtype"}
_MODE_ALIASES = {"mtp": "verify", "target_verify": "verify", "verify": "verify", "decode": "decode"}


def _dtype(v) -> str | None:
    from gdnlab.shapes import dtype_name

    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        return dtype_name(v)
    except ValueError:
        return str(v)


def normalize_sweep(sweep_df: pd.DataFrame, time_col: str | None = None) -> tuple[pd.DataFrame, str]:
    """Sweep rows with gdnlab's key names and values (``mode`` decode/verify, ``state_dtype`` float32/
    bfloat16, ``batch`` int) and a ``sweep_time_us`` column; returns ``(frame, time column used)``."""
    if not isinstance(sweep_df, pd.DataFrame) or sweep_df.empty:
        raise ValueError("sweep_df must be a non-empty DataFrame of sweep results")
    s = sweep_df.rename(columns={k: v for k, v in _ALIASES.items() if k in sweep_df and v not in sweep_df}).copy()
    missing = [c for c in ("backend", "mode", "batch", "state_dtype") if c not in s]
    if missing:
        raise ValueError(f"sweep_df lacks the join columns {missing}; it has {list(sweep_df.columns)}")
    if time_col is None:
        time_col = next((c for c in TIME_COLUMNS + _TIME_MS if c in s), None)
        if time_col is None:
            raise ValueError(f"sweep_df has no timing column (looked for {TIME_COLUMNS + _TIME_MS}); "
                             "pass time_col=")
    elif time_col not in s:
        raise ValueError(f"time_col {time_col!r} is not a column of sweep_df")
    # Only rows comparable with a profiled kernel: measured ("ok"), CUDA-graph timed (eager adds host
    # launch overhead), batch-scoped intermediates, one call per sample.
    keep = pd.Series(True, index=s.index)
    if "status" in s:
        keep &= s["status"].astype(str).eq("ok")
    if "timing" in s and s["timing"].astype(str).eq("graph").any():
        keep &= s["timing"].astype(str).eq("graph")
    if "intermediate" in s:
        keep &= ~s["intermediate"].astype(str).eq("pool")
    if "rotate" in s:
        keep &= ~s["rotate"].fillna(False).astype(bool)
    s = s[keep].copy()
    if s.empty:
        raise ValueError("sweep_df has no measured (status 'ok', graph-timed, batch-scoped) rows to compare with")
    scale = 1e3 if time_col in _TIME_MS else 1.0
    s["sweep_time_us"] = pd.to_numeric(s[time_col], errors="coerce") * scale
    s["backend"] = s["backend"].astype(str).str.strip().str.lower()
    s["mode"] = s["mode"].astype(str).str.strip().str.lower().map(lambda m: _MODE_ALIASES.get(m, m))
    s["batch"] = pd.to_numeric(s["batch"], errors="coerce").astype("Int64")
    s["state_dtype"] = s["state_dtype"].map(_dtype)
    if "draft_tokens" in s:
        s["draft_tokens"] = pd.to_numeric(s["draft_tokens"], errors="coerce").astype("Int64")
    if "preset" in s:
        pre = s["preset"].astype(str)
        if "tp" in s:
            tp = pd.to_numeric(s["tp"], errors="coerce")
            add = (~pre.str.contains("@tp", regex=False)) & (tp > 1)
            pre = pre.where(~add, pre + "@tp" + tp.fillna(1).astype(int).astype(str))
        s["preset"] = pre
    return s, time_col


def compare_with_sweep(metrics_df: pd.DataFrame, sweep_df: pd.DataFrame, *, time_col: str | None = None,
                       tolerance: float = 0.10, match_gpu: bool = True) -> pd.DataFrame:
    """Bandwidth from counters vs bandwidth from the byte formula and the sweep's timing, per configuration.

    Args:
        metrics_df: :func:`gdnlab.metrics.profile_kernels` output (kernel rows) or its
            :func:`~gdnlab.metrics.summarize_calls` summary.
        sweep_df: sweep rows with ``backend, mode, batch, state_dtype`` (+ ``draft_tokens``, ``preset``
            [+ ``tp``], ``gpu`` when present) and a timing column in µs (``time_us`` ... or ``time_ms``);
            several rows per configuration are reduced to their median.
        time_col: the sweep's timing column (default: the first of :data:`TIME_COLUMNS` present).
        tolerance: relative agreement required (0.10 = 10 %).
        match_gpu: also join on ``gpu`` when both frames have it.

    Returns:
        One row per profiled configuration (left join: configurations without a sweep row are kept and
        flagged) with ``ncu_duration_us``, ``sweep_time_us``, ``counter_bytes``, ``formula_bytes``,
        ``counter_bw_gbps``, ``formula_bw_gbps`` (GB/s = 1e9 B/s), ``bytes_ratio``, ``time_ratio``,
        ``bw_ratio`` (formula/counter), ``agree``, ``flag`` (= not agree) and ``diagnosis``, plus
        percent-of-datasheet-peak columns when the GPU is known.
    """
    from gdnlab.roofline import gdn_bytes
    from gdnlab.shapes import GDNShape

    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if not isinstance(metrics_df, pd.DataFrame) or metrics_df.empty:
        raise ValueError("metrics_df must be a non-empty DataFrame from profile_kernels()")
    m = summarize_calls(metrics_df) if "kernel_idx" in metrics_df else metrics_df.copy()
    if m.empty:
        raise ValueError("metrics_df holds no profiled configuration (every outcome is skipped/failed)")
    missing = [c for c in ("backend", "mode", "batch", "draft_tokens", "state_dtype", "H", "HV", "K", "V",
                           "duration_us", "dram_bytes") if c not in m]
    if missing:
        raise ValueError(f"metrics_df lacks columns {missing}")
    s, used = normalize_sweep(sweep_df, time_col)
    m = m.copy()
    m["batch"] = m["batch"].astype("Int64")
    m["draft_tokens"] = m["draft_tokens"].astype("Int64")
    m["state_dtype"] = m["state_dtype"].map(_dtype)

    keys = ["backend", "mode", "batch", "state_dtype"]
    notes = []
    if "draft_tokens" in s:
        keys.append("draft_tokens")
    else:
        notes.append("sweep has no draft_tokens column: joined without it")
    if "preset" in s and "preset" in m and set(s["preset"]) & set(m["preset"]):
        keys.append("preset")
    elif all(c in s for c in ("H", "HV", "K", "V")):
        keys += ["H", "HV", "K", "V"]
        for c in ("H", "HV", "K", "V"):
            s[c] = pd.to_numeric(s[c], errors="coerce").astype("Int64")
            m[c] = m[c].astype("Int64")
    else:
        notes.append("sweep presets do not match the profiled preset and it has no H/HV/K/V: joined without shape")
    if match_gpu and "gpu" in s and "gpu" in m and m["gpu"].notna().any():
        keys.append("gpu")
    if "intermediate_dtype" in s and "intermediate_dtype" in m:
        # a verify writing fp32 intermediates moves twice the bytes of one writing bf16: never mix them
        for f in (s, m):
            f["intermediate_dtype"] = f["intermediate_dtype"].astype("string").fillna("n/a")
        keys.append("intermediate_dtype")
    agg = s.groupby(keys, dropna=False).agg(sweep_time_us=("sweep_time_us", "median"),
                                            sweep_rows=("sweep_time_us", "size")).reset_index()
    out = m.merge(agg, on=keys, how="left")

    def formula(r) -> float:
        shape = GDNShape(str(r.get("preset") or "profiled"), int(r["H"]), int(r["HV"]), int(r["K"]), int(r["V"]))
        inter = r.get("intermediate_dtype") or "float32"
        return float(gdn_bytes(shape, int(r["batch"]), int(r["draft_tokens"]), mode=r["mode"],
                               state_dtype=r["state_dtype"], act_dtype=r.get("act_dtype") or "bfloat16",
                               intermediate_dtype=inter).total)

    out["formula_bytes"] = out.apply(formula, axis=1).astype(float)
    out["counter_bytes"] = out["dram_bytes"].astype(float)
    out["ncu_duration_us"] = out["duration_us"].astype(float)
    out["sweep_time_us"] = out["sweep_time_us"].astype(float)
    out["counter_bw_gbps"] = out["counter_bytes"] / (out["ncu_duration_us"] * 1e3)
    out["formula_bw_gbps"] = out["formula_bytes"] / (out["sweep_time_us"] * 1e3)
    out["bw_ratio"] = out["formula_bw_gbps"] / out["counter_bw_gbps"]
    out["bytes_ratio"] = out["counter_bytes"] / out["formula_bytes"]
    out["time_ratio"] = out["sweep_time_us"] / out["ncu_duration_us"]
    out["agree"] = ((out["bw_ratio"] - 1).abs() <= tolerance).fillna(False).astype(bool)
    out["flag"] = ~out["agree"]

    def diagnose(r) -> str:
        if pd.isna(r["sweep_time_us"]):
            return "no sweep timing for this configuration"
        if pd.isna(r["counter_bw_gbps"]):
            return "no counter bandwidth (duration or DRAM bytes missing)"
        parts = []
        if abs(r["bytes_ratio"] - 1) > tolerance:
            parts.append(f"DRAM counters moved {r['bytes_ratio']:.2f}x the formula's bytes")
        if abs(r["time_ratio"] - 1) > tolerance:
            parts.append(f"sweep time is {r['time_ratio']:.2f}x the ncu kernel duration")
        if r["agree"]:
            return "ok" if not parts else "ok overall; " + "; ".join(parts) + " (they compensate)"
        return "; ".join(parts) or f"bandwidths differ by {abs(r['bw_ratio'] - 1) * 100:.0f}%"

    out["diagnosis"] = out.apply(diagnose, axis=1)
    peak = np.nan
    if "gpu" in out and out["gpu"].notna().any():
        try:
            from gdnlab.hardware import spec_for
            peak = spec_for(str(out["gpu"].dropna().iloc[0])).peak_hbm_gbps
        except ValueError:
            peak = np.nan
    out["peak_hbm_gbps"] = peak
    out["counter_bw_pct_of_peak"] = 100 * out["counter_bw_gbps"] / peak
    out["formula_bw_pct_of_peak"] = 100 * out["formula_bw_gbps"] / peak
    front = [c for c in JOIN_KEYS if c in out] + ["ncu_duration_us", "sweep_time_us", "counter_bytes",
                                                   "formula_bytes", "counter_bw_gbps", "formula_bw_gbps",
                                                   "bytes_ratio", "time_ratio", "bw_ratio", "agree", "flag",
                                                   "diagnosis"]
    out = out[front + [c for c in out.columns if c not in front]]
    out.attrs.update(tolerance=tolerance, time_col=used, join_keys=keys, notes=notes)
    return out.sort_values([c for c in JOIN_KEYS if c in out]).reset_index(drop=True)
