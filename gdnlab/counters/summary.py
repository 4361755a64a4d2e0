"""Counters per configuration: :func:`summarize_calls` (kernels of a call summed, repeats reduced to their
median), :func:`formula_bytes` (gdnlab's byte formula for one row) and :func:`format_table` (a
fixed-width text table).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gdnlab.provenance import PROVENANCE_COLUMNS

from .frame import JOIN_KEYS

__all__ = ["summarize_calls", "format_table", "formula_bytes", "formula_parts"]

_SUM_COLS = ("duration_us", "dram_read_bytes", "dram_write_bytes", "dram_bytes")
_WEIGHTED = ("dram_throughput_pct", "sm_throughput_pct", "achieved_occupancy_pct", "l2_hit_rate_pct",
             "memory_throughput_pct")


def summarize_calls(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: kernels of a call summed (time, bytes), percentages weighted by kernel
    duration, registers/occupancy of the call's longest kernel (``main_kernel``), then the median over
    repeats (``reps``). ``dram_bw_gbps`` = DRAM bytes / duration of the call (GB/s = bytes/ns)."""
    ok = df[df["outcome"] == "ok"].copy() if "outcome" in df else df.copy()
    if ok.empty:
        return pd.DataFrame(columns=list(JOIN_KEYS) + ["duration_us", "dram_bw_gbps"])
    group = [c for c in ("cfg",) + JOIN_KEYS + ("H", "HV", "K", "V", "act_dtype", "intermediate_dtype") if c in ok]
    for c in group:                                   # groupby keys without NaN (decode has no intermediate)
        if not pd.api.types.is_numeric_dtype(ok[c]):
            ok[c] = ok[c].astype(object).where(ok[c].notna(), "")
    ok["_w"] = ok["duration_us"].fillna(0.0)
    ok["_gdn_w"] = ok["_w"].where(ok["is_gdn"].astype(bool), 0.0) if "is_gdn" in ok else np.nan
    for c in _WEIGHTED:
        if c in ok:
            ok[f"_{c}"] = ok[c] * ok["_w"]
    ok = ok.reset_index(drop=True)
    g = ok.groupby(group + ["rep"], sort=False)
    calls = g[[c for c in _SUM_COLS if c in ok]].sum(min_count=1)
    w = g["_w"].sum()
    for c in _WEIGHTED:
        if c in ok:
            calls[c] = (g[f"_{c}"].sum() / w.where(w > 0)).fillna(g[c].mean())
    calls["n_kernels"] = g.size()
    calls["gdn_share"] = g["_gdn_w"].sum() / w.where(w > 0)
    main = ok.loc[g["_w"].idxmax().values]
    main.index = calls.index
    calls["main_kernel"] = main["kernel_short"].where(main["kernel_short"].notna(), main["kernel"]) \
        if "kernel_short" in main else main["kernel"]
    for c in ("registers_per_thread", "theoretical_occupancy_pct"):
        if c in main:
            calls[c] = main[c]
    calls = calls.reset_index()
    num = [c for c in calls.columns if c not in group + ["rep", "main_kernel"]]
    summary = calls.groupby(group, sort=False).agg(
        **{c: (c, "median") for c in num}, main_kernel=("main_kernel", "first"), reps=("rep", "nunique")
    ).reset_index()
    summary["dram_bw_gbps"] = summary["dram_bytes"] / (summary["duration_us"] * 1e3)
    summary["formula_bytes"] = [formula_bytes(r) for _, r in summary.iterrows()]
    summary["bytes_ratio"] = summary["dram_bytes"] / summary["formula_bytes"]
    run_cols = ("backend_options", "status", "engine", "ncu_version", "clock_control", "cache_control")
    prov = [c for c in PROVENANCE_COLUMNS + run_cols if c in ok]
    first = ok.groupby(group, sort=False)[prov].first().reset_index()
    summary = summary.merge(first, on=group, how="left")
    for c in ("intermediate_dtype", "act_dtype"):
        if c in summary:
            summary[c] = summary[c].where(summary[c] != "", None)
    return summary.drop(columns=["cfg"], errors="ignore").sort_values(list(JOIN_KEYS)).reset_index(drop=True)


def formula_parts(r):
    """:func:`gdnlab.roofline.gdn_bytes` for one configuration row (``H, HV, K, V, batch, draft_tokens,
    mode, state_dtype`` [+ ``act_dtype``, ``intermediate_dtype``]); ``None`` when a column is missing."""
    from gdnlab.roofline import gdn_bytes
    from gdnlab.shapes import GDNShape

    def text(key: str, default: str) -> str:
        v = r.get(key)
        missing = v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or str(v) in ("", "n/a")
        return default if missing else str(v)

    try:
        shape = GDNShape(text("preset", "profiled"), int(r["H"]), int(r["HV"]), int(r["K"]), int(r["V"]))
        return gdn_bytes(shape, int(r["batch"]), int(r["draft_tokens"]), mode=str(r["mode"]),
                         state_dtype=str(r["state_dtype"]), act_dtype=text("act_dtype", "bfloat16"),
                         intermediate_dtype=text("intermediate_dtype", "float32"))
    except (KeyError, TypeError, ValueError):
        return None


def formula_bytes(r) -> float:
    """``gdn_bytes(...).total`` for one configuration row (NaN when the shape columns are missing)."""
    parts = formula_parts(r)
    return float("nan") if parts is None else float(parts.total)


def format_table(summary: pd.DataFrame, peak_gbps: float | None = None) -> str:
    """A fixed-width text table of :func:`summarize_calls` output (µs, GB/s, % of peak, counters)."""
    if summary.empty:
        return "(no profiled configuration)"
    if peak_gbps is None and "gpu" in summary and summary["gpu"].notna().any():
        try:
            from gdnlab.hardware import spec_for
            peak_gbps = spec_for(str(summary["gpu"].dropna().iloc[0])).peak_hbm_gbps
        except ValueError:
            peak_gbps = None
    cols = [("backend", "backend", "{}"), ("mode", "mode", "{}"), ("batch", "B", "{:d}"),
            ("draft_tokens", "T", "{:d}"), ("state_dtype", "state", "{}"), ("duration_us", "ncu µs", "{:.1f}"),
            ("dram_bw_gbps", "DRAM GB/s", "{:.0f}"), ("dram_throughput_pct", "DRAM %", "{:.1f}"),
            ("achieved_occupancy_pct", "occ %", "{:.1f}"), ("sm_throughput_pct", "SM %", "{:.1f}"),
            ("l2_hit_rate_pct", "L2 hit %", "{:.1f}"), ("registers_per_thread", "regs", "{:.0f}"),
            ("bytes_ratio", "bytes/formula", "{:.2f}"), ("n_kernels", "kern", "{:.0f}"),
            ("main_kernel", "main kernel", "{}")]
    rows = []
    for _, r in summary.iterrows():
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            try:
                cells.append("-" if v is None or (isinstance(v, float) and np.isnan(v)) else
                             fmt.format(int(v) if fmt == "{:d}" else v))
            except (ValueError, TypeError):
                cells.append(str(v))
        if peak_gbps:
            bw = r.get("dram_bw_gbps")
            cells.insert(7, "-" if bw is None or np.isnan(bw) else f"{100 * bw / peak_gbps:.0f}")
        rows.append([c if len(c) <= 40 else c[:37] + "..." for c in cells])
    header = [h for _, h, _ in cols]
    if peak_gbps:
        header.insert(7, "% peak")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
