"""Figures of the step model and speculative decoding (plotly), drawn from tables it is given.

Builders take the tidy DataFrames of :mod:`gdnlab.model` (``speedup_grid``, ``break_even_table``,
``breakdown_table``, ``gdn_cost_table``, ``tpot_projection``, ``throughput_projection``,
``validate_against_seed``) and the seed's rows (:mod:`gdnlab.seed`); they never fit a model or run a
simulation. Every figure carries a provenance footnote: model curves are "projected" (the table's
``attrs["provenance"]`` names the GPU, the served model and the fitted parameters), seed points are
"reported (seed, GB200)".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..provenance import label
from ..seed import SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS
from .provenance import add_provenance
from .style import PALETTE, axis_title, backend_color, color_for, kernel_class_color

__all__ = ["speedup_heatmap_figure", "break_even_figure", "step_breakdown_figure", "verify_cost_figure",
           "tpot_vs_concurrency_figure", "throughput_vs_osl_figure", "validation_figure", "SEED_LABEL", "PART_COLORS",
           "checks_figure", "plan_figure", "speedup_vs_accept_figure", "tokens_per_step_figure"]

SEED_LABEL = "reported (seed, GB200): SGLang PR #23273, Qwen3.5-397B-A17B-NVFP4 TP4"
#: one colour per step part (GDN kernel and commit as in the trace figures; the rest from the palette)
PART_COLORS = {"gdn": kernel_class_color("gdn"), "gdn_commit": kernel_class_color("commit"),
               "attention": PALETTE[1], "weights": PALETTE[2], "allreduce": PALETTE[4], "draft": PALETTE[5],
               "fitted:pass_us": PALETTE[6], "fitted:request_us": PALETTE[7], "fitted:token_us": PALETTE[8],
               "fitted:kv_mtoken_us": PALETTE[9], "gdn_kernel": kernel_class_color("gdn"), "gdn_other": PALETTE[3],
               "attn_other": PALETTE[6], "moe": PALETTE[2], "lm_head": PALETTE[7], "graph": PALETTE[8],
               "host": PALETTE[9]}
_KERNEL_STATE_TEXT = {"before_fix": "before flashinfer#3147", "fixed": "with flashinfer#3147 and the slice fix"}
#: legend in one row above the plot area, clear of the axes, colour bars and the footnote
_LEGEND_ABOVE = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left"}


def _go():
    import plotly.graph_objects as go  # lazy: plotly is not on the GPU machine

    return go


def _table(name: str, df, columns: tuple[str, ...], source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame from {source}, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; pass {source}")
    if df.empty:
        raise ValueError(f"{name} has no rows; pass {source}")
    return df


def _provenance(df: pd.DataFrame, seed: bool = False) -> str:
    text = df.attrs.get("provenance") or "projected"
    return f"{text} · {SEED_LABEL}" if seed else text


def speedup_heatmap_figure(grid: pd.DataFrame):
    """Speculation speedup over accept length x draft tokens T (:func:`gdnlab.model.speedup_grid`);
    blank cells have accept length > T, the black 1.0 contour is where speculation stops paying, and
    the seed's setting (T=4, accept length 3.13-3.22) is marked."""
    g = _table("grid", grid, ("draft_tokens", "accept_len", "speedup"), "gdnlab.model.speedup_grid(...)")
    Ts = list(dict.fromkeys(int(t) for t in g["draft_tokens"]))
    acc = np.asarray(list(dict.fromkeys(float(a) for a in g["accept_len"])))
    z = g.pivot(index="draft_tokens", columns="accept_len", values="speedup").reindex(index=Ts, columns=acc)
    z = z.to_numpy(float)
    go = _go()
    zmin, zmax = float(np.nanmin(z)), float(np.nanmax(z))
    white = min(max((1.0 - zmin) / (zmax - zmin), 0.0), 1.0) if zmax > zmin else 0.5
    scale = [[0.0, "#b2182b"], [white, "#f7f7f7"], [1.0, "#2166ac"]] if 0 < white < 1 else "Blues"
    fig = go.Figure(go.Heatmap(x=acc, y=Ts, z=z, colorscale=scale, zmin=zmin, zmax=zmax,
                               colorbar={"title": axis_title("speedup", "×")},
                               hovertemplate="accept length %{x:.2f}<br>T %{y}<br>speedup %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Contour(x=acc, y=Ts, z=z, contours={"start": 1, "end": 1, "coloring": "none"},
                             line={"color": "black", "width": 2}, showscale=False, name="break-even (speedup 1)",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[float(np.mean(SEED_ACCEPT_LEN))], y=[SEED_DRAFT_TOKENS], mode="markers",
                             marker={"symbol": "x", "size": 12, "color": "black"},
                             name=f"seed setting (T={SEED_DRAFT_TOKENS}, accept length "
                                  f"{SEED_ACCEPT_LEN[0]}-{SEED_ACCEPT_LEN[1]})"))
    backend = g["backend"].iloc[0] if "backend" in g else "?"
    batch = g["batch"].iloc[0] if "batch" in g else "?"
    fig.update_layout(title={"text": f"Speculation speedup vs accept length and T — {backend}, {batch} requests",
                             "y": 0.97, "yanchor": "top"},
                      xaxis_title=axis_title("accept length", "tokens per step"),
                      yaxis_title=axis_title("draft tokens T", "verify positions"),
                      legend=_LEGEND_ABOVE, margin={"t": 110})
    return add_provenance(fig, _provenance(g))


def break_even_figure(table: pd.DataFrame):
    """Accept length below which speculation stops paying, per backend and batch
    (:func:`gdnlab.model.break_even_table`), with the seed's reported accept-length band."""
    t = _table("table", table, ("backend", "batch", "draft_tokens", "break_even_accept_len"),
               "gdnlab.model.break_even_table(...)")
    T = int(t["draft_tokens"].iloc[0])
    go = _go()
    fig = go.Figure()
    for b, r in t.groupby("backend", sort=False):
        fig.add_trace(go.Scatter(x=r["batch"], y=r["break_even_accept_len"], mode="lines+markers",
                                 name=f"{b} (projected)", line={"color": backend_color(b)}))
    lo, hi = SEED_ACCEPT_LEN
    fig.add_hrect(y0=lo, y1=hi, fillcolor="green", opacity=0.2, line_width=0,
                  annotation_text=f"seed accept length {lo}-{hi} (reported)", annotation_position="top left")
    fig.update_layout(title=f"Break-even accept length (T={T}) vs batch",
                      xaxis={"title": axis_title("batch B", "running requests"), "type": "log"},
                      yaxis={"title": axis_title("break-even accept length", "tokens per step"), "range": [1, T]})
    return add_provenance(fig, _provenance(t, seed=True))


def step_breakdown_figure(table: pd.DataFrame):
    """Stacked parts of one iteration (µs) per batch (:func:`gdnlab.model.breakdown_table`): GDN
    kernels, commit, attention, weights, all-reduce, draft, and each fitted term."""
    t = _table("table", table, ("part", "time_us", "share", "batch"), "gdnlab.model.breakdown_table(...)")
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
                      yaxis_title=axis_title("time per iteration", "µs"))
    return add_provenance(fig, _provenance(t))


def verify_cost_figure(table: pd.DataFrame):
    """GDN time of one layer call (µs) vs draft tokens T per backend and batch
    (:func:`gdnlab.model.gdn_cost_table`; T=1 is decode)."""
    t = _table("table", table, ("backend", "batch", "draft_tokens", "time_us"), "gdnlab.model.gdn_cost_table(...)")
    go = _go()
    fig = go.Figure()
    for (b, n), r in t.groupby(["backend", "batch"], sort=False):
        fig.add_trace(go.Scatter(x=r["draft_tokens"], y=r["time_us"], mode="lines+markers", name=f"{b} B={n}",
                                 line={"color": backend_color(b), "dash": "solid" if n >= 64 else "dot"}))
    fig.update_layout(title="GDN verify cost per layer vs T (state read + T intermediate writes)",
                      xaxis_title=axis_title("draft tokens T", "tokens per request"),
                      yaxis={"title": axis_title("GDN time per layer call", "µs"), "type": "log"})
    return add_provenance(fig, _provenance(t))


def tpot_vs_concurrency_figure(projected: pd.DataFrame, seed_rows: pd.DataFrame | None = None):
    """Mean TPOT vs client concurrency, MTP on (:func:`gdnlab.model.tpot_projection`), with the seed's
    TPOT table (:func:`gdnlab.seed.tpot_vs_concurrency`) as points and the 128-request cap marked."""
    p = _table("projected", projected, ("backend", "concurrency", "mean_tpot_ms"), "gdnlab.model.tpot_projection(...)")
    go = _go()
    fig = go.Figure()
    for b, r in p.groupby("backend", sort=False):
        fig.add_trace(go.Scatter(x=r["concurrency"], y=r["mean_tpot_ms"], mode="lines", name=f"{b} (projected)",
                                 line={"color": backend_color(b)}))
    ymax = float(p["mean_tpot_ms"].max())
    seed = seed_rows is not None and len(seed_rows) > 0
    if seed:
        s = _table("seed_rows", seed_rows, ("backend", "concurrency", "mean_tpot_ms"),
                   "gdnlab.seed.tpot_vs_concurrency(...)")
        for b, q in s.groupby("backend", sort=False):
            fig.add_trace(go.Scatter(x=q["concurrency"], y=q["mean_tpot_ms"], mode="markers",
                                     name=f"{b} (reported, seed)",
                                     marker={"color": backend_color(b), "size": 9, "symbol": "circle-open"}))
        ymax = max(ymax, float(s["mean_tpot_ms"].max()))
    ymax *= 1.05
    fig.add_trace(go.Scatter(x=[128, 128], y=[0, ymax], mode="lines", line={"color": "grey", "dash": "dot"},
                             name="--max-running-requests 128 (beyond: queueing)", hoverinfo="skip"))
    state = str(p.attrs.get("kernel_state", p["kernel_state"].iloc[0] if "kernel_state" in p else ""))
    state = _KERNEL_STATE_TEXT.get(state, state.replace("_", " "))
    fig.update_layout(title=f"Mean TPOT vs concurrency, MTP on ({state})".replace(" ()", ""),
                      xaxis={"title": axis_title("client concurrency", "requests"), "type": "log"},
                      yaxis_title=axis_title("mean TPOT", "ms"))
    return add_provenance(fig, _provenance(p, seed=seed))


def throughput_vs_osl_figure(projected: pd.DataFrame, seed_rows: pd.DataFrame | None = None):
    """Output throughput vs OSL with and without MTP (:func:`gdnlab.model.throughput_projection`),
    with the seed's OSL sweep (:func:`gdnlab.seed.osl_sweep`) as points."""
    p = _table("projected", projected, ("backend", "mtp", "osl", "output_throughput_tok_s"),
               "gdnlab.model.throughput_projection(...)")
    go = _go()
    fig = go.Figure()
    for (b, mtp), r in p.groupby(["backend", "mtp"], sort=False):
        fig.add_trace(go.Scatter(x=r["osl"], y=r["output_throughput_tok_s"], mode="lines",
                                 name=f"{b} {'MTP' if mtp else 'no-MTP'} (projected)",
                                 line={"color": backend_color(b), "dash": "solid" if mtp else "dash"}))
    seed = seed_rows is not None and len(seed_rows) > 0
    if seed:
        s = _table("seed_rows", seed_rows, ("backend", "mtp", "osl", "output_throughput_tok_s"),
                   "gdnlab.seed.osl_sweep()")
        for (b, mtp), q in s.groupby(["backend", "mtp"]):
            fig.add_trace(go.Scatter(x=q["osl"], y=q["output_throughput_tok_s"], mode="markers",
                                     name=f"{b} {'MTP' if mtp else 'no-MTP'} (reported, seed)",
                                     marker={"color": backend_color(b), "size": 10,
                                             "symbol": "circle-open" if mtp else "square-open"}))
    fig.update_layout(title="Output throughput vs OSL, with and without MTP (256 prompts, <=128 running)",
                      xaxis={"title": axis_title("OSL", "tokens"), "type": "log"},
                      yaxis_title=axis_title("output throughput", "tok/s"))
    return add_provenance(fig, _provenance(p, seed=seed))


def validation_figure(v: pd.DataFrame):
    """Predicted vs reported for every compared seed number (:func:`gdnlab.model.validate_against_seed`),
    fit rows and held-out rows marked, one panel per unit (throughput, TPOT, ratios), with y = x."""
    from plotly.subplots import make_subplots

    v = _table("v", v, ("metric", "predicted", "reported", "rel_error", "role"),
               "gdnlab.model.validate_against_seed()")
    groups = [("output throughput", "tok/s", v["metric"] == "output_throughput"),
              ("mean TPOT", "ms", v["metric"] == "mean_tpot"),
              ("MTP speedup, backend ratios", "ratio", ~v["metric"].isin(["output_throughput", "mean_tpot"]))]
    go = _go()
    fig = make_subplots(rows=1, cols=3, subplot_titles=[axis_title(q, u) for q, u, _ in groups],
                        horizontal_spacing=0.08)
    style = {"fit": {"color": PALETTE[0], "symbol": "circle"}, "heldout": {"color": PALETTE[1], "symbol": "diamond"}}
    for col, (_, unit, mask) in enumerate(groups, start=1):
        g = v[mask]
        if g.empty:
            continue
        lo = float(min(g["predicted"].min(), g["reported"].min())) * 0.95
        hi = float(max(g["predicted"].max(), g["reported"].max())) * 1.05
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "grey", "dash": "dot"},
                                 showlegend=col == 1, name="predicted = reported"), row=1, col=col)
        for role, r in g.groupby("role"):
            text = [f"{m} {b} {xn}={x}: {e:+.1%}" for m, b, xn, x, e in
                    zip(r["metric"], r.get("backend", ""), r.get("x_name", ""), r.get("x", ""), r["rel_error"])]
            fig.add_trace(go.Scatter(x=r["reported"], y=r["predicted"], mode="markers", text=text,
                                     marker={**style.get(role, {}), "size": 9}, name=role,
                                     legendgroup=role, showlegend=col == 1,
                                     hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=axis_title("reported (seed)", unit), row=1, col=col)
        fig.update_yaxes(title_text=axis_title("predicted (model)", unit), row=1, col=col)
    hs = v[v["metric"] == "mtp_speedup"]
    worst = float(hs["rel_error"].abs().max()) if len(hs) else float("nan")
    fig.update_layout(title=f"Step model vs the seed: fit rows and held-out rows (max MTP-speedup error {worst:.1%})",
                      width=1300, height=480)
    params = v.attrs.get("params", {})
    ptxt = " · ".join(f"{k}: " + ", ".join(f"{n}={val:.4g}" for n, val in p.items() if isinstance(val, float))
                      for k, p in params.items())
    gpu = v.attrs.get("gpu", {})
    prov = {"gpu": f"{gpu.get('name', 'GB200')} {gpu.get('peak_hbm_gbps', '')} GB/s", "sm": gpu.get("sm")}
    text = f"{label(prov, 'projected', fitted=ptxt or None)} · {SEED_LABEL}"
    return add_provenance(fig, text)


# ============================================================================ component model
_CHECK_TITLES = {"slice": "slice: composed vs measured (H200)", "cross_gpu": "GDN kernels: H100 projected vs measured",
                 "seed": "seed (GB200): projected vs reported"}


def checks_figure(v: pd.DataFrame, tol: float = 0.10):
    """Relative error of every row of :func:`gdnlab.model.validate`, one panel per check, the ±``tol``
    band shaded; seed rows split into fit / held-out, with the trivial baselines' errors beside."""
    from plotly.subplots import make_subplots

    v = _table("v", v, ("check", "predicted", "observed", "rel_error", "role"), "gdnlab.model.validate()")
    checks = [c for c in ("slice", "cross_gpu", "seed") if (v["check"] == c).any()]
    go = _go()
    fig = make_subplots(rows=1, cols=len(checks), subplot_titles=[_CHECK_TITLES[c] for c in checks],
                        horizontal_spacing=0.06)
    for col, c in enumerate(checks, start=1):
        g = v[v["check"] == c].reset_index(drop=True)
        labels = [f"{m} {b or ''} {xn}={x}".replace(" None", "") for m, b, xn, x in
                  zip(g["mode"] if c != "seed" else g["metric"], g["backend"].fillna("") if c != "slice" else
                      g["kv_len"].map(lambda k: f"kv {int(k)}" if pd.notna(k) else ""), g["x_name"], g["x"])]
        fig.add_hrect(y0=-100 * tol, y1=100 * tol, fillcolor="green", opacity=0.12, line_width=0, row=1, col=col)
        for role, r in g.groupby("role"):
            fig.add_trace(go.Scatter(x=r.index, y=100 * r["rel_error"], mode="markers", name=f"model ({role})",
                                     legendgroup=role, showlegend=col == len(checks) or c == "seed",
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
                                         text=[labels[i] for i in r.index],
                                         hovertemplate="%{text}: %{y:+.1f} %<extra></extra>"), row=1, col=col)
        fig.update_yaxes(title_text=axis_title("relative error", "%") if col == 1 else None, row=1, col=col)
        fig.update_xaxes(title_text="row", row=1, col=col)
    fig.update_layout(title=f"Component model checks (band: ±{tol:.0%})", width=1400, height=480,
                      legend=_LEGEND_ABOVE, margin={"t": 120})
    params = v.attrs.get("params", {})
    ptxt = " · ".join(f"{k}: scale {p['component_scale']:.3g}, {p['request_us']:.3g} µs/request"
                      for k, p in params.items())
    return add_provenance(fig, label({"gpu": "H200 (measured) / GB200 (projected)"}, "measured",
                                     projected="cross-GPU and seed rows", fitted=ptxt or None) + f" · {SEED_LABEL}")


def plan_figure(candidates: pd.DataFrame):
    """TPOT vs batch for every priced option (:func:`gdnlab.model.plan_candidates`); the best per batch
    ringed."""
    c = _table("candidates", candidates, ("batch", "strategy", "draft_tokens", "state_dtype", "backend", "tpot_ms"),
               "gdnlab.model.plan_candidates(...)").dropna(subset=["tpot_ms"])
    go = _go()
    fig = go.Figure()
    for (s, T, sd, be), r in c.groupby(["strategy", "draft_tokens", "state_dtype", "backend"], sort=False):
        name = f"decode · {sd} · {be}" if s == "decode" else f"{s} T={T} · {sd} · {be}"
        fig.add_trace(go.Scatter(x=r["batch"], y=r["tpot_ms"], mode="lines+markers", name=name,
                                 line={"color": color_for(s) if s != "decode" else "black",
                                       "dash": "dot" if sd == "float32" else "solid"},
                                 marker={"symbol": "circle" if be == "flashinfer" else "square", "size": 6},
                                 opacity=0.35 + 0.65 * (T == 4 or s == "decode")))
    best = c.loc[c.groupby("batch")["tpot_ms"].idxmin()]
    fig.add_trace(go.Scatter(x=best["batch"], y=best["tpot_ms"], mode="markers", name="best per batch",
                             marker={"symbol": "circle-open", "size": 16, "color": "red", "line": {"width": 2}},
                             text=[f"{s} T={t} {sd} {b}" for s, t, sd, b in
                                   zip(best["strategy"], best["draft_tokens"], best["state_dtype"], best["backend"])],
                             hovertemplate="B=%{x}: %{text}, %{y:.2f} ms<extra></extra>"))
    fig.update_layout(title="Expected TPOT per option vs batch (lower is better)",
                      xaxis={"title": axis_title("batch B", "running requests"), "type": "log"},
                      yaxis={"title": axis_title("TPOT", "ms"), "type": "log"}, height=560)
    return add_provenance(fig, c.attrs.get("provenance") or str(c["provenance"].iloc[0]))


def speedup_vs_accept_figure(table: pd.DataFrame):
    """Speedup over plain decode vs accept length per strategy, T and batch
    (:func:`gdnlab.model.speedup_table`); break-even at speedup 1, the seed's accept length band."""
    t = _table("table", table, ("strategy", "draft_tokens", "batch", "accept_len", "speedup"),
               "gdnlab.model.speedup_table(...)")
    go = _go()
    fig = go.Figure()
    batches = sorted(t["batch"].unique())
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for (s, T, B), r in t.groupby(["strategy", "draft_tokens", "batch"]):
        fig.add_trace(go.Scatter(x=r["accept_len"], y=r["speedup"], mode="lines", name=f"{s} T={T} B={B}",
                                 line={"color": PALETTE[sorted(t["draft_tokens"].unique()).index(T) % len(PALETTE)],
                                       "dash": dashes[batches.index(B) % len(dashes)]}))
    fig.add_hline(y=1.0, line={"color": "black", "width": 1}, annotation_text="break-even")
    lo, hi = SEED_ACCEPT_LEN
    fig.add_vrect(x0=lo, x1=hi, fillcolor="green", opacity=0.15, line_width=0,
                  annotation_text="seed accept length (reported)", annotation_position="top left")
    fig.update_layout(title="Speedup of speculation vs accept length (per strategy, T, batch)",
                      xaxis_title=axis_title("accept length", "tokens per step"),
                      yaxis_title=axis_title("speedup over plain decode", "×"), height=560)
    return add_provenance(fig, _provenance(t, seed=True))


def tokens_per_step_figure(table: pd.DataFrame):
    """Tokens per step (accept length) vs per-draft accept rate for each T
    (:func:`gdnlab.model.tokens_per_step_table`, chain model)."""
    t = _table("table", table, ("draft_tokens", "rate", "accept_len"), "gdnlab.model.tokens_per_step_table()")
    go = _go()
    fig = go.Figure([go.Scatter(x=r["rate"], y=r["accept_len"], mode="lines", name=f"T={T}")
                     for T, r in t.groupby("draft_tokens")])
    fig.update_layout(title="Tokens per verify step vs per-draft accept rate (chain model)",
                      xaxis_title=axis_title("per-draft accept rate", "fraction"),
                      yaxis_title=axis_title("accept length", "tokens per step"))
    return add_provenance(fig, "derived (chain model, gdnlab.acceptance)")
