"""The step grid of gdnlab.sweep: verify strategies as a sweep dimension (one speculative step per
row), on CPU with the reference strategies at a tiny shape, plus GPU runs (Triton, FlashInfer)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from gdnlab import sweep as sw
from gdnlab.cli import main as cli_main
from gdnlab.errors import InputError, UnavailableError
from gdnlab.results import KEY_COLUMNS, load_sweep, point_key
from gdnlab.shapes import parse_preset
from gdnlab.strategies import STRATEGY_NAMES, get_strategy
from gdnlab.strategies.registry import strategy_bytes, strategy_memory_bytes, strategy_scratch_bytes

from helpers.ids import case_id
from helpers.shapes import TINY


def _cfg(**kw):
    base = dict(modes=(), strategy_backends=["reference"], strategy_batches=(1, 3), strategy_draft_tokens=(2,),
                accept_lens=(1.5,), state_dtypes=("float32",), presets=(TINY,), repeats=2, warmup=0,
                steps_per_sample=4, check_steps=3, device="cpu")
    base.update(kw)
    return sw.SweepConfig(**base)


@pytest.fixture(scope="module")
def steps_df() -> pd.DataFrame:
    """Every strategy, B in {1, 3}, T = 2, accept lengths 1.5 and 3.17 (clipped to 2), fp32 and bf16."""
    cfg = _cfg(accept_lens=(1.5, 3.17), state_dtypes=("float32", "bfloat16"))
    return sw.run_sweep(cfg, None, progress=False)


# ------------------------------------------------------------------ rows


def test_step_rows_carry_every_column(steps_df):
    df = steps_df
    assert len(df) == len(STRATEGY_NAMES) * 2 * 2 * 2 and (df["status"] == "ok").all(), df["status"].unique()
    assert set(df["measure"]) == {"step"} and set(df["mode"]) == {"step"} and df["buffer_scope"].isna().all()
    assert set(df["accept_len"]) == {1.5, 2.0}                       # 3.17 > T = 2: clipped to T
    for col in ("step_us", "verify_us", "commit_us", "time_us", "bytes", "bytes_verify", "bytes_commit",
                "scratch_bytes", "memory_bytes", "copy_bw_gbps", "copy_floor_us", "verify_floor_us", "bw_gbps",
                "verify_bw_gbps", "first_call_ms", "row_sets", "calls_per_sample", "check_batch", "state_drift"):
        assert df[col].notna().all(), col
    assert (df["step_us"] > 0).all() and (df["commit_us"] > 0).all() and (df["time_us"] == df["step_us"]).all()
    assert (df["calls_per_sample"] == 4).all()                      # steps_per_sample consecutive steps
    # B = 1 rotates over the 3 requests of the pool, B = 3 (= capacity) runs every step on the same rows
    assert dict(zip(df["batch"], df["row_sets"])) == {1: 3, 3: 1}
    # fold only where a strategy has one; derived columns add up
    ring = df["strategy"] == "replay_ring"
    assert df.loc[~ring, "fold_us"].isna().all()
    r = df[ring]
    rest = r["step_us"] - r["verify_us"] - r["commit_us"]
    # a ring row has its fold (step - verify - commit) when that is >= 0, else says it is not separable
    assert (r["fold_us"].notna() == (rest >= 0)).all()
    assert r.loc[rest < 0, "split_method"].str.contains("not separable").all()
    assert (r["fold_us"] - rest).abs().max(skipna=True) < 1e-9 if (rest >= 0).any() else True
    fused = df[df["strategy"] == "recompute_fused"]
    assert ((fused["verify_us"] + fused["commit_us"] - fused["step_us"]).abs() < 1e-9).all()
    assert fused["split_method"].str.contains("step - commit").all()
    # one copy bandwidth per run, floors from it
    assert df["copy_bw_gbps"].nunique() == 1 and df["copy_bw_gbps"].iloc[0] > 0
    assert df.attrs["copy_bw_gbps"] == pytest.approx(df["copy_bw_gbps"].iloc[0])
    # (bytes is rounded; the floors use the fractional amortised bytes)
    assert list(df["copy_floor_us"]) == pytest.approx(list(df["bytes"] / (df["copy_bw_gbps"] * 1e3)), rel=1e-3)
    assert ((df["commit_floor_us"] - df["bytes_commit"] / (df["copy_bw_gbps"] * 1e3)).abs() < 1e-9).all()
    # correctness: each row checked at its own batch (per strategy, state dtype, T and B)
    assert df["correct"].all() and (df["check_batch"] == df["batch"]).all() and (df["check_steps"] == 3).all()
    assert df["check_summary"].str.contains("state drift").all()
    assert (df["tol_ratio"] <= 1).all()


def test_step_bytes_follow_the_strategy_formulas(steps_df):
    for _, r in steps_df.iterrows():
        name, B, T, a, sd = r["strategy"], int(r["batch"]), int(r["draft_tokens"]), float(r["accept_len"]), \
            r["state_dtype"]
        by = strategy_bytes(TINY, name, B, T, a, state_dtype=sd)
        assert int(r["bytes"]) == round(by.total)
        assert r["bytes_verify"] + r["bytes_commit"] + r["bytes_fold"] == pytest.approx(by.total)
        assert int(r["bytes_state"]) == round(by.state_read + by.state_write)
        # the pool serves 3 requests: the scratch formula, the memory formula, and what the strategy allocates
        P = int(r["pool_slots"])
        assert P == 1 + 3 * (T + 1 if name == "token_slots" else 1)
        assert int(r["scratch_bytes"]) == strategy_scratch_bytes(TINY, name, B, T, P, state_dtype=sd)
        assert int(r["memory_bytes"]) == strategy_memory_bytes(TINY, name, 3, B, T, state_dtype=sd)
        s = get_strategy(name, "reference")
        pool = torch.zeros((P, *TINY.state_shape), dtype=getattr(torch, sd))
        assert s.allocate(pool, max_batch=B, T=T).nbytes() == int(r["scratch_bytes"])
        # bandwidths are bytes / time of the phase they belong to
        assert r["verify_bw_gbps"] == pytest.approx(r["bytes_verify"] / (r["verify_us"] * 1e3))
        if r["bytes_commit"] > 0:
            assert r["commit_bw_gbps"] == pytest.approx(r["bytes_commit"] / (r["commit_us"] * 1e3))
        else:
            assert pd.isna(r["commit_bw_gbps"])
    # a pointer-move commit moves no state bytes, full_cache's commit reads one state and writes one
    fc = steps_df[steps_df["strategy"] == "full_cache"].iloc[0]
    S = TINY.HV * TINY.V * TINY.K * (4 if fc["state_dtype"] == "float32" else 2)
    assert fc["bytes_commit"] == 2 * S * int(fc["batch"])
    assert (steps_df.loc[steps_df["strategy"].isin(["token_slots", "replay_ring"]), "bytes_commit"] == 0).all()


def test_checks_run_at_each_batch_or_once_per_group_with_check_batch(monkeypatch):
    import gdnlab.strategies.check as chk

    calls = []
    orig = chk.check_strategy

    def counting(strategy, shape, **kw):
        calls.append((strategy.name, kw["batch"], kw["state_dtype"], kw["T"]))
        return orig(strategy, shape, **kw)

    monkeypatch.setattr(chk, "check_strategy", counting)
    df = sw.run_sweep(_cfg(strategies=("full_cache", "recompute"), strategy_batches=(1, 2, 3),
                           accept_lens=(1.0, 2.0)), None, progress=False)
    assert len(df) == 2 * 3 * 2 and (df["status"] == "ok").all()
    # default: every batch checked once (the accept lengths share it), so correct speaks for the row's B
    assert sorted(calls) == [(n, b, torch.float32, 2) for n in ("full_cache", "recompute") for b in (1, 2, 3)]
    assert (df["check_batch"] == df["batch"]).all()
    calls.clear()
    sw.run_sweep(_cfg(strategies=("full_cache",), strategy_batches=(1, 2, 3), check_batch=2), None, progress=False)
    assert calls == [("full_cache", 2, torch.float32, 2)]                # the largest batch <= check_batch
    calls.clear()
    off = sw.run_sweep(_cfg(strategies=("full_cache",), check=False), None, progress=False)
    assert calls == [] and off["correct"].isna().all() and (off["status"] == "ok").all()


def test_a_failed_check_marks_rows_not_correct(monkeypatch):
    import gdnlab.strategies.check as chk

    def wrong(strategy, shape, **kw):
        res = chk.StrategyCheck(strategy.name, strategy.backend, kw["state_dtype"], kw["steps"])
        res.output_err, res.output_ratio, res.state_err, res.state_ratio = [0.0], [0.1], [0.5], [7.0]
        return res

    monkeypatch.setattr(chk, "check_strategy", wrong)
    df = sw.run_sweep(_cfg(strategies=("token_slots",)), None, progress=False)
    assert (df["status"] == "ok").all() and (~df["correct"]).all()
    assert (df["state_drift"] == 0.5).all() and (df["tol_ratio"] == 7.0).all()
    assert "MISMATCH" in sw.summary_table(df)

    def broken(strategy, shape, **kw):
        raise RuntimeError("oracle exploded")

    monkeypatch.setattr(chk, "check_strategy", broken)
    df = sw.run_sweep(_cfg(strategies=("token_slots",)), None, progress=False)
    assert (df["status"] == "ok").all() and df["correct"].isna().all()
    assert df["check_summary"].str.startswith("check failed: RuntimeError: oracle exploded").all()


def test_unsupported_unavailable_and_failing_strategies_are_rows(monkeypatch):
    from gdnlab.strategies import reference

    cls = reference.STRATEGIES["recompute_fused"]
    monkeypatch.setattr(cls, "supports", classmethod(
        lambda c, sd=None, T=None, batch=None, sm=None, **kw: (batch is None or batch >= 2, "needs B >= 2")),
        raising=False)
    ring = reference.STRATEGIES["replay_ring"]
    monkeypatch.setattr(ring, "availability", classmethod(lambda c: (False, "no ring here")))

    def boom(self, *a, **k):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(reference.STRATEGIES["token_slots"], "_commit", boom)
    df = sw.run_sweep(_cfg(strategies=("recompute_fused", "replay_ring", "token_slots", "full_cache")), None,
                      progress=False)
    st = df.set_index(["strategy", "batch"])["status"]
    assert st[("recompute_fused", 1)] == "unsupported: needs B >= 2" and st[("recompute_fused", 3)] == "ok"
    assert st[("replay_ring", 1)].startswith("unsupported: ") and "no ring here" in st[("replay_ring", 3)]
    assert st[("token_slots", 1)] == "error: RuntimeError: kernel exploded"
    assert (st["full_cache"] == "ok").all()
    fused = df[df["strategy"] == "recompute_fused"]
    assert (fused["check_batch"].dropna() == 3).all()                  # checked at a batch it supports
    assert df.loc[df["status"].str.startswith("unsupported"), "step_us"].isna().all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_a_strategy_backend_that_cannot_run_is_refused_before_measuring(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "s.parquet"
    with pytest.raises(UnavailableError, match="strategy backend 'triton' cannot run here"):
        sw.run_sweep(_cfg(strategy_backends=["triton"]), out, progress=False)
    assert not out.exists()


# ------------------------------------------------------------------ storage


def test_resume_skips_finished_step_points(tmp_path):
    out = tmp_path / "s.parquet"
    cfg = _cfg(modes=("decode",), batches=(1,), strategies=("full_cache", "replay_ring"), accept_lens=(1.5, 2.0))
    points = sw.grid_points(cfg)
    assert [p.measure for p in points] == ["step"] * 8 + ["call"]
    seen = []

    def killer(row):
        seen.append(row)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cfg, out, on_row=killer, progress=False)
    first = load_sweep(out)
    assert len(first) == 4 and list(first["measure"]) == ["step"] * 4
    ran = []
    df = sw.run_sweep(cfg, out, resume=True, on_row=ran.append, progress=False)
    assert [r["measure"] for r in ran] == ["step"] * 4 + ["call"]
    keys = [point_key(r) for r in df[list(KEY_COLUMNS)].to_dict("records")]
    assert len(set(keys)) == len(keys) == len(points)
    assert set(keys) == {point_key(p.key_row()) for p in points}
    # another accept length is another point
    more = []
    sw.run_sweep(_cfg(modes=("decode",), batches=(1,), strategies=("full_cache",), accept_lens=(1.25,)), out,
                 resume=True, on_row=more.append, progress=False)
    assert [r["accept_len"] for r in more] == [1.25, 1.25] and len(load_sweep(out)) == len(points) + 2
    assert sw.run_sweep(cfg, out, resume=True, progress=False).attrs["points_run"] == 0


def test_summary_table_shows_steps_by_strategy_and_batch(steps_df):
    text = sw.summary_table(steps_df)
    assert "µs per step" in text and "step time / full_cache's" in text and "median µs per call" not in text
    assert "strategy checks:" in text and "reference/replay_ring" in text
    assert "full_cache commit / its floor" in text


def test_copy_bandwidth_on_cpu_is_a_positive_number():
    bw = sw.copy_bandwidth(torch.device("cpu"), 1 << 20)
    assert math.isfinite(bw) and bw > 0


# ------------------------------------------------------------------ config and CLI


@pytest.mark.parametrize("kw, match", [({"strategies": ("nope",)}, "strategies must be among"),
                                       ({"strategies": ("full_cache_pool_scoped",)}, "buffer_scopes"),
                                       ({"accept_lens": (0.5,)}, "accept_lens"),
                                       ({"accept_lens": ()}, "accept_lens"),
                                       ({"strategy_draft_tokens": (1,)}, "strategy_draft_tokens"),
                                       ({"strategy_batches": (0,)}, "strategy_batches"),
                                       ({"strategy_backends": ["cutlass"]}, "strategy_backends"),
                                       ({"check_batch": 0}, "check_batch"),
                                       ({"steps_per_sample": 0}, "steps_per_sample"),
                                       ({"pool_capacity": 2}, "pool_capacity")], ids=case_id)
def test_bad_step_config_names_the_argument(kw, match):
    with pytest.raises(InputError, match=match):
        sw.grid_points(_cfg(**kw))


def test_cli_step_flags():
    from gdnlab.cli import build_parser
    from gdnlab.cli.sweep import config_from_args

    def cfg(*argv):
        return config_from_args(build_parser().parse_args(["sweep", *argv]))

    default = cfg()
    assert list(default.strategies) == list(STRATEGY_NAMES) and list(default.accept_lens) == [3.17]
    assert list(default.strategy_batches) == [1, 4, 16, 64, 128, 256] and list(default.strategy_draft_tokens) == [4]
    assert default.strategy_backends is None and default.check_batch is None and list(default.modes) == [
        "decode", "verify"]
    c = cfg("--strategies", "full_cache,replay_ring", "--accept-len", "2.5", "3.17", "--strategy-backends",
            "triton,flashinfer", "--strategy-draft-tokens", "2,4,8", "--strategy-batches", "16", "256",
            "--check-batch", "64", "--check-steps", "4", "--steps-per-sample", "32", "--modes", "none",
            "--copy-mib", "256")
    assert list(c.strategies) == ["full_cache", "replay_ring"] and list(c.accept_lens) == [2.5, 3.17]
    assert list(c.strategy_backends) == ["triton", "flashinfer"] and list(c.strategy_draft_tokens) == [2, 4, 8]
    assert list(c.strategy_batches) == [16, 256] and (c.check_batch, c.check_steps, c.steps_per_sample) == (64, 4, 32)
    assert list(c.modes) == [] and c.copy_mib == 256.0
    none = cfg("--strategies", "none", "--buffer-scopes", "pool")
    assert list(none.strategies) == [] and list(none.buffer_scopes) == ["pool"]
    assert all(p.measure == "call" for p in sw.grid_points(none))
    assert list(default.buffer_scopes) == ["batch", "pool"]
    # --call-strategies is the earlier spelling, with the earlier names of the scopes
    alias = cfg("--strategies", "none", "--call-strategies", "full_cache", "full_cache_pool_scoped")
    assert list(alias.buffer_scopes) == ["batch", "pool"]
    with pytest.raises(InputError, match="buffer_scopes"):
        sw.grid_points(cfg("--call-strategies", "decode"))


@pytest.mark.parametrize("argv, words", [(["--accept-len", "x"], "--accept-len"),
                                         (["--accept-len", "0.5"], "accept_lens"),
                                         (["--strategies", "nope"], "strategies must be among"),
                                         (["--strategies", "full_cache_pool_scoped"], "buffer_scopes"),
                                         (["--strategy-batches", "1,x"], "--strategy-batches"),
                                         (["--modes", "none", "--strategies", "none"], "nothing to measure")],
                         ids=case_id)
def test_cli_bad_step_input_is_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "s.parquet"
    out.write_bytes(b"PAR1 earlier results")
    rc = cli_main(["sweep", "--out", str(out), "--device", "cpu", "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert out.read_bytes() == b"PAR1 earlier results"


def test_cli_step_grid_on_cpu(tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    rc = cli_main(["sweep", "--modes", "none", "--strategies", "full_cache,recompute", "--strategy-backends",
                   "reference", "--presets", "qwen3.5-397b-a17b@tp16", "--strategy-batches", "1,2",
                   "--strategy-draft-tokens", "2", "--accept-len", "1.5", "--state-dtypes", "bf16", "--repeats", "1",
                   "--warmup", "0", "--steps-per-sample", "2", "--check-steps", "2", "--device", "cpu",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "µs per step" in text and "4 points run now" in text and "copy bandwidth" in text
    df = load_sweep(out)
    assert len(df) == 4 and (df["status"] == "ok").all() and set(df["strategy"]) == {"full_cache", "recompute"}
    assert df["correct"].all() and (df["H"] == 1).all() and set(df["accept_len"]) == {1.5}


# ------------------------------------------------------------------ GPU


@pytest.mark.gpu
def test_triton_step_sweep_on_gpu(cuda_device):
    """Every Triton strategy at the real shape, B in {1, 16}, bf16 and fp32: rows ok and checked, the
    split adds up, the copy bandwidth is a GPU's."""
    from gdnlab.strategies import available_strategies

    if not any(st.available for st in available_strategies("triton").values()):
        pytest.skip("no Triton strategy runs here")
    cfg = sw.SweepConfig(modes=(), strategy_backends=["triton"], strategy_batches=(1, 16), strategy_draft_tokens=(4,),
                         accept_lens=(3.17,), state_dtypes=("bfloat16", "float32"),
                         presets=("qwen3.5-397b-a17b@tp4",), repeats=5, warmup=2, check_steps=4,
                         device=str(cuda_device), copy_mib=256)
    df = sw.run_sweep(cfg, None, progress=False)
    assert (df["status"] == "ok").all(), df[["strategy", "batch", "status"]].to_string()
    assert df["correct"].all(), df[["strategy", "state_dtype", "check_summary"]].to_string()
    assert (df["timing_method"] == "amortised").all() and (df["calls_per_sample"] == 16).all()
    assert (df["step_us"] > 0).all() and (df["verify_us"] > 0).all() and (df["commit_us"] > 0).all()
    assert df["copy_bw_gbps"].iloc[0] > 200                          # a GPU, not a host copy
    assert (df["pct_of_peak_bw"] < 150).all()                       # L2 is flushed and rows rotate
    assert set(df["kernel"]) == {f"triton:{n}" for n in STRATEGY_NAMES}


@pytest.mark.gpu
def test_flashinfer_step_sweep_on_gpu(cuda_device):
    """FlashInfer's strategies run as a second backend: each row ok or unsupported (saying why), never an error."""
    from gdnlab.strategies import available_strategies

    if not any(st.available for st in available_strategies("flashinfer").values()):
        pytest.skip("no FlashInfer strategy runs here")
    shape = parse_preset("qwen3.5-397b-a17b@tp4")
    cfg = sw.SweepConfig(modes=(), strategy_backends=["flashinfer"], strategy_batches=(4, 16),
                         strategy_draft_tokens=(4,), accept_lens=(3.17,), state_dtypes=("bfloat16", "float32"),
                         presets=(shape.name,), repeats=5, warmup=2, check_steps=4, device=str(cuda_device),
                         copy_mib=256)
    df = sw.run_sweep(cfg, None, progress=False)
    bad = df[~df["status"].str.startswith(("ok", "unsupported"))]
    assert bad.empty, bad[["strategy", "state_dtype", "batch", "status"]].to_string()
    ok = df[df["status"] == "ok"]
    assert not ok.empty and ok["correct"].all(), ok[["strategy", "state_dtype", "check_summary"]].to_string()
    assert (ok["step_us"] > 0).all()


def _tuner():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu" / "tune_triton_strategies.py"
    spec = importlib.util.spec_from_file_location("tune_triton_strategies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiling_tuner_parses_tilings_and_picks_the_fastest_checked_row():
    tuner = _tuner()
    assert tuner.parse_tilings("auto, 16:2,8:1") == [(None, None), (16, 2), (8, 1)]
    for bad in ("12:1", "16:3", "16", "x:y", ""):
        with pytest.raises(InputError):
            tuner.parse_tilings(bad)
    rows = pd.DataFrame({"strategy": ["recompute"] * 3, "batch": [64] * 3, "tiling": ["auto", "16:1", "8:1"],
                         "status": ["ok"] * 3, "correct": [True, True, False], "step_us": [10.0, 9.0, 5.0]})
    best = tuner.best_table(rows).iloc[0]
    # 8:1 is fastest but failed its check: the fastest checked tiling wins
    assert best["best_tiling"] == "16:1" and best["best_vs_auto"] == pytest.approx(0.9)


def test_sweep_passes_strategy_options_and_records_them(tmp_path):
    cfg = sw.SweepConfig(modes=(), strategies=("recompute",), strategy_backends=("reference",), strategy_batches=(2,),
                         state_dtypes=("float32",), presets=(TINY,), check=False, repeats=2, warmup=1,
                         device="cpu", strategy_options={"reference": {"stash_dtype": "float32"}})
    df = sw.run_sweep(cfg, None, progress=False)
    assert (df["status"] == "ok").all() and json.loads(df["backend_options"].iloc[0])["stash_dtype"] == "float32"
    bad = sw.SweepConfig(**{**cfg.__dict__, "strategy_options": {"reference": {"no_such_option": 1}}})
    row = sw.run_sweep(bad, None, progress=False).iloc[0]
    assert row["status"].startswith("unsupported") and "no_such_option" in row["status"]
    with pytest.raises(InputError, match="strategy_options"):
        sw.run_sweep(sw.SweepConfig(**{**cfg.__dict__, "strategy_options": {"reference": 3}}), None, progress=False)


def test_accept_curve_sets_each_t_level(monkeypatch, tmp_path):
    """--accept-curve measures each T at the curve's accept length; with --accept-len too, both."""
    import pandas as pd

    from gdnlab.sweep.config import step_accept_lens

    f = tmp_path / "curve.csv"
    pd.DataFrame({"draft_tokens": [2, 4, 8], "accept_len": [1.9, 3.3, 5.0]}).to_csv(f, index=False)
    only = sw.SweepConfig(strategy_draft_tokens=(2, 4, 8), accept_lens=(), accept_curve=str(f), modes=(),
                          strategies=("full_cache",), strategy_backends=("reference",), strategy_batches=(1,))
    assert step_accept_lens(only) == [(2, 1.9), (4, 3.3), (8, 5.0)]
    both = sw.SweepConfig(strategy_draft_tokens=(2, 4), accept_lens=(3.17,), accept_curve=str(f), modes=(),
                          strategies=("full_cache",), strategy_backends=("reference",), strategy_batches=(1,))
    assert step_accept_lens(both) == [(2, 2.0), (2, 1.9), (4, 3.17), (4, 3.3)]
    with pytest.raises(InputError, match="unknown acceptance curve"):
        step_accept_lens(sw.SweepConfig(accept_curve="no-such-curve", modes=(), strategies=("full_cache",)))
    with pytest.raises(InputError, match="accept_lens"):
        sw.SweepConfig(accept_lens=(), modes=(), strategies=("full_cache",)).validate()
