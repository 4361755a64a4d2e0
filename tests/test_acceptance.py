"""Acceptance models and the one sampler (gdnlab.acceptance): conventions, formulas vs Monte Carlo,
limits, round trips, dtype and device of the draws, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdnlab.acceptance import (
    ChainAcceptance,
    EmpiricalAcceptance,
    FixedMean,
    accept_len_to_rate,
    chain_pmf,
    rate_to_accept_len,
    sample_accepted,
    tokens_per_step,
)
from gdnlab.seed import SEED_ACCEPT_LEN
from gdnlab.seed import SEED_DRAFT_TOKENS as SEED_T

from helpers.ids import case_id

rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
Ts = st.integers(min_value=1, max_value=10)


# ------------------------------------------------------------------ convention (SGLang accept_length)
def test_seed_convention_accept_len_counts_bonus_token():
    # --speculative-num-steps 3 / --speculative-num-draft-tokens 4: verify runs T=4 positions
    # [last committed token, d1, d2, d3]; accept_length = accepted drafts + 1 in [1, 4].
    assert SEED_T == 4
    assert rate_to_accept_len(0.0, SEED_T) == 1.0          # nothing accepted: 1 token per step
    assert rate_to_accept_len(1.0, SEED_T) == SEED_T        # all 3 drafts + bonus: 4 tokens per step
    lo, hi = SEED_ACCEPT_LEN
    assert 1.0 <= lo < hi <= SEED_T
    for acc in (lo, hi):
        p = accept_len_to_rate(acc, SEED_T)
        assert 0.0 < p < 1.0
        drafts_accepted = acc - 1.0                          # out of T - 1 = 3 drafts
        assert 2.0 < drafts_accepted < 3.0
        # the chain formula: 1 + p + p^2 + p^3
        assert math.isclose(1 + p + p**2 + p**3, acc, rel_tol=1e-9)


def test_sampled_accepted_feeds_the_commit_contract():
    """accepted[i] = verify positions kept: pool[idx] = intermediate[i, accepted-1] (kernels/base.py)."""
    from gdnlab.kernels import get_backend

    B, T, HV, V, K = 6, SEED_T, 2, 4, 4
    g = torch.Generator().manual_seed(3)
    accepted = sample_accepted(B, T, ChainAcceptance.from_accept_len(3.175, T), g)
    pool = torch.zeros(B + 2, HV, V, K)
    inter = torch.arange(B * T, dtype=torch.float32).view(B, T, 1, 1, 1).expand(B, T, HV, V, K).contiguous()
    idx = torch.arange(1, B + 1, dtype=torch.int32)
    get_backend("reference").commit(pool, idx, inter, accepted)
    for i in range(B):
        assert pool[idx[i]].flatten()[0].item() == i * T + int(accepted[i]) - 1


# ------------------------------------------------------------------ formulas
@given(rates, Ts)
def test_rate_limits_and_monotonicity(p, T):
    a = rate_to_accept_len(p, T)
    assert 1.0 - 1e-12 <= a <= T + 1e-12
    assert rate_to_accept_len(min(p + 0.01, 1.0), T) >= a - 1e-12


@given(rates, st.integers(min_value=2, max_value=10))
def test_rate_accept_len_round_trip(p, T):
    a = rate_to_accept_len(p, T)
    p2 = accept_len_to_rate(a, T)
    assert math.isclose(rate_to_accept_len(p2, T), a, rel_tol=1e-9, abs_tol=1e-9)
    if 1e-6 < p < 1 - 1e-6:
        assert abs(p2 - p) < 1e-6


@given(st.lists(rates, min_size=1, max_size=9), Ts)
def test_chain_pmf_mean_matches_product_formula(probs, T):
    pmf = chain_pmf(probs, T)
    assert pmf.shape == (T,) and abs(pmf.sum() - 1) < 1e-12 and (pmf >= 0).all()
    ps = (list(probs) + [probs[-1]] * T)[: T - 1]
    expect = 1.0 + sum(math.prod(ps[:j]) for j in range(1, T))
    assert math.isclose(ChainAcceptance(tuple(probs)).mean(T), expect, rel_tol=1e-9)
    assert np.array_equal(chain_pmf(probs[0], T), chain_pmf([probs[0]], T))   # one number = one rate


@settings(max_examples=25, deadline=None)
@given(rates, st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=2**31 - 1))
def test_chain_formula_vs_monte_carlo(p, T, seed):
    n = 20_000
    g = torch.Generator().manual_seed(seed)
    acc = sample_accepted(n, T, ChainAcceptance(p), g)
    assert acc.dtype == torch.int32 and acc.shape == (n,)
    assert int(acc.min()) >= 1 and int(acc.max()) <= T
    mean = rate_to_accept_len(p, T)
    pmf = chain_pmf([p], T)
    sd = math.sqrt(float(np.dot((np.arange(1, T + 1) - mean) ** 2, pmf)))
    assert abs(acc.double().mean().item() - mean) <= 5 * sd / math.sqrt(n) + 1e-9


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=1.0, max_value=8.0), st.integers(min_value=1, max_value=8))
def test_fixed_mean_sampler(m, T):
    acc = sample_accepted(4000, T, m, torch.Generator().manual_seed(0))
    target = min(m, T)
    assert set(acc.unique().tolist()) <= {math.floor(target), math.ceil(target)}
    assert abs(acc.double().mean().item() - target) < 0.05
    assert FixedMean(m).mean(T) == pytest.approx(target)


def test_empirical_histogram_clips_to_T_and_round_trips():
    samples = [1, 2, 2, 3, 4, 4, 4, 5]
    h = EmpiricalAcceptance.from_samples(samples)
    assert h.mean(5) == pytest.approx(np.mean(samples))
    assert h.mean(3) == pytest.approx(np.mean(np.minimum(samples, 3)))
    acc = sample_accepted(20_000, 5, h, torch.Generator().manual_seed(1))
    assert abs(acc.double().mean().item() - np.mean(samples)) < 0.05


def test_sampler_reproducible_and_edge_cases():
    m = ChainAcceptance((0.9, 0.7, 0.5))
    a = sample_accepted(64, 4, m, torch.Generator().manual_seed(7))
    b = sample_accepted(64, 4, m, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert sample_accepted(0, 4, m).shape == (0,)
    assert torch.equal(sample_accepted(5, 4, ChainAcceptance(0.0)), torch.ones(5, dtype=torch.int32))
    assert torch.equal(sample_accepted(5, 4, ChainAcceptance(1.0)), torch.full((5,), 4, dtype=torch.int32))


@pytest.mark.parametrize("call, word", [
    (lambda: rate_to_accept_len(1.5, 4), "rate"),
    (lambda: accept_len_to_rate(4.5, 4), "accept_len"),
    (lambda: accept_len_to_rate(0.5, 4), "accept_len"),
    (lambda: sample_accepted(-1, 4, 2.0), "batch"),
    (lambda: sample_accepted(4, 0, 2.0), "T"),
    (lambda: sample_accepted(4, 4, "fast"), "accept_len_or_model"),
    (lambda: sample_accepted(4, 4, 0.5), "FixedMean"),
    (lambda: sample_accepted(2.5, 4, 2.0), "batch"),
    (lambda: tokens_per_step(2.0, 0), "T"),
    (lambda: FixedMean(0.5), "FixedMean"),
    (lambda: ChainAcceptance(()), "probs"),
    (lambda: EmpiricalAcceptance((0.0, 0.0)), "counts"),
    (lambda: rate_to_accept_len("high", 4), "rate"),
    (lambda: accept_len_to_rate(None, 4), "accept_len"),
    (lambda: FixedMean("three"), "FixedMean"),
    (lambda: chain_pmf(["x"], 4), "acceptance probability"),
], ids=case_id)
def test_bad_input_raises_value_error(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_sampler_dtype_device_and_rate_equivalence():
    """One sampler: int32 on the generator's device; a per-draft rate p is ChainAcceptance(p), whose
    empirical mean matches rate_to_accept_len (the decode-loop workload's rate -> accept length)."""
    g = torch.Generator().manual_seed(11)
    acc = sample_accepted(50_000, 4, ChainAcceptance(0.7), g)
    assert acc.dtype == torch.int32 and acc.device == g.device
    assert sample_accepted(0, 4, 2.0).dtype == torch.int32
    assert abs(acc.double().mean().item() - rate_to_accept_len(0.7, 4)) < 0.02
    assert tokens_per_step(ChainAcceptance(0.7), 4) == pytest.approx(rate_to_accept_len(0.7, 4))
    assert tokens_per_step(3.5, 2) == 2.0   # a fixed mean is clipped to T
