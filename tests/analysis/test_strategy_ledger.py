"""The strategy ledger (gdnlab.analysis.ledger) and its figures (gdnlab.plots.strategies), on a small
synthetic sweep frame whose winners, ratios and targets are known by construction."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from gdnlab import results
from gdnlab.analysis import ledger, strategy_traces
from gdnlab.plots import strategies as sp
from gdnlab.plots.style import strategy_color
from gdnlab.strategies.registry import STRATEGY_NAMES
from gdnlab.traces.synthetic import kernel_table

BATCHES = (1, 16, 64, 256)
#: step µs per strategy at each B of BATCHES (bf16, T=4, accept 3.17); recompute_fused is fastest from B=16
STEP_US = {"full_cache": (10.0, 40.0, 100.0, 400.0), "token_slots": (12.0, 30.0, 80.0, 300.0),
           "recompute": (11.0, 35.0, 70.0, 250.0), "recompute_fused": (11.5, 20.0, 50.0, 140.0),
           "replay_ring": (13.0, 25.0, 60.0, 200.0)}
PROV = {"gpu": "NVIDIA H200", "sm": "sm90", "gdnlab": "0.1.0", "git_commit": "0123456789abcdef", "torch": "2.11",
        "act_dtype": "bfloat16", "shape": "qwen3.5-397b-a17b@tp4", "H": 4, "HV": 16, "K": 128, "V": 128,
        "timing_method": "amortised", "calls_per_sample": 16, "l2_flush": True}


def _row(strategy, B, step, *, backend="triton", T=4, a=3.17, dtype="bfloat16", correct=True, **kw):
    r = {"preset": "qwen3.5-397b-a17b", "tp": 4, "backend": backend, "mode": "step", "measure": "step",
         "strategy": strategy, "draft_tokens": T, "batch": B, "state_dtype": dtype, "timing": "amortised",
         "accept_len": a, "status": "ok", "step_us": step, "time_us": step, "verify_us": 0.7 * step,
         "commit_us": 0.3 * step, "commit_floor_us": 0.25 * step, "copy_floor_us": step / 2,
         "bytes": int(1000 * B), "verify_pct_of_peak_bw": 80.0, "commit_pct_of_peak_bw": 78.0,
         "correct": correct, "pool_slots": 257, **PROV}
    r.update(kw)
    return r


def _frame(extra=()):
    rows = [_row(s, B, t) for s, ts in STEP_US.items() for B, t in zip(BATCHES, ts)]
    # a call row and a strategy whose check failed: fastest everywhere, but flagged, never a winner
    rows.append({**_row("full_cache", 64, 1.0), "measure": "call", "mode": "verify"})
    rows += [_row("replay_ring", B, 1.0, backend="flashinfer", correct=False) for B in BATCHES]
    rows += [_row("full_cache", B, t, backend="flashinfer") for B, t in zip(BATCHES, STEP_US["full_cache"])]
    rows += list(extra)
    return results.to_frame(rows)


@pytest.fixture
def led():
    return ledger.strategy_ledger(_frame())


def test_step_rows_keep_steps_only_and_flag_failed_checks(led):
    assert (led["measure"] == "step").all() and len(led) == 5 * 4 + 4 + 4
    bad = led[led["flag"].notna()]
    assert set(bad["flag"]) == {ledger.FLAG_INCORRECT}
    assert set(zip(bad["backend"], bad["strategy"])) == {("flashinfer", "replay_ring")}
    assert led.loc[led["flag"].isna(), "correct"].all()        # flagged rows kept, the others untouched


def test_per_token_and_ratio_columns(led):
    r = led[(led["backend"] == "triton") & (led["strategy"] == "replay_ring") & (led["batch"] == 256)].iloc[0]
    assert r["per_token_us"] == pytest.approx(200.0 / 3.17)
    assert r["vs_full_cache"] == pytest.approx(200.0 / 400.0)
    assert r["floor_ratio"] == pytest.approx(2.0) and r["commit_floor_ratio"] == pytest.approx(0.3 / 0.25)
    other = ledger.strategy_ledger(_frame([_row("full_cache", 4, 9.0, a=2.0)]))
    r2 = other[(other["accept_len"] == 2.0)].iloc[0]
    assert r2["per_token_us"] == pytest.approx(4.5)
    skipped = ledger.strategy_ledger(_frame([_row("recompute", 4, 9.0, status="oom")]))
    assert math.isnan(skipped.loc[skipped["status"] == "oom", "per_token_us"].iloc[0])


def test_winners_per_batch_skip_failed_checks(led):
    w = ledger.winners(led)
    tri = w[w["backend"] == "triton"].set_index("batch")
    expect = {B: min(STEP_US, key=lambda s: STEP_US[s][i]) for i, B in enumerate(BATCHES)}
    assert tri["winner"].to_dict() == expect
    assert tri.loc[256, "speedup"] == pytest.approx(400.0 / 140.0)
    assert tri.loc[256, "runner_up"] == "replay_ring"
    fi = w[w["backend"] == "flashinfer"]
    assert set(fi["winner"]) == {"full_cache"} and set(fi["flagged"]) == {"replay_ring (INCORRECT)"}
    assert set(fi["fastest_flagged"]) == {"replay_ring (INCORRECT)"}           # shown beside, never counted


def test_unchecked_and_eager_rows_are_flagged_and_never_win():
    # flashinfer replay_ring: fastest but its check did not run; triton recompute_fused timed eagerly
    extra = [_row("replay_ring", B, 0.5, backend="flashinfer", correct=None) for B in BATCHES]
    extra += [_row("token_slots", B, 0.1, backend="flashinfer", correct=None, timing_method="eager") for B in BATCHES]
    led = ledger.strategy_ledger(_frame(extra))
    fi = led[led["backend"] == "flashinfer"]
    flags = fi.set_index(["strategy", "batch"])["flag"]
    assert flags[("replay_ring", 16)] == ledger.FLAG_UNCHECKED            # the later rows replace the INCORRECT ones
    assert flags[("token_slots", 16)] == f"{ledger.FLAG_UNCHECKED}, {ledger.FLAG_EAGER}"
    assert ledger.has_flag(fi["flag"], ledger.FLAG_EAGER).sum() == len(BATCHES)
    w = ledger.winners(led)
    assert set(w.loc[w["backend"] == "flashinfer", "winner"]) == {"full_cache"}
    assert w.loc[w["backend"] == "flashinfer", "fastest_flagged"].str.startswith("token_slots").all()
    tab = ledger.targets(led)
    best = _target(tab, "best strategy's step", backend="flashinfer")
    assert best["met"] == "no data" and "replay_ring (UNCHECKED)" in best["detail"]
    assert "faster but not counted: token_slots" in best["detail"]
    eager = _target(tab, "verify and commit", backend="flashinfer", strategy="token_slots")
    assert eager["met"] == ledger.MET_NOT_COMPARABLE and "eager" in eager["detail"]


def test_served_scratch_matches_an_independent_count():
    t = ledger.served_scratch(batch=256, draft_tokens=4, state_dtype="bfloat16").set_index("strategy")
    HV, K, V, L, B, T = 16, 128, 128, 45, 256, 4
    S = HV * V * K * 2                       # one request's bf16 state, one layer
    e = HV * (V + K + 1) * 4                 # one float32 stash / ring entry
    P = 1 + B
    gib = 2 ** 30
    assert t.loc["full_cache", "scratch_gib"] == pytest.approx(B * T * S * L / gib) == pytest.approx(22.5)
    assert t.loc["recompute", "scratch_gib"] == pytest.approx((B * T * e + 2 * B * 4) * L / gib)
    assert t.loc["replay_ring", "scratch_gib"] == pytest.approx((P * 16 * e + (P + 1) * 4) * L / gib)
    # token_slots keeps T more pool rows per request: memory beyond a plain pool, not scratch
    assert t.loc["token_slots", "extra_gib"] == pytest.approx((B * T * S + (1 + B * 5) * 5 * 4 + (1 + B * 5 + 1) * 4)
                                                              * L / gib)
    assert t.loc["recompute", "memory_gib"] == pytest.approx((P * S + B * T * e + 2 * B * 4) * L / gib)
    assert (t["layers"] == 45).all() and (t["pool_slots"].drop("token_slots") == P).all()


def _target(tab, name, backend="triton", strategy=None):
    sel = tab[tab["target"].str.startswith(name) & (tab["backend"] == backend)]
    if strategy is not None:
        sel = sel[sel["strategy"] == strategy]
    assert len(sel) == 1, (name, sel)
    return sel.iloc[0]


def test_targets_met_and_not_met(led):
    tab = ledger.targets(led, ledger.Targets(), status="measured")
    floor = _target(tab, "full_cache commit")
    assert floor["measured"] == pytest.approx(1.2) and floor["met"] == "yes"     # 0.3 / 0.25 <= 1.2
    best = _target(tab, "best strategy's step")
    assert best["strategy"] == "recompute_fused" and best["measured"] == pytest.approx(0.35) and best["met"] == "yes"
    ahead = _target(tab, "best strategy ahead")
    assert ahead["met"] == "yes" and ahead["measured"] == pytest.approx(0.5)      # worst of 20/40, 50/100, 140/400
    assert _target(tab, "verify and commit", strategy="recompute")["measured"] == pytest.approx(78.0)
    assert floor["source"] == "measured · NVIDIA H200 · commit 0123456789"
    # the flagged strategy is never the best; flashinfer's full_cache has no other strategy left
    fi = _target(tab, "best strategy's step", backend="flashinfer")
    assert fi["met"] == "no data" and "replay_ring" in fi["detail"]

    slow = ledger.strategy_ledger(_frame([_row("recompute_fused", 256, 170.0, commit_us=200.0),
                                          _row("recompute_fused", 16, 45.0, verify_pct_of_peak_bw=60.0),
                                          _row("full_cache", 256, 400.0, commit_us=130.0, commit_floor_us=100.0)]))
    tab = ledger.targets(slow)
    assert _target(tab, "full_cache commit")["met"] == "no"                       # 1.3x
    best = _target(tab, "best strategy's step")
    assert best["met"] == "no" and best["measured"] == pytest.approx(170.0 / 400.0)
    ahead = _target(tab, "best strategy ahead")
    assert ahead["met"] == "no" and "behind at B=16" in ahead["detail"]
    # 60 % at B=16 does not count (below B=64); a NaN peak is no data, not a failure
    assert _target(tab, "verify and commit", strategy="recompute_fused")["met"] == "yes"
    nopeak = ledger.strategy_ledger(_frame()).assign(verify_pct_of_peak_bw=float("nan"),
                                                     commit_pct_of_peak_bw=float("nan"))
    assert set(ledger.targets(nopeak).query("target.str.startswith('verify')")["met"]) == {"no data"}
    low = ledger.strategy_ledger(_frame([_row("token_slots", 64, 80.0, commit_pct_of_peak_bw=70.0)]))
    row = _target(ledger.targets(low), "verify and commit", strategy="token_slots")
    assert row["met"] == "no" and row["measured"] == pytest.approx(70.0) and "commit at B=64" in row["detail"]


def _kernels(names, durations_ns, gap_ns=1000):
    return kernel_table(names, durations_ns, gap_ns=gap_ns)


def test_trace_tables_and_busy_target():
    step = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"]
    fast = _kernels(step * 3, [1000, 90_000, 1000, 20_000] * 3)
    slow = _kernels(step * 3, [1000, 9_000, 1000, 2_000] * 3)
    traces = {("triton", "full_cache"): fast, ("triton", "token_slots"): slow, ("flashinfer", "recompute"): None}
    ph = strategy_traces.trace_phases(traces)
    assert set(zip(ph["backend"], ph["strategy"])) == {("triton", "full_cache"), ("triton", "token_slots")}
    summ = strategy_traces.phase_summary(ph).set_index("strategy")
    assert summ.loc["full_cache", "verify_us"] == pytest.approx(90.0) and summ.loc["full_cache", "steps"] == 3
    busy = strategy_traces.trace_busy(traces).set_index("strategy")
    assert busy.loc["full_cache", "busy_pct_median"] == pytest.approx(100 * 112 / 116)
    tab = ledger.busy_targets(busy.reset_index()).set_index("strategy")
    assert tab.loc["full_cache", "met"] == "yes" and tab.loc["token_slots", "met"] == "no"
    assert strategy_traces.trace_paths("traces/h200", ["triton"], ["replay_ring"]) == \
        {("triton", "replay_ring"): "traces/h200/triton_c64_osl512_t4_replay_ring.sqlite"}
    assert strategy_traces.trace_phases({}).empty and strategy_traces.trace_busy({}).empty


def test_busy_uses_complete_steps_and_labels_eager_traces():
    step = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"]
    k = _kernels(step * 3, [1000, 90_000, 1000, 20_000] * 3)
    k.loc[4:, ["start_ns", "end_ns"]] += 50_000                    # a 50 µs host gap before step 1
    graph = k.assign(graph_node_id=range(len(k)))
    eager = k.assign(graph_node_id=None)
    busy = strategy_traces.trace_busy({("triton", "full_cache"): graph, ("triton", "recompute"): eager})
    busy = busy.set_index("strategy")
    r = busy.loc["full_cache"]
    assert r["steps"] == 3 and r["complete_steps"] == 2 and r["launch"] == "CUDA graph"
    # step 0: 112 µs of kernels in 116 + 50 µs; step 1: 116 µs; the last step has no window
    assert r["busy_pct_min"] == pytest.approx(100 * 112 / 166)
    assert r["busy_pct_median"] == pytest.approx((100 * 112 / 166 + 100 * 112 / 116) / 2)
    assert r["span_busy_pct_median"] == pytest.approx(100 * 112 / 115)
    tab = ledger.busy_targets(busy.reset_index()).set_index("strategy")
    assert busy.loc["recompute", "launch"] == "eager"
    assert tab.loc["recompute", "met"] == ledger.MET_NOT_COMPARABLE and "eager" in tab.loc["recompute", "detail"]
    assert tab.loc["full_cache", "met"] == "no"                     # 82 % median < 90 %


def _strategy_traces(fig):
    return [t for t in fig.data if str(t.name).split(" · ")[0] in STRATEGY_NAMES]


def test_figures_build_with_the_palette(led):
    for fig in (sp.step_time_figure(led), sp.strategy_bandwidth_figure(led)):
        lines = [t for t in _strategy_traces(fig) if t.line.color]
        assert lines and all(t.line.color == strategy_color(t.name.split(" · ")[0]) for t in lines)
        assert "measured" in fig.layout.meta["provenance"] and "NVIDIA H200" in fig.layout.meta["provenance"]
        assert "commit 0123456789" in fig.layout.meta["provenance"]
    flagged = [t for t in sp.step_time_figure(led).data if t.name == "check failed (correct = False)"]
    assert flagged and len(flagged[0].x) == 4                                     # shown, not hidden
    win = sp.winners_figure(ledger.winners(led), led)
    squares = [t for t in win.data if t.marker.symbol == "square"]
    assert {t.name for t in squares} <= set(STRATEGY_NAMES)
    assert all(t.marker.color == strategy_color(t.name) for t in squares)
    faster = [t for t in win.data if t.marker.symbol == "circle-open"]      # the flagged flashinfer rows
    assert len(faster) == 1 and len(faster[0].x) == len(BATCHES)
    scr = sp.scratch_figure(ledger.served_scratch())
    assert list(scr.data[0].marker.color) == [strategy_color(s) for s in STRATEGY_NAMES]
    assert scr.layout.meta["provenance"].startswith("projected")
    step = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"] * 2
    traces = {("triton", "full_cache"): _kernels(step, [1000, 9000, 1000, 2000] * 2)}
    ph = sp.phase_breakdown_figure(strategy_traces.trace_phases(traces))
    assert all(t.marker.color == sp.PHASE_COLORS[t.name] for t in ph.data)
    busy = sp.step_busy_figure(strategy_traces.trace_busy(traces))
    assert [t.marker.color for t in busy.data if t.type == "bar"] == [strategy_color("full_cache")]
    assert [t.name for t in busy.data if t.type == "scatter"] == ["kernels over the step's own span"]
    assert busy.layout.meta["provenance"].startswith("synthetic")                 # kernel tables say nothing


def test_figures_say_when_there_is_nothing_to_draw():
    empty = ledger.strategy_ledger(results.to_frame([]))
    for fig in (sp.step_time_figure(empty), sp.strategy_bandwidth_figure(empty),
                sp.winners_figure(ledger.winners(empty), empty),
                sp.phase_breakdown_figure(strategy_traces.trace_phases({})),
                sp.step_busy_figure(strategy_traces.trace_busy({}))):
        assert not fig.data and "no " in fig.layout.annotations[0].text
    with pytest.raises(ValueError, match="ledger"):
        sp.step_time_figure(pd.DataFrame({"x": [1]}))


def test_phase_kernels_lists_each_kernel_under_its_phase():
    from gdnlab.analysis import phases

    bk = "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<int>>(int)"
    step = ["phase_marker_verify", bk, "_strategy_recurrent", "_strategy_recurrent", "phase_marker_commit", bk]
    t = phases.phase_kernels(_kernels(step * 2, [1000, 2000, 5000, 30_000, 1000, 3000] * 2), "replay_ring")
    got = {(r.phase, r.kernel): (r.per_step, r.time_per_step_us) for r in t.itertuples()}
    assert got[("fold", "_strategy_recurrent")] == (1.0, 5.0) and got[("verify", "_strategy_recurrent")] == (1.0, 30.0)
    assert got[("fold", "vectorized_elementwise_kernel")] == (1.0, 2.0)           # prepares the fold launch
    assert got[("commit", "vectorized_elementwise_kernel")] == (1.0, 3.0)
    assert list(t["phase"].drop_duplicates()) == ["marker", "fold", "verify", "commit"]


def test_phase_summary_separates_bookkeeping_from_strategy_kernels():
    """Torch index ops around a strategy's kernels are counted per step apart from its own kernels,
    and the strategy kernels are compared with the same backend's full_cache."""
    full = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"]
    ring = ["phase_marker_verify", "index_elementwise_kernel", "vectorized_elementwise_kernel",
            "_strategy_recurrent", "phase_marker_commit", "vectorized_elementwise_kernel"]
    traces = {("triton", "full_cache"): _kernels(full * 2, [1000, 90_000, 1000, 30_000] * 2),
              ("triton", "replay_ring"): _kernels(ring * 2, [1000, 2000, 3000, 24_000, 1000, 5000] * 2)}
    summ = strategy_traces.phase_summary(strategy_traces.trace_phases(traces)).set_index("strategy")
    r = summ.loc["replay_ring"]
    assert r["bookkeeping_us"] == pytest.approx(10.0) and r["strategy_kernel_us"] == pytest.approx(24.0)
    assert r["bookkeeping_pct"] == pytest.approx(100 * 10 / 36)
    assert r["strategy_kernel_vs_full_cache"] == pytest.approx(24.0 / 120.0)
    assert summ.loc["full_cache", "bookkeeping_us"] == 0
    assert summ.loc["full_cache", "strategy_kernel_vs_full_cache"] == 1
