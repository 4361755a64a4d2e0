"""Figures of the engines' own code paths beside gdnlab's (:mod:`gdnlab.analysis.engine_gap`).

* :func:`engine_step_figure`: time per step (call tables: per call) vs B, a panel per strategy (per
  call mode), at one state dtype and T: each engine backend's line solid in its colour, its twin's
  (the gdnlab backend in the same role, :func:`gdnlab.backends.twin`) dashed in the twin's colour;
* :func:`engine_ratio_figure`: engine time / gdnlab time vs B, a panel per strategy (call mode), a
  colour per engine backend and a line style per state dtype, at one T, a dotted line at 1.

Figures draw what they receive: the gap tables come from :func:`gdnlab.analysis.engine_gap.engine_gap`
and :func:`~gdnlab.analysis.engine_gap.engine_call_gap`. Colours come from the backend registry
(:func:`gdnlab.plots.style.backend_color`); a pair the analysis could not compare at equal conditions
(twin measured at another accept length, or timed differently) is drawn with a marker per status,
never hidden. Rows of T = 1 (decode calls) stay beside the chosen T. Every figure carries a provenance
footnote from the rows (:func:`gap_provenance_text`): GPU, versions, commit and the status the rows'
own metadata supports. plotly is imported inside the functions.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..analysis.engine_gap import ACCEPT_DIFFERS, MEASURED, NOT_COMPARABLE
from ..provenance import IDENTITY_COLUMNS, label
from ..strategies.registry import strategy_order
from .layout import legend_right, message_figure
from .provenance import add_provenance, frame_status, is_blank
from .style import (
    KEY_COLOR,
    STATE_DTYPE_DASH,
    axis_title,
    backend_color,
    decade_log_axis,
    measured_log_axis,
)

__all__ = ["engine_step_figure", "engine_ratio_figure", "gap_provenance_text", "STATUS_MARKERS"]

#: marker over a pair whose status says it is not compared at equal conditions
STATUS_MARKERS = {ACCEPT_DIFFERS: {"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}},
                  NOT_COMPARABLE: {"symbol": "diamond-open", "size": 16, "color": "#8a5a00", "line": {"width": 2}}}
_NEED = ("gpu", "backend", "twin", "state_dtype", "draft_tokens", "batch", "ratio", "status")
_BATCH_AXIS = axis_title("batch B", "requests")


def _kind(gap: Any) -> str:
    """``"step"`` or ``"call"`` (which gap table), ``ValueError`` for anything else."""
    if not isinstance(gap, pd.DataFrame) or any(c not in gap.columns for c in _NEED):
        raise ValueError("expected a gap table of gdnlab.analysis.engine_gap.engine_gap or engine_call_gap "
                         f"(columns {list(_NEED)})")
    if "engine_step_us" in gap.columns and "strategy" in gap.columns:
        return "step"
    if "engine_time_us" in gap.columns and "mode" in gap.columns:
        return "call"
    raise ValueError("the gap table has neither engine_step_us + strategy nor engine_time_us + mode")


def _panel(d: pd.DataFrame, kind: str) -> pd.Series:
    if kind == "step":
        return d["strategy"].astype(str)
    scope = d["buffer_scope"].astype("string").fillna("none") if "buffer_scope" in d else "none"
    extra = pd.Series([f" · {s} buffer" if s not in ("none", "batch") else "" for s in scope], index=d.index)
    return d["mode"].astype(str) + " T=" + d["draft_tokens"].astype(str) + extra


def _panels(d: pd.DataFrame, kind: str) -> list[str]:
    names = list(dict.fromkeys(d["_panel"]))
    return sorted(names, key=lambda p: (strategy_order(p), p)) if kind == "step" else sorted(names)


def _pick(gap: pd.DataFrame, draft_tokens: int | None) -> int | None:
    Ts = sorted(int(t) for t in pd.to_numeric(gap["draft_tokens"], errors="coerce").dropna().unique() if t > 1)
    if draft_tokens is not None:
        return int(draft_tokens)
    return 4 if 4 in Ts else (Ts[0] if Ts else None)


def _select(gap: pd.DataFrame, kind: str, state_dtype: str | None, draft_tokens: int | None) -> pd.DataFrame:
    T = _pick(gap, draft_tokens)
    t = pd.to_numeric(gap["draft_tokens"], errors="coerce")
    d = gap[(t == T) | (t == 1)] if T is not None else gap
    if state_dtype is not None:
        d = d[d["state_dtype"].astype("string") == str(state_dtype)]
    return d.assign(_panel=_panel(d, kind), batch=pd.to_numeric(d["batch"], errors="coerce"))


def _pick_dtype(gap: pd.DataFrame, state_dtype: str | None) -> str | None:
    present = sorted(gap["state_dtype"].dropna().astype(str).unique())
    if state_dtype is not None or not present:
        return state_dtype
    return "bfloat16" if "bfloat16" in present else present[0]


def _mode(s: pd.Series) -> Any:
    s = s.dropna()
    return s.mode().iloc[0] if len(s) else None


def gap_provenance_text(gap: pd.DataFrame) -> str:
    """A gap table's footnote: the status its rows' own metadata supports (``measured`` only when the
    engine rows and the twin rows they were compared with were both made by gdnlab on the GPU named,
    :func:`gdnlab.plots.provenance.frame_status`), the GPU and the engine rows' versions and commit,
    the twin rows' commit where it differs, and how many pairs were compared."""
    if not isinstance(gap, pd.DataFrame) or gap.empty or "gpu" not in gap.columns:
        return "synthetic · no rows to take provenance from"
    cols = [c for c in ("gpu", "sm", "gdnlab") if c in gap.columns]
    engine_side = frame_status(gap[cols]) if "gdnlab" in cols else "synthetic"
    matched = gap[gap["twin_status"].notna()] if "twin_status" in gap.columns else gap.iloc[:0]
    twin_side = frame_status(matched[[c for c in cols if c != "gdnlab"]].assign(
        gdnlab=matched["twin_gdnlab"] if "twin_gdnlab" in matched.columns else None)) if len(matched) else engine_side
    status = "measured" if engine_side == twin_side == "measured" else "synthetic"
    gpu = _mode(gap["gpu"])
    sub = gap[gap["gpu"] == gpu]
    prov = {c: _mode(sub[c]) for c in (*IDENTITY_COLUMNS, "git_dirty") if c in sub.columns}
    twin_commit = _mode(sub["twin_git_commit"]) if "twin_git_commit" in sub.columns else None
    extra: dict[str, Any] = {}
    if not is_blank(twin_commit) and str(twin_commit) != str(prov.get("git_commit")):
        extra["gdnlab rows"] = f"commit {str(twin_commit)[:10]}"
    if "timing_method" in sub.columns and sub["timing_method"].notna().any():
        extra["timing"] = "/".join(sorted(sub["timing_method"].dropna().astype(str).unique()))
    n_cmp = int((gap["status"].astype("string") == MEASURED).fillna(False).sum())
    extra["compared"] = f"{n_cmp} of {len(gap)} engine rows at equal conditions"
    if gap["gpu"].nunique() > 1:
        extra["mixed"] = f"+ {gap['gpu'].nunique() - 1} other GPU(s)"
    return label({k: (None if is_blank(v) else v) for k, v in prov.items()}, status, **extra)


def _status_overlays(fig, g: pd.DataFrame, y: str, shown: set[str], **where) -> None:
    """A marker per pair compared at unequal conditions (:data:`STATUS_MARKERS`), one legend entry each."""
    import plotly.graph_objects as go

    for status, marker in STATUS_MARKERS.items():
        bad = g[(g["status"].astype("string") == status).fillna(False).astype(bool) & g[y].notna()]
        if bad.empty:
            continue
        fig.add_trace(go.Scatter(x=bad["batch"], y=bad[y], mode="markers", name=status, legendgroup=f"status {status}",
                                 showlegend=status not in shown, legendrank=300, marker=marker,
                                 text=bad["note"].astype("string").fillna(status) if "note" in bad else None,
                                 hovertemplate="%{text}<br>B=%{x}<extra></extra>"), **where)
        shown.add(status)


def _lines(fig, d: pd.DataFrame, panel: str, col: int, times: tuple[str, str], shown: set[str]) -> None:
    """One panel: each engine backend solid, each twin dashed (once, however many engines share it)."""
    import plotly.graph_objects as go

    p = d[d["_panel"] == panel]
    eng_t, gd_t = times
    for be in dict.fromkeys(p["backend"].astype(str)):
        g = p[p["backend"] == be].sort_values("batch")
        name = f"{be} · engine's own path"
        fig.add_trace(go.Scatter(
            x=g["batch"], y=g[eng_t], mode="lines+markers", name=name, legendgroup=be, showlegend=name not in shown,
            line={"color": backend_color(be)}, customdata=g[["ratio"]].to_numpy(),
            hovertemplate=f"{be} · {panel}<br>B=%{{x}}<br>%{{y:.4g}} µs<br>engine / gdnlab "
                          "%{customdata[0]:.3g}<extra></extra>"), row=1, col=col)
        shown.add(name)
    for tw in dict.fromkeys(p["twin"].dropna().astype(str)):
        g = p[(p["twin"] == tw) & p[gd_t].notna()].drop_duplicates("batch", keep="last").sort_values("batch")
        name = f"{tw} · gdnlab"
        fig.add_trace(go.Scatter(
            x=g["batch"], y=g[gd_t], mode="lines+markers", name=name, legendgroup=tw, showlegend=name not in shown,
            line={"color": backend_color(tw), "dash": "dash"}, marker={"symbol": "square"},
            hovertemplate=f"{tw} (gdnlab) · {panel}<br>B=%{{x}}<br>%{{y:.4g}} µs<extra></extra>"), row=1, col=col)
        shown.add(name)
    _status_overlays(fig, p, gd_t, shown, row=1, col=col)


def engine_step_figure(gap: pd.DataFrame, *, state_dtype: str | None = None, draft_tokens: int | None = None,
                       title: str | None = None):
    """Engine time vs its twin's vs B at one state dtype (default bfloat16 when present) and T (default
    4 when present): a panel per strategy (call tables: per mode and T), log-log; the engine's own path
    solid in its colour, the gdnlab twin dashed in its colour, markers over pairs measured at unequal
    conditions (:data:`STATUS_MARKERS`)."""
    from plotly.subplots import make_subplots

    kind = _kind(gap)
    times = ("engine_step_us", "gdnlab_step_us") if kind == "step" else ("engine_time_us", "gdnlab_time_us")
    title = title or ("The engines' own paths vs gdnlab's: time per step" if kind == "step"
                      else "The engines' own kernel calls vs gdnlab's: time per call")
    sd = _pick_dtype(gap, state_dtype)
    d = _select(gap, kind, sd, draft_tokens)
    d = d[pd.to_numeric(d[times[0]], errors="coerce").notna() | pd.to_numeric(d[times[1]], errors="coerce").notna()]
    if d.empty:
        where = f" at {sd} state and T={_pick(gap, draft_tokens)}" if len(gap) else ""
        return message_figure(title, f"no engine rows that ran{where} to draw")
    panels = _panels(d, kind)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, horizontal_spacing=0.06)
    shown: set[str] = set()
    for j, panel in enumerate(panels, start=1):
        _lines(fig, d, panel, j, times, shown)
    measured_log_axis(fig, d["batch"].dropna())
    decade_log_axis(fig, pd.concat([d[times[0]], d[times[1]]]).dropna())
    fig.update_xaxes(title_text=_BATCH_AXIS)
    unit = "time per step" if kind == "step" else "time per call"
    fig.update_yaxes(title_text=axis_title(unit, "µs"), row=1, col=1)
    T = _pick(gap, draft_tokens)
    fig.update_layout(title=f"{title} · {sd} state · T={T} · {_mode(d['gpu'])}", template="plotly_white",
                      height=460, hovermode="closest")
    legend_right(fig, title="solid: engine · dashed: gdnlab twin")
    return add_provenance(fig, gap_provenance_text(d))


def engine_ratio_figure(gap: pd.DataFrame, *, draft_tokens: int | None = None, title: str | None = None):
    """Engine time / its twin's (``ratio``; > 1: the engine's path is slower) vs B at one T (default 4
    when present), a panel per strategy (call tables: per mode and T), a colour per engine backend and
    a line style per state dtype; pairs measured at unequal conditions are drawn with their marker
    (:data:`STATUS_MARKERS`), rows without a ratio are left out (their ``status`` says why)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    kind = _kind(gap)
    title = title or "Engine / gdnlab time (> 1: the engine's own path is slower)"
    d = _select(gap, kind, None, draft_tokens)
    d = d.assign(ratio=pd.to_numeric(d["ratio"], errors="coerce")).dropna(subset=["ratio"])
    if d.empty:
        return message_figure(title, "no engine row with a gdnlab twin row to compare at this T")
    panels = _panels(d, kind)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels, horizontal_spacing=0.06, shared_yaxes=True)
    shown: set[str] = set()
    for j, panel in enumerate(panels, start=1):
        p = d[d["_panel"] == panel]
        for (be, sd), g in p.groupby([p["backend"].astype(str), p["state_dtype"].astype(str)], sort=False):
            g = g.sort_values("batch")
            name = f"{be} / {g['twin'].iloc[0]} · {sd}"
            fig.add_trace(go.Scatter(
                x=g["batch"], y=g["ratio"], mode="lines+markers", name=name, legendgroup=name,
                showlegend=name not in shown,
                line={"color": backend_color(be), "dash": STATE_DTYPE_DASH.get(sd, "dot")},
                customdata=g[["status"]].astype(str).to_numpy(),
                hovertemplate=f"{name} · {panel}<br>B=%{{x}}<br>%{{y:.3g}}x<br>%{{customdata[0]}}<extra></extra>"),
                row=1, col=j)
            shown.add(name)
        _status_overlays(fig, p, "ratio", shown, row=1, col=j)
        fig.add_hline(y=1.0, line={"color": KEY_COLOR, "dash": "dot"}, row=1, col=j)
    measured_log_axis(fig, d["batch"].dropna())
    fig.update_xaxes(title_text=_BATCH_AXIS)
    fig.update_yaxes(title_text=axis_title("engine time / gdnlab time", "x"), row=1, col=1)
    fig.update_layout(title=f"{title} · T={_pick(gap, draft_tokens)} · {_mode(d['gpu'])}", template="plotly_white",
                      height=440, hovermode="closest")
    legend_right(fig, title="engine / twin · state dtype")
    return add_provenance(fig, gap_provenance_text(d))
