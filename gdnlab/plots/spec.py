"""Figures for speculative decoding and the end-to-end step model (plotly).

Every figure carries a provenance footnote: model curves are "projected" (the GPU spec, the served
model and the fitted parameters are named), seed points are "reported (seed, GB200)". Functions take
an optional :class:`gdnlab.stepmodel.StepModel`; by default the model fitted on the seed
(:func:`gdnlab.stepmodel.seed_model`) is used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..provenance import label
from ..spec import SEED_ACCEPT_LEN, SEED_T
from ..stepmodel import SEED_SPEC, SpecConfig, StepModel, project, seed_model, validate_against_seed
from .provenance import add_provenance

__all__ = ["speedup_heatmap", "break_even_plot", "step_breakdown_plot", "verify_cost_plot",
           "tpot_vs_concurrency_plot", "throughput_vs_osl_plot", "validation_plot", "model_provenance"]

SEED_LABEL = "reported (seed, GB200): SGLang PR #23273, Qwen3.5-397B-A17B-NVFP4 TP4"
_COLORS = {"flashinfer": "#1f77b4", "triton": "#d62728", "flashinfer_pre3147": "#17becf"}


def _go():
    import plotly.graph_objects as go  # lazy: plotly is not on the GPU machine

    return go


def model_provenance(sm: StepModel, *, seed: bool = False, **extra) -> str:
    """Footnote text: ``projected · <GPU> (<sm>) · <model> · params ... · gdn <source>`` (+ the seed
    label); ``gdn`` names the measured sweep when the model uses one (:class:`gdnlab.stepmodel.MeasuredGDN`),
    else the bandwidth model."""
    prov = {"gpu": f"{sm.gpu.name} {sm.gpu.peak_hbm_gbps:g} GB/s", "sm": sm.gpu.sm}
    gdn = sm.measured.source if sm.measured is not None else "bandwidth model (gdnlab.stepmodel.GDN_KERNELS)"
    text = label(prov, "projected", model=sm.model.describe(), fitted=sm.params.short(),
                 params=sm.params.source, gdn=gdn, **extra)
    return f"{text} · {SEED_LABEL}" if seed else text


def _default(sm: StepModel | None, kernel_state: str = "fixed") -> StepModel:
    if sm is not None and not isinstance(sm, StepModel):
        raise ValueError(f"sm must be a StepModel or None, got {type(sm).__name__}")
    return sm or seed_model(kernel_state)


def speedup_heatmap(sm: StepModel | None = None, *, backend: str = "flashinfer", n: int = 128,
                    ctx_per_request: float = 288.0, Ts=range(2, 9), accept_lens=None):
    """Steady-state speedup of speculation over acceptance length x verify positions T (topk-1
    chain, T-1 draft steps) at ``n`` running requests; cells with accept length > T are blank and the
    1.0 contour is where speculation stops paying. The seed's point (T=4, acc 3.13-3.22) is marked."""
    sm = _default(sm)
    Ts = [int(t) for t in Ts]
    acc = np.linspace(1.0, max(Ts), 4 * (max(Ts) - 1) + 1) if accept_lens is None else np.asarray(accept_lens, float)
    z = np.full((len(Ts), acc.size), np.nan)
    for i, T in enumerate(Ts):
        for j, a in enumerate(acc):
            if 1.0 <= a <= T:
                z[i, j] = sm.speedup(backend, n, ctx_per_request, float(a), T)
    go = _go()
    zmin, zmax = float(np.nanmin(z)), float(np.nanmax(z))
    white = min(max((1.0 - zmin) / (zmax - zmin), 0.0), 1.0) if zmax > zmin else 0.5
    scale = [[0.0, "#b2182b"], [white, "#f7f7f7"], [1.0, "#2166ac"]] if 0 < white < 1 else "Blues"
    fig = go.Figure(go.Heatmap(x=acc, y=Ts, z=z, colorscale=scale, zmin=zmin, zmax=zmax,
                               colorbar={"title": "speedup", "x": 1.02},
                               hovertemplate="acc len %{x:.2f}<br>T %{y}<br>speedup %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Contour(x=acc, y=Ts, z=z, contours={"start": 1, "end": 1, "coloring": "none"},
                             line={"color": "black", "width": 2}, showscale=False, name="break-even",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[float(np.mean(SEED_ACCEPT_LEN))], y=[SEED_T], mode="markers",
                             marker={"symbol": "x", "size": 12, "color": "black"},
                             name="seed setting (T=4, acc 3.13-3.22)"))
    fig.update_layout(title=f"Speculation speedup vs acceptance length and T — {backend}, {n} requests",
                      xaxis_title="acceptance length (tokens per step, SGLang accept_length)",
                      yaxis_title="verify positions T (--speculative-num-draft-tokens)",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return add_provenance(fig, model_provenance(sm, backend=backend, batch=n, ctx=ctx_per_request))


def break_even_plot(sm: StepModel | None = None, *, backends=("flashinfer", "triton"),
                    concurrencies=(1, 2, 4, 8, 16, 32, 64, 128), T: int = SEED_T,
                    ctx_per_request: float = 288.0):
    """Acceptance length below which speculation stops paying, per backend and concurrency, with the
    seed's reported acceptance band."""
    sm = _default(sm)
    go = _go()
    fig = go.Figure()
    for b in backends:
        be = [sm.break_even_accept_len(b, c, ctx_per_request, T) for c in concurrencies]
        fig.add_trace(go.Scatter(x=list(concurrencies), y=be, mode="lines+markers", name=f"{b} (projected)",
                                 line={"color": _COLORS.get(b)}))
    fig.add_hrect(y0=SEED_ACCEPT_LEN[0], y1=SEED_ACCEPT_LEN[1], fillcolor="green", opacity=0.2, line_width=0,
                  annotation_text="seed acc len 3.13-3.22 (reported)")
    fig.update_layout(title=f"Break-even acceptance length (T={T}) vs concurrency",
                      xaxis={"title": "running requests", "type": "log"},
                      yaxis={"title": "break-even acceptance length", "range": [1, T]})
    return add_provenance(fig, model_provenance(sm, T=T, ctx=ctx_per_request, seed=True))


def step_breakdown_plot(sm: StepModel | None = None, *, backend: str = "flashinfer",
                        concurrencies=(1, 4, 16, 64, 128), ctx_per_request: float = 288.0,
                        spec: SpecConfig | None = SEED_SPEC):
    """Stacked parts of one iteration (µs) per concurrency: GDN kernels, commit, attention, weights,
    all-reduce, draft, and each fitted term — how much of a step the GDN layers take."""
    sm = _default(sm)
    df = pd.concat([sm.breakdown(backend, c, ctx_per_request, spec) for c in concurrencies], ignore_index=True)
    go = _go()
    fig = go.Figure()
    for part, g in df.groupby("part", sort=False):
        fig.add_trace(go.Bar(x=[str(c) for c in g["batch"]], y=g["time_us"], name=part,
                             customdata=g["share"], hovertemplate="%{y:.0f} µs (%{customdata:.1%})"))
    kind = "MTP step" if spec is not None else "decode step"
    fig.update_layout(barmode="stack", title=f"Parts of one {kind} — {backend} (GDN share marked in hover)",
                      xaxis_title="running requests", yaxis_title="time per iteration (µs)")
    return add_provenance(fig, model_provenance(sm, backend=backend, ctx=ctx_per_request))


def verify_cost_plot(sm: StepModel | None = None, *, backends=("flashinfer", "triton"), batches=(1, 16, 64, 128),
                     Ts=(1, 2, 3, 4, 6, 8)):
    """GDN verify time of one layer (µs) vs draft tokens T, per backend and batch (T=1 is decode)."""
    sm = _default(sm)
    go = _go()
    fig = go.Figure()
    for b in backends:
        for n in batches:
            y = [sm.gdn_call_us(b, "decode" if T == 1 else "verify", n, T) for T in Ts]
            fig.add_trace(go.Scatter(x=list(Ts), y=y, mode="lines+markers", name=f"{b} B={n}",
                                     line={"color": _COLORS.get(b), "dash": "solid" if n >= 64 else "dot"}))
    fig.update_layout(title="GDN verify cost per layer vs T (state read + T intermediate writes)",
                      xaxis_title="tokens per request T", yaxis={"title": "µs per layer call", "type": "log"})
    return add_provenance(fig, model_provenance(sm, gdn_state=str(sm.model.gdn.state_dtype)))


def tpot_vs_concurrency_plot(sm: StepModel | None = None, *, kernel_state: str = "fixed",
                             backends=("flashinfer", "triton"), concurrencies=(1, 4, 16, 32, 64, 128, 256)):
    """Mean TPOT vs concurrency (MTP on, ISL 32, OSL 512): simulated bench_serving runs with the seed's
    128-request cap, and the seed's TPOT table (``kernel_state`` "fixed" or "before_fix") overlaid."""
    from ..seed import tpot_vs_concurrency

    if kernel_state not in ("before_fix", "fixed"):
        raise ValueError(f"kernel_state must be 'before_fix' or 'fixed', got {kernel_state!r}")
    sm = _default(sm, kernel_state)
    fixed = kernel_state == "fixed"
    kern = {"flashinfer": "flashinfer" if fixed else "flashinfer_pre3147"}
    proj = project(sm, backends=[kern.get(b, b) for b in backends], concurrencies=concurrencies, osls=(512,),
                   specs={"MTP": SEED_SPEC})
    go = _go()
    fig = go.Figure()
    for b in backends:
        p = proj[proj["backend"] == kern.get(b, b)]
        fig.add_trace(go.Scatter(x=p["concurrency"], y=p["mean_tpot_ms"], mode="lines", name=f"{b} (projected)",
                                 line={"color": _COLORS.get(b)}))
    s = tpot_vs_concurrency(fixed)
    for b in backends:
        q = s[s["backend"] == b]
        fig.add_trace(go.Scatter(x=q["concurrency"], y=q["mean_tpot_ms"], mode="markers",
                                 name=f"{b} (reported, seed)", marker={"color": _COLORS.get(b), "size": 9,
                                                                       "symbol": "circle-open"}))
    ymax = float(max(proj["mean_tpot_ms"].max(), s["mean_tpot_ms"].max())) * 1.05
    fig.add_trace(go.Scatter(x=[128, 128], y=[0, ymax], mode="lines", line={"color": "grey", "dash": "dot"},
                             name="--max-running-requests 128 (beyond: queueing)", hoverinfo="skip"))
    fig.update_layout(title=f"Mean TPOT vs concurrency, MTP on ({kernel_state.replace('_', ' ')})",
                      xaxis={"title": "client concurrency", "type": "log"}, yaxis_title="mean TPOT (ms)")
    return add_provenance(fig, model_provenance(sm, kernel_state=kernel_state, isl=32, osl=512, seed=True))


def throughput_vs_osl_plot(sm: StepModel | None = None, *, kernel_state: str = "before_fix",
                           backends=("flashinfer", "triton"), osls=(512, 1024, 2048, 4096)):
    """Output throughput vs OSL with and without speculation (256 prompts at request rate inf, 128
    running at most, ISL 32), with the seed's OSL sweep overlaid. The seed's sweep ran before
    flashinfer#3147, hence the default ``kernel_state="before_fix"`` (FlashInfer modelled by the
    ``flashinfer_pre3147`` kernel numbers)."""
    from ..seed import osl_sweep

    if kernel_state not in ("before_fix", "fixed"):
        raise ValueError(f"kernel_state must be 'before_fix' or 'fixed', got {kernel_state!r}")
    sm = _default(sm, kernel_state)
    kern = {"flashinfer": "flashinfer_pre3147"} if kernel_state == "before_fix" else {}
    proj = project(sm, backends=[kern.get(b, b) for b in backends], concurrencies=(None,), osls=osls, num_prompts=256)
    go = _go()
    fig = go.Figure()
    for b in backends:
        for mtp, dash in ((False, "dash"), (True, "solid")):
            p = proj[(proj["backend"] == kern.get(b, b)) & (proj["mtp"] == mtp)]
            if not mtp and b != backends[0]:
                continue
            fig.add_trace(go.Scatter(x=p["osl"], y=p["output_throughput_tok_s"], mode="lines",
                                     name=f"{b} {'MTP' if mtp else 'no-MTP'} (projected)",
                                     line={"color": _COLORS.get(b), "dash": dash}))
    s = osl_sweep()
    for (b, mtp), q in s.groupby(["backend", "mtp"]):
        fig.add_trace(go.Scatter(x=q["osl"], y=q["output_throughput_tok_s"], mode="markers",
                                 name=f"{b} {'MTP' if mtp else 'no-MTP'} (reported, seed)",
                                 marker={"color": _COLORS.get(b), "size": 10,
                                         "symbol": "circle-open" if mtp else "square-open"}))
    fig.update_layout(title="Output throughput vs OSL, with and without MTP (256 prompts, <=128 running)",
                      xaxis={"title": "OSL (--random-output-len)", "type": "log"},
                      yaxis_title="output throughput (tok/s)")
    return add_provenance(fig, model_provenance(sm, kernel_state=kernel_state, isl=32, num_prompts=256, seed=True))


def validation_plot(v: pd.DataFrame | None = None):
    """Predicted vs reported for every compared seed number, fit rows and held-out rows marked, one
    panel per unit (throughput, TPOT, ratios), with the y = x line."""
    from plotly.subplots import make_subplots

    v = validate_against_seed() if v is None else v
    need = {"metric", "predicted", "reported", "rel_error", "role"}
    if not isinstance(v, pd.DataFrame) or not need <= set(v.columns):
        raise ValueError(f"v must be validate_against_seed()'s DataFrame with columns {sorted(need)}")
    groups = [("output throughput (tok/s)", v["metric"] == "output_throughput"),
              ("mean TPOT (ms)", v["metric"] == "mean_tpot"),
              ("ratios (MTP speedup, backend ratios)", ~v["metric"].isin(["output_throughput", "mean_tpot"]))]
    go = _go()
    fig = make_subplots(rows=1, cols=3, subplot_titles=[g for g, _ in groups])
    style = {"fit": {"color": "#1f77b4", "symbol": "circle"}, "heldout": {"color": "#ff7f0e", "symbol": "diamond"}}
    for col, (_, mask) in enumerate(groups, start=1):
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
        fig.update_xaxes(title_text="reported (seed)", row=1, col=col)
        fig.update_yaxes(title_text="predicted (model)", row=1, col=col)
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
