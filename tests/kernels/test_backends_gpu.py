"""Every registered GDN backend that can run here, against the PyTorch reference, on the GPU.

Backends come from the registry (:func:`gdnlab.kernels.backend_names`, minus ``reference``), so a new
backend (FlashInfer, ...) is covered as soon as it is registered; one that cannot run here skips with
its :func:`~gdnlab.kernels.available_backends` reason, and without CUDA everything skips through the
``cuda_device`` fixture. State dtypes a backend does not support (``decode_state_dtypes`` /
``verify_state_dtypes``) skip too.

Shape: H=4, HV=16, K=V=128 (``preset("qwen3.5-397b-a17b", tp=4)``). Every call uses a pool of
``2B+8`` slots, the batch's slots a random permutation (never slot 0, SGLang's/gdnlab's padding slot)
and every 5th row (rows 2, 7, 12, ...) padding (-1). The oracle is :class:`ReferenceBackend` in
float64; tolerances come from :mod:`gdnlab.kernels.tolerances`.

Coverage per backend and state dtype (each B and T value at least once, few distinct shapes so
FlashInfer's per-shape JIT stays cheap): decode at T=1 for B in {1, 4, 16, 64, 256}; verify + commit
at T=4 for the same B, and at B=16 for T in {1, 2, 8}; the batch-scoped intermediate check.

Backends may declare where the contract's "untouched" promises are relaxed (FlashInfer's bf16
kernels): ``scratch_slots_for(op, dtype)`` lists pool slots a call may overwrite for padding rows and
``writes_padding_intermediate`` says verify may write padding rows' intermediate rows.
"""
from __future__ import annotations

import functools

import pytest
import torch

from gdnlab.inputs import make_inputs
from gdnlab.kernels import available_backends, backend_names, get_backend
from gdnlab.kernels import tolerances as tol
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.kernels.validation import GDNCallDims

from helpers.shapes import SERVED_TP4

pytestmark = pytest.mark.gpu

SHAPE = SERVED_TP4  # H=4, HV=16, K=V=128
BACKENDS = [n for n in backend_names() if n != "reference"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCHES = (1, 4, 16, 64, 256)
DECODE_CASES = [(B, 1) for B in BATCHES]
VERIFY_CASES = [(B, 4) for B in BATCHES] + [(16, T) for T in (1, 2, 8)]
SENTINEL = 3.0


@functools.cache
def _status(name: str):
    return available_backends()[name]


@functools.cache
def _instance(name: str):
    return get_backend(name)


def _backend(name: str, op: str, dtype: torch.dtype):
    st = _status(name)
    if not st.available:
        pytest.skip(f"backend {name!r} unavailable here: {st.reason}")
    be = _instance(name)
    allowed = be.decode_state_dtypes if op == "decode" else be.verify_state_dtypes
    if dtype not in allowed:
        pytest.skip(f"backend {name!r} does not support a {dtype} state for {op}")
    return be


def _extra(be, op: str, dtype: torch.dtype, kind: str) -> tol.Tolerance:
    """A backend's declared error beyond the storage tolerances (``extra_tolerance``, e.g. SGLang's
    packed decode rounding beta to bf16), or none."""
    fn = getattr(be, "extra_tolerance", None)
    return (fn(op, dtype) if fn else {}).get(kind, tol.Tolerance(0.0, 0.0))


def _ref() -> ReferenceBackend:
    return ReferenceBackend(compute_dtype=torch.float64)


def _scratch(be, op: str, dtype: torch.dtype) -> tuple[int, ...]:
    fn = getattr(be, "scratch_slots_for", None)
    return tuple(fn(op, dtype)) if fn is not None else ()


def _case(B: int, T: int, dtype: torch.dtype, device: torch.device, seed: int):
    """Inputs, a ``2B+8``-slot random pool, and indices: permuted slots (>= 1), every 5th row padding."""
    P = 2 * B + 8
    gen = torch.Generator().manual_seed(seed)
    idx = (torch.randperm(P - 1, generator=gen)[:B] + 1).to(torch.int32)
    idx[2::5] = -1
    g = torch.Generator(device=device).manual_seed(seed)
    pool = (0.1 * torch.randn((P, *SHAPE.state_shape), generator=g, device=device)).to(dtype)
    inp = make_inputs(SHAPE, B, T, act_dtype=torch.bfloat16, device=device, seed=seed)
    return inp, pool, idx.to(device)


def _live(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(live batch rows, their pool slots) as int64 tensors on idx's device."""
    rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
    return rows, idx.long()[rows]


def _others(P: int, used: torch.Tensor, scratch: tuple[int, ...], device) -> torch.Tensor:
    keep = torch.ones(P, dtype=torch.bool, device=device)
    keep[used] = False
    if scratch:
        keep[list(scratch)] = False
    return torch.nonzero(keep, as_tuple=True)[0]


def _dims(B: int, T: int, P: int) -> GDNCallDims:
    return GDNCallDims(B, T, SHAPE.H, SHAPE.HV, SHAPE.K, SHAPE.V, P)


# ---------------------------------------------------------------------------------------------- decode
@pytest.mark.parametrize("B,T", DECODE_CASES, ids=[f"B{b}" for b, _ in DECODE_CASES])
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("name", BACKENDS)
def test_decode_matches_reference(cuda_device, name, dtype, B, T):
    be = _backend(name, "decode", dtype)
    inp, pool0, idx = _case(B, T, dtype, cuda_device, seed=100 + B)
    pool, pool_ref = pool0.clone(), pool0.clone()
    o = be.decode(*inp.args(), pool, idx)
    o_ref = _ref().decode(*inp.args(), pool_ref, idx)
    torch.cuda.synchronize()
    assert be.last_path.op == "decode"
    rows, slots = _live(idx)
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, dtype) + _extra(be, "decode", dtype, "output"),
                     f"{name} decode output")
    pad = torch.nonzero(idx < 0, as_tuple=True)[0]
    assert torch.all(o[pad] == 0), f"{name}: padding rows' outputs must be zero"
    tol.assert_close(pool[slots], pool_ref[slots], tol.state_tol(dtype) + _extra(be, "decode", dtype, "state"),
                     f"{name} decode pool rows")
    others = _others(pool.shape[0], slots, _scratch(be, "decode", dtype), cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: decode changed pool slots it does not own"


# ---------------------------------------------------------------------------------------------- verify
@pytest.mark.parametrize("B,T", VERIFY_CASES, ids=[f"B{b}-T{t}" for b, t in VERIFY_CASES])
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("name", BACKENDS)
def test_verify_and_commit_match_reference(cuda_device, name, dtype, B, T):
    be = _backend(name, "verify", dtype)
    inp, pool0, idx = _case(B, T, dtype, cuda_device, seed=200 + 10 * B + T)
    P = pool0.shape[0]
    pool, pool_ref = pool0.clone(), pool0.clone()
    inter = be.new_intermediate(_dims(B, T, P), pool).fill_(SENTINEL)
    o, inter_out = be.verify(*inp.args(), pool, idx, intermediate=inter)
    ref = _ref()
    o_ref, inter_ref = ref.verify(*inp.args(), pool_ref, idx)
    torch.cuda.synchronize()
    assert inter_out is inter and be.last_path.op == "verify"
    rows, slots = _live(idx)
    pad = torch.nonzero(idx < 0, as_tuple=True)[0]
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, dtype), f"{name} verify output")
    assert torch.all(o[pad] == 0), f"{name}: padding rows' outputs must be zero"
    tol.assert_close(inter[rows], inter_ref[rows], tol.intermediate_tol(inter.dtype, dtype),
                     f"{name} verify intermediate")
    if not (getattr(be, "writes_padding_intermediate", False) and dtype == torch.bfloat16):
        assert torch.all(inter[pad] == SENTINEL), f"{name}: verify wrote padding rows' intermediate rows"
    others = _others(P, torch.zeros(0, dtype=torch.long, device=cuda_device), _scratch(be, "verify", dtype),
                     cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: verify must not change the pool"

    # commit a random accepted prefix (1..T) from each side's own intermediate buffer
    gen = torch.Generator().manual_seed(300 + B + T)
    accepted = torch.randint(1, T + 1, (B,), generator=gen, dtype=torch.int32).to(cuda_device)
    be.commit(pool, idx, inter, accepted)
    ref.commit(pool_ref, idx, inter_ref, accepted)
    torch.cuda.synchronize()
    tol.assert_close(pool[slots], pool_ref[slots], tol.commit_tol(dtype, inter.dtype), f"{name} pool after commit")
    others = _others(P, slots, (), cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: commit changed pool slots it does not own"


# ---------------------------------------------------------------------- batch-scoped intermediate buffer
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("name", BACKENDS)
def test_intermediate_is_batch_scoped(cuda_device, name, dtype):
    """Pool slots far above B and an intermediate of exactly B rows (the first B rows of a buffer
    with a row per pool slot, as SGLang's ``intermediate_states_buffer[:batch_size]``): row i must be
    batch row i's states. A pool-scoped kernel would write rows ``indices[i]`` of the backing buffer
    (in bounds, so no crash) and leave the view's rows untouched — both are checked."""
    be = _backend(name, "verify", dtype)
    B, T, P = 4, 4, 64
    idx = torch.tensor([63, 41, 50, 37], dtype=torch.int32, device=cuda_device)
    g = torch.Generator(device=cuda_device).manual_seed(7)
    pool = (0.1 * torch.randn((P, *SHAPE.state_shape), generator=g, device=cuda_device)).to(dtype)
    inp = make_inputs(SHAPE, B, T, act_dtype=torch.bfloat16, device=cuda_device, seed=7)
    backing = torch.zeros((P, T, *SHAPE.state_shape), dtype=dtype, device=cuda_device)  # dtype: the pool's
    inter = backing[:B]
    _, inter_out = be.verify(*inp.args(), pool, idx, intermediate=inter)
    _, inter_ref = _ref().verify(*inp.args(), pool.clone(), idx)
    torch.cuda.synchronize()
    assert inter_out.data_ptr() == inter.data_ptr()
    tol.assert_close(inter, inter_ref, tol.intermediate_tol(dtype, dtype), f"{name}: intermediate rows 0..B-1")
    assert torch.all(backing[B:] == 0), f"{name}: verify wrote rows beyond B (pool-scoped intermediate indexing)"


# ---------------------------------------------------------------------- Triton launch configurations
@pytest.mark.parametrize("bv,num_warps", [(8, 1), (16, 1), (32, 1), (32, 2), (64, 4)])
def test_triton_launch_configs(cuda_device, bv, num_warps):
    """The Triton backend's sweepable launch parameters all give the same answer (B=16, T=4, fp32)."""
    _backend("triton", "verify", torch.float32)
    from gdnlab.kernels.triton import TritonBackend
    be = TritonBackend(bv=bv, num_warps=num_warps)
    inp, pool0, idx = _case(16, 4, torch.float32, cuda_device, seed=5)
    o, inter = be.verify(*inp.args(), pool0.clone(), idx)
    o_ref, inter_ref = _ref().verify(*inp.args(), pool0.clone(), idx)
    rows, _ = _live(idx)
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, torch.float32), "triton config output")
    tol.assert_close(inter[rows], inter_ref[rows], tol.intermediate_tol(inter.dtype, torch.float32),
                     "triton config intermediate")
    assert be.last_path.detail["BV"] == bv and be.last_path.detail["num_warps"] == num_warps
