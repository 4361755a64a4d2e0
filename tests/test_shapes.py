"""Presets against their published numbers, TP sharding, and errors."""
from __future__ import annotations

import pytest
import torch

from gdnlab.shapes import GDNShape, dtype_from_name, preset, preset_names


@pytest.mark.parametrize("name,H,HV,K,V,gdn,full,hidden", [
    # HF configuration_qwen3_next.py: 48 layers, interval 4, 16/32 heads, 128 dims, hidden 2048
    ("qwen3-next-80b-a3b", 16, 32, 128, 128, 36, 12, 2048),
    # Qwen3.5-397B-A17B: 60 layers, interval 4, 16/64 heads, 128 dims, hidden 4096
    ("qwen3.5-397b-a17b", 16, 64, 128, 128, 45, 15, 4096),
    ("qwen3.5-35b-a3b", 16, 32, 128, 128, 30, 10, 2048),
])
def test_presets_match_published_configs(name, H, HV, K, V, gdn, full, hidden):
    s = preset(name)
    assert (s.H, s.HV, s.K, s.V, s.num_gdn_layers, s.num_full_attn_layers, s.hidden_size) == \
        (H, HV, K, V, gdn, full, hidden)
    # full_attention_interval 4: every 4th layer is full attention
    assert s.num_full_attn_layers * 4 == s.num_gdn_layers + s.num_full_attn_layers
    assert s.source


def test_tp_sharding_per_gpu_heads():
    s = preset("qwen3.5-397b-a17b", tp=4)
    assert (s.H, s.HV, s.K, s.V) == (4, 16, 128, 128)
    assert s.num_gdn_layers == 45 and s.tp == 4 and s.name.endswith("@tp4")
    assert s.state_bytes() == 16 * 128 * 128 * 2          # 512 KiB per request-layer in bf16
    assert s.state_bytes("float32") == 1 << 20
    assert preset("qwen3-next", tp=8).HV == 4


def test_unknown_preset_names_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'llama'.*qwen3.5-397b-a17b"):
        preset("llama")


@pytest.mark.parametrize("tp", [3, 32, 0, -2])
def test_bad_tp(tp):
    with pytest.raises(ValueError, match="tp"):
        preset("qwen3.5-397b-a17b", tp=tp)


def test_shard_twice_is_refused_and_state_dtype_override():
    s = preset("qwen3-next", tp=2, state_dtype="bf16")
    assert s.state_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="already sharded"):
        s.shard(2)


def test_shape_validation():
    with pytest.raises(ValueError, match="multiple"):
        GDNShape("x", num_q_heads=3, num_v_heads=4)
    with pytest.raises(ValueError, match="positive"):
        GDNShape("x", num_q_heads=0, num_v_heads=4)
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_from_name("int3")
    assert "qwen3.5-397b-a17b" in preset_names()
