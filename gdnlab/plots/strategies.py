"""Figures of the verify-strategy ledger (:mod:`gdnlab.analysis.ledger`) and of per-strategy traces.

* :func:`step_time_figure`: time per step and per accepted token vs B, a colour per strategy, a
  column per T;
* :func:`strategy_bandwidth_figure`: bytes per step (the formula), measured time over the formula's
  floor, and the verify / commit bandwidth as % of the HBM peak;
* :func:`winners_figure`: which strategy is fastest at each B, and by how much over ``full_cache``;
* :func:`scratch_figure`: scratch and memory GiB of each strategy for the served model (projected);
* :func:`phase_breakdown_figure`, :func:`step_busy_figure`: verify / commit / fold time per step and
  the GPU busy share of each strategy's decode-loop trace.

Figures draw what they receive: the ledger tables come from :mod:`gdnlab.analysis.ledger`.
Colours per strategy come from :func:`gdnlab.plots.style.strategy_color` (the same on every page),
a line style per backend; flagged points (failed check, check not run, eager timing: the ledger's
``flag``) are drawn with a marker per flag, never hidden. Every figure carries a provenance footnote from the
rows' (or traces') own metadata. With nothing to draw, a figure says so in its plot area.
plotly is imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..analysis.ledger import FLAG_EAGER, FLAG_INCORRECT, FLAG_TEXT, FLAG_UNCHECKED, has_flag
from ..provenance import label
from ..strategies.registry import BASELINE, strategy_order
from .layout import legend_right, message_figure
from .provenance import add_provenance
from .style import (
    BACKEND_DASH,
    KEY_COLOR,
    PHASE_COLORS,
    axis_title,
    backend_dash,
    decade_log_axis,
    measured_log_axis,
    phase_color,
    strategy_color,
)

__all__ = ["step_time_figure", "strategy_bandwidth_figure", "winners_figure", "scratch_figure",
           "phase_breakdown_figure", "step_busy_figure", "BACKEND_DASH", "PHASE_COLORS", "FLAG_MARKERS"]

_BATCH_AXIS = axis_title("batch B", "requests")


def _dash(backend: str) -> str:
    return backend_dash(str(backend))


def _check(led: Any, need: Sequence[str]) -> None:
    if not isinstance(led, pd.DataFrame):
        raise ValueError(f"expected a ledger DataFrame (gdnlab.analysis.ledger.strategy_ledger), "
                         f"got {type(led).__name__}")
    missing = [c for c in need if c not in led.columns]
    if missing:
        raise ValueError(f"the ledger lacks the columns {missing} (build it with "
                         f"gdnlab.analysis.ledger.strategy_ledger)")


def _ok(led: pd.DataFrame) -> pd.DataFrame:
    ok = (led["status"].astype("string") == "ok").fillna(False).astype(bool)
    return led[ok & pd.to_numeric(led["step_us"], errors="coerce").notna()]


def _pick_dtype(led: pd.DataFrame, state_dtype: str | None) -> str | None:
    present = list(led["state_dtype"].dropna().astype(str).unique())
    if state_dtype is not None:
        return state_dtype
    return "bfloat16" if "bfloat16" in present else (sorted(present)[0] if present else None)


def _provenance(led: pd.DataFrame) -> str:
    from .sweep import sweep_provenance_text

    try:
        return sweep_provenance_text(led)
    except (ValueError, KeyError):
        return "synthetic · rows without provenance columns"


def _cond(d: pd.DataFrame) -> str:
    a = sorted({float(v) for v in d["accept_len"].dropna()})
    return ", ".join(f"{v:g}" for v in a)


# ------------------------------------------------------------------------------------------ legend keys and flags

#: marker drawn over a point per flag (``gdnlab.analysis.ledger.FLAG_TEXT`` names the legend entry)
FLAG_MARKERS = {FLAG_INCORRECT: {"symbol": "x", "size": 12, "color": "black"},
                FLAG_UNCHECKED: {"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}},
                FLAG_EAGER: {"symbol": "diamond-open", "size": 16, "color": "#8a5a00", "line": {"width": 2}}}


def _legend_keys(fig, strategies: Sequence[str], backends: Sequence[str]) -> None:
    """Legend-only entries: a colour per strategy (clicking one toggles its lines in every panel,
    they share its ``legendgroup``) and a line style per backend."""
    import plotly.graph_objects as go

    for i, s in enumerate(strategies):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=s, legendgroup=s, legendrank=100 + i,
                                 line={"color": strategy_color(s)}))
    for i, be in enumerate(backends):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{be} (line style)", legendrank=200 + i,
                                 legendgroup=f"backend {be}", line={"color": KEY_COLOR, "dash": _dash(be)}))


def _flag_overlays(fig, d: pd.DataFrame, ycol: str, shown: set[str], **where) -> None:
    """A marker per flagged point (failed check, no check, eager timing), one legend entry per flag."""
    import plotly.graph_objects as go

    for flag, marker in FLAG_MARKERS.items():
        bad = d[has_flag(d["flag"], flag)] if "flag" in d.columns and len(d) else d.iloc[:0]
        if bad.empty or ycol not in bad.columns:
            continue
        name = FLAG_TEXT[flag]
        fig.add_trace(go.Scatter(
            x=bad["batch"], y=bad[ycol], mode="markers", name=name, legendgroup=f"flag {flag}",
            showlegend=name not in shown, legendrank=300, marker=marker, text=bad["strategy"] + " · " + bad["backend"],
            hovertemplate=f"%{{text}}: {name}<br>B=%{{x}}<br>%{{y:.4g}}<extra></extra>"), **where)
        shown.add(name)


def _log_y(fig, values, **where) -> None:
    """Log y axes over ``values``, labelled at powers of ten (1-2-5 within one decade), a minor grid at 2..9."""
    decade_log_axis(fig, pd.to_numeric(pd.Series(list(values)), errors="coerce").dropna(), **where)


def _batch_ticks(fig, d: pd.DataFrame) -> None:
    """Log B axes ticked at the measured B (1, 4, 16, ...) instead of plotly's 2-5 minor labels."""
    measured_log_axis(fig, pd.to_numeric(d["batch"], errors="coerce").dropna())


def _keys(d: pd.DataFrame, *cols: str) -> pd.DataFrame:
    k = d[["strategy", "backend", *cols]].drop_duplicates()
    return k.assign(_r=k["strategy"].map(strategy_order)).sort_values(["_r", "backend", *cols]).drop(columns="_r")


# ------------------------------------------------------------------------------------------ step time


def step_time_figure(led: pd.DataFrame, *, state_dtype: str | None = None, title: str | None = None):
    """Median time per step (top) and per accepted token (``step_us / accept_len``, bottom) vs B, a
    column per T, log-log; a colour per strategy, a line style per backend (legend keys for each),
    and a marker over flagged rows: failed check (x), no check (open circle), eager-timed (open
    diamond: not comparable with the graph-timed rows). ``state_dtype``: default bfloat16 when present."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(led, ("strategy", "backend", "batch", "draft_tokens", "accept_len", "state_dtype", "status", "step_us",
                 "per_token_us", "flag"))
    title = title or "Verify strategies: time per step and per accepted token"
    sd = _pick_dtype(led, state_dtype)
    d = _ok(led[led["state_dtype"].astype("string") == sd]) if sd else led.iloc[:0]
    if d.empty:
        return message_figure(title, "no step rows with status ok to draw (measure == 'step')")
    Ts = sorted(int(t) for t in d["draft_tokens"].dropna().unique())
    fig = make_subplots(rows=2, cols=len(Ts), shared_xaxes=True, vertical_spacing=0.08, horizontal_spacing=0.06,
                        subplot_titles=[f"T={t} (accept length {_cond(d[d['draft_tokens'] == t])})" for t in Ts])
    many_accept = d.groupby("draft_tokens")["accept_len"].nunique().max() > 1
    shown: set[str] = set()
    for j, T in enumerate(Ts, start=1):
        dt = d[d["draft_tokens"] == T]
        for s, be, a in _keys(dt, "accept_len").itertuples(index=False):
            g = dt[(dt["strategy"] == s) & (dt["backend"] == be) & (dt["accept_len"] == a)].sort_values("batch")
            name = f"{s} · {be}" + (f" · a={a:g}" if many_accept else "")
            flags = g["flag"].fillna("").astype(str).to_numpy()
            for row, col in ((1, "step_us"), (2, "per_token_us")):
                fig.add_trace(go.Scatter(
                    x=g["batch"], y=g[col], mode="lines+markers", name=name, legendgroup=s, showlegend=False,
                    line={"color": strategy_color(s), "dash": _dash(be)}, marker={"size": 6},
                    customdata=list(zip(g["accept_len"], flags)),
                    hovertemplate=f"{name}<br>B=%{{x}}<br>%{{y:.4g}} µs<br>accept length %{{customdata[0]:.3g}}"
                                  "<br>%{customdata[1]}<extra></extra>"), row=row, col=j)
            _flag_overlays(fig, g, "step_us", shown, row=1, col=j)
            _flag_overlays(fig, g, "per_token_us", shown, row=2, col=j)
    _legend_keys(fig, sorted(d["strategy"].unique(), key=strategy_order), sorted(d["backend"].astype(str).unique()))
    _log_y(fig, d["step_us"], row=1)
    _log_y(fig, d["per_token_us"], row=2)
    _batch_ticks(fig, d)
    for j in range(1, len(Ts) + 1):
        fig.update_xaxes(title_text=_BATCH_AXIS, row=2, col=j)
    fig.update_yaxes(title_text=axis_title("time per step", "µs"), row=1, col=1)
    fig.update_yaxes(title_text=axis_title("time per accepted token", "µs"), row=2, col=1)
    fig.update_layout(title=f"{title} · {sd} state (16 consecutive steps in one CUDA graph)",
                      template="plotly_white", height=680, hovermode="closest")
    legend_right(fig, title="colour: strategy")
    return add_provenance(fig, _provenance(d))


# ------------------------------------------------------------------------------------------ bytes and bandwidth


def strategy_bandwidth_figure(led: pd.DataFrame, *, state_dtype: str | None = None,
                              draft_tokens: int | None = None, target_pct: float | None = 75.0,
                              title: str | None = None):
    """Four panels vs B at one state dtype and T (default bfloat16, T=4 when present): bytes one
    step moves by the formula (``bytes``, MB), measured step time over the time those bytes take at
    the measured copy bandwidth (``floor_ratio``, 1 = at the floor), and the verify and the commit
    bandwidth as % of the HBM peak (commit: strategies whose commit moves state), with
    ``target_pct`` as a line. Flagged rows carry the step-time figure's markers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(led, ("strategy", "backend", "batch", "draft_tokens", "state_dtype", "status", "step_us", "bytes",
                 "floor_ratio", "flag"))
    title = title or "Verify strategies: bytes moved vs the formula"
    sd = _pick_dtype(led, state_dtype)
    d = _ok(led[led["state_dtype"].astype("string") == sd]) if sd else led.iloc[:0]
    Ts = sorted(int(t) for t in d["draft_tokens"].dropna().unique())
    T = draft_tokens if draft_tokens is not None else (4 if 4 in Ts else (Ts[0] if Ts else None))
    d = d[d["draft_tokens"] == T] if T is not None else d
    if d.empty:
        return message_figure(title, "no step rows with status ok to draw (measure == 'step')")
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.1, vertical_spacing=0.16,
                        subplot_titles=["bytes per step (formula)", "step time / copy floor (measured)",
                                        "verify bandwidth (measured)", "commit bandwidth (measured)"])
    shown: set[str] = set()
    for s, be in _keys(d).itertuples(index=False):
        g = d[(d["strategy"] == s) & (d["backend"] == be)].sort_values("batch")
        name = f"{s} · {be}"
        line = {"color": strategy_color(s), "dash": _dash(be)}
        common = {"mode": "lines+markers", "name": name, "legendgroup": s, "showlegend": False, "line": line}
        fig.add_trace(go.Scatter(x=g["batch"], y=pd.to_numeric(g["bytes"]) / 1e6, **common,
                                 hovertemplate=f"{name}<br>B=%{{x}}<br>%{{y:.4g}} MB<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["batch"], y=g["floor_ratio"], **common,
                                 hovertemplate=f"{name}<br>B=%{{x}}<br>%{{y:.3g}}x the floor<extra></extra>"),
                      row=1, col=2)
        _flag_overlays(fig, g, "floor_ratio", shown, row=1, col=2)
        for col_i, phase in ((1, "verify"), (2, "commit")):
            col = f"{phase}_pct_of_peak_bw"
            if col in g and pd.to_numeric(g[col], errors="coerce").notna().any():
                fig.add_trace(go.Scatter(x=g["batch"], y=g[col], **{**common, "name": f"{name} · {phase}"},
                                         hovertemplate=f"{name} {phase}<br>B=%{{x}}<br>%{{y:.3g}} % of peak"
                                                       "<extra></extra>"), row=2, col=col_i)
                _flag_overlays(fig, g, col, shown, row=2, col=col_i)
    _legend_keys(fig, sorted(d["strategy"].unique(), key=strategy_order), sorted(d["backend"].astype(str).unique()))
    fig.add_hline(y=1.0, line={"color": "#888", "dash": "dot"}, row=1, col=2)
    if target_pct is not None:
        for c in (1, 2):
            fig.add_hline(y=target_pct, line={"color": "#888", "dash": "dot"}, row=2, col=c,
                          annotation_text=f"target {target_pct:g} %", annotation_position="top left")
    _batch_ticks(fig, d)
    fig.update_xaxes(title_text=_BATCH_AXIS)
    _log_y(fig, pd.to_numeric(d["bytes"], errors="coerce") / 1e6, row=1, col=1)
    _log_y(fig, d["floor_ratio"], row=1, col=2)
    fig.update_yaxes(title_text=axis_title("bytes per step (roofline formula)", "MB"), row=1, col=1)
    fig.update_yaxes(title_text=axis_title("step time / (bytes / copy bandwidth)", "x"), row=1, col=2)
    for c in (1, 2):
        fig.update_yaxes(title_text=axis_title("achieved bandwidth", "% of HBM peak"), range=[0, 100], row=2, col=c)
    fig.update_layout(title=f"{title} · {sd} state, T={T}", template="plotly_white", height=760)
    legend_right(fig, title="colour: strategy")
    return add_provenance(fig, _provenance(d))


# ------------------------------------------------------------------------------------------ winners


def _ranges(led: pd.DataFrame) -> dict[tuple, tuple[float, float]]:
    """``{(backend, state_dtype, T, accept_len, batch, strategy): (p10, p90)}`` of the ok step rows."""
    if not {"time_p10_us", "time_p90_us"} <= set(led.columns):
        return {}
    d = _ok(led)
    keys = zip(d["backend"], d["state_dtype"], d["draft_tokens"], d["accept_len"], d["batch"], d["strategy"])
    return {tuple(k): (float(lo), float(hi)) for k, lo, hi in zip(keys, pd.to_numeric(d["time_p10_us"]),
                                                                 pd.to_numeric(d["time_p90_us"]))}


def _winner_labels(w: pd.DataFrame, led: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Per winner row: its square's label (speedup over the baseline, margin over the runner-up or
    ``tie`` when their p10-p90 step times overlap) and the verdict for the hover."""
    ranges = _ranges(led)
    labels, verdicts = [], []
    for r in w.itertuples(index=False):
        key = (r.backend, r.state_dtype, r.draft_tokens, r.accept_len, r.batch)
        a, b = ranges.get((*key, r.winner)), ranges.get((*key, r.runner_up))
        margin = (r.runner_up_step_us / r.step_us - 1) * 100 if pd.notna(r.runner_up_step_us) and r.step_us else None
        tie = a is not None and b is not None and b[0] <= a[1]
        second = "tie" if tie else (f"+{margin:.0f} %" if margin is not None else "")
        first = "" if r.winner == BASELINE or pd.isna(r.speedup) else f"{r.speedup:.2g}×"
        labels.append("<br>".join(x for x in (first, second) if x))
        verdicts.append("tie (p10-p90 ranges overlap)" if tie else
                        (f"wins by {margin:.1f} % over the runner-up" if margin is not None else "only contender"))
    return labels, verdicts


def winners_figure(win: pd.DataFrame, led: pd.DataFrame, *, state_dtype: str | None = None,
                   title: str | None = None):
    """Which strategy is fastest at each B: ``win`` is :func:`gdnlab.analysis.ledger.winners` of the
    ledger ``led`` (flagged rows never win; ``led`` gives the figure's provenance and the p10-p90 step
    times). A square per (B, backend · T · accept length) in the winner's colour, labelled with its
    speedup over the baseline strategy (``1.8×``: full_cache's step time / the winner's; none where
    full_cache wins) and its margin over the runner-up (``+12 %``), or ``tie`` where the two p10-p90
    step times overlap; an open circle where a flagged row (no check, failed check, eager-timed) was faster."""
    import plotly.graph_objects as go

    _check(led, ("strategy", "backend", "batch", "draft_tokens", "accept_len", "state_dtype", "status", "step_us"))
    title = title or "Which strategy wins where"
    sd = _pick_dtype(led, state_dtype)
    d = led[led["state_dtype"].astype("string") == sd] if sd else led.iloc[:0]
    w = win[win["state_dtype"].astype("string") == sd] if sd and len(win) else pd.DataFrame()
    if w.empty:
        return message_figure(title, "no step rows with status ok (and a passing check) to compare")
    labels, verdicts = _winner_labels(w, d)
    w = w.assign(row=w["backend"].astype(str) + " · T=" + w["draft_tokens"].astype(str) + " · a="
                 + w["accept_len"].map(lambda v: f"{float(v):g}"),
                 x=w["batch"].astype(str), text=labels, verdict=verdicts)
    fig = go.Figure()
    for s in sorted(w["winner"].unique(), key=strategy_order):
        g = w[w["winner"] == s]
        fig.add_trace(go.Scatter(
            x=g["x"], y=g["row"], mode="markers+text", name=s, text=g["text"], textposition="middle center",
            textfont={"color": "white", "size": 11},
            marker={"symbol": "square", "size": 50, "color": strategy_color(s)},
            customdata=g[["step_us", "full_cache_step_us", "runner_up", "verdict"]].astype(object).to_numpy(),
            hovertemplate=(f"{s} fastest at B=%{{x}}<br>%{{y}}<br>step %{{customdata[0]:.4g}} µs"
                           "<br>full_cache %{customdata[1]:.4g} µs<br>runner-up %{customdata[2]}"
                           "<br>%{customdata[3]}<extra></extra>")))
    faster = w[w["fastest_flagged"].notna()] if "fastest_flagged" in w else w.iloc[:0]
    if len(faster):
        fig.add_trace(go.Scatter(
            x=faster["x"], y=faster["row"], mode="markers", name="a flagged row was faster (not counted)",
            marker={"symbol": "circle-open", "size": 62, "color": "black", "line": {"width": 2}},
            customdata=faster[["fastest_flagged", "fastest_flagged_step_us"]].astype(object).to_numpy(),
            hovertemplate="faster but flagged: %{customdata[0]}<br>%{customdata[1]:.4g} µs<extra></extra>"))
    batches = sorted(w["batch"].unique())
    rows = sorted(w["row"].unique())
    fig.update_xaxes(title_text=_BATCH_AXIS, type="category", categoryorder="array",
                     categoryarray=[str(b) for b in batches])
    fig.update_yaxes(title_text="backend · T · accept length", type="category", range=[-0.6, len(rows) - 0.4])
    fig.update_layout(title=f"{title} · {sd} state (label: {BASELINE} step / winner step; margin over the "
                            "runner-up)", template="plotly_white", height=max(300, 190 + 80 * len(rows)))
    legend_right(fig, title="fastest strategy")
    return add_provenance(fig, _provenance(d))


# ------------------------------------------------------------------------------------------ scratch


def scratch_figure(scratch: pd.DataFrame, *, title: str | None = None):
    """Scratch GiB (solid) and memory beyond a plain pool of one row per request (light) of each
    strategy for the served model, all its GDN layers (:func:`gdnlab.analysis.ledger.served_scratch`);
    *projected* from :mod:`gdnlab.roofline`'s formulas."""
    import plotly.graph_objects as go

    need = ("strategy", "scratch_gib", "extra_gib", "memory_gib", "shape", "layers", "batch", "draft_tokens",
            "state_dtype")
    if not isinstance(scratch, pd.DataFrame) or any(c not in scratch.columns for c in need):
        raise ValueError(f"scratch_figure needs gdnlab.analysis.ledger.served_scratch's table (columns {need})")
    if scratch.empty:
        return message_figure(title or "Scratch", "no strategies")
    d = scratch.assign(_r=scratch["strategy"].map(strategy_order)).sort_values("_r")
    colours = [strategy_color(s) for s in d["strategy"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=d["strategy"], x=d["scratch_gib"], orientation="h", name="scratch",
                         marker={"color": colours}, text=d["scratch_gib"].map(lambda v: f"{v:.3g} GiB"),
                         textposition="outside",
                         hovertemplate="%{y}: scratch %{x:.4g} GiB<extra></extra>"))
    fig.add_trace(go.Bar(y=d["strategy"], x=d["extra_gib"], orientation="h", name="memory beyond a plain pool",
                         marker={"color": colours, "opacity": 0.35, "pattern": {"shape": "/"}},
                         hovertemplate="%{y}: %{x:.4g} GiB beyond a pool of one row per request<extra></extra>"))
    r = d.iloc[0]
    fig.update_xaxes(title_text=axis_title(f"GiB over {int(r['layers'])} GDN layers", "GiB"), rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(barmode="group", template="plotly_white", height=380,
                      title=title or f"Scratch per strategy · {r['shape']}, B={int(r['batch'])}, "
                                     f"T={int(r['draft_tokens'])}, {r['state_dtype']} state")
    legend_right(fig)
    text = label({}, "projected", model=f"{r['shape']} × {int(r['layers'])} GDN layers",
                 conditions=f"B={int(r['batch'])} requests, T={int(r['draft_tokens'])}, {r['state_dtype']} state",
                 formula="gdnlab.roofline.strategy_scratch_bytes / strategy_memory_bytes")
    return add_provenance(fig, text)


# ------------------------------------------------------------------------------------------ traces


def _trace_provenance(t: pd.DataFrame) -> str:
    statuses = {str(s) for s in t["status"].dropna()} if "status" in t else set()
    status = "measured" if statuses == {"measured"} else "synthetic"
    gpus = sorted({f"{g} ({sm})" if pd.notna(sm) and sm else str(g)
                   for g, sm in zip(t.get("gpu", []), t.get("sm", [])) if pd.notna(g) and g})
    prov = {"gpu": " / ".join(gpus) or "GPU unknown (not in trace)"}
    nsys = sorted({str(v) for v in t.get("nsys", pd.Series(dtype=object)).dropna()})
    files = t.drop_duplicates(["backend", "strategy"]) if {"backend", "strategy"} <= set(t.columns) else t
    return label(prov, status, traces=f"{len(files)} decode-loop traces", nsys=" / ".join(nsys) or None)


def phase_breakdown_figure(phases: pd.DataFrame, *, title: str | None = None):
    """Kernel time per step by phase (fold, verify, commit, marker, other) of each strategy's trace
    (:func:`gdnlab.analysis.strategy_traces.trace_phases`): stacked bars, a strategy per bar, a panel per
    backend; the bar's label is the strategy (``(eager)`` for a trace launched without a CUDA
    graph), the hover gives µs and share."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    need = ("backend", "strategy", "phase", "time_per_step_us", "share_pct")
    if not isinstance(phases, pd.DataFrame) or any(c not in phases.columns for c in need):
        raise ValueError(f"phase_breakdown_figure needs gdnlab.analysis.strategy_traces.trace_phases's table "
                         f"(columns {need})")
    title = title or "Per-phase breakdown of each strategy's decode-loop trace"
    if phases.empty:
        return message_figure(title, "no strategy traces to break down")
    backends = sorted(phases["backend"].astype(str).unique())
    fig = make_subplots(rows=1, cols=len(backends), shared_yaxes=True, subplot_titles=backends,
                        horizontal_spacing=0.05)
    order = [p for p in PHASE_COLORS if p in set(phases["phase"])] + \
        sorted(set(phases["phase"]) - set(PHASE_COLORS))
    for j, be in enumerate(backends, start=1):
        d = phases[phases["backend"].astype(str) == be]
        if "launch" in d.columns:
            d = d.assign(strategy=[_trace_label(s, la) for s, la in zip(d["strategy"], d["launch"])])
        strategies = sorted(d["strategy"].unique(), key=lambda v: strategy_order(str(v).split(" ")[0]))
        for p in order:
            g = d[d["phase"] == p].set_index("strategy").reindex(strategies)
            fig.add_trace(go.Bar(x=strategies, y=g["time_per_step_us"], name=p, legendgroup=p, showlegend=j == 1,
                                 marker={"color": phase_color(p)},
                                 customdata=g[["share_pct"]].to_numpy(),
                                 hovertemplate=f"{be} %{{x}} · {p}<br>%{{y:.4g}} µs per step"
                                               "<br>%{customdata[0]:.3g} % of kernel time<extra></extra>"),
                          row=1, col=j)
        fig.update_xaxes(title_text="strategy", row=1, col=j, categoryorder="array", categoryarray=strategies,
                         tickfont={"size": 11})
    fig.update_yaxes(title_text=axis_title("kernel time per step", "µs"), row=1, col=1)
    fig.update_layout(barmode="stack", title=title, template="plotly_white", height=460)
    legend_right(fig, title="phase")
    return add_provenance(fig, _trace_provenance(phases))


def _trace_label(strategy: str, launch: Any) -> str:
    return f"{strategy} (eager)" if launch == "eager" else str(strategy)


def step_busy_figure(busy: pd.DataFrame, *, target_pct: float | None = 90.0, title: str | None = None):
    """GPU busy share of a step in each strategy's trace (:func:`gdnlab.analysis.strategy_traces.trace_busy`):
    a horizontal bar per trace (grouped by backend) in the strategy's colour, the median over complete
    steps of kernel time / the time from one verify marker to the next (host share included),
    min–median as an error bar; a black diamond for the kernel time over the step's own span on the
    device (verify marker to its last kernel). A trace launched eagerly (no CUDA graph) is hatched and
    labelled *not comparable*; ``target_pct`` as a line."""
    import plotly.graph_objects as go

    need = ("backend", "strategy", "busy_pct_median", "busy_pct_min")
    if not isinstance(busy, pd.DataFrame) or any(c not in busy.columns for c in need):
        raise ValueError(f"step_busy_figure needs gdnlab.analysis.strategy_traces.trace_busy's table (columns {need})")
    title = title or "GPU busy share of a step in each strategy's trace"
    d = busy[pd.to_numeric(busy["busy_pct_median"], errors="coerce").notna()]
    if d.empty:
        return message_figure(title, "no trace with two or more phase markers (no complete step found)")
    launch = d["launch"] if "launch" in d.columns else pd.Series(None, index=d.index)
    d = d.assign(_r=d["strategy"].map(strategy_order), _launch=launch,
                 _y=[_trace_label(s, la) for s, la in zip(d["strategy"], launch)]).sort_values(["backend", "_r"])
    fig = go.Figure()
    for s in sorted(d["strategy"].unique(), key=strategy_order):
        g = d[d["strategy"] == s]
        eager = (g["_launch"] == "eager").to_numpy()
        low = (g["busy_pct_median"] - g["busy_pct_min"]).clip(lower=0)
        text = [f"{v:.0f} %" + (" · eager trace: not comparable" if e else "")
                for v, e in zip(g["busy_pct_median"], eager)]
        hatch = {"shape": ["/" if e else "" for e in eager]}
        fig.add_trace(go.Bar(y=[g["backend"].astype(str), g["_y"]], x=g["busy_pct_median"], orientation="h", name=s,
                             marker={"color": strategy_color(s), "pattern": hatch},
                             text=text, textposition="inside", insidetextanchor="start", cliponaxis=False,
                             error_x={"type": "data", "symmetric": False, "array": [0] * len(g), "arrayminus": low,
                                      "color": "#444"},
                             hovertemplate="%{y}<br>median %{x:.3g} % busy (marker to marker)<extra></extra>"))
    if "span_busy_pct_median" in d.columns and pd.to_numeric(d["span_busy_pct_median"], errors="coerce").notna().any():
        fig.add_trace(go.Scatter(y=[d["backend"].astype(str), d["_y"]], x=d["span_busy_pct_median"], mode="markers",
                                 name="kernels over the step's own span",
                                 marker={"symbol": "diamond", "size": 11, "color": "black"},
                                 hovertemplate="%{y}<br>%{x:.3g} % of the step's span on the device<extra></extra>"))
    if target_pct is not None:
        fig.add_vline(x=target_pct, line={"color": "#888", "dash": "dot"},
                      annotation_text=f"target {target_pct:g} %", annotation_position="top")
    fig.update_xaxes(title_text=axis_title("GPU busy share of a step", "%"), range=[0, 105],
                     tickvals=[0, 20, 40, 60, 80, 100])
    # categories in order of appearance (backend, then registry order), drawn from the top down
    fig.update_yaxes(title_text="backend · strategy trace", automargin=True, autorange="reversed")
    fig.update_layout(title=f"{title} (bar: median, marker to next marker; whisker: min)", template="plotly_white",
                      height=160 + 34 * len(d), barmode="overlay", margin={"t": 90})
    legend_right(fig, title="strategy")
    return add_provenance(fig, _trace_provenance(d))
