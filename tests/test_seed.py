"""Seed tables (gdnlab.seed): rows, units, values and the MTP setting checked against the CSV read with
the csv module."""
from __future__ import annotations

import csv
import hashlib
from collections import Counter

import pytest

from gdnlab import seed


@pytest.fixture(scope="module")
def raw():
    with seed.seed_csv_path().open(newline="") as f:
        return list(csv.DictReader(f))


def test_loader_matches_csv_rows_units_values(raw):
    df = seed.load_seed()
    assert len(df) == len(raw)
    assert Counter(df["table"]) == Counter(r["table"] for r in raw)
    for (_, row), r in zip(df.iterrows(), raw):
        assert row["table"] == r["table"] and row["unit"] == r["unit"] and row["metric"] == r["metric"]
        assert float(row["value"]) == float(r["value"])
        assert row["backend"] == r["backend"] and bool(row["mtp"]) == (r["mtp"] == "yes")
    assert (df["status"] == "reported").all()
    assert set(df["gpu"]) <= {"GB200", "B200"}
    units = dict(zip(df["table"], df["unit"]))
    assert units == {t: u for t, (_, u, _) in seed.TABLES.items()}


def test_mtp_setting_matches_the_csv(raw):
    mtp = [r for r in raw if r["mtp"] == "yes" and r["accept_len_lo"]]
    assert mtp and {(float(r["accept_len_lo"]), float(r["accept_len_hi"])) for r in mtp} == {seed.SEED_ACCEPT_LEN}
    lo, hi = seed.SEED_ACCEPT_LEN
    assert 1.0 <= lo < hi <= seed.SEED_DRAFT_TOKENS == seed.SEED_NUM_STEPS + 1   # topk 1: T = steps + 1


def test_helpers_row_counts(raw):
    n = Counter(r["table"] for r in raw)
    assert len(seed.osl_sweep()) == n["osl_sweep"] == 9
    assert len(seed.tpot_vs_concurrency(fixed=True)) == n["tpot_concurrency_fixed"] == 12
    assert len(seed.tpot_vs_concurrency(fixed=False)) == n["tpot_concurrency"] == 14
    assert len(seed.accuracy()) == n["accuracy_gsm8k"] + n["accuracy_gpqa"] == 4
    assert (seed.tpot_vs_concurrency(True)["unit"] == "ms").all()
    assert (seed.osl_sweep()["unit"] == "tok/s").all()
    with pytest.raises(ValueError, match="fixed"):
        seed.tpot_vs_concurrency(fixed="yes")


def test_effective_concurrency_is_capped_by_max_running_requests():
    df = seed.load_seed()
    perf = df[df["effective_concurrency"].notna()]
    assert (perf["effective_concurrency"] <= seed.MAX_RUNNING_REQUESTS).all()
    assert (seed.osl_sweep()["effective_concurrency"] == 128).all()          # 256 prompts, 128 slots
    t = seed.tpot_vs_concurrency(False)
    assert (t.loc[t["concurrency"] == 256, "effective_concurrency"] == 128).all()
    assert (t.loc[t["concurrency"] == 4, "effective_concurrency"] == 4).all()


def test_derived_ratios_match_the_pr_text():
    s = seed.mtp_speedups()
    assert [round(x, 2) for x in s["speedup"]] == [1.35, 1.47, 1.66]   # the PR prints 1.35x/1.47x/1.66x
    r = seed.backend_ratios()
    osl = r[r["table"] == "osl_sweep"].sort_values("x")
    assert [round(x, 2) for x in osl["ratio"]] == [1.01, 1.04, 1.03]
    before = r[r["table"] == "tpot_concurrency"].set_index("x")["ratio"]
    assert round(before[64], 3) == 1.058 and round(before[1], 3) == 1.034


def test_packaged_copy_is_the_transcription():
    """The packaged CSV is byte for byte the transcription of the PR text (its recorded sha256)."""
    assert hashlib.sha256(seed.seed_csv_path().read_bytes()).hexdigest() == seed.SEED_CSV_SHA256
