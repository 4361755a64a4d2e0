"""Plotly trace views: figures with data, windowing at scale, provenance footnotes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("plotly")
sys.path.insert(0, str(Path(__file__).parent))
import tracegen as tg

from gdnlab import traces
from gdnlab.plots import traces as tplots


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    return traces.load(tg.write_nsys_sqlite(tmp_path_factory.mktemp("pl") / "hm.sqlite", tg.handmade()))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    syn = tg.decode_loop(200, layers=25, kernels_per_layer=4)            # 20,000 kernels
    return traces.load(tg.write_nsys_sqlite(tmp_path_factory.mktemp("pl") / "big.sqlite", syn))


def _provenance_ok(fig, trace_name: str) -> None:
    text = fig.to_json()
    assert "measured" in text and trace_name in text and "H100" in text and "sm90" in text


def test_timeline_has_ranges_and_kernels(hm):
    fig = tplots.timeline(hm)
    kinds = {type(d).__name__ for d in fig.data}
    assert kinds == {"Bar", "Scattergl"}
    n_segments = sum(len([x for x in d.x if x == x]) // 2 for d in fig.data if type(d).__name__ == "Scattergl")
    assert n_segments == len(hm.kernels)
    bars = [d for d in fig.data if type(d).__name__ == "Bar"][0]
    assert len(bars.x) == len(hm.nvtx)
    rows = set(fig.layout.yaxis.categoryarray)
    assert {"NVTX 1 · d0", "NVTX 1 · d2", "NVTX 2 · d0", "GPU0 · stream 7", "GPU0 · stream 9"} <= rows
    assert "gdn" in {d.name for d in fig.data}
    assert "first" not in fig.layout.title.text
    _provenance_ok(fig, "hm.sqlite")


def test_timeline_windows_large_traces(big):
    """Large traces are windowed (whole steps up to max_kernels); how fast it draws is measured by
    benchmarks/bench_trace_load.py, not asserted here."""
    _ = big.gpu_ranges
    fig = tplots.timeline(big, max_kernels=4_950)
    drawn = sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl")
    # the window ends with the last whole step within 4,950 kernels: 49 steps of 100 kernels
    assert drawn == 4_900
    assert "first 49 steps: 4,900 of 20,000 kernels" in fig.layout.title.text


def test_timeline_without_steps_windows_by_kernel_count(tmp_path):
    b = tg.Builder()
    for i in range(50):
        b.launch("k", i * 1_000, i * 1_000 + 500, 300)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "nosteps.sqlite", b.build()))
    fig = tplots.timeline(t, max_kernels=20)
    assert sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl") == 20
    assert "first 20 of 50 kernels" in fig.layout.title.text


def test_timeline_explicit_window(hm):
    fig = tplots.timeline(hm, window_ns=(0, 10_000))          # 10 µs from the first kernel
    drawn = sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl")
    assert drawn == 3                                           # gdn_decode, foo, foo start within 10 µs
    assert "window" in fig.layout.title.text


def test_range_breakdown_figure(hm):
    df = traces.range_breakdown(hm)
    fig = tplots.range_breakdown_figure(df)
    assert len(fig.data) == 2 and len(fig.data[0].y) == 5
    _provenance_ok(fig, "hm.sqlite")
    bare = df.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="provenance"):
        tplots.range_breakdown_figure(bare)


def test_side_by_side(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json.gz", tg.handmade()))
    fig = tplots.side_by_side(hm, other, ("flashinfer", "triton"))
    assert len(fig.data) >= 4
    assert {d.xaxis for d in fig.data} == {"x", "x2"}
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"   # shared time axis
    _provenance_ok(fig, "hm.sqlite")
    assert "tr.json.gz" in fig.to_json()


def test_compare_figure(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json", tg.handmade()))
    fig = tplots.compare_figure(traces.compare(hm, other))
    assert len(fig.data) == 2 and len(fig.data[0].x) > 0
    assert "measured" in fig.to_json()
