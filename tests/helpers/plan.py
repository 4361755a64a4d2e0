"""Small synthetic component runs and kernel sweeps for the planner and model tests
(tests/model/test_plan*.py, tests/model/test_model.py): per-op times with a known formula, so every
composed step and plan they feed can be checked by hand."""
from __future__ import annotations

import pandas as pd

from gdnlab.acceptance_curves import AcceptanceCurve
from gdnlab.model import ComponentTimes, ComposedStep, Overheads, SweepGDN

GDN_OPS = ("gdn.norm", "gdn.in_proj", "gdn.conv1d", "gdn.recurrent", "gdn.gated_norm", "gdn.out_proj")
ATTN_OPS = ("attn.norm", "attn.qkv_proj", "attn.qk_norm_rope", "attn.kv_write", "attn.attention", "attn.out_gate",
            "attn.o_proj")
MOE_OPS = ("moe.norm", "moe.router", "moe.experts", "moe.shared_expert")
OVERHEAD = 2.0


def op_time(component: str, mode: str, batch: int, kv: float | None, T: int = 4) -> float:
    """Synthetic median (µs, graph overhead included): a floor plus terms in tokens and KV reads."""
    tokens = batch * (T if mode == "mtp" else 1)
    base = {"gdn.recurrent": 3.0, "gdn.commit": 2.0, "moe.experts": 20.0, "lm_head.gemm": 30.0}.get(component, 4.0)
    t = OVERHEAD + base + 0.05 * tokens
    if component == "gdn.recurrent":
        t += 0.2 * tokens
    if component in ("attn.attention", "mtp_draft"):
        t += 1e-4 * batch * kv * (1.5 if mode == "mtp" else 1.0)
    return t


def synthetic_run(batches=(1, 4, 16), kvs=(1024, 4096), T: int = 4, gpu: str = "NVIDIA H200"):
    """(components, recipes, slices) frames shaped like a gdnlab.components run (3 GDN + 1 attention
    layers); the slice step is the exact composition of its components (overhead counted once)."""
    rows = [{"component": "launch.graph", "mode": None, "batch": None, "kv_len": None, "strategy": None,
             "median_us": OVERHEAD, "outcome": "ok", "gpu": gpu, "draft_tokens": T, "status": "synthetic",
             "state_dtype": "bfloat16", "preset": "qwen3.5-397b-a17b@tp4"}]
    recipes = []
    for mode in ("decode", "mtp"):
        ops = {**{c: 3 for c in GDN_OPS}, **{c: 1 for c in ATTN_OPS}, **{c: 4 for c in MOE_OPS}}
        if mode == "mtp":
            ops["gdn.commit"] = 3
        recipes += [{"preset": "qwen3.5-397b-a17b@tp4", "mode": mode, "component": c, "count": n}
                    for c, n in ops.items()]
        for B in batches:
            for c in [*ops, "lm_head.norm", "lm_head.gemm"]:
                kv_list = kvs if c == "attn.attention" else [None]
                for kv in kv_list:
                    rows.append({"component": c, "mode": mode, "batch": B, "kv_len": kv,
                                 "strategy": "full_cache" if mode == "mtp" and c in ("gdn.recurrent", "gdn.commit")
                                 else None, "median_us": op_time(c, mode, B, kv, T), "outcome": "ok"})
            if mode == "mtp":
                for kv in kvs:
                    rows.append({"component": "mtp_draft", "mode": "mtp", "batch": B, "kv_len": kv,
                                 "strategy": None, "median_us": op_time("mtp_draft", "mtp", B, kv, T), "outcome": "ok"})
    comp = pd.DataFrame(rows)
    for col in ("gpu", "draft_tokens", "status", "state_dtype", "preset"):
        comp[col] = comp[col].iloc[0]
    rec = pd.DataFrame(recipes)
    slices = []
    for mode in ("decode", "mtp"):
        r = rec[rec["mode"] == mode]
        for B in batches:
            for kv in kvs:
                tot = OVERHEAD + sum(n * (op_time(c, mode, B, kv if c == "attn.attention" else None, T) - OVERHEAD)
                                     for c, n in zip(r["component"], r["count"]))
                slices.append({"preset": "qwen3.5-397b-a17b@tp4", "mode": mode, "batch": B, "kv_len": kv,
                               "strategy": "full_cache" if mode == "mtp" else None, "median_us": tot,
                               "outcome": "ok", "status": "synthetic"})
    return comp, rec, pd.DataFrame(slices)


def synthetic_times(**kw) -> ComponentTimes:
    comp, rec, sl = synthetic_run(**kw)
    return ComponentTimes.from_frames(comp, rec, slices=sl)


def synthetic_sweep(gpu: str = "NVIDIA H200", scale: float = 1.0) -> pd.DataFrame:
    """A tiny kernel sweep of the seed's per-GPU shape: two backends, decode and full_cache verify."""
    rows = []
    for be, f in (("flashinfer", 0.9), ("triton", 1.0)):
        for sd, s in (("bfloat16", 1.0), ("float32", 1.8)):
            for B in (1, 4, 16):
                rows.append({"backend": be, "mode": "decode", "strategy": "decode", "draft_tokens": 1, "batch": B,
                             "state_dtype": sd, "time_us": scale * (4 + f * s * 0.2 * B)})
                for T in (2, 4):
                    rows.append({"backend": be, "mode": "verify", "strategy": "full_cache", "draft_tokens": T,
                                 "batch": B, "state_dtype": sd, "time_us": scale * (5 + f * s * 0.2 * B * T)})
    df = pd.DataFrame(rows)
    df["status"], df["timing_method"], df["intermediate"], df["gpu"] = "ok", "graph", "batch", gpu
    df["H"], df["HV"], df["K"], df["V"] = 4, 16, 128, 128
    return df


#: synthetic strategy step µs: (floor, per B x T / 4, per B x accept length)
STEP_COEF = {"full_cache": (6.0, 0.9, 0.0), "recompute": (5.0, 0.5, 0.05), "replay_ring": (5.5, 0.6, 0.02)}


def strategy_sweep(Ts=(2, 3, 4, 6, 8), accepts=None, *, coef=None, backends=("flashinfer", "triton"),
                   state_dtypes=("bfloat16", "float32"), spread: float = 0.01, gpu: str = "NVIDIA H200",
                   batches=(1, 4, 16)) -> pd.DataFrame:
    """Kernel calls (:func:`synthetic_sweep`) plus strategy step rows (``measure == "step"``) at every T of
    ``Ts`` and accept length of ``accepts(T)`` (default: 0.8 T), with p10 / p90 at -/+ ``spread``."""
    coef = coef or STEP_COEF
    acc = accepts or (lambda T: [0.8 * T])
    rows = []
    for be in backends:
        for sd in state_dtypes:
            for s, (f, c, g) in coef.items():
                for T in Ts:
                    for a in acc(T):
                        for B in batches:
                            us = f + c * B * T / 4 + g * a * B
                            rows.append({"backend": be, "mode": "step", "measure": "step", "strategy": s,
                                         "draft_tokens": T, "accept_len": a, "batch": B, "state_dtype": sd,
                                         "time_us": us, "step_us": us, "verify_us": 0.7 * us, "commit_us": 0.3 * us,
                                         "time_p10_us": us * (1 - spread), "time_p90_us": us * (1 + spread),
                                         "timing_method": "amortised", "calls_per_sample": 16, "correct": True})
    steps = pd.DataFrame(rows)
    steps["correct"] = steps["correct"].astype("boolean")
    steps["status"], steps["intermediate"], steps["gpu"] = "ok", None, gpu
    steps["H"], steps["HV"], steps["K"], steps["V"] = 4, 16, 128, 128
    calls = synthetic_sweep(gpu).assign(measure="call", calls_per_sample=1)
    return pd.concat([calls, steps], ignore_index=True)


def step_with(rows: pd.DataFrame, params: Overheads | None = None) -> ComposedStep:
    """A composed step whose GDN kernels (and the planner's accept levels) come from ``rows``."""
    st = ComposedStep(synthetic_times(), overheads=params, gdn=SweepGDN.from_sweep(rows))
    st.gdn_rows = rows
    return st


def curve(points: dict, name: str = "test") -> AcceptanceCurve:
    return AcceptanceCurve(points, name=name, source="test", status="synthetic")
