"""Sweep figures (gdnlab.plots.sweep) on the shipped H100 sweep: provenance from the rows, one colour per
backend, distinct styles per series, legends beside the plot, the timing method in the axis title."""
from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from gdnlab import results, seed
from gdnlab.plots import style
from gdnlab.plots import sweep as ps
from gdnlab.report import REPO_ROOT


@pytest.fixture(scope="module")
def rows():
    return results.load_sweep(REPO_ROOT / "traces/h100/sweep.parquet")


def _legend(fig) -> list:
    return [t for t in fig.data if t.showlegend is not False]


def test_figures_carry_provenance_from_the_rows(rows):
    figs = [ps.time_vs_batch_figure(rows), ps.bandwidth_figure(rows), ps.intermediate_cost_figure(rows)]
    for fig in figs:
        prov = fig.layout.meta["provenance"]
        assert prov.startswith("measured · NVIDIA H100 80GB HBM3 (sm90)") and "H=4 HV=16 K=128 V=128" in prov
        assert sum(a.name == "provenance" for a in fig.layout.annotations) == 1
        assert fig.layout.legend.x >= 1.0 and fig.layout.legend.xanchor == "left"   # beside, not over the axes
    assert figs[0].layout.xaxis.type == "log" and figs[0].layout.yaxis.type == "log"
    assert "rejected (pool-sized buffer)" in [t.name for t in figs[2].data]
    # rows that only name a GPU (no gdnlab version, no SM) are not "measured"
    fake = rows.drop(columns=["gdnlab"])
    assert ps.time_vs_batch_figure(fake).layout.meta["provenance"].startswith("synthetic · ")
    with pytest.raises(ValueError, match="ok"):
        ps.time_vs_batch_figure(rows.assign(status="oom"))


def test_bandwidth_figure_has_one_entry_per_backend_and_dtype(rows):
    fig = ps.bandwidth_figure(rows)
    entries = _legend(fig)
    names = [t.name for t in entries]
    assert len(names) == len(set(names)) == rows["backend"].nunique() * rows["state_dtype"].nunique()
    for t in entries:
        be, sd = t.name.split(" · ")
        assert t.line.color == style.backend_color(be) and t.line.dash == style.STATE_DTYPE_DASH[sd]
    assert len({(t.line.color, t.line.dash) for t in entries}) == len(entries)   # every line matches one entry
    assert "one call per CUDA-graph replay" in fig.layout.title.text            # one timing method, named


def test_pool_vs_batch_series_never_share_a_style(rows):
    fig = ps.intermediate_cost_figure(rows)
    styles = [(t.line.color, t.line.dash, t.marker.symbol) for t in _legend(fig) if t.mode == "lines+markers"]
    assert len(styles) >= 6 and len(styles) == len(set(styles))


def test_time_axis_names_the_timing_method(rows):
    ok = rows[rows["status"] == "ok"]
    amortised = ok.assign(timing_method="amortised", calls_per_sample=16)
    fig = ps.time_vs_batch_figure(amortised)
    assert fig.layout.yaxis.title.text == "kernel time (amortised over 16 calls in one graph) (µs)"
    eager = ps.time_vs_batch_figure(ok, timing="eager")
    assert eager.layout.yaxis.title.text == "kernel time (eager launches) (µs)"
    both = ps.time_vs_batch_figure(ok)
    assert both.layout.yaxis.title.text == "kernel time per call (µs)"
    expected = {f"{b} · {m}" for b in ("flashinfer", "triton") for m in ("graph", "eager")}
    assert {t.name for t in _legend(both)} == expected


def test_seed_overlay_is_labelled_reported(rows):
    fig = ps.time_vs_batch_figure(rows, modes=["verify T=4"], state_dtypes=["bfloat16"])
    fig = ps.seed_overlay_figure(fig, seed.tpot_vs_concurrency(fixed=False))
    assert sum(1 for a in fig.layout.annotations if a.name == "provenance") == 1
    assert "reported" in fig.layout.meta["provenance"] and "GB200" in fig.layout.meta["provenance"]
    seeds = [t for t in fig.data if "seed flashinfer" in (t.name or "")]
    assert seeds and seeds[0].line.color == style.backend_color("flashinfer")
    assert ps.seed_overlay_figure(fig, None) is fig
