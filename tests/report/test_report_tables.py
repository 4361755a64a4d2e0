"""The report's table formatter (gdnlab.report.tables) and its use by report.show: chosen columns, units
in headers, significant digits without scientific notation, an em dash for empty cells, text whole."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from gdnlab import report
from gdnlab.report.tables import MISSING, column_unit, format_number, format_table, header_for

pytest.importorskip("jinja2", reason="pandas' Styler (the table HTML) needs jinja2 (notebooks extra)")


def _cells(view, header: str) -> list[str]:
    return view.columns[view.headers.index(header)].cells


def test_headers_name_the_unit():
    cases = {"step_us": "step (µs)", "tpot_ms": "TPOT (ms)", "throughput_tok_s": "throughput (tokens/s)",
             "draft_tokens": "T", "batch": "B", "accept_len": "accept length", "state_dtype": "state dtype",
             "busy_pct_median": "busy median (%)", "pct_of_peak_bw": "% of peak bandwidth",
             "counter_bw_gbps": "counter bandwidth (GB/s)", "vs_full_cache": "vs full_cache (×)",
             "full_cache_step_us": "full_cache step (µs)", "mean_ns": "mean (µs)", "formula_bytes": "formula (MB)"}
    for name, want in cases.items():
        unit, _ = column_unit(name, [0.5])
        assert header_for(name, unit) == want, name
    assert column_unit("gdn_share", [0.01, 0.2]) == ("%", 100.0)       # fractions shown as %
    assert column_unit("gdn_share", [3.0]) == (None, 1.0)              # not fractions: left alone
    assert column_unit("mean_ns") == ("µs", 1e-3) and column_unit("dram_bytes") == ("MB", 1e-6)


def test_numbers_have_significant_digits_and_no_scientific_notation():
    df = pd.DataFrame({"step_us": [18396.6, 33768.96, 9.0441, 1.1e5], "ratio": [0.4233, 1.107, 2.5, 0.00012],
                       "counter_bytes": [541_100.0, 1_105.0, 2.1e9, 5.0e6], "batch": [1.0, 4.0, 16.0, 256.0],
                       "strategy": ["a", "b", "c", "d"]})
    v = format_table(df)
    text = v.to_text()
    assert not re.search(r"\d[eE][+-]?\d", text), text                  # never 1.84e+04
    assert _cells(v, "step (µs)") == ["18,397", "33,769", "9.044", "110,000"]     # times: 4 significant
    assert _cells(v, "B") == ["1", "4", "16", "256"]                     # integral floats as integers
    assert _cells(v, "counter (MB)")[2] == "2,100"                      # thousands separators, scaled to MB
    ratios = _cells(v, "ratio (×)")
    assert ratios == ["0.423", "1.11", "2.50", "0.000120"]          # 3 significant digits each, never "0.00"
    assert format_number(2.116e-16, 3) == "2.12×10⁻¹⁶" and format_number(-3.0e-7, 4) == "-3.000×10⁻⁷"
    assert format_number(0.000123456, 3) == "0.000123" and format_number(123456.7, 4) == "123,457"
    assert format_number(float("nan")) == MISSING and format_number(float("inf")) == MISSING


def test_missing_values_are_an_em_dash_never_nan():
    df = pd.DataFrame({"a_us": [1.5, np.nan, 3.0], "name": ["x", None, pd.NA],
                       "flag": pd.array(["ok", pd.NA, "bad"], dtype="string"), "n": pd.array([1, None, 3], "Int64"),
                       "when": [pd.Timestamp("2026-01-01"), pd.NaT, pd.Timestamp("2026-01-02")]})
    v = format_table(df)
    html = v.to_html()
    for bad in ("NaN", "nan", "<NA>", "&lt;NA&gt;", "None", "NaT"):
        assert bad not in v.to_text() and bad not in html, bad
    assert [r[0] for r in v.rows] == ["1.500", MISSING, "3.000"]
    assert v.rows[1] == [MISSING] * 5 and v.rows[2][1] == MISSING and v.rows[0][3] == "1"


def test_columns_chosen_by_name_or_by_default():
    df = pd.DataFrame({"backend": ["triton", "flashinfer"], "strategy": ["recompute", "full_cache"],
                       "state_dtype": ["bfloat16", "bfloat16"], "step_us": [8.4, 11.7], "empty": [None, None],
                       "gpu": ["NVIDIA H200", "NVIDIA H200"], "git_commit": ["475ad11", "475ad11"]})
    chosen = format_table(df, ["strategy", "step_us", "not_a_column"])
    assert chosen.headers == ["strategy", "step (µs)"]                   # a name the frame lacks is skipped
    default = format_table(df)
    assert default.headers == ["backend", "strategy", "step (µs)"]       # no provenance, no empty column
    assert default.caption == ["every row: state dtype bfloat16"]        # one value everywhere: said once
    wide = pd.DataFrame({f"c{i}_us": [float(i), float(i) + 1] for i in range(30)})
    w = format_table(wide, max_columns=10)
    assert len(w.headers) == 10 and any("20 more columns" in n and "c29_us" in n for n in w.notes)


def test_long_text_and_engine_flags_are_shown_whole():
    flags = ("--speculative-algorithm NEXTN --speculative-num-steps 3 --speculative-eagle-topk 1 "
             "--speculative-num-draft-tokens 4 --mamba-ssm-dtype bfloat16 --linear-attn-verify-backend triton")
    df = pd.DataFrame({"batch": [1, 4], "sglang": [flags, flags.replace("triton", "flashinfer")],
                       "note": ["x" * 300, "<b>not html</b>"]})
    v = format_table(df)
    assert _cells(v, "sglang")[0] == flags                               # no "..." truncation
    html = v.to_html()
    assert "<code" in html and "--linear-attn-verify-backend" in html and "..." not in html
    assert "&lt;b&gt;not html&lt;/b&gt;" in html and "<b>not html" not in html
    text = re.sub(r"<[^>]+>", "", html)
    assert flags.split(" ")[-1] in text and "x" * 300 in text


def test_a_status_column_shows_provenance_statuses_only():
    runs = pd.DataFrame({"strategy": ["a", "b"], "status": ["ok", "unsupported: needs T<=8"]})
    assert format_table(runs).headers == ["strategy", "result"]
    prov = pd.DataFrame({"strategy": ["a", "b"], "status": ["measured", "reported"]})
    assert format_table(prov).headers == ["strategy", "status"]
    basis = pd.DataFrame({"x": [1, 2], "predicted_status": ["composed from measured components", "projected"]})
    assert format_table(basis).headers == ["x", "predicted basis"]


def test_repeated_long_citations_become_numbered_notes():
    src = "sgl-project/sglang python/sglang/srt/server_args.py " * 6
    df = pd.DataFrame({"batch": [1, 4, 16], "sources": [src, src, src + "x"]})
    v = format_table(df)
    assert _cells(v, "sources") == ["[1]", "[1]", "[2]"]
    assert v.notes[0].startswith("[1] sources: sgl-project") and v.notes[1].endswith("x")


def test_show_formats_every_dataframe(capsys):
    df = pd.DataFrame({"step_us": [1.84e4, np.nan], "status": ["ok", "failed"]})
    html = report.table(df)._repr_html_()
    assert "18,400" in html and "NaN" not in html and MISSING in html and "result" in html
    report.show(df)                      # outside a kernel: the formatted text is printed
    out = capsys.readouterr().out
    assert "18,400" in out and "NaN" not in out and "e+04" not in out
    missing = report.missing("no data")
    assert report.table(missing) is missing


@pytest.mark.parametrize("value,sig,want", [(1.0, 4, "1.000"), (12.345, 4, "12.35"), (999.96, 4, "1,000"),
                                            (-0.0421, 3, "-0.0421"), (1234567.0, 3, "1,234,567")])
def test_format_number(value, sig, want):
    assert format_number(value, sig) == want
    assert not math.isnan(float(want.replace(",", "")))


def test_a_wide_table_keeps_engine_flags_and_drops_spreads_first():
    flags = "--speculative-algorithm NEXTN --speculative-num-draft-tokens 4"
    cols = {"batch": [1, 4], "strategy": ["recompute", "full_cache"], "tpot_ms": [5.8, 10.6],
            "tpot_lo_ms": [5.7, 10.5], "tpot_hi_ms": [5.9, 10.7], **{f"extra{i}": [i, i + 1] for i in range(8)},
            "max_concurrency": [1819, 585], "sglang": [flags, flags + " --gdn-mtp-cache-mode full"]}
    v = format_table(pd.DataFrame(cols), max_columns=10)
    assert len(v.headers) == 10 and "sglang" in v.headers and "TPOT (ms)" in v.headers
    assert not any(h.startswith("TPOT lo") or h.startswith("TPOT hi") for h in v.headers)
    assert _cells(v, "sglang")[1].endswith("--gdn-mtp-cache-mode full")            # the whole flag string
    assert "tpot_lo_ms" in v.notes[-1] and "max_concurrency" in v.notes[-1]


def test_an_index_of_labels_is_shown_and_one_of_positions_is_not():
    labelled = pd.DataFrame({"n_us": [1.0, 2.0]}, index=["gdn", "commit"])
    assert [r[0] for r in format_table(labelled).rows] == ["gdn", "commit"]
    filtered = pd.DataFrame({"n_us": [1.0, 2.0, 3.0]}).iloc[[0, 2]]
    assert format_table(filtered).headers == ["n (µs)"]
