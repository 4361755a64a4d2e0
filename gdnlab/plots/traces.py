"""Plotly views of Nsight / Kineto traces: timelines, range breakdowns, two traces side by side.

Every figure carries a provenance footnote (``add_provenance``): its status from the trace's own
metadata (``measured`` only for a gdnlab capture on a named GPU, ``synthetic`` otherwise; see
:func:`gdnlab.plots.provenance.trace_status`), GPU and SM, the file name and the nsys version.

Kernel classes have one colour each in every panel and on every page (:func:`gdnlab.plots.style.class_colors`);
in a side-by-side figure a class has one legend entry that toggles it in both panels. Legends sit right
of the plot, clear of axes and footnotes.

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

from gdnlab.errors import InputError
from gdnlab.plots.layout import legend_right
from gdnlab.plots.provenance import add_provenance, trace_provenance_text
from gdnlab.plots.style import axis_title, class_colors
from gdnlab.traces.names import kernel_classes

if TYPE_CHECKING:  # pragma: no cover
    from gdnlab.traces import Trace

__all__ = ["timeline_figure", "range_breakdown_figure", "side_by_side_figure", "compare_figure",
           "kernel_class_order"]

_MAX_CLASSES = 8
#: the two bars of a range breakdown: GPU busy time in the GDN kernel's blue, CPU time grey
BUSY_COLORS = {"GPU busy": "#1f77b4", "CPU": "#7f7f7f"}
_TIME_AXIS = axis_title("time from first kernel", "µs")
#: words for the metrics of :func:`gdnlab.traces.compare` (unit added from the ``_ns`` suffix)
_METRIC_WORDS = {"mean_ns": "mean kernel time", "median_ns": "median kernel time", "total_ns": "total kernel time",
                 "min_ns": "shortest kernel", "max_ns": "longest kernel", "count": "kernels",
                 "share_pct": "share of GPU time", "gpu_busy_mean_ns": "mean GPU busy time per range",
                 "gpu_busy_total_ns": "total GPU busy time", "cpu_mean_ns": "mean CPU time per range",
                 "kernels_per_range": "kernels per range"}


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


def kernel_class_order(*traces_: Trace, window_ns: tuple[int, int] | None = None, max_kernels: int = 20_000,
                       top: int = _MAX_CLASSES) -> list[str]:
    """The kernel classes a timeline of these traces draws, by total GPU time in the drawn windows
    (largest first): the ``top`` largest, then ``"other"`` for the rest when there is a rest."""
    totals: dict[str, float] = {}
    for t in traces_:
        *_, k, _note = _window(t, window_ns, max_kernels)
        if len(k):
            cls = kernel_classes(k["name"]).astype(str)
            for c, v in pd.Series(k["duration_ns"].to_numpy()).groupby(cls.to_numpy()).sum().items():
                totals[str(c)] = totals.get(str(c), 0.0) + float(v)
    order = sorted(totals, key=lambda c: (-totals[c], c))
    return order[:top] + (["other"] if len(order) > top else [])


def _check_max_kernels(max_kernels: int) -> None:
    if isinstance(max_kernels, bool) or not isinstance(max_kernels, (int, np.integer)) or max_kernels < 1:
        raise InputError(f"max_kernels must be an integer >= 1 (kernels drawn per timeline), got {max_kernels!r}")


def _timeline_traces(trace: Trace, window_ns: tuple[int, int] | None, max_kernels: int, classes: Sequence[str],
                     *, shown: set[str]) -> tuple[list, list[str], str]:
    """Plotly traces for one timeline, the row names (top to bottom) and the windowing note.

    Rows are numbered 0, 1, … from the top (a numeric y axis, labelled by :func:`_row_axis`): numbers
    and times are stored as float32 arrays, which keeps a page with 10^4 kernels small.
    ``classes``: the kernel classes drawn (others count as ``"other"``); each gets its colour from
    :func:`~gdnlab.plots.style.class_colors`. ``shown``: legend entries already shown (updated), so a
    class has one legend entry across panels; its ``legendgroup`` is the class name.
    """
    t0, lo, hi, k, note = _window(trace, window_ns, max_kernels)
    colors = class_colors(classes)
    r = trace.gpu_ranges
    if len(r):
        r = r[(r["end_ns"] > t0 + lo) & (r["start_ns"] < t0 + hi)]
        if len(r) > max_kernels:
            r = r.nsmallest(max_kernels, "start_ns")
            note = f"{note}; first {max_kernels:,} ranges" if note else f"first {max_kernels:,} ranges"
    row_nvtx = ("NVTX " + r["tid"].astype(str) + " · d" + r["depth"].astype(str)).to_numpy(dtype=object) \
        if len(r) else np.array([], dtype=object)
    row_gpu = ("GPU" + k["device"].astype(str) + " · stream " + k["stream"].astype(str)).to_numpy(dtype=object) \
        if len(k) else np.array([], dtype=object)
    rows = sorted(set(row_nvtx), key=lambda s: (s.split(" · d")[0], int(s.split(" · d")[1]))) + sorted(set(row_gpu))
    pos = {name: float(i) for i, name in enumerate(rows)}
    f4 = np.float32
    out: list = []
    if len(r):
        busy = r["gpu_busy_ns"].to_numpy(dtype=float)
        custom = np.column_stack([r["duration_ns"].to_numpy() / 1e3, busy / 1e3,
                                  r["kernel_count"].to_numpy()]).astype(f4)
        out.append(go.Bar(
            orientation="h", base=((r["start_ns"].to_numpy() - t0) / 1e3).astype(f4),
            x=(r["duration_ns"].to_numpy() / 1e3).astype(f4), y=np.array([pos[x] for x in row_nvtx], dtype=f4),
            width=0.8, text=r["text"].astype(str).to_numpy(dtype=object), textposition="none", customdata=custom,
            name="NVTX ranges", legendgroup="nvtx", showlegend="nvtx" not in shown,
            marker={"color": "rgba(120,120,120,0.35)", "line": {"width": 0.5}},
            hovertemplate="<b>%{text}</b><br>CPU %{customdata[0]:,.1f} µs from %{base:,.1f} µs"
                          "<br>GPU busy %{customdata[1]:,.1f} µs, %{customdata[2]} kernels<extra></extra>"))
        shown.add("nvtx")
    if len(k):
        cls = kernel_classes(k["name"]).astype(str).to_numpy(dtype=object)
        cls = np.where(np.isin(cls, [c for c in classes if c != "other"]), cls, "other")
        ypos = np.array([pos[x] for x in row_gpu], dtype=float)
        s = (k["start_ns"].to_numpy() - t0) / 1e3
        e = (k["end_ns"].to_numpy() - t0) / 1e3
        d = k["duration_ns"].to_numpy() / 1e3
        names = k["short_name"].astype(str).to_numpy(dtype=object)
        for c in classes:
            m = cls == c
            n = int(m.sum())
            if not n:
                continue
            gap = np.full(n, np.nan)
            xs = np.column_stack([s[m], e[m], gap]).ravel().astype(f4)
            ys = np.column_stack([ypos[m], ypos[m], gap]).ravel().astype(f4)
            cd = np.repeat(d[m], 3).astype(f4)
            distinct = set(names[m])
            # one kernel name in the class: name it in the template, not once per point (smaller pages)
            label = next(iter(distinct)).replace("<", "&lt;") if len(distinct) == 1 else "%{text}"
            out.append(go.Scattergl(
                x=xs, y=ys, mode="lines", line={"width": 12, "color": colors[c]}, name=str(c), legendgroup=str(c),
                showlegend=str(c) not in shown, customdata=cd, connectgaps=False,
                text=None if len(distinct) == 1 else np.repeat(names[m], 3),
                hovertemplate="<b>" + label + "</b><br>%{customdata:,.2f} µs, at %{x:,.1f} µs<extra>" + str(c)
                              + "</extra>"))
            shown.add(str(c))
    return out, rows, note


def _legend_height(traces_) -> int:
    """Figure height (px) at which a right-hand legend of these traces' entries fits without scrolling."""
    entries = sum(1 for t in traces_ if t.showlegend is not False)
    return 240 + 24 * entries


def _row_axis(rows: Sequence[str]) -> dict:
    """A y axis that names the timeline rows (numbered from the top) instead of numbers."""
    return {"tickmode": "array", "tickvals": list(range(len(rows))), "ticktext": list(rows),
            "range": [len(rows) - 0.5, -0.5], "zeroline": False, "showgrid": False}


def timeline_figure(trace: Trace, window_ns: tuple[int, int] | None = None, max_kernels: int = 20_000,
                    *, title: str | None = None) -> go.Figure:
    """Timeline of one trace: NVTX ranges per thread and depth (bars) above kernels per device and
    stream (segments coloured by kernel class), x in µs from the first kernel.

    ``window_ns``: (start, end) in ns relative to the first kernel; default: from the first kernel,
    at most ``max_kernels`` kernels (the title then says how many of how many are shown).
    """
    _check_max_kernels(max_kernels)
    classes = kernel_class_order(trace, window_ns=window_ns, max_kernels=max_kernels)
    traces_, rows, note = _timeline_traces(trace, window_ns, max_kernels, classes, shown=set())
    fig = go.Figure(traces_)
    head = title or f"Timeline · {trace.name}"
    fig.update_layout(
        title=head + (f" <span style='font-size:12px'>({note})</span>" if note else ""),
        barmode="overlay", xaxis_title=_TIME_AXIS, yaxis=_row_axis(rows),
        height=max(360, 120 + 28 * len(rows), _legend_height(traces_)))
    legend_right(fig, title="kernel class")
    return add_provenance(fig, trace_provenance_text(trace))


def side_by_side_figure(trace_a: Trace, trace_b: Trace, labels: Sequence[str] = ("flashinfer", "triton"),
                        window_ns: tuple[int, int] | None = None, max_kernels: int = 20_000) -> go.Figure:
    """Two timelines in stacked subplots on one shared x axis (µs from each trace's first kernel).

    Both panels draw the same kernel classes (the largest over both traces) in the same colours; the
    legend has one entry per class, which toggles it in both panels."""
    _check_max_kernels(max_kernels)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[str(x) for x in labels])
    classes = kernel_class_order(trace_a, trace_b, window_ns=window_ns, max_kernels=max_kernels)
    shown: set[str] = set()
    notes = []
    heights = 0
    for i, (t, lab) in enumerate(zip((trace_a, trace_b), labels), start=1):
        trs, rows, note = _timeline_traces(t, window_ns, max_kernels, classes, shown=shown)
        for tr in trs:
            fig.add_trace(tr, row=i, col=1)
        fig.update_yaxes(**_row_axis(rows), row=i, col=1)
        if note:
            notes.append(f"{lab}: {note}")
        heights += max(160, 28 * len(rows))
    fig.update_xaxes(title_text=_TIME_AXIS, row=2, col=1)
    small = f" <span style='font-size:12px'>({'; '.join(notes)})</span>" if notes else ""
    fig.update_layout(title=f"{labels[0]} vs {labels[1]}{small}",
                      barmode="overlay", height=max(520, heights + 220, _legend_height(fig.data)))
    legend_right(fig, title="kernel class")
    return add_provenance(fig, f"{labels[0]}: {trace_provenance_text(trace_a)} | "
                               f"{labels[1]}: {trace_provenance_text(trace_b)}")


def range_breakdown_figure(df: pd.DataFrame, *, top: int = 20, provenance: str | None = None,
                           title: str = "NVTX ranges: GPU busy vs CPU time") -> go.Figure:
    """Grouped horizontal bars of :func:`gdnlab.traces.range_breakdown` output: total GPU busy time and
    total CPU time per range (ms), the ``top`` ranges by GPU busy time. Provenance comes from
    ``df.attrs["provenance"]`` unless given."""
    d = df.nlargest(top, "gpu_busy_total_ns") if len(df) > top else df
    d = d.iloc[::-1]
    y = d["range"].astype(str)
    fig = go.Figure([
        go.Bar(orientation="h", y=y, x=d["gpu_busy_total_ns"] / 1e6, name="GPU busy",
               marker={"color": BUSY_COLORS["GPU busy"]},
               customdata=np.column_stack([d["count"], d["kernels_per_range"], d["share_pct"]]),
               hovertemplate="%{y}: %{x:,.3f} ms GPU busy<br>%{customdata[0]} ranges, "
                             "%{customdata[1]:.1f} kernels each, %{customdata[2]:.1f}% of GPU busy<extra></extra>"),
        go.Bar(orientation="h", y=y, x=d["cpu_total_ns"] / 1e6, name="CPU", marker={"color": BUSY_COLORS["CPU"]},
               hovertemplate="%{y}: %{x:,.3f} ms on the CPU<extra></extra>"),
    ])
    fig.update_layout(title=title, barmode="group", xaxis_title=axis_title("total time", "ms"),
                      height=max(360, 120 + 40 * len(d)))
    legend_right(fig)
    return add_provenance(fig, _provenance_of(df, provenance))


def compare_figure(df: pd.DataFrame, *, kind: str = "kernel_class", metric: str = "mean_ns",
                   provenance: str | None = None) -> go.Figure:
    """Grouped horizontal bars of one metric from :func:`gdnlab.traces.compare` output, one bar per trace
    label, for every key of ``kind`` (µs for ``*_ns`` metrics; the axis title names the quantity and unit).
    Keys are on the y axis, so long kernel names never run into the axis title or the footnote."""
    from gdnlab.plots.style import backend_color, distinct_colors

    d = df[(df["kind"] == kind) & (df["metric"] == metric)].iloc[::-1]
    labels = [c for c in df.columns if c not in ("kind", "key", "metric", "delta", "ratio")]
    colours = distinct_colors(map(str, labels), backend_color)
    scale, unit = (1e3, "µs") if metric.endswith("_ns") else (1.0, "%" if metric.endswith("_pct") else None)
    words = _METRIC_WORDS.get(metric, metric.removesuffix("_ns").replace("_", " "))
    fig = go.Figure([go.Bar(y=d["key"].astype(str), x=d[lab] / scale, orientation="h", name=str(lab),
                            marker={"color": colours[str(lab)]}, customdata=d["ratio"],
                            hovertemplate="%{y}: %{x:,.2f} " + (unit or "") +
                            "<br>ratio b/a %{customdata:.2f}<extra>" + str(lab) + "</extra>") for lab in labels])
    per = f" per {kind.replace('_', ' ')}"
    fig.update_layout(title=f"{words}{'' if words.endswith(per) else per}: {' vs '.join(map(str, labels))}",
                      barmode="group", xaxis_title=axis_title(words, unit), yaxis={"automargin": True},
                      height=max(360, 160 + 22 * len(labels) * len(d)))
    legend_right(fig, title="trace")
    return add_provenance(fig, _provenance_of(df, provenance))
