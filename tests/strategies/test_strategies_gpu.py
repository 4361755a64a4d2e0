"""Verify strategies on a GPU at the real shape: Triton (and FlashInfer where it runs) vs the reference.

Qwen3.5-397B-A17B at TP=4 (H=4, HV=16, K=V=128), B in {1, 64}, T=4, float32 and bfloat16 state:
64 consecutive steps with random accepted lengths, padding rows and dropped verifies, every output
and every committed state compared with :class:`ReferenceBackend` decoding the same tokens one by
one (:func:`gdnlab.strategies.check.check_strategy`); the message reports the state drift. Times
nothing. Strategies that cannot run here skip with the reason from ``available_strategies``.
Each strategy's step (verify + commit, ``validate=False``) is also captured in one CUDA graph and
replayed against the eager loop, on both GPU backends.
"""
from __future__ import annotations

import pytest
import torch

from gdnlab.inputs import make_inputs
from gdnlab.instrument import capture_graph
from gdnlab.kernels.tolerances import assert_close, state_tol
from gdnlab.strategies import STRATEGY_NAMES, available_strategies, get_strategy
from gdnlab.strategies.check import check_strategy

from helpers.shapes import SERVED_TP4

SHAPE = SERVED_TP4
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
pytestmark = pytest.mark.gpu


def _strategy_or_skip(name: str, backend: str):
    st = available_strategies(backend).get((name, backend))
    if st is None:
        pytest.skip(f"{name} is not a {backend} strategy")
    if not st.available:
        pytest.skip(f"{name}/{backend} unavailable: {st.reason}")
    return get_strategy(name, backend=backend)


@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_triton_strategy_64_steps(cuda_device, name: str, batch: int, state: str) -> None:
    s = _strategy_or_skip(name, "triton")
    res = check_strategy(s, SHAPE, batch=batch, T=4, steps=64, state_dtype=DTYPES[state], device=cuda_device,
                         seed=7)
    assert res.ok, res.summary()
    assert s.ops.last_launch.get("interpreter") is False


@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_reference_strategy_on_gpu(cuda_device, name: str, state: str) -> None:
    """The reference strategies (the oracle of the others) agree with decode on the GPU too."""
    res = check_strategy(get_strategy(name), SHAPE, batch=8, T=4, steps=16, state_dtype=DTYPES[state],
                         device=cuda_device, seed=8)
    assert res.ok, res.summary()


def _flashinfer_names() -> list[str]:
    names = [n for n, _ in available_strategies("flashinfer")]
    return names or list(STRATEGY_NAMES)


@pytest.mark.parametrize("state", list(DTYPES))
@pytest.mark.parametrize("name", _flashinfer_names())
def test_flashinfer_strategy_64_steps(cuda_device, name: str, state: str) -> None:
    s = _strategy_or_skip(name, "flashinfer")
    try:
        scratch_ok = s.allocate(torch.zeros((1 + 5 * 5, *SHAPE.state_shape), dtype=DTYPES[state],
                                            device=cuda_device), max_batch=4, T=4)
    except (ValueError, RuntimeError) as exc:
        pytest.skip(f"{name}/flashinfer does not take a {state} state here: {exc}")
    del scratch_ok
    res = check_strategy(s, SHAPE, batch=64, T=4, steps=64, state_dtype=DTYPES[state], device=cuda_device, seed=9)
    assert res.ok, res.summary()


def _steps(s, pool0: torch.Tensor, idx: torch.Tensor, inp, accs: list[torch.Tensor], T: int, graph: bool):
    """Committed states ``[B, HV, V, K]`` after one step per accepted-length draw in ``accs``: eagerly,
    or (``graph``) the first step as the capture's warm-up and the rest as replays of one CUDA graph."""
    dev = idx.device
    pool = pool0.to(dev)
    sc = s.allocate(pool, max_batch=idx.shape[0], T=T)
    acc = torch.zeros(idx.shape[0], dtype=torch.int32, device=dev)

    def step() -> None:
        s.verify(*inp.args(), pool, idx, sc, validate=False)
        s.commit(pool, idx, sc, acc, validate=False)

    acc.copy_(accs[0])
    if graph:
        g = capture_graph(step, warmup=1)          # raises GraphCaptureError saying why
        for a in accs[1:]:
            acc.copy_(a)
            g.replay()
    else:
        step()
        for a in accs[1:]:
            acc.copy_(a)
            step()
    torch.cuda.synchronize()
    every = torch.arange(1, idx.shape[0] + 1, dtype=torch.int32, device=dev)
    return s.state(pool, every, sc)


@pytest.mark.parametrize("backend", ["triton", "flashinfer"])
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_step_captured_in_a_cuda_graph_replays_like_eager(cuda_device, name: str, backend: str) -> None:
    """verify + commit captures in one CUDA graph (no host tensor, copy or sync inside) and 6 replays
    with new accepted lengths end in the eager loop's committed states (bf16 state, B=16, T=4, a
    padding row)."""
    B, T, sd = 16, 4, torch.bfloat16
    eager = _strategy_or_skip(name, backend)
    supports = getattr(type(eager), "supports", None)
    if supports is not None:
        ok, why = supports(sd, T, B, None, HV=SHAPE.HV, K=SHAPE.K, V=SHAPE.V)
        if not ok:
            pytest.skip(f"{name}/{backend}: {why}")
    gen = torch.Generator().manual_seed(4)
    pool0 = (0.1 * torch.randn((1 + B * eager.slots_per_request(T), *SHAPE.state_shape), generator=gen)).to(sd)
    pool0[0] = 0
    order = (torch.randperm(B, generator=gen) + 1).to(torch.int32)
    order[3] = -1
    idx = order.to(cuda_device)
    inp = make_inputs(SHAPE, B, T, device=cuda_device, seed=4)
    accs = [torch.randint(1, T + 1, (B,), generator=gen, dtype=torch.int32) for _ in range(7)]
    want = _steps(eager, pool0, idx, inp, accs, T, graph=False)
    got = _steps(get_strategy(name, backend=backend), pool0, idx, inp, accs, T, graph=True)
    assert_close(got, want, state_tol(sd), f"{name}/{backend}: graph replays vs eager")
