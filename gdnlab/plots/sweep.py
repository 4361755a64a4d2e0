"""Figures of a kernel sweep (:func:`gdnlab.results.load_sweep`): kernel time and bandwidth vs batch
size B, the cost of a pool-scoped intermediate buffer, and an overlay of the seed's reported numbers.

The figures receive sweep rows and draw them; they fit nothing and run nothing. Colours come from
:mod:`gdnlab.plots.style` (one colour per backend on every page), legends sit right of the plot, axis
titles carry their unit, and the y-axis title says how the time was taken (``kernel time (amortised over
16 calls in one graph) (µs)`` when the rows were timed that way). Every figure carries a provenance
footnote built from the rows' own provenance columns (:func:`sweep_provenance_text`); its status is
``measured`` only when the rows say gdnlab made them (:func:`gdnlab.plots.provenance.frame_status`).
plotly is imported inside the functions (it is not on the GPU machine).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..provenance import IDENTITY_COLUMNS, label
from ..results import SCOPE_OF_CALL_STRATEGY, require_columns
from .layout import legend_right
from .provenance import add_provenance, frame_status
from .style import (
    KEY_COLOR,
    STATE_DTYPE_DASH,
    axis_title,
    backend_color,
    decade_log_axis,
    decade_ticks,
    log_ticks,
    measured_log_axis,
)

__all__ = ["sweep_provenance_text", "time_vs_batch_figure", "bandwidth_figure", "intermediate_cost_figure",
           "seed_overlay_figure", "mode_label", "timing_label", "TIMING_PREFERENCE"]

_PROV_COLS = (*IDENTITY_COLUMNS, "git_dirty")
#: timing methods, best first: the one figure that shows a single method picks the first present
TIMING_PREFERENCE = ("amortised", "graph", "single", "eager")
_TIMING_DASH = {"amortised": "solid", "graph": "solid", "single": "solid", "eager": "dot"}
_T_DASH = {2: "dot", 4: "dash", 8: "solid"}
_T_SYMBOL = {2: "circle", 4: "square", 8: "diamond"}
_OTHER_DASHES = ("dashdot", "longdash", "longdashdot")
_BATCH_AXIS = axis_title("batch B", "requests")


def _labels_for(panels: int) -> int:
    """How many B tick labels a panel of a row of ``panels`` has room for (narrow panels: fewer)."""
    return 5 if panels >= 3 else 10


def mode_label(df: pd.DataFrame) -> pd.Series:
    """``"decode"`` or ``"verify T=4"`` per row."""
    return df.apply(lambda r: "decode" if r["mode"] == "decode" else f"verify T={int(r['draft_tokens'])}", axis=1)


def timing_label(method: str, calls_per_sample: Any = None) -> str:
    """How a time was taken, in words: ``"amortised over 16 calls in one graph"``, ``"one call per
    CUDA-graph replay"``, ``"eager launches"``; any other method is named as it is."""
    method = str(method)
    if method == "amortised":
        n = None if calls_per_sample is None or pd.isna(calls_per_sample) else int(calls_per_sample)
        return f"amortised over {n} calls in one graph" if n else "amortised over several calls in one graph"
    return {"graph": "one call per CUDA-graph replay", "single": "one call per CUDA-graph replay",
            "eager": "eager launches"}.get(method, method)


def _time_axis(d: pd.DataFrame) -> str:
    """``kernel time (amortised over 16 calls in one graph) (µs)`` when all rows share one method
    (and, when amortised, one call count); ``kernel time per call (µs)`` otherwise (the legend names
    the methods)."""
    methods = d["timing_method"].dropna().astype(str).unique() if "timing_method" in d else []
    if len(methods) == 1:
        calls = d["calls_per_sample"].dropna().unique() if "calls_per_sample" in d else []
        if methods[0] != "amortised" or len(calls) <= 1:
            return axis_title(f"kernel time ({timing_label(methods[0], calls[0] if len(calls) else None)})", "µs")
    return axis_title("kernel time per call", "µs")


def _check(df: pd.DataFrame, need: tuple[str, ...]) -> None:
    require_columns(df, need)


def _with_scope(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a ``buffer_scope`` column (:func:`gdnlab.results.load_sweep` gives one; for a frame
    read otherwise, an earlier file's ``intermediate`` column or its call rows' ``strategy``)."""
    if "buffer_scope" in df.columns:
        return df
    if "intermediate" in df.columns:
        return df.assign(buffer_scope=df["intermediate"])
    return df.assign(buffer_scope=df["strategy"].map(lambda s: SCOPE_OF_CALL_STRATEGY.get(str(s), str(s))))


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    out = df[df["status"] == "ok"].copy()
    if out.empty:
        raise ValueError("no rows with status 'ok' to plot")
    out["mode_label"] = mode_label(out)
    if "timing_method" not in out:
        out["timing_method"] = "unknown"
    out["timing_method"] = out["timing_method"].astype("object").where(out["timing_method"].notna(), "unknown")
    return out


def _one_method(d: pd.DataFrame, timing: str | None) -> pd.DataFrame:
    """Rows of one timing method: ``timing``, or the best present (:data:`TIMING_PREFERENCE`)."""
    present = list(d["timing_method"].astype(str).unique())
    pick = timing or next((m for m in TIMING_PREFERENCE if m in present), sorted(present)[0])
    out = d[d["timing_method"].astype(str) == pick]
    if out.empty:
        raise ValueError(f"no ok rows timed with {pick!r}; present: {sorted(present)}")
    return out


def _modes(d: pd.DataFrame) -> list[str]:
    return sorted(d["mode_label"].unique(), key=lambda s: (s != "decode", len(s), s))


def sweep_provenance_text(df: pd.DataFrame, status: str | None = None) -> str:
    """Provenance label from the rows: status (from the rows, :func:`frame_status`, unless given), the
    most frequent GPU's versions and commit, the shapes, dtypes and timing methods present.

    Rows from more than one GPU or software stack are named (``"+ 1 other GPU"``) rather than hidden.
    """
    _check(df, ("gpu",))
    if df.empty:
        raise ValueError("no rows: nothing to take provenance from")
    status = status or frame_status(df) or "synthetic"
    gpu = df["gpu"].mode().iloc[0]
    sub = df[df["gpu"] == gpu]
    prov = {c: (sub[c].dropna().mode().iloc[0] if c in sub and sub[c].notna().any() else None) for c in _PROV_COLS}
    shapes = ", ".join(sorted({f"{r.shape}: H={r.H} HV={r.HV} K={r.K} V={r.V}"
                               for r in df[["shape", "H", "HV", "K", "V"]].drop_duplicates().itertuples()}))
    dtypes = "state " + "/".join(sorted(df["state_dtype"].dropna().unique())) + \
        ", act " + "/".join(sorted(df["act_dtype"].dropna().unique()))
    extra: dict[str, Any] = {"shape": shapes, "dtypes": dtypes}
    timing = sorted(df["timing_method"].dropna().astype(str).unique()) if "timing_method" in df else []
    if timing:
        gpu_timed = set(timing) & {"graph", "single", "amortised", "eager"}
        flushed = "l2_flush" in df and bool(df["l2_flush"].fillna(False).all())
        extra["timing"] = "/".join(timing) + (" (L2 flushed)" if gpu_timed and flushed else "")
    n_other = df["gpu"].nunique() - 1
    if n_other:
        extra["mixed"] = f"+ {n_other} other GPU(s)"
    ts = df["timestamp"].dropna() if "timestamp" in df else pd.Series(dtype=str)
    if len(ts):
        extra["date"] = str(ts.min())[:10]
    return label(prov, status, **extra)


def _err(d: pd.DataFrame) -> dict:
    if "time_p90_us" not in d or "time_p10_us" not in d:
        return {}
    return {"error_y": {"type": "data", "array": (d["time_p90_us"] - d["time_us"]).clip(lower=0).to_numpy(),
                        "arrayminus": (d["time_us"] - d["time_p10_us"]).clip(lower=0).to_numpy(),
                        "thickness": 1, "width": 2}}


def time_vs_batch_figure(df: pd.DataFrame, *, buffer_scope: str = "batch", timing: str | None = None,
                         modes: Sequence[str] | None = None, state_dtypes: Sequence[str] | None = None):
    """Median kernel time per call (µs, p10-p90 error bars) vs batch B: a panel per mode (columns) and
    state dtype (rows), one colour per backend and one line style per timing method; log-log axes.

    ``buffer_scope``: which verify buffer rows to show (``"batch"``, the fixed path, by default);
    ``timing``: one timing method only (default: every method present); ``modes`` (``"decode"``,
    ``"verify T=4"``) and ``state_dtypes``: the panels to draw (default: all present).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(df, ("status", "batch", "time_us", "backend", "mode", "draft_tokens", "state_dtype"))
    d = _ok(_with_scope(df))
    d = d[(d["mode"] == "decode") | (d["buffer_scope"] == buffer_scope)]
    if timing is not None:
        d = d[d["timing_method"] == timing]
    if modes is not None:
        d = d[d["mode_label"].isin(list(modes))]
    if state_dtypes is not None:
        d = d[d["state_dtype"].isin(list(state_dtypes))]
    if d.empty:
        raise ValueError(f"no ok rows for buffer_scope={buffer_scope!r}, timing={timing!r}, modes={modes!r}, "
                         f"state_dtypes={state_dtypes!r}")
    modes, dtypes = _modes(d), sorted(d["state_dtype"].unique())
    methods = sorted(d["timing_method"].astype(str).unique(),
                     key=lambda m: TIMING_PREFERENCE.index(m) if m in TIMING_PREFERENCE else len(TIMING_PREFERENCE))
    dash = {m: _TIMING_DASH.get(m, _OTHER_DASHES[i % len(_OTHER_DASHES)]) for i, m in enumerate(methods)}
    fig = make_subplots(rows=len(dtypes), cols=len(modes), shared_xaxes=True, shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.08,
                        subplot_titles=[f"{m} · state {sd}" for sd in dtypes for m in modes])
    seen: set[str] = set()
    for (be, method), g in d.sort_values("batch").groupby(["backend", "timing_method"], sort=True):
        name = f"{be} · {method}" if len(methods) > 1 else str(be)
        for i, sd in enumerate(dtypes, start=1):
            for j, ml in enumerate(modes, start=1):
                p = g[(g["state_dtype"] == sd) & (g["mode_label"] == ml)]
                if p.empty:
                    continue
                fig.add_trace(go.Scatter(
                    x=p["batch"], y=p["time_us"], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=name not in seen, line={"color": backend_color(be), "dash": dash[method]},
                    marker={"color": backend_color(be), "size": 6}, **_err(p),
                    customdata=p[["kernel"]].astype(str).to_numpy() if "kernel" in p else None,
                    hovertemplate="B=%{x}: %{y:,.2f} µs<br>%{customdata[0]}<extra>" + name + "</extra>"),
                    row=i, col=j)
                seen.add(name)
    measured_log_axis(fig, d["batch"], max_labels=_labels_for(len(modes)))
    ys = pd.concat([d["time_us"], d["time_p10_us"] if "time_p10_us" in d else d["time_us"],
                    d["time_p90_us"] if "time_p90_us" in d else d["time_us"]])
    decade_log_axis(fig, ys)
    fig.update_xaxes(title_text=_BATCH_AXIS, row=len(dtypes))
    fig.update_yaxes(title_text=_time_axis(d), col=1)
    fig.update_layout(title="GDN kernel time vs batch (median, p10-p90)", height=260 + 260 * len(dtypes),
                      template="plotly_white")
    legend_right(fig, title="backend · timing" if len(methods) > 1 else "backend")
    add_provenance(fig, sweep_provenance_text(d))
    return fig


def bandwidth_figure(df: pd.DataFrame, *, buffer_scope: str = "batch", timing: str | None = None):
    """Roofline view: achieved bandwidth (GB/s, top row) and % of the GPU's datasheet peak (bottom row)
    vs batch B, a column per mode (decode, verify T=…); one colour per backend, one line style per state
    dtype, so the legend has one entry per backend x state dtype. One timing method (``timing``, default
    the best present, :data:`TIMING_PREFERENCE`), named in the y-axis title."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(df, ("status", "batch", "bw_gbps", "pct_of_peak_bw", "backend", "mode", "draft_tokens", "state_dtype"))
    d = _ok(_with_scope(df))
    d = d[(d["mode"] == "decode") | (d["buffer_scope"] == buffer_scope)].sort_values("batch")
    d = _one_method(d, timing)
    modes = _modes(d)
    fig = make_subplots(rows=2, cols=len(modes), shared_xaxes=True, shared_yaxes="rows", horizontal_spacing=0.03,
                        vertical_spacing=0.08, subplot_titles=modes + [""] * len(modes))
    seen: set[str] = set()
    for (be, sd), g in d.groupby(["backend", "state_dtype"], sort=True):
        name = f"{be} · {sd}"
        for j, ml in enumerate(modes, start=1):
            p = g[g["mode_label"] == ml]
            if p.empty:
                continue
            common = dict(x=p["batch"], mode="lines+markers", name=name, legendgroup=name,
                          line={"color": backend_color(be), "dash": STATE_DTYPE_DASH.get(sd, "dot")},
                          marker={"color": backend_color(be), "size": 5})
            fig.add_trace(go.Scatter(y=p["bw_gbps"], showlegend=name not in seen,
                                     hovertemplate="B=%{x}: %{y:,.0f} GB/s<extra>" + name + "</extra>", **common),
                          row=1, col=j)
            fig.add_trace(go.Scatter(y=p["pct_of_peak_bw"], showlegend=False,
                                     hovertemplate="B=%{x}: %{y:,.1f}% of peak<extra>" + name + "</extra>",
                                     **common), row=2, col=j)
            seen.add(name)
    peak = d["peak_bw_gbps"].dropna() if "peak_bw_gbps" in d else pd.Series(dtype=float)
    peak_note = ""
    if len(peak):
        p = float(peak.mode().iloc[0])
        for j in range(1, len(modes) + 1):
            fig.add_hline(y=p, line={"color": "black", "dash": "dot", "width": 1}, row=1, col=j)
            fig.add_hline(y=100, line={"color": "black", "dash": "dot", "width": 1}, row=2, col=j)
        gpu = d["gpu"].mode().iloc[0]
        peak_note = f"<br><span style='font-size:12px'>dotted: {gpu} datasheet peak {p:,.0f} GB/s</span>"
    measured_log_axis(fig, d["batch"], max_labels=_labels_for(len(modes)))
    fig.update_xaxes(title_text=_BATCH_AXIS, row=2)
    method = str(d["timing_method"].iloc[0])
    fig.update_yaxes(title_text=axis_title("achieved bandwidth", "GB/s"), row=1, col=1)
    fig.update_yaxes(title_text=axis_title("share of peak HBM bandwidth", "%"), row=2, col=1)
    calls = d["calls_per_sample"].dropna() if "calls_per_sample" in d else pd.Series(dtype=float)
    fig.update_layout(title="GDN kernels: memory roofline view (bytes from gdnlab.roofline.gdn_bytes / median "
                            f"time; {timing_label(method, calls.iloc[0] if len(calls) else None)})" + peak_note,
                      height=660, margin={"t": 110}, template="plotly_white")
    legend_right(fig, title="backend · state dtype")
    add_provenance(fig, sweep_provenance_text(d))
    return fig


def intermediate_cost_figure(df: pd.DataFrame, *, timing: str | None = None):
    """Pool-scoped vs batch-scoped verify buffer: time ratio ``pool / batch`` (1 = no cost) vs batch B, a
    panel per state dtype; colour per backend and line style + marker per T, so no two series share a
    style. Points the backend rejected (FlashInfer's bf16 MTP asserts ``dim0 == B``) have no time, so no
    ratio: a cross in the backend's colour marks their B on the panel's bottom edge (not a value on the
    y axis), named in its hover text. One timing method (``timing``, default the best present)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(df, ("status", "batch", "time_us", "backend", "mode", "draft_tokens", "state_dtype"))
    v = _with_scope(df)
    v = v[v["mode"] == "verify"].copy()
    if "timing_method" not in v:
        v["timing_method"] = "unknown"
    v["timing_method"] = v["timing_method"].astype("object").where(v["timing_method"].notna(), "unknown")
    keys = ["backend", "draft_tokens", "state_dtype", "batch", "timing_method"]
    ok = v[v["status"] == "ok"]
    rejected = v[(v["buffer_scope"] == "pool") & v["status"].astype(str).str.startswith("rejected")]
    if not ok.empty:
        ok = _one_method(ok.assign(mode_label=""), timing)
    drawn = df.loc[df.index.isin(ok.index) | df.index.isin(rejected.index)]
    batch = ok[ok["buffer_scope"] == "batch"].groupby(keys)["time_us"].median()
    pool = ok[ok["buffer_scope"] == "pool"].groupby(keys)["time_us"].median()
    both = pd.DataFrame({"batch_us": batch, "pool_us": pool}).dropna().reset_index()
    if both.empty and rejected.empty:
        raise ValueError("no verify rows with both buffer_scope='batch' and 'pool' (and none rejected)")
    both["ratio"] = both["pool_us"] / both["batch_us"]
    panels = sorted(set(both["state_dtype"]) | set(rejected["state_dtype"]))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"state {sd}" for sd in panels])
    seen: set[str] = set()
    for (be, T), g in both.sort_values("batch").groupby(["backend", "draft_tokens"], sort=True):
        name = f"{be} · T={int(T)}"
        for j, sd in enumerate(panels, start=1):
            p = g[g["state_dtype"] == sd]
            if p.empty:
                continue
            fig.add_trace(go.Scatter(
                x=p["batch"], y=p["ratio"], mode="lines+markers", name=name, legendgroup=name,
                showlegend=name not in seen,
                line={"color": backend_color(be), "dash": _T_DASH.get(int(T), "dashdot")},
                marker={"color": backend_color(be), "symbol": _T_SYMBOL.get(int(T), "x"), "size": 7},
                customdata=p[["batch_us", "pool_us"]].to_numpy(),
                hovertemplate="B=%{x}: ratio %{y:.2f}<br>batch-scoped %{customdata[0]:,.1f} µs, pool-scoped "
                              "%{customdata[1]:,.1f} µs<extra>" + name + "</extra>"), row=1, col=j)
            seen.add(name)
    _rejected_marks(fig, rejected, panels, seen)
    fig.add_hline(y=1.0, line={"color": "gray", "dash": "dot", "width": 1})
    measured_log_axis(fig, pd.concat([both["batch"], rejected["batch"]]))
    fig.update_xaxes(title_text=_BATCH_AXIS)
    fig.update_yaxes(title_text=axis_title("time pool-scoped / batch-scoped", "ratio"), col=1)
    method = str(both["timing_method"].iloc[0]) if len(both) else None
    fig.update_layout(title="Cost of a pool-sized intermediate buffer (SGLang before PR #23273) vs the "
                            "[:batch_size] slice" + (f" · {timing_label(method)}" if method else ""), height=480)
    legend_right(fig, title="backend · draft tokens")
    add_provenance(fig, sweep_provenance_text(drawn))
    return fig


def _rejected_marks(fig, rejected: pd.DataFrame, panels: Sequence[str], seen: set[str]) -> None:
    """A cross per rejected (backend, B) on the bottom edge of its state dtype's panel (``y domain``
    coordinates: no ratio is drawn for a call that did not run), its hover naming the T values and the
    backend's message, and one legend key for them all."""
    import plotly.graph_objects as go

    for j, sd in enumerate(panels, start=1):
        r = rejected[rejected["state_dtype"] == sd]
        yref = "y domain" if j == 1 else f"y{j} domain"
        xref = "x" if j == 1 else f"x{j}"
        for (be, b), g in r.groupby(["backend", "batch"], sort=True):      # one cross per backend and B
            Ts = ", ".join(str(int(t)) for t in sorted(g["draft_tokens"].unique()))
            fig.add_annotation(x=math.log10(float(b)), y=0, xref=xref, yref=yref, text="✕",
                               showarrow=False, yanchor="bottom", yshift=2, name="rejected",
                               font={"size": 15, "color": backend_color(str(be))},
                               hovertext=f"{be} B={int(b)} T={Ts}: rejected, no time: "
                                         f"{str(g['status'].iloc[0])[:160]}")
    if len(rejected) and "rejected" not in seen:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="rejected (pool-sized buffer)",
                                 marker={"symbol": "x-thin-open", "size": 11, "color": KEY_COLOR,
                                         "line": {"width": 2}}, legendgroup="rejected"))
        seen.add("rejected")


def seed_overlay_figure(fig, seed_rows: pd.DataFrame | None, *, y: str = "value", x: str | None = None,
                        unit: str | None = None):
    """Overlay the seed's reported rows (e.g. :func:`gdnlab.seed.tpot_vs_concurrency`) on ``fig``'s
    first panel, on a right-hand log axis (their unit differs: end-to-end TPOT in ms on GB200, not a
    kernel time), dashed grey, one line per backend; the footnote gains a ``reported (seed)`` label.
    ``x``: the seed's column of running requests (default ``batch``, else ``concurrency``).
    ``seed_rows=None`` or empty returns ``fig`` unchanged (so callers can pass it through)."""
    import plotly.graph_objects as go

    if seed_rows is None or len(seed_rows) == 0:
        return fig
    x = x or ("batch" if "batch" in seed_rows.columns else "concurrency")
    missing = [c for c in (x, y, "backend") if c not in seed_rows.columns]
    if missing:
        raise ValueError(f"seed_rows lacks columns {missing} (use gdnlab.seed.tpot_vs_concurrency())")
    rows = seed_rows.dropna(subset=[x, y]).sort_values(x)
    unit = unit or (str(rows["unit"].dropna().iloc[0]) if "unit" in rows and rows["unit"].notna().any() else "")
    metric = str(rows["metric"].dropna().iloc[0]) if "metric" in rows and rows["metric"].notna().any() else y
    used = [int(k[5:] or 1) for k in fig.layout.to_plotly_json() if k.startswith("yaxis")]
    n = max(used + [1]) + 1
    vals = pd.to_numeric(rows[y], errors="coerce")
    tv, tt = decade_ticks(float(vals.min()) / 1.15, float(vals.max()) * 1.15)
    fig.layout[f"yaxis{n}"] = {"overlaying": "y", "side": "right", "type": "log", "showgrid": False,
                               "tickmode": "array", "tickvals": tv, "ticktext": tt, "anchor": "x",
                               "title": {"text": f"seed (reported): {axis_title(metric, unit)}"}}
    xv, xt = log_ticks([*(fig.layout.xaxis.tickvals or ()), *pd.to_numeric(rows[x], errors="coerce")])
    fig.layout.xaxis.update(type="log", tickmode="array", tickvals=xv, ticktext=xt)
    symbols = {"flashinfer": "circle-open", "triton": "square-open"}
    for be, g in rows.groupby("backend", sort=True):
        has_state = "kernel_state" in g and g["kernel_state"].notna().any()
        state = f" · {g['kernel_state'].dropna().iloc[0]}" if has_state else ""
        fig.add_trace(go.Scatter(x=g[x], y=g[y], xaxis="x", yaxis=f"y{n}", mode="lines+markers",
                                 name=f"seed {be}: {metric}{state} (reported)",
                                 line={"dash": "dash", "color": backend_color(str(be))},
                                 marker={"symbol": symbols.get(str(be), "diamond-open"),
                                         "color": backend_color(str(be))}, opacity=0.6))
    gpu = ", ".join(sorted(rows["gpu"].dropna().astype(str).unique())) if "gpu" in rows else None
    src = str(rows["source"].dropna().iloc[0]) if "source" in rows and rows["source"].notna().any() else \
        "SGLang PR #23273"
    seed_text = label({"gpu": gpu}, "reported", source=src, note="end-to-end serving metric, not a kernel time")
    fig.update_layout(legend={"x": 1.14})     # right of the seed's own axis (ticks and title)
    prev = (fig.layout.meta or {}).get("provenance") if isinstance(fig.layout.meta, dict) else None
    fig.layout.annotations = [a for a in fig.layout.annotations if a.name != "provenance"]
    add_provenance(fig, f"{prev} · {seed_text}" if prev else seed_text)
    return fig
