"""The reference backend: the identities every backend must satisfy, on CPU."""
from __future__ import annotations

import pytest
import torch

from gdnlab.inputs import make_inputs
from gdnlab.kernels import get_backend
from gdnlab.kernels.reference import gdn_gates, l2norm
from gdnlab.shapes import GDNShape

SHAPE = GDNShape("tiny", num_q_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=8)


def _setup(B=5, T=4, P=12, dtype=torch.float32, seed=0, pad_rows=(1,)):
    x = make_inputs(SHAPE, B, T, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    pool = (torch.randn(P, SHAPE.HV, SHAPE.V, SHAPE.K, generator=gen) * 0.3).to(dtype)
    idx = (torch.randperm(P - 1, generator=gen)[:B] + 1).to(torch.int32)   # scattered slots, never the reserved 0
    for r in pad_rows:
        idx[r] = -1
    return x, pool, idx


@pytest.fixture
def ref():
    return get_backend("reference")


def test_verify_equals_sequential_decodes(ref):
    x, pool, idx = _setup()
    before = pool.clone()
    o, inter = ref.verify(*x.args(), pool, idx)
    assert torch.equal(pool, before), "verify must not change the pool"
    seq = pool.clone()
    for t in range(x.q.shape[1]):
        o_t = ref.decode(*x.token(t).args(), seq, idx)
        torch.testing.assert_close(o_t[:, 0].float(), o[:, t].float(), rtol=0, atol=1e-6)
        live = idx >= 0
        torch.testing.assert_close(seq[idx[live].long()], inter[live, t], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("j", [1, 2, 4])
def test_commit_equals_j_decodes(ref, j):
    x, pool, idx = _setup(T=4)
    _, inter = ref.verify(*x.args(), pool, idx)
    committed = pool.clone()
    accepted = torch.full((idx.shape[0],), j, dtype=torch.int32)
    ref.commit(committed, idx, inter, accepted)
    seq = pool.clone()
    for t in range(j):
        ref.decode(*x.token(t).args(), seq, idx)
    torch.testing.assert_close(committed, seq, rtol=1e-6, atol=1e-6)


def test_commit_mixed_accepted_lengths(ref):
    x, pool, idx = _setup(B=6, T=3, pad_rows=(2,))
    _, inter = ref.verify(*x.args(), pool, idx)
    accepted = torch.tensor([1, 3, 0, 2, 3, 1], dtype=torch.int32)   # padding row's value is ignored
    out = pool.clone()
    ref.commit(out, idx, inter, accepted)
    for i in range(6):
        if idx[i] >= 0:
            torch.testing.assert_close(out[idx[i]], inter[i, accepted[i] - 1])
    untouched = torch.ones(pool.shape[0], dtype=torch.bool)
    untouched[idx[idx >= 0].long()] = False
    assert torch.equal(out[untouched], pool[untouched])


def test_padding_rows_zero_output_and_no_pool_write(ref):
    x, pool, idx = _setup(pad_rows=(0, 3))
    before = pool.clone()
    o = ref.decode(*x.token(0).args(), pool, idx)
    assert torch.count_nonzero(o[0]) == 0 and torch.count_nonzero(o[3]) == 0
    live = idx >= 0
    assert torch.count_nonzero(o[live]) > 0
    changed = (pool != before).flatten(1).any(1)
    assert set(torch.nonzero(changed).flatten().tolist()) == set(idx[live].tolist())


def test_intermediate_is_batch_scoped_not_pool_scoped(ref):
    """Row i of the buffer belongs to batch row i whatever its pool slot (the seed's [:batch_size] fix).

    Pool slots are >= B here, so a pool-scoped implementation would write rows idx[i] (out of the
    first B rows) and this test would fail.
    """
    B, T, P = 3, 2, 20
    x = make_inputs(SHAPE, B, T, seed=3)
    pool = torch.randn(P, SHAPE.HV, SHAPE.V, SHAPE.K) * 0.2
    idx = torch.tensor([17, 9, 12], dtype=torch.int32)
    buf = torch.full((P, T, SHAPE.HV, SHAPE.V, SHAPE.K), float("nan"))   # pool-sized, as SGLang allocates
    _, inter = ref.verify(*x.args(), pool, idx, intermediate=buf)
    assert inter is buf
    assert not torch.isnan(buf[:B]).any(), "rows 0..B-1 must hold the batch rows' states"
    assert torch.isnan(buf[B:]).all(), "rows >= B must stay untouched"
    for i in range(B):   # row i == state of batch row i after 1 token
        single = pool.clone()
        ref.decode(*x.token(0).args(), single, idx)
        torch.testing.assert_close(buf[i, 0], single[idx[i]])


def test_bf16_state_close_to_fp32(ref):
    x, pool, idx = _setup()
    o32, i32 = ref.verify(*x.args(), pool, idx)
    o16, i16 = ref.verify(*x.args(), pool.to(torch.bfloat16), idx)
    torch.testing.assert_close(o16.float(), o32.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(i16, i32, rtol=2e-2, atol=1e-2)
    p32, p16 = pool.clone(), pool.to(torch.bfloat16)
    ref.decode(*x.token(0).args(), p32, idx)
    ref.decode(*x.token(0).args(), p16, idx)
    torch.testing.assert_close(p16.float(), p32, rtol=2e-2, atol=1e-2)


def test_gqa_mapping_is_repeat_interleave(ref):
    """Value head j reads q/k head j // (HV/H): giving each q/k head distinct data must show it."""
    B = 2
    x = make_inputs(SHAPE, B, 1, seed=7)
    pool = torch.zeros(4, SHAPE.HV, SHAPE.V, SHAPE.K)
    idx = torch.tensor([1, 2], dtype=torch.int32)
    o = ref.decode(*x.args(), pool, idx)
    # By hand, value head 1 with q/k head 0 (repeat_interleave) and with head 1 (tile) differ.
    q = l2norm(x.q.float()) * SHAPE.K ** -0.5
    k = l2norm(x.k.float())
    g, beta = gdn_gates(x.a, x.b, x.A_log, x.dt_bias)
    hv, h_ri, h_tile = 1, 1 // 2, 1 % 2
    for h, expect_match in ((h_ri, True), (h_tile, False)):
        u = beta[0, 0, hv] * x.v[0, 0, hv].float()          # zero state: k^T S = 0
        S = u[:, None] * k[0, 0, h][None, :]
        o_hand = S @ q[0, 0, h]
        rel = ((o_hand - o[0, 0, hv].float()).norm() / o_hand.norm()).item()
        assert (rel < 1e-2) is expect_match, rel


def test_decay_and_beta_formulas():
    a = torch.tensor([[-3.0, 0.0, 25.0]])
    dt_bias = torch.tensor([0.5, -0.5, 0.0])
    A_log = torch.tensor([0.0, 1.0, 2.0])
    g, beta = gdn_gates(a, torch.zeros_like(a), A_log, dt_bias)
    x = a + dt_bias
    sp = torch.where(x > 20, x, torch.log1p(torch.exp(x)))
    torch.testing.assert_close(g, -torch.exp(A_log) * sp)
    torch.testing.assert_close(beta, torch.full_like(a, 0.5))
    assert (g <= 0).all()


def test_output_dtype_follows_q(ref):
    x, pool, idx = _setup()
    o = ref.decode(*x.token(0).args(), pool, idx)
    assert o.dtype == x.q.dtype and o.shape == (5, 1, SHAPE.HV, SHAPE.V)


def test_default_scale_is_inverse_sqrt_k(ref):
    x, pool, idx = _setup()
    o1 = ref.decode(*x.token(0).args(), pool.clone(), idx)
    o2 = ref.decode(*x.token(0).args(), pool.clone(), idx, scale=SHAPE.K ** -0.5)
    o3 = ref.decode(*x.token(0).args(), pool.clone(), idx, scale=1.0)
    assert torch.equal(o1, o2) and not torch.equal(o1, o3)


def test_cli_summary_identities_hold():
    """``gdnlab summary``'s table: verify == T decodes and commit(accepted=T) == T decodes, on CPU."""
    from gdnlab.selfcheck import contract_identities as summarize

    _, df = summarize("qwen3.5-397b-a17b", 16, [1, 3], 2, "float32", "cpu")
    assert list(df["batch"]) == [1, 3] and (df["draft_tokens"] == 2).all()
    for col in ("max|o_verify - o_decodes|", "max|S_T - decode^T|", "max|commit(T) - decode^T|"):
        assert (df[col] <= 1e-5).all(), (col, df[col].tolist())
