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


def test_rejected_points_draw_no_ratio(rows):
    """A call the backend rejected has no time: no trace has a point at its B, a cross on the B axis
    (y in "domain" units, not a ratio) marks it, and one legend key names them."""
    import math

    fig = ps.intermediate_cost_figure(rows)
    rejected = rows[(rows["mode"] == "verify") & rows["status"].astype(str).str.startswith("rejected")]
    assert len(rejected), "the shipped H100 sweep has FlashInfer's rejected bf16 pool-scoped calls"
    marks = [a for a in fig.layout.annotations if a.name == "rejected"]
    assert marks and all(str(a.yref).endswith("domain") and a.y == 0 for a in marks)
    xs = {round(10 ** a.x) for a in marks}                        # log axis: annotation x is log10(B)
    assert xs == set(rejected.loc[rejected["state_dtype"] == "bfloat16", "batch"].astype(int))
    assert any("rejected" in (t.name or "") for t in _legend(fig))
    for t in fig.data:     # no ratio drawn for a (backend, T) at a rejected B in the bf16 panel (x axis 1)
        if t.xaxis in ("x", None) and t.x is not None and t.y is not None and " · T=" in (t.name or ""):
            be, T = t.name.split(" · T=")
            bad = rejected[(rejected["backend"] == be) & (rejected["draft_tokens"] == int(T))
                           & (rejected["state_dtype"] == "bfloat16")]["batch"]
            ok_rows = rows[(rows["status"] == "ok") & (rows["backend"] == be) & (rows["draft_tokens"] == int(T))
                           & (rows["buffer_scope"] == "pool") & (rows["state_dtype"] == "bfloat16")]["batch"]
            drawn = {int(x) for x, y in zip(t.x, t.y) if y is not None and math.isfinite(y)}
            assert drawn <= set(ok_rows.astype(int)) and not (drawn & (set(bad.astype(int)) - set(ok_rows))), t.name


def test_batch_axes_are_labelled_at_the_measured_batches_only(rows):
    """No 2-and-5 minor labels on a log B axis: the tick labels are measured B (all of them where the
    panel is wide, the first, the last and evenly spaced ones in a row of four narrow panels)."""
    measured = sorted(int(b) for b in rows["batch"].unique())
    for fig, every in ((ps.intermediate_cost_figure(rows), True), (ps.time_vs_batch_figure(rows), False),
                       (ps.bandwidth_figure(rows), False)):
        axes = [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
        for ax in axes:
            ticks = [int(v) for v in ax.tickvals]
            assert ax.type == "log" and ax.tickmode == "array" and list(ax.ticktext) == [str(b) for b in ticks]
            assert set(ticks) <= set(measured) and ticks[0] == measured[0] and ticks[-1] == measured[-1]
            assert ticks == measured if every else 4 <= len(ticks) <= 5
