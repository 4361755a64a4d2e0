"""Verify strategies on the reference backend (CPU): exactness over many steps, bytes, errors.

Every strategy runs 64 consecutive speculative steps (random accepted lengths 1..T, padding rows,
requests reordered and sitting out steps, dropped verifies) against :class:`ReferenceBackend`
decoding the same tokens one by one (:func:`gdnlab.strategies.check.check_strategy`), with a float32
and a bfloat16 state pool; the assertion message reports the state drift over the steps.
"""
from __future__ import annotations

import sys

import pytest
import torch

from gdnlab import roofline
from gdnlab.errors import UnavailableError
from gdnlab.inputs import make_inputs
from gdnlab.shapes import GDNShape
from gdnlab.strategies import STRATEGY_NAMES, available_strategies, get_strategy, registry, strategy_names
from gdnlab.strategies.base import bookkeeping_index
from gdnlab.strategies.check import check_strategy
from gdnlab.strategies.host_sync import HostSyncError, allow_host_sync, check_capturable, forbid_host_sync, opaque
from gdnlab.strategies.ops import TorchOps
from gdnlab.strategies.recompute import Recompute
from gdnlab.strategies.replay_ring import ring_fold_period
from gdnlab.strategies.token_slots import default_slot_table
from gdnlab.strategies.triton import STRATEGIES as TRITON_STRATEGIES

from helpers.ids import case_id

SHAPE = GDNShape("strategies-small", num_q_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=16)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_64_steps_match_reference_decode(name: str, state: str) -> None:
    res = check_strategy(get_strategy(name), SHAPE, batch=5, T=4, steps=64, state_dtype=DTYPES[state], seed=1)
    assert res.ok, res.summary()
    assert len(res.state_err) == 64


@pytest.mark.parametrize("name, T, options", [
    ("replay_ring", 2, {"ring_slots": 3}),                  # folds almost every step
    ("replay_ring", 3, {"ring_slots": 12, "flush_min": 5}),  # folds at flush_min before the ring fills
    ("full_cache", 1, {"intermediate_dtype": "float32"}),
    ("recompute_fused", 1, {}),
    ("token_slots", 1, {}),
], ids=case_id)
def test_edge_configs(name: str, T: int, options: dict) -> None:
    res = check_strategy(get_strategy(name, **options), SHAPE, batch=3, T=T, steps=24,
                         state_dtype=torch.bfloat16, seed=2)
    assert res.ok, res.summary()


def test_check_catches_a_wrong_commit() -> None:
    """The check is not vacuous: a recompute that replays one token too few is caught."""
    class OffByOne(get_strategy("recompute").__class__):
        def _commit(self, pool, indices, scratch, accepted):
            Recompute._commit(self, pool, indices, scratch, (accepted - 1).clamp(min=0))

    res = check_strategy(OffByOne(), SHAPE, batch=3, T=3, steps=4, state_dtype=torch.float32)
    assert not res.ok and max(res.state_ratio) > 1


def _writes_slot0(scratch_slots: tuple[int, ...]):
    """A reference ``recompute`` whose verify also scribbles on pool slot 0 (as FlashInfer's bf16
    kernels do for padding rows), declaring ``scratch_slots``."""
    class SlotZeroWriter(get_strategy("recompute").__class__):
        def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
            super()._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o)
            pool[0].add_(1.0)

    SlotZeroWriter.scratch_slots = scratch_slots
    return SlotZeroWriter()


def test_check_allows_writes_to_declared_scratch_slots_only() -> None:
    assert all(get_strategy(n).scratch_slots_for(torch.bfloat16) == () for n in STRATEGY_NAMES)
    kw = dict(batch=3, T=2, steps=3, state_dtype=torch.float32, seed=4)
    res = check_strategy(_writes_slot0(()), SHAPE, **kw)
    assert not res.ok and res.problems == ["the reserved pool slot 0 was written"], res.summary()
    assert "state drift max" in res.summary() and "slot 0 was written" in res.summary()
    res = check_strategy(_writes_slot0((0,)), SHAPE, **kw)
    assert res.ok, res.summary()
    res = check_strategy(_writes_slot0((0, 2)), SHAPE, **kw)        # slot 2 belongs to a request
    assert not res.ok and any("slot(s) [2] as scratch" in p for p in res.problems), res.summary()


def test_host_sync_guard_catches_what_a_cuda_graph_cannot_capture() -> None:
    x, idx = torch.zeros(6), torch.tensor([1, 2])
    bad = {"x[idx] = 0": lambda: x.__setitem__(idx, 0), ".item()": lambda: x.sum().item(),
           "bool()": lambda: bool(x.any()), ".cpu()": lambda: x.cpu(), ".tolist()": lambda: x.tolist(),
           "torch.tensor": lambda: torch.tensor([1, 2]), "nonzero": lambda: torch.nonzero(x),
           "x[mask]": lambda: x[x > 0], "x[mask] = v": lambda: x.__setitem__(x > 0, 1.0),
           "torch.equal": lambda: torch.equal(x, x), "repeat_interleave": lambda: torch.repeat_interleave(idx)}
    for what, fn in bad.items():
        with forbid_host_sync():
            try:
                fn()
            except HostSyncError as exc:
                assert "not capturable in a CUDA graph" in str(exc), what
            else:
                pytest.fail(f"{what} inside forbid_host_sync() was not caught")
        fn()                                                  # outside the guard: fine
    with forbid_host_sync():
        x.index_fill_(0, idx, 0)
        x[idx] = torch.ones(2)
        x[0:2] = 0
        x.masked_fill_(x > 0, 0)
        torch.where(x > 0, x, 0)
        torch.as_tensor(idx)
        with allow_host_sync():
            x.tolist()
        opaque(torch.nonzero)(x)
        with pytest.raises(HostSyncError):
            x.tolist()
    assert torch.Tensor.cpu is torch._C.TensorBase.cpu and x.cpu() is x   # patches undone


class _KernelStandIn(TorchOps):
    """TorchOps as a kernel launch would be: exempt from the guard (it reads counts on the host)."""

    recurrent = opaque(TorchOps.recurrent)
    scatter_commit = opaque(TorchOps.scatter_commit)


@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_triton_strategies_verify_commit_fold_are_graph_capturable(name: str, state: str) -> None:
    """The Triton strategies' own code (everything but the kernel launch) builds no host tensor, reads
    nothing back and sizes nothing by data, so a whole step can be captured in a CUDA graph."""
    s = TRITON_STRATEGIES[name]()
    s.ops = _KernelStandIn()
    check_capturable(s, SHAPE, batch=4, T=3, state_dtype=DTYPES[state], steps=3, seed=5)


def test_capturable_check_catches_a_host_scalar_write() -> None:
    """The guard is not vacuous: the bookkeeping write that broke capture (pending[bk] = 0) is caught."""
    class HostScalarWrite(TRITON_STRATEGIES["recompute_fused"]):
        def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
            super()._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o)
            scratch.pending[bookkeeping_index(indices, scratch.pool_slots)] = 0

    s = HostScalarWrite()
    s.ops = _KernelStandIn()
    with pytest.raises(HostSyncError, match="Python scalar"):
        check_capturable(s, SHAPE, batch=4, T=3, state_dtype=torch.float32, steps=2)


@pytest.mark.parametrize("name", ["token_slots", "recompute_fused", "replay_ring"])
def test_reset_forgets_listed_slots_only(name: str) -> None:
    s = get_strategy(name)
    pool = torch.zeros((1 + 3 * 3, *SHAPE.state_shape))
    sc = s.allocate(pool, max_batch=3, T=2)
    book = {"token_slots": "current", "recompute_fused": "pending", "replay_ring": "cursor"}[name]
    getattr(sc, book).fill_(1)
    s.reset(sc, [2, -1])
    s.reset(sc, torch.tensor([3], dtype=torch.int32))
    got = getattr(sc, book)
    assert got[[2, 3]].tolist() == [0, 0] and got[1] == 1 and got[4] == 1


def test_ring_folds_inside_verify_and_commit_moves_the_cursor() -> None:
    s = get_strategy("replay_ring", ring_slots=4)
    pool = (0.1 * torch.randn(4, *SHAPE.state_shape)).float()
    sc = s.allocate(pool, max_batch=2, T=2)
    idx = torch.tensor([1, 3], dtype=torch.int32)
    inp = make_inputs(SHAPE, 2, 2, seed=0)
    before = pool.clone()
    s.verify(*inp.args(), pool, idx, sc)
    assert torch.equal(pool, before), "verify of an empty ring writes no state"
    s.commit(pool, idx, sc, torch.tensor([2, 1], dtype=torch.int32))
    assert sc.cursor[[1, 3]].tolist() == [2, 1] and torch.equal(pool, before), "commit only moves cursors"
    s.verify(*inp.args(), pool, idx, sc)          # row 1: 2 + 2 <= 4 fits, row 3 fits: no fold
    assert torch.equal(pool, before)
    s.commit(pool, idx, sc, torch.tensor([2, 2], dtype=torch.int32))
    s.verify(*inp.args(), pool, idx, sc)          # row 1 at 4 (full) folds, row 3 at 3 (3 + 2 > 4) folds
    assert sc.cursor[[1, 3]].tolist() == [0, 0] and not torch.equal(pool[1], before[1])


def test_padding_only_batch_changes_nothing() -> None:
    for name in STRATEGY_NAMES:
        s = get_strategy(name)
        pool = (0.1 * torch.randn(1 + 2 * 4, *SHAPE.state_shape)).float()
        sc = s.allocate(pool, max_batch=2, T=3)
        before = {k: v.clone() for k, v in sc.tensors().items()}
        pool0 = pool.clone()
        idx = torch.tensor([-1, -1], dtype=torch.int32)
        o = s.verify(*make_inputs(SHAPE, 2, 3, seed=1).args(), pool, idx, sc)
        s.commit(pool, idx, sc, torch.tensor([0, 7], dtype=torch.int32))
        assert torch.all(o == 0) and torch.equal(pool, pool0), name
        P = pool.shape[0]
        for k, v in sc.tensors().items():
            if v.shape[:1] == (P + 1,):      # bookkeeping: only the padding dummy entry may change
                assert torch.equal(v[:P], before[k][:P]), f"{name}: {k}"
        assert torch.all(s.state(pool, idx, sc) == 0)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@pytest.mark.parametrize("state", list(DTYPES))
def test_scratch_bytes_equal_allocated_bytes(name: str, state: str) -> None:
    s = get_strategy(name)
    T, B = 3, 4
    pool = torch.zeros((1 + 5 * (T + 1), *SHAPE.state_shape), dtype=DTYPES[state])
    sc = s.allocate(pool, max_batch=B, T=T)
    assert s.scratch_bytes(SHAPE, batch=B, T=T, pool_slots=pool.shape[0], state_dtype=DTYPES[state]) == sc.nbytes()


def test_scratch_bytes_follow_options() -> None:
    T, B, P = 4, 3, 11
    pool = torch.zeros((P, *SHAPE.state_shape), dtype=torch.bfloat16)
    for name, opts in (("full_cache", {"intermediate_dtype": "float32"}), ("recompute", {"stash_dtype": "bfloat16"}),
                       ("replay_ring", {"ring_slots": 9, "ring_dtype": "bfloat16"})):
        s = get_strategy(name, **opts)
        assert s.scratch_bytes(SHAPE, B, T, P, state_dtype=torch.bfloat16) == s.allocate(pool, B, T).nbytes(), name


def test_strategy_bytes_formulas() -> None:
    sh = GDNShape("x", num_q_heads=4, num_v_heads=16, head_k_dim=128, head_v_dim=128)
    B, T, a = 8, 4, 3.0
    S = 16 * 128 * 128 * 4
    e = 16 * (128 + 128 + 1) * 4
    got = {n: registry.strategy_bytes(sh, n, B, T, a, state_dtype="float32") for n in STRATEGY_NAMES}
    ss = {n: got[n].state_and_scratch / B for n in got}
    assert ss["full_cache"] == (T + 3) * S
    assert ss["token_slots"] == (T + 1) * S
    assert ss["recompute"] == 3 * S + (T + a) * e
    assert ss["recompute_fused"] == 2 * S + (T + a) * e
    f = ring_fold_period(T, a)                   # R = 16: cursor 0, 3, 6, 9, 12 -> fold at 5th
    assert f == 5
    assert ss["replay_ring"] == pytest.approx(S * (1 + 2 / f) + e * (a * (f - 1) / 2 + T + a))
    assert ss["replay_ring"] < ss["recompute_fused"] < ss["recompute"] < ss["token_slots"] < ss["full_cache"]
    for b in got.values():
        assert b.total == pytest.approx(b.verify + b.commit + b.fold)
    base = roofline.gdn_bytes(sh, B, T, mode="verify", state_dtype="float32")
    assert got["full_cache"].inputs == base.inputs + 4 * B and got["full_cache"].output == base.output
    pad = registry.strategy_bytes(sh, "token_slots", B, T, a, state_dtype="float32", padding_rows=3)
    assert pad.state_and_scratch == (B - 3) * (T + 1) * S
    # the fold cost depends on the accept length: short accepts fold less often
    assert ring_fold_period(4, 1.0) == 13 and ring_fold_period(4, 4.0) == 4
    assert ring_fold_period(4, 3.0, flush_min=8) == 3
    # a strategy object's bytes_moved is the roofline's formula with its options
    s = get_strategy("replay_ring", ring_slots=32)
    assert s.bytes_moved(sh, B, T, a, state_dtype="float32") == registry.strategy_bytes(
        sh, "replay_ring", B, T, a, state_dtype="float32", ring_slots=32)


def test_memory_bytes_count_token_slots_extra_slots() -> None:
    sh = SHAPE
    S = sh.state_bytes(torch.float32)
    m = registry.strategy_memory_bytes(sh, "token_slots", requests=10, batch=4, draft_tokens=3, state_dtype="float32")
    assert m == (1 + 10 * 4) * S + registry.strategy_scratch_bytes(sh, "token_slots", 4, 3, 41, state_dtype="float32")
    assert get_strategy("token_slots").slots_per_request(3) == 4


@pytest.mark.parametrize("bad, word", [
    (dict(strategy="nope"), "unknown strategy"), (dict(strategy="recompute", accept_len=5), "accept_len"),
    (dict(strategy="recompute", accept_len=0.5), "accept_len")], ids=case_id)
def test_strategy_bytes_rejects_bad_input(bad: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        registry.strategy_bytes(SHAPE, bad["strategy"], 4, 4, bad.get("accept_len", 2))


def test_default_slot_table_layout() -> None:
    tab = default_slot_table(1 + 3 * 3, T=2)        # 3 requests of 1 + 2 slots
    assert tab[1:4].tolist() == [[1, 4, 5], [2, 6, 7], [3, 8, 9]]
    assert torch.all(tab[0] == -1) and torch.all(tab[4:] == -1)
    with pytest.raises(ValueError, match="1\\+T"):
        default_slot_table(3, T=2)


def _setup(name: str = "recompute", T: int = 2, B: int = 2, **opts):
    s = get_strategy(name, **opts)
    pool = (0.1 * torch.randn(1 + 4 * (T + 1), *SHAPE.state_shape)).float()
    sc = s.allocate(pool, max_batch=B, T=T)
    return s, pool, sc, make_inputs(SHAPE, B, T, seed=0)


def test_argument_errors() -> None:
    s, pool, sc, inp = _setup()
    idx = torch.tensor([1, 2], dtype=torch.int32)
    with pytest.raises(ValueError, match="accepted lengths"):
        s.commit(pool, idx, sc, torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="accepted lengths"):
        s.commit(pool, idx, sc, torch.tensor([1, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="accepted has shape"):
        s.commit(pool, idx, sc, torch.tensor([1], dtype=torch.int32))
    with pytest.raises(ValueError, match="dtype"):
        s.commit(pool, idx, sc, torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="allocated for T=2"):
        s.verify(*make_inputs(SHAPE, 2, 3, seed=0).args(), pool, idx, sc)
    with pytest.raises(ValueError, match="max_batch"):
        s.verify(*make_inputs(SHAPE, 3, 2, seed=0).args(), pool, torch.tensor([1, 2, 3], dtype=torch.int32), sc)
    with pytest.raises(ValueError, match="not the pool"):
        s.verify(*inp.args(), pool.to(torch.bfloat16), idx, sc)
    with pytest.raises(ValueError, match="same pool slot twice"):
        s.verify(*inp.args(), pool, torch.tensor([1, 1], dtype=torch.int32), sc)
    with pytest.raises(ValueError, match="allocate"):
        s.verify(*inp.args(), pool, idx, object())
    with pytest.raises(ValueError, match="max_batch"):
        s.allocate(pool, max_batch=0, T=2)
    ts, tpool, tsc, tinp = _setup("token_slots")
    with pytest.raises(ValueError, match="not base slots"):
        ts.verify(*tinp.args(), tpool, torch.tensor([1, 7], dtype=torch.int32), tsc)
    with pytest.raises(ValueError, match="ring_slots"):
        get_strategy("replay_ring", ring_slots=2).allocate(pool, 2, T=4)
    with pytest.raises(ValueError, match="ring_slots"):
        get_strategy("replay_ring", ring_slots=0)
    with pytest.raises(ValueError, match="stash_dtype"):
        get_strategy("recompute", stash_dtype="float16")


def test_custom_slot_table_is_checked() -> None:
    s = get_strategy("token_slots")
    pool = torch.zeros(7, *SHAPE.state_shape)
    good = torch.tensor([[-1, -1, -1], [1, 3, 4], [2, 5, 6]] + [[-1, -1, -1]] * 4, dtype=torch.int32)
    assert torch.equal(s.allocate(pool, 2, 2, slot_table=good).slot_table, good)
    bad = good.clone()
    bad[2, 1] = 4
    with pytest.raises(ValueError, match="twice"):
        s.allocate(pool, 2, 2, slot_table=bad)
    with pytest.raises(ValueError, match="T\\+1"):
        s.allocate(pool, 2, 3, slot_table=good)


def test_registry() -> None:
    st = available_strategies("reference")
    assert {n for n, _ in st} >= set(STRATEGY_NAMES) and all(v.available for v in st.values())
    assert set(strategy_names("reference")) >= set(STRATEGY_NAMES)
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("nope")
    with pytest.raises(ValueError, match="unknown strategy backend"):
        get_strategy("recompute", backend="nope")
    s = get_strategy("recompute_fused")
    assert s.name == "recompute_fused" and s.backend == "reference"
    assert s.kernels_per_step == {"verify": 1, "commit": 0, "total": 1}
    assert get_strategy("full_cache").kernels_per_step["total"] == 2


def test_missing_backend_module_lists_its_strategies_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gdnlab.strategies.flashinfer", None)     # import -> ImportError
    st = available_strategies("flashinfer")
    assert set(STRATEGY_NAMES) <= {n for n, _ in st}
    assert all(not v.available and "failed to import" in v.reason for v in st.values())
    with pytest.raises(UnavailableError, match="cannot run here"):
        get_strategy("recompute", backend="flashinfer")
    assert available_strategies("reference")[("recompute", "reference")].available


def test_triton_without_cuda_or_interpreter_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    st = available_strategies("triton")
    assert all(not v.available for v in st.values())
    assert any("TRITON_INTERPRET" in v.reason or "not installed" in v.reason for v in st.values())
