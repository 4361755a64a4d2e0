"""Figures of the component step model and speculative decoding (plotly), drawn from tables it is given.

Builders take the tidy DataFrames of :mod:`gdnlab.model` (:func:`~gdnlab.model.validate`,
:func:`~gdnlab.model.plan_candidates`, :func:`~gdnlab.model.speedup_table`,
:func:`~gdnlab.model.tokens_per_step_table`, :func:`~gdnlab.model.breakdown_by_batch`); they never fit
a model or run a simulation. Every figure carries a provenance footnote read from its table (the
table's ``attrs["provenance"]`` names the GPU, the components and the fitted numbers); the seed's
numbers are labelled "reported (seed, GB200)".
"""
from __future__ import annotations

import pandas as pd

from ..provenance import label
from .inputs import require_table as _table
from .layout import legend_right
from .plan import SEED_LABEL, plan_figure, speedup_vs_accept_figure, tokens_per_step_figure
from .provenance import add_provenance
from .style import PALETTE, axis_title, color_for, kernel_class_color

__all__ = ["step_breakdown_figure", "checks_figure", "plan_figure", "speedup_vs_accept_figure",
           "tokens_per_step_figure", "SEED_LABEL", "PART_COLORS"]

#: one colour per step part (:data:`gdnlab.model.PARTS`; GDN kernels as in the trace figures)
PART_COLORS = {"gdn_kernel": kernel_class_color("gdn"), "gdn_other": PALETTE[3], "attention": PALETTE[1],
               "attn_other": PALETTE[6], "moe": PALETTE[2], "lm_head": PALETTE[7], "draft": PALETTE[5],
               "allreduce": PALETTE[4], "graph": PALETTE[8], "host": PALETTE[9]}


def _go():
    import plotly.graph_objects as go  # lazy: plotly is not on the GPU machine

    return go


def _provenance(df: pd.DataFrame, seed: bool = False) -> str:
    text = df.attrs.get("provenance") or "projected"
    return f"{text} · {SEED_LABEL}" if seed else text


def step_breakdown_figure(table: pd.DataFrame):
    """Stacked parts of one iteration (µs) per batch (:func:`gdnlab.model.breakdown_by_batch`): GDN
    kernels, other GDN-layer ops, attention, MoE, lm_head, draft, all-reduce, graph replay, host."""
    t = _table("table", table, ("part", "time_us", "share", "batch"), "gdnlab.model.breakdown_by_batch(...)")
    go = _go()
    fig = go.Figure()
    for part, g in t.groupby("part", sort=False):
        fig.add_trace(go.Bar(x=[str(c) for c in g["batch"]], y=g["time_us"], name=part,
                             marker_color=color_for(part, PART_COLORS), customdata=g["share"],
                             hovertemplate="%{y:.0f} µs (%{customdata:.1%})"))
    kind = "MTP step" if "mtp" in t and bool(t["mtp"].iloc[0]) else "decode step"
    backend = t["backend"].iloc[0] if "backend" in t else "?"
    fig.update_layout(barmode="stack", title=f"Parts of one {kind} — {backend} (share of the step in hover)",
                      xaxis_title=axis_title("batch B", "running requests"),
                      yaxis_title=axis_title("time per iteration", "µs"), template="plotly_white")
    legend_right(fig, title="part of the step")
    return add_provenance(fig, _provenance(t))


_CHECK_TITLES = {"slice": "slice:<br>composed vs measured (H200)",
                 "cross_gpu": "GDN kernels:<br>H100 projected vs measured",
                 "seed": "seed (GB200):<br>projected vs reported"}


def checks_figure(v: pd.DataFrame, tol: float = 0.10):
    """Relative error of every row of :func:`gdnlab.model.validate`, one panel per check, the ±``tol``
    band shaded; seed rows split into fit / held-out, with the trivial baselines' errors beside."""
    from plotly.subplots import make_subplots

    v = _table("v", v, ("check", "predicted", "observed", "rel_error", "role"), "gdnlab.model.validate()")
    checks = [c for c in ("slice", "cross_gpu", "seed") if (v["check"] == c).any()]
    go = _go()
    fig = make_subplots(rows=1, cols=len(checks), subplot_titles=[_CHECK_TITLES[c] for c in checks],
                        horizontal_spacing=0.06)
    shown: set[str] = set()
    for col, c in enumerate(checks, start=1):
        g = v[v["check"] == c].reset_index(drop=True)
        labels = [f"{m} {b or ''} {xn}={x}".replace(" None", "") for m, b, xn, x in
                  zip(g["mode"] if c != "seed" else g["metric"], g["backend"].fillna("") if c != "slice" else
                      g["kv_len"].map(lambda k: f"kv {int(k)}" if pd.notna(k) else ""), g["x_name"], g["x"])]
        fig.add_hrect(y0=-100 * tol, y1=100 * tol, fillcolor="green", opacity=0.12, line_width=0, row=1, col=col)
        for role, r in g.groupby("role"):
            fig.add_trace(go.Scatter(x=r.index, y=100 * r["rel_error"], mode="markers", name=f"model ({role})",
                                     legendgroup=role, showlegend=f"model ({role})" not in shown,
                                     marker={"color": PALETTE[{"check": 0, "fit": 2, "heldout": 1}.get(role, 3)],
                                             "size": 8},
                                     text=[labels[i] for i in r.index],
                                     hovertemplate="%{text}: %{y:+.1f} %<extra></extra>"),
                          row=1, col=col)
        for b, sym, name in (("baseline_err_constant_speedup", "x", "constant speedup (oracle)"),
                             ("baseline_err_triton_eq_flashinfer", "cross", "triton = flashinfer")):
            if b in g and g[b].notna().any():
                r = g[g[b].notna()]
                fig.add_trace(go.Scatter(x=r.index, y=100 * r[b], mode="markers", name=f"baseline: {name}",
                                         marker={"symbol": sym, "color": "grey", "size": 8},
                                         legendgroup=name, showlegend=f"baseline: {name}" not in shown,
                                         text=[labels[i] for i in r.index],
                                         hovertemplate="%{text}: %{y:+.1f} %<extra></extra>"), row=1, col=col)
                shown.add(f"baseline: {name}")
        shown.update(f"model ({role})" for role in g["role"].unique())
        fig.update_yaxes(title_text=axis_title("relative error", "%") if col == 1 else None, row=1, col=col)
        fig.update_xaxes(title_text="row", row=1, col=col)
    fig.update_layout(title=f"Component model checks (band: ±{tol:.0%})", height=500, template="plotly_white",
                      margin={"t": 110})
    legend_right(fig, title="rows")
    params = v.attrs.get("params", {})
    ptxt = " · ".join(f"{k}: scale {p['component_scale']:.3g}, {p['request_us']:.3g} µs/request"
                      for k, p in params.items())
    return add_provenance(fig, label({"gpu": "H200 (measured) / GB200 (projected)"}, "measured",
                                     projected="cross-GPU and seed rows", fitted=ptxt or None) + f" · {SEED_LABEL}")
