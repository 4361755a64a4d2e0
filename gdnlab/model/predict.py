"""``predict``: TPOT, throughput and where a step's time goes, for a served configuration.

:func:`predict` is the one prediction entry point (``gdnlab predict`` prints it; ``gdnlab plan`` is to
call it). For every combination of its list arguments it replays a bench_serving run
(:func:`gdnlab.model.serving.simulate_serving`) through the engine step
(:class:`~gdnlab.model.engine_step.EngineStep`: AIConfigurator's measured op tables, gdnlab's
engine-grade measurements where they exist, gdnlab's GDN verify + commit at the requested T) with the
engine's host numbers fitted on named published rows (:func:`gdnlab.model.calibration.deployment_params`),
and breaks the steady-state step down into parts.

The signature is stable: positional arguments in the order below, everything else keyword-only.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ..acceptance import AcceptanceModel
from ..backends import DEFAULT_BACKEND
from ..errors import InputError
from ..shapes import dtype_name
from ..strategies.registry import BASELINE
from .calibration import CURRENT_SOURCES, all_cases, deployment_params, fit_params
from .engine_build import STRATEGY_SWEEP, _sweep, engine_step_for, gpu_key
from .engine_step import STEP_PARTS, EngineParams
from .mtp import MTPConfig
from .serving import ServingScenario, simulate_serving

__all__ = ["predict", "PREDICT_COLUMNS", "SUPPORTED", "fits_memory", "published_curve"]

#: what the shipped tables cover
SUPPORTED = {"preset": ("qwen3.5-397b-a17b",), "engine": ("sglang",), "gpu": ("h100", "h200", "b200", "gb200"),
             "tp": (4, 8), "weights_dtype": ("fp8_block", "bf16", "nvfp4"), "kv_dtype": ("bf16", "fp8")}
#: columns of :func:`predict`, in order (plus ``share_<part>`` for each part and ``host``)
PREDICT_COLUMNS = ["gpu", "tp", "ep", "weights_dtype", "kv_dtype", "state_dtype", "engine", "backend", "strategy",
                   "draft_tokens", "accept_len", "isl", "osl", "concurrency", "tpot_ms", "output_tok_s_per_gpu",
                   "output_tok_s_total", "step_ms", "gdn_share", "gdn_share_lo", "gdn_share_hi", "status", "gdn_source",
                   "ops_source", "pass_us", "request_us", "fit_rows"]


def published_curve(name: str):
    """A reported acceptance curve of ``gdnlab/data/acceptance_curves.csv`` by its ``curve_id``, as an
    :class:`~gdnlab.acceptance_curves.AcceptanceCurve` (points at gdnlab's T = drafts + 1)."""
    from ..acceptance_curves import AcceptanceCurve
    from ..anchors.published import load_acceptance_curves

    c = load_acceptance_curves()
    g = c[c["curve_id"] == name]
    if g.empty:
        raise InputError(f"no reported acceptance curve {name!r}; have {', '.join(dict.fromkeys(c['curve_id']))}")
    return AcceptanceCurve({int(t): float(a) for t, a in zip(g["draft_tokens"], g["accept_len"])}, name=name,
                           source=str(g["source_url"].iloc[0]), status="reported")


def _as_list(name: str, v) -> list:
    if isinstance(v, (str, bytes)) or v is None or not isinstance(v, Iterable):
        return [v]
    out = list(v)
    if not out:
        raise InputError(f"{name} must not be an empty list")
    return out


def _accept(accept_len, T: int | None) -> float | None:
    if T is None:
        return None
    if isinstance(accept_len, AcceptanceModel):
        return float(accept_len.mean(T))
    if accept_len is None:
        raise InputError(f"accept_len is needed with draft_tokens={T} (a number in [1, T] or an acceptance curve)")
    try:
        a = float(accept_len)
    except (TypeError, ValueError):
        raise InputError(f"accept_len must be a number or an acceptance model, got {accept_len!r}") from None
    if not 1.0 <= a <= T:
        raise InputError(f"accept_len={a:g} must lie in [1, draft_tokens={T}] (tokens kept per verify step)")
    return a


@lru_cache(maxsize=2)
def _fold_range() -> tuple[EngineParams, EngineParams]:
    """The lowest and highest host numbers over the leave-one-source-out fits (the host part's spread)."""
    cases = all_cases()
    fits = [fit_params([c for c in cases if c.source in CURRENT_SOURCES and c.source != s and c.metric == "mean_tpot"],
                       f"all current sources but {s}") for s in CURRENT_SOURCES]
    lo = EngineParams(min(f.pass_us for f in fits), min(f.request_us for f in fits), source="fold minimum")
    hi = EngineParams(max(f.pass_us for f in fits), max(f.request_us for f in fits), source="fold maximum")
    return lo, hi


def _gdn_spread(backend: str, strategy: str, T: int, state_dtype: str, batch: float) -> tuple[float, float]:
    """p10 / median and p90 / median of the sweep's GDN rows nearest ``batch`` (step rows for MTP, decode
    call rows for T = 1); (1, 1) when the sweep has no spread columns."""
    s = _sweep(STRATEGY_SWEEP)
    if not {"time_p10_us", "time_p90_us"} <= set(s.columns):
        return 1.0, 1.0
    sel = s[(s["backend"] == backend) & (s["state_dtype"].map(lambda v: dtype_name(v)) == state_dtype)]
    if T == 1:
        sel = sel[(sel["mode"] == "decode") & (sel.get("measure", "call") != "step")]
    else:
        sel = sel[(sel.get("measure", "step") == "step") & (sel["strategy"] == strategy)]
        near = sel[sel["draft_tokens"] == T]
        sel = near if len(near) else sel
    sel = sel[pd.to_numeric(sel["time_us"], errors="coerce") > 0]
    if sel.empty:
        return 1.0, 1.0
    b = pd.to_numeric(sel["batch"], errors="coerce")
    r = sel.loc[(np.log(b) - np.log(max(batch, 1.0))).abs().idxmin()]
    return float(r["time_p10_us"] / r["time_us"]), float(r["time_p90_us"] / r["time_us"])


#: bytes per parameter of the weights (FP8 block-scaled: 1 B + one fp32 scale per 128x128 block, ~1.0)
_BYTES_PER_PARAM = {"bf16": 2.0, "fp8_block": 1.0, "nvfp4": 0.5625}


def fits_memory(gpu: str, tp: int, weights_dtype: str) -> tuple[bool, str]:
    """Whether the weights (target + MTP layer, :meth:`ServedModel.weight_gb_per_gpu`) take at most 90 %
    of one GPU's memory at ``tp``; the reason when not."""
    from ..hardware import spec_for
    from .engine_build import GPU_NAMES
    from .served import ServedModel

    m = ServedModel(tp=tp, gdn=preset_shape(tp), weight_bytes_per_param=_BYTES_PER_PARAM[weights_dtype],
                    lm_head_bytes_per_param=2.0)
    spec = spec_for(GPU_NAMES[gpu])
    need, have = m.weight_gb_per_gpu(), spec.hbm_gib * 1.073741824
    if need > 0.9 * have:
        return False, (f"does not fit: {weights_dtype} weights need {need:.0f} GB per GPU at TP {tp}, {spec.name} "
                       f"has {have:.0f} GB")
    return True, ""


def preset_shape(tp: int):
    from ..shapes import preset

    return preset("qwen3.5-397b-a17b", tp=tp)


def _one(cfg: dict, params: EngineParams, opts: dict) -> dict:
    T = cfg["draft_tokens"]
    a = _accept(cfg["accept_len"], T)
    ok, why = fits_memory(cfg["gpu"], cfg["tp"], cfg["weights_dtype"])
    if not ok:
        return {**{k: cfg[k] for k in ("gpu", "tp", "ep", "weights_dtype", "kv_dtype", "backend", "strategy", "isl",
                                       "osl", "concurrency")}, "state_dtype": opts["state_dtype"],
                "engine": cfg["engine"], "draft_tokens": T if T is not None else 1,
                "accept_len": a if a is not None else 1.0, "status": why}
    mtp = None if T is None else MTPConfig(draft_tokens=int(T), acceptance=a, num_steps=max(int(T) - 1, 1))
    step = engine_step_for(cfg["gpu"], cfg["tp"], cfg["ep"], cfg["weights_dtype"], cfg["kv_dtype"],
                           state_dtype=opts["state_dtype"], strategy=cfg["strategy"], params=params,
                           chunked_prefill_tokens=opts["chunked_prefill_tokens"], sweep_path=opts["sweep_path"])
    c = int(cfg["concurrency"])
    n = int(opts["num_prompts"] or max(8 * c, 16))
    sc = ServingScenario(isl=int(cfg["isl"]), osl=int(cfg["osl"]), num_prompts=n, concurrency=c,
                         max_running=int(opts["max_running"] or max(c, 1)), range_ratio=float(opts["range_ratio"]))
    run = simulate_serving(step, cfg["backend"], sc, mtp)
    B = float(sc.effective_concurrency)
    kv = cfg["isl"] + cfg["osl"] / 2.0
    br = step.breakdown(cfg["backend"], B, kv, mtp)
    tot = br["time_us"].sum()
    row = {**{k: cfg[k] for k in ("gpu", "tp", "ep", "weights_dtype", "kv_dtype", "backend", "strategy", "isl", "osl",
                                  "concurrency")},
           "state_dtype": opts["state_dtype"], "engine": cfg["engine"], "draft_tokens": T if T is not None else 1,
           "accept_len": a if a is not None else 1.0, "tpot_ms": run.tpot_ms(params),
           "output_tok_s_total": run.throughput(params), "step_ms": tot / 1e3,
           "status": "projected", "gdn_source": step.part_source("gdn_kernel"), "ops_source": step.ops.status,
           "pass_us": params.pass_us, "request_us": params.request_us, "fit_rows": params.source}
    row["output_tok_s_per_gpu"] = row["output_tok_s_total"] / cfg["tp"]
    for p, v in zip(br["part"], br["share"]):
        row[f"share_{p}"] = float(v)
    row.update(_share_interval(step, cfg, B, kv, mtp, br))
    return row


def _share_interval(step, cfg: dict, B: float, kv: float, mtp, br: pd.DataFrame) -> dict:
    """GDN share of the step and its interval: the GDN kernels at their p10 / p90 (the sweep rows'
    spread) against the other parts with the host part at the lowest / highest fold fit (AIConfigurator's
    tables carry no spread)."""
    T = 1 if mtp is None else int(mtp.draft_tokens)
    gdn = float(br.loc[br["part"] == "gdn_kernel", "time_us"].sum())
    kern_other = float(br.loc[~br["part"].isin(["gdn_kernel", "host"]), "time_us"].sum())
    lo_p, hi_p = _fold_range()
    passes = step.passes(mtp)
    host = [p.pass_us * passes + p.request_us * B * passes for p in (lo_p, hi_p)]
    r10, r90 = _gdn_spread(cfg["backend"], cfg["strategy"], T, step.state_dtype, B) if step.gdn is not None else (1, 1)
    tot = float(br["time_us"].sum())
    return {"gdn_share": gdn / tot if tot > 0 else np.nan,
            "gdn_share_lo": gdn * r10 / (gdn * r10 + kern_other + max(host)),
            "gdn_share_hi": gdn * r90 / (gdn * r90 + kern_other + min(host))}


def predict(gpu: str | Iterable[str] = "h200", preset: str = "qwen3.5-397b-a17b", tp: int | Iterable[int] = 4,
            ep: int | Iterable[int] | None = None, weights_dtype: str | Iterable[str] = "fp8_block",
            kv_dtype: str | Iterable[str] = "bf16", isl: int | Iterable[int] = 1024, osl: int | Iterable[int] = 1024,
            concurrency: int | Iterable[int] = (1, 4, 16, 64, 128), draft_tokens: int | None | Iterable = 4,
            accept_len: float | AcceptanceModel | None = 3.17, strategy: str | Iterable[str] = BASELINE,
            backend: str | Iterable[str] = DEFAULT_BACKEND, engine: str = "sglang", *, state_dtype: str = "bfloat16",
            num_prompts: int | None = None, max_running: int | None = None, range_ratio: float = 1.0,
            chunked_prefill_tokens: int | None = None, params: EngineParams | None = None,
            sweep_path: str | None = None) -> pd.DataFrame:
    """Predicted serving of ``preset`` on ``gpu``: one row per combination of the list arguments.

    Args:
        gpu: ``h100``, ``h200``, ``b200``, ``gb200`` (any spelling; list allowed).
        preset: the served model (``qwen3.5-397b-a17b``: the op tables are AIConfigurator's for it).
        tp: tensor parallelism, 4 or 8 (list allowed). ep: expert parallelism, 1 or ``tp`` (None: 1).
        weights_dtype: ``fp8_block``, ``bf16`` or (Blackwell) ``nvfp4``. kv_dtype: ``bf16`` or ``fp8``.
        isl, osl: input / output tokens per request (fixed lengths unless ``range_ratio`` < 1).
        concurrency: client concurrency (requests in flight; list allowed).
        draft_tokens: T verified per step (MTP/NEXTN/EAGLE topk 1, ``T - 1`` drafts); None = no
            speculation (list allowed, None may be in it).
        accept_len: tokens kept per verify step, a number in [1, T] (the same at every T) or an
            acceptance model / curve (:class:`gdnlab.acceptance_curves.AcceptanceCurve`: its mean at T).
        strategy: GDN verify strategy (``full_cache``, ``token_slots``, ``recompute``,
            ``recompute_fused``, ``replay_ring``; list allowed). backend: GDN kernels, ``triton`` or
            ``flashinfer`` (list allowed). engine: ``sglang`` (the tables' engine).
        state_dtype: GDN state dtype (``bfloat16`` / ``float32``).
        num_prompts: prompts per simulated run (default ``max(8 x concurrency, 16)``); max_running:
            the engine's running-request cap (default: the concurrency); range_ratio: bench_serving's
            ``--random-range-ratio`` (1 = fixed lengths); chunked_prefill_tokens: default SGLang's by
            GPU memory; params: host numbers (default :func:`~gdnlab.model.calibration.deployment_params`);
            sweep_path: the GDN strategy sweep (default the shipped H200 one).

    Returns:
        A DataFrame (:data:`PREDICT_COLUMNS` + ``share_<part>`` per step part and ``host``):
        ``tpot_ms`` (mean TPOT of the simulated run, ms), ``output_tok_s_per_gpu`` / ``_total``
        (tok/s), ``step_ms`` (the steady-state step at ``min(concurrency, max_running)`` requests and
        ``isl + osl / 2`` cached tokens), each part's share of it, the GDN share with its interval
        (``gdn_share_lo`` / ``_hi``), ``status = "projected"`` and the sources of every number.
        ``attrs["provenance"]`` says what the numbers are made of.
    """
    if str(preset).lower() not in SUPPORTED["preset"]:
        raise InputError(f"preset {preset!r}: predict covers {SUPPORTED['preset']} (AIConfigurator's op tables)")
    if str(engine).lower() not in SUPPORTED["engine"]:
        raise InputError(f"engine {engine!r}: the op tables are SGLang's (AIConfigurator 0.12.0, sglang 0.5.14)")
    for name, vals in (("weights_dtype", weights_dtype), ("kv_dtype", kv_dtype), ("tp", tp)):
        bad = [v for v in _as_list(name, vals) if v not in SUPPORTED[name]]
        if bad:
            raise InputError(f"{name}={bad[0]!r}: expected one of {SUPPORTED[name]}")
    p = params or deployment_params()
    grid = {"gpu": [gpu_key(g) for g in _as_list("gpu", gpu)], "tp": _as_list("tp", tp),
            "weights_dtype": _as_list("weights_dtype", weights_dtype), "kv_dtype": _as_list("kv_dtype", kv_dtype),
            "isl": _as_list("isl", isl), "osl": _as_list("osl", osl),
            "concurrency": _as_list("concurrency", concurrency),
            "draft_tokens": _as_list("draft_tokens", draft_tokens), "strategy": _as_list("strategy", strategy),
            "backend": _as_list("backend", backend)}
    for k in ("isl", "osl", "concurrency"):
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in grid[k]):
            raise InputError(f"{k} must be positive integers, got {grid[k]}")
    if any(t is not None and (isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 2)
           for t in grid["draft_tokens"]):
        raise InputError(f"draft_tokens must be None or integers >= 2, got {grid['draft_tokens']}")
    opts = {"state_dtype": dtype_name(state_dtype), "num_prompts": num_prompts, "max_running": max_running,
            "range_ratio": range_ratio, "chunked_prefill_tokens": chunked_prefill_tokens, "sweep_path": sweep_path}
    rows = []
    for combo in itertools.product(*grid.values()):
        cfg: dict[str, Any] = dict(zip(grid, combo))
        cfg["ep"] = int(ep) if ep is not None else 1
        cfg["accept_len"], cfg["engine"] = accept_len, str(engine).lower()
        if cfg["draft_tokens"] is None and (cfg["strategy"], cfg["backend"]) != (grid["strategy"][0], cfg["backend"]):
            continue                      # no speculation: one row per backend, not per strategy
        rows.append(_one(cfg, p, opts))
    out = pd.DataFrame(rows)
    order = [f"share_{x}" for x in (*STEP_PARTS, "host")]
    out = out.reindex(columns=PREDICT_COLUMNS + order)
    ops = next((o for o in out["ops_source"] if isinstance(o, str)), "none priced")
    out.attrs["provenance"] = (f"projected: op times {ops}; GDN verify + commit from gdnlab's sweep; host numbers "
                               f"{p.short()} ({p.source})")
    return out
