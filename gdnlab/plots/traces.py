"""Plotly views of Nsight / Kineto traces: timelines, range breakdowns, two traces side by side.

Every figure carries a provenance footnote (``add_provenance``): GPU and SM from the trace
metadata, the file name, the nsys version and the word "measured".

Timelines stay fast at 10^5+ kernels by *windowing*: only ``max_kernels`` kernels are drawn (by
default the first ones, from the first kernel on), and the figure title says so. Kernels are drawn
as WebGL line segments (one ``Scattergl`` per kernel class), NVTX ranges as horizontal bars.
Times on the x axis are µs relative to the first kernel of the trace.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gdnlab.plots.provenance import add_provenance
from gdnlab.traces.names import kernel_classes

if TYPE_CHECKING:  # pragma: no cover
    from gdnlab.traces import Trace

__all__ = ["timeline", "range_breakdown_figure", "side_by_side", "compare_figure"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
_MAX_CLASSES = 8


def _provenance_of(df: pd.DataFrame, provenance: str | None) -> str:
    text = provenance or df.attrs.get("provenance")
    if not text:  # DESIGN: a figure with no provenance is not shown
        raise ValueError("no provenance: pass provenance=... or a frame from gdnlab.traces analyses "
                         "(they set df.attrs['provenance'])")
    return text


def _window(trace: Trace, window_ns: tuple[int, int] | None, max_kernels: int
            ) -> tuple[int, int, int, pd.DataFrame, str]:
    """(t0, lo, hi, kernels in [t0+lo, t0+hi), note). ``lo``/``hi`` are ns relative to the first kernel."""
    k = trace.kernels
    if k.empty:
        return 0, 0, 0, k, "no kernels"
    starts = np.sort(k["start_ns"].to_numpy())
    t0 = int(starts[0])
    note = ""
    if window_ns is None:
        lo = 0
        if len(starts) > max_kernels:
            hi = int(starts[max_kernels]) - t0
            note = f"first {max_kernels:,} of {len(starts):,} kernels"
            steps = _complete_steps(trace, t0, hi)
            if steps:                      # snap the window to the end of the last whole step
                hi = steps[1]
                shown = int(np.searchsorted(starts, t0 + hi))
                note = f"first {steps[0]:,} steps: {shown:,} of {len(starts):,} kernels"
        else:
            hi = int(k["end_ns"].max()) - t0 + 1
    else:
        lo, hi = int(window_ns[0]), int(window_ns[1])
        note = f"window {lo / 1e3:,.1f}–{hi / 1e3:,.1f} µs"
    sel = k[(k["end_ns"] > t0 + lo) & (k["start_ns"] < t0 + hi)]
    if len(sel) > max_kernels:
        sel = sel.nsmallest(max_kernels, "start_ns")
        hi = int(sel["end_ns"].max()) - t0
        note = f"{note}; first {max_kernels:,} of its kernels" if note else f"first {max_kernels:,} kernels"
    return t0, lo, hi, sel, note


def _complete_steps(trace: Trace, t0: int, hi: int) -> tuple[int, int] | None:
    """(number of step ranges whose GPU work ends before ``t0 + hi``, end of the last one - t0)."""
    from gdnlab.traces.analysis import step_mask
    r = trace.gpu_ranges
    if r.empty:
        return None
    r = r[step_mask(r["text"], "step") & (r["kernel_count"] > 0)]
    ends = np.sort(r["gpu_end_ns"].to_numpy(dtype=np.int64, na_value=0)) - t0
    n = int(np.searchsorted(ends, hi, side="right"))
    return (n, int(ends[n - 1])) if n else None


def _timeline_traces(trace: Trace, window_ns: tuple[int, int] | None, max_kernels: int,
                     *, legend_group: str = "", show_legend: bool = True
                     ) -> tuple[list, list[str], str]:
    """Plotly traces for one timeline, the y categories (top to bottom) and the windowing note."""
    t0, lo, hi, k, note = _window(trace, window_ns, max_kernels)
    out: list = []
    rows_nvtx: list[str] = []
    r = trace.gpu_ranges
    if len(r):
        r = r[(r["end_ns"] > t0 + lo) & (r["start_ns"] < t0 + hi)]
        if len(r) > max_kernels:
            r = r.nsmallest(max_kernels, "start_ns")
            note = f"{note}; first {max_kernels:,} ranges" if note else f"first {max_kernels:,} ranges"
    if len(r):
        row = ("NVTX " + r["tid"].astype(str) + " · d" + r["depth"].astype(str)).to_numpy(dtype=object)
        rows_nvtx = sorted(set(row), key=lambda s: (s.split(" · d")[0], int(s.split(" · d")[1])))
        gs = r["gpu_start_ns"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        busy = r["gpu_busy_ns"].to_numpy(dtype=float)
        custom = np.column_stack([r["text"].astype(str).to_numpy(dtype=object),
                                  r["duration_ns"].to_numpy() / 1e3, busy / 1e3,
                                  r["kernel_count"].to_numpy(), (gs - t0) / 1e3])
        out.append(go.Bar(
            orientation="h", base=(r["start_ns"].to_numpy() - t0) / 1e3, x=r["duration_ns"].to_numpy() / 1e3,
            y=row, customdata=custom, name="NVTX ranges", legendgroup=legend_group + "nvtx",
            showlegend=show_legend, marker={"color": "rgba(120,120,120,0.35)", "line": {"width": 0.5}},
            hovertemplate="<b>%{customdata[0]}</b><br>CPU %{customdata[1]:,.1f} µs from %{base:,.1f} µs"
                          "<br>GPU busy %{customdata[2]:,.1f} µs, %{customdata[3]} kernels<extra></extra>"))
    rows_gpu: list[str] = []
    if len(k):
        cls = kernel_classes(k["name"]).astype(str).to_numpy(dtype=object)
        top = pd.Series(k["duration_ns"].to_numpy()).groupby(cls).sum().sort_values(ascending=False)
        keep = set(top.index[:_MAX_CLASSES])
        cls = np.where(np.isin(cls, list(keep)), cls, "other")
        row = ("GPU" + k["device"].astype(str) + " · stream " + k["stream"].astype(str)).to_numpy(dtype=object)
        rows_gpu = sorted(set(row))
        s = (k["start_ns"].to_numpy() - t0) / 1e3
        e = (k["end_ns"].to_numpy() - t0) / 1e3
        d = k["duration_ns"].to_numpy() / 1e3
        names = k["short_name"].astype(str).to_numpy(dtype=object)
        order = list(top.index[:_MAX_CLASSES]) + (["other"] if "other" in set(cls) else [])
        for i, c in enumerate(order):
            m = cls == c
            n = int(m.sum())
            xs = np.column_stack([s[m], e[m], np.full(n, np.nan)]).ravel()
            ys = np.column_stack([row[m], row[m], np.full(n, None, dtype=object)]).ravel()
            cd = np.repeat(np.column_stack([names[m], d[m], s[m]]), 3, axis=0)
            out.append(go.Scattergl(
                x=xs, y=ys, mode="lines", line={"width": 12, "color": _PALETTE[i % len(_PALETTE)]},
                name=str(c), legendgroup=legend_group + str(c), showlegend=show_legend, customdata=cd,
                connectgaps=False,
                hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]:,.2f} µs at %{customdata[2]:,.1f} µs"
                              "<extra>" + str(c) + "</extra>"))
    return out, rows_nvtx + rows_gpu, note


def timeline(trace: Trace, window_ns: tuple[int, int] | None = None, max_kernels: int = 20_000,
             *, title: str | None = None) -> go.Figure:
    """Timeline of one trace: NVTX ranges per thread and depth (bars) above kernels per device and
    stream (segments coloured by kernel class), x in µs from the first kernel.

    ``window_ns``: (start, end) in ns relative to the first kernel; default: from the first kernel,
    at most ``max_kernels`` kernels (the title then says how many of how many are shown).
    """
    traces_, rows, note = _timeline_traces(trace, window_ns, max_kernels)
    fig = go.Figure(traces_)
    head = title or f"Timeline · {trace.name}"
    fig.update_layout(
        title=head + (f" <span style='font-size:12px'>({note})</span>" if note else ""),
        barmode="overlay", xaxis_title="time from first kernel (µs)", height=max(320, 60 + 28 * len(rows)),
        yaxis={"categoryorder": "array", "categoryarray": rows[::-1], "type": "category"},
        legend={"orientation": "h", "y": -0.25}, margin={"b": 120})
    return add_provenance(fig, trace.provenance())


def side_by_side(trace_a: Trace, trace_b: Trace, labels: Sequence[str] = ("flashinfer", "triton"),
                 window_ns: tuple[int, int] | None = None, max_kernels: int = 20_000) -> go.Figure:
    """Two timelines in stacked subplots on one shared x axis (µs from each trace's first kernel)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[str(x) for x in labels])
    notes = []
    heights = 0
    for i, (t, lab) in enumerate(zip((trace_a, trace_b), labels), start=1):
        trs, rows, note = _timeline_traces(t, window_ns, max_kernels, legend_group=f"{lab}:",
                                           show_legend=(i == 1))
        for tr in trs:
            fig.add_trace(tr, row=i, col=1)
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=rows[::-1], row=i, col=1)
        if note:
            notes.append(f"{lab}: {note}")
        heights += max(160, 28 * len(rows))
    fig.update_xaxes(title_text="time from first kernel (µs)", row=2, col=1)
    fig.update_layout(title=f"{labels[0]} vs {labels[1]}" + (f" <span style='font-size:12px'>({'; '.join(notes)})</span>"
                                                             if notes else ""),
                      barmode="overlay", height=max(480, heights + 200), legend={"orientation": "h", "y": -0.2},
                      margin={"b": 140})
    return add_provenance(fig, f"{labels[0]}: {trace_a.provenance()} | {labels[1]}: {trace_b.provenance()}")


def range_breakdown_figure(df: pd.DataFrame, *, top: int = 20, provenance: str | None = None,
                           title: str = "NVTX ranges: GPU busy vs CPU time") -> go.Figure:
    """Grouped horizontal bars of :func:`gdnlab.traces.range_breakdown` output: total GPU busy time and
    total CPU time per range (ms), the ``top`` ranges by GPU busy time. Provenance comes from
    ``df.attrs["provenance"]`` unless given."""
    d = df.nlargest(top, "gpu_busy_total_ns") if len(df) > top else df
    d = d.iloc[::-1]
    y = d["range"].astype(str)
    fig = go.Figure([
        go.Bar(orientation="h", y=y, x=d["gpu_busy_total_ns"] / 1e6, name="GPU busy (ms)",
               customdata=np.column_stack([d["count"], d["kernels_per_range"], d["share_pct"]]),
               hovertemplate="%{y}: %{x:,.3f} ms GPU busy<br>%{customdata[0]} ranges, "
                             "%{customdata[1]:.1f} kernels each, %{customdata[2]:.1f}% of GPU busy<extra></extra>"),
        go.Bar(orientation="h", y=y, x=d["cpu_total_ns"] / 1e6, name="CPU (ms)",
               hovertemplate="%{y}: %{x:,.3f} ms on the CPU<extra></extra>"),
    ])
    fig.update_layout(title=title, barmode="group", xaxis_title="total time (ms)",
                      height=max(320, 80 + 40 * len(d)), margin={"b": 100})
    return add_provenance(fig, _provenance_of(df, provenance))


def compare_figure(df: pd.DataFrame, *, kind: str = "kernel_class", metric: str = "mean_ns",
                   provenance: str | None = None) -> go.Figure:
    """Grouped bars of one metric from :func:`gdnlab.traces.compare` output, one bar per trace label,
    for every key of ``kind`` (µs for ``*_ns`` metrics)."""
    d = df[(df["kind"] == kind) & (df["metric"] == metric)]
    labels = [c for c in df.columns if c not in ("kind", "key", "metric", "delta", "ratio")]
    scale, unit = (1e3, "µs") if metric.endswith("_ns") else (1.0, "")
    fig = go.Figure([go.Bar(x=d["key"], y=d[lab] / scale, name=str(lab),
                            customdata=d["ratio"], hovertemplate="%{x}: %{y:,.2f} " + unit +
                            "<br>ratio b/a %{customdata:.2f}<extra>" + str(lab) + "</extra>") for lab in labels])
    fig.update_layout(title=f"{metric} per {kind}: {' vs '.join(map(str, labels))}", barmode="group",
                      yaxis_title=f"{metric} ({unit})" if unit else metric, margin={"b": 100})
    return add_provenance(fig, _provenance_of(df, provenance))
