"""Bad arguments raise ValueError naming the argument, before any work (nothing half-written)."""
from __future__ import annotations

import pytest
import torch

from gdnlab.inputs import make_inputs
from gdnlab.kernels import BackendUnavailable, available_backends, get_backend
from gdnlab.shapes import GDNShape

from helpers.ids import case_id

S = GDNShape("t", 2, 4, 16, 8)


@pytest.fixture
def call():
    x = make_inputs(S, 3, 2, seed=0)
    pool = torch.randn(6, S.HV, S.V, S.K)
    idx = torch.tensor([4, -1, 1], dtype=torch.int32)
    return x, pool, idx


def _args(x, **over):
    d = dict(q=x.q, k=x.k, v=x.v, a=x.a, b=x.b, A_log=x.A_log, dt_bias=x.dt_bias)
    d.update(over)
    return list(d.values())


@pytest.mark.parametrize("field,bad,pattern", [
    ("k", lambda x: x.k[:, :, :1], r"k has shape .*expected \[B, T, H, K\]"),
    ("v", lambda x: x.v.float(), r"q, k, v must share one dtype"),
    ("a", lambda x: x.a[..., :2], r"a has shape"),
    ("A_log", lambda x: x.A_log[:3], r"A_log has shape .*\[HV\]"),
    ("b", lambda x: x.b.to(torch.int32), r"b has dtype"),
], ids=case_id)
def test_bad_tensor_arguments(call, field, bad, pattern):
    x, pool, idx = call
    before = pool.clone()
    with pytest.raises(ValueError, match=pattern):
        get_backend("reference").verify(*_args(x, **{field: bad(x)}), pool, idx)
    assert torch.equal(pool, before)


def test_index_errors(call):
    x, pool, idx = call
    ref = get_backend("reference")
    before = pool.clone()
    with pytest.raises(ValueError, match="out of range for a pool of 6 slots"):
        ref.decode(*x.token(0).args(), pool, torch.tensor([4, 6, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="same pool slot twice"):
        ref.decode(*x.token(0).args(), pool, torch.tensor([4, 4, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="indices has dtype"):
        ref.decode(*x.token(0).args(), pool, idx.float())
    with pytest.raises(ValueError, match="decode takes one token"):
        ref.decode(*x.args(), pool, idx)
    with pytest.raises(ValueError, match="pool has dtype"):
        ref.decode(*x.token(0).args(), pool.half(), idx)
    with pytest.raises(ValueError, match="HV=.*multiple"):
        ref.decode(*x.token(0).args(), torch.randn(6, 3, S.V, S.K), idx)
    assert torch.equal(pool, before)


def test_intermediate_and_commit_errors(call):
    x, pool, idx = call
    ref = get_backend("reference")
    with pytest.raises(ValueError, match="intermediate has shape"):
        ref.verify(*x.args(), pool, idx, intermediate=torch.zeros(2, 2, S.HV, S.V, S.K))
    with pytest.raises(ValueError, match="intermediate has dtype"):
        ref.verify(*x.args(), pool, idx, intermediate=torch.zeros(3, 2, S.HV, S.V, S.K, dtype=torch.float16))
    _, inter = ref.verify(*x.args(), pool, idx)
    before = pool.clone()
    with pytest.raises(ValueError, match=r"accepted lengths must be in 1..T=2"):
        ref.commit(pool, idx, inter, torch.tensor([3, 1, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"accepted lengths must be in 1..T=2"):
        ref.commit(pool, idx, inter, torch.tensor([0, 1, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="accepted has shape"):
        ref.commit(pool, idx, inter, torch.tensor([1, 1], dtype=torch.int32))
    assert torch.equal(pool, before)
    # the padding row's accepted value is ignored
    ref.commit(pool, idx, inter, torch.tensor([2, 99, 1], dtype=torch.int32))


def test_registry_explains_each_backend():
    st = available_backends()
    assert set(st) >= {"reference", "triton", "flashinfer"}
    assert st["reference"].available
    for s in st.values():
        assert s.reason and s.name in str(s)
    with pytest.raises(ValueError, match="unknown backend 'cutlass'"):
        get_backend("cutlass")
    if not torch.cuda.is_available() and not st["flashinfer"].available:
        with pytest.raises(BackendUnavailable, match="flashinfer"):
            get_backend("flashinfer")


@pytest.mark.parametrize("field", ["q", "v", "a", "b", "A_log", "dt_bias"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_refused_before_any_pool_write(call, field, value):
    x, pool, idx = call
    before = pool.clone()
    over = {field: getattr(x, field).clone()}
    over[field].view(-1)[0] = value
    with pytest.raises(ValueError, match=rf"{field} holds 1 non-finite"):
        get_backend("reference").verify(*_args(x, **over), pool, idx)
    with pytest.raises(ValueError, match=rf"{field} holds 1 non-finite"):
        get_backend("reference").decode(*_args(x.token(0), **{field: over[field][:, :1] if over[field].dim() > 1
                                                              else over[field]}), pool, idx)
    assert torch.equal(pool, before)


def test_non_finite_live_state_refused_padding_slot_ignored(call):
    x, pool, idx = call
    pool[2] = float("nan")                      # a slot no row reads: fine
    get_backend("reference").verify(*_args(x), pool, idx)
    pool[4, 0, 0, 0] = float("inf")             # row 0's state
    with pytest.raises(ValueError, match="pool rows at indices holds 1 non-finite"):
        get_backend("reference").verify(*_args(x), pool, idx)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), "big"])
def test_bad_scale_refused(call, scale):
    x, pool, idx = call
    with pytest.raises(ValueError, match="scale must be"):
        get_backend("reference").verify(*_args(x), pool, idx, scale=scale)


def test_reserved_slot0_refused_as_live_index(call):
    x, pool, _ = call
    before = pool.clone()
    with pytest.raises(ValueError, match="slot 0, which is reserved"):
        get_backend("reference").decode(*_args(x.token(0)), pool, torch.tensor([0, -1, 1], dtype=torch.int32))
    assert torch.equal(pool, before)


def test_q_with_wrong_head_count_names_both_q_and_k(call):
    x, pool, idx = call
    with pytest.raises(ValueError, match=r"k has shape .* q has shape \(3, 2, 1, 16\)"):
        get_backend("reference").verify(*_args(x, q=x.q[:, :, :1]), pool, idx)
