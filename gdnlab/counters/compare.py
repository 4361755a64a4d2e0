"""Counters vs formula: is gdnlab's byte formula honest, and is the sweep's timing?

Two independent estimates of the bandwidth each configuration achieves:

* **counters** (Nsight Compute): ``(dram__bytes_read + dram__bytes_write) / gpu__time_duration`` summed
  over the kernels of one call — what the memory system moved, in the kernels' own time;
* **formula + sweep**: ``gdnlab.roofline.gdn_bytes(...).total / sweep time`` — the roofline numerator over
  the time the sweep measured.

They agree (``agree``; default within 10 %) only if the byte formula counts what the kernel moves *and*
the sweep times the same call as the counters. Every profiled configuration gets a row and a
``diagnosis`` saying why the two disagree where they do (``cause`` names the main reason in a few words):

* **L2-resident state at small B**: the H100's L2 is a write-back cache; state (decode) or intermediate
  states (verify) written by the kernel can still sit in L2 when the kernel ends, so the DRAM write
  counters miss them. When the missing bytes are no more than the bytes the call writes and fit in the
  L2, that is the explanation (DRAM counters at 0.5x the formula's bytes for decode at B=1..16).
* **extra kernels**: the profiled call ran kernels besides the GDN kernel (e.g. FlashInfer with
  ``zero_padding_output=True`` adds a compare and a masked fill); their time and bytes are counted.
* **more / fewer DRAM bytes**, **timing differs**: what is left, with the ratios.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gdnlab.errors import DataError

from .frame import JOIN_KEYS
from .summary import formula_parts, summarize_calls

__all__ = ["compare_with_sweep", "CAUSES"]

#: values of the ``cause`` column, in the order they take precedence
CAUSES = ("no sweep row", "no counters", "backend options differ", "extra kernels", "L2-resident state",
          "more DRAM bytes", "fewer DRAM bytes", "timing differs", "agree")
_MIB = 2.0**20
_SWEEP_KEYS = ("backend", "mode", "batch", "state_dtype")


def _dtype(v) -> str | None:
    from gdnlab.shapes import dtype_name

    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        return dtype_name(v)
    except ValueError:
        return str(v)


def _options(v) -> str | None:
    """Backend options as canonical JSON; ``None`` when not recorded."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    try:
        return json.dumps(json.loads(v) if isinstance(v, str) else v, sort_keys=True)
    except (TypeError, ValueError):
        return str(v)


def _load_sweep(sweep) -> pd.DataFrame:
    """Sweep rows from a path (:func:`gdnlab.results.load_sweep`), a frame (one of an earlier schema is
    brought to the current one by :func:`gdnlab.results.normalize`), or a sequence of either."""
    from gdnlab.results import load_sweep, normalize

    if isinstance(sweep, pd.DataFrame):
        current = "buffer_scope" in sweep and not {"concurrency", "rotate", "verify_tokens"} & set(sweep.columns)
        return sweep if current else normalize(sweep, source="the sweep frame")   # e.g. load_sweep's, concatenated
    if isinstance(sweep, (str, os.PathLike)):
        return load_sweep(sweep)
    if isinstance(sweep, Sequence) and sweep:
        return pd.concat([_load_sweep(s) for s in sweep], ignore_index=True)
    raise TypeError(f"sweep must be a path, a DataFrame or a list of them, got {type(sweep).__name__}")


def _kernel_rows(sweep: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """Sweep rows comparable with one profiled call: measured (``status`` ok), decode or batch-scoped
    verify (``buffer_scope`` none / batch: SGLang slices the intermediate buffer to the batch; of step
    rows, the baseline strategy's, ``full_cache``), timed
    in CUDA graphs: ``timing`` single (one call per sample) when the sweep has such rows, else
    ``amortised`` (n calls on disjoint rows per sample, each as cold in L2 as a profiled call with
    ``--cache-control all``; the per-call time also holds the ~0.3-0.5 µs a graph takes to start the next
    kernel, which matters only at B <= 16). Eager rows (host launch overhead) are never used."""
    if sweep.empty:
        raise DataError("the sweep holds no rows to compare with")
    if time_col not in sweep:
        raise DataError(f"the sweep has no column {time_col!r}; it has {list(sweep.columns)[:16]}")
    s = sweep
    keep = s["status"].astype(str).eq("ok")
    if "timing" in s:
        timing = s["timing"].astype(str)
        keep &= timing.eq("single") if (keep & timing.eq("single")).any() else ~timing.eq("eager")
    if "timing_method" in s:                   # a graph that failed to capture was timed eagerly
        keep &= ~s["timing_method"].astype(str).eq("eager")
    if "buffer_scope" in s:                    # a scope or strategy the file does not state is not excluded
        keep &= s["buffer_scope"].isna() | s["buffer_scope"].astype(str).isin(["none", "batch"])
    if "strategy" in s:                        # of step rows, the baseline's (the call the profiler runs)
        from ..strategies.registry import BASELINE  # imports torch: only when a sweep is compared

        keep &= s["strategy"].isna() | s["strategy"].astype(str).eq(BASELINE)
    s = s[keep].copy()
    if s.empty:
        raise DataError("the sweep has no measured rows comparable with one profiled call (status 'ok', timed in "
                        "CUDA graphs (timing single or amortised), decode or a batch-scoped buffer)")
    s["sweep_time_us"] = pd.to_numeric(s[time_col], errors="coerce").astype(float)
    s["backend"] = s["backend"].astype(str)
    s["mode"] = s["mode"].astype(str)
    s["batch"] = pd.to_numeric(s["batch"], errors="coerce").astype("Int64")
    s["state_dtype"] = s["state_dtype"].map(_dtype)
    s["draft_tokens"] = pd.to_numeric(s["draft_tokens"], errors="coerce").astype("Int64")
    if "preset" in s and "tp" in s:          # the sweep stores the unsharded name and tp; counters NAME@tpN
        tp = pd.to_numeric(s["tp"], errors="coerce").fillna(1).astype(int)
        pre = s["preset"].astype(str)
        s["preset"] = pre.where(pre.str.contains("@", regex=False) | (tp <= 1), pre + "@tp" + tp.astype(str))
    if "backend_options" in s:
        s["backend_options"] = s["backend_options"].map(_options)
    return s


def _counters(counters) -> pd.DataFrame:
    if isinstance(counters, (str, os.PathLike)):
        from .files import load_counters

        counters = load_counters(counters)
    if not isinstance(counters, pd.DataFrame) or counters.empty:
        raise DataError("the counters table is empty (profile_kernels() output or its summary expected)")
    m = summarize_calls(counters) if "kernel_idx" in counters else counters.copy()
    if m.empty:
        raise DataError("the counters table holds no profiled configuration (every outcome is skipped/failed)")
    missing = [c for c in ("backend", "mode", "batch", "draft_tokens", "state_dtype", "H", "HV", "K", "V",
                           "duration_us", "dram_bytes") if c not in m]
    if missing:
        raise DataError(f"the counters table lacks the columns {missing}")
    m["batch"] = m["batch"].astype("Int64")
    m["draft_tokens"] = m["draft_tokens"].astype("Int64")
    m["state_dtype"] = m["state_dtype"].map(_dtype)
    if "backend_options" in m:
        m["backend_options"] = m["backend_options"].map(_options)
    return m


def _join_keys(s: pd.DataFrame, m: pd.DataFrame, match_gpu: bool, notes: list[str]) -> list[str]:
    keys = [*_SWEEP_KEYS, "draft_tokens"]
    if "preset" in s and "preset" in m and set(s["preset"]) & set(m["preset"]):
        keys.append("preset")
    elif all(c in s for c in ("H", "HV", "K", "V")):
        keys += ["H", "HV", "K", "V"]
        for c in ("H", "HV", "K", "V"):
            s[c] = pd.to_numeric(s[c], errors="coerce").astype("Int64")
            m[c] = m[c].astype("Int64")
    else:
        notes.append("the sweep's presets do not match the profiled one and it has no H/HV/K/V: joined without shape")
    if match_gpu and "gpu" in s and "gpu" in m and m["gpu"].notna().any():
        keys.append("gpu")
    if "intermediate_dtype" in m and "intermediate_dtype" in s and s["intermediate_dtype"].notna().any():
        # a verify writing fp32 intermediates moves twice the bytes of one writing bf16: never mix them
        for f in (s, m):
            f["intermediate_dtype"] = f["intermediate_dtype"].astype("string").fillna("n/a").replace("", "n/a")
        keys.append("intermediate_dtype")
    return keys


def _gpu_spec(out: pd.DataFrame):
    if "gpu" in out and out["gpu"].notna().any():
        from gdnlab.hardware import spec_for

        try:
            return spec_for(str(out["gpu"].dropna().iloc[0]))
        except ValueError:
            return None
    return None


def _diagnose(r, tol: float) -> tuple[str, str]:
    """``(cause, diagnosis)`` of one joined row (see the module docstring)."""
    if pd.isna(r["sweep_time_us"]):
        return "no sweep row", "no sweep timing for this configuration"
    if pd.isna(r["counter_bw_gbps"]):
        return "no counters", "no counter bandwidth (duration or DRAM bytes missing)"
    causes: list[str] = []
    parts: list[str] = []
    opts_c, opts_s = r.get("backend_options"), r.get("sweep_backend_options")
    if opts_c is not None and opts_s is not None and not pd.isna(opts_c) and not pd.isna(opts_s) and opts_c != opts_s:
        causes.append("backend options differ")
        parts.append(f"backend options differ: counters {opts_c}, sweep {opts_s}")
    n_k, share = r.get("n_kernels"), r.get("gdn_share")
    if n_k is not None and not pd.isna(n_k) and n_k > 1 and share is not None and not pd.isna(share) \
            and 1 - share > tol:
        causes.append("extra kernels")
        sweep_opts = f"; the sweep's call ran with {opts_s}" if opts_s is not None and not pd.isna(opts_s) else ""
        parts.append(f"extra kernels: the profiled call ran {int(n_k)} kernels, the GDN kernel "
                     f"{r['gdn_duration_us']:.1f} of {r['ncu_duration_us']:.1f} µs{sweep_opts}")
    ratio = r["bytes_ratio"]
    if ratio < 1 - tol:
        deficit, written, l2 = r["formula_bytes"] - r["counter_bytes"], r["written_bytes"], r["l2_bytes"]
        if not pd.isna(l2) and written > 0 and deficit <= min(written, l2) * (1 + tol):
            causes.append("L2-resident state")
            parts.append(f"L2-resident state at small B: {deficit / _MIB:.1f} MiB of the {written / _MIB:.1f} MiB "
                         f"the call writes were still in the {l2 / _MIB:.0f} MiB L2 when the kernel ended "
                         f"(DRAM counters moved {ratio:.2f}x the formula's bytes)")
        else:
            causes.append("fewer DRAM bytes")
            parts.append(f"DRAM counters moved {ratio:.2f}x the formula's bytes")
    elif ratio > 1 + tol:
        causes.append("more DRAM bytes")
        parts.append(f"DRAM counters moved {ratio:.2f}x the formula's bytes")
    if abs(r["time_ratio"] - 1) > tol:
        causes.append("timing differs")
        parts.append(f"sweep time is {r['time_ratio']:.2f}x the ncu kernel duration")
    if r["agree"]:
        return "agree", "ok" if not parts else "ok overall; " + "; ".join(parts) + " (they compensate)"
    if not causes:
        return "timing differs", f"bandwidths differ by {abs(r['bw_ratio'] - 1) * 100:.0f}%"
    return min(causes, key=CAUSES.index), "; ".join(parts)


def compare_with_sweep(counters, sweep, *, time_col: str = "time_us", tolerance: float = 0.10,
                       match_gpu: bool = True, l2_bytes: float | None = None) -> pd.DataFrame:
    """Bandwidth from counters vs bandwidth from the byte formula and the sweep's timing, per configuration.

    Args:
        counters: :func:`gdnlab.counters.profile_kernels` output (kernel rows), its
            :func:`~gdnlab.counters.summarize_calls` summary, or the path of a stored counters table.
        sweep: the path of a sweep (read with :func:`gdnlab.results.load_sweep`), the frame it returns,
            or a list of either (concatenated). Rows ``backend, mode, batch, state_dtype`` (+
            ``draft_tokens``, ``preset``/``tp`` or ``H, HV, K, V``, ``gpu``, ``intermediate_dtype``,
            ``backend_options`` when present) and ``time_us``; several rows per configuration are
            reduced to their median.
        time_col: the sweep's timing column (µs).
        tolerance: relative agreement required (0.10 = 10 %).
        match_gpu: also join on ``gpu`` when both frames have it.
        l2_bytes: L2 size in bytes for the L2 diagnosis (default: the GPU's, from :mod:`gdnlab.hardware`).

    Returns:
        One row per profiled configuration (configurations without a sweep row are kept, with the cause
        ``no sweep row``): ``ncu_duration_us``, ``gdn_duration_us`` (the GDN kernels' share),
        ``sweep_time_us``, ``counter_bytes``, ``formula_bytes``, ``written_bytes`` (state written back +
        intermediate states), ``counter_bw_gbps``, ``formula_bw_gbps`` (GB/s = 1e9 B/s), ``bytes_ratio``
        (counters / formula), ``time_ratio`` (sweep / ncu), ``bw_ratio`` (formula / counters), ``agree``,
        ``flag`` (= not agree), ``cause`` (one of :data:`CAUSES`) and ``diagnosis`` (the explanation with
        its numbers), plus ``l2_bytes`` and percent-of-datasheet-peak columns when the GPU is known.

    Raises:
        :class:`~gdnlab.errors.DataError` for a table without the needed columns or rows; ``ValueError``
        for a tolerance outside (0, 1).
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    m = _counters(counters)
    s = _kernel_rows(_load_sweep(sweep), time_col)
    notes: list[str] = []
    keys = _join_keys(s, m, match_gpu, notes)
    aggs = {"sweep_time_us": ("sweep_time_us", "median"), "sweep_rows": ("sweep_time_us", "size")}
    if "backend_options" in s:
        aggs["sweep_backend_options"] = ("backend_options", "first")
    agg = s.groupby(keys, dropna=False).agg(**aggs).reset_index()
    out = m.merge(agg, on=keys, how="left")

    parts = [formula_parts(r) for _, r in out.iterrows()]
    out["formula_bytes"] = [np.nan if p is None else float(p.total) for p in parts]
    out["written_bytes"] = [np.nan if p is None else float(p.state_write + p.intermediate_write) for p in parts]
    out["counter_bytes"] = out["dram_bytes"].astype(float)
    out["ncu_duration_us"] = out["duration_us"].astype(float)
    share = out["gdn_share"].astype(float) if "gdn_share" in out else pd.Series(1.0, index=out.index)
    out["gdn_duration_us"] = out["ncu_duration_us"] * share
    out["sweep_time_us"] = out["sweep_time_us"].astype(float)
    out["counter_bw_gbps"] = out["counter_bytes"] / (out["ncu_duration_us"] * 1e3)
    out["formula_bw_gbps"] = out["formula_bytes"] / (out["sweep_time_us"] * 1e3)
    out["bw_ratio"] = out["formula_bw_gbps"] / out["counter_bw_gbps"]
    out["bytes_ratio"] = out["counter_bytes"] / out["formula_bytes"]
    out["time_ratio"] = out["sweep_time_us"] / out["ncu_duration_us"]
    out["agree"] = ((out["bw_ratio"] - 1).abs() <= tolerance).fillna(False).astype(bool)
    out["flag"] = ~out["agree"]
    spec = _gpu_spec(out)
    out["l2_bytes"] = float(l2_bytes) if l2_bytes else (spec.l2_mb * _MIB if spec else np.nan)
    diag = [_diagnose(r, tolerance) for _, r in out.iterrows()]
    out["cause"] = [c for c, _ in diag]
    out["diagnosis"] = [d for _, d in diag]
    peak = spec.peak_hbm_gbps if spec else np.nan
    out["peak_hbm_gbps"] = peak
    out["counter_bw_pct_of_peak"] = 100 * out["counter_bw_gbps"] / peak
    out["formula_bw_pct_of_peak"] = 100 * out["formula_bw_gbps"] / peak
    front = [c for c in JOIN_KEYS if c in out] + ["ncu_duration_us", "gdn_duration_us", "sweep_time_us",
                                                   "counter_bytes", "formula_bytes", "written_bytes",
                                                   "counter_bw_gbps", "formula_bw_gbps", "bytes_ratio",
                                                   "time_ratio", "bw_ratio", "agree", "flag", "cause", "diagnosis"]
    out = out[front + [c for c in out.columns if c not in front]]
    out.attrs.update(tolerance=tolerance, time_col=time_col, join_keys=keys, notes=notes)
    return out.sort_values([c for c in JOIN_KEYS if c in out]).reset_index(drop=True)
