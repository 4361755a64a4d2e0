"""Figures of the engines' own paths vs gdnlab's (gdnlab.plots.engines) on a synthetic gap table whose
lines, colours, markers and provenance are known by construction."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers.engine_rows import H100, H200, call_row, frame, step_row

pytest.importorskip("plotly")

from gdnlab.analysis import engine_gap as eg
from gdnlab.plots import engines as pe
from gdnlab.plots import style

BATCHES = (1, 16, 64)
#: gdnlab's Triton step µs per B; SGLang's Triton path is 1.2x, vLLM's CUDA path 0.8x of it
TRITON = {1: 10.0, 16: 20.0, 64: 50.0}


def _rows(extra=()):
    rows = [step_row("triton", s, B, t) for s in ("full_cache", "token_slots") for B, t in TRITON.items()]
    rows += [step_row("sglang_triton", "full_cache", B, 1.2 * t) for B, t in TRITON.items()]
    rows += [step_row("vllm_triton", "full_cache", B, 1.1 * t) for B, t in TRITON.items()]
    rows += [step_row("vllm_cuda", "token_slots", B, 0.8 * t, accept_len=3.17 if B != 64 else 2.0)
             for B, t in TRITON.items()]
    rows += [step_row("sglang_triton", "full_cache", 16, 99.0, state_dtype="float32"),
             step_row("triton", "full_cache", 16, 90.0, state_dtype="float32"),
             step_row("sglang_triton", "full_cache", 16, 1.0, T=8), step_row("triton", "full_cache", 16, 1.0, T=8)]
    return frame([*rows, *extra])


@pytest.fixture(scope="module")
def gap():
    return eg.engine_gap(_rows())


def _named(fig, name):
    return [t for t in fig.data if t.name == name]


def test_step_figure_draws_engines_solid_and_each_twin_dashed_once_per_panel(gap):
    fig = pe.engine_step_figure(gap)
    assert [a.text for a in fig.layout.annotations if a.name != "provenance"][:2] == ["full_cache", "token_slots"]
    twins = _named(fig, "triton · gdnlab")
    assert len(twins) == 2                                        # one per panel, though two engines share it
    for t in twins:
        assert t.line.color == style.backend_color("triton") and t.line.dash == "dash"
        assert list(t.x) == list(BATCHES)
    full = [t for t in twins if t.xaxis == "x"][0]
    assert list(full.y) == [TRITON[B] for B in BATCHES]
    sg = _named(fig, "sglang_triton · engine's own path")
    assert len(sg) == 1 and sg[0].line.color == style.backend_color("sglang_triton") and sg[0].line.dash is None
    assert list(sg[0].y) == pytest.approx([1.2 * TRITON[B] for B in BATCHES])
    assert list(sg[0].customdata[:, 0]) == pytest.approx([1.2] * 3)
    assert sum(t.showlegend is not False for t in fig.data if t.name == "triton · gdnlab") == 1
    # bf16 and T=4 by default: the float32 and T=8 rows are not drawn
    assert all(99.0 not in list(t.y) and 1.0 not in list(t.y) for t in fig.data if t.y is not None)
    assert "bfloat16 state · T=4 · NVIDIA H200" in fig.layout.title.text
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_a_twin_at_another_accept_length_is_marked(gap):
    fig = pe.engine_step_figure(gap)
    ring = _named(fig, eg.ACCEPT_DIFFERS)
    assert len(ring) == 1 and list(ring[0].x) == [64] and list(ring[0].y) == [TRITON[64]]
    assert ring[0].marker.symbol == "circle-open" and "accept length 3.17" in ring[0].text[0]
    ratio = pe.engine_ratio_figure(gap)
    assert list(_named(ratio, eg.ACCEPT_DIFFERS)[0].y) == pytest.approx([0.8])


def test_ratio_figure_colours_engines_dashes_state_dtypes_and_marks_one(gap):
    fig = pe.engine_ratio_figure(gap)
    sg = _named(fig, "sglang_triton / triton · bfloat16")
    assert len(sg) == 1 and list(sg[0].y) == pytest.approx([1.2] * 3)
    assert sg[0].line.color == style.backend_color("sglang_triton") and sg[0].line.dash == "dash"
    fp = _named(fig, "sglang_triton / triton · float32")
    assert list(fp[0].y) == pytest.approx([1.1]) and fp[0].line.dash == "solid"
    assert list(_named(fig, "vllm_triton / triton · bfloat16")[0].y) == pytest.approx([1.1] * 3)
    assert [s.y0 for s in fig.layout.shapes] == [1.0, 1.0]          # the line at 1 in both panels
    assert "T=4" in fig.layout.title.text
    t8 = pe.engine_ratio_figure(gap, draft_tokens=8)
    assert [list(t.y) for t in t8.data if t.name == "sglang_triton / triton · bfloat16"] == [[1.0]]


def test_call_tables_get_a_panel_per_mode_with_decode_kept_beside_T():
    rows = frame([call_row("sglang_flashinfer", "decode", 16, 9.0, T=1, buffer_scope="none"),
                  call_row("flashinfer", "decode", 16, 10.0, T=1, buffer_scope="none"),
                  call_row("sglang_flashinfer", "verify", 16, 30.0), call_row("flashinfer", "verify", 16, 20.0),
                  call_row("sglang_flashinfer", "verify", 16, 30.0, T=8),
                  call_row("flashinfer", "verify", 16, 15.0, T=8)])
    cg = eg.engine_call_gap(rows)
    fig = pe.engine_step_figure(cg)
    assert [a.text for a in fig.layout.annotations if a.name != "provenance"] == ["decode T=1", "verify T=4"]
    assert "time per call" in fig.layout.yaxis.title.text
    ratio = pe.engine_ratio_figure(cg, draft_tokens=8)
    assert sorted(round(float(y), 3) for t in ratio.data if t.y is not None for y in t.y) == [0.9, 2.0]


def test_provenance_comes_from_both_rows():
    gap = eg.engine_gap(_rows())
    prov = pe.engine_step_figure(gap).layout.meta["provenance"]
    assert prov.startswith("measured · NVIDIA H200 (sm90)") and "gdnlab 0.1.0" in prov and "commit 0123456789" in prov
    assert "compared 10 of 11 engine rows at equal conditions" in pe.gap_provenance_text(gap)
    # the engine rows name their GPU and gdnlab version; twin rows without a gdnlab version are not measured
    no_twin_version = eg.engine_gap(_rows().assign(gdnlab=lambda d: d["gdnlab"].where(d["backend"] != "triton")))
    assert pe.gap_provenance_text(no_twin_version).startswith("synthetic · ")
    other_commit = eg.engine_gap(_rows().assign(
        git_commit=lambda d: d["git_commit"].where(d["backend"] != "triton", "fedcba9876543210")))
    assert "gdnlab rows commit fedcba9876" in pe.gap_provenance_text(other_commit)
    assert "gdnlab rows" not in pe.gap_provenance_text(gap)
    two = eg.engine_gap(_rows([step_row("sglang_triton", "full_cache", 16, 5.0, gpu=H100),
                               step_row("triton", "full_cache", 16, 5.0, gpu=H100)]))
    assert "+ 1 other GPU(s)" in pe.gap_provenance_text(two)


def test_nothing_to_draw_is_said_and_bad_input_is_refused(gap):
    empty = pe.engine_step_figure(eg.engine_gap(pd.DataFrame()))
    assert "no engine rows" in empty.layout.annotations[0].text
    none_ok = eg.engine_gap(frame([step_row("sglang_triton", "full_cache", 16, float("nan"), status="oom")]))
    assert "no engine rows that ran" in pe.engine_step_figure(none_ok).layout.annotations[0].text
    assert "no engine row with a gdnlab twin" in pe.engine_ratio_figure(none_ok).layout.annotations[0].text
    with pytest.raises(ValueError, match="gap table"):
        pe.engine_step_figure(frame([step_row("triton", "full_cache", 16, 1.0)]))
    assert pe.engine_step_figure(gap, state_dtype="float32").data                  # another dtype, asked for
    assert H200 in pe.engine_step_figure(gap, state_dtype="float32").layout.title.text
