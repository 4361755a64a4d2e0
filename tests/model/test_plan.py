"""The planner (gdnlab.model.plan, ``gdnlab plan``) on small synthetic component runs: the best option
per batch is the lowest TPOT among those memory holds, speculation loses at accept length 1 and wins at
T, every T with strategy step rows is priced at the curve's accept length (interpolated in accept
length, held and labelled beyond), ties are never wins, one server per engine with its losses, the
command prints servers, tables and provenance, bad input is a one-line error. The synthetic runs
come from tests/helpers/plan.py."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from gdnlab.errors import DataError, InputError
from gdnlab.model import (
    ComposedStep,
    Overheads,
    SweepGDN,
    accept_lengths,
    best_plan,
    make_plan,
    plan_candidates,
)
from gdnlab.model.mtp import MTPConfig

from helpers.plan import curve, step_with, strategy_sweep, synthetic_run, synthetic_sweep, synthetic_times


@pytest.fixture(scope="module")
def step():
    return ComposedStep(synthetic_times(), gdn=SweepGDN.from_sweep(synthetic_sweep()))


def test_accept_lengths_carry_across_T():
    al = accept_lengths(3.0, (2, 4, 8), accept_T=4)
    assert al[4] == pytest.approx(3.0, abs=1e-9)
    assert 1.0 < al[2] < al[4] < al[8] <= 8
    assert accept_lengths({3: 2.5, 4: 3.1}, ()) == pytest.approx({3: 2.5, 4: 3.1})
    c = curve({2: 1.9, 4: 3.2, 6: 3.9})
    assert accept_lengths(c, (2, 3, 4, 6)) == pytest.approx({2: 1.9, 3: c.mean(3), 4: 3.2, 6: 3.9})
    with pytest.raises(InputError, match="outside"):
        accept_lengths({4: 4.5}, ())


def test_best_is_lowest_tpot_and_speculation_needs_acceptance(step):
    cand = plan_candidates(step, batches=[1, 16], accept={2: 2.0, 4: 4.0})
    best = best_plan(cand)
    for B, g in cand[cand["fits"]].dropna(subset=["tpot_ms"]).groupby("batch"):
        assert best.loc[best["batch"] == B, "tpot_ms"].iloc[0] == pytest.approx(g["tpot_ms"].min())
    assert (best["strategy"] != "decode").all()          # every draft kept: speculation wins
    low = best_plan(plan_candidates(step, batches=[1, 16], accept={2: 1.0, 4: 1.0}))
    assert (low["strategy"] == "decode").all()           # nothing kept: verify costs more than decode
    assert set(cand["state_dtype"]) == {"bfloat16", "float32"} and set(cand["backend"]) == {"flashinfer", "triton"}
    assert "no strategy step rows" not in cand.attrs["note"] and cand["provenance"].str.contains("fitted").all()
    assert (cand["check"] == "checked").all()


def test_every_measured_T_is_priced_at_the_curves_accept_length():
    c = curve({2: 1.9, 3: 2.6, 4: 3.2, 6: 4.0, 8: 4.5})
    rows = strategy_sweep(Ts=(2, 3, 4, 6, 8), accepts=lambda T: [c.points[T]])
    cand = plan_candidates(step_with(rows), batches=[1, 4, 16], accept=c)
    spec = cand[cand["strategy"] != "decode"]
    assert set(spec["draft_tokens"]) == {2, 3, 4, 6, 8}
    assert "priced T: 2,3,4,6,8" in cand.attrs["note"]
    for T in (2, 3, 4, 6, 8):
        assert (spec.loc[spec["draft_tokens"] == T, "accept_len"] == c.points[T]).all()
    assert spec["accept_basis"].str.startswith("step measured at accept").all()
    assert (spec["extrapolated"] == "").all()
    only = plan_candidates(step_with(rows), batches=[4], accept=c, draft_tokens=[3, 5])
    assert set(only.loc[only["strategy"] != "decode", "draft_tokens"]) == {3}
    assert "T=5 asked for but not measured" in only.attrs["note"]


def test_step_time_is_interpolated_in_accept_length_and_held_beyond():
    rows = strategy_sweep(Ts=(4,), accepts=lambda T: [2.0, 3.0])
    st = step_with(rows)

    def step_us(a, strategy="recompute"):
        c = plan_candidates(st, batches=[16], accept={4: a}, strategies=[strategy], backends=["triton"],
                            state_dtypes=["bfloat16"])
        return c[(c["strategy"] == strategy) & (c["draft_tokens"] == 4)].iloc[0]

    lo, hi, mid = step_us(2.0), step_us(3.0), step_us(2.5)
    assert hi["step_us"] > lo["step_us"]                  # the commit replays more tokens
    assert mid["step_us"] == pytest.approx((lo["step_us"] + hi["step_us"]) / 2, rel=1e-9)
    assert "interpolated between accept 2.00 and 3.00" in mid["accept_basis"] and mid["extrapolated"] == ""
    beyond = step_us(3.6)
    assert beyond["step_us"] == pytest.approx(hi["step_us"], rel=1e-9) and beyond["extrapolated"] == "accept"
    assert "held at accept 3.00" in beyond["accept_basis"]
    fc = step_us(3.6, "full_cache")                        # its bytes do not depend on the accept length
    assert fc["extrapolated"] == "" and "do not depend" in fc["accept_basis"]


def test_planned_step_equals_the_composed_steps_own_price():
    """Oracle: ComposedStep.step_us of the same option (its own GDN lookup and parts)."""
    rows = strategy_sweep(Ts=(2, 4))
    params = Overheads(0.9, 20.0)
    st = step_with(rows, params)
    c = curve({2: 1.6, 4: 3.2})
    cand = plan_candidates(st, batches=[1, 4, 16], accept=c)
    for r in cand.sample(12, random_state=0).itertuples():
        own = ComposedStep(st.times, overheads=params, gdn=st.gdn, state_dtype=r.state_dtype)
        mtp = None if r.strategy == "decode" else MTPConfig(draft_tokens=int(r.draft_tokens), acceptance=r.accept_len)
        want = own.step_us(r.backend, r.batch, 1024.0, mtp, strategy="full_cache" if mtp is None else r.strategy)
        assert r.step_us == pytest.approx(want, rel=1e-9)
        assert r.tpot_ms == pytest.approx(want / r.accept_len / 1e3, rel=1e-9)


def test_ties_are_never_wins_and_margins_are_stated():
    same = {"full_cache": (6.0, 0.9, 0.0), "replay_ring": (6.0, 0.9, 0.0), "recompute": (2.0, 0.1, 0.0)}
    rows = strategy_sweep(Ts=(4,), coef=same, backends=("triton",), state_dtypes=("bfloat16",))
    only = dict(backends=["triton"], state_dtypes=["bfloat16"], draft_tokens=[4])
    cand = plan_candidates(step_with(rows), batches=[1, 16], accept={4: 3.0}, strategies=["full_cache", "replay_ring"],
                           **only)
    best = best_plan(cand[cand["strategy"] != "decode"])
    assert (best["verdict"] == "tie").all()
    for r in best.itertuples():
        other = "replay_ring" if r.strategy == "full_cache" else "full_cache"
        assert other in r.tied_with
    g = plan_candidates(step_with(rows), batches=[16], accept={4: 3.0}, **only)
    r = best_plan(g).iloc[0]
    assert r["strategy"] == "recompute" and r["verdict"] == "win"
    g = g.sort_values("tpot_ms")
    assert r["margin_tpot_pct"] == pytest.approx((g["tpot_ms"].iloc[1] / g["tpot_ms"].iloc[0] - 1) * 100)
    assert r["margin_throughput_pct"] == pytest.approx(
        (1 - g["throughput_tok_s"].iloc[1] / g["throughput_tok_s"].iloc[0]) * 100)


def test_memory_caps_every_recommendation():
    rows = strategy_sweep(Ts=(4,))
    cand = plan_candidates(step_with(rows), batches=[1, 4, 16], accept={4: 3.0}, ctx_per_request=3_000_000,
                           extrapolate=True)
    assert (cand["max_concurrency"] < 16).all() and not cand.loc[cand["batch"] == 16, "fits"].any()
    best = best_plan(cand)
    assert best.loc[best["batch"] == 16, "verdict"].iloc[0] == "nothing fits"
    chosen = best.dropna(subset=["tpot_ms"])
    assert (chosen["batch"] <= chosen["max_concurrency"]).all()
    assert cand["limited_by"].str.contains("KV cache").all()


def test_one_server_per_engine_with_its_losses_and_what_no_engine_runs():
    rows = strategy_sweep(Ts=(4,))
    c = curve({4: 3.0})
    plan = make_plan(step_with(rows), batches=[1, 4, 16], curve=c)
    cand = plan.candidates
    sg = plan.servers["sglang"]
    runnable = cand[cand["engines"].str.contains("sglang") & cand["fits"]]
    # H200 is sm90: SGLang's FlashInfer MTP verify takes a float32 state (registry), plain decode any
    assert set(runnable.loc[runnable["strategy"] != "decode", "state_dtype"]) == {"float32"}
    assert set(runnable.loc[runnable["strategy"] != "decode", "backend"]) == {"flashinfer"}
    mine = cand.set_index(["strategy", "draft_tokens", "state_dtype", "backend"]).loc[tuple(sg.option.values())]
    for r in sg.per_batch.itertuples():
        best = runnable.loc[runnable["batch"] == r.batch, "tpot_ms"].min()
        t = mine.loc[mine["batch"] == r.batch, "tpot_ms"].iloc[0]
        assert r.loss_tpot_pct == pytest.approx((t / best - 1) * 100)
    assert "--linear-attn-verify-backend" in sg.path.args and "--mamba-ssm-dtype" in sg.path.args
    assert plan.servers["vllm"].option["strategy"] == "decode" and plan.servers["vllm"].path.proxy
    nr = plan.not_run
    assert not nr.empty and nr["option"].str.startswith("recompute").any()
    rec = nr[nr["option"].str.startswith("recompute")].iloc[0]
    assert "no released engine runs recompute" in rec["why"] and rec["gain_tpot_pct"] > 0


def test_adaptive_T_where_the_fastest_T_changes_with_batch():
    steep = {"full_cache": (4.0, 20.0, 0.0)}          # verify cost grows with B x T: long drafts lose at large B
    rows = strategy_sweep(Ts=(2, 4), coef=steep, backends=("flashinfer",), state_dtypes=("float32",))
    plan = make_plan(step_with(rows), batches=[1, 4, 16], curve=curve({2: 1.95, 4: 3.0}), backends=["flashinfer"])
    cand = plan.candidates
    fc = cand[(cand["strategy"] == "full_cache") & (cand["backend"] == "flashinfer")
              & (cand["state_dtype"] == "float32")]
    assert plan.servers["sglang"].label.startswith("full_cache T=")
    want = {int(b): int(g.loc[g["tpot_ms"].idxmin(), "draft_tokens"]) for b, g in fc.groupby("batch")}
    assert len(set(want.values())) == 2
    ad = plan.servers["sglang"].adaptive
    assert ad is not None and dict(zip(ad.schedule["batch"], ad.schedule["draft_tokens"])) == want
    assert "--speculative-adaptive" in ad.args and ad.config_file in ad.args
    steps = {int(k): v["candidate_steps"] for k, v in ad.config.items()}
    assert steps[1] == [want[1] - 1] and [want[16] - 1] in steps.values()


def test_overheads_and_fitted_bounds_are_checked():
    from gdnlab.model.build import check_fitted

    with pytest.raises(InputError, match="request_us"):
        Overheads(1.0, -1.0)
    with pytest.raises(DataError, match="component_scale=9 is outside"):
        check_fitted(Overheads(9.0, 10.0, source="test"))
    with pytest.raises(DataError, match="request_us=900"):
        check_fitted(Overheads(1.0, 900.0, source="test"))
    assert check_fitted(Overheads(0.85, 58.0)).component_scale == 0.85


def test_batches_beyond_the_measured_range_are_refused_unless_extrapolated(step):
    with pytest.raises(InputError, match="outside the measured 1..16"):
        plan_candidates(step, batches=[1, 100000000], accept=3.0)
    cand = plan_candidates(step, batches=[1, 64], accept=3.0, extrapolate=True)
    assert (cand.loc[cand["batch"] == 64, "extrapolated"].str.contains("batch")).all()
    assert "extrapolated" in cand.attrs["note"]


def test_planner_speedup_column_is_relative_to_decode(step):
    cand = plan_candidates(step, batches=[4], accept=3.0, draft_tokens=(4,))
    dec = cand[(cand["strategy"] == "decode")].set_index(["backend", "state_dtype"])["tpot_ms"]
    for r in cand[cand["strategy"] != "decode"].itertuples():
        assert r.speedup_vs_decode == pytest.approx(dec[(r.backend, r.state_dtype)] / r.tpot_ms)
    share = cand["gdn_kernel_share_pct"]
    assert np.isfinite(share).all() and ((share > 0) & (share < 100)).all()


# ---------------------------------------------------------------------------------------------- command


def _write_run(folder, gpu="NVIDIA H200"):
    comp, rec, sl = synthetic_run(gpu=gpu)
    folder.mkdir(parents=True, exist_ok=True)
    comp.to_parquet(folder / "components.parquet")
    rec.to_parquet(folder / "recipes.parquet")
    sl.to_parquet(folder / "slice.parquet")
    (folder / "run.json").write_text(json.dumps({"presets": {"qwen3.5-397b-a17b": {"gdn_backend": "triton"}}}))


def _args(**kw):
    base = dict(gpu="h200", preset="qwen3.5-397b-a17b", tp=4, weights="nvfp4", accept_len=[3.0],
                accept_len_draft_tokens=[4], accept_curve=None, accept_curve_name=None, accept_from_log=None,
                engine=None, accept_log_draft_tokens=None, context_buckets=None, batches=[1, 4, 16],
                extrapolate=False, draft_tokens=None, strategies=None, state_dtypes=None, backends=None, ctx=1024.0,
                components=None, sweep=None, reference_sweep=None, fitted="none", checked_only=False,
                adaptive_config=None, json=False, all=False, no_cache=True)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan") / "h200"
    _write_run(d)
    strategy_sweep(Ts=(2, 4)).to_parquet(d / "steps.parquet")
    return d


def test_plan_command_prints_servers_tables_and_provenance(run_folder, capsys):
    from gdnlab.cli import plan as cli

    assert cli.run(_args(components=str(run_folder), sweep=str(run_folder / "steps.parquet"))) == 0
    out = capsys.readouterr().out
    for text in ("One server per engine", "SGLang 0.5.23: full_cache", "vLLM 0.33.0: plain decode", "flags: ",
                 "loss vs SGLang's per-batch best", "No engine runs these yet", "tpot_ms", "speedup_vs_decode",
                 "gdn_kernel_share_pct", "memory (H200", "max concurrency", "provenance:", "synthetic",
                 "priced T: 2,4"):
        assert text in out, text
    assert "--gdn-mtp-cache-mode" not in out and "--enable-linear-replayssm-spec" not in out


def test_plan_command_json_has_one_record_per_recommendation(run_folder, capsys):
    from gdnlab.cli import plan as cli

    assert cli.run(_args(components=str(run_folder), sweep=str(run_folder / "steps.parquet"), json=True)) == 0
    d = json.loads(capsys.readouterr().out)
    recs = d["recommendations"]
    need = {"engine", "engine_version", "args", "env", "batch", "draft_tokens", "strategy", "state_dtype", "backend",
            "tpot_ms", "runner_up", "margin", "status"}
    kinds = {r["kind"] for r in recs}
    assert {"server", "per_batch"} <= kinds
    for r in recs:
        if r["kind"] in ("server", "per_batch"):
            assert need <= set(r), need - set(r)
            assert isinstance(r["args"], list) and isinstance(r["env"], dict)
    servers = [r for r in recs if r["kind"] == "server"]
    assert {r["engine"] for r in servers} == {"sglang", "vllm"} and servers[0]["batch"] == "1-16"
    assert d["acceptance"]["accept_len"]["4"] == pytest.approx(3.0)


def test_plan_command_bad_input_is_one_line_error(run_folder, tmp_path):
    from gdnlab.cli import plan as cli

    with pytest.raises(DataError, match="does not exist"):
        cli.run(_args(components=str(tmp_path / "missing")))
    with pytest.raises(InputError, match="measured"):
        cli.run(_args(components=str(run_folder), tp=8))
    with pytest.raises(InputError, match="outside"):
        cli.run(_args(components=str(run_folder), accept_len=[5.0]))
    with pytest.raises(FileNotFoundError, match="swep.parquet"):            # a mistyped path: no fallback
        cli.run(_args(components=str(run_folder), sweep=str(run_folder / "swep.parquet")))
    with pytest.raises(InputError, match="100000000"):
        cli.run(_args(components=str(run_folder), sweep=str(run_folder / "steps.parquet"), batches=[1, 100000000]))
    with pytest.raises(InputError, match="both give the acceptance"):
        cli.run(_args(components=str(run_folder), accept_curve=str(run_folder / "steps.parquet")))
    with pytest.raises(InputError, match="T=1"):
        cli.run(_args(components=str(run_folder), accept_len=[1.0], accept_len_draft_tokens=[1]))
