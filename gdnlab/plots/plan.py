"""Figures of the plan (:mod:`gdnlab.model.plan`): who wins per batch, and every option against the best
``full_cache``; the speedup of speculation against the accept length.

* :func:`plan_figure`: a who-wins map (top: the fastest option per batch in its strategy's colour, its
  margin over the runner-up, ``tie`` where their measured TPOT ranges overlap; the runner-up below it)
  over every option's TPOT as a ratio to the best ``full_cache`` option at that batch (1 = as fast; a
  panel per state dtype, colour = strategy, line style = backend);
* :func:`speedup_vs_accept_figure`: speedup over plain decode vs accept length, a panel per batch,
  colour = strategy, line style = backend (or T).

Both take the tables as :mod:`gdnlab.model` returns them and read only the columns they need, so new
columns change nothing; optional ones are used when present: ``tpot_lo_ms`` / ``tpot_hi_ms`` (a TPOT
range: ties, error bars), ``fits`` (options memory does not hold are left out). Colours come from the
registries (:mod:`gdnlab.plots.style`); legends sit right of the plot, one entry per strategy and one
per line style.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..strategies.registry import BASELINE, strategy_order
from .inputs import require_table as _table
from .layout import legend_right
from .provenance import add_provenance
from .style import KEY_COLOR, axis_title, backend_dash, measured_log_axis, option_color

__all__ = ["plan_figure", "speedup_vs_accept_figure", "tokens_per_step_figure", "plan_winners", "SEED_LABEL"]

SEED_LABEL = "reported (seed, GB200): SGLang PR #23273, Qwen3.5-397B-A17B-NVFP4 TP4"
_KEY = ("strategy", "draft_tokens", "state_dtype", "backend")
_T_DASH = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _go():
    import plotly.graph_objects as go  # lazy: plotly is not on the GPU machine

    return go


def _order(names) -> list[str]:
    """Strategies in registry order, plain ``decode`` first."""
    return sorted({str(s) for s in names}, key=lambda s: (s != "decode", strategy_order(s), s))


def _option(r) -> str:
    """``replay_ring T=4 · bfloat16 · flashinfer`` (``decode · bfloat16 · triton``)."""
    head = "decode" if r["strategy"] == "decode" else f"{r['strategy']} T={int(r['draft_tokens'])}"
    return f"{head} · {r['state_dtype']} · {r['backend']}"


def _legend_keys(fig, strategies: Sequence[str], dashes: dict[str, str], dash_title: str) -> None:
    """Legend-only entries: a colour per strategy (toggling its lines) and a line style per ``dashes`` key."""
    go = _go()
    for i, s in enumerate(strategies):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=s, legendgroup=s,
                                 legendrank=100 + i, line={"color": option_color(s)}))
    if len(dashes) > 1:
        for i, (k, d) in enumerate(dashes.items()):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{dash_title} {k}",
                                     legendrank=200 + i, legendgroup=f"dash {k}",
                                     line={"color": KEY_COLOR, "dash": d}))


def plan_winners(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per batch: the fastest option (``winner``, its ``strategy``), the runner-up, ``margin_pct``
    (runner-up's TPOT over the winner's, %) and ``tie`` (their ``tpot_lo_ms``..``tpot_hi_ms`` ranges
    overlap; ``None`` when the table has no ranges). Options with ``fits == False`` are left out.
    Read from the table as given: nothing is re-priced."""
    c = candidates[pd.to_numeric(candidates["tpot_ms"], errors="coerce").notna()]
    if "fits" in c.columns:
        c = c[c["fits"].fillna(True).astype(bool)]
    ranged = {"tpot_lo_ms", "tpot_hi_ms"} <= set(c.columns)
    rows = []
    for b, g in c.groupby("batch", sort=True):
        g = g.sort_values("tpot_ms", kind="stable")
        w = g.iloc[0]
        ru = g.iloc[1] if len(g) > 1 else None
        tie = None
        if ranged and ru is not None and pd.notna(w["tpot_hi_ms"]) and pd.notna(ru["tpot_lo_ms"]):
            tie = bool(float(ru["tpot_lo_ms"]) <= float(w["tpot_hi_ms"]))
        rows.append({"batch": b, "winner": _option(w), "strategy": w["strategy"], "tpot_ms": float(w["tpot_ms"]),
                     "runner_up": _option(ru) if ru is not None else None,
                     "runner_up_strategy": ru["strategy"] if ru is not None else None,
                     "runner_up_tpot_ms": float(ru["tpot_ms"]) if ru is not None else math.nan,
                     "margin_pct": (float(ru["tpot_ms"]) / float(w["tpot_ms"]) - 1) * 100 if ru is not None
                     else math.nan, "tie": tie})
    return pd.DataFrame(rows)


def _pct(m: float) -> str:
    """A margin as ``+12 %``, ``+2.5 %`` or ``+0.04 %`` (two significant digits below 10 %)."""
    return f"+{m:.0f} %" if m >= 10 else (f"+{m:.1f} %" if m >= 1 else f"+{m:.2f} %")


def _winner_squares(fig, win: pd.DataFrame, shown: set[str]) -> None:
    """Row 1: a square per batch in the winner's colour (label: margin or ``tie``), the runner-up below."""
    go = _go()
    for row_name, col, tcol in (("fastest", "strategy", "tpot_ms"), ("runner-up", "runner_up_strategy",
                                                                     "runner_up_tpot_ms")):
        w = win[win[col].notna()]
        for s, g in w.groupby(col, sort=False):
            winner_row = row_name == "fastest"
            text = [("tie" if t else _pct(m)) if winner_row and pd.notna(m) else ""
                    for m, t in zip(g["margin_pct"], g["tie"])]
            label = g["winner"] if winner_row else g["runner_up"]
            fig.add_trace(go.Scatter(
                x=g["batch"].astype(str), y=[row_name] * len(g), mode="markers+text", text=text,
                textposition="middle center", textfont={"color": "white", "size": 10}, name=str(s),
                legendgroup=str(s), showlegend=False,
                marker={"symbol": "square", "size": 50 if winner_row else 26, "color": option_color(s),
                        "line": {"width": 2 if winner_row else 0, "color": "white"}},
                customdata=list(zip(label, g[tcol], g["margin_pct"])),
                hovertemplate=f"B=%{{x}} · {row_name}: %{{customdata[0]}}<br>TPOT %{{customdata[1]:.3g}} ms"
                              + ("<br>runner-up %{customdata[2]:.1f} % slower" if winner_row else "")
                              + "<extra></extra>"), row=1, col=1)
            shown.add(str(s))


def _ratio_lines(fig, c: pd.DataFrame, base: pd.Series, col: int, several_T: bool) -> list[float]:
    """Row 2, panel ``col``: TPOT / best full_cache per (strategy, backend) line; returns the ratios drawn."""
    go = _go()
    drawn: list[float] = []
    order = _order(c["strategy"])
    c = c[c["strategy"] != "decode"]
    for (s, be), g in sorted(c.groupby(["strategy", "backend"], sort=False),
                             key=lambda kv: (order.index(str(kv[0][0])), str(kv[0][1]))):
        g = g.sort_values("tpot_ms").drop_duplicates("batch").sort_values("batch")   # best T per batch
        ratio = g["tpot_ms"].to_numpy(dtype=float) / base.reindex(g["batch"]).to_numpy(dtype=float)
        drawn += [float(v) for v in ratio if math.isfinite(v)]
        err = {}
        if {"tpot_lo_ms", "tpot_hi_ms"} <= set(g.columns):
            b = base.reindex(g["batch"]).to_numpy(dtype=float)
            hi = g["tpot_hi_ms"].to_numpy(dtype=float) / b - ratio
            lo = ratio - g["tpot_lo_ms"].to_numpy(dtype=float) / b
            err = {"error_y": {"type": "data", "array": hi, "arrayminus": lo, "thickness": 1, "width": 2}}
        name = f"{s} · {be}"
        fig.add_trace(go.Scatter(
            x=g["batch"], y=ratio, mode="lines+markers+text" if several_T else "lines+markers",
            text=[f"T={int(t)}" for t in g["draft_tokens"]] if several_T else None,
            textposition="top center", textfont={"size": 9}, name=name, legendgroup=str(s), showlegend=False,
            line={"color": option_color(s), "dash": backend_dash(be)}, marker={"size": 6, "color": option_color(s)},
            customdata=list(zip(g["tpot_ms"], g["draft_tokens"])), **err,
            hovertemplate=f"{name}<br>B=%{{x}}: %{{y:.3f}}× the best {BASELINE}<br>TPOT %{{customdata[0]:.3g}} ms,"
                          " T=%{customdata[1]}<extra></extra>"), row=2, col=col)
    return drawn


def _decode_note(fig, c: pd.DataFrame, base: pd.Series, col: int) -> None:
    """Plain decode (no speculation) is far above every option: its ratio range, written in the panel."""
    d = c[c["strategy"] == "decode"]
    if d.empty:
        return
    r = (d.groupby("batch")["tpot_ms"].min().astype(float) / base).dropna()
    if r.empty:
        return
    xref, yref = f"x{col + 1} domain", f"y{col + 1} domain"     # row 2 (row 1 spans every column: x, y)
    fig.add_annotation(text=f"plain decode (no speculation): {r.min():.2f}–{r.max():.2f}× (off the scale)",
                       xref=xref, yref=yref, x=0.02, y=0.98, xanchor="left", yanchor="top", showarrow=False,
                       font={"size": 11, "color": "#222"}, bgcolor="rgba(255,255,255,0.8)")


def plan_figure(candidates: pd.DataFrame):
    """Who wins per batch and by how much, over every priced option relative to the best ``full_cache``
    (:func:`gdnlab.model.plan_candidates`' table; see the module docstring). A line per (strategy,
    backend) and state dtype panel takes that option's fastest T at each batch (the T is written at
    each point when several were priced); plain decode (no speculation) is written in each panel
    (its ratio range), not drawn: it sits far above every option and would flatten them."""
    from plotly.subplots import make_subplots

    c = _table("candidates", candidates, ("batch", *_KEY, "tpot_ms"), "gdnlab.model.plan_candidates(...)")
    c = c[pd.to_numeric(c["tpot_ms"], errors="coerce").notna()]
    if "fits" in c.columns:
        c = c[c["fits"].fillna(True).astype(bool)]
    win = plan_winners(c)
    fc = c[c["strategy"] == BASELINE]
    base = (fc if len(fc) else c).groupby("batch")["tpot_ms"].min().astype(float)
    base_name = f"the best {BASELINE}" if len(fc) else "the best option"
    dtypes = sorted(c["state_dtype"].astype(str).unique())
    several_T = c.loc[c["strategy"] != "decode", "draft_tokens"].nunique() > 1
    fig = make_subplots(rows=2, cols=len(dtypes), row_heights=[0.2, 0.8], vertical_spacing=0.16,
                        horizontal_spacing=0.06, shared_yaxes=True,
                        specs=[[{"colspan": len(dtypes)}] + [None] * (len(dtypes) - 1), [{}] * len(dtypes)],
                        subplot_titles=["fastest option per batch B, its margin over the runner-up"
                                        + ("" if win["tie"].notna().any() else " (no TPOT ranges: ties not judged)")]
                        + [f"{sd} state" for sd in dtypes])
    shown: set[str] = set()
    _winner_squares(fig, win, shown)
    ratios: list[float] = []
    for j, sd in enumerate(dtypes, start=1):
        cd = c[c["state_dtype"].astype(str) == sd]
        ratios += _ratio_lines(fig, cd, base, j, several_T)
        _decode_note(fig, cd, base, j)
        fig.add_hline(y=1.0, line={"color": "#888", "dash": "dot", "width": 1}, row=2, col=j)
        measured_log_axis(fig, c["batch"], row=2, col=j)
        fig.update_xaxes(title_text=axis_title("batch B", "running requests"), row=2, col=j)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(b) for b in win["batch"]],
                     row=1, col=1)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=["runner-up", "fastest"],
                     range=[-0.6, 1.6], row=1, col=1)
    if ratios:
        lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
        fig.update_yaxes(range=[max(0.0, lo - 0.08 * (hi - lo + 0.1)), hi + 0.12 * (hi - lo + 0.1)], row=2)
    fig.update_yaxes(title_text=axis_title(f"TPOT / {base_name}", "×; lower is faster"), row=2, col=1)
    keyed = {*c.loc[c["strategy"] != "decode", "strategy"], *win["strategy"], *win["runner_up_strategy"].dropna()}
    _legend_keys(fig, _order(keyed), {str(b): backend_dash(b) for b in sorted(c["backend"].astype(str).unique())},
                 "backend")
    fig.update_layout(title=f"Which option to run per batch: expected TPOT over {base_name} at each B (lower is "
                            "faster)", template="plotly_white", height=660, hovermode="closest", margin={"t": 100})
    legend_right(fig, title="colour: strategy")
    prov = c.attrs.get("provenance") or (str(c["provenance"].iloc[0]) if "provenance" in c.columns else "projected")
    return add_provenance(fig, prov)


def speedup_vs_accept_figure(table: pd.DataFrame):
    """Speedup over plain decode vs accept length (:func:`gdnlab.model.speedup_table`): a panel per
    batch, colour = strategy, line style = backend (T when one backend and several T); break-even at
    speedup 1, the seed's reported accept-length band."""
    from plotly.subplots import make_subplots

    from ..seed import SEED_ACCEPT_LEN

    t = _table("table", table, ("strategy", "draft_tokens", "batch", "accept_len", "speedup"),
               "gdnlab.model.speedup_table(...)")
    if "backend" not in t.columns:
        t = t.assign(backend="")
    go = _go()
    batches = sorted(t["batch"].unique())
    backends = sorted(t["backend"].astype(str).unique())
    Ts = sorted(int(x) for x in t["draft_tokens"].unique())
    by_backend = len(backends) > 1 or len(Ts) == 1
    dashes = ({b: backend_dash(b) for b in backends} if by_backend else
              {f"T={T}": _T_DASH[i % len(_T_DASH)] for i, T in enumerate(Ts)})
    fig = make_subplots(rows=1, cols=len(batches), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"B={int(b)}" for b in batches])
    for j, B in enumerate(batches, start=1):
        for (s, T, be), r in t[t["batch"] == B].groupby(["strategy", "draft_tokens", "backend"], sort=False):
            name = f"{s} T={int(T)}" + (f" · {be}" if be else "") + f" · B={int(B)}"
            dash = dashes[str(be)] if by_backend else dashes[f"T={int(T)}"]
            fig.add_trace(go.Scatter(x=r["accept_len"], y=r["speedup"], mode="lines", name=name, legendgroup=str(s),
                                     showlegend=False, line={"color": option_color(s), "dash": dash},
                                     hovertemplate=f"{name}<br>accept length %{{x:.2f}}: %{{y:.3f}}×<extra></extra>"),
                          row=1, col=j)
        fig.add_hline(y=1.0, line={"color": "black", "width": 1}, row=1, col=j)
        lo, hi = SEED_ACCEPT_LEN
        fig.add_vrect(x0=lo, x1=hi, fillcolor="green", opacity=0.15, line_width=0, row=1, col=j)
        fig.update_xaxes(title_text=axis_title("accept length", "tokens per step"), row=1, col=j)
    _legend_keys(fig, _order(t["strategy"]), dashes, "backend" if by_backend else "")
    fig.add_annotation(text="shaded: the seed's accept length (reported) · black line: break-even", xref="paper",
                       yref="paper", x=0, y=1.0, yshift=36, showarrow=False, xanchor="left", yanchor="bottom",
                       font={"size": 11, "color": "#555"})
    fig.update_yaxes(title_text=axis_title("speedup over plain decode", "×"), row=1, col=1)
    fig.update_layout(title="Speedup of speculation vs accept length (a panel per batch B)", template="plotly_white",
                      height=480, margin={"t": 120})
    legend_right(fig, title="colour: strategy")
    text = t.attrs.get("provenance") or "projected"
    return add_provenance(fig, f"{text} · {SEED_LABEL}")


def tokens_per_step_figure(table: pd.DataFrame):
    """Tokens per step (accept length) vs per-draft accept rate for each T
    (:func:`gdnlab.model.tokens_per_step_table`, chain model): *projected* (a model, no measurement)."""
    from ..provenance import label
    from .style import draft_tokens_color

    t = _table("table", table, ("draft_tokens", "rate", "accept_len"), "gdnlab.model.tokens_per_step_table()")
    go = _go()
    fig = go.Figure([go.Scatter(x=r["rate"], y=r["accept_len"], mode="lines", name=f"T={int(T)}",
                                line={"color": draft_tokens_color(int(T))})
                     for T, r in t.groupby("draft_tokens")])
    fig.update_layout(title="Tokens per verify step vs per-draft accept rate (chain model)", template="plotly_white",
                      xaxis_title=axis_title("per-draft accept rate", "fraction"),
                      yaxis_title=axis_title("accept length", "tokens per step"))
    legend_right(fig, title="draft tokens")
    return add_provenance(fig, label({}, "projected", model="chain model (gdnlab.acceptance)"))
