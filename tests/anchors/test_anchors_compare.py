"""AIConfigurator vs published runs (gdnlab.anchors.compare): the error table recomputed by hand from the
two CSVs (read with the csv module), the run -> AIConfigurator mapping, and (with the extra) the
shipped predictions against a live call."""
from __future__ import annotations

import csv

import pandas as pd
import pytest

from gdnlab.anchors import aiconfigurator as aic
from gdnlab.anchors import compare, published
from gdnlab.errors import DataError

_REASON = aic.availability()


def _rows(name: str) -> dict[str, dict[str, str]]:
    from gdnlab.anchors.aic_tables import data_path
    with data_path(name).open(newline="") as f:
        return {r["run_id"]: r for r in csv.DictReader(f)}


def test_error_table_matches_a_hand_computation():
    runs, preds = _rows("published_runs.csv"), _rows(compare.PREDICTIONS_FILE)
    assert set(preds) == set(runs)
    out = compare.aiconfigurator_vs_published().set_index("run_id")
    for rid, r in runs.items():
        p = preds[rid]
        row = out.loc[rid]
        assert row["supported"] == (p["supported"] == "True")
        if p["supported"] != "True":
            assert pd.isna(row["tpot_err_pct"]) and row["reason"]
            continue
        meas_tpot = float(r["tpot_ms"])
        expect = (float(p["tpot_ms"]) - meas_tpot) / meas_tpot * 100
        assert float(row["tpot_err_pct"]) == pytest.approx(expect, rel=1e-9)
        per_gpu = float(r["output_tok_s_per_gpu"] or float(r["output_tok_s_total"]) / int(r["gpu_count"]))
        assert float(row["output_tok_s_per_gpu_err_pct"]) == pytest.approx(
            (float(p["output_tok_s_per_gpu"]) - per_gpu) / per_gpu * 100, rel=1e-9)
        assert row["status_measured"] == "reported" and row["status_aic"].startswith("reported (AIConfigurator 0.12.0")


def test_unsupported_and_assumed_rows_say_why():
    out = compare.aiconfigurator_vs_published()
    nxt = out[out["model"] == "Qwen3-Next-80B-A3B"]
    assert len(nxt) and (~nxt["supported"]).all() and nxt["reason"].str.contains("no model config").all()
    sup = out[out["supported"]]
    assert len(sup) >= 6 and sup["aic_tpot_ms"].gt(0).all()
    curves = published.load_acceptance_curves().set_index(["curve_id", "num_speculative_tokens"])
    assumed = sup[sup["accept_len"].isna() & sup["mtp"]]
    assert len(assumed)
    for _, r in assumed.iterrows():
        assert r["accept_len_source"].startswith("assumed")
        assert r["accept_len_used"] == float(curves.loc[(compare.ASSUMED_CURVE, 3), "accept_len"])
    rep = sup[sup["accept_len"].notna()]
    assert (rep["accept_len_used"] == rep["accept_len"]).all()


def test_aic_config_maps_a_run():
    runs = published.load_published_runs().set_index("run_id", drop=False)
    c = compare.aic_config(runs.loc["sglcookbook-qwen35-h200-mtp-c100"])
    assert c["supported"] and c["kwargs"]["isl"] == 502 and c["kwargs"]["osl"] == 500   # measured means
    assert c["kwargs"]["nextn"] == 3 and c["kwargs"]["accept_len"] == 3.31 and c["kwargs"]["fmha_dtype"] is None
    h = compare.aic_config(runs.loc["inferencex-pr3290-h100-fp8-mtp-c4"])
    assert h["kwargs"]["isl"] == 8192 and h["kwargs"]["ep"] == 8 and h["kwargs"]["fmha_dtype"] == "fp8"
    assert h["accept_len_source"].startswith("assumed")
    none = compare.aic_config(runs.loc["inferencex-pr3290-h100-fp8-mtp-c4"], assumed_curve=None)
    assert not none["supported"] and "accept length not reported" in none["reason"]
    assert not compare.aic_config(runs.loc["sglcookbook-qwen3next-b200-c1"])["supported"]


def test_predictions_for_unknown_runs_are_rejected(tmp_path):
    preds = compare.load_predictions()
    bad = pd.concat([preds, preds.iloc[[0]].assign(run_id="no-such-run")], ignore_index=True)
    with pytest.raises(DataError, match="no-such-run"):
        compare.aiconfigurator_vs_published(predictions=bad)
    p = tmp_path / "pred.csv"
    preds.assign(status="measured").to_csv(p, index=False)
    with pytest.raises(DataError, match="status"):
        compare.load_predictions(p)


@pytest.mark.skipif(_REASON is not None, reason=f"{_REASON} (the shipped predictions are tested instead)")
def test_shipped_predictions_equal_a_live_call():
    runs = published.load_published_runs()
    runs = runs[runs["run_id"].isin(["sglcookbook-qwen35-h200-mtp-c1", "inferencex-pr3290-h100-fp8-mtp-c8",
                                     "sglcookbook-qwen3next-b200-c1"])]
    live = compare.predict_published(runs).set_index("run_id")
    shipped = compare.load_predictions().set_index("run_id")
    for rid in live.index:
        assert bool(live.loc[rid, "supported"]) == bool(shipped.loc[rid, "supported"])
        if live.loc[rid, "supported"]:
            for c in ("tpot_ms", "output_tok_s_per_gpu", "ttft_ms"):
                assert float(live.loc[rid, c]) == pytest.approx(float(shipped.loc[rid, c]), rel=1e-6), (rid, c)
