from __future__ import annotations

import pytest
import torch

from gdnlab.shapes import preset
from gdnlab.state import PoolFullError, StatePool


def test_alloc_free_and_reserved_slot():
    pool = StatePool((2, 4, 4), capacity=3)
    assert pool.tensor.shape == (4, 2, 4, 4) and pool.num_slots == 4
    a = pool.alloc(3)
    assert a.dtype == torch.int32 and StatePool.PADDING_SLOT not in a.tolist() and sorted(a.tolist()) == [1, 2, 3]
    with pytest.raises(PoolFullError):
        pool.alloc(1)
    pool.free(a[:1])
    assert pool.alloc(1).tolist() == a[:1].tolist()
    with pytest.raises(ValueError, match="not currently allocated"):
        pool.free([0])


def test_batch_indices_padding():
    pool = StatePool((1, 2, 2), capacity=4)
    idx = pool.batch_indices(pool.alloc(2), pad_to=5)
    assert idx.tolist()[2:] == [-1, -1, -1]
    with pytest.raises(ValueError):
        pool.batch_indices(idx, pad_to=2)


def test_layers_dtype_and_seeded_init():
    s = preset("qwen3.5-397b-a17b", tp=8)
    p1 = StatePool(s, capacity=2, layers=3).randomize_(seed=5)
    p2 = StatePool(s, capacity=2, layers=3).randomize_(seed=5)
    assert p1.tensor.shape == (3, 3, 8, 128, 128) and p1.dtype == torch.bfloat16
    assert torch.equal(p1.tensor, p2.tensor) and p1.layer(1).shape == (3, 8, 128, 128)
    assert torch.count_nonzero(p1.zero_().tensor) == 0
    with pytest.raises(ValueError):
        StatePool(s, capacity=2, dtype="float16")


def test_free_twice_in_one_call_and_negative_alloc_are_rejected():
    pool = StatePool((1, 2, 2), capacity=3)
    a = pool.alloc(2)
    with pytest.raises(ValueError, match="twice"):
        pool.free([int(a[0]), int(a[0])])
    assert pool.num_free == 1                      # nothing was freed by the refused call
    pool.free(a)
    got = pool.alloc(3).tolist()
    assert len(set(got)) == 3                      # no slot handed out twice
    with pytest.raises(ValueError, match="n must be >= 0"):
        pool.alloc(-1)
