"""The plan figures (gdnlab.plots.plan): who wins per batch with its margin (a tie where TPOT ranges
overlap), every option relative to the best full_cache, colours and line styles from the registries,
and tables with extra columns or several T drawn all the same."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest

pytest.importorskip("plotly")

from gdnlab.plots import model as mp
from gdnlab.plots import plan as pp
from gdnlab.plots import style


def _candidates(ranges: bool = False, Ts=(4,)) -> pd.DataFrame:
    """A hand-made table in plan_candidates' shape: decode plus two strategies on two backends."""
    rows = []
    tpot = {("full_cache", "triton"): 10.0, ("full_cache", "flashinfer"): 10.5, ("recompute", "triton"): 9.0,
            ("recompute", "flashinfer"): 9.5, ("replay_ring", "flashinfer"): 11.0}
    for B, (s, be), sd, T in itertools.product((1, 16, 256), tpot, ("bfloat16", "float32"), Ts):
        t = tpot[(s, be)] * (1 + B / 512) * (1.0 if sd == "bfloat16" else 1.2) * (1 + 0.01 * (T - 4))
        rows.append({"batch": B, "strategy": s, "draft_tokens": T, "state_dtype": sd, "backend": be, "tpot_ms": t,
                     "extra_column": "ignored", "provenance": "projected · hand-made rows"})
    for B, be, sd in itertools.product((1, 16, 256), ("triton", "flashinfer"), ("bfloat16", "float32")):
        rows.append({"batch": B, "strategy": "decode", "draft_tokens": 1, "state_dtype": sd, "backend": be,
                     "tpot_ms": 20.0 * (1 + B / 512), "provenance": "projected · hand-made rows"})
    df = pd.DataFrame(rows)
    if ranges:
        df["tpot_lo_ms"], df["tpot_hi_ms"] = df["tpot_ms"] * 0.97, df["tpot_ms"] * 1.03
    return df


def test_winners_margin_and_ties_come_from_the_table():
    win = pp.plan_winners(_candidates())
    assert list(win["batch"]) == [1, 16, 256] and set(win["strategy"]) == {"recompute"}
    assert win["tie"].isna().all()                      # no ranges: ties are not judged
    first = win.iloc[0]
    assert first["winner"] == "recompute T=4 · bfloat16 · triton"
    assert first["runner_up"] == "recompute T=4 · bfloat16 · flashinfer"
    assert first["margin_pct"] == pytest.approx((9.5 / 9.0 - 1) * 100)
    tied = pp.plan_winners(_candidates(ranges=True))    # 9.0±3 % and 9.5±3 % overlap
    assert tied["tie"].all()
    unfit = _candidates().assign(fits=lambda d: d["backend"] != "triton")
    assert (pp.plan_winners(unfit)["winner"].str.endswith("flashinfer")).all()


def test_plan_figure_colours_lines_by_strategy_and_dashes_by_backend():
    fig = mp.plan_figure(_candidates())
    lines = [t for t in fig.data if t.mode and "lines" in t.mode and t.x is not None and t.x[0] is not None]
    assert lines and not any(t.name.startswith("decode") for t in lines)     # decode: a note, not a line
    for t in lines:
        s, be = t.name.split(" · ")
        assert t.line.color == style.strategy_color(s) and t.line.dash == style.backend_dash(be)
    # ratios to the best full_cache at the same batch (triton bf16 full_cache = 1.0)
    fc = [t for t in lines if t.name == "full_cache · triton" and t.xaxis == "x2"][0]
    assert list(fc.y) == pytest.approx([1.0, 1.0, 1.0])
    rc = [t for t in lines if t.name == "recompute · triton" and t.xaxis == "x2"][0]
    assert list(rc.y) == pytest.approx([0.9, 0.9, 0.9])
    squares = [t for t in fig.data if t.marker.symbol == "square"]
    assert squares and all(t.marker.color == style.strategy_color(t.name) for t in squares)
    assert any("+5.6 %" in (x or "") for t in squares for x in (t.text or ()))
    notes = [a.text for a in fig.layout.annotations if "plain decode" in (a.text or "")]
    assert len(notes) == 2 and "2.00–2.00×" in notes[0]
    keys = [t for t in fig.data if t.showlegend is not False]
    assert {t.name for t in keys} == {"full_cache", "recompute", "replay_ring", "backend flashinfer",
                                      "backend triton"}
    assert fig.layout.legend.x >= 1.0 and fig.layout.meta["provenance"].startswith("projected")
    assert [int(v) for v in fig.layout.xaxis2.tickvals] == [1, 16, 256]


def test_plan_figure_marks_ties_and_labels_several_T():
    fig = mp.plan_figure(_candidates(ranges=True, Ts=(2, 4, 8)))
    squares = [t for t in fig.data if t.marker.symbol == "square" and t.y[0] == "fastest"]
    assert all(x == "tie" for t in squares for x in t.text)
    lines = [t for t in fig.data if t.mode == "lines+markers+text"]
    assert lines and all(str(x).startswith("T=") for t in lines for x in t.text)
    assert all(t.error_y.array is not None for t in lines)        # the TPOT range as error bars


def test_speedup_figure_has_a_panel_per_batch_and_registry_colours():
    rows = [{"strategy": s, "draft_tokens": 4, "batch": B, "accept_len": a, "speedup": a / 1.5 * (1 + 0.01 * i),
             "backend": "triton"} for i, s in enumerate(("full_cache", "token_slots", "recompute", "recompute_fused",
                                                          "replay_ring")) for B in (1, 64) for a in (1.0, 2.0, 3.0)]
    fig = mp.speedup_vs_accept_figure(pd.DataFrame(rows))
    drawn = [t for t in fig.data if t.x is not None and t.x[0] is not None]
    assert {t.xaxis for t in drawn} == {"x", "x2"}
    for t in drawn:
        s = t.name.split(" ")[0]
        assert t.line.color == style.strategy_color(s)
    panel = [t for t in drawn if t.xaxis == "x"]
    assert len({t.line.color for t in panel}) == len(panel) == 5    # each strategy its own colour per panel
    assert fig.layout.meta["provenance"].startswith("projected") and "reported (seed" in fig.layout.meta["provenance"]


def test_tokens_per_step_figure_is_projected():
    t = pd.DataFrame([{"draft_tokens": T, "rate": r, "accept_len": 1 + r * (T - 1)} for T in (2, 4) for r in (0, 1)])
    fig = mp.tokens_per_step_figure(t)
    assert fig.layout.meta["provenance"].split(" · ")[0] == "projected"
    assert [t.line.color for t in fig.data] == [style.draft_tokens_color(2), style.draft_tokens_color(4)]
