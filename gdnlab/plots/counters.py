"""Figures for Nsight Compute kernel counters (:mod:`gdnlab.counters`).

* :func:`bandwidth_agreement_figure`: counter bandwidth (DRAM bytes / ncu duration) against formula
  bandwidth (``gdn_bytes`` / sweep time), one point per configuration, the diagonal and the ±tolerance
  band; configurations that disagree are ringed in the colour of their cause (L2-resident state, extra
  kernels, ...), and configurations without a sweep row are listed under the plot.
* :func:`l2_residency_figure`: counter bytes / formula bytes against the bytes a call writes, with the
  L2 size marked: below it the written state is still in L2 when the kernel ends and the DRAM counters
  miss it (why counters and formula disagree at small B).
* :func:`counters_figure`: the counters per backend against batch size — duration, DRAM bandwidth,
  DRAM throughput %, achieved occupancy %, SM throughput %, L2 hit rate % — one panel each.

Colours are those of :mod:`gdnlab.plots.style` (backend colour, dash per state dtype, symbol per mode);
every figure carries the provenance footnote of the frame it shows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .layout import legend_right
from .provenance import add_provenance, frame_status
from .style import (
    MODE_SYMBOL,
    PALETTE,
    STATE_DTYPE_DASH,
    axis_title,
    backend_color,
    color_for,
    decade_log_axis,
    measured_log_axis,
)

__all__ = ["bandwidth_agreement_figure", "l2_residency_figure", "counters_figure", "COUNTER_PANELS",
           "CAUSE_COLORS"]

#: ring colour per disagreement cause (:data:`gdnlab.counters.CAUSES`)
CAUSE_COLORS = {"L2-resident state": PALETTE[2], "extra kernels": PALETTE[3], "backend options differ": PALETTE[4],
                "more DRAM bytes": PALETTE[5], "fewer DRAM bytes": PALETTE[6], "timing differs": PALETTE[8]}
_MIB = 2.0**20
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
    from gdnlab.provenance import PROVENANCE_COLUMNS, label

    prov = {}
    for col in PROVENANCE_COLUMNS:
        if col in df and df[col].notna().any():
            prov[col] = str(df[col].dropna().iloc[0])
    for col in ("engine", "ncu_version", "clock_control", "cache_control"):
        if col in df and df[col].notna().any():
            extra.setdefault(col.replace("_", " "), str(df[col].dropna().iloc[0]))
    if "preset" in df and df["preset"].notna().any():
        extra.setdefault("shape", str(df["preset"].dropna().iloc[0]))
    if "timestamp" in df and df["timestamp"].notna().any():
        extra.setdefault("at", str(df["timestamp"].dropna().iloc[0]))
    return label(prov, frame_status(df) or "synthetic", **extra)


def _need(cmp_df, cols: set[str]) -> None:
    if not isinstance(cmp_df, pd.DataFrame) or cols - set(cmp_df.columns):
        raise ValueError(f"cmp_df must come from compare_with_sweep(); missing columns "
                         f"{sorted(cols - set(getattr(cmp_df, 'columns', [])))}")


def _label(r) -> str:
    return f"{r['backend']} {r['mode']} B={int(r['batch'])} {r['state_dtype']}"


def bandwidth_agreement_figure(cmp_df: pd.DataFrame, *, tolerance: float | None = None, title: str | None = None):
    """Scatter of ``formula_bw_gbps`` (x: ``gdn_bytes`` / sweep time) vs ``counter_bw_gbps`` (y: DRAM bytes /
    ncu duration) from :func:`gdnlab.counters.compare_with_sweep`; the diagonal, a ±``tolerance`` band and
    the datasheet peak. Every configuration is shown: those that disagree are ringed in the colour of
    their ``cause`` (legend), those without a sweep row are named under the plot."""
    import plotly.graph_objects as go

    _need(cmp_df, {"formula_bw_gbps", "counter_bw_gbps", "backend", "mode", "state_dtype", "batch", "flag"})
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
    fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", line={"color": "green", "dash": "dot"},
                             name="counters = formula"))
    for (be, mode, sd), g in d.groupby(["backend", "mode", "state_dtype"], sort=True):
        text = [f"{_label(r)}<br>{r.get('diagnosis', '')}" for _, r in g.iterrows()]
        fig.add_trace(go.Scatter(
            x=g["formula_bw_gbps"], y=g["counter_bw_gbps"], mode="markers+text", text=[f"{int(b)}" for b in g["batch"]],
            textposition="top center", hovertext=text, hoverinfo="text+x+y", name=f"{be} {mode} {sd}",
            marker={"color": backend_color(be), "symbol": MODE_SYMBOL.get(mode, "square")
                    + ("" if sd == "float32" else "-open"), "size": 11}))
    flagged = d[d["flag"]]
    causes = flagged["cause"] if "cause" in flagged else pd.Series("flagged", index=flagged.index)
    for cause, g in flagged.groupby(causes, sort=False):
        fig.add_trace(go.Scatter(x=g["formula_bw_gbps"], y=g["counter_bw_gbps"], mode="markers",
                                 hovertext=[f"{_label(r)}<br>{r.get('diagnosis', '')}" for _, r in g.iterrows()],
                                 hoverinfo="text", name=f"off by > {tol:.0%}: {cause}",
                                 marker={"symbol": "circle-open", "size": 22, "line": {"width": 2},
                                         "color": color_for(str(cause), CAUSE_COLORS)}))
    if np.isfinite(peak):
        fig.add_hline(y=peak, line={"color": "#888", "dash": "dash"}, annotation_text=f"datasheet peak {peak:.0f} GB/s")
    unmatched = cmp_df[cmp_df["formula_bw_gbps"].isna() | cmp_df["counter_bw_gbps"].isna()]
    note = ("no sweep row: " + ", ".join(_label(r) for _, r in unmatched.iterrows())) if len(unmatched) else ""
    n_ok = int((~d["flag"]).sum())
    title = title or f"DRAM bandwidth, counters vs formula/sweep: {n_ok}/{len(d)} agree within {tol:.0%}"
    fig.update_layout(title=title,
                      xaxis_title=axis_title("formula bandwidth: gdn_bytes / sweep time", "GB/s"),
                      yaxis_title=axis_title("counter bandwidth: DRAM bytes / ncu duration", "GB/s"),
                      xaxis={"range": [0, hi]}, yaxis={"range": [0, hi]}, template="plotly_white",
                      height=680, margin={"b": 150})
    legend_right(fig)
    if note:
        fig.add_annotation(text=note[:300], xref="paper", yref="paper", x=0, y=-0.12, showarrow=False,
                           align="left", font={"size": 10})
    return add_provenance(fig, _provenance_text(cmp_df))


def l2_residency_figure(cmp_df: pd.DataFrame, *, title: str | None = None):
    """Counter bytes / formula bytes (y) against the bytes one call writes (x: state written back plus
    intermediate states, MiB, log) per configuration of :func:`gdnlab.counters.compare_with_sweep`, with
    the L2 size marked. Where the written bytes fit in L2 the DRAM counters miss the writes still held
    there when the kernel ends (decode at small B: ratio 0.5); far above it the ratio reaches 1."""
    import plotly.graph_objects as go

    _need(cmp_df, {"written_bytes", "bytes_ratio", "backend", "mode", "state_dtype", "batch"})
    d = cmp_df.dropna(subset=["written_bytes", "bytes_ratio"])
    d = d[d["written_bytes"] > 0]
    if d.empty:
        raise ValueError("no configuration has both written bytes and a counter/formula bytes ratio")
    fig = go.Figure()
    for (be, mode, sd), g in d.groupby(["backend", "mode", "state_dtype"], sort=True):
        g = g.sort_values("written_bytes")
        fig.add_trace(go.Scatter(
            x=g["written_bytes"] / _MIB, y=g["bytes_ratio"], mode="lines+markers+text",
            text=[f"{int(b)}" for b in g["batch"]], textposition="top center", name=f"{be} {mode} {sd}",
            hovertext=[f"{_label(r)}<br>{r.get('diagnosis', '')}" for _, r in g.iterrows()], hoverinfo="text+x+y",
            line={"color": backend_color(be), "dash": STATE_DTYPE_DASH.get(sd, "dot")},
            marker={"symbol": MODE_SYMBOL.get(mode, "square"), "size": 9}))
    fig.add_hline(y=1.0, line={"color": "green", "dash": "dot"}, annotation_text="counters = formula")
    if "l2_bytes" in d and d["l2_bytes"].notna().any():
        l2 = float(d["l2_bytes"].dropna().iloc[0]) / _MIB
        fig.add_vline(x=l2, line={"color": CAUSE_COLORS["L2-resident state"], "dash": "dash"})
        # on a log axis an annotation's x is log10 of the value (a shape's is the value itself)
        fig.add_annotation(x=np.log10(l2), y=1.0, yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                           text=f"L2 {l2:.0f} MiB: writes below this can stay in L2",
                           font={"size": 11, "color": CAUSE_COLORS["L2-resident state"]})
    decade_log_axis(fig, d["written_bytes"] / _MIB, axis="x")
    fig.update_layout(title=title or "Counter bytes / formula bytes vs bytes written per call (L2 at small B)",
                      xaxis={"title": axis_title("bytes written per call (state + intermediates)", "MiB")},
                      yaxis={"title": axis_title("DRAM counter bytes / formula bytes"), "rangemode": "tozero"},
                      template="plotly_white", height=560, margin={"b": 150})
    legend_right(fig, title="backend · mode · state dtype")
    return add_provenance(fig, _provenance_text(cmp_df))


def counters_figure(metrics_df: pd.DataFrame, *, panels=COUNTER_PANELS, title: str | None = None):
    """Counters per backend vs batch size (one panel per counter; colour = backend, dash = state dtype,
    marker = mode), from :func:`gdnlab.counters.profile_kernels` output (kernel rows are reduced with
    :func:`gdnlab.counters.summarize_calls`) or that summary."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from gdnlab.counters import summarize_calls

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
                                     line={"color": backend_color(be), "dash": STATE_DTYPE_DASH.get(sd, "dot")},
                                     marker={"symbol": MODE_SYMBOL.get(mode, "square"), "size": 8}),
                          row=r + 1, col=c + 1)
        measured_log_axis(fig, s["batch"], row=r + 1, col=c + 1)
        fig.update_xaxes(title_text=axis_title("batch B", "rows"), row=r + 1, col=c + 1)
        fig.update_yaxes(title_text=unit, row=r + 1, col=c + 1)
        if log:
            decade_log_axis(fig, s[col], row=r + 1, col=c + 1)
    fig.update_layout(title=title or "Nsight Compute counters of the GDN kernels per backend",
                      template="plotly_white", height=330 * rows + 170, margin={"b": 150})
    legend_right(fig, title="backend · mode · state dtype")
    return add_provenance(fig, _provenance_text(metrics_df))
