"""Step-time models, serving simulation and their checks against data.

The roofline model (gdnlab.model.legacy): monotonicity, speculation economics, the
max-running-requests cap, hand-checkable schedules, measured-row interpolation, bad input; its seed
validation (schema, roles, held-out rows never used in the fit, MTP-speedup error). The component
model (gdnlab.model): composition by hand, projection, the GDN-share identity, validate() and the
target summary on synthetic inputs, the figures built from its tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gdnlab import model
from gdnlab.errors import InputError
from gdnlab.hardware import spec_for
from gdnlab.model import (
    SEED_MTP,
    ComposedStep,
    MTPConfig,
    Overheads,
    ServedModel,
    ServingScenario,
    SweepGDN,
    cross_gpu_rows,
    legacy,
    project,
    simulate_serving,
    slice_rows,
)
from gdnlab.model.legacy import FittedParams, StepModel, seed_model

from helpers.ids import case_id
from helpers.plan import OVERHEAD, op_time, synthetic_sweep, synthetic_times

PARAMS = FittedParams(pass_us=2000.0, request_us=50.0, token_us=40.0, kv_mtoken_us=1000.0, prefill_pass_us=30000.0,
                      source="hand-set for tests")


@pytest.fixture(scope="module")
def sm():
    return StepModel("GB200", params=PARAMS)


def test_served_model_matches_its_name():
    m = ServedModel()
    assert abs(m.total_params / 397e9 - 1) < 0.01       # "397B"
    assert abs(m.active_params / 17e9 - 1) < 0.10       # "A17B"
    assert m.kv_heads_per_gpu == 1 and m.kv_bytes_per_token_layer == 2 * 256 * 2
    assert m.gdn.HV == 16 and m.gdn.num_gdn_layers == 45 and m.num_full_attn_layers == 15
    assert m.weight_bytes(512) > m.weight_bytes(16) > m.weight_bytes(1)   # more experts touched
    assert m.weight_bytes(10_000) == pytest.approx(m.weight_bytes(100_000), rel=1e-6)  # all experts


@pytest.mark.parametrize("mtp", [None, SEED_MTP], ids=["no_mtp", "seed_mtp"])
@pytest.mark.parametrize("backend", ["flashinfer", "triton"])
def test_tpot_grows_with_concurrency_and_context(sm, backend, mtp):
    ns = [1, 2, 4, 8, 16, 32, 64, 128]
    tpot = [sm.steady_tpot_ms(backend, n, 300, mtp) for n in ns]
    assert all(b > a for a, b in zip(tpot, tpot[1:]))
    ctx = [32, 256, 1024, 4096]
    by_ctx = [sm.steady_tpot_ms(backend, 64, c, mtp) for c in ctx]
    assert all(b > a for a, b in zip(by_ctx, by_ctx[1:]))
    thr = [sm.steady_throughput(backend, n, 300, mtp) for n in ns]
    assert thr[-1] > thr[0]


def test_simulated_tpot_grows_with_concurrency(sm):
    df = project(sm, backends=("flashinfer",), concurrencies=(1, 8, 64), osls=(128,), num_prompts=64,
                 mtp_setups={"MTP": SEED_MTP})
    assert (df["status"] == "projected").all()
    assert df["mean_tpot_ms"].is_monotonic_increasing


def test_verify_cost_grows_with_T_and_batch(sm):
    t = [sm.gdn_call_us("flashinfer", "verify", 64, T) for T in (1, 2, 4, 8)]
    assert all(b > a for a, b in zip(t, t[1:]))
    b = [sm.gdn_call_us("flashinfer", "verify", n, 4) for n in (1, 8, 64, 256)]
    assert all(y > x for x, y in zip(b, b[1:]))
    # Triton is modelled slower than FlashInfer (flashinfer#2405)
    assert sm.gdn_call_us("triton", "verify", 64, 4) > sm.gdn_call_us("flashinfer", "verify", 64, 4)


@pytest.mark.parametrize("n", [1, 16, 128])
def test_speculation_pays_at_high_acceptance_not_at_one(sm, n):
    for T in (2, 4, 6):
        assert sm.speedup("flashinfer", n, 300, float(T), T) > 1.0
        assert sm.speedup("flashinfer", n, 300, 1.0, T) < 1.0
        be = sm.break_even_accept_len("flashinfer", n, 300, T)
        assert 1.0 < be
        if be < T:
            assert sm.speedup("flashinfer", n, 300, be, T) == pytest.approx(1.0, rel=1e-9)


def test_seed_fitted_model_break_even_rises_with_concurrency():
    m = seed_model("before_fix")
    be = [m.break_even_accept_len("flashinfer_pre3147", n, 300, 4) for n in (1, 16, 128)]
    assert 1.0 < be[0] < be[1] < be[2] < 4.0
    assert 0.0 < m.gdn_share("flashinfer_pre3147", 128, 300, SEED_MTP) < 0.5


def test_single_request_schedule_by_hand(sm):
    wl = ServingScenario(isl=8, osl=5, num_prompts=1, concurrency=1, range_ratio=1.0)  # fixed lengths
    plain = simulate_serving(sm, "flashinfer", wl)
    assert plain.prefill_passes == 1 and plain.iterations == 4          # tokens 2..5, one per step
    mtp = simulate_serving(sm, "flashinfer", wl, SEED_MTP)
    assert mtp.iterations == 2                                            # 1 -> 4.175 -> 5
    # TPOT = decode time / (len - 1), evaluated by hand from the step model
    steps = [sm.iteration("flashinfer", 1, 8 + k, None) for k in range(1, 5)]
    by_hand = sum(sum(p.values()) + PARAMS.vector() @ f for p, f in steps) / 4 / 1e3
    assert plain.tpot_ms(PARAMS) == pytest.approx(by_hand, rel=1e-9)


def test_max_running_caps_effective_concurrency(sm):
    wl = ServingScenario(osl=256, num_prompts=256)  # the seed's OSL sweep shape: 256 prompts, rate inf
    assert wl.effective_concurrency == 128
    run = simulate_serving(sm, "flashinfer", wl)
    assert run.mean_batch <= 128
    c128 = simulate_serving(sm, "flashinfer", ServingScenario(osl=128, num_prompts=256, concurrency=128), SEED_MTP)
    c256 = simulate_serving(sm, "flashinfer", ServingScenario(osl=128, num_prompts=256, concurrency=256), SEED_MTP)
    assert c256.tpot_ms(PARAMS) == pytest.approx(c128.tpot_ms(PARAMS), rel=0.02)


def test_measured_rows_are_interpolated():
    batches = [1, 4, 16, 64, 256]
    rows = [{"backend": be, "mode": mode, "batch": b, "draft_tokens": T, "state_dtype": "bfloat16",
             "time_us": c * b ** 0.8}
            for be, c in (("flashinfer", 2.0), ("triton", 3.0)) for mode, T in (("decode", 1), ("verify", 4))
            for b in batches]
    m = StepModel("GB200", params=PARAMS, gdn_rows=pd.DataFrame(rows))
    assert m.gdn_call_us("flashinfer", "verify", 16, 4) == pytest.approx(2.0 * 16 ** 0.8)
    assert m.gdn_call_us("triton", "decode", 32, 1) == pytest.approx(3.0 * 32 ** 0.8, rel=1e-9)
    assert m.gdn_call_us("flashinfer", "decode", 1024, 1) == pytest.approx(2.0 * 1024 ** 0.8, rel=1e-9)
    assert m.step_us("triton", 32, 300) > m.step_us("flashinfer", 32, 300)
    with pytest.raises(ValueError, match="draft_tokens=3"):
        m.gdn_call_us("flashinfer", "verify", 16, 3)
    with pytest.raises(ValueError, match="missing columns"):
        StepModel(gdn_rows=pd.DataFrame({"batch": [1]}))
    with pytest.raises(ValueError, match="batch"):
        m.gdn_call_us("flashinfer", "verify", -4, 4)
    assert m.gdn_call_us("flashinfer", "verify", 0, 4) == 0.0


def test_measured_rows_in_the_results_schema_keep_graph_rows_only():
    """A frame with ``timing_method`` (no ``timing``) and failed/eager/pool rows: only status-ok,
    graph-timed, batch-scoped rows reach the medians; an older frame naming batch ``concurrency`` works."""
    rows = []
    for b in (1, 8, 64):
        for timing, scale in (("graph", 1.0), ("eager", 5.0)):
            for inter, extra in (("batch", 0.0), ("pool", 100.0)):
                rows.append({"backend": "triton", "mode": "verify", "batch": b, "draft_tokens": 4,
                             "state_dtype": "bfloat16", "intermediate": inter, "timing_method": timing,
                             "status": "ok", "time_us": scale * (2.0 * b + 10.0) + extra})
    rows.append({"backend": "triton", "mode": "verify", "batch": 8, "draft_tokens": 4, "state_dtype": "bfloat16",
                 "intermediate": "batch", "timing_method": "graph", "status": "rejected: oom", "time_us": 1e6})
    df = pd.DataFrame(rows)
    m = StepModel("H100-SXM", params=PARAMS, gdn_rows=df)
    for b in (1, 8, 64):
        assert m.gdn_call_us("triton", "verify", b, 4) == pytest.approx(2.0 * b + 10.0, rel=1e-12)
    assert "graph timing" in m.measured.source and "eager" not in m.measured.source
    old = StepModel("H100-SXM", params=PARAMS, gdn_rows=df.rename(columns={"batch": "concurrency"}))
    assert old.gdn_call_us("triton", "verify", 8, 4) == pytest.approx(26.0)
    assert len(model.comparable_rows(df)) == 3


H100_SWEEP = Path(__file__).resolve().parents[2] / "traces" / "h100" / "sweep.parquet"


def test_measured_rows_from_the_real_h100_sweep_keep_only_comparable_rows():
    """The shipped sweep mixes graph/eager timing and batch/pool intermediates: only status-ok,
    graph-timed, non-pool rows of the model's shape and bf16 intermediates may reach the medians."""
    if not H100_SWEEP.exists():
        pytest.skip(f"no shipped sweep at {H100_SWEEP}")
    raw = pd.read_parquet(H100_SWEEP)
    m = StepModel("H100-SXM", params=PARAMS, gdn_rows=raw)
    ok = raw[(raw["status"] == "ok") & (raw["timing"] == "graph") & (raw["intermediate"] != "pool")
             & (raw["state_dtype"] == "bfloat16")]
    for backend, mode, T in (("flashinfer", "verify", 4), ("triton", "verify", 4), ("triton", "decode", 1)):
        sel = ok[(ok["backend"] == backend) & (ok["mode"] == mode) & (ok["draft_tokens"] == T)]
        assert len(sel) >= 2, (backend, mode, T)
        for _, r in sel.iterrows():   # measured batch sizes come back as the row's own time
            assert m.gdn_call_us(backend, mode, int(r["batch"]), T) == pytest.approx(float(r["time_us"]), rel=1e-9)
        eager = raw[(raw["backend"] == backend) & (raw["mode"] == mode) & (raw["draft_tokens"] == T)
                    & (raw["timing"] == "eager") & (raw["batch"] == 1) & (raw["state_dtype"] == "bfloat16")]
        assert m.gdn_call_us(backend, mode, 1, T) < eager["time_us"].min()
    assert "measured" in m.measured.source and "graph timing" in m.measured.source
    assert "eager" not in m.measured.source
    with pytest.raises(ValueError, match="GDN shape"):    # tp=8 shards HV to 8: the tp=4 rows do not fit
        StepModel("H100-SXM", model=ServedModel.qwen35_397b(tp=8, weights="fp8"), params=PARAMS, gdn_rows=raw)
    with pytest.raises(ValueError, match="gdn_rows"):     # nothing comparable left
        StepModel("H100-SXM", params=PARAMS, gdn_rows=raw.assign(status="oom"))


def test_seed_model_with_measured_h100_kernels_is_a_labelled_projection():
    if not H100_SWEEP.exists():
        pytest.skip(f"no shipped sweep at {H100_SWEEP}")
    raw = pd.read_parquet(H100_SWEEP)
    m = seed_model("fixed", gpu="H100-SXM", gdn_rows=raw)
    plain = seed_model("fixed", gpu="H100-SXM")
    assert m.params == plain.params and m.measured is not None and plain.measured is None
    assert m.gdn_call_us("flashinfer", "verify", 64, 4) != plain.gdn_call_us("flashinfer", "verify", 64, 4)
    text = m.provenance(batches=(1, 64))
    assert text.startswith("projected") and "H100-SXM" in text and "measured GDN kernel times" in text
    assert "bandwidth model" in plain.provenance()


def test_sm90_projection_differs_from_sm100():
    h100 = StepModel("H100-SXM", model=ServedModel.qwen35_397b(tp=8, weights="fp8"), params=PARAMS)
    gb = StepModel("GB200", params=PARAMS)
    assert h100.gpu.sm == "sm90" and gb.gpu.sm == "sm100"
    assert h100.gpu.peak_hbm_gbps == spec_for("H100-SXM").peak_hbm_gbps
    assert h100.model.gdn.HV == 8
    assert h100.model.weight_gb_per_gpu() < spec_for("H100-SXM").hbm_gib
    assert h100.gdn_call_us("flashinfer", "verify", 64, 4) > gb.gdn_call_us("flashinfer", "verify", 32, 4)


@pytest.mark.parametrize("call, word", [
    (lambda m: m.step_us("cuda-magic", 4, 10), "backend"),
    (lambda m: m.step_us("flashinfer", 0, 10), "n"),
    (lambda m: m.step_us("flashinfer", 4, -1), "ctx_per_request"),
    (lambda m: m.speedup("flashinfer", 4, 10, 5.0, 4), "accept_len"),
    (lambda m: m.speedup("flashinfer", 4, 10, "3.1x", 4), "accept_len"),
    (lambda m: ServingScenario(osl=0), "osl"),
    (lambda m: ServingScenario(range_ratio=2.0), "range_ratio"),
    (lambda m: MTPConfig(num_steps=0), "num_steps"),
    (lambda m: MTPConfig(draft_tokens=0), "draft_tokens"),
    (lambda m: m.speedup("flashinfer", 4, 10, 0.5, 4), "accept_len"),
    (lambda m: m.gdn_call_us("flashinfer", "verify", -4, 4), "batch"),
    (lambda m: m.gdn_call_us("flashinfer", "verify", float("nan"), 4), "batch"),
    (lambda m: m.gdn_call_us("flashinfer", "verify", 4, 0), "T"),
    (lambda m: m.gdn_call_us("flashinfer", "prefill", 4, 4), "mode"),
    (lambda m: m.gdn_commit_us(-1), "batch"),
    (lambda m: m.weights_us(-10), "tokens"),
    (lambda m: m.break_even_accept_len("flashinfer", 4, 10, 1), "T"),
    (lambda m: simulate_serving(m, "flashinfer", ServingScenario(osl=8, num_prompts=2), "MTP"), "mtp"),
    (lambda m: FittedParams(pass_us=-1.0), "pass_us"),
    (lambda m: simulate_serving(m, "flashinfer", "osl=10"), "scenario"),
    (lambda m: StepModel("TPUv9"), "unknown GPU"),
], ids=case_id)
def test_bad_input_raises_value_error(sm, call, word):
    with pytest.raises(ValueError, match=word):
        call(sm)


def test_fitted_params_round_trip():
    v = PARAMS.vector()
    assert np.array_equal(FittedParams.from_vector(v).vector(), v)


# ------------------------------------------------------------------ validation against the seed
@pytest.fixture(scope="module")
def validation():
    return legacy.validate_against_seed()


def test_validation_schema_and_roles(validation):
    v = validation
    assert {"metric", "predicted", "reported", "rel_error", "role"} <= set(v.columns)
    assert set(v["role"]) == {"fit", "heldout"}
    assert np.allclose(v["rel_error"], (v["predicted"] - v["reported"]) / v["reported"])
    assert v[["predicted", "reported"]].notna().all().all() and (v["predicted"] > 0).all()
    fit = v[v["role"] == "fit"]
    # fitted: no-MTP throughput rows and FlashInfer TPOT rows; never an MTP throughput or a Triton row
    assert not ((fit["metric"] == "output_throughput") & fit["mtp"]).any()
    assert (fit["backend"] == "flashinfer").all()
    held = v[v["role"] == "heldout"]
    assert set(held["metric"]) >= {"mtp_speedup", "tpot_ratio_triton_over_flashinfer", "output_throughput"}
    assert sorted(held.loc[held["metric"] == "mtp_speedup", "x"]) == [1024, 2048, 4096]
    assert "params" in v.attrs and set(v.attrs["params"]) == {"before_fix", "fixed"}


def test_legacy_roofline_mtp_speedup_within_ten_percent(validation):
    """A claim of the legacy roofline model (gdnlab.model.legacy, six numbers fitted on the seed's no-MTP
    OSL rows and FlashInfer TPOT rows), not of the model ``gdnlab predict`` uses: that one's speedup
    misses are asserted in tests/model/test_predict.py::test_readme_claims_about_the_model."""
    s = validation[validation["metric"] == "mtp_speedup"]
    assert len(s) == 3
    assert (s["rel_error"].abs() < 0.10).all(), s[["x", "predicted", "reported", "rel_error"]]


def test_heldout_rows_do_not_move_the_fit():
    from gdnlab.model import seed_roles
    from gdnlab.model.legacy import fit_to_seed
    from gdnlab.seed import load_seed

    df = load_seed()
    base = fit_to_seed(df)
    roles = seed_roles(df)
    held = df.index[roles == "heldout"]
    perturbed = df.copy()
    perturbed.loc[held, "value"] = perturbed.loc[held, "value"] * 1.7
    p = fit_to_seed(perturbed)
    assert np.array_equal(p.before.vector(), base.before.vector())
    assert np.array_equal(p.fixed.vector(), base.fixed.vector())
    # ... while perturbing a fit row does move it (the check can fail)
    fit_idx = df.index[(roles == "fit") & (df["table"] == "osl_sweep")][0]
    moved = df.copy()
    moved.loc[fit_idx, "value"] = moved.loc[fit_idx, "value"] * 1.3
    assert not np.allclose(fit_to_seed(moved).before.vector(), base.before.vector())


def test_pre3147_flashinfer_kernel_model_is_slower():
    """The roofline model's FlashInfer before flashinfer#3147 (the seed's first software state) gives a
    higher TPOT than FlashInfer with it, in simulated runs of the seed's MTP setting."""
    sm = StepModel("GB200", params=PARAMS)
    df = project(sm, backends=("flashinfer_pre3147", "flashinfer"), concurrencies=(1, 8), osls=(512,),
                 mtp_setups={"MTP": SEED_MTP})
    before, fixed = (df[df["backend"] == b].set_index("concurrency")["mean_tpot_ms"]
                     for b in ("flashinfer_pre3147", "flashinfer"))
    assert (before > fixed).all()
    assert df.attrs["provenance"].startswith("projected")


def test_seed_ratio_tables_have_no_missing_cells(validation):
    """Every row of the derived seed tables says which kernel state it belongs to (no NaN cells)."""
    from gdnlab import seed

    r = seed.backend_ratios()
    assert r[["table", "x_name", "x", "ratio", "kernel_state"]].notna().all().all()
    assert set(r.loc[r["table"] == "osl_sweep", "kernel_state"]) == {"unstated"}
    assert validation["kernel_state"].notna().all()


# ============================================================================ component model
# Small synthetic component runs (tests/helpers/plan.py builds them): composition, projection, the
# GDN-share identity, validate() on synthetic inputs.


def test_composed_decode_step_is_the_sum_of_its_ops_by_hand():
    times = synthetic_times()
    m = ServedModel()
    st = ComposedStep(times, m, Overheads(1.0, 0.0), allreduce_latency_us=0.0, busbw_gbps=1e12)
    B, kv = 4, 1024
    parts = st.parts("triton", B, B * (kv - 1))      # kv per request = ctx / B + 1
    net = lambda c: op_time(c, "decode", B, kv if c == "attn.attention" else None) - OVERHEAD
    assert parts["gdn_kernel"] == pytest.approx(m.gdn.num_gdn_layers * net("gdn.recurrent"))
    assert parts["attention"] == pytest.approx(m.num_full_attn_layers * net("attn.attention"))
    moe = sum(net(c) for c in ("moe.norm", "moe.router", "moe.experts", "moe.shared_expert"))
    assert parts["moe"] == pytest.approx(m.num_layers * moe)
    assert parts["graph"] == OVERHEAD and parts["draft"] == 0.0
    assert st.step_us("triton", B, kv - 1) == pytest.approx(sum(parts.values()))


@pytest.mark.parametrize("params", [Overheads(1.0, 0.0), Overheads(0.8, 40.0)],
                         ids=["scale1_request0us", "scale0.8_request40us"])
@pytest.mark.parametrize("mtp", [None, MTPConfig(4, 3.0)], ids=["no_mtp", "mtp_T4_accept3"])
def test_doubling_gdn_moves_tpot_by_its_share(params, mtp):
    st = ComposedStep(synthetic_times(), overheads=params)
    for B in (1, 16):
        share = st.gdn_share("triton", B, 2000, mtp)
        t1 = st.tpot_ms("triton", B, 2000, mtp)
        t2 = st.with_gdn_scale(2.0).tpot_ms("triton", B, 2000, mtp)
        assert 0 < share < 1
        assert (t2 - t1) / t1 == pytest.approx(share, rel=1e-9)


def test_verify_costs_more_than_decode_and_draft_grows_with_T():
    st = ComposedStep(synthetic_times(), gdn=SweepGDN.from_sweep(synthetic_sweep()), state_dtype="bfloat16")
    d = st.step_us("triton", 16, 1000)
    v4 = st.step_us("triton", 16, 1000, MTPConfig(4, 3.0))
    v2 = st.step_us("triton", 16, 1000, MTPConfig(2, 1.5))
    assert d < v2 < v4
    assert st.speedup("triton", 16, 1000, 1.0, 4) < 1 < st.speedup("triton", 16, 1000, 4.0, 4)
    assert st.break_even_accept_len("triton", 16, 1000, 4) == pytest.approx(v4 / d)


@pytest.mark.parametrize("call", [
    lambda s: s.break_even_accept_len("triton", 4, 100, 1),
    lambda s: s.step_us("triton", -1, 100),
    lambda s: s.step_us("triton", 0, 100),
    lambda s: s.speedup("triton", 4, 100, 5.0, 4),
], ids=case_id)
def test_component_model_refuses_out_of_domain(call):
    with pytest.raises(InputError):
        call(ComposedStep(synthetic_times()))


def test_projection_scales_memory_above_floor_and_gemm_with_bytes():
    times = synthetic_times()
    proj = times.projected("GB200", weight_bytes={"moe.experts": 0.25})
    r = 4800.0 / 8000.0
    floor = times.net_us("gdn.norm", "decode", 1)
    assert proj.net_us("gdn.norm", "decode", 16) == pytest.approx(floor + (times.net_us("gdn.norm", "decode", 16)
                                                                           - floor) * r)
    assert proj.net_us("moe.experts", "decode", 16) == pytest.approx(times.net_us("moe.experts", "decode", 16) * r
                                                                      * 0.25)
    assert proj.status == "projected" and proj.gpu.name == "GB200"


def test_interpolation_in_T_between_decode_and_measured_mtp():
    t = synthetic_times()
    lo, hi = t.net_us("gdn.in_proj", "decode", 4), t.net_us("gdn.in_proj", "mtp", 4)
    assert t.net_us("gdn.in_proj", "mtp", 4, T=4) == pytest.approx(hi)
    assert t.net_us("gdn.in_proj", "mtp", 4, T=2) == pytest.approx(lo + (hi - lo) / 3)
    assert t.net_us("gdn.commit", "mtp", 4, T=8) == pytest.approx(t.net_us("gdn.commit", "mtp", 4))


def test_slice_check_and_cross_gpu_rows_on_synthetic_data():
    times = synthetic_times()
    s = slice_rows(times)
    assert len(s) == 12 and (s["rel_error"].abs() < 1e-9).all() and (s["check"] == "slice").all()
    # a reference sweep on an "H100" whose kernels are exactly the bandwidth ratio slower above the floor
    ref = synthetic_sweep(gpu="NVIDIA H100 80GB HBM3")
    tgt = SweepGDN.from_sweep(ref).projected("H200").table.assign(gpu="NVIDIA H200", status="ok",
                                                                   timing_method="graph", intermediate="batch",
                                                                   H=4, HV=16, K=128, V=128)
    x = cross_gpu_rows(ref, times, tgt, ref_overhead_us=0.0, tgt_overhead_us=0.0)
    assert (x["rel_error"].abs() < 1e-9).all() and set(x["gpu"]) == {"H100-SXM->H200"}
    # one timing method: removing a 2 µs replay cost from every single-call reference row moves each
    # projection by exactly 2 µs (the floor and the row shift together), the measurement not at all
    y = cross_gpu_rows(ref, times, tgt, ref_overhead_us=2.0, tgt_overhead_us=0.0)
    assert np.allclose(y["predicted"], x["predicted"] - 2.0) and np.allclose(y["observed"], x["observed"])
    assert "kernel time" in y["configuration"].iloc[0]
    # without the target sweep the component gdn.recurrent rows are the measurement
    z = cross_gpu_rows(ref, times, ref_overhead_us=0.0)
    assert len(z) > 0 and z["observed_status"].str.contains("components").all()


def test_validate_frame_without_e2e_has_its_checks():
    from gdnlab.model import validate

    v = validate(synthetic_times(), synthetic_sweep(gpu="NVIDIA H100 80GB HBM3"), target_sweep_path=None, e2e=False)
    assert set(v["check"]) == {"slice", "cross_gpu"} and set(v["role"]) == {"check"}
    assert v.attrs["skipped"] == {"seed/published": "e2e=False"} and v.attrs["params"] == {}


@pytest.fixture(scope="module")
def shipped_validation():
    from gdnlab.model import validate

    return validate()


def test_validate_on_shipped_data_has_every_check_fold_and_baseline(shipped_validation):
    from gdnlab.model import baseline_summary, seed_table

    v = shipped_validation
    assert set(v["check"]) == {"slice", "cross_gpu", "seed", "published"}
    e = v[v["check"].isin(["seed", "published"])]
    assert set(e["role"]) == {"check", "fit"} and (e["observed_status"] == "reported").all()
    assert e["aic_predicted"].notna().sum() >= 40 and e["baseline_err_constant_speedup"].notna().sum() >= 9
    assert e["baseline_err_triton_eq_flashinfer"].notna().sum() >= 20
    assert set(v.attrs["engine_params"]) == {"before_fix", "seed-fixed", "sglcookbook-h200", "inferencex-h100"}
    for p in v.attrs["engine_params"].values():
        assert 0 <= p["pass_us"] <= 3000 and 0 <= p["request_us"] <= 300 and "fitted on" in p["source"]
    summary = baseline_summary(v)
    assert {"all scored rows", "vs baseline constant_speedup"} <= set(summary["rows"])
    assert len(seed_table(v)) == len(e)


def test_target_summary_scores_every_target_without_fitting(shipped_validation):
    from gdnlab.model import target_summary

    v = shipped_validation
    before = dict(v.attrs["engine_params"])
    t = target_summary(v, with_predict=False)
    by = t.set_index("target")
    assert {"slice", "cross_gpu", "e2e: every scored row", "e2e: seed MTP speedup", "e2e: published TPOT",
            "e2e vs AIConfigurator: all scored rows"} <= set(by.index)
    assert "gdn_share" not in by.index                      # no target that holds by construction
    assert by.loc["slice", "passed"] and by.loc["slice", "n"] == len(v[v["check"] == "slice"])
    scored = v[v["check"].isin(["seed", "published"]) & (v["role"] == "check")]
    assert by.loc["e2e: every scored row", "n"] == len(scored)
    assert by.loc["e2e: every scored row", "n_within"] == int((scored["rel_error"].abs() <= 0.10).sum())
    assert by.loc["e2e vs AIConfigurator: all scored rows", "passed"]
    assert v.attrs["engine_params"] == before                     # scoring fits nothing


def test_component_model_figures_carry_provenance():
    from gdnlab.model import breakdown_by_batch, plan_candidates, speedup_table, tokens_per_step_table, validate
    from gdnlab.plots import model as plots
    from gdnlab.provenance import STATUSES

    times = synthetic_times()
    st = ComposedStep(times, gdn=SweepGDN.from_sweep(synthetic_sweep()))
    v = validate(times, synthetic_sweep(gpu="NVIDIA H100 80GB HBM3"), target_sweep_path=None, e2e=False)
    figs = [plots.checks_figure(v), plots.plan_figure(plan_candidates(st, batches=[1, 16], accept=3.0)),
            plots.speedup_vs_accept_figure(speedup_table(st, batches=[1, 16], draft_tokens=[2, 4])),
            plots.tokens_per_step_figure(tokens_per_step_table()),
            plots.step_breakdown_figure(breakdown_by_batch(st, batches=[1, 16], mtp=MTPConfig(4, 3.0)))]
    for f in figs:
        text = " ".join(a.text for a in f.layout.annotations if a.text)
        assert f.data and ("measured" in text or "synthetic" in text or "projected" in text), text[:200]
        assert f.layout.meta["provenance"].split(" · ")[0] in STATUSES, f.layout.meta["provenance"][:80]
    with pytest.raises(ValueError, match="v must be a DataFrame"):
        plots.checks_figure(None)
    with pytest.raises(ValueError, match="lacks columns"):
        plots.plan_figure(pd.DataFrame({"batch": [1]}))


def test_component_times_state_their_provenance_for_notebook_records():
    from gdnlab.report.notebook import describe

    times = synthetic_times()
    d = describe(times)
    assert d["status"] == times.status == "synthetic" and d["gpu"] == "H200"
    p = describe(times.projected("GB200"))
    assert p["status"] == "projected" and p["gpu"] == "GB200"


def test_plan_on_shipped_h200_data_never_chooses_an_excluded_row():
    from pathlib import Path

    from gdnlab.model import best_plan, plan_candidates, step_for_gpu

    root = Path(__file__).resolve().parents[2] / "traces" / "h200"
    if not (root / "sweep.parquet").is_file() or not (root / "components").is_dir():
        pytest.skip("no shipped H200 sweep and component run in this checkout")
    st, _ = step_for_gpu("H200", root / "components", sweep_path=root / "sweep.parquet", fitted=None)
    cand = plan_candidates(st, batches=[16, 256], accept=3.17, accept_T=4)
    ex = st.gdn.excluded
    bad = set(zip(ex["backend"], ex["strategy"], ex["state_dtype"]))
    assert not [r for r in cand.dropna(subset=["tpot_ms"]).itertuples()
                if (r.backend, r.strategy, r.state_dtype) in bad and r.strategy != "decode"
                and not st.gdn.has(r.backend, "verify", r.strategy, r.draft_tokens, r.state_dtype)]
    best = best_plan(cand, checked_only=True)
    assert (best["check"] == "checked").all()
    # every priced verify option of a measured strategy comes from its step row (verify + commit)
    opts = st.gdn.options()
    assert opts.loc[opts["mode"] == "verify", "has_step_us"].all()
