"""Which released engine runs a priced option, with which flags; one server configuration per engine
for a concurrency range; an adaptive draft length where the engine offers one.

An option (strategy, T, state dtype, backend) is *engine-runnable* when a path of the strategy's
:attr:`~gdnlab.strategies.base.VerifyStrategy.engine_runs` (:class:`gdnlab.engines.EngineRun`) lists
that backend among the ones whose measurements are its own kernels, and takes that state dtype, GPU
architecture and T (:meth:`EngineRun.runs`). Its command line is
:func:`gdnlab.engines.command_args`. Plain decode (no speculation) is run by every engine with its SSM
state dtype flag alone; its GDN decode kernel is priced with the measured backend's (a proxy, said so).
Nothing here compares strategy names: every fact comes from the registry.

:func:`choose_server` picks, per engine, the one option to run over a range of batches: the one
whose worst TPOT loss against that engine's per-batch best is smallest (then the smallest mean loss),
among options whose memory holds the largest batch (:mod:`gdnlab.model.memory`).
:func:`adaptive_schedule` keeps that option's strategy, state dtype and backend and picks T per batch
tier, written as the engine's own adaptive configuration (:data:`ADAPTIVE`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..engines import ENGINE_LABELS, ENGINE_VERSIONS, SPEC_SOURCES, command_args, spec_args

__all__ = ["EnginePath", "engine_paths", "why_not_run", "ServerChoice", "choose_server", "Adaptive",
           "adaptive_schedule", "ADAPTIVE", "option_label", "KEY"]

#: the columns that name one option
KEY = ["strategy", "draft_tokens", "state_dtype", "backend"]

#: how each engine adapts T to the batch (released versions of :data:`gdnlab.engines.ENGINE_VERSIONS`)
ADAPTIVE: dict[str, dict[str, str]] = {
    "sglang": {
        "how": "--speculative-adaptive --speculative-adaptive-config FILE: per batch-size tier {candidate_steps}",
        "source": "sgl-project/sglang v0.5.23 python/sglang/srt/speculative/adaptive_spec_params.py "
                  "(adaptive_unsupported_reason L56-L100: EAGLE/EAGLE3 with topk 1 only; a batch routes to the "
                  "largest tier <= it, L356); python/sglang/srt/arg_groups/speculative_hook.py (NEXTN resolves to "
                  "EAGLE, L109-L116, before the adaptive check, L261-L264; --speculative-num-steps must be a "
                  "candidate, L1392-L1419)",
        "note": "NEXTN (MTP) runs as EAGLE with topk 1, so the adaptive switch applies; not with attention DP, "
                "two-batch overlap or PD multiplexing",
    },
    "vllm": {
        "how": "--speculative-config num_speculative_tokens_per_batch_size [[first, last, drafts], ...]",
        "source": "vllm-project/vllm v0.33.0 vllm/config/speculative.py L523-L529; "
                  "vllm/v1/spec_decode/dynamic/utils.py (ranges from batch 1, drafts capped at "
                  "num_speculative_tokens); vllm/config/vllm.py L1088-L1127 (method mtp kept on model runner V1, "
                  "dropped with data parallelism)",
        "note": "on model runner V1 a schedule turns full CUDA graphs into piecewise ones (vllm/config/vllm.py "
                "L1069-L1086), a cost not priced here; VLLM_USE_V2_MODEL_RUNNER=1 keeps full graphs",
    },
}


@dataclass(frozen=True)
class EnginePath:
    """One engine's way to run an option: flags, environment, source, and whether the priced GDN
    kernels are a proxy for the engine's own (plain decode)."""

    engine: str
    version: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    source: str
    note: str = ""
    proxy: bool = False

    @property
    def label(self) -> str:
        return f"{ENGINE_LABELS[self.engine]} {self.version}"


def option_label(strategy: str, draft_tokens: int, state_dtype: str, backend: str) -> str:
    """``"full_cache T=4 float32 flashinfer"`` (``"decode float32 triton"`` without speculation)."""
    if strategy == "decode":
        return f"decode {state_dtype} {backend}"
    return f"{strategy} T={int(draft_tokens)} {state_dtype} {backend}"


def _runs(strategy: str):
    from ..strategies.registry import strategy_class

    return strategy_class(strategy).engine_runs


def engine_paths(strategy: str, T: int, state_dtype: str, backend: str, sm: str) -> dict[str, EnginePath]:
    """Engine -> its path for this option on GPU architecture ``sm`` (engines that run it only)."""
    out: dict[str, EnginePath] = {}
    if strategy == "decode":
        for eng in ENGINE_VERSIONS:
            out[eng] = EnginePath(eng, ENGINE_VERSIONS[eng], tuple(spec_args(eng, None, state_dtype)), (),
                                  SPEC_SOURCES[eng], f"plain decode with {ENGINE_LABELS[eng]}'s default GDN decode "
                                  f"kernel; priced with the measured {backend} decode kernel", proxy=True)
        return out
    for run in _runs(strategy):
        if run.engine in out or backend not in run.backends:
            continue
        if run.runs(state_dtype=state_dtype, sm=sm, draft_tokens=int(T)):
            out[run.engine] = EnginePath(run.engine, run.version, tuple(command_args(run, int(T), state_dtype)),
                                         tuple(run.env), run.source, run.note)
    return out


def why_not_run(strategy: str, T: int, state_dtype: str, backend: str, sm: str) -> str:
    """Why no engine runs this option as measured, per engine that has a path for the strategy."""
    runs = _runs(strategy)
    if not runs:
        return f"no released engine runs {strategy}"
    why = []
    for eng in dict.fromkeys(r.engine for r in runs):
        mine = [r for r in runs if r.engine == eng]
        name = f"{ENGINE_LABELS[eng]} {mine[0].version}"
        own = [r for r in mine if backend in r.backends]
        if not own:
            kernels = ", ".join(dict.fromkeys(b for r in mine for b in r.backends)) or "none registered"
            why.append(f"{name} runs {strategy} with the kernels of {kernels}, not {backend}'s")
        elif not any(r.runs(state_dtype=state_dtype) for r in own):
            why.append(f"{name} runs it with a {'/'.join(dict.fromkeys(d for r in own for d in r.state_dtypes))} "
                       "state only")
        elif not any(r.runs(state_dtype=state_dtype, sm=sm) for r in own):
            sms = dict.fromkeys(x for r in own if r.runs(state_dtype=state_dtype) for x in r.sms)
            why.append(f"{name} runs it with a {state_dtype} state on {'/'.join(sms)} only")
        else:
            why.append(f"{name} runs it up to T={max(r.max_draft_tokens or 0 for r in own)}")
    return "; ".join(why)


# ---------------------------------------------------------------------------------------------- one server


@dataclass
class ServerChoice:
    """One engine's configuration for the whole batch range, and what it gives up at each batch.

    ``per_batch``: ``batch, tpot_ms, throughput_tok_s, best`` (that engine's per-batch best option),
    ``best_tpot_ms``, ``loss_tpot_pct`` (TPOT over the best's, %), ``loss_throughput_pct``
    (throughput below the best's, %), ``served`` (memory holds the batch)."""

    engine: str
    option: dict
    path: EnginePath
    per_batch: pd.DataFrame
    worst_loss_pct: float
    runner_up: str
    runner_up_worst_loss_pct: float
    max_concurrency: int
    limited_by: str
    status: str
    adaptive: Adaptive | None = None
    adaptive_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return option_label(**self.option)


def _runnable(cand: pd.DataFrame, engine: str) -> pd.DataFrame:
    return cand[cand["engines"].str.split(",").map(lambda e: engine in e) & cand["tpot_ms"].notna()]


def _losses(pool: pd.DataFrame, batches: list[int]) -> dict[tuple, np.ndarray]:
    """Option key -> TPOT loss (%) against the per-batch best of ``pool`` at each batch (inf: not served)."""
    fit = pool[pool["fits"]]
    best = fit.groupby("batch")["tpot_ms"].min()
    out = {}
    for key, g in pool.groupby(KEY, sort=False):
        t = g[g["fits"]].set_index("batch")["tpot_ms"]
        out[key] = np.array([(t[b] / best[b] - 1.0) * 100 if b in t.index and b in best.index else np.inf
                             for b in batches])
    return out


def _worst(loss: np.ndarray) -> float:
    finite = loss[np.isfinite(loss)]
    return float(finite.max()) if finite.size else np.inf


def _score(loss: np.ndarray) -> tuple:
    """Rank of a configuration: worst TPOT loss, then the most batches served, then the mean loss."""
    finite = loss[np.isfinite(loss)]
    return _worst(loss), -int(finite.size), float(finite.mean()) if finite.size else np.inf


def _dedupe(losses: dict[tuple, np.ndarray], engine: str, sm: str) -> dict[tuple, np.ndarray]:
    """One option per set of engine flags (plain decode priced with two backends is one configuration)."""
    by_args: dict[tuple, tuple] = {}
    for k in losses:
        a = engine_paths(*k, sm)[engine].args
        if a not in by_args or _score(losses[k]) < _score(losses[by_args[a]]):
            by_args[a] = k
    return {k: losses[k] for k in by_args.values()}


def _per_batch(pool: pd.DataFrame, k: tuple, loss: np.ndarray, batches: list[int]) -> pd.DataFrame:
    g = pool.set_index(KEY).loc[k].reset_index().set_index("batch")
    fit = pool[pool["fits"]]
    bi = fit.loc[fit.groupby("batch")["tpot_ms"].idxmin()].set_index("batch")
    rows = []
    for i, b in enumerate(batches):
        r = g.loc[b] if b in g.index else None
        best = bi.loc[b] if b in bi.index else None
        served = r is not None and bool(r["fits"])
        rows.append({"batch": b, "tpot_ms": r["tpot_ms"] if served else np.nan,
                     "throughput_tok_s": r["throughput_tok_s"] if served else np.nan,
                     "best": option_label(*[best[c] for c in KEY]) if best is not None else "",
                     "best_tpot_ms": best["tpot_ms"] if best is not None else np.nan, "loss_tpot_pct": loss[i],
                     "loss_throughput_pct": (1 - r["throughput_tok_s"] / best["throughput_tok_s"]) * 100
                     if served and best is not None else np.nan, "served": served})
    return pd.DataFrame(rows)


def choose_server(cand: pd.DataFrame, engine: str, batches: list[int]) -> ServerChoice | None:
    """The one option ``engine`` should run for ``batches`` (None: it runs no priced option): among
    options whose memory holds the largest batch (else the one holding most), the smallest worst
    TPOT loss against the engine's per-batch best. When an option holding fewer requests would lose
    less over the batches it holds, a note says so."""
    pool = _runnable(cand, engine)
    if pool.empty:
        return None
    sm = cand.attrs.get("sm", "")
    losses = _dedupe(_losses(pool, batches), engine, sm)
    top = max(batches)
    caps = pool.groupby(KEY, sort=False)["max_concurrency"].first()
    serving = [k for k in losses if caps[k] >= top] or [max(losses, key=lambda k: caps[k])]
    notes = [] if caps[serving[0]] >= top else [f"no {ENGINE_LABELS[engine]} option holds {top} requests in memory"]
    ranked = sorted(serving, key=lambda k: _score(losses[k]))
    k = ranked[0]
    smaller = sorted((x for x in losses if x not in serving and _worst(losses[x]) < _worst(losses[k])),
                     key=lambda x: _score(losses[x]))
    if smaller:
        x = smaller[0]
        notes.append(f"if at most {caps[x]} running requests suffice: {option_label(*x)}, worst loss "
                     f"{_worst(losses[x]):.1f}% over the batches it holds (--batches up to {caps[x]})")
    first = pool.set_index(KEY).loc[k].iloc[0]
    ru = ranked[1] if len(ranked) > 1 else None
    return ServerChoice(engine, dict(zip(KEY, k)), engine_paths(*k, sm)[engine],
                        _per_batch(pool, k, losses[k], batches),
                        _worst(losses[k]), option_label(*ru) if ru else "none", _worst(losses[ru]) if ru else np.nan,
                        int(first["max_concurrency"]), str(first["limited_by"]), str(first["status"]), notes=notes)


# ---------------------------------------------------------------------------------------------- adaptive T


@dataclass
class Adaptive:
    """T per batch tier for one (strategy, state dtype, backend), as the engine's own configuration.

    ``schedule``: ``batch, draft_tokens, tpot_ms, fixed_tpot_ms, gain_pct`` (TPOT below the fixed-T
    server's, %), ``beyond_noise`` (the fixed server's p10 TPOT is above this T's p90)."""

    engine: str
    schedule: pd.DataFrame
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    config: dict | None
    config_file: str | None
    source: str
    note: str


def _tiers(batches: list[int], Ts: list[int]) -> list[tuple[int, int, int]]:
    """``(first, last, T)`` ranges from batch 1, one per change of T (the last open to ``batches[-1]``)."""
    out: list[list[int]] = []
    for i, (b, t) in enumerate(zip(batches, Ts)):
        first = 1 if i == 0 else b
        if out and out[-1][2] == t:
            continue
        if out:
            out[-1][1] = first - 1
        out.append([first, batches[-1], t])
    return [tuple(x) for x in out]


def adaptive_schedule(cand: pd.DataFrame, server: ServerChoice, batches: list[int],
                      config_file: str = "sglang_adaptive_spec.json") -> tuple[Adaptive | None, str]:
    """``(Adaptive, why)`` for ``server``'s engine: the fastest T per batch with the server's strategy,
    state dtype and backend (T the engine path takes, memory held at the schedule's largest T);
    ``(None, why)`` when the engine has no adaptive switch, fewer than two T are priced or one T wins
    everywhere."""
    eng = server.engine
    if eng not in ADAPTIVE or server.option["strategy"] == "decode":
        return None, f"{ENGINE_LABELS[eng]} {ENGINE_VERSIONS[eng]}: no adaptive draft length for plain decode"
    o = server.option
    pool = _runnable(cand, eng)
    same = pool[(pool["strategy"] == o["strategy"]) & (pool["state_dtype"] == o["state_dtype"])
                & (pool["backend"] == o["backend"])]
    cap = same.groupby("draft_tokens")["max_concurrency"].first()
    need = min(max(batches), server.max_concurrency)
    same = same[same["draft_tokens"].map(cap) >= need]       # the pool is sized for the schedule's largest T
    Ts = sorted(set(same["draft_tokens"]))
    if len(Ts) < 2:
        return None, f"one T priced for {server.label} (T={Ts[0] if Ts else '-'}): nothing to adapt"
    fixed = same[same["draft_tokens"] == o["draft_tokens"]].set_index("batch")
    rows = []
    for b in batches:
        g = same[(same["batch"] == b) & same["fits"]]
        if g.empty:
            continue
        r = g.loc[g["tpot_ms"].idxmin()]
        f = fixed.loc[b] if b in fixed.index else None
        rows.append({"batch": b, "draft_tokens": int(r["draft_tokens"]), "tpot_ms": r["tpot_ms"],
                     "fixed_tpot_ms": f["tpot_ms"] if f is not None else np.nan,
                     "gain_pct": (1 - r["tpot_ms"] / f["tpot_ms"]) * 100 if f is not None else np.nan,
                     "beyond_noise": bool(f is not None and f["tpot_lo_ms"] > r["tpot_hi_ms"])})
    sch = pd.DataFrame(rows)
    if sch.empty or sch["draft_tokens"].nunique() < 2 or not sch["beyond_noise"].any():
        return None, f"T={o['draft_tokens']} is fastest (within measured noise) at every batch: no schedule"
    tiers = _tiers(list(sch["batch"]), list(sch["draft_tokens"]))
    tmax = max(t for *_, t in tiers)
    sd = o["state_dtype"]
    base = list(server.path.args)
    if eng == "sglang":
        cfg = {str(first): {"candidate_steps": [t - 1]} for first, _, t in tiers}
        args = _replace_spec(base, spec_args(eng, tiers[0][2], sd)) + [
            "--speculative-adaptive", "--speculative-adaptive-config", config_file]
        return Adaptive(eng, sch, tuple(args), server.path.env, cfg, config_file, ADAPTIVE[eng]["source"],
                        ADAPTIVE[eng]["note"]), ""
    spec = {"method": "mtp", "num_speculative_tokens": tmax - 1,
            "num_speculative_tokens_per_batch_size": [[first, last, t - 1] for first, last, t in tiers]}
    args = _replace_spec(base, spec_args(eng, tmax, sd))
    i = args.index("--speculative-config")
    args[i + 1] = json.dumps(spec)
    return Adaptive(eng, sch, tuple(args), server.path.env, None, None, ADAPTIVE[eng]["source"],
                    ADAPTIVE[eng]["note"]), ""


def _replace_spec(args: list[str], spec: list[str]) -> list[str]:
    """``args`` with their leading :func:`spec_args` part replaced by ``spec`` (same flags, other T)."""
    n = len(spec)
    return list(spec) + list(args[n:])
