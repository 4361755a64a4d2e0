"""A :class:`~gdnlab.model.plan.Plan` as terminal text (:func:`plan_text`) and as JSON-ready records
for scripts (:func:`plan_records`): one server configuration per engine first, then what no engine
runs yet, then the per-batch table. Units are in every column name and header: TPOT in ms per output
token, throughput in output tokens per second, margins and losses in %; ``speedup_vs_decode`` is
plain decode's TPOT (same backend and state dtype, same batch) over the option's, a factor (x)."""
from __future__ import annotations

import json
import math

import pandas as pd

from ..engines import ENGINE_LABELS, ENGINE_VERSIONS
from .memory import GIB, SGLANG_RESERVE_SOURCE, memory_need
from .plan import Plan
from .server_config import KEY, ServerChoice, engine_paths, option_label

__all__ = ["plan_text", "plan_records", "servers_table", "unmeasured_paths", "reported"]

PER_BATCH_COLUMNS = ["batch", "strategy", "draft_tokens", "state_dtype", "backend", "accept_len", "tpot_ms",
                     "tpot_lo_ms", "tpot_hi_ms", "throughput_tok_s", "speedup_vs_decode", "gdn_kernel_share_pct",
                     "verdict", "runner_up", "margin_tpot_pct", "margin_throughput_pct", "engines", "status"]
ROUND = {"accept_len": 2, "tpot_ms": 3, "tpot_lo_ms": 3, "tpot_hi_ms": 3, "throughput_tok_s": 0,
         "speedup_vs_decode": 3, "gdn_kernel_share_pct": 2, "margin_tpot_pct": 2, "margin_throughput_pct": 2,
         "gain_tpot_pct": 1}


def _num(v, fmt: str = ".3g") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def unmeasured_paths(plan: Plan, engine: str) -> list[str]:
    """``engine``'s speculative paths (registry) whose own kernels the priced sweep does not hold."""
    from ..strategies.registry import STRATEGY_CLASSES

    have = set(plan.candidates["backend"])
    out = []
    for cls in STRATEGY_CLASSES:
        for r in cls.engine_runs:
            if r.engine == engine and r.backends and not set(r.backends) & have:
                out.append(f"{cls.name} ({', '.join(r.backends)})")
    return list(dict.fromkeys(out))


def _header(plan: Plan) -> list[str]:
    c = plan.candidates
    step_model = c.attrs.get("model_name", "")
    cur = plan.curve
    pts = " · ".join(f"T={t} {a:.2f}" + ("*" if cur.extrapolated(t) else "")
                     for t, a in c.attrs["accept_lengths"].items())
    data = str(c["status"].iloc[0])
    lines = [f"gdnlab plan · {plan.gpu.name} ({plan.gpu.sm}) · {step_model} · batches {plan.batches[0]}.."
             f"{plan.batches[-1]} · context {c.attrs['ctx']:g} tokens/request",
             f"data: {data} ({c.attrs.get('data_from', '')})",
             f"acceptance ({plan.accept_how}): curve {cur.name}, {cur.status}, {cur.source}",
             f"  accept length (tokens kept per verify step) at the priced T: {pts}"
             + ("  (* beyond the curve's points: last conditional rate repeated)" if "*" in pts else "")]
    return lines


def _memory(plan: Plan, model) -> list[str]:
    one = memory_need(model, plan.gpu, "decode", "bfloat16", 1, 1, plan.candidates.attrs["ctx"])
    caps = plan.candidates.drop_duplicates(["strategy", "draft_tokens", "state_dtype"])
    caps = caps.sort_values(["max_concurrency"])
    items = ", ".join(f"{'decode' if r.strategy == 'decode' else f'{r.strategy} T={r.draft_tokens}'} "
                      f"{r.state_dtype} {r.max_concurrency}" for r in caps.itertuples())
    return [f"memory ({plan.gpu.name}, {plan.gpu.hbm_gib:g} GiB): weights {one.weights / GIB:.1f} GiB "
            f"({model.name}), runtime reserve ~{one.reserve / GIB:.1f} GiB (SGLang 0.5.23's heuristic), KV "
            f"{one.kv_cache / 2**20:.0f} MiB per request; max concurrency: {items}",
            f"  ({SGLANG_RESERVE_SOURCE})"]


def _loss_line(sv: ServerChoice) -> str:
    return " · ".join(f"B={int(r.batch)} {_num(r.loss_tpot_pct, '.1f')}%/{_num(r.loss_throughput_pct, '.1f')}%"
                      if r.served else f"B={int(r.batch)} not served (memory)" for r in sv.per_batch.itertuples())


def _server(plan: Plan, eng: str) -> list[str]:
    name = f"{ENGINE_LABELS[eng]} {ENGINE_VERSIONS[eng]}"
    sv = plan.servers.get(eng)
    miss = unmeasured_paths(plan, eng)
    if sv is None:
        return [f"  {name}: no priced option it runs" + (f"; its paths not in the sweep: {', '.join(miss)}"
                                                          if miss else "")]
    o = sv.option
    what = (f"plain decode, {o['state_dtype']} state (no speculation; GDN decode priced with {o['backend']}'s kernel, "
            "a proxy for the engine's own)" if sv.path.proxy else sv.label)
    out = [f"  {name}: {what} [{sv.status} data]"]
    if miss:
        out.append(f"    not priced, their own kernels are not in the sweep: {', '.join(miss)} (sweep those backends)")
    out.append(f"    flags: {' '.join(sv.path.args)}")
    if sv.path.env:
        out.append("    env: " + " ".join(f"{k}={v}" for k, v in sv.path.env))
    out += [f"    source: {sv.path.source}",
            f"    memory holds {sv.max_concurrency} requests ({sv.limited_by})",
            "    TPOT ms: " + " · ".join(f"B={int(r.batch)} {_num(r.tpot_ms, '.2f')}"
                                     for r in sv.per_batch.itertuples()),
            f"    loss vs {ENGINE_LABELS[eng]}'s per-batch best (TPOT % / throughput %): {_loss_line(sv)}",
            f"    runner-up configuration: {sv.runner_up} (worst loss {_num(sv.runner_up_worst_loss_pct, '.1f')}%)"]
    if sv.adaptive is not None:
        a = sv.adaptive
        out.append("    adaptive T: " + " · ".join(f"B={int(r.batch)} T={int(r.draft_tokens)} (TPOT "
                                                   f"-{_num(r.gain_pct, '.1f')}%)" for r in a.schedule.itertuples()))
        out.append(f"      flags: {' '.join(a.args)}")
        if a.config is not None:
            out.append(f"      {a.config_file}: {json.dumps(a.config)}")
        out.append(f"      ({a.note}; {a.source})")
    else:
        out.append(f"    adaptive T: {sv.adaptive_note}")
    out += [f"    note: {n}" for n in sv.notes]
    return out


def _not_run(plan: Plan) -> list[str]:
    if plan.not_run.empty:
        return ["No engine runs these yet: none beats the best engine-runnable option beyond noise"]
    out = ["No engine runs these yet (TPOT below the best engine-runnable option, where beyond noise):"]
    for r in plan.not_run.itertuples():
        out.append(f"  {r.option}: -{r.gain_tpot_pct:.1f}% TPOT at B={r.at_batch} vs {r.best_runnable} "
                   f"(wins at B={r.batches}); {r.why}")
    return out


def reported(plan: Plan) -> pd.DataFrame:
    """The seed's reported TPOT on the planned GPU (:func:`gdnlab.seed.tpot_vs_concurrency`, status
    ``reported``) beside the plan's TPOT for the same option at the same batch: ``backend,
    concurrency, reported_tpot_ms, planned_tpot_ms`` (empty for a GPU the seed did not run)."""
    from ..seed import SEED_DRAFT_TOKENS, tpot_vs_concurrency
    from ..strategies.registry import BASELINE  # the seed's strategy

    rep = tpot_vs_concurrency(fixed=True)
    rep = rep[rep["gpu"].astype(str) == plan.gpu.name]
    c = plan.candidates
    rows = []
    for r in rep.itertuples():
        m = c[(c["strategy"] == BASELINE) & (c["draft_tokens"] == SEED_DRAFT_TOKENS)
              & (c["state_dtype"] == "bfloat16") & (c["backend"] == r.backend) & (c["batch"] == r.concurrency)]
        rows.append({"backend": r.backend, "concurrency": int(r.concurrency), "reported_tpot_ms": float(r.mean_tpot_ms),
                     "planned_tpot_ms": float(m["tpot_ms"].iloc[0]) if len(m) else math.nan})
    return pd.DataFrame(rows, columns=["backend", "concurrency", "reported_tpot_ms", "planned_tpot_ms"])


def _reported_lines(plan: Plan) -> list[str]:
    from ..seed import SEED_ACCEPT_LEN, SEED_SOURCE

    rep = reported(plan)
    if rep.empty:
        return []
    out = [f"reported on {plan.gpu.name} ({SEED_SOURCE}; SGLang full_cache T=4 bfloat16, accept "
           f"{SEED_ACCEPT_LEN[0]}-{SEED_ACCEPT_LEN[1]}, ISL 32 / OSL 512), TPOT ms reported / planned here:"]
    for be, g in rep.groupby("backend"):
        out.append(f"  {be}: " + " · ".join(f"c={r.concurrency} {r.reported_tpot_ms:.2f} / "
                                            f"{_num(r.planned_tpot_ms, '.2f')}" for r in g.itertuples()))
    return out


def servers_table(plan: Plan) -> pd.DataFrame:
    """One row per engine: its configuration, flags, environment, worst TPOT loss (%) against its
    per-batch best, the runner-up, the concurrency memory holds and the adaptive schedule."""
    rows = []
    for eng, sv in plan.servers.items():
        if sv is None:
            rows.append({"engine": f"{ENGINE_LABELS[eng]} {ENGINE_VERSIONS[eng]}", "configuration": "none priced"})
            continue
        rows.append({"engine": sv.path.label, "configuration": sv.label + (" (plain decode)" if sv.path.proxy else ""),
                     "flags": " ".join(sv.path.args), "env": " ".join(f"{k}={v}" for k, v in sv.path.env),
                     "worst_loss_tpot_pct": sv.worst_loss_pct, "runner_up": sv.runner_up,
                     "max_concurrency": sv.max_concurrency, "status": sv.status,
                     "adaptive": " ".join(sv.adaptive.args) if sv.adaptive is not None else sv.adaptive_note})
    return pd.DataFrame(rows)


def plan_text(plan: Plan, *, model=None, show_all: bool = False) -> str:
    """The plan as terminal text (see the module docstring)."""
    lines = _header(plan)
    if model is not None:
        lines += _memory(plan, model)
    lines.append(f"One server per engine for B = {plan.batches[0]}..{plan.batches[-1]} (the option with the smallest "
                 "worst-case TPOT loss against that engine's per-batch best):")
    for eng in ENGINE_VERSIONS:
        lines += _server(plan, eng)
    lines += _not_run(plan)
    lines.append("Per batch, the fastest option memory holds (tpot_ms in ms per output token, tpot_lo/hi_ms its "
                 "p10-p90 range from the GDN timing, other components at their medians; throughput_tok_s in output "
                 "tokens/s; "
                 "speedup_vs_decode = plain-decode TPOT (same backend, state dtype) / this TPOT, x; "
                 "gdn_kernel_share_pct = % of the step in GDN kernels; verdict tie = TPOT ranges overlap; margins "
                 "in % against the runner-up):")
    table = (plan.candidates if show_all else plan.per_batch).copy()
    if "engines" in table:
        table["engines"] = table["engines"].fillna("").replace("", "none yet")
    cols = [c for c in PER_BATCH_COLUMNS if c in table.columns]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60, "display.max_columns", 40):
        lines.append(table[cols].round(ROUND).to_string(index=False))
    lines.append("Best option each engine runs, per batch (TPOT ms, % above the overall best):")
    best = plan.per_batch.set_index("batch")["tpot_ms"]
    for eng, t in plan.per_engine.items():
        items = [f"B={int(r.batch)} {option_label(*[getattr(r, c) for c in KEY])} {r.tpot_ms:.2f} "
                 f"(+{(r.tpot_ms / best[r.batch] - 1) * 100:.1f}%)" for r in t.itertuples()
                 if isinstance(getattr(r, "strategy", None), str)]
        lines.append(f"  {ENGINE_LABELS[eng]}: " + (" · ".join(items) or "none"))
    lines += _reported_lines(plan)
    lines += [f"  · {n}" for n in plan.notes]
    lines.append(f"provenance: TPOT and throughput are projected by the {plan.candidates['provenance'].iloc[0]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- JSON


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _server_record(sv: ServerChoice, batches: list[int]) -> dict:
    pb = sv.per_batch
    rec = {"kind": "server", "engine": sv.engine, "engine_version": sv.path.version, "args": list(sv.path.args),
           "env": dict(sv.path.env), "batch": f"{batches[0]}-{batches[-1]}", "batches": batches,
           **{k: _clean(v) for k, v in sv.option.items()},
           "tpot_ms": {str(int(b)): _clean(t) for b, t in zip(pb["batch"], pb["tpot_ms"])},
           "throughput_tok_s": {str(int(b)): _clean(t) for b, t in zip(pb["batch"], pb["throughput_tok_s"])},
           "loss_tpot_pct": {str(int(b)): _clean(t) for b, t in zip(pb["batch"], pb["loss_tpot_pct"])},
           "runner_up": sv.runner_up,
           "margin": {"worst_loss_tpot_pct": _clean(sv.worst_loss_pct),
                      "runner_up_worst_loss_tpot_pct": _clean(sv.runner_up_worst_loss_pct)},
           "max_concurrency": sv.max_concurrency, "limited_by": sv.limited_by, "status": sv.status,
           "proxy": sv.path.proxy, "source": sv.path.source, "adaptive": None}
    if sv.adaptive is not None:
        a = sv.adaptive
        rec["adaptive"] = {"args": list(a.args), "env": dict(a.env), "config": a.config, "config_file": a.config_file,
                           "schedule": [{k: _clean(v) for k, v in r.items()} for r in a.schedule.to_dict("records")],
                           "source": a.source, "note": a.note}
    else:
        rec["adaptive_note"] = sv.adaptive_note
    return rec


def _batch_record(r: pd.Series, engine: str | None, plan: Plan) -> dict:
    path = engine_paths(*(r[c] for c in KEY), plan.gpu.sm).get(engine) if engine else None
    return {"kind": "per_batch", "engine": engine, "engine_version": ENGINE_VERSIONS.get(engine) if engine else None,
            "args": list(path.args) if path else [], "env": dict(path.env) if path else {},
            "batch": int(r["batch"]), **{c: _clean(r[c]) for c in KEY},
            "accept_len": _clean(r["accept_len"]), "tpot_ms": _clean(r["tpot_ms"]),
            "tpot_range_ms": [_clean(r["tpot_lo_ms"]), _clean(r["tpot_hi_ms"])],
            "throughput_tok_s": _clean(r["throughput_tok_s"]), "runner_up": r["runner_up"],
            "margin": {"tpot_pct": _clean(r["margin_tpot_pct"]), "throughput_pct": _clean(r["margin_throughput_pct"])},
            "verdict": r["verdict"], "tied_with": r.get("tied_with", ""),
            "max_concurrency": _clean(r["max_concurrency"]),
            "status": r["status"], "extrapolated": r["extrapolated"], "check": r["check"],
            "runs_on": r["engines"].split(",") if r["engines"] else []}


def plan_records(plan: Plan) -> dict:
    """The plan as one JSON-ready dict: context, acceptance, notes and ``recommendations`` (servers,
    per-batch bests per engine and overall, options no engine runs yet)."""
    recs = [_server_record(sv, plan.batches) for sv in plan.servers.values() if sv is not None]
    for eng, t in plan.per_engine.items():
        recs += [_batch_record(r, eng, plan) for _, r in t.iterrows() if isinstance(r.get("strategy"), str)]
    recs += [_batch_record(r, None, plan) for _, r in plan.per_batch.iterrows() if isinstance(r.get("strategy"), str)]
    recs += [{"kind": "no_engine_yet", "engine": None, "option": r.option, "why": r.why,
              "gain_tpot_pct": _clean(r.gain_tpot_pct), "batch": int(r.at_batch), "best_runnable": r.best_runnable,
              "wins_at": r.batches} for r in plan.not_run.itertuples()]
    c = plan.candidates
    return {"gpu": plan.gpu.name, "sm": plan.gpu.sm, "data_status": str(c["status"].iloc[0]),
            "batches": plan.batches, "ctx_per_request": c.attrs["ctx"],
            "acceptance": {"curve": plan.curve.name, "status": plan.curve.status, "source": plan.curve.source,
                           "how": plan.accept_how,
                           "accept_len": {str(t): a for t, a in c.attrs["accept_lengths"].items()}},
            "notes": plan.notes, "provenance": str(c["provenance"].iloc[0]), "recommendations": recs}
