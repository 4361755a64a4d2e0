"""gdnlab.sweep on CPU with the reference backend: byte formula, tidy schema, kill + resume, OOM,
rejected/unsupported points, amortised timing, the CLI (bad inputs: one line, no traceback), and
the sweep figures."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from gdnlab import sweep as sw
from gdnlab.cli import main as cli_main
from gdnlab.errors import DataError, InputError, UnavailableError
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.results import COLUMNS, DTYPES, KEY_COLUMNS, load_sweep, point_key, staging_dir
from gdnlab.roofline import gdn_bytes
from gdnlab.shapes import preset
from gdnlab.sweep import context as sweep_context

from helpers.ids import case_id
from helpers.shapes import TINY


def _cfg(**kw):
    base = dict(backends=["reference"], batches=(1, 3), draft_tokens=(2,), presets=(TINY,), repeats=2, warmup=0,
                device="cpu", strategies=())          # the call grid only (step points: test_sweep_strategies.py)
    base.update(kw)
    return sw.SweepConfig(**base)


def _keys(df: pd.DataFrame) -> list[tuple]:
    return [point_key(r) for r in df[list(KEY_COLUMNS)].to_dict("records")]


# ------------------------------------------------------------------ bytes


def test_byte_formula_hand_computed():
    s = preset("qwen3.5-397b-a17b", tp=4)           # H=4, HV=16, K=V=128
    assert (s.H, s.HV, s.K, s.V) == (4, 16, 128, 128)
    # decode, B=1, bf16 state, bf16 activations:
    #   inputs  = B*T*(2*H*K + HV*V + 2*HV)*2 + 2*HV*4 (A_log, dt_bias fp32) + B*4 (indices)
    #           = (1024 + 2048 + 32)*2 + 128 + 4 = 6340
    #   output  = B*T*HV*V*2 = 4096
    #   state   = B*HV*V*K*2 = 524288 read + 524288 written back
    b = gdn_bytes(s, 1, mode="decode", state_dtype="bf16")
    assert (b.inputs, b.output, b.state_read, b.state_write, b.intermediate_write) == (6340, 4096, 524288, 524288, 0)
    assert b.total == 1_059_012
    # verify, B=16, T=4, fp32 state, fp32 intermediate:
    #   inputs = 16*4*3104*2 + 128 + 16*4 = 397504; output = 16*4*16*128*2 = 262144
    #   state read = 16*262144*4 = 16777216 (no write back); intermediate = 16*4*262144*4 = 67108864
    v = gdn_bytes(s, 16, 4, mode="verify", state_dtype="fp32", intermediate_dtype="fp32")
    assert (v.inputs, v.output, v.state_read, v.state_write, v.intermediate_write) == \
        (397504, 262144, 16777216, 0, 67108864)
    assert v.total == 84_545_728


def test_sweep_rows_use_the_byte_formula():
    df = sw.run_sweep(_cfg(batches=(3,), state_dtypes=("float32",), buffer_scopes=("batch",)), None,
                      progress=False)
    dec = df[df["mode"] == "decode"].iloc[0]
    # tiny (H=1, HV=2, K=V=16), decode B=3 fp32: inputs 3*(32+32+4)*2 + 2*2*4 + 3*4 = 436,
    # output 3*2*16*2 = 192, state 3*2*16*16*4 = 6144 read + 6144 written -> 12916
    assert int(dec["bytes"]) == 12916 and int(dec["bytes_state"]) == 12288 and int(dec["bytes_intermediate"]) == 0
    ver = df[df["mode"] == "verify"].iloc[0]
    # verify T=2: inputs 3*2*68*2 + 16 + 12 = 844, output 3*2*2*16*2 = 384, state read 3*512*4 = 6144
    # (no write back), intermediate (the reference allocates fp32) 3*2*512*4 = 12288 -> 19660
    assert int(ver["bytes"]) == 19660 and ver["intermediate_dtype"] == "float32"
    assert int(ver["flops"]) == 6 * 3 * 2 * 2 * 16 * 16
    assert ver["bw_gbps"] == pytest.approx(ver["bytes"] / (ver["time_us"] * 1e-6) / 1e9)


# ------------------------------------------------------------------ schema


def test_tidy_schema_columns_and_dtypes(tmp_path):
    df = sw.run_sweep(_cfg(), tmp_path / "s.parquet", progress=False)
    assert list(df.columns[: len(COLUMNS)]) == [c.name for c in COLUMNS]
    for col, dt in DTYPES.items():
        assert str(df[col].dtype) == dt, (col, df[col].dtype)
    assert "concurrency" not in df.columns and "rotate" not in df.columns
    # 2 dtypes x (decode + verify T=2 x {batch-scoped, pool-sized buffer}) x 2 batches
    assert len(df) == 2 * 3 * 2 and (df["status"] == "ok").all()
    assert set(df["buffer_scope"]) == {"none", "batch", "pool"} and df["strategy"].isna().all()
    assert set(zip(df["mode"], df["buffer_scope"])) == {("decode", "none"), ("verify", "batch"), ("verify", "pool")}
    assert set(df["intermediate_call"]) == {"reference.decode", "reference.verify(intermediate=batch)",
                                            "reference.verify(intermediate=pool-sized)"}
    assert df["correct"].all() and (df["max_abs_err"] <= 1e-5).all()
    assert (df["time_p10_us"] <= df["time_us"]).all() and (df["time_us"] <= df["time_p90_us"]).all()
    assert (df["timing_method"] == "cpu_wall").all() and df["gpu"].eq("cpu").all()
    assert (df["timing"] == "amortised").all() and (df["calls_per_sample"] >= 1).all()
    assert df["torch"].eq(torch.__version__).all() and df["timestamp"].notna().all()
    assert "git_commit" in df.columns and "git_dirty" in df.columns
    pool = df[df["buffer_scope"] == "pool"]
    # the call pool holds CALL_POOL_ROW_SETS disjoint row sets of the largest batch (3) + slot 0
    assert pool["pool_rows_untouched"].all() and (pool["intermediate_rows"] == sw.CALL_POOL_ROW_SETS * 3 + 1).all()
    # loading again gives the same frame
    pd.testing.assert_frame_equal(load_sweep(tmp_path / "s.parquet"), df)


# ------------------------------------------------------------------ kill + resume


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "sweep.parquet"
    cfg = _cfg()
    n_total = len(sw.grid_points(cfg))
    seen = []

    def killer(row):
        seen.append(row)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cfg, out, on_row=killer, progress=False)
    first = load_sweep(out)
    assert len(first) == 5
    with pytest.raises(ValueError, match="resume"):
        sw.run_sweep(cfg, out, progress=False)
    ran = []
    df = sw.run_sweep(cfg, out, resume=True, on_row=ran.append, progress=False)
    assert len(ran) == n_total - 5
    assert len(df) == n_total
    keys = _keys(df)
    assert len(set(keys)) == len(keys)
    assert set(keys) == {point_key(p.key_row()) for p in sw.grid_points(cfg)}
    # the first five rows were kept as they were, not measured again
    kept = df.merge(first[list(KEY_COLUMNS) + ["sweep_id"]], on=list(KEY_COLUMNS), suffixes=("", "_first"))
    assert len(kept) == 5 and (kept["sweep_id"] == kept["sweep_id_first"]).all()
    assert df["sweep_id"].nunique() == 2
    # a resume with nothing left to do runs nothing
    again = []
    sw.run_sweep(cfg, out, resume=True, on_row=again.append, progress=False)
    assert again == [] and len(load_sweep(out)) == n_total


def test_hard_kill_keeps_completed_points_for_resume(tmp_path, monkeypatch):
    """A kill the process cannot react to (no compaction): completed points survive as parts."""
    out = tmp_path / "sweep.parquet"
    cfg = _cfg(state_dtypes=("float32",))
    n_total = len(sw.grid_points(cfg))
    from gdnlab import results

    monkeypatch.setattr(results.SweepWriter, "finish", lambda self, complete=True: None)   # killed: no cleanup
    seen = []

    def killer(row):
        seen.append(row)
        if len(seen) == 4:
            raise SystemExit(137)

    with pytest.raises(SystemExit):
        sw.run_sweep(cfg, out, on_row=killer, progress=False)
    monkeypatch.undo()
    assert not out.exists() and len(load_sweep(staging_dir(out))) == 4
    with pytest.raises(ValueError, match="unfinished run"):
        sw.run_sweep(cfg, out, progress=False)
    ran = []
    df = sw.run_sweep(cfg, out, resume=True, on_row=ran.append, progress=False)
    assert len(ran) == n_total - 4 and len(df) == n_total and not staging_dir(out).exists()


def test_kill_inside_a_point_loses_only_that_point(tmp_path, monkeypatch):
    out = tmp_path / "s.parquet"
    cfg = _cfg(state_dtypes=("float32",))
    orig = ReferenceBackend._verify

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ReferenceBackend, "_verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cfg, out, progress=False)
    stored = load_sweep(out)
    assert list(stored["mode"]) == ["decode", "decode"]            # the points before the verify in flight
    monkeypatch.setattr(ReferenceBackend, "_verify", orig)
    df = sw.run_sweep(cfg, out, resume=True, progress=False)
    assert len(df) == len(sw.grid_points(cfg)) and (df["status"] == "ok").all()


def test_overwrite_keeps_the_old_file_until_the_new_run_completes(tmp_path, monkeypatch):
    from gdnlab.kernels import BackendUnavailable

    out = tmp_path / "s.parquet"
    sw.run_sweep(_cfg(batches=(1,), state_dtypes=("float32",)), out, progress=False)
    before = out.read_bytes()

    def unavailable(name, engine=None, **options):
        raise BackendUnavailable(f"backend {name!r} cannot run here: no CUDA device")

    # a backend that cannot run here: refused before anything is touched
    with monkeypatch.context() as m:
        m.setattr(sweep_context, "make_backend", unavailable)
        with pytest.raises(UnavailableError, match="flashinfer"):
            sw.run_sweep(_cfg(backends=["flashinfer"]), out, overwrite=True, progress=False)
    assert out.read_bytes() == before
    # a run stopped half-way: the earlier file is unchanged
    new_cfg = _cfg(batches=(3,), state_dtypes=("float32",))
    seen = []

    def killer(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(new_cfg, out, overwrite=True, on_row=killer, progress=False)
    assert out.read_bytes() == before
    # --resume continues the new run; the old rows are replaced only when it completes
    df = sw.run_sweep(new_cfg, out, resume=True, progress=False)
    assert set(df["batch"]) == {3} and len(df) == len(sw.grid_points(new_cfg))
    assert out.read_bytes() != before and not staging_dir(out).exists()


def test_resume_refuses_another_gpus_file_and_other_files(tmp_path):
    out = tmp_path / "s.parquet"
    sw.run_sweep(_cfg(batches=(1,), state_dtypes=("float32",), modes=("decode",)), out, progress=False)
    df = load_sweep(out)
    df.assign(gpu="NVIDIA H100 80GB HBM3").to_parquet(out)
    with pytest.raises(DataError, match="H100"):
        sw.run_sweep(_cfg(), out, resume=True, progress=False)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"kernel": ["x"], "dram_bytes": [1]}).to_parquet(other)
    with pytest.raises(DataError, match="not a gdnlab sweep"):
        sw.run_sweep(_cfg(), other, resume=True, progress=False)
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a parquet file"):
        sw.run_sweep(_cfg(), text, resume=True, progress=False)


def test_jsonl_torn_last_line_is_ignored(tmp_path):
    df = sw.run_sweep(_cfg(batches=(1,), state_dtypes=("float32",)), None, progress=False)
    out = tmp_path / "s.jsonl"
    df.to_json(out, orient="records", lines=True)
    with open(out, "a") as f:
        f.write('{"preset": "tiny", "tp": 1, "backe')              # a write cut by a kill
    back = load_sweep(out)
    assert len(back) == 3 and (back["status"] == "ok").all()


# ------------------------------------------------------------------ failures are rows


def test_oom_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    orig = ReferenceBackend._decode

    def flaky(self, q, *a, **k):
        if q.shape[0] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return orig(self, q, *a, **k)

    monkeypatch.setattr(ReferenceBackend, "_decode", flaky)
    df = sw.run_sweep(_cfg(state_dtypes=("float32",)), tmp_path / "s.parquet", progress=False)
    oom = df[df["status"] == "oom"]
    assert len(oom) == 1 and oom.iloc[0]["mode"] == "decode" and int(oom.iloc[0]["batch"]) == 3
    assert "out of memory" in oom.iloc[0]["timing_note"]
    assert (df["status"] == "ok").sum() == len(df) - 1 and pd.isna(oom.iloc[0]["time_us"])
    assert int(oom.iloc[0]["bytes"]) > 0                           # the formula needs no GPU
    # --retry-failed reruns only the oom point
    monkeypatch.setattr(ReferenceBackend, "_decode", orig)
    ran = []
    df2 = sw.run_sweep(_cfg(state_dtypes=("float32",)), tmp_path / "s.parquet", resume=True, retry_failed=True,
                       on_row=ran.append, progress=False)
    assert len(ran) == 1 and (df2["status"] == "ok").all() and len(df2) == len(df)


def test_error_rejected_and_unsupported_statuses(monkeypatch):
    class PickyBackend(ReferenceBackend):
        name = "reference"
        verify_state_dtypes = (torch.float32,)            # no bf16 verify

        def verify_pool_scoped(self, *a, intermediate, **k):
            if intermediate.shape[0] != a[0].shape[0]:   # FlashInfer's bf16 MTP: a bare assert (no message)
                raise AssertionError

    monkeypatch.setattr(sweep_context, "make_backend", lambda name, engine=None, **options: PickyBackend())
    df = sw.run_sweep(_cfg(batches=(2,)), None, progress=False)
    st = df.set_index(["state_dtype", "mode", "buffer_scope"])["status"]
    assert st[("float32", "verify", "pool")].startswith(
        "rejected: AssertionError: raise AssertionError (test_sweep.py:")
    assert st[("bfloat16", "verify", "batch")].startswith("unsupported:")
    assert st[("float32", "verify", "batch")] == "ok" and st[("bfloat16", "decode", "none")] == "ok"
    rejected = df[df["status"].str.startswith("rejected")].iloc[0]
    assert rejected["intermediate_call"] == "reference.verify_pool_scoped(intermediate=pool-sized)"

    def boom(self, *a, **k):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(PickyBackend, "_decode", boom)
    df = sw.run_sweep(_cfg(batches=(2,), state_dtypes=("float32",), modes=("decode",)), None, progress=False)
    assert df.iloc[0]["status"] == "error: RuntimeError: kernel exploded"


@pytest.mark.parametrize("kw, match", [({"batches": (0,)}, "batches"), ({"modes": ("prefill",)}, "modes"),
                                       ({"draft_tokens": (1,)}, "draft_tokens"), ({"timings": ("cupti",)}, "timings"),
                                       ({"buffer_scopes": ("recompute",)}, "buffer_scopes"),
                                       ({"buffer_scopes": ("none",)}, "buffer_scopes"),
                                       ({"modes": (), "strategies": ()}, "nothing to measure"),
                                       ({"state_dtypes": ("float16",)}, "state_dtypes"),
                                       ({"presets": ("nope@tp4",)}, "unknown preset"),
                                       ({"presets": ("qwen3.5-397b-a17b@4",)}, "NAME@tpN"),
                                       ({"pool_capacity": 2}, "pool_capacity")], ids=case_id)
def test_bad_config_names_the_argument(kw, match):
    with pytest.raises(InputError, match=match):
        sw.grid_points(_cfg(**kw))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_cuda_device_without_cuda_is_unavailable():
    with pytest.raises(UnavailableError, match="device='cuda'"):
        sw.run_sweep(_cfg(device="cuda"), None, progress=False)
    with pytest.raises(InputError, match="tpu"):
        sw.run_sweep(_cfg(device="tpu"), None, progress=False)


def test_amortised_times_several_row_sets_per_sample():
    # a long minimum sample asks for as many calls as the pool has disjoint row sets
    df = sw.run_sweep(_cfg(timings=("amortised", "single", "eager"), state_dtypes=("float32",),
                           buffer_scopes=("batch",), min_sample_us=1e6), None, progress=False)
    assert len(df) == 3 * 2 * 2 and (df["status"] == "ok").all()
    calls = df.set_index(["mode", "timing", "batch"])["calls_per_sample"]
    # capacity CALL_POOL_ROW_SETS x 3 (the largest batch): B=1 runs over that many disjoint rows,
    # B=3 over CALL_POOL_ROW_SETS row sets
    sets = sw.CALL_POOL_ROW_SETS
    assert calls[("decode", "amortised", 1)] == 3 * sets and calls[("decode", "amortised", 3)] == sets
    assert calls[("verify", "amortised", 1)] == 3 * sets and calls[("decode", "single", 1)] == 1
    assert calls[("verify", "eager", 1)] == 1


def test_amortised_verify_buffers_stay_within_the_budget():
    # one tiny verify buffer is 1*2*2*16*16*4 = 4096 bytes: a budget of 5e-6 GB allows one extra buffer
    df = sw.run_sweep(_cfg(batches=(1,), modes=("verify",), state_dtypes=("float32",), buffer_scopes=("batch",),
                           min_sample_us=1e6, buffer_budget_gb=5e-6, pool_capacity=8), None, progress=False)
    assert int(df.iloc[0]["calls_per_sample"]) == 2


def test_grid_default_and_keys():
    cfg = sw.SweepConfig(backends=["flashinfer", "triton"], strategy_backends=["triton", "flashinfer"])
    pts = sw.grid_points(cfg)
    calls = [p for p in pts if p.measure == "call"]
    steps = [p for p in pts if p.measure == "step"]
    # per backend: 2 dtypes x 7 batches x (decode + 3 T x {batch-scoped, pool-sized buffer})
    assert len(calls) == 2 * 2 * 7 * 7
    # per strategy backend: 2 dtypes x 5 strategies x 6 batches (T = 4, accept length 3.17)
    assert len(steps) == 2 * 2 * 5 * 6 and pts[: len(steps)] == steps      # the step grid runs first
    assert {p.preset for p in pts} == {"qwen3.5-397b-a17b"} and {p.shape.tp for p in pts} == {4}
    assert {p.pool_slots for p in calls} == {sw.CALL_POOL_ROW_SETS * 256 + 1}
    assert {p.timing for p in pts} == {"amortised"}
    # token_slots keeps 1 + T pool rows per request
    assert {(p.strategy == "token_slots", p.pool_slots) for p in steps} == {(True, 1 + 256 * 5), (False, 257)}
    assert {p.draft_tokens for p in steps} == {4} and {p.accept_len for p in steps} == {3.17}
    assert {p.mode for p in steps} == {"step"} and {p.buffer_scope for p in steps} == {None}
    assert {p.strategy for p in calls} == {None} and {p.buffer_scope for p in calls} == {"none", "batch", "pool"}
    assert len({point_key(p.key_row()) for p in pts}) == len(pts)


# ------------------------------------------------------------------ CLI


def test_cli_on_cpu(tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    rc = cli_main(["sweep", "--backends", "reference", "--presets", "qwen3.5-397b-a17b@tp16", "--batches", "1",
                   "--modes", "decode,verify", "--draft-tokens", "2", "--state-dtypes", "fp32",
                   "--call-strategies", "full_cache", "--strategies", "none", "--repeats", "1", "--warmup", "0",
                   "--device", "cpu",
                   "--out", str(out), "--no-progress", "--no-check"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "median µs per call" in text and "2 points run now" in text
    df = load_sweep(out)
    assert len(df) == 2 and set(df["state_dtype"]) == {"float32"} and (df["H"] == 1).all()
    assert json.loads(df.iloc[0]["kernel_path"])["kernel"] == "torch_reference"
    assert df["max_abs_err"].isna().all() and df["correct"].isna().all()     # --no-check


def test_cli_lists_take_spaces_or_commas():
    from gdnlab.cli import build_parser
    from gdnlab.cli.sweep import config_from_args

    args = build_parser().parse_args(["sweep", "--batches", "1", "4,16", "--state-dtypes", "bf16",
                                      "--timing", "single,eager"])
    cfg = config_from_args(args)
    assert list(cfg.batches) == [1, 4, 16] and list(cfg.state_dtypes) == ["bfloat16"]
    assert list(cfg.timings) == ["single", "eager"] and cfg.backends is None and cfg.engine == "sglang"
    earlier = config_from_args(build_parser().parse_args(["sweep", "--timing", "graph", "eager"]))
    assert list(earlier.timings) == ["single", "eager"]                  # the earlier name of single


def test_cli_every_option_has_help():
    import argparse

    from gdnlab.cli.sweep import configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    missing = [a.dest for a in parser._actions if not a.help]
    assert missing == []


@pytest.mark.parametrize("argv, code, words", [
    (["--device", "tpu"], 2, "device"),
    (["--batches", "1,x"], 2, "--batches"),
    (["--state-dtypes", "int8"], 2, "--state-dtypes"),
    (["--timing", "cupti"], 2, "timings"),
    (["--presets", "nope@tp4"], 2, "unknown preset"),
    (["--resume", "--overwrite"], 2, "not both"),
    (["--backends", "flashinfer", "--overwrite"], 3, "flashinfer"),
], ids=case_id)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, code, words):
    if "flashinfer" in argv and torch.cuda.is_available():
        pytest.skip("checks the no-CUDA answer")
    out = tmp_path / "s.parquet"
    out.write_bytes(b"PAR1 earlier results")                   # what the user had must survive
    rc = cli_main(["sweep", "--out", str(out), "--device", "cpu", "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == code and len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert out.read_bytes() == b"PAR1 earlier results"


def test_cli_resume_into_another_kind_of_file(tmp_path, capsys):
    other = tmp_path / "counters.parquet"
    pd.DataFrame({"kernel": ["x"], "dram_bytes": [1]}).to_parquet(other)
    rc = cli_main(["sweep", "--out", str(other), "--resume", "--backends", "reference", "--device", "cpu",
                   "--strategies", "none"])
    err = capsys.readouterr().err.strip()
    assert rc == 4 and len(err.splitlines()) == 1 and "not a gdnlab sweep" in err and str(other) in err


# ------------------------------------------------------------------ figures


def test_sweep_figures_carry_provenance():
    pytest.importorskip("plotly")
    from gdnlab import seed
    from gdnlab.plots import sweep as ps

    df = sw.run_sweep(_cfg(), None, progress=False)
    df.loc[(df["buffer_scope"] == "pool") & (df["state_dtype"] == "bfloat16"), "status"] = "rejected: AssertionError"
    figs = [ps.time_vs_batch_figure(df), ps.bandwidth_figure(df), ps.intermediate_cost_figure(df)]
    for fig in figs:
        prov = fig.layout.meta["provenance"]
        assert prov.startswith("measured · cpu") and "shape tiny: H=1 HV=2 K=16 V=16" in prov
        assert any(a.name == "provenance" for a in fig.layout.annotations)
    assert figs[0].layout.xaxis.type == "log" and figs[0].layout.yaxis.type == "log"
    names = [t.name for t in figs[2].data]
    assert "rejected (pool-sized buffer)" in names
    fig = ps.seed_overlay_figure(figs[0], seed.tpot_vs_concurrency(fixed=False))
    assert sum(1 for a in fig.layout.annotations if a.name == "provenance") == 1
    assert "reported" in fig.layout.meta["provenance"] and "GB200" in fig.layout.meta["provenance"]
    assert any("seed flashinfer" in (t.name or "") for t in fig.data)
    with pytest.raises(ValueError, match="ok"):
        ps.time_vs_batch_figure(df.assign(status="oom"))
