"""The engines' own GDN paths on a GPU, at the real shape, against gdnlab's reference.

Qwen3.5-397B-A17B at TP=4 (H=4, HV=16, K=V=128), B in {1, 16, 64, 256}, T in {2, 4, 8}, every state
dtype a path allows (``decode_state_dtypes`` / ``verify_state_dtypes``, ``supports``):

* kernel contract (``sglang_triton``, ``sglang_flashinfer``, ``sglang_cutedsl``, ``vllm_triton``):
  decode, verify and commit vs :class:`ReferenceBackend` in float64, padding rows, permuted slots;
  packed q/k/v (the engines' zero-copy layout) and the engine's own padding launches too;
* strategies (``full_cache`` on sglang_triton / sglang_flashinfer, ``replay_ring`` on sglang_triton,
  ``token_slots`` on vllm_triton / vllm_cuda): :func:`gdnlab.strategies.check.check_strategy` over 16
  steps with random accepted lengths and padding rows (vLLM's verify is not undone by a dropped
  commit: ``drop_every=0`` there); ``vllm_cuda``'s outputs are RMS-normalised, so its states are
  checked by ``check_strategy`` and its outputs against the normalised reference;
* one step of each strategy captured in a CUDA graph replays like the eager loop.

Paths that cannot run here (engine not installed, wrong GPU) skip with their one-line reason.
"""
from __future__ import annotations

import functools

import pytest
import torch

from gdnlab import backends
from gdnlab.inputs import make_inputs
from gdnlab.instrument import capture_graph
from gdnlab.kernels import available_backends, get_backend, make_backend
from gdnlab.kernels import tolerances as tol
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.kernels.sglang import pack_inputs
from gdnlab.strategies import available_strategies, get_strategy
from gdnlab.strategies.check import check_strategy

from helpers.shapes import SERVED_TP4

pytestmark = pytest.mark.gpu

SHAPE = SERVED_TP4
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCHES = (1, 16, 64, 256)
DRAFTS = (2, 4, 8)
KERNEL_BACKENDS = [b.name for b in backends.BACKENDS if b.engine and b.kernels]
STRATEGY_PATHS = [("full_cache", "sglang_triton"), ("full_cache", "sglang_flashinfer"),
                  ("replay_ring", "sglang_triton"), ("token_slots", "vllm_triton"), ("token_slots", "vllm_cuda")]
NONE = tol.Tolerance(0.0, 0.0)


@functools.cache
def _backend(name: str):
    st = available_backends()[name]
    if not st.available:
        pytest.skip(f"backend {name!r} unavailable here: {st.reason}")
    return get_backend(name)


def _extra(be, op: str, dtype: torch.dtype, kind: str) -> tol.Tolerance:
    fn = getattr(be, "extra_tolerance", None)
    return (fn(op, dtype) if fn else {}).get(kind, NONE)


def _case(B: int, T: int, dtype: torch.dtype, device, seed: int):
    P = 2 * B + 8
    gen = torch.Generator().manual_seed(seed)
    idx = (torch.randperm(P - 1, generator=gen)[:B] + 1).to(torch.int32)
    idx[2::5] = -1
    pool = (0.1 * torch.randn((P, *SHAPE.state_shape), generator=gen)).to(dtype).to(device)
    return make_inputs(SHAPE, B, T, device=device, seed=seed), pool, idx.to(device)


def _untouched(be, op, dtype, P, used, device) -> torch.Tensor:
    keep = torch.ones(P, dtype=torch.bool, device=device)
    keep[used] = False
    fn = getattr(be, "scratch_slots_for", None)
    for s in (fn(op, dtype) if fn else ()):
        keep[s] = False
    return torch.nonzero(keep, as_tuple=True)[0]


@pytest.mark.parametrize("packed", [False, True], ids=["separate-qkv", "packed-qkv"])
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_engine_decode(cuda_device, name, state, B, packed) -> None:
    be, dtype = _backend(name), DTYPES[state]
    if dtype not in be.decode_state_dtypes:
        pytest.skip(f"{name} decode takes no {state} state here")
    inp, pool0, idx = _case(B, 1, dtype, cuda_device, seed=10 + B)
    inp = pack_inputs(inp) if packed else inp
    pool, pool_ref = pool0.clone(), pool0.clone()
    o = be.decode(*inp.args(), pool, idx)
    o_ref = ReferenceBackend(compute_dtype=torch.float64).decode(*inp.args(), pool_ref, idx)
    torch.cuda.synchronize()
    rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
    slots = idx.long()[rows]
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, dtype) + _extra(be, "decode", dtype, "output"),
                     f"{name} decode output")
    assert torch.all(o[idx < 0] == 0)
    tol.assert_close(pool[slots].float(), pool_ref[slots].float(),
                     tol.state_tol(dtype) + _extra(be, "decode", dtype, "state"), f"{name} decode pool")
    others = _untouched(be, "decode", dtype, pool.shape[0], slots, cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: decode changed slots it does not own"
    if "qkv" in be.last_path.detail:
        assert be.last_path.detail["qkv"].startswith("packed view" if packed else "concatenated")


@pytest.mark.parametrize("T", DRAFTS)
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_engine_verify_and_commit(cuda_device, name, state, B, T) -> None:
    be, dtype = _backend(name), DTYPES[state]
    if dtype not in be.verify_state_dtypes:
        pytest.skip(f"{name} has no verify for a {state} state here")
    inp, pool0, idx = _case(B, T, dtype, cuda_device, seed=100 * T + B)
    pool, pool_ref = pool0.clone(), pool0.clone()
    ref = ReferenceBackend(compute_dtype=torch.float64)
    o, inter = be.verify(*inp.args(), pool, idx)
    o_ref, inter_ref = ref.verify(*inp.args(), pool_ref, idx)
    torch.cuda.synchronize()
    rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
    slots = idx.long()[rows]
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, dtype), f"{name} verify output")
    tol.assert_close(inter[rows].float(), inter_ref[rows].float(), tol.intermediate_tol(inter.dtype, dtype),
                     f"{name} verify intermediate")
    assert torch.all(o[idx < 0] == 0)
    others = _untouched(be, "verify", dtype, pool.shape[0], torch.zeros(0, dtype=torch.long), cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: verify changed the pool"
    accepted = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(B + T),
                             dtype=torch.int32).to(cuda_device)
    be.commit(pool, idx, inter, accepted)
    ref.commit(pool_ref, idx, inter_ref, accepted)
    torch.cuda.synchronize()
    tol.assert_close(pool[slots].float(), pool_ref[slots].float(), tol.commit_tol(dtype, inter.dtype),
                     f"{name} pool after commit")
    others = _untouched(be, "commit", dtype, pool.shape[0], slots, cuda_device)
    assert torch.equal(pool[others], pool0[others]), f"{name}: commit changed slots it does not own"


@pytest.mark.parametrize("name", ["sglang_triton", "sglang_flashinfer"])
def test_engine_padding_launches_keep_live_rows(cuda_device, name) -> None:
    """``make_backend(name, engine="sglang")`` runs SGLang's launches (no padding fix-ups); live rows
    are bit-identical to the contract mode's."""
    be = _backend(name)
    dtype = be.verify_state_dtypes[0] if be.verify_state_dtypes else pytest.skip(f"{name}: no verify here")
    inp, pool0, idx = _case(16, 4, dtype, cuda_device, seed=5)
    eng = make_backend(name, engine="sglang")
    assert eng.contract_padding is False
    o_c, i_c = be.verify(*inp.args(), pool0.clone(), idx)
    o_e, i_e = eng.verify(*inp.args(), pool0.clone(), idx)
    rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
    assert torch.equal(o_c[rows], o_e[rows]) and torch.equal(i_c[rows], i_e[rows])


def _strategy(name: str, backend: str, **opts):
    st = available_strategies(backend).get((name, backend))
    if st is None or not st.available:
        pytest.skip(f"{name}/{backend} unavailable here: {st.reason if st else 'not implemented'}")
    return get_strategy(name, backend=backend, **opts)


def _sm() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm{major}{minor}"


def _supported(s, dtype, T, B) -> None:
    ok, why = type(s).supports(dtype, T, B, _sm(), HV=SHAPE.HV, K=SHAPE.K,
                               V=SHAPE.V, act_dtype=torch.bfloat16)
    if not ok:
        pytest.skip(f"{s.name}/{s.backend}: {why}")


@pytest.mark.parametrize("T", DRAFTS)
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name,backend", STRATEGY_PATHS, ids=[f"{n}@{b}" for n, b in STRATEGY_PATHS])
def test_engine_strategy_steps(cuda_device, name, backend, state, B, T) -> None:
    s = _strategy(name, backend)
    _supported(s, DTYPES[state], T, B)
    res = check_strategy(s, SHAPE, batch=B, T=T, steps=16, state_dtype=DTYPES[state], device=cuda_device,
                         seed=B + T, drop_every=8 if getattr(s, "drop_safe", True) else 0)
    if getattr(s, "output_is_rms_normalised", False):
        assert not res.problems and max(res.state_ratio) <= 1.0, res.summary()
    else:
        assert res.ok, res.summary()


@pytest.mark.parametrize("state", list(DTYPES))
def test_vllm_cuda_output_is_the_normalised_reference(cuda_device, state) -> None:
    from gdnlab.strategies.vllm.cuda import NORM_EPS
    s = _strategy("token_slots", "vllm_cuda")
    B, T, dtype = 16, 4, DTYPES[state]
    _supported(s, dtype, T, B)
    pool = (0.1 * torch.randn((1 + B * T, *SHAPE.state_shape), generator=torch.Generator().manual_seed(3))).to(dtype)
    pool = pool.to(cuda_device)
    idx = torch.arange(1, B + 1, dtype=torch.int32, device=cuda_device)
    idx[5] = -1
    inp = make_inputs(SHAPE, B, T, device=cuda_device, seed=3)
    sc = s.allocate(pool, B, T)
    o_ref, _ = ReferenceBackend(compute_dtype=torch.float64).verify(*inp.args(), pool.clone(), idx)
    o = s.verify(*inp.args(), pool, idx, sc)
    r = o_ref.double()
    want = (r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + NORM_EPS)).to(o.dtype)
    rows = idx >= 0
    tol.assert_close(o[rows], want[rows], tol.output_tol(o.dtype, dtype), "vllm_cuda normalised output")
    assert torch.all(o[~rows] == 0)


@pytest.mark.parametrize("name,backend", STRATEGY_PATHS, ids=[f"{n}@{b}" for n, b in STRATEGY_PATHS])
def test_engine_step_in_a_cuda_graph(cuda_device, name, backend) -> None:
    """verify + commit (validate=False) captured once and replayed 6 times with new accepted lengths
    ends in the eager loop's committed states (B=16, T=4, a padding row)."""
    B, T = 16, 4
    eager = _strategy(name, backend)
    sd = next((d for d in (torch.bfloat16, torch.float32) if type(eager).supports(
        d, T, B, _sm(), HV=SHAPE.HV, K=SHAPE.K, V=SHAPE.V)[0]), None)
    if sd is None:
        pytest.skip(f"{name}/{backend}: no state dtype runs here")
    gen = torch.Generator().manual_seed(4)
    pool0 = (0.1 * torch.randn((1 + B * eager.slots_per_request(T), *SHAPE.state_shape), generator=gen)).to(sd)
    pool0[0] = 0
    order = (torch.randperm(B, generator=gen) + 1).to(torch.int32)
    order[3] = -1
    idx = order.to(cuda_device)
    inp = make_inputs(SHAPE, B, T, device=cuda_device, seed=4)
    accs = [torch.randint(1, T + 1, (B,), generator=gen, dtype=torch.int32).to(cuda_device) for _ in range(7)]
    out = []
    for s, graph in ((eager, False), (get_strategy(name, backend=backend), True)):
        pool = pool0.to(cuda_device)
        sc = s.allocate(pool, max_batch=B, T=T)
        acc = torch.zeros(B, dtype=torch.int32, device=cuda_device)

        def step(s=s, pool=pool, sc=sc, acc=acc) -> None:
            s.verify(*inp.args(), pool, idx, sc, validate=False)
            s.commit(pool, idx, sc, acc, validate=False)

        acc.copy_(accs[0])
        if graph:
            g = capture_graph(step, warmup=1)
            for a in accs[1:]:
                acc.copy_(a)
                g.replay()
        else:
            for a in accs:
                acc.copy_(a)
                step()
        torch.cuda.synchronize()
        every = torch.arange(1, B + 1, dtype=torch.int32, device=cuda_device)
        out.append(s.state(pool, every, sc))
    tol.assert_close(out[1], out[0], tol.state_tol(sd), f"{name}/{backend}: graph replays vs eager")
