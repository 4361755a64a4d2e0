"""Plan the verify setup of a server: draft tokens T, strategy, state dtype and GDN backend.

:func:`plan_candidates` prices every option the step's GDN sweep measured (plain decode, and each
verify strategy x T x state dtype x backend with strategy step rows or verify calls) at each batch:
step time from the composed step (:class:`~gdnlab.model.composed.ComposedStep`: the non-GDN parts
once per batch and T, the GDN kernels per option, :class:`~gdnlab.model.plan_gdn.GDNSource`),
tokens per step from an acceptance curve (:class:`~gdnlab.acceptance_curves.AcceptanceCurve`),
TPOT and throughput with their p10-p90 range, the largest concurrency memory holds
(:mod:`~gdnlab.model.memory`) and the engines that run it (:mod:`~gdnlab.model.server_config`).

:func:`best_plan` keeps the fastest option per batch (among those memory holds), with the runner-up
and the margin; two options whose TPOT ranges overlap are a ``tie``, never a win. :func:`make_plan`
adds one server configuration per engine for the whole batch range, an adaptive T where the engine
has one, and the options no engine runs yet with what they would buy (:class:`Plan`).

Every TPOT here is composed by the model: ``status`` says whether the data under it were measured
on the planned GPU or projected from another one.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..acceptance_curves import AcceptanceCurve, read_curve_file
from ..backends import DEFAULT_BACKEND
from ..engines import ENGINE_VERSIONS
from ..errors import InputError
from ..shapes import dtype_name
from ..strategies.registry import BASELINE
from .composed import ComposedStep
from .memory import max_concurrency
from .mtp import MTPConfig
from .plan_accept import as_curve
from .plan_gdn import GDNSource
from .plan_tables import breakdown_by_batch, speedup_table, tokens_per_step_table
from .server_config import KEY, ServerChoice, adaptive_schedule, choose_server, engine_paths, option_label, why_not_run

__all__ = ["accept_lengths", "plan_candidates", "best_plan", "not_engine_run", "Plan", "make_plan",
           "read_accept_table", "check_ranges", "tokens_per_step_table", "speedup_table", "breakdown_by_batch"]


def accept_lengths(accept: float | Mapping[int, float] | AcceptanceCurve, draft_tokens: Iterable[int], *,
                   accept_T: int = 4) -> dict[int, float]:
    """``{T: accept length}`` at ``draft_tokens`` (a table's own T when ``draft_tokens`` is empty) from
    a curve, a ``{T: accept length}`` table or one accept length at ``accept_T``."""
    curve = as_curve(accept, accept_T)
    Ts = sorted({int(t) for t in draft_tokens}) or sorted(curve.points)
    if any(t < 2 for t in Ts):
        raise InputError(f"draft tokens must be >= 2 for speculation, got {Ts}")
    return {t: float(curve.mean(t)) for t in Ts}


def read_accept_table(path) -> dict[int, float]:
    """``{T: accept length}`` of a one-curve file (:func:`gdnlab.acceptance_curves.read_curve_file`;
    a T given twice is refused, never averaged)."""
    curves = read_curve_file(path)
    if len(curves) != 1:
        raise InputError(f"{path} holds {len(curves)} curves ({', '.join(curves)}); give one")
    return dict(next(iter(curves.values())).points)


# ---------------------------------------------------------------------------------------------- ranges


def _measured_ranges(step: ComposedStep, src: GDNSource) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((batch lo, hi), (context lo, hi))`` the component run and the GDN sweep both measured."""
    r = step.times.rows
    b = pd.to_numeric(r["batch"], errors="coerce").dropna()
    lo, hi = float(b.min()), float(b.max())
    glo, ghi = src.batch_range()
    if not math.isnan(glo):
        lo, hi = max(lo, glo), min(hi, ghi)
    kv = step.kv_knots
    return (lo, hi), (min(kv), max(kv))


def check_ranges(step: ComposedStep, src: GDNSource, batches: list[int], ctx: float, extrapolate: bool
                 ) -> list[str]:
    """Refuse batches and a context beyond the measured ranges unless ``extrapolate`` (then notes)."""
    (blo, bhi), (klo, khi) = _measured_ranges(step, src)
    out = [b for b in batches if not blo <= b <= bhi]
    notes = []
    if out:
        msg = (f"batches {','.join(map(str, out))} lie outside the measured {blo:g}..{bhi:g} (component run and GDN "
               "sweep)")
        if not extrapolate:
            raise InputError(msg + "; pass --extrapolate to price them anyway (labelled extrapolated)")
        notes.append(msg + ": extrapolated (log-log, end segment)")
    if not klo <= ctx <= khi:
        msg = f"context {ctx:g} tokens per request lies outside the measured KV lengths {klo:g}..{khi:g}"
        if not extrapolate:
            raise InputError(msg + "; pass --extrapolate to price it anyway (labelled extrapolated)")
        notes.append(msg + ": extrapolated (linear)")
    return notes


# ---------------------------------------------------------------------------------------------- options


def _options(src: GDNSource, step: ComposedStep, Ts: set[int] | None, strategies: set[str], backends: set[str],
             state_dtypes: set[str]) -> tuple[list[tuple], list[str]]:
    """``(strategy, T, state_dtype, backend)`` options and notes on what was (not) priced."""
    if step.gdn is None:
        be, sd = DEFAULT_BACKEND, dtype_name(step.state_dtype)
        strat = step.times.strategies() or [BASELINE]
        T = step.times.draft_tokens
        return ([("decode", 1, sd, be)] + [(s, T, sd, be) for s in strat if not strategies or s in strategies],
                [f"no GDN sweep: GDN kernels from the components ({be}, {sd}, T={T})"])
    o = src.options()
    if backends:
        o = o[o["backend"].isin(backends)]
    if state_dtypes:
        o = o[o["state_dtype"].isin(state_dtypes)]
    dec = o[o["mode"] == "decode"]
    ver = o[o["mode"] == "verify"]
    if strategies:
        ver = ver[ver["strategy"].isin(strategies)]
    step_T = sorted({int(t) for t in ver.loc[ver["has_step_us"], "draft_tokens"]})
    call_T = sorted({int(t) for t in ver.loc[~ver["has_step_us"], "draft_tokens"]})
    if Ts is not None:
        ver = ver[ver["draft_tokens"].isin(Ts)]
    opts = [("decode", 1, r.state_dtype, r.backend) for r in dec.itertuples()]
    opts += [(r.strategy, int(r.draft_tokens), r.state_dtype, r.backend) for r in ver.itertuples()]
    notes = [f"priced T: {_tlist(sorted({t for _, t, _, _ in opts if t > 1}))} (strategy step rows at T="
             f"{_tlist(step_T)}" + (f"; full_cache verify calls + the components' commit at T={_tlist(call_T)}"
                                    if call_T else "") + ")"]
    if Ts is not None and Ts - set(step_T) - set(call_T):
        notes.append(f"T={_tlist(sorted(Ts - set(step_T) - set(call_T)))} asked for but not measured: not priced")
    ex = step.gdn.excluded
    if not ex.empty:
        why = ex["reason"].map(lambda r: "not run (unsupported)" if str(r).startswith("not run") else str(r))
        g = ex.assign(why=why).groupby("why")[["backend", "strategy", "state_dtype"]].apply(
            lambda d: ", ".join(sorted({f"{b}/{s}/{dtype_name(sd)}" for b, s, sd in d.itertuples(index=False)})))
        notes.append("strategy rows left out: " + "; ".join(f"{k}: {v}" for k, v in g.items()))
    return opts, notes


def _tlist(ts) -> str:
    return ",".join(str(t) for t in ts) or "none"


# ---------------------------------------------------------------------------------------------- pricing


class _Base:
    """Composed µs of one iteration without the GDN kernels, once per (batch, T)."""

    def __init__(self, src: GDNSource, ctx: float) -> None:
        self.src, self.ctx, self.memo = src, ctx, {}

    def get(self, opt: tuple, B: int) -> float:
        s, T, sd, be = opt
        key = (B, T)
        if key not in self.memo:
            st = self.src.variant(sd)
            mtp = None if s == "decode" else MTPConfig(draft_tokens=T, acceptance=1.0)
            parts = st.parts(be, float(B), float(B) * self.ctx, mtp, BASELINE if s == "decode" else s)
            self.memo[key] = sum(parts.values()) - parts["gdn_kernel"]
        return self.memo[key]


def _price(src: GDNSource, base: _Base, opt: tuple, B: int, a: float) -> dict:
    s, T, sd, be = opt
    st = src.step
    p = src.price(be, s, T, sd, B, a)
    k = st.model.gdn.num_gdn_layers * p.kernel_us
    scale, req = st.params.component_scale, st.params.request_us
    us = scale * (base.get(opt, B) + k) + req * B
    lo, hi = us - scale * k * (1 - p.r10), us + scale * k * (p.r90 - 1)
    return {"accept_len": a, "accept_basis": p.basis, "held": p.held, "step_us": us, "tpot_ms": us / a / 1e3,
            "tpot_lo_ms": lo / a / 1e3, "tpot_hi_ms": hi / a / 1e3, "throughput_tok_s": B * a / us * 1e6,
            "throughput_lo_tok_s": B * a / hi * 1e6, "throughput_hi_tok_s": B * a / lo * 1e6,
            "gdn_kernel_share_pct": 100 * scale * k / us}


def _capacity(step: ComposedStep, opt: tuple, ctx: float, memo: dict) -> tuple[int, str]:
    s, T, sd, _ = opt
    if (s, T, sd) not in memo:
        c = max_concurrency(step.model, step.gpu, s, sd, T, ctx)
        memo[(s, T, sd)] = (c.requests, c.limited_by)
    return memo[(s, T, sd)]


def plan_candidates(step: ComposedStep, *, batches: Iterable[int],
                    accept: float | Mapping[int, float] | AcceptanceCurve = 3.17, accept_T: int = 4,
                    draft_tokens: Iterable[int] | None = None, ctx_per_request: float = 1024.0,
                    strategies: Iterable[str] | None = None, backends: Iterable[str] | None = None,
                    state_dtypes: Iterable[str] | None = None, extrapolate: bool = False) -> pd.DataFrame:
    """Every priced option at every batch (see the module docstring). Columns: the option
    (:data:`~gdnlab.model.server_config.KEY`), ``batch``, ``accept_len`` (tokens per step),
    ``accept_basis``, ``step_us``, ``tpot_ms`` with ``tpot_lo_ms`` / ``tpot_hi_ms`` (p10 / p90 of the
    GDN timing), ``throughput_tok_s`` (+ lo / hi), ``speedup_vs_decode`` (x: plain decode's TPOT with
    the same backend and state dtype over this TPOT), ``gdn_kernel_share_pct`` (% of the step in GDN
    kernels), ``check``, ``max_concurrency`` / ``fits`` / ``limited_by`` (memory), ``engines`` (comma
    list), ``status`` (data ``measured`` on this GPU or ``projected``), ``extrapolated``, ``provenance``.
    ``draft_tokens`` None prices every T the sweep measured. ``attrs``: ``notes``, ``ctx``, ``sm`` (the
    engines' flags: :func:`~gdnlab.model.server_config.engine_paths`), ``accept_lengths``."""
    Bs = sorted({int(b) for b in batches})
    if not Bs or Bs[0] < 1:
        raise InputError(f"batches must be positive integers, got {Bs}")
    if not 0 < ctx_per_request < math.inf:
        raise InputError(f"ctx_per_request must be > 0 tokens, got {ctx_per_request!r}")
    curve = as_curve(accept, accept_T)
    src = GDNSource(step)
    notes = check_ranges(step, src, Bs, float(ctx_per_request), extrapolate)
    Ts = None if draft_tokens is None else {int(t) for t in draft_tokens}
    if Ts is not None and any(t < 2 for t in Ts):
        raise InputError(f"draft tokens must be >= 2 for speculation, got {sorted(Ts)}")
    opts, onotes = _options(src, step, Ts, set(strategies or ()), set(backends or ()),
                            {dtype_name(s) for s in state_dtypes or ()})
    if not opts:
        raise InputError("no option to price: the filters leave no (backend, strategy, T, state dtype)")
    notes += onotes
    base, caps, rows = _Base(src, float(ctx_per_request)), {}, []
    data = "measured" if step.times.status == "measured" and (step.gdn is None or step.gdn.status == "measured") \
        else "projected"
    (blo, bhi), _ = _measured_ranges(step, src)
    for opt in opts:
        s, T, sd, be = opt
        engines = ",".join(engine_paths(s, T, sd, be, step.gpu.sm))
        a = 1.0 if s == "decode" else float(curve.mean(T))
        cap, lim = _capacity(step, opt, float(ctx_per_request), caps)
        checked = s == "decode" or step.gdn is None or src.checked(be, s, T, sd)
        for B in Bs:
            r = _price(src, base, opt, B, a)
            ext = [w for w, on in (("batch", not blo <= B <= bhi), ("accept", r.pop("held")),
                                   ("curve", s != "decode" and curve.extrapolated(T))) if on]
            rows.append({"batch": B, **dict(zip(KEY, opt)), **r, "check": "checked" if checked else "unchecked",
                         "max_concurrency": cap, "fits": B <= cap, "limited_by": lim,
                         "engines": engines, "status": data, "extrapolated": ",".join(ext)})
    return _finish(pd.DataFrame(rows), step, curve, notes, float(ctx_per_request))


def _finish(df: pd.DataFrame, step: ComposedStep, curve: AcceptanceCurve, notes: list[str], ctx: float
            ) -> pd.DataFrame:
    dec = df[df["strategy"] == "decode"].set_index(["batch", "backend", "state_dtype"])["tpot_ms"]
    df["speedup_vs_decode"] = [dec.get((r.batch, r.backend, r.state_dtype), np.nan) / r.tpot_ms
                               for r in df.itertuples()]
    gdn = step.gdn.status if step.gdn is not None else "no"
    df["provenance"] = (f"composed step: {step.times.status} components ({step.gpu.name}) + {gdn} GDN sweep + "
                        f"projected all-reduce + fitted ({step.params.short()})")
    if "accept" in ",".join(df["extrapolated"]):
        notes.append("step time held at the nearest measured accept length where the curve's accept length is "
                     "beyond the sweep's (extrapolated: accept)")
    if curve.adjusted:
        notes.append(f"acceptance curve {curve.name}: points are not a chain; adjusted by up to "
                     f"{curve.max_adjustment:.3f} tokens/step")
    src = step.times.source.split(":")[0] if step.times.status == "projected" else "this GPU's component run"
    gsrc = step.gdn.source.split(" (")[0] if step.gdn is not None else "no GDN sweep"
    df.attrs.update(notes=notes, note="; ".join(notes), ctx=ctx, provenance=step.provenance(ctx_per_request=ctx),
                    data_from=f"components: {src}; GDN: {gsrc}",
                    sm=step.gpu.sm, accept_lengths={t: float(curve.mean(t)) for t in
                                                    sorted({int(t) for t in df["draft_tokens"] if t > 1})})
    return df   # attrs stay small: pandas deep-copies them on every operation


# ---------------------------------------------------------------------------------------------- choices


def _pick(g: pd.DataFrame) -> dict:
    """The fastest row of one batch, its runner-up, the margins and whether it is a tie."""
    g = g.sort_values("tpot_ms")
    b = g.iloc[0]
    out = b.to_dict()
    ru = g.iloc[1] if len(g) > 1 else None
    tied = g[(g.index != b.name) & (g["tpot_lo_ms"] <= b["tpot_hi_ms"])]
    out.update(runner_up=option_label(*[ru[c] for c in KEY]) if ru is not None else "none",
               margin_tpot_pct=(ru["tpot_ms"] / b["tpot_ms"] - 1) * 100 if ru is not None else np.nan,
               margin_throughput_pct=(1 - ru["throughput_tok_s"] / b["throughput_tok_s"]) * 100 if ru is not None
               else np.nan,
               verdict="tie" if len(tied) else ("win" if ru is not None else "only option"),
               tied_with="; ".join(option_label(*[r[c] for c in KEY]) for _, r in tied.iterrows()))
    return out


def best_plan(cand: pd.DataFrame, *, checked_only: bool = False, engine: str | None = None) -> pd.DataFrame:
    """The fastest option per batch among those memory holds (``engine``: those it runs;
    ``checked_only``: those whose GDN rows passed their correctness check), with ``runner_up``,
    ``margin_tpot_pct`` (runner-up's TPOT over the best's, %), ``margin_throughput_pct`` (throughput
    the runner-up gives up, %), ``verdict`` (``win``; ``tie`` when their p10-p90 TPOT ranges overlap,
    ``tied_with`` naming every option in range) and the engine flags (``args`` per engine)."""
    pool = cand[cand["tpot_ms"].notna() & cand["fits"]]
    if checked_only:
        pool = pool[pool["check"] == "checked"]
    if engine is not None:
        pool = pool[pool["engines"].str.split(",").map(lambda e: engine in e)]
    rows = [_pick(g) for _, g in pool.groupby("batch")]
    for b in sorted(set(cand["batch"]) - set(pool["batch"])):
        rows.append({"batch": b, "verdict": "nothing fits" if not cand.loc[cand["batch"] == b, "fits"].any()
                     else "no option", "runner_up": "none"})
    out = pd.DataFrame(rows).sort_values("batch").reset_index(drop=True)
    sm = cand.attrs.get("sm", "")
    for eng in ENGINE_VERSIONS:
        out[eng] = [" ".join(p[eng].args) if isinstance(s, str) and eng in (p := engine_paths(s, T, sd, be, sm))
                    else "" for s, T, sd, be in zip(*(out.get(c, pd.Series(index=out.index, dtype=object))
                                                     for c in KEY))]
    out.attrs.update(cand.attrs)
    return out


def not_engine_run(cand: pd.DataFrame, *, top: int = 6) -> pd.DataFrame:
    """Options no engine runs as measured that beat the best engine-runnable option at some batch
    beyond noise: ``option, why, batches`` (where it wins), ``gain_tpot_pct`` (largest TPOT below the
    best runnable one, %), ``at_batch``, ``best_runnable`` there."""
    cols = ["option", "why", "batches", "gain_tpot_pct", "at_batch", "best_runnable"]
    pool = cand[cand["tpot_ms"].notna() & cand["fits"]]
    run = pool[pool["engines"] != ""]
    if run.empty:
        return pd.DataFrame(columns=cols)
    br = run.loc[run.groupby("batch")["tpot_ms"].idxmin(), ["batch", "tpot_ms", "tpot_lo_ms", *KEY]]
    br = br.rename(columns={c: f"best_{c}" for c in br.columns if c != "batch"})
    m = pool[pool["engines"] == ""].merge(br, on="batch")
    m = m[m["tpot_hi_ms"] < m["best_tpot_lo_ms"]].assign(gain=lambda d: (1 - d["tpot_ms"] / d["best_tpot_ms"]) * 100)
    sm = cand.attrs.get("sm", "")
    rows = []
    for key, g in m.groupby(KEY, sort=False):
        b = g.loc[g["gain"].idxmax()]
        rows.append({"option": option_label(*key), "why": why_not_run(*key, sm),
                     "batches": ",".join(str(int(x)) for x in sorted(g["batch"])), "gain_tpot_pct": float(b["gain"]),
                     "at_batch": int(b["batch"]), "best_runnable": option_label(*[b[f"best_{c}"] for c in KEY])})
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values("gain_tpot_pct", ascending=False).head(top).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """Everything ``gdnlab plan`` prints (:mod:`gdnlab.model.plan_report` renders it)."""

    gpu: object
    batches: list[int]
    candidates: pd.DataFrame
    per_batch: pd.DataFrame
    per_engine: dict[str, pd.DataFrame]
    servers: dict[str, ServerChoice | None]
    not_run: pd.DataFrame
    curve: AcceptanceCurve
    accept_how: str = ""
    notes: list[str] = field(default_factory=list)


def make_plan(step: ComposedStep, *, batches: Iterable[int], curve: AcceptanceCurve, accept_how: str = "",
              ctx_per_request: float = 1024.0, checked_only: bool = False, adaptive_file: str = "sglang_adaptive.json",
              **options) -> Plan:
    """The plan for ``step`` over ``batches`` with ``curve`` (``options``: :func:`plan_candidates`'s
    ``draft_tokens``, ``strategies``, ``backends``, ``state_dtypes``, ``extrapolate``)."""
    cand = plan_candidates(step, batches=batches, accept=curve, ctx_per_request=ctx_per_request, **options)
    Bs = sorted({int(b) for b in batches})
    pool = cand[cand["check"] == "checked"] if checked_only else cand
    pool.attrs.update(cand.attrs)
    servers: dict[str, ServerChoice | None] = {}
    for eng in ENGINE_VERSIONS:
        sv = choose_server(pool, eng, Bs)
        if sv is not None:
            sv.adaptive, sv.adaptive_note = adaptive_schedule(pool, sv, Bs, adaptive_file)
        servers[eng] = sv
    return Plan(step.gpu, Bs, cand, best_plan(cand, checked_only=checked_only),
                {e: best_plan(cand, checked_only=checked_only, engine=e) for e in ENGINE_VERSIONS}, servers,
                not_engine_run(pool), curve, accept_how, list(getattr(step, "notes", [])) + cand.attrs["notes"])
