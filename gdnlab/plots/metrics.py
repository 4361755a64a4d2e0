"""Figures for Nsight Compute kernel metrics (:mod:`gdnlab.metrics`).

* :func:`bandwidth_agreement_figure`: counter bandwidth (DRAM bytes / ncu duration) against formula
  bandwidth (``gdn_bytes`` / sweep time), one point per configuration, the diagonal and the ±tolerance band;
  flagged points are drawn with a red ring.
* :func:`counters_figure`: the counters per backend against batch size — duration, DRAM bandwidth,
  DRAM throughput %, achieved occupancy %, SM throughput %, L2 hit rate % — one panel each.

Both carry a "measured" provenance footnote built from the frames' provenance columns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .provenance import add_provenance

__all__ = ["bandwidth_agreement_figure", "counters_figure", "COUNTER_PANELS"]

_COLORS = {"flashinfer": "#1f77b4", "triton": "#ff7f0e", "reference": "#7f7f7f"}
_DASH = {"decode": "solid", "verify": "dash"}
_SYMBOL = {"float32": "circle", "bfloat16": "diamond"}
#: (column, panel title, y-axis label, log y)
COUNTER_PANELS = (
    ("duration_us", "Kernel time (ncu)", "µs", True),
    ("dram_bw_gbps", "DRAM bandwidth (counters)", "GB/s", False),
    ("dram_throughput_pct", "DRAM throughput", "% of peak", False),
    ("achieved_occupancy_pct", "Achieved occupancy", "%", False),
    ("sm_throughput_pct", "SM throughput", "% of peak", False),
    ("l2_hit_rate_pct", "L2 hit rate", "%", False),
)


def _provenance_text(df: pd.DataFrame, **extra) -> str:
    from gdnlab.provenance import label

    prov = {}
    for col in ("gpu", "sm", "driver", "cuda", "torch", "triton", "flashinfer"):
        if col in df and df[col].notna().any():
            prov[col] = str(df[col].dropna().iloc[0])
    for col in ("engine", "ncu_version", "clock_control", "cache_control"):
        if col in df and df[col].notna().any():
            extra.setdefault(col.replace("_", " "), str(df[col].dropna().iloc[0]))
    if "preset" in df and df["preset"].notna().any():
        extra.setdefault("shape", str(df["preset"].dropna().iloc[0]))
    if "timestamp" in df and df["timestamp"].notna().any():
        extra.setdefault("at", str(df["timestamp"].dropna().iloc[0]))
    return label(prov, "measured", **extra)


def _trace_name(r) -> str:
    return f"{r['backend']} {r['mode']} {r['state_dtype']}"


def bandwidth_agreement_figure(cmp_df: pd.DataFrame, *, tolerance: float | None = None, title: str | None = None):
    """Scatter of ``formula_bw_gbps`` (x: ``gdn_bytes`` / sweep time) vs ``counter_bw_gbps`` (y: DRAM bytes /
    ncu duration) from :func:`gdnlab.metrics.compare_with_sweep`; the diagonal, a ±``tolerance`` band and
    the datasheet peak; flagged configurations ringed in red. Rows without a sweep time are left out."""
    import plotly.graph_objects as go

    need = {"formula_bw_gbps", "counter_bw_gbps", "backend", "mode", "state_dtype", "batch", "flag"}
    if not isinstance(cmp_df, pd.DataFrame) or need - set(cmp_df.columns):
        raise ValueError(f"cmp_df must come from compare_with_sweep(); missing columns "
                         f"{sorted(need - set(getattr(cmp_df, 'columns', [])))}")
    tol = float(tolerance if tolerance is not None else cmp_df.attrs.get("tolerance", 0.10))
    d = cmp_df.dropna(subset=["formula_bw_gbps", "counter_bw_gbps"])
    if d.empty:
        raise ValueError("no configuration has both a counter and a formula bandwidth (no sweep rows joined?)")
    fig = go.Figure()
    hi = float(np.nanmax([d["formula_bw_gbps"].max(), d["counter_bw_gbps"].max()])) * 1.1
    peak = float(d["peak_hbm_gbps"].dropna().iloc[0]) if "peak_hbm_gbps" in d and d["peak_hbm_gbps"].notna().any() \
        else np.nan
    if np.isfinite(peak):
        hi = max(hi, peak * 1.05)
    xs = np.array([0.0, hi])
    fig.add_trace(go.Scatter(x=np.r_[xs, xs[::-1]], y=np.r_[xs * (1 - tol), (xs * (1 + tol))[::-1]], fill="toself",
                             mode="lines", fillcolor="rgba(0,150,0,0.10)", line={"width": 0}, hoverinfo="skip",
                             name=f"±{tol:.0%} agreement"))
    fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", line={"color": "green", "dash": "dot"}, name="counters = formula"))
    for (be, mode, sd), g in d.groupby(["backend", "mode", "state_dtype"], sort=True):
        text = [f"{be} {mode} {sd} B={int(r['batch'])}<br>{r.get('diagnosis', '')}" for _, r in g.iterrows()]
        fig.add_trace(go.Scatter(
            x=g["formula_bw_gbps"], y=g["counter_bw_gbps"], mode="markers+text", text=[f"{int(b)}" for b in g["batch"]],
            textposition="top center", hovertext=text, hoverinfo="text+x+y", name=f"{be} {mode} {sd}",
            marker={"color": _COLORS.get(be, "#2ca02c"), "symbol": _SYMBOL.get(sd, "square") + ("" if mode == "decode"
                                                                                               else "-open"),
                    "size": 11}))
    flagged = d[d["flag"]]
    if len(flagged):
        fig.add_trace(go.Scatter(x=flagged["formula_bw_gbps"], y=flagged["counter_bw_gbps"], mode="markers",
                                 hoverinfo="skip", name=f"flagged (off by > {tol:.0%})",
                                 marker={"symbol": "circle-open", "size": 22, "color": "red", "line": {"width": 2}}))
    if np.isfinite(peak):
        fig.add_hline(y=peak, line={"color": "#888", "dash": "dash"}, annotation_text=f"datasheet peak {peak:.0f} GB/s")
    n_ok = int((~d["flag"]).sum())
    fig.update_layout(title=title or f"DRAM bandwidth, counters vs formula/sweep: {n_ok}/{len(d)} agree within {tol:.0%}",
                      xaxis_title="formula bandwidth: gdn_bytes / sweep time (GB/s)",
                      yaxis_title="counter bandwidth: DRAM bytes / ncu duration (GB/s)",
                      xaxis={"range": [0, hi]}, yaxis={"range": [0, hi]}, template="plotly_white",
                      legend={"orientation": "v"}, height=680, margin={"b": 150})
    return add_provenance(fig, _provenance_text(cmp_df))


def counters_figure(metrics_df: pd.DataFrame, *, panels=COUNTER_PANELS, title: str | None = None):
    """Counters per backend vs batch size (one panel per counter; colour = backend, dash = mode,
    marker = state dtype), from :func:`gdnlab.metrics.profile_kernels` output (kernel rows are reduced
    with :func:`gdnlab.metrics.summarize_calls`) or that summary."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from gdnlab.metrics import summarize_calls

    if not isinstance(metrics_df, pd.DataFrame) or metrics_df.empty:
        raise ValueError("metrics_df must be a non-empty DataFrame from profile_kernels()")
    s = summarize_calls(metrics_df) if "kernel_idx" in metrics_df else metrics_df
    if s.empty:
        raise ValueError("metrics_df holds no profiled configuration")
    panels = [p for p in panels if p[0] in s]
    cols = 3
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07,
                        vertical_spacing=0.14)
    groups = list(s.groupby(["backend", "mode", "state_dtype"], sort=True))
    for i, (col, _, unit, log) in enumerate(panels):
        r, c = divmod(i, cols)
        for (be, mode, sd), g in groups:
            g = g.sort_values("batch")
            hover = [f"{be} {mode} {sd} B={int(b)}: {v:.4g} {unit}<br>{k}"
                     for b, v, k in zip(g["batch"], g[col], g.get("main_kernel", [""] * len(g)))]
            fig.add_trace(go.Scatter(x=g["batch"], y=g[col], mode="lines+markers", name=f"{be} {mode} {sd}",
                                     legendgroup=f"{be} {mode} {sd}", showlegend=(i == 0), hovertext=hover,
                                     hoverinfo="text",
                                     line={"color": _COLORS.get(be, "#2ca02c"), "dash": _DASH.get(mode, "dot")},
                                     marker={"symbol": _SYMBOL.get(sd, "square"), "size": 8}),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", title_text="batch B", row=r + 1, col=c + 1)
        fig.update_yaxes(title_text=unit, type="log" if log else "linear", row=r + 1, col=c + 1)
    fig.update_layout(title=title or "Nsight Compute counters of the GDN kernels per backend",
                      template="plotly_white", height=330 * rows + 170, margin={"b": 150})
    return add_provenance(fig, _provenance_text(metrics_df))
