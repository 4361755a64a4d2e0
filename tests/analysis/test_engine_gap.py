"""The engines' own paths beside gdnlab's (gdnlab.analysis.engine_gap) on small synthetic frames whose
pairs, ratios and statuses are written out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from gdnlab import backends
from gdnlab.analysis import engine_gap as eg
from gdnlab.analysis import strategy_traces
from gdnlab.errors import InputError
from gdnlab.traces.synthetic import kernel_table

from helpers.engine_rows import H100, H200, call_row, frame, step_row


def _one(gap: pd.DataFrame, **where) -> pd.Series:
    sel = gap
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (where, sel)
    return sel.iloc[0]


# ------------------------------------------------------------------------------------------ step rows


def test_each_engine_row_is_paired_with_its_twin_backend():
    rows = [step_row("flashinfer", "full_cache", 16, 50.0), step_row("triton", "full_cache", 16, 40.0),
            step_row("sglang_flashinfer", "full_cache", 16, 60.0), step_row("sglang_triton", "full_cache", 16, 30.0),
            step_row("vllm_cuda", "token_slots", 16, 33.0), step_row("triton", "token_slots", 16, 44.0),
            step_row("flashinfer", "token_slots", 16, 11.0)]
    gap = eg.engine_gap(frame(rows))
    assert len(gap) == 3 and set(gap["backend"]) == {"sglang_flashinfer", "sglang_triton", "vllm_cuda"}
    fi = _one(gap, backend="sglang_flashinfer")
    assert (fi["engine"], fi["twin"], fi["status"]) == ("sglang", "flashinfer", eg.MEASURED)
    assert fi["engine_step_us"] == 60.0 and fi["gdnlab_step_us"] == 50.0      # FlashInfer's row, not Triton's
    assert fi["ratio"] == pytest.approx(1.2) and fi["gap_pct"] == pytest.approx(20.0)
    tr = _one(gap, backend="sglang_triton")
    assert tr["twin"] == "triton" and tr["ratio"] == pytest.approx(0.75) and tr["gap_pct"] == pytest.approx(-25.0)
    v = _one(gap, backend="vllm_cuda")
    assert (v["engine"], v["twin"], v["gdnlab_step_us"]) == ("vllm", "triton", 44.0)
    assert v["ratio"] == pytest.approx(0.75)
    assert bool(v["correct_engine"]) and bool(v["correct_gdnlab"]) and pd.isna(v["note"])
    assert list(gap.columns[:len(eg.STEP_COLUMNS)]) == eg.STEP_COLUMNS


def test_pairs_match_strategy_state_dtype_T_and_B():
    rows = [step_row("sglang_triton", "full_cache", 64, 90.0),
            step_row("triton", "full_cache", 16, 10.0), step_row("triton", "replay_ring", 64, 10.0),
            step_row("triton", "full_cache", 64, 10.0, state_dtype="float32"),
            step_row("triton", "full_cache", 64, 10.0, T=8)]
    r = _one(eg.engine_gap(frame(rows)), backend="sglang_triton")
    assert r["status"] == eg.NO_GDNLAB_ROW and math.isnan(r["ratio"]) and r["engine_step_us"] == 90.0
    rows.append(step_row("triton", "full_cache", 64, 100.0))
    r = _one(eg.engine_gap(frame(rows)), backend="sglang_triton")
    assert r["status"] == eg.MEASURED and r["ratio"] == pytest.approx(0.9)


def test_a_twin_at_another_accept_length_is_noted():
    eng = step_row("sglang_triton", "full_cache", 64, 120.0, accept_len=3.17)
    far = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0, accept_len=2.5)]))
    r = _one(far, backend="sglang_triton")
    assert r["status"] == eg.ACCEPT_DIFFERS and r["accept_len_gdnlab"] == 2.5 and r["accept_len"] == 3.17
    assert "2.5" in r["note"] and "3.17" in r["note"]
    assert r["ratio"] == pytest.approx(1.2)                  # shown, but not called measured
    # the nearest of several accept lengths is taken; 0.03 apart is the same condition
    near = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0, accept_len=2.5),
                                step_row("triton", "full_cache", 64, 80.0, accept_len=3.2)]))
    r = _one(near, backend="sglang_triton")
    assert r["status"] == eg.MEASURED and r["accept_len_gdnlab"] == 3.2 and r["ratio"] == pytest.approx(1.5)
    edge = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0, accept_len=3.23)]))
    assert _one(edge, backend="sglang_triton")["status"] == eg.ACCEPT_DIFFERS      # 0.06 > 0.05 tokens


def test_rows_of_different_gpus_are_never_compared():
    eng = step_row("sglang_triton", "full_cache", 64, 120.0, gpu=H200)
    only_h100 = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0, gpu=H100)]))
    r = _one(only_h100, backend="sglang_triton")
    assert r["status"] == eg.NO_GDNLAB_ROW and math.isnan(r["ratio"]) and pd.isna(r["gdnlab_step_us"])
    assert H100 in r["note"] and "not compared" in r["note"]
    both = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0, gpu=H200),
                                step_row("triton", "full_cache", 64, 60.0, gpu=H100),
                                step_row("sglang_triton", "full_cache", 64, 90.0, gpu=H100)]))
    assert _one(both, gpu=H200)["ratio"] == pytest.approx(1.2)
    assert _one(both, gpu=H100)["ratio"] == pytest.approx(1.5)


def test_rows_that_did_not_run_or_ran_differently_say_why():
    rows = [step_row("sglang_triton", "full_cache", 1, math.nan, status="oom"),
            step_row("triton", "full_cache", 1, 9.0),
            step_row("sglang_triton", "full_cache", 4, 12.0),
            step_row("triton", "full_cache", 4, math.nan, status="error: boom"),
            step_row("sglang_triton", "full_cache", 16, 30.0, correct=False),
            step_row("triton", "full_cache", 16, 20.0),
            step_row("sglang_triton", "full_cache", 64, 70.0),
            step_row("triton", "full_cache", 64, 50.0, timing_method="eager")]
    gap = eg.engine_gap(frame(rows)).set_index("batch")
    assert gap.loc[1, "status"] == eg.ENGINE_NOT_OK and "oom" in gap.loc[1, "note"]
    assert gap.loc[4, "status"] == eg.GDNLAB_NOT_OK and "error: boom" in gap.loc[4, "note"]
    assert math.isnan(gap.loc[1, "ratio"]) and math.isnan(gap.loc[4, "ratio"])
    assert gap.loc[16, "status"] == eg.MEASURED and gap.loc[16, "note"] == "check failed: engine"
    assert not gap.loc[16, "correct_engine"] and gap.loc[16, "correct_gdnlab"]
    assert gap.loc[64, "status"] == eg.NOT_COMPARABLE and "eager" in gap.loc[64, "note"]
    assert set(gap["status"]) <= set(eg.STATUSES)


def test_an_ok_twin_row_wins_over_one_that_did_not_run_and_the_last_stored_on_a_tie():
    eng = step_row("sglang_triton", "full_cache", 64, 120.0)
    gap = eg.engine_gap(frame([eng, step_row("triton", "full_cache", 64, 100.0),
                               step_row("triton", "full_cache", 64, math.nan, status="oom", sweep_id="b")]))
    assert _one(gap, backend="sglang_triton")["ratio"] == pytest.approx(1.2)
    rows = pd.concat([frame([eng, step_row("triton", "full_cache", 64, 100.0)]),
                      frame([step_row("triton", "full_cache", 64, 60.0)])], ignore_index=True)
    assert _one(eg.engine_gap(rows), backend="sglang_triton")["ratio"] == pytest.approx(2.0)


def test_gdnlab_rows_and_unknown_backends_are_not_engine_rows():
    gap = eg.engine_gap(frame([step_row("triton", "full_cache", 64, 100.0),
                               step_row("flashinfer", "full_cache", 64, 1.0),
                               step_row("someone_else", "full_cache", 64, 5.0)]))
    assert gap.empty and list(gap.columns) == eg.STEP_COLUMNS
    assert backends.twin("triton") is None and backends.twin("sglang_cutedsl") == "flashinfer"


def test_missing_columns_and_bad_input_are_one_line_input_errors():
    df = frame([step_row("sglang_triton", "full_cache", 64, 100.0)]).drop(columns=["gpu", "accept_len"])
    with pytest.raises(InputError, match=r"lack the columns \['gpu', 'accept_len'\]") as e:
        eg.engine_gap(df)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="lack the columns"):
        eg.engine_call_gap(frame([call_row("sglang_triton", "verify", 4, 1.0)]).drop(columns=["buffer_scope"]))
    with pytest.raises(InputError, match="needs a pandas DataFrame"):
        eg.engine_gap([{"backend": "sglang_triton"}])
    with pytest.raises(InputError, match="gap_summary needs"):
        eg.gap_summary(pd.DataFrame({"backend": ["x"]}))


def test_empty_input_gives_empty_tables():
    for df in (pd.DataFrame(), frame([])):
        assert eg.engine_gap(df).empty and list(eg.engine_gap(df).columns) == eg.STEP_COLUMNS
        assert eg.engine_call_gap(df).empty and list(eg.engine_call_gap(df).columns) == eg.CALL_COLUMNS
    assert eg.gap_summary(eg.engine_gap(pd.DataFrame())).empty
    only_steps = frame([step_row("sglang_triton", "full_cache", 64, 100.0), step_row("triton", "full_cache", 64, 90.0)])
    assert eg.engine_call_gap(only_steps).empty


# ------------------------------------------------------------------------------------------ call rows


def test_call_rows_pair_at_mode_T_B_state_dtype_and_buffer_scope():
    rows = [call_row("sglang_flashinfer", "decode", 16, 9.0, T=1, buffer_scope="none"),
            call_row("flashinfer", "decode", 16, 10.0, T=1, buffer_scope="none"),
            call_row("sglang_flashinfer", "verify", 16, 30.0), call_row("flashinfer", "verify", 16, 20.0),
            call_row("flashinfer", "verify", 16, 99.0, buffer_scope="pool"),
            call_row("triton", "verify", 16, 1.0),
            call_row("sglang_cutedsl", "decode", 16, 8.0, T=1, buffer_scope="none"),
            call_row("sglang_flashinfer", "verify", 16, 30.0, buffer_scope="pool"),
            step_row("sglang_flashinfer", "full_cache", 16, 60.0)]
    gap = eg.engine_call_gap(frame(rows))
    assert len(gap) == 4 and list(gap.columns[:len(eg.CALL_COLUMNS)]) == eg.CALL_COLUMNS
    dec = _one(gap, backend="sglang_flashinfer", mode="decode")
    assert dec["engine_time_us"] == 9.0 and dec["gdnlab_time_us"] == 10.0 and dec["ratio"] == pytest.approx(0.9)
    ver = _one(gap, backend="sglang_flashinfer", mode="verify", buffer_scope="batch")
    assert ver["ratio"] == pytest.approx(1.5) and ver["twin"] == "flashinfer"
    pool = _one(gap, backend="sglang_flashinfer", mode="verify", buffer_scope="pool")
    assert pool["ratio"] == pytest.approx(30.0 / 99.0)
    cute = _one(gap, backend="sglang_cutedsl")
    assert cute["twin"] == "flashinfer" and cute["ratio"] == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------ summary


def test_summary_gives_the_median_ratio_and_its_range_over_B():
    twin = {1: 10.0, 4: 10.0, 16: 20.0, 64: 50.0}
    ratio = {1: 1.5, 4: 1.2, 16: 1.1, 64: 0.9}
    rows = [step_row("triton", "full_cache", B, t) for B, t in twin.items()]
    rows += [step_row("sglang_triton", "full_cache", B, twin[B] * ratio[B]) for B in twin]
    rows += [step_row("sglang_triton", "full_cache", 256, 500.0)]                        # no twin row: not counted
    rows += [step_row("sglang_triton", "full_cache", B, 5.0, state_dtype="float32") for B in (1, 4)]
    s = eg.gap_summary(eg.engine_gap(frame(rows)))
    bf = _one(s, state_dtype="bfloat16")
    assert (bf["rows"], bf["compared"], bf["failed_checks"]) == (5, 4, 0)
    assert bf["ratio_median"] == pytest.approx((1.2 + 1.1) / 2)            # median of 0.9, 1.1, 1.2, 1.5
    assert (bf["ratio_min"], bf["batch_at_min"]) == (pytest.approx(0.9), 64)
    assert (bf["ratio_max"], bf["batch_at_max"]) == (pytest.approx(1.5), 1)
    assert bf["gap_pct_median"] == pytest.approx(15.0) and bf["batches"] == "1-64"
    assert bf["statuses"] == f"{eg.NO_GDNLAB_ROW} x1"
    fp = _one(s, state_dtype="float32")
    assert fp["compared"] == 0 and math.isnan(fp["ratio_median"]) and fp["batches"] == ""
    assert (fp["gpu"], fp["engine"], fp["twin"], fp["strategy"], fp["draft_tokens"]) == \
        (H200, "sglang", "triton", "full_cache", 4)


# ------------------------------------------------------------------------------------------ files


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame(rows).to_parquet(path)


def test_load_engine_sweeps_reads_the_named_files_of_every_gpu_folder(tmp_path):
    root = tmp_path / "traces"
    _write(root / "h200" / "sweep.parquet", [step_row("triton", "full_cache", 64, 100.0)])
    _write(root / "h200" / "sweep_t.parquet", [step_row("triton", "full_cache", 16, 40.0, T=8)])
    _write(root / "h200" / "sweep_t_flashinfer.parquet", [step_row("flashinfer", "full_cache", 16, 30.0, T=8)])
    _write(root / "h200" / "sweep_triton_bf16verify_fp32intermediate.parquet", [call_row("triton", "verify", 4, 1.0)])
    _write(root / "h100" / "sweep.parquet", [step_row("triton", "full_cache", 64, 200.0, gpu=H100)])
    none = eg.load_engine_sweeps(root)
    assert none.empty and "no engine sweep rows" in none.attrs["missing"] and "sweep_engine_" in none.attrs["missing"]
    _write(root / "h200" / "sweep_engine_steps.parquet", [step_row("sglang_triton", "full_cache", 64, 120.0)])
    rows = eg.load_engine_sweeps(root)
    assert not rows.attrs.get("missing")
    assert sorted(rows["source"]) == ["h100/sweep.parquet", "h200/sweep.parquet", "h200/sweep_engine_steps.parquet",
                                      "h200/sweep_t.parquet", "h200/sweep_t_flashinfer.parquet"]
    gap = eg.engine_gap(rows)
    r = _one(gap, backend="sglang_triton")
    assert r["ratio"] == pytest.approx(1.2) and r["source"] == "h200/sweep_engine_steps.parquet"
    assert r["twin_source"] == "h200/sweep.parquet"
    with pytest.raises(FileNotFoundError, match="no folder"):
        eg.load_engine_sweeps(tmp_path / "nowhere")


def test_report_load_shows_a_loader_that_found_no_engine_rows_as_missing(tmp_path, capsys):
    from gdnlab import report

    _write(tmp_path / "h200" / "sweep.parquet", [step_row("triton", "full_cache", 64, 100.0)])
    got = report.load(eg.load_engine_sweeps, tmp_path, what="engine sweeps", hint="run the engine sweep")
    assert isinstance(got, report.Missing) and "no engine sweep rows" in got.what and got.hint == "run the engine sweep"
    assert "no engine sweep rows" in capsys.readouterr().out
    assert isinstance(report.call(eg.engine_gap, got), report.Missing)


# ------------------------------------------------------------------------------------------ traces


def test_trace_names_of_engine_backends_and_state_suffixes():
    assert strategy_traces.parse_trace_name("traces/h200/sglang_flashinfer_c64_osl512_t4_full_cache_fp32.sqlite") == \
        {"backend": "sglang_flashinfer", "batch": 64, "osl": 512, "draft_tokens": 4, "strategy": "full_cache",
         "state_dtype": "float32"}
    assert strategy_traces.parse_trace_name("triton_c64_osl512_t4_recompute_fused.sqlite")["strategy"] == \
        "recompute_fused"
    assert strategy_traces.parse_trace_name("sglang_triton_c64_osl512_t4_full_cache.sqlite")["state_dtype"] == \
        "bfloat16"
    for other in ("triton_c64_osl512_decode.sqlite", "mine_c64_osl512_t4_full_cache.sqlite",
                  "triton_c64_osl512_t4_full_cache_fp16.sqlite", "triton_c64_osl512_t4_fast_path.sqlite"):
        assert strategy_traces.parse_trace_name(other) is None, other


def test_engine_trace_paths_list_engines_with_their_twins(tmp_path):
    for n in ("sglang_flashinfer_c64_osl512_t4_full_cache_fp32.sqlite", "sglang_triton_c64_osl512_t4_full_cache.sqlite",
              "sglang_triton_c64_osl512_t4_full_cache_fp32.sqlite", "triton_c64_osl512_t4_full_cache.sqlite",
              "flashinfer_c64_osl512_t4_full_cache.sqlite", "triton_c64_osl512_t4_replay_ring.sqlite",
              "triton_c64_osl512_decode.sqlite"):
        (tmp_path / n).write_bytes(b"")
    got = strategy_traces.engine_trace_paths(tmp_path, ["sglang_flashinfer", "sglang_triton", "vllm_cuda"])
    assert list(got) == [("sglang_flashinfer", "full_cache", "float32"), ("flashinfer", "full_cache", "bfloat16"),
                         ("sglang_triton", "full_cache", "bfloat16"), ("sglang_triton", "full_cache", "float32"),
                         ("triton", "full_cache", "bfloat16"), ("vllm_cuda", "full_cache", "bfloat16")]
    assert got[("vllm_cuda", "full_cache", "bfloat16")].endswith("vllm_cuda_c64_osl512_t4_full_cache.sqlite")
    assert not (tmp_path / "vllm_cuda_c64_osl512_t4_full_cache.sqlite").exists()     # named, to be shown missing
    none = strategy_traces.engine_trace_paths(tmp_path / "empty", ["sglang_triton"])
    assert list(none) == [("sglang_triton", "full_cache", "bfloat16")]               # no twin without the engine


def test_engine_traces_beside_their_twins_at_the_same_state_dtype():
    gd = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"]
    en = ["phase_marker_verify", "fused_sigmoid_gating_delta_rule_update_kernel", "phase_marker_commit",
          "fused_mamba_state_scatter_with_mask"]
    # per step: markers 1 + 1 µs, verify and commit as written; kernel_us is their sum
    traces = {("sglang_triton", "full_cache", "bfloat16"): kernel_table(en * 3, [1000, 100_000, 1000, 25_000] * 3),
              ("sglang_triton", "full_cache", "float32"): kernel_table(en * 3, [1000, 120_000, 1000, 30_000] * 3),
              ("triton", "full_cache", "bfloat16"): kernel_table(gd * 3, [1000, 90_000, 1000, 20_000] * 3),
              ("sglang_flashinfer", "full_cache", "float32"): kernel_table(en * 3, [1000, 80_000, 1000, 20_000] * 3),
              ("flashinfer", "full_cache", "bfloat16"): None}
    t = eg.engine_trace_table(traces)
    assert list(zip(t["backend"], t["state_dtype"])) == [("sglang_triton", "bfloat16"), ("sglang_triton", "float32"),
                                                         ("triton", "bfloat16"), ("sglang_flashinfer", "float32")]
    bf = _one(t, backend="sglang_triton", state_dtype="bfloat16")
    assert bf["kernel_us"] == pytest.approx(127.0) and bf["twin_kernel_us"] == pytest.approx(112.0)
    assert bf["kernel_vs_twin"] == pytest.approx(127.0 / 112.0)
    assert bf["strategy_kernel_vs_twin"] == pytest.approx(125.0 / 110.0) and pd.isna(bf["note"])
    fp = _one(t, backend="sglang_triton", state_dtype="float32")
    assert math.isnan(fp["kernel_vs_twin"]) and "no triton full_cache trace at float32" in fp["note"]
    assert "it has bfloat16" in fp["note"]
    fi = _one(t, backend="sglang_flashinfer")
    assert fi["twin"] == "flashinfer" and "(it has none)" in fi["note"]
    own = _one(t, backend="triton")
    assert pd.isna(own["engine"]) and pd.isna(own["twin"]) and pd.isna(own["note"])
    assert eg.engine_trace_table({}).empty and eg.engine_trace_table({("sglang_triton", "full_cache", "bfloat16"):
                                                                       None}).empty
