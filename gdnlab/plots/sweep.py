"""Figures of a kernel sweep (:func:`gdnlab.sweep.load_results`): time and bandwidth vs concurrency,
the cost of a pool-scoped intermediate buffer, and an overlay of the seed's reported numbers.

Every figure carries a provenance footnote built from the rows' own provenance columns
(:func:`sweep_provenance_text`). plotly is imported inside the functions (it is not on the GPU machine).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..provenance import label
from .provenance import add_provenance

__all__ = ["sweep_provenance_text", "time_vs_concurrency", "bandwidth_vs_concurrency", "intermediate_cost",
           "overlay_seed", "mode_label"]

_PROV_COLS = ("gpu", "sm", "driver", "cuda", "torch", "triton", "flashinfer")


def mode_label(df: pd.DataFrame) -> pd.Series:
    """``"decode"`` or ``"verify T=4"`` per row."""
    return df.apply(lambda r: "decode" if r["mode"] == "decode" else f"verify T={int(r['draft_tokens'])}", axis=1)


def _check(df: pd.DataFrame, need: tuple[str, ...]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame of sweep rows, got {type(df).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks sweep columns {missing} (load it with gdnlab.sweep.load_results)")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    out = df[df["status"] == "ok"].copy()
    if out.empty:
        raise ValueError("no rows with status 'ok' to plot")
    out["mode_label"] = mode_label(out)
    return out


def _series(d: pd.DataFrame) -> pd.Series:
    """Backend, plus the timing method / rotation when the rows mix several."""
    s = d["backend"].astype(str)
    if "timing_method" in d and d["timing_method"].nunique() > 1:
        s = s + " · " + d["timing_method"].astype(str)
    if "rotate" in d and d["rotate"].nunique() > 1:
        s = s + d["rotate"].map(lambda r: " · rotated" if bool(r) else "")
    return s


def sweep_provenance_text(df: pd.DataFrame, status: str = "measured") -> str:
    """Provenance label from the rows: the most frequent GPU's versions, the shapes and dtypes present.

    Rows from more than one GPU or software stack are named (``"+ 1 other GPU"``) rather than hidden.
    """
    _check(df, ("gpu",))
    if df.empty:
        raise ValueError("no rows: nothing to take provenance from")
    gpu = df["gpu"].mode().iloc[0]
    sub = df[df["gpu"] == gpu]
    prov = {c: (sub[c].dropna().mode().iloc[0] if c in sub and sub[c].notna().any() else None) for c in _PROV_COLS}
    shapes = ", ".join(sorted({f"{r.shape}: H={r.H} HV={r.HV} K={r.K} V={r.V}"
                               for r in df[["shape", "H", "HV", "K", "V"]].drop_duplicates().itertuples()}))
    dtypes = "state " + "/".join(sorted(df["state_dtype"].dropna().unique())) + \
        ", act " + "/".join(sorted(df["act_dtype"].dropna().unique()))
    extra: dict[str, Any] = {"shape": shapes, "dtypes": dtypes}
    timing = sorted(df["timing_method"].dropna().unique()) if "timing_method" in df else []
    if timing:
        gpu_timed = set(timing) & {"graph", "eager"}
        extra["timing"] = "/".join(timing) + (" (L2 flushed)" if gpu_timed and bool(df["l2_flush"].fillna(False).all())
                                              else "")
    n_other = df["gpu"].nunique() - 1
    if n_other:
        extra["mixed"] = f"+ {n_other} other GPU(s)"
    ts = df["timestamp"].dropna() if "timestamp" in df else pd.Series(dtype=str)
    if len(ts):
        extra["date"] = str(ts.min())[:10]
    return label(prov, status, **extra)


def _err_arrays(d: pd.DataFrame) -> dict:
    return {"error_y": (d["time_p90_us"] - d["time_us"]).clip(lower=0).to_numpy(),
            "error_y_minus": (d["time_us"] - d["time_p10_us"]).clip(lower=0).to_numpy()}


def time_vs_concurrency(df: pd.DataFrame, *, intermediate: str = "batch", timing: str | None = None):
    """Median time per call (µs, p10-p90 error bars) vs concurrency, one line per backend (and timing
    method when several), a panel per mode (columns) and state dtype (rows); log-log axes.

    ``intermediate``: which verify buffer rows to show (``"batch"``, the fixed path, by default).
    """
    import plotly.express as px

    _check(df, ("status", "concurrency", "time_us", "time_p10_us", "time_p90_us", "backend", "mode",
                "draft_tokens", "state_dtype", "intermediate"))
    d = _ok(df)
    d = d[(d["mode"] == "decode") | (d["intermediate"] == intermediate)]
    if timing is not None:
        d = d[d["timing_method"] == timing]
    if d.empty:
        raise ValueError(f"no ok rows for intermediate={intermediate!r}, timing={timing!r}")
    d = d.sort_values(["backend", "mode_label", "state_dtype", "concurrency"])
    d["series"] = _series(d)
    modes = sorted(d["mode_label"].unique(), key=lambda s: (s != "decode", len(s), s))
    fig = px.line(d, x="concurrency", y="time_us", color="series", facet_col="mode_label", facet_row="state_dtype",
                  markers=True, log_x=True, log_y=True, category_orders={"mode_label": modes},
                  hover_data=["kernel", "bw_gbps", "pct_of_peak_bw", "max_abs_err", "timing_method"],
                  labels={"concurrency": "concurrency (batch rows)", "time_us": "time per call (µs)",
                          "series": "backend", "mode_label": "", "state_dtype": "state"},
                  title="GDN kernel time vs concurrency (median, p10-p90)", **_err_arrays(d))
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    add_provenance(fig, sweep_provenance_text(d))
    return fig


def bandwidth_vs_concurrency(df: pd.DataFrame, *, intermediate: str = "batch"):
    """Roofline view: achieved bandwidth (GB/s, top) and % of the GPU's peak HBM bandwidth (bottom)
    vs concurrency, one line per backend · mode · state dtype, with the datasheet peak as a line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check(df, ("status", "concurrency", "bw_gbps", "pct_of_peak_bw", "peak_bw_gbps", "backend", "mode",
                "draft_tokens", "state_dtype", "intermediate"))
    d = _ok(df)
    d = d[(d["mode"] == "decode") | (d["intermediate"] == intermediate)].sort_values("concurrency")
    d["series"] = _series(d)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("achieved bandwidth (bytes from gdnlab.roofline.gdn_bytes / median time)",
                                        "% of peak HBM bandwidth"))
    dash = {"float32": "solid", "bfloat16": "dash"}
    for (be, ml, sd), g in d.groupby(["series", "mode_label", "state_dtype"], sort=True):
        name = f"{be} · {ml} · {sd}"
        common = dict(x=g["concurrency"], mode="lines+markers", name=name, legendgroup=name,
                      line={"dash": dash.get(sd, "dot")})
        fig.add_trace(go.Scatter(y=g["bw_gbps"], **common), row=1, col=1)
        fig.add_trace(go.Scatter(y=g["pct_of_peak_bw"], showlegend=False, **common), row=2, col=1)
    peak = d["peak_bw_gbps"].dropna()
    if len(peak):
        p = float(peak.mode().iloc[0])
        gpu = d["gpu"].mode().iloc[0]
        fig.add_hline(y=p, line={"color": "black", "dash": "dot"}, row=1, col=1,
                      annotation_text=f"{gpu} datasheet peak {p:.0f} GB/s", annotation_position="top left")
        fig.add_hline(y=100, line={"color": "black", "dash": "dot"}, row=2, col=1)
    fig.update_xaxes(type="log", title_text="concurrency (batch rows)", row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_yaxes(title_text="GB/s", row=1, col=1)
    fig.update_yaxes(title_text="% of peak", row=2, col=1)
    fig.update_layout(title="GDN kernels: memory roofline view", height=750)
    add_provenance(fig, sweep_provenance_text(d))
    return fig


def intermediate_cost(df: pd.DataFrame):
    """Pool-scoped vs batch-scoped verify buffer: time ratio ``pool / batch`` (1 = no cost) vs
    concurrency per backend and T, a panel per state dtype; points the backend rejected (FlashInfer's
    bf16 MTP asserts ``dim0 == B``) are drawn as crosses at ratio 1 and named in the hover text."""
    import plotly.express as px
    import plotly.graph_objects as go

    _check(df, ("status", "concurrency", "time_us", "backend", "mode", "draft_tokens", "state_dtype", "intermediate"))
    v = df[df["mode"] == "verify"]
    keys = ["backend", "draft_tokens", "state_dtype", "concurrency", "timing_method", "rotate"]
    v = v.assign(rotate=v["rotate"].fillna(False)) if "rotate" in v else v.assign(rotate=False)
    ok = v[v["status"] == "ok"]
    batch = ok[ok["intermediate"] == "batch"].set_index(keys)["time_us"]
    pool = ok[ok["intermediate"] == "pool"].set_index(keys)["time_us"]
    both = pd.DataFrame({"batch_us": batch, "pool_us": pool}).dropna().reset_index()
    rejected = v[(v["intermediate"] == "pool") & v["status"].str.startswith("rejected")]
    if both.empty and rejected.empty:
        raise ValueError("no verify rows with both intermediate='batch' and 'pool' (and none rejected)")
    both["ratio"] = both["pool_us"] / both["batch_us"]
    both["series"] = _series(both) + " · T=" + both["draft_tokens"].astype(str)
    both = both.sort_values(["series", "concurrency"])
    panels = sorted(set(both["state_dtype"]) | set(rejected["state_dtype"]))
    fig = px.line(both, x="concurrency", y="ratio", color="series", facet_col="state_dtype", markers=True, log_x=True,
                  category_orders={"state_dtype": panels}, hover_data=["batch_us", "pool_us"],
                  labels={"ratio": "time pool-scoped / batch-scoped", "concurrency": "concurrency (batch rows)",
                          "series": "backend · T", "state_dtype": "state"},
                  title="Cost of a pool-sized intermediate buffer (SGLang before PR #23273) vs the [:batch_size] slice")
    if not rejected.empty:
        for i, sd in enumerate(panels, start=1):
            r = rejected[rejected["state_dtype"] == sd]
            if r.empty:
                continue
            fig.add_trace(go.Scatter(x=r["concurrency"], y=[1.0] * len(r), mode="markers",
                                     marker={"symbol": "x", "size": 11, "color": "crimson"},
                                     name="rejected (pool-sized buffer)", legendgroup="rejected", showlegend=i == 1,
                                     text=(r["backend"] + " T=" + r["draft_tokens"].astype(str) + ": "
                                           + r["status"].str.slice(0, 160)),
                                     hovertemplate="%{text}<extra></extra>"), row=1, col=i)
    fig.add_hline(y=1.0, line={"color": "gray", "dash": "dot"})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    add_provenance(fig, sweep_provenance_text(v))
    return fig


def overlay_seed(fig, seed_rows: pd.DataFrame | None, *, y: str = "value", x: str = "concurrency",
                 unit: str | None = None):
    """Overlay the seed's reported rows (e.g. :func:`gdnlab.seed.tpot_vs_concurrency`) on ``fig``'s
    first panel, on a right-hand log axis (their unit differs: end-to-end TPOT in ms on GB200, not a
    kernel time), dashed grey, one line per backend; the footnote gains a ``reported (seed)`` label.
    ``seed_rows=None`` or empty returns ``fig`` unchanged (so callers can pass it through)."""
    import plotly.graph_objects as go

    if seed_rows is None or len(seed_rows) == 0:
        return fig
    missing = [c for c in (x, y, "backend") if c not in seed_rows.columns]
    if missing:
        raise ValueError(f"seed_rows lacks columns {missing} (use gdnlab.seed.tpot_vs_concurrency())")
    rows = seed_rows.dropna(subset=[x, y]).sort_values(x)
    unit = unit or (str(rows["unit"].dropna().iloc[0]) if "unit" in rows and rows["unit"].notna().any() else "")
    metric = str(rows["metric"].dropna().iloc[0]) if "metric" in rows and rows["metric"].notna().any() else y
    used = [int(k[5:] or 1) for k in fig.layout.to_plotly_json() if k.startswith("yaxis")]
    n = max(used + [1]) + 1
    fig.layout[f"yaxis{n}"] = {"overlaying": "y", "side": "right", "type": "log", "showgrid": False,
                               "title": {"text": f"seed (reported): {metric} ({unit})"}}
    symbols = {"flashinfer": "circle-open", "triton": "square-open"}
    for be, g in rows.groupby("backend", sort=True):
        state = f" · {g['kernel_state'].dropna().iloc[0]}" if "kernel_state" in g and g["kernel_state"].notna().any() else ""
        fig.add_trace(go.Scatter(x=g[x], y=g[y], xaxis="x", yaxis=f"y{n}", mode="lines+markers",
                                 name=f"seed {be}: {metric}{state} (reported)",
                                 line={"dash": "dash", "color": "gray"},
                                 marker={"symbol": symbols.get(str(be), "diamond-open"), "color": "gray"}))
    gpu = ", ".join(sorted(rows["gpu"].dropna().astype(str).unique())) if "gpu" in rows else None
    src = str(rows["source"].dropna().iloc[0]) if "source" in rows and rows["source"].notna().any() else \
        "SGLang PR #23273"
    seed_text = label({"gpu": gpu}, "reported", source=src, note="end-to-end serving metric, not a kernel time")
    prev = (fig.layout.meta or {}).get("provenance") if isinstance(fig.layout.meta, dict) else None
    fig.layout.annotations = [a for a in fig.layout.annotations if a.name != "provenance"]
    add_provenance(fig, f"{prev} · {seed_text}" if prev else seed_text)
    return fig
