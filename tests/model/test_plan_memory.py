"""Device memory and the largest concurrency (gdnlab.model.memory) against hand-computed cases: the
served shape's state is 16 x 128 x 128 values per layer and request (1 MiB in float32), 45 GDN layers,
15 full-attention + 1 MTP layers of 1 KV head x 256 x bf16 (1 KiB per token for K and V)."""
from __future__ import annotations

import math

import pytest

from gdnlab.hardware import GPUSpec, spec_for
from gdnlab.model.memory import max_concurrency, memory_need, sglang_reserve_bytes
from gdnlab.model.served import ServedModel

MIB, GIB = 2**20, 2**30
S32 = 16 * 128 * 128 * 4          # one float32 state, one layer (bytes)
L = 45                            # GDN layers
KV_TOKEN = 16 * 1024              # KV bytes per context token over 15 + 1 attention layers


def gpu(gib: float) -> GPUSpec:
    return GPUSpec("TestGPU", 9, 0, 132, 4800.0, gib, 50.0, "test")


@pytest.fixture(scope="module")
def model():
    return ServedModel.qwen35_397b(tp=4)


def test_parts_by_hand(model):
    R, T, ctx = 10, 4, 1024
    n = memory_need(model, gpu(100), "full_cache", "float32", T, R, ctx, reserve_bytes=10 * GIB)
    assert n.gdn_pool == L * (1 + R) * S32                   # slot 0 + one slot per request
    assert n.gdn_scratch == L * R * T * S32                  # batch-scoped intermediate B x T states
    assert n.kv_cache == R * KV_TOKEN * (ctx + T)
    assert n.reserve == 10 * GIB and n.capacity == 100 * GIB
    assert n.weights == pytest.approx(model.weight_gb_per_gpu() * 1e9)
    ts = memory_need(model, gpu(100), "token_slots", "bfloat16", T, R, ctx, reserve_bytes=0)
    P = 1 + R * (T + 1)                                      # 1 + T states per request live in the pool
    assert ts.gdn_pool == L * P * S32 // 2
    assert ts.gdn_scratch == L * (P * (T + 1) * 4 + (P + 1) * 4)   # slot table + cursor, int32
    dec = memory_need(model, gpu(100), "decode", "bfloat16", 7, R, ctx, reserve_bytes=0)
    assert dec.gdn_pool == L * (1 + R) * S32 // 2 and dec.gdn_scratch == 0 and dec.kv_cache == R * KV_TOKEN * (ctx + 1)


def test_max_concurrency_by_hand(model):
    ctx, T = 1024, 4
    fixed = model.weight_gb_per_gpu() * 1e9 + 10 * GIB + L * S32
    per = L * S32 * (1 + T) + KV_TOKEN * (ctx + T)           # pool row + T intermediates + KV
    want = math.floor((100 * GIB - fixed) / per)
    cap = max_concurrency(model, gpu(100), "full_cache", "float32", T, ctx, reserve_bytes=10 * GIB)
    assert cap.requests == want == 155
    assert "GDN state pool + verify scratch" in cap.limited_by and "225 MiB per request" in cap.limited_by
    assert memory_need(model, gpu(100), "full_cache", "float32", T, want, ctx, reserve_bytes=10 * GIB).fits
    assert not memory_need(model, gpu(100), "full_cache", "float32", T, want + 1, ctx, reserve_bytes=10 * GIB).fits
    # token_slots keeps 1 + T states per request in the pool: (1 + T) x the decode pool
    dec = memory_need(model, gpu(100), "decode", "float32", 1, 100, ctx, reserve_bytes=0)
    ts = memory_need(model, gpu(100), "token_slots", "float32", T, 100, ctx, reserve_bytes=0)
    assert (ts.gdn_pool - L * S32) == (1 + T) * (dec.gdn_pool - L * S32)
    # recompute: pool + stash B x T entries (u [16,128] + k [16,128] + g [16], float32) + two int32 rows
    long = max_concurrency(model, gpu(100), "recompute", "bfloat16", T, 400_000, reserve_bytes=10 * GIB)
    assert "KV cache" in long.limited_by and long.requests == math.floor(
        (100 * GIB - model.weight_gb_per_gpu() * 1e9 - 10 * GIB - L * S32 // 2)
        / (L * S32 // 2 + KV_TOKEN * (400_000 + T) + L * T * (16 * 128 + 16 * 128 + 16) * 4 + L * 2 * 4)) == 5


def test_nothing_fits_says_why(model):
    cap = max_concurrency(model, gpu(40), "decode", "bfloat16", 1, 1024)
    assert cap.requests == 0 and "weights" in cap.limited_by and "exceed" in cap.limited_by


def test_sglang_reserve_by_hand():
    # H200 (141 GiB): chunked prefill 8192, decode graphs up to 512 capped at the running requests
    assert sglang_reserve_bytes(spec_for("H200"), tp=4, max_running_requests=100) == \
        (512 + 8192 * 1.5 + 512 + 200) * MIB
    # GB200 (186 GiB >= 160 GiB): chunked prefill 16384, 512 graphs
    assert sglang_reserve_bytes(spec_for("GB200"), tp=4, max_running_requests=1000) == \
        (512 + 16384 * 1.5 + 512 + 1024) * MIB
    # a 16 GiB GPU: 2048 / 8 graphs, no 10 GiB floor (under 60 GiB)
    assert sglang_reserve_bytes(gpu(16), tp=1, max_running_requests=64) == (512 + 2048 * 1.5 + 128 + 16) * MIB
    # over 60 GiB the reserve is at least 10 GiB
    assert sglang_reserve_bytes(gpu(80), tp=1, max_running_requests=1, chunked_prefill_size=2048) == 10 * 1024 * MIB
