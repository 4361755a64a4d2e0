"""Plotly trace views: figures with data, windowing at scale, provenance footnotes, one colour per kernel class."""
from __future__ import annotations

import pytest

pytest.importorskip("plotly")
from gdnlab import traces
from gdnlab.plots import provenance, style
from gdnlab.plots import traces as tplots
from gdnlab.traces import synthetic as tg


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    return traces.load(tg.write_nsys_sqlite(tmp_path_factory.mktemp("pl") / "hm.sqlite", tg.handmade()))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    syn = tg.decode_loop(200, layers=25, kernels_per_layer=4)            # 20,000 kernels
    return traces.load(tg.write_nsys_sqlite(tmp_path_factory.mktemp("pl") / "big.sqlite", syn))


def _provenance_ok(fig, trace_name: str, status: str = "measured") -> None:
    text = fig.layout.meta["provenance"]
    assert status in text and trace_name in text and "H100" in text and "sm90" in text


def _segments(fig) -> int:
    return sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl")


def _mark_as_gdnlab_capture(path):
    """What nsys records when gdnlab's workload is captured: the profiled command names gdnlab (and
    the generator's synthetic marker is gone)."""
    import sqlite3

    from gdnlab.traces.nsys import SYNTHETIC_TABLE

    with sqlite3.connect(path) as db:
        db.execute(f'DROP TABLE IF EXISTS "{SYNTHETIC_TABLE}"')
        db.executemany("INSERT INTO META_DATA_CAPTURE VALUES (?, ?)",
                       [("PROCESS_0:COMMAND", "python3"), ("PROCESS_0:ARGUMENT_0", "-m"),
                        ("PROCESS_0:ARGUMENT_1", "gdnlab.workload")])
    return path


def test_timeline_has_ranges_and_kernels(hm):
    fig = tplots.timeline_figure(hm)
    kinds = {type(d).__name__ for d in fig.data}
    assert kinds == {"Bar", "Scattergl"}
    n_segments = sum(len([x for x in d.x if x == x]) // 2 for d in fig.data if type(d).__name__ == "Scattergl")
    assert n_segments == len(hm.kernels)
    bars = [d for d in fig.data if type(d).__name__ == "Bar"][0]
    assert len(bars.x) == len(hm.nvtx)
    rows = list(fig.layout.yaxis.ticktext)
    assert {"NVTX 1 · d0", "NVTX 1 · d2", "NVTX 2 · d0", "GPU0 · stream 7", "GPU0 · stream 9"} <= set(rows)
    # each segment sits on the row of its stream: the y value indexes the row names
    gdn = next(d for d in fig.data if d.name == "gdn")
    assert {rows[int(y)] for y in gdn.y if y == y} == {"GPU0 · stream 7"}
    assert "first" not in fig.layout.title.text
    # a generated trace (tracegen) is not a gdnlab capture: it names an H100 but says synthetic
    _provenance_ok(fig, "hm.sqlite", status="synthetic")
    assert not fig.layout.meta["provenance"].startswith("measured")


def test_timeline_windows_large_traces(big):
    """Large traces are windowed (whole steps up to max_kernels); how fast it draws is measured by
    benchmarks/bench_trace_load.py, not asserted here."""
    _ = big.gpu_ranges
    fig = tplots.timeline_figure(big, max_kernels=4_950)
    drawn = sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl")
    # the window ends with the last whole step within 4,950 kernels: 49 steps of 100 kernels
    assert drawn == 4_900
    assert "first 49 steps: 4,900 of 20,000 kernels" in fig.layout.title.text


def test_timeline_without_steps_windows_by_kernel_count(tmp_path):
    b = tg.Builder()
    for i in range(50):
        b.launch("k", i * 1_000, i * 1_000 + 500, 300)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "nosteps.sqlite", b.build()))
    fig = tplots.timeline_figure(t, max_kernels=20)
    assert sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl") == 20
    assert "first 20 of 50 kernels" in fig.layout.title.text


def test_timeline_explicit_window(hm):
    fig = tplots.timeline_figure(hm, window_ns=(0, 10_000))          # 10 µs from the first kernel
    drawn = sum(len(d.x) // 3 for d in fig.data if type(d).__name__ == "Scattergl")
    assert drawn == 3                                           # gdn_decode, foo, foo start within 10 µs
    assert "window" in fig.layout.title.text


def test_range_breakdown_figure(hm):
    df = traces.range_breakdown(hm)
    fig = tplots.range_breakdown_figure(df)
    assert len(fig.data) == 2 and len(fig.data[0].y) == 5
    _provenance_ok(fig, "hm.sqlite", status="synthetic")
    bare = df.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="provenance"):
        tplots.range_breakdown_figure(bare)


def test_side_by_side(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json.gz", tg.handmade()))
    fig = tplots.side_by_side_figure(hm, other, ("flashinfer", "triton"))
    assert len(fig.data) >= 4
    assert {d.xaxis for d in fig.data} == {"x", "x2"}
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"   # shared time axis
    _provenance_ok(fig, "hm.sqlite", status="synthetic")
    assert "tr.json.gz" in fig.layout.meta["provenance"]


def test_compare_figure(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json", tg.handmade()))
    fig = tplots.compare_figure(traces.compare(hm, other))
    assert len(fig.data) == 2 and len(fig.data[0].x) > 0
    assert "synthetic" in fig.layout.meta["provenance"] and "measured" not in fig.layout.meta["provenance"]
    # units in the axis title, not "mean_ns (µs)"
    assert fig.layout.xaxis.title.text == "mean kernel time (µs)"


def _class_colours(fig) -> dict[tuple[str, str], str]:
    """(panel y axis, kernel class) -> colour of every kernel trace."""
    return {(d.yaxis or "y", d.name): d.line.color for d in fig.data if type(d).__name__ == "Scattergl"}


def test_side_by_side_one_colour_and_one_legend_entry_per_class(tmp_path):
    """The same kernel class has the same colour in both panels and in a single timeline, whatever its
    rank by time within each trace; the legend lists each class once and toggles it in both panels."""
    a, b = tg.Builder(), tg.Builder()
    for i in range(6):                       # trace a: the GDN kernel dominates
        a.launch("gdn_verify_kernel", i * 10_000, i * 10_000 + 500, 4_000)
        a.launch("index_elementwise_kernel", i * 10_000 + 600, i * 10_000 + 5_000, 500)
    for i in range(6):                       # trace b: the other way round (rank-based colours would swap)
        b.launch("gdn_verify_kernel", i * 10_000, i * 10_000 + 500, 500)
        b.launch("index_elementwise_kernel", i * 10_000 + 600, i * 10_000 + 1_200, 4_000)
    ta = traces.load(tg.write_nsys_sqlite(tmp_path / "a.sqlite", a.build()))
    tb = traces.load(tg.write_nsys_sqlite(tmp_path / "b.sqlite", b.build()))
    fig = tplots.side_by_side_figure(ta, tb, ("flashinfer", "triton"))
    colours: dict[str, str] = {}
    for (_, cls), colour in _class_colours(fig).items():
        assert colours.setdefault(cls, colour) == colour, f"{cls} has two colours"
    assert {"gdn", "index_elementwise_kernel"} <= set(colours)
    assert colours["gdn"] != colours["index_elementwise_kernel"]
    assert colours == {c: style.kernel_class_color(c) for c in colours}
    shown = [d.name for d in fig.data if d.showlegend is not False]
    assert len(shown) == len(set(shown)), f"legend lists a class twice: {shown}"
    assert all(d.legendgroup == d.name for d in fig.data if type(d).__name__ == "Scattergl")
    for t in (ta, tb):                       # a single timeline uses the same colours
        single = tplots.timeline_figure(t)
        assert {cls: c for (_, cls), c in _class_colours(single).items()} == \
            {cls: colours[cls] for (_, cls) in _class_colours(single)}


def test_legend_is_beside_the_plot_not_over_axes_or_footnote(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json", tg.handmade()))
    for fig in (tplots.timeline_figure(hm), tplots.side_by_side_figure(hm, other),
                tplots.range_breakdown_figure(traces.range_breakdown(hm)),
                tplots.compare_figure(traces.compare(hm, other))):
        leg = fig.layout.legend
        assert leg.orientation == "v" and leg.x >= 1.0 and leg.xanchor == "left", fig.layout.title.text


def test_gdnlab_capture_on_a_gpu_is_measured(tmp_path):
    path = _mark_as_gdnlab_capture(tg.write_nsys_sqlite(tmp_path / "cap.sqlite", tg.handmade()))
    t = traces.load(path)
    assert provenance.trace_status(t) == "measured"
    _provenance_ok(tplots.timeline_figure(t), "cap.sqlite", status="measured")
    # the same capture claiming a GPU whose compute capability is unknown stays synthetic
    syn = tg.handmade()
    syn.gpus = []
    assert provenance.trace_status(traces.load(tg.write_kineto_json(tmp_path / "k.json", syn))) == "synthetic"


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_max_kernels_must_be_a_positive_integer(hm, bad):
    with pytest.raises(ValueError, match="max_kernels must be an integer >= 1"):
        tplots.timeline_figure(hm, max_kernels=bad)


def test_compare_figure_title_says_per_range_once(hm, tmp_path):
    other = traces.load(tg.write_kineto_json(tmp_path / "tr.json", tg.handmade()))
    fig = tplots.compare_figure(traces.compare(hm, other), kind="range", metric="gpu_busy_mean_ns")
    title = fig.layout.title.text
    assert title.startswith("mean GPU busy time per range: ") and "per range per range" not in title
    colours = [d.marker.color for d in fig.data]
    assert len(set(colours)) == len(colours)                  # one colour per trace label


def test_phase_markers_and_unknown_classes_get_their_own_colours(tmp_path):
    """The two marker kernels of a step (verify, commit) and any kernel classes the style does not list
    never share a colour in a timeline, and the legend fits the figure (no scrolling)."""
    b = tg.Builder()
    names = ["gdn_verify_kernel", "phase_marker_verify", "phase_marker_commit", "my_kernel_a", "my_kernel_b",
             "my_kernel_c", "my_kernel_d"]
    for i in range(4):
        for j, n in enumerate(names):
            b.launch(n, i * 10_000 + j * 1_000, i * 10_000 + j * 1_000 + 100, 500)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "m.sqlite", b.build()))
    fig = tplots.timeline_figure(t)
    colours = {d.name: d.line.color for d in fig.data if type(d).__name__ == "Scattergl"}
    assert {"phase_marker_verify", "phase_marker_commit"} <= set(colours)
    assert len(set(colours.values())) == len(colours), colours
    entries = sum(1 for d in fig.data if d.showlegend is not False)
    assert fig.layout.height >= 240 + 24 * entries
