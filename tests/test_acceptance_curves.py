"""Acceptance curves: the chain a curve implies reproduces its points, gaps and single points, bad
input, and the parsers of vLLM's and SGLang's own log lines and metrics (formats of vLLM 0.33
``vllm/v1/spec_decode/metrics.py`` and SGLang 0.5.23 ``metrics_reporter.py``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdnlab.acceptance import ChainAcceptance, sample_accepted
from gdnlab.acceptance_curves import (
    AcceptanceCurve,
    curves_table,
    parse_sglang_log,
    parse_vllm_log,
    parse_vllm_prometheus,
    read_curve_file,
)
from gdnlab.errors import DataError, InputError

from helpers.ids import case_id

#: accepted tokens per step for 1..8 draft positions (T = 2..9), a concave, chain-consistent curve
CURVE = {t + 1: a for t, a in zip(range(1, 9), [1.93, 2.73, 3.39, 3.97, 4.41, 4.80, 5.04, 5.21])}


def test_curve_reproduces_its_points_and_is_a_chain():
    c = AcceptanceCurve(CURVE, name="c", status="reported")
    assert not c.adjusted
    for T, a in CURVE.items():
        assert c.mean(T) == pytest.approx(a, abs=1e-9)
        assert c.pmf(T).sum() == pytest.approx(1.0) and (c.pmf(T) >= 0).all()
    # independent restatement: P(accepted >= k) = reach_{k-1}, the product of conditionals
    p = np.array(c.conditional())
    assert (p >= 0).all() and (p <= 1).all()
    reach = np.concatenate([[1.0], np.cumprod(p)])
    assert sum(reach[:5]) == pytest.approx(CURVE[5])
    assert c.extrapolated(10) and not c.extrapolated(9)
    assert CURVE[9] < c.mean(10) < 10                       # beyond the points: the last rate repeats


def test_single_point_is_the_constant_rate_chain_and_gaps_fill_geometrically():
    one = AcceptanceCurve({4: 3.17})
    ref = ChainAcceptance.from_accept_len(3.17, 4)
    for T in (2, 3, 4, 6, 8):
        assert one.mean(T) == pytest.approx(ref.mean(T), rel=1e-6)
    gap = AcceptanceCurve({2: 1.9, 6: 4.0})
    assert gap.mean(2) == pytest.approx(1.9) and gap.mean(6) == pytest.approx(4.0)
    assert 1.9 < gap.mean(3) < gap.mean(4) < gap.mean(5) < 4.0
    cond = gap.conditional()
    assert cond[1] == pytest.approx(cond[2]) == pytest.approx(cond[3])      # one rate inside the gap


def test_points_that_are_not_a_chain_are_adjusted_and_say_by_how_much():
    c = AcceptanceCurve({**CURVE, 9: 5.00})                 # falls after T=8: not a chain
    assert c.adjusted and c.max_adjustment == pytest.approx(0.04, abs=1e-6)
    assert c.mean(9) == pytest.approx(CURVE[8])
    big = AcceptanceCurve({2: 1.2, 3: 2.9})                 # gain 1.7 after 0.2: no rate reaches it
    assert big.adjusted and big.mean(3) < 2.9


@pytest.mark.parametrize("pts, match", [({}, "no points"), ({1: 1.0}, "integer >= 2"), ({4: 4.5}, "outside"),
                                        ({4: 0.5}, "outside"), ({4: float("nan")}, "outside"),
                                        ({2.5: 1.5}, "integer >= 2")], ids=case_id)
def test_bad_points_are_refused(pts, match):
    with pytest.raises(InputError, match=match):
        AcceptanceCurve(pts)


def test_status_must_be_one_of_three():
    with pytest.raises(InputError, match="status"):
        AcceptanceCurve({4: 3.0}, status="derived")


def test_a_curve_drives_the_one_sampler():
    c = AcceptanceCurve(CURVE)
    import torch

    draws = sample_accepted(20000, 5, c, torch.Generator().manual_seed(0))
    assert float(draws.float().mean()) == pytest.approx(CURVE[5], abs=0.03)


def test_curve_file_one_curve_per_bucket_and_no_averaging(tmp_path):
    f = tmp_path / "c.csv"
    pd.DataFrame({"draft_tokens": [2, 4, 2, 4], "accept_len": [1.9, 3.2, 1.7, 2.6],
                  "context_bucket": [4096, 4096, 32768, 32768]}).to_csv(f, index=False)
    got = read_curve_file(f)
    assert set(got) == {"curve@ctx4096", "curve@ctx32768"} and got["curve@ctx32768"].mean(4) == pytest.approx(2.6)
    twice = tmp_path / "t.csv"
    pd.DataFrame({"draft_tokens": [4, 4], "accept_len": [3.0, 3.4]}).to_csv(twice, index=False)
    with pytest.raises(DataError, match="T=4 twice"):
        read_curve_file(twice)
    bad = tmp_path / "b.csv"
    pd.DataFrame({"T": [4], "al": [3.0]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="needs columns"):
        read_curve_file(bad)
    with pytest.raises(FileNotFoundError):
        read_curve_file(tmp_path / "missing.csv")
    table = curves_table(got.values(), range(2, 6))
    assert len(table) == 8 and table["extrapolated"].sum() == 2


VLLM = ("INFO 12-01 10:00:00 [metrics.py:100] SpecDecoding metrics: Mean acceptance length: 2.87, Accepted "
        "throughput: 37.30 tokens/s, Drafted throughput: 60.00 tokens/s, Accepted: 373 tokens, Drafted: 600 tokens, "
        "Per-position acceptance rate: 0.740, 0.473, 0.309, 0.187, 0.099, 0.057, Avg Draft acceptance rate: 31.1%\n")


def test_vllm_log_lines_give_the_curve_of_per_position_rates(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text("noise\n" + VLLM + VLLM.replace("Drafted: 600", "Drafted: 1200"))
    c = parse_vllm_log(log)
    rates = [0.740, 0.473, 0.309, 0.187, 0.099, 0.057]
    assert c.mean(7) == pytest.approx(1 + sum(rates)) and c.mean(2) == pytest.approx(1.74)
    assert c.status == "measured" and str(log) in c.source
    with pytest.raises(DataError, match="no 'SpecDecoding"):
        parse_vllm_log("INFO nothing here\nreally\n")
    with pytest.raises(FileNotFoundError):
        parse_vllm_log(tmp_path / "none.log")


def test_vllm_prometheus_counters():
    text = ("# HELP x\nvllm:spec_decode_num_drafts_total{model_name=\"q\"} 1000.0\n"
            "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"q\",position=\"0\"} 800.0\n"
            "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"q\",position=\"1\"} 500.0\n")
    c = parse_vllm_prometheus(text)
    assert c.mean(2) == pytest.approx(1.8) and c.mean(3) == pytest.approx(2.3)


SGL = ("[2026-12-01 10:00:00] Decode batch, #running-req: 64, #token: 65536, token usage: 0.10, accept len: 3.10, "
       "accept rate: 0.70, cuda graph: True, gen throughput (token/s): 5000.00, #queue-req: 0\n"
       "[2026-12-01 10:00:05] Decode batch, #running-req: 32, #token: 524288, token usage: 0.40, accept len: 2.50, "
       "accept rate: 0.50, cuda graph: True, gen throughput (token/s): 3000.00, #queue-req: 0\n")


def test_sglang_log_gives_one_point_per_bucket():
    whole = parse_sglang_log(SGL, 4)
    assert whole["sglang-log"].points == {4: pytest.approx(2.8)}
    buckets = parse_sglang_log(SGL, 4, context_buckets=(4096,))
    assert buckets["sglang-log@ctx<=4096"].mean(4) == pytest.approx(3.1)
    assert buckets["sglang-log@ctx>4096"].mean(4) == pytest.approx(2.5)
    with pytest.raises(InputError):
        parse_sglang_log(SGL, 1)
    with pytest.raises(DataError, match="accept len"):
        parse_sglang_log("Decode batch, #running-req: 1, gen throughput\n", 4)
