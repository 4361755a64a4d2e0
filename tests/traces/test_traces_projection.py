"""NVTX-to-GPU projection on hand-made cases, and the numpy helpers against brute force."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdnlab import traces
from gdnlab.traces import synthetic as tg
from gdnlab.traces.projection import (
    link_launches,
    merged_intervals,
    nesting_depth,
    project_ranges,
    slice_reduce,
    union_ns,
)


@pytest.fixture(scope="module", params=["2025.3", "2021", "minimal", "kineto"])
def handmade(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("proj")
    if request.param == "kineto":
        return traces.load(tg.write_kineto_json(d / "hm.json", tg.handmade()))
    return traces.load(tg.write_nsys_sqlite(d / f"hm_{request.param}.sqlite", tg.handmade(), request.param))


def _origin(t) -> int:
    """Kineto timestamps are shifted (relative to the trace's base): offset of the hand-made clock."""
    k = t.kernels
    return int(k["start_ns"].min()) - 10_000


def test_handmade_projection(handmade):
    g = handmade.gpu_ranges.set_index("text")
    off = _origin(handmade)
    for text, (count, ksum, busy, gs, ge, depth) in tg.HANDMADE_EXPECTED.items():
        row = g.loc[text]
        assert row["kernel_count"] == count, text
        assert row["kernel_sum_ns"] == ksum, text
        assert row["gpu_busy_ns"] == busy, text
        assert row["depth"] == depth, text
        if gs is None:
            assert pd.isna(row["gpu_start_ns"]) and pd.isna(row["gpu_span_ns"])
        else:
            assert (row["gpu_start_ns"] - off, row["gpu_end_ns"] - off) == (gs, ge), text
            assert row["gpu_span_ns"] == ge - gs


def test_overlapping_streams_are_not_double_counted(handmade):
    layer = handmade.gpu_ranges.set_index("text").loc["layer"]
    assert layer["kernel_sum_ns"] > layer["gpu_busy_ns"]       # 15 µs of kernels, 12 µs busy


def test_graph_kernels_belong_to_the_range_of_the_launch(handmade):
    k = handmade.kernels
    g = handmade.gpu_ranges.set_index("text")
    graph_kernels = k[k["short_name"].isin(["k1", "k2", "gdn_k3"])]
    assert graph_kernels["correlation_id"].nunique() == 1
    assert g.loc["graph", "kernel_count"] == 3
    # the graph kernels start after the graph range ended on the CPU: the launch time decides
    assert (graph_kernels["start_ns"] > g.loc["graph", "start_ns"]).all()


def test_kernel_outside_ranges_and_orphans(handmade):
    total_in_top_level = handmade.gpu_ranges.query("depth == 0")["kernel_count"].sum()
    assert total_in_top_level == 7                       # 6 in step + 1 in other
    assert len(handmade.kernels) == 9                    # + outside_kernel + lost


def test_ranges_on_two_threads_do_not_mix(handmade):
    g = handmade.gpu_ranges.set_index("text")
    assert g.loc["other", "tid"] == 2 and g.loc["other", "kernel_count"] == 1
    assert g.loc["step", "tid"] == 1


# ------------------------------------------------------------------ helpers vs brute force

def _brute(rt, rs, re_, kt, lt, ks, ke):
    out = []
    for t, s, e in zip(rt, rs, re_):
        m = (kt == t) & (lt >= s) & (lt <= e)
        if not m.any():
            out.append((0, 0, -1, -1, 0))
            continue
        out.append((int(m.sum()), int((ke[m] - ks[m]).sum()), int(ks[m].min()), int(ke[m].max()),
                    union_ns(ks[m], ke[m])))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exact", [False, True])
def test_project_ranges_random_against_brute_force(seed, exact):
    rng = np.random.default_rng(seed)
    n_k, n_r = 300, 60
    kt = rng.integers(-1, 3, n_k)                                   # -1: no launch
    lt = rng.integers(0, 10_000, n_k)
    ks = lt + rng.integers(0, 2_000, n_k)
    ke = ks + rng.integers(0, 500, n_k) * (seed % 2 + 1)            # odd seeds: more overlap
    rt = rng.integers(0, 3, n_r)
    rs = rng.integers(0, 9_000, n_r)
    re_ = rs + rng.integers(0, 3_000, n_r)
    got = project_ranges(rt, rs, re_, kt, lt, ks, ke, exact=exact)
    exp = _brute(rt, rs, re_, kt, lt, ks, ke)
    cols = ("kernel_count", "kernel_sum_ns", "gpu_start_ns", "gpu_end_ns", "gpu_busy_ns")
    for i, row in enumerate(exp):
        assert tuple(int(got[c][i]) for c in cols) == row, i


def test_fast_path_equals_exact_path_on_sequential_kernels():
    syn = tg.decode_loop(30, layers=3, kernels_per_layer=4)
    k = syn.kernels
    r = syn.ranges
    lt = syn.runtime.set_index("corr").loc[k["corr"], "start"].to_numpy()
    args = (np.zeros(len(r), np.int64), r["start"].to_numpy(), r["end"].to_numpy(),
            np.zeros(len(k), np.int64), lt, k["start"].to_numpy(), k["end"].to_numpy())
    fast, exact = project_ranges(*args), project_ranges(*args, exact=True)
    for c in fast:
        assert (fast[c] == exact[c]).all(), c


def test_slice_reduce_nested_and_empty():
    v = np.array([5, 3, 8, 1, 9], np.int64)
    lo = np.array([0, 1, 2, 4, 5, 3])
    hi = np.array([5, 3, 2, 5, 5, 4])
    assert list(slice_reduce(np.minimum, v, lo, hi, 99)) == [1, 3, 99, 9, 99, 1]
    assert list(slice_reduce(np.maximum, v, lo, hi, -1)) == [9, 8, -1, 9, -1, 1]


def test_merged_intervals_and_union():
    s = np.array([10, 0, 5, 30, 31])
    e = np.array([20, 6, 8, 31, 40])
    ms, me = merged_intervals(s, e)
    assert list(zip(ms, me)) == [(0, 8), (10, 20), (30, 40)]
    assert union_ns(s, e) == 28


def test_link_launches_uses_pid_and_correlation():
    k_pid = np.array([1, 2, 1, 1, 3])
    k_corr = np.array([10, 10, 11, 99, 10])
    a_pid = np.array([2, 1, 1, 1])
    a_corr = np.array([10, 10, 11, 11])                   # duplicate (1, 11): the first row wins
    assert list(link_launches(k_pid, k_corr, a_pid, a_corr)) == [1, 0, 2, -1, -1]
    # unknown correlation ids (-1, e.g. a Kineto kernel without args.correlation) never link
    assert list(link_launches(np.array([-1, -1]), np.array([-1, 4]), np.array([-1, -1]),
                              np.array([-1, 4]))) == [-1, 1]


def test_nesting_depth():
    thread = np.array([0, 0, 0, 0, 1, 0])
    start = np.array([0, 10, 20, 100, 5, 10])
    end = np.array([200, 50, 30, 150, 6, 50])
    # range 5 duplicates range 1 (same interval): opened after it, so nested inside it
    assert list(nesting_depth(thread, start, end)) == [0, 1, 3, 1, 0, 2]
