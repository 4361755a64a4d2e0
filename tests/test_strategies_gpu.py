"""Verify strategies on a GPU at the real shape: Triton (and FlashInfer where it runs) vs the reference.

Qwen3.5-397B-A17B at TP=4 (H=4, HV=16, K=V=128), B in {1, 64}, T=4, float32 and bfloat16 state:
64 consecutive steps with random accepted lengths, padding rows and dropped verifies, every output
and every committed state compared with :class:`ReferenceBackend` decoding the same tokens one by
one (:func:`gdnlab.strategies.check.check_strategy`); the message reports the state drift. Times
nothing. Strategies that cannot run here skip with the reason from ``available_strategies``.
"""
from __future__ import annotations

import pytest
import torch

from gdnlab.shapes import parse_preset
from gdnlab.strategies import STRATEGY_NAMES, available_strategies, get_strategy
from gdnlab.strategies.check import check_strategy

SHAPE = parse_preset("qwen3.5-397b-a17b@tp4")
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
