from __future__ import annotations

import math

import pytest

from gdnlab.hardware import GPU_SPECS, detect, spec_for
from gdnlab.roofline import floor_time_us, gdn_bytes, gdn_flops
from gdnlab.shapes import preset


def test_specs_and_lookup():
    assert spec_for("NVIDIA H100 80GB HBM3").name == "H100-SXM"
    assert spec_for("NVIDIA H200").peak_hbm_gbps == 4800
    assert spec_for("NVIDIA B200").sm == "sm100" and spec_for("GB200").sm_major == 10
    assert all(s.source for s in GPU_SPECS.values())
    with pytest.raises(ValueError, match="unknown GPU"):
        spec_for("Radeon")


def test_detect_without_cuda_is_none():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: detect() returns its spec")
    assert detect() is None


def test_bytes_decode_qwen35_tp4_b256():
    s = preset("qwen3.5-397b-a17b", tp=4)          # H=4, HV=16, K=V=128, bf16 state
    b = gdn_bytes(s, 256, 1, mode="decode")
    state = 256 * 16 * 128 * 128 * 2                # 128 MiB read ...
    assert b.state_read == state and b.state_write == state and b.intermediate_write == 0
    # q,k: 256*4*128 each; v and o: 256*16*128; a, b: 256*16 (bf16) + A_log, dt_bias fp32 + int32 indices
    assert b.inputs == (256 * (2 * 4 * 128 + 16 * 128 + 2 * 16)) * 2 + 2 * 16 * 4 + 256 * 4
    assert b.output == 256 * 16 * 128 * 2
    assert b.total == b.inputs + b.output + 2 * state


def test_bytes_verify_and_padding():
    s = preset("qwen3.5-397b-a17b", tp=4, state_dtype="float32")
    b = gdn_bytes(s, 64, 4, mode="verify", padding_rows=4)
    assert b.state_write == 0 and b.state_read == 60 * 16 * 128 * 128 * 4
    assert b.intermediate_write == 60 * 4 * 16 * 128 * 128 * 4
    assert gdn_flops(s, 64, 4) == 6 * 64 * 4 * 16 * 128 * 128
    assert math.isclose(floor_time_us(3_350_000, 3350.0), 1.0)
    assert math.isnan(floor_time_us(3_350_000, float("nan")))      # unknown GPU: no invented floor
    with pytest.raises(ValueError, match="peak_gbps"):
        floor_time_us(3_350_000, 0.0)
    with pytest.raises(ValueError):
        gdn_bytes(s, 4, 1, mode="prefill")
