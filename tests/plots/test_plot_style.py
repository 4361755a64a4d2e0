"""gdnlab.plots.style: log-axis ticks at the measured values, colours from the registries (distinct per
strategy, backend, phase and marker kernel), and the footnote's commit label read from data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdnlab import backends
from gdnlab.plots import style
from gdnlab.provenance import is_dirty, label
from gdnlab.strategies.registry import STRATEGY_NAMES, strategy_class


def test_log_ticks_are_the_measured_values_only():
    vals, text = style.log_ticks([256, 1, 4, 16, 64, 128, 4.0, None, float("nan"), 0, -3])
    assert vals == [1, 4, 16, 64, 128, 256] and text == ["1", "4", "16", "64", "128", "256"]
    many, labels = style.log_ticks(range(1, 1025), max_labels=6)
    assert len(many) <= 6 and many[0] == 1 and many[-1] == 1024 and len(set(labels)) == len(labels)
    assert style.log_ticks([]) == ([], [])


def test_decade_ticks_label_powers_of_ten_without_2_and_5_repeats():
    vals, text = style.decade_ticks(3.0, 4000.0)
    assert vals == [10.0, 100.0, 1000.0] and text == ["10", "100", "1,000"]
    vals, text = style.decade_ticks(1.2, 9.0)          # within one decade: 1-2-5 steps, each once
    assert text == ["2", "5"] and len(set(text)) == len(text)
    vals, text = style.decade_ticks(0.004, 0.3)
    assert text == ["0.01", "0.1"]
    assert style.decade_ticks(0, 10) == ([], [])


def test_tick_text_never_uses_scientific_notation():
    assert [style.tick_text(v) for v in (1, 16, 1000, 1e6, 0.5, 0.02, 2.5, 0.001)] == \
        ["1", "16", "1,000", "1,000,000", "0.5", "0.02", "2.5", "0.001"]


def test_measured_log_axis_sets_array_ticks_on_the_selected_axes():
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2)
    style.measured_log_axis(fig, pd.Series([1, 4, 16, 256]), col=2)
    assert fig.layout.xaxis2.type == "log" and list(fig.layout.xaxis2.tickvals) == [1, 4, 16, 256]
    assert fig.layout.xaxis.type is None                     # the other panel untouched
    style.decade_log_axis(fig, np.array([2.0, 30.0, 700.0]), row=1, col=1)
    assert list(fig.layout.yaxis.ticktext) == ["10", "100"] and fig.layout.yaxis.type == "log"


def test_strategy_and_backend_colours_come_from_the_registries_and_differ():
    colours = {s: style.strategy_color(s) for s in STRATEGY_NAMES}
    assert colours == {s: strategy_class(s).color for s in STRATEGY_NAMES}
    assert len(set(colours.values())) == len(colours)
    bcol = {b: style.backend_color(b) for b in backends.names()}
    assert len(set(bcol.values())) == len(bcol) and bcol["flashinfer"] == backends.backend_color("flashinfer")
    assert style.option_color("decode") == style.DECODE_COLOR not in colours.values()
    dashes = {b: style.backend_dash(b) for b in backends.names()}
    assert len(set(dashes.values())) == len(dashes)                # a line style per backend, none alike
    assert (dashes["triton"], dashes["flashinfer"]) == ("solid", "dash")
    # a name no registry knows gets a colour no registered strategy or backend has
    assert style.strategy_color("not_a_strategy") not in colours.values()
    assert style.backend_color("not_a_backend") not in bcol.values()


def test_phase_and_marker_kernel_colours_are_distinct():
    phases = [style.phase_color(p) for p in ("fold", "verify", "commit", "marker", "other")]
    assert len(set(phases)) == len(phases)
    markers = [style.kernel_class_color(f"phase_marker_{p}") for p in ("fold", "verify", "commit")]
    assert len(set(markers)) == 3 and not set(markers) & {style.kernel_class_color(c) for c in ("gdn", "commit")}
    classes = ["gdn", "commit", "phase_marker_verify", "phase_marker_commit", "elementwise_kernel",
               "vectorized_elementwise_kernel", "some_unknown_kernel", "another_unknown_kernel"]
    cmap = style.class_colors(classes)
    assert len(set(cmap.values())) == len(classes)
    assert all(cmap[c] == style.kernel_class_color(c) for c in classes[:6])


def test_distinct_colors_moves_only_names_that_collide():
    same = lambda n: "#123456"
    out = style.distinct_colors(["a", "b", "c"], same)
    assert out["a"] == "#123456" and len(set(out.values())) == 3
    fixed = style.distinct_colors(STRATEGY_NAMES, style.strategy_color)
    assert fixed == {s: style.strategy_color(s) for s in STRATEGY_NAMES}


@pytest.mark.parametrize("value", [None, False, "False", "false", 0, "0", "", np.nan, np.False_, pd.NA, "no"], ids=repr)
def test_a_clean_commit_is_not_labelled_dirty(value):
    assert not is_dirty(value)
    text = label({"git_commit": "475ad1139d0a", "git_dirty": value}, "measured")
    assert text == "measured · commit 475ad1139d" and "(dirty)" not in text


@pytest.mark.parametrize("value", [True, "True", "true", 1, "1", np.True_], ids=repr)
def test_a_dirty_commit_is_labelled_dirty(value):
    assert label({"git_commit": "475ad1139d0a", "git_dirty": value}, "measured").endswith("(dirty)")
