"""Analyses: kernel classes, range breakdown, idle gaps, step overhead, compare."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdnlab import traces
from gdnlab.traces import kernel_class, short_kernel_name
from gdnlab.traces import synthetic as tg

from helpers.ids import case_id


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    return traces.load(tg.write_nsys_sqlite(tmp_path_factory.mktemp("an") / "hm.sqlite", tg.handmade()))


@pytest.mark.parametrize("name,short,cls", [
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>(int, T1)",
     "vectorized_elementwise_kernel", "vectorized_elementwise_kernel"),
    ("void gdn::gated_delta_rule_decode_pretranspose_kernel<128, 128, float>(Params)",
     "gated_delta_rule_decode_pretranspose_kernel", "gdn"),
    ("fused_recurrent_gated_delta_rule_fwd_kernel", "fused_recurrent_gated_delta_rule_fwd_kernel", "gdn"),
    ("fused_sigmoid_gating_delta_rule_update_kernel_0d1d2d", "fused_sigmoid_gating_delta_rule_update_kernel_0d1d2d",
     "gdn"),
    ("kernel_cutlass_GatedDeltaNetMTP_1a2b3c4d_0", "kernel_cutlass_GatedDeltaNetMTP_1a2b3c4d_0",
     "kernel_cutlass_GatedDeltaNetMTP"),
    ("triton_poi_fused_add_mul_sigmoid_0", "triton_poi_fused_add_mul_sigmoid_0", "triton_poi_fused_add_mul_sigmoid"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n",
     "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n"),
    ("void cutlass::device_kernel<flash::FlashAttnFwdSm90<X>>(flash::FlashAttnFwdSm90<X>::Params)",
     "device_kernel", "device_kernel"),
], ids=case_id)
def test_names_and_classes(name, short, cls):
    assert short_kernel_name(name) == short
    assert kernel_class(name) == cls


def test_class_rules_override():
    rules = (("gemm", r"xmma_gemm|gemm"),)
    assert kernel_class("sm90_xmma_gemm_bf16", rules) == "gemm"
    assert kernel_class("gdn_decode", rules) == "gdn_decode"      # default gdn rule replaced


def test_kernel_summary_by_class_and_short_name(hm):
    by_class = traces.kernel_summary(hm, by="class").set_index("class")
    assert by_class.loc["gdn", "count"] == 2                       # gdn_decode_kernel + gdn_k3
    assert by_class.loc["gdn", "total_ns"] == 7_000
    by_short = traces.kernel_summary(hm, by="short_name").set_index("short_name")
    assert by_short.loc["foo", "count"] == 2 and by_short.loc["foo", "median_ns"] == 5_000
    assert by_class["total_ns"].sum() == hm.kernels["duration_ns"].sum()
    assert by_class.attrs["provenance"].startswith("synthetic")      # generated: never "measured"
    assert "hm.sqlite" in by_class.attrs["provenance"]


def test_range_breakdown(hm):
    rb = traces.range_breakdown(hm).set_index("range")
    assert rb.loc["step", "gpu_busy_total_ns"] == 16_000 and rb.loc["step", "kernel_count"] == 6
    assert rb.loc["layer", "cpu_total_ns"] == 39_000
    assert rb.loc["idle", "kernel_count"] == 0
    # GPU busy of the whole trace: union over all kernels on device 0
    from gdnlab.traces.projection import union_ns
    k = hm.kernels
    busy = union_ns(k["start_ns"].to_numpy(), k["end_ns"].to_numpy())
    assert rb.loc["step", "share_pct"] == pytest.approx(100 * 16_000 / busy)
    top = traces.range_breakdown(hm, depth=0, with_kernels_only=True)
    assert list(top["range"]) == ["step", "other"]


def test_range_breakdown_groups_numbers(tmp_path):
    b = tg.Builder()
    for i in range(3):
        b.range(f"step {i}", i * 10_000, i * 10_000 + 5_000)
        b.launch("k", i * 10_000 + 100, i * 10_000 + 1_000, 500)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "n.sqlite", b.build()))
    rb = traces.range_breakdown(t)
    assert list(rb["range"]) == ["step #"] and rb.loc[0, "count"] == 3
    assert len(traces.range_breakdown(t, group_numbers=False)) == 3


def test_gpu_idle_gaps(hm):
    gaps = traces.gpu_idle_gaps(hm)
    k = hm.kernels.sort_values("start_ns")
    from gdnlab.traces.projection import merged_intervals
    s, e = merged_intervals(k["start_ns"].to_numpy(), k["end_ns"].to_numpy())
    assert list(gaps["gap_ns"]) == list(s[1:] - e[:-1])
    first = gaps.iloc[0]
    assert (first["gap_start_ns"], first["gap_end_ns"]) == (15_000, 16_000)
    assert first["before"].startswith("void gdn_decode") and first["after"].startswith("void ns::foo")
    # gaps inside the step's GPU span [10, 60] µs are attributed to it
    step_id = hm.gpu_ranges.set_index("text").loc["step", "range_id"]
    inside = gaps[gaps["gap_end_ns"] <= 60_000]
    assert inside["in_step"].all() and (inside["step_range_id"] == step_id).all()
    assert not gaps[gaps["gap_start_ns"] >= 60_000]["in_step"].any()
    assert len(traces.gpu_idle_gaps(hm, min_gap_ns=10_000)) == (gaps["gap_ns"] >= 10_000).sum()


def test_step_overhead_on_decode_loop(tmp_path):
    syn = tg.decode_loop(8, layers=2, kernels_per_layer=3)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "d.sqlite", syn))
    so = traces.step_overhead(t)
    assert len(so) == 8 and (so["kernel_count"] == 6).all()
    steps = syn.ranges[syn.ranges["text"] == "step"].sort_values("start")
    assert list(so["start_ns"]) == list(steps["start"])
    assert list(so["period_ns"].dropna()) == list(np.diff(steps["start"].to_numpy()))
    k = syn.kernels
    per_step = (k["end"] - k["start"]).groupby(np.arange(len(k)) // 6).sum().to_numpy()
    assert list(so["gpu_busy_ns"]) == list(per_step)             # sequential kernels: busy = sum
    assert (so["overhead_ns"] == so["wall_ns"] - so["gpu_busy_ns"]).all()
    assert ((so["busy_pct"] > 0) & (so["busy_pct"] <= 100)).all()


def test_step_overhead_regex(hm):
    so = traces.step_overhead(hm, step=r"^(step|graph)$", regex=True)
    assert set(so["text"]) == {"step", "graph"}
    assert traces.step_overhead(hm, step="steps").empty


def test_compare(tmp_path):
    a = traces.load(tg.write_nsys_sqlite(tmp_path / "a.sqlite", tg.decode_loop(4, layers=2)))
    syn = tg.decode_loop(4, layers=2)
    syn.kernels[["start", "end"]] *= 2      # every kernel twice as long, gaps too (a stream runs one at a time)
    b = traces.load(tg.write_nsys_sqlite(tmp_path / "b.sqlite", syn))
    c = traces.compare(a, b, labels=("flashinfer", "triton"))
    assert {"kind", "key", "metric", "flashinfer", "triton", "delta", "ratio"} <= set(c.columns)
    tot = c[(c["kind"] == "kernel_class") & (c["metric"] == "total_ns")].set_index("key")
    assert tot.loc["gdn", "ratio"] == pytest.approx(2.0)
    assert tot.loc["gdn", "delta"] == tot.loc["gdn", "flashinfer"]
    cnt = c[(c["kind"] == "kernel_class") & (c["metric"] == "count")]
    assert (cnt["ratio"] == 1.0).all()
    rng = c[(c["kind"] == "range") & (c["metric"] == "count")].set_index("key")
    assert rng.loc["step", "flashinfer"] == 4 and rng.loc["layer", "triton"] == 8
    with pytest.raises(ValueError):
        traces.compare(a, b, labels=("x", "x"))


def test_compare_missing_class_gives_nan_ratio(tmp_path, hm):
    b = tg.Builder()
    b.range("step", 0, 10_000)
    b.launch("only_here", 100, 1_000, 500)
    other = traces.load(tg.write_nsys_sqlite(tmp_path / "o.sqlite", b.build()))
    c = traces.compare(hm, other)
    row = c[(c["key"] == "only_here") & (c["metric"] == "count")].iloc[0]
    assert pd.isna(row["flashinfer"]) and row["triton"] == 1 and pd.isna(row["ratio"])


def test_analyses_take_frames_and_import_no_trace_module():
    """analysis.py works on DataFrames and never imports trace.py (the facade imports it, one way)."""
    import ast
    import inspect

    from gdnlab.traces import analysis
    tree = ast.parse(inspect.getsource(analysis))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.split(".")[-1] == "trace" for m in imported), imported


def test_facade_equals_analyses_on_frames(hm):
    from gdnlab.traces import analysis
    pd.testing.assert_frame_equal(traces.kernel_summary(hm, by="class"),
                                  analysis.kernel_summary(hm.kernels, by="class"))
    pd.testing.assert_frame_equal(hm.range_breakdown(depth=0),
                                  analysis.range_breakdown(hm.gpu_ranges, hm.kernels, depth=0))
    pd.testing.assert_frame_equal(hm.step_overhead(), analysis.step_overhead(hm.gpu_ranges))
    pd.testing.assert_frame_equal(hm.gpu_idle_gaps(), analysis.gpu_idle_gaps(hm.kernels, hm.gpu_ranges))
    assert analysis.kernel_summary(hm.kernels).attrs == {}          # provenance is the facade's job
    assert hm.kernel_summary().attrs["provenance"] == hm.provenance()
