"""gdnlab.sweep on CPU with the reference backend: byte formula, tidy schema, kill + resume, OOM,
rejected/unsupported points, the JSON-lines fallback, the CLI, and the sweep figures."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from gdnlab import sweep as sw
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.roofline import gdn_bytes
from gdnlab.shapes import GDNShape, preset

TINY = GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=16)


def _cfg(**kw):
    base = dict(backends=["reference"], concurrency=(1, 3), draft_tokens=(2,), presets=(TINY,), repeats=2, warmup=0,
                device="cpu")
    base.update(kw)
    return sw.SweepConfig(**base)


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
    df = sw.run_sweep(_cfg(concurrency=(3,), state_dtypes=("float32",), intermediates=("batch",)), None,
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
    assert list(df.columns[: len(sw.SCHEMA)]) == list(sw.SCHEMA)
    for col, dt in sw.SCHEMA.items():
        assert str(df[col].dtype) == dt, (col, df[col].dtype)
    # 2 dtypes x (decode + verify T=2 x {batch, pool}) x 2 concurrencies
    assert len(df) == 2 * 3 * 2 and (df["status"] == "ok").all()
    assert set(df["intermediate"]) == {"none", "batch", "pool"}
    assert df["correct"].all() and (df["max_abs_err"] <= 1e-5).all()
    assert (df["time_p10_us"] <= df["time_us"]).all() and (df["time_us"] <= df["time_p90_us"]).all()
    assert (df["timing_method"] == "cpu_wall").all() and df["gpu"].eq("cpu").all()
    assert df["torch"].eq(torch.__version__).all() and df["timestamp"].notna().all()
    pool = df[df["intermediate"] == "pool"]
    assert pool["pool_rows_untouched"].all() and (pool["intermediate_rows"] == 4).all()   # capacity 3 + 1
    # loading again gives the same frame
    pd.testing.assert_frame_equal(sw.load_results(tmp_path / "s.parquet"), df)


# ------------------------------------------------------------------ kill + resume


class _Kill(Exception):
    pass


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path, fmt):
    out = tmp_path / f"sweep.{fmt}"
    cfg = _cfg()
    n_total = len(sw.grid_points(cfg))
    seen = []

    def killer(row):
        seen.append(row)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cfg, out, on_row=killer, progress=False)
    first = sw.load_results(out)
    assert len(first) == 5
    with pytest.raises(ValueError, match="resume"):
        sw.run_sweep(cfg, out, progress=False)
    ran = []
    df = sw.run_sweep(cfg, out, resume=True, on_row=ran.append, progress=False)
    assert len(ran) == n_total - 5
    assert len(df) == n_total
    keys = df[list(sw.KEY_COLUMNS)].astype(object).apply(tuple, axis=1)
    assert not keys.duplicated().any()
    assert set(keys) == {sw.point_key(p) for p in sw.grid_points(cfg)}
    # the first five rows were kept as they were, not measured again
    kept = df.merge(first[list(sw.KEY_COLUMNS) + ["sweep_id"]], on=list(sw.KEY_COLUMNS), suffixes=("", "_first"))
    assert len(kept) == 5 and (kept["sweep_id"] == kept["sweep_id_first"]).all()
    assert df["sweep_id"].nunique() == 2
    # a resume with nothing left to do runs nothing
    again = []
    sw.run_sweep(cfg, out, resume=True, on_row=again.append, progress=False)
    assert again == [] and len(sw.load_results(out)) == n_total


def test_kill_inside_a_point_loses_only_that_point(tmp_path, monkeypatch):
    out = tmp_path / "s.parquet"
    cfg = _cfg(state_dtypes=("float32",))
    orig = ReferenceBackend._verify

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ReferenceBackend, "_verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cfg, out, progress=False)
    stored = sw.load_results(out)
    assert list(stored["mode"]) == ["decode", "decode"]            # the points before the verify in flight
    monkeypatch.setattr(ReferenceBackend, "_verify", orig)
    df = sw.run_sweep(cfg, out, resume=True, progress=False)
    assert len(df) == len(sw.grid_points(cfg)) and (df["status"] == "ok").all()


def test_jsonl_torn_last_line_is_ignored(tmp_path):
    out = tmp_path / "s.jsonl"
    sw.run_sweep(_cfg(concurrency=(1,), state_dtypes=("float32",)), out, progress=False)
    with open(out, "a") as f:
        f.write('{"preset": "tiny", "tp": 1, "backe')              # a write cut by a kill
    df = sw.load_results(out)
    assert len(df) == 3 and (df["status"] == "ok").all()
    # a .parquet name falls back to the .jsonl sibling when asked to load
    assert len(sw.load_results(tmp_path / "s.parquet")) == 3


def test_missing_pyarrow_falls_back_to_jsonl(tmp_path, monkeypatch):
    monkeypatch.setattr(sw, "_has_pyarrow", lambda: False)
    path, fmt = sw.resolve_output(tmp_path / "sweep.parquet")
    assert fmt == "jsonl" and path.name == "sweep.jsonl"
    df = sw.run_sweep(_cfg(concurrency=(1,), state_dtypes=("float32",)), tmp_path / "sweep.parquet", progress=False)
    assert (tmp_path / "sweep.jsonl").exists() and not (tmp_path / "sweep.parquet").exists()
    assert len(df) == 3


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
    assert len(oom) == 1 and oom.iloc[0]["mode"] == "decode" and int(oom.iloc[0]["concurrency"]) == 3
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

    monkeypatch.setattr(sw, "make_backend", lambda name, options=None: PickyBackend())
    df = sw.run_sweep(_cfg(concurrency=(2,)), None, progress=False)
    st = df.set_index(["state_dtype", "mode", "intermediate"])["status"]
    assert st[("float32", "verify", "pool")].startswith("rejected: AssertionError: raise AssertionError (test_sweep.py:")
    assert st[("bfloat16", "verify", "batch")].startswith("unsupported:")
    assert st[("float32", "verify", "batch")] == "ok" and st[("bfloat16", "decode", "none")] == "ok"

    def boom(self, *a, **k):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(PickyBackend, "_decode", boom)
    df = sw.run_sweep(_cfg(concurrency=(2,), state_dtypes=("float32",), modes=("decode",)), None, progress=False)
    assert df.iloc[0]["status"] == "error: RuntimeError: kernel exploded"


@pytest.mark.parametrize("kw, match", [({"concurrency": (0,)}, "concurrency"), ({"modes": ("prefill",)}, "modes"),
                                       ({"draft_tokens": (1,)}, "draft_tokens"), ({"timings": ("cupti",)}, "timings"),
                                       ({"presets": ("nope@tp4",)}, "unknown preset"),
                                       ({"presets": ("qwen3.5-397b-a17b@4",)}, "NAME@tpN"),
                                       ({"pool_capacity": 2}, "pool_capacity")])
def test_bad_config_names_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        sw.grid_points(_cfg(**kw))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_cuda_device_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="device='cuda'"):
        sw.run_sweep(_cfg(device="cuda"), None, progress=False)


def test_rotation_times_several_row_sets_per_sample():
    df = sw.run_sweep(_cfg(rotations=(False, True), state_dtypes=("float32",), intermediates=("batch",)), None,
                      progress=False)
    assert len(df) == 2 * 2 * 2 and (df["status"] == "ok").all()
    calls = df.set_index(["mode", "rotate", "concurrency"])["calls_per_sample"]
    # capacity 3 (max concurrency): B=1 rotates over 3 disjoint rows, B=3 has only one set
    assert calls[("decode", True, 1)] == 3 and calls[("decode", True, 3)] == 1
    assert calls[("verify", True, 1)] == 3 and calls[("decode", False, 1)] == 1


def test_grid_default_and_keys():
    cfg = sw.SweepConfig(backends=["flashinfer", "triton"])
    pts = sw.grid_points(cfg)
    # per backend: 2 dtypes x 7 concurrencies x (decode + 3 T x {batch, pool})
    assert len(pts) == 2 * 2 * 7 * 7
    assert {p["preset"] for p in pts} == {"qwen3.5-397b-a17b"} and {p["tp"] for p in pts} == {4}
    assert {p["pool_slots"] for p in pts} == {257}
    assert len({sw.point_key(p) for p in pts}) == len(pts)


def test_cli_on_cpu(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    sw.configure_parser(parser)
    out = tmp_path / "cli.parquet"
    args = parser.parse_args(["--backends", "reference", "--presets", "qwen3.5-397b-a17b@tp16", "--concurrency", "1",
                              "--modes", "decode,verify", "--draft-tokens", "2", "--state-dtypes", "fp32",
                              "--intermediate", "batch", "--repeats", "1", "--warmup", "0", "--device", "cpu",
                              "--out", str(out), "--no-progress", "--no-check"])
    assert sw.run(args) == 0
    text = capsys.readouterr().out
    assert "median µs per call" in text and "2 points run now" in text
    df = sw.load_results(out)
    assert len(df) == 2 and set(df["state_dtype"]) == {"float32"} and (df["H"] == 1).all()
    assert json.loads(df.iloc[0]["kernel_path"])["kernel"] == "torch_reference"
    assert df["max_abs_err"].isna().all() and df["correct"].isna().all()     # --no-check


# ------------------------------------------------------------------ figures


def test_sweep_figures_carry_provenance():
    pytest.importorskip("plotly")
    from gdnlab import seed
    from gdnlab.plots import sweep as ps

    df = sw.run_sweep(_cfg(), None, progress=False)
    df.loc[(df["intermediate"] == "pool") & (df["state_dtype"] == "bfloat16"), "status"] = "rejected: AssertionError"
    figs = [ps.time_vs_concurrency(df), ps.bandwidth_vs_concurrency(df), ps.intermediate_cost(df)]
    for fig in figs:
        prov = fig.layout.meta["provenance"]
        assert prov.startswith("measured · cpu") and "shape tiny: H=1 HV=2 K=16 V=16" in prov
        assert any(a.name == "provenance" for a in fig.layout.annotations)
    assert figs[0].layout.xaxis.type == "log" and figs[0].layout.yaxis.type == "log"
    names = [t.name for t in figs[2].data]
    assert "rejected (pool-sized buffer)" in names
    fig = ps.overlay_seed(figs[0], seed.tpot_vs_concurrency(fixed=False))
    assert sum(1 for a in fig.layout.annotations if a.name == "provenance") == 1
    assert "reported" in fig.layout.meta["provenance"] and "GB200" in fig.layout.meta["provenance"]
    assert any("seed flashinfer" in (t.name or "") for t in fig.data)
    with pytest.raises(ValueError, match="ok"):
        ps.time_vs_concurrency(df.assign(status="oom"))
