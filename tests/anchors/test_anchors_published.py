"""Published runs and acceptance curves (gdnlab.anchors.published): the loader against the CSV read with
the csv module, each run's numbers against each other (Little's law, token ratios: a transcription
slip breaks them), and every validation error on a broken copy."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from gdnlab.anchors import published
from gdnlab.errors import DataError

from helpers.ids import case_id


def _raw(path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def raw_runs():
    return _raw(published.published_runs_path())


@pytest.fixture(scope="module")
def raw_curves():
    return _raw(published.acceptance_curves_path())


def _num(s: str) -> float | None:
    return float(s) if s else None


def test_runs_loader_matches_csv(raw_runs):
    df = published.load_published_runs()
    assert list(df["run_id"]) == [r["run_id"] for r in raw_runs] and len(df) >= 8
    for (_, row), r in zip(df.iterrows(), raw_runs):
        assert float(row["tpot_ms"]) == float(r["tpot_ms"])
        assert bool(row["mtp"]) == (r["mtp"] == "yes")
        assert int(row["concurrency"]) == int(r["concurrency"]) and int(row["tp"]) == int(r["tp"])
        for c in ("output_tok_s_total", "output_tok_s_per_gpu", "total_tok_s", "total_tok_s_per_gpu"):
            if r[c]:                         # what the source printed is kept as printed
                assert float(row[c]) == float(r[c])
            else:                            # what it did not print is derived and says so
                assert c in row["derived"].split(",")
    assert (df["status"] == "reported").all()
    assert df["source_url"].str.startswith("https://github.com/").all()


def test_derived_throughputs_use_gpu_count(raw_runs):
    df = published.load_published_runs().set_index("run_id")
    for r in raw_runs:
        g = int(r["gpu_count"])
        tot, per = _num(r["output_tok_s_total"]), _num(r["output_tok_s_per_gpu"])
        row = df.loc[r["run_id"]]
        if tot is not None and per is None:
            assert float(row["output_tok_s_per_gpu"]) == pytest.approx(tot / g, rel=1e-12)
        if per is not None and tot is None:
            assert float(row["output_tok_s_total"]) == pytest.approx(per * g, rel=1e-12)


def test_each_run_obeys_littles_law(raw_runs):
    """requests in flight = output rate * time per request / tokens per request, with time per request
    = TTFT + TPOT * (osl - 1): the printed TPOT, TTFT, throughput and concurrency of one run agree
    (within 15 %: TPOT is a per-request mean, the runs' in-flight count sags while draining)."""
    for r in raw_runs:
        osl = _num(r["osl_mean"]) or float(r["osl"])
        out = _num(r["output_tok_s_total"]) or float(r["output_tok_s_per_gpu"]) * int(r["gpu_count"])
        in_flight = out * (float(r["ttft_ms"]) + float(r["tpot_ms"]) * (osl - 1)) / osl / 1000.0
        assert in_flight == pytest.approx(int(r["concurrency"]), rel=0.15), r["run_id"]


def test_total_vs_output_throughput_matches_lengths(raw_runs):
    """total tokens / output tokens = (input + output length) / output length for every run that prints
    both throughputs (exactly with measured means; 8..10 for InferenceX's 8k/1k random-range 0.8)."""
    for r in raw_runs:
        tot = _num(r["total_tok_s"]) or _num(r["total_tok_s_per_gpu"])
        out = _num(r["output_tok_s_total"]) if r["total_tok_s"] else _num(r["output_tok_s_per_gpu"])
        if tot is None or out is None:
            continue
        if r["isl_mean"]:
            expect = (float(r["isl_mean"]) + float(r["osl_mean"])) / float(r["osl_mean"])
            assert tot / out == pytest.approx(expect, rel=0.01), r["run_id"]
        else:
            nominal = (int(r["isl"]) + int(r["osl"])) / int(r["osl"])
            assert 0.8 * nominal <= tot / out <= nominal / 0.8, r["run_id"]


def test_runs_cover_mtp_on_and_off_hopper_and_blackwell_without_the_seed():
    df = published.load_published_runs()
    assert df["mtp"].any() and (~df["mtp"]).any()
    assert {"H100", "H200"} & set(df["gpu"]) and {"B200", "GB200", "B300"} & set(df["gpu"])
    assert not df["source"].str.contains("23273").any()          # the seed's rows live in seed_results.csv
    on = df[df["mtp"]]
    assert (on["draft_tokens"] == on["num_speculative_tokens"] + 1).all()
    al = on["accept_len"].dropna()
    assert ((al >= 1) & (al <= on.loc[al.index, "draft_tokens"])).all()


def test_curves_loader_matches_csv_and_conventions(raw_curves):
    df = published.load_acceptance_curves()
    assert len(df) == len(raw_curves)
    for (_, row), r in zip(df.iterrows(), raw_curves):
        assert float(row["accept_len"]) == float(r["accept_len"])
        assert int(row["draft_tokens"]) == int(r["num_speculative_tokens"]) + 1
        assert 1.0 <= float(r["accept_len"]) <= int(r["draft_tokens"])
        assert "bonus" in r["convention"] and "draft_tokens = gdnlab T" in r["convention"]
    for think in ("on", "off"):
        c = df[df["curve_id"] == f"inferencex-golden-thinking-{think}"]
        assert sorted(c["num_speculative_tokens"]) == list(range(1, 9))
        assert (c["gpu"] == "B300").all() and (c["engine"] == "vllm").all()


def test_cookbook_curve_points_are_the_runs_accept_lengths():
    runs = published.load_published_runs().set_index("run_id")
    curves = published.load_acceptance_curves().set_index("curve_id")
    for c, r in (("sglcookbook-h200-random-c1", "sglcookbook-qwen35-h200-mtp-c1"),
                 ("sglcookbook-h200-random-c100", "sglcookbook-qwen35-h200-mtp-c100")):
        assert float(curves.loc[c, "accept_len"]) == float(runs.loc[r, "accept_len"])
        assert int(curves.loc[c, "num_speculative_tokens"]) == int(runs.loc[r, "num_speculative_tokens"])


def _write_modified(src, dst: Path, edit) -> Path:
    rows = _raw(src)
    fields = list(rows[0].keys())
    fields, rows = edit(fields, rows)
    with dst.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return dst


def _set(col, value, i=0):
    def edit(fields, rows):
        rows[i][col] = value
        return fields, rows
    edit.__name__ = f"row{i}.{col}={value}"          # the case's test id
    return edit


@pytest.mark.parametrize("edit, match", [
    (lambda f, r: ([c for c in f if c != "tpot_ms"], [{k: v for k, v in x.items() if k != "tpot_ms"} for x in r]),
     "missing column"),
    (_set("tpot_ms", "-3"), "'tpot_ms'"),
    (_set("tpot_ms", "fast"), "'tpot_ms'"),
    (_set("tpot_ms", "nan"), "'tpot_ms'"),
    (_set("status", "measured"), "status"),
    (_set("gpu", "A100"), "gpu"),
    (_set("accept_len", "4.5"), "accept_len"),
    (_set("draft_tokens", "5"), "draft_tokens"),
    (_set("concurrency", "2.5"), "concurrency"),
    (_set("source_date", "Feb 2026"), "source_date"),
    (_set("run_id", "sglcookbook-qwen35-h200-mtp-c100"), "duplicate run_id"),
    (_set("accept_len", "1.5", i=-1), "mtp = no"),
], ids=case_id)
def test_runs_loader_rejects_bad_data(tmp_path, edit, match):
    p = _write_modified(published.published_runs_path(), tmp_path / "runs.csv", edit)
    with pytest.raises(DataError, match=match):
        published.load_published_runs(p)


@pytest.mark.parametrize("edit, match", [
    (_set("accept_len", "0.5"), "accept_len"),
    (_set("draft_tokens", "3"), "draft_tokens"),
    (_set("convention", ""), "convention"),
    (_set("status", "projected"), "status"),
    (_set("num_speculative_tokens", "2", i=0), "duplicate"),
])
def test_curves_loader_rejects_bad_data(tmp_path, edit, match):
    p = _write_modified(published.acceptance_curves_path(), tmp_path / "curves.csv", edit)
    if match == "duplicate":     # row 0 (k=1) becomes a second k=2 point of the same curve (T follows)
        rows = _raw(p)
        rows[0]["draft_tokens"] = "3"
        p = _write_modified(p, tmp_path / "curves2.csv", lambda f, r: (f, rows))
    with pytest.raises(DataError, match=match):
        published.load_acceptance_curves(p)


def test_missing_file_is_a_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        published.load_published_runs(tmp_path / "nope.csv")
    assert math.isfinite(float(published.load_published_runs()["tpot_ms"].sum()))
