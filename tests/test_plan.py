"""The planner (gdnlab.model.plan, ``gdnlab plan``) on small synthetic component runs: the best option
per batch is the lowest TPOT, speculation loses at accept length 1 and wins at T, accept lengths carry
across T, engine settings name their flags and sources, the command prints a table with provenance,
bad input is a one-line error. :func:`synthetic_run` is also used by tests/test_model.py."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from gdnlab.errors import DataError, InputError
from gdnlab.model import (
    ComponentTimes,
    ComposedStep,
    Overheads,
    SweepGDN,
    accept_lengths,
    best_plan,
    engine_settings,
    plan_candidates,
)

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


@pytest.fixture(scope="module")
def step():
    return ComposedStep(synthetic_times(), gdn=SweepGDN.from_sweep(synthetic_sweep()))


def test_accept_lengths_carry_across_T():
    al = accept_lengths(3.0, (2, 4, 8), accept_T=4)
    assert al[4] == pytest.approx(3.0, abs=1e-9)
    assert 1.0 < al[2] < al[4] < al[8] <= 8
    assert accept_lengths({3: 2.5, 4: 3.1}, ()) == {3: 2.5, 4: 3.1}
    with pytest.raises(InputError, match="outside"):
        accept_lengths({4: 4.5}, ())


def test_best_is_lowest_tpot_and_speculation_needs_acceptance(step):
    cand = plan_candidates(step, batches=[1, 16], accept={2: 2.0, 4: 4.0})
    best = best_plan(cand)
    for B, g in cand.dropna(subset=["tpot_ms"]).groupby("batch"):
        assert best.loc[best["batch"] == B, "tpot_ms"].iloc[0] == pytest.approx(g["tpot_ms"].min())
    assert (best["strategy"] != "decode").all()          # every draft kept: speculation wins
    low = best_plan(plan_candidates(step, batches=[1, 16], accept={2: 1.0, 4: 1.0}))
    assert (low["strategy"] == "decode").all()           # nothing kept: verify costs more than decode
    assert set(cand["state_dtype"]) == {"bfloat16", "float32"} and set(cand["backend"]) == {"flashinfer", "triton"}
    assert "no strategy step rows" in cand.attrs["note"] and cand["provenance"].str.contains("fitted").all()
    assert (cand["check"] == "checked").all()


def step_rows(gpu: str = "NVIDIA H200") -> pd.DataFrame:
    """Strategy step rows (``measure == "step"``) at T=4: recompute is the fastest graph-timed and
    checked one; a faster eager row, a faster row that failed its check and an unchecked row (NA)."""
    rows = []
    for be in ("flashinfer", "triton"):
        for B in (1, 4, 16):
            for strat, us, method, ok in (("full_cache", 6 + 0.9 * B, "amortised", True),
                                          ("recompute", 5 + 0.5 * B, "amortised", True),
                                          ("recompute_fused", 1 + 0.1 * B, "eager", True),
                                          ("token_slots", 1 + 0.1 * B, "amortised", False),
                                          ("replay_ring", 5.5 + 0.6 * B, "amortised", pd.NA)):
                rows.append({"backend": be, "mode": "step", "measure": "step", "strategy": strat, "draft_tokens": 4,
                             "batch": B, "state_dtype": "bfloat16", "time_us": us, "step_us": us,
                             "verify_us": 0.7 * us, "commit_us": 0.3 * us, "timing_method": method,
                             "calls_per_sample": 16, "correct": ok})
    df = pd.DataFrame(rows)
    df["correct"] = df["correct"].astype("boolean")
    df["status"], df["intermediate"], df["gpu"] = "ok", None, gpu
    df["H"], df["HV"], df["K"], df["V"] = 4, 16, 128, 128
    return df


def test_strategy_step_rows_price_verify_and_commit_and_exclusions_hold():
    sweep = pd.concat([synthetic_sweep().assign(measure="call", calls_per_sample=1), step_rows()],
                      ignore_index=True)
    g = SweepGDN.from_sweep(sweep)
    # step rows stand for verify + commit; the graph-replay share removed is overhead / calls_per_sample
    v, with_commit = g.verify_us("triton", "recompute", 4, 4, "bfloat16", overhead_us=1.6)
    assert with_commit and v == pytest.approx(5 + 0.5 * 4 - 1.6 / 16)
    assert g.decode_us("triton", 4, "bfloat16", overhead_us=1.6) == pytest.approx(4 + 0.2 * 4 - 1.6)
    assert set(g.excluded["strategy"]) == {"recompute_fused", "token_slots"}
    assert not g.checked("triton", "replay_ring", 4, "bfloat16") and g.checked("triton", "recompute", 4, "bfloat16")
    st = ComposedStep(synthetic_times(), gdn=g, state_dtype="bfloat16")
    cand = plan_candidates(st, batches=[1, 16], accept={2: 2.0, 4: 4.0, 8: 8.0}, draft_tokens=(2, 4, 8),
                           state_dtypes=["bfloat16"])
    assert not cand["strategy"].isin(["recompute_fused", "token_slots"]).any()
    assert set(cand.loc[cand["strategy"] == "replay_ring", "check"]) == {"unchecked"}
    # T=2 has full_cache verify calls only; T=8 nothing: not priced, and the note says so
    assert set(cand.loc[cand["strategy"] != "decode", "draft_tokens"]) == {2, 4}
    assert set(cand.loc[cand["draft_tokens"] == 2, "strategy"]) == {"full_cache"}
    assert "T=8 not priced" in cand.attrs["note"] and "eager" in cand.attrs["note"]
    best = best_plan(cand)
    assert (best["strategy"] == "recompute").all() and (best["draft_tokens"] == 4).all()
    # an unchecked option that wins is flagged; checked_only skips it
    fast = sweep.copy()
    ring = fast["strategy"].eq("replay_ring")
    fast.loc[ring, ["step_us", "time_us"]] = fast.loc[ring, ["step_us", "time_us"]] * 0.1
    st2 = ComposedStep(synthetic_times(), gdn=SweepGDN.from_sweep(fast), state_dtype="bfloat16")
    c2 = plan_candidates(st2, batches=[16], accept={4: 4.0}, draft_tokens=(4,), state_dtypes=["bfloat16"])
    assert best_plan(c2)["check"].iloc[0] == "unchecked"
    assert best_plan(c2, checked_only=True)["strategy"].iloc[0] == "recompute"


def test_engine_settings_name_flags_and_sources():
    e = engine_settings("full_cache", 4, "bfloat16", "triton")
    assert "--speculative-num-draft-tokens 4" in e["sglang"] and "--speculative-num-steps 3" in e["sglang"]
    assert "--mamba-ssm-dtype bfloat16" in e["sglang"] and "--linear-attn-verify-backend triton" in e["sglang"]
    assert "--gdn-mtp-cache-mode full" in e["sglang"] and '"num_speculative_tokens": 3' in e["vllm"]
    assert "server_args.py" in e["sources"] and "speculative.py" in e["sources"]
    assert "no switch" in engine_settings("token_slots", 4, "float32", "flashinfer")["sglang"]
    assert "--gdn-mtp-cache-mode none" in engine_settings("recompute", 3, "float32", "triton")["sglang"]
    d = engine_settings("decode", 1, "float32", "triton")
    assert "speculative" not in d["sglang"] and "--mamba-ssm-dtype float32" in d["sglang"]


def _write_run(folder, gpu="NVIDIA H200"):
    comp, rec, sl = synthetic_run(gpu=gpu)
    folder.mkdir(parents=True, exist_ok=True)
    comp.to_parquet(folder / "components.parquet")
    rec.to_parquet(folder / "recipes.parquet")
    sl.to_parquet(folder / "slice.parquet")
    (folder / "run.json").write_text(json.dumps({"presets": {"qwen3.5-397b-a17b": {"gdn_backend": "triton"}}}))


def _args(**kw):
    base = dict(gpu="h200", preset="qwen3.5-397b-a17b", tp=4, accept_len=3.0, accept_len_draft_tokens=4,
                accept_table=None, batches=[1, 4, 16], draft_tokens=[2, 4], strategies=None, state_dtypes=None,
                ctx=1024.0, components=None, sweep=None, reference_sweep=None, fitted="none", all=False,
                checked_only=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_plan_command_prints_table_with_provenance(tmp_path, capsys):
    from gdnlab.cli import plan as cli

    _write_run(tmp_path / "h200")
    synthetic_sweep().to_parquet(tmp_path / "h200" / "sweep.parquet")
    assert cli.run(_args(components=str(tmp_path / "h200"), sweep=str(tmp_path / "h200" / "sweep.parquet"))) == 0
    out = capsys.readouterr().out
    assert "tpot_ms" in out and "throughput_tok_s" in out and "provenance:" in out and "synthetic" in out
    assert "SGLang --" in out and "vLLM" in out and "sources:" in out
    # strategy step rows: an unchecked winner is flagged and the best checked option printed beside
    steps = step_rows()
    steps.loc[steps["strategy"] == "replay_ring", "step_us"] *= 0.1
    pd.concat([synthetic_sweep().assign(measure="call"), steps]).to_parquet(tmp_path / "h200" / "steps.parquet")
    assert cli.run(_args(components=str(tmp_path / "h200"), sweep=str(tmp_path / "h200" / "steps.parquet"))) == 0
    out = capsys.readouterr().out
    assert "unchecked" in out and "passed its correctness check" in out and "T considered only" in out
    # no sweep for this GPU: falls back to the components and says so
    assert cli.run(_args(components=str(tmp_path / "h200"), sweep=str(tmp_path / "none.parquet"))) == 0
    assert "no sweep" in capsys.readouterr().out
    # a measured accept-length table
    pd.DataFrame({"draft_tokens": [2, 4], "accept_len": [1.8, 3.0]}).to_csv(tmp_path / "acc.csv", index=False)
    assert cli.run(_args(components=str(tmp_path / "h200"), accept_table=str(tmp_path / "acc.csv"))) == 0
    assert "measured table" in capsys.readouterr().out


def test_plan_command_bad_input_is_one_line_error(tmp_path):
    from gdnlab.cli import plan as cli

    with pytest.raises(DataError, match="does not exist"):
        cli.run(_args(components=str(tmp_path / "missing")))
    _write_run(tmp_path / "h200")
    with pytest.raises(InputError, match="measured"):
        cli.run(_args(components=str(tmp_path / "h200"), tp=8))
    with pytest.raises(InputError):
        cli.run(_args(components=str(tmp_path / "h200"), accept_len=5.0))


def test_planner_speedup_column_is_relative_to_decode(step):
    cand = plan_candidates(step, batches=[4], accept=3.0, draft_tokens=(4,))
    dec = cand[(cand["strategy"] == "decode")].set_index(["backend", "state_dtype"])["tpot_ms"]
    for r in cand[cand["strategy"] != "decode"].itertuples():
        assert r.speedup == pytest.approx(dec[(r.backend, r.state_dtype)] / r.tpot_ms)
    assert np.isfinite(cand["gdn_share"]).all() and ((cand["gdn_share"] > 0) & (cand["gdn_share"] < 1)).all()


def test_overheads_are_checked():
    with pytest.raises(InputError, match="request_us"):
        Overheads(1.0, -1.0)
