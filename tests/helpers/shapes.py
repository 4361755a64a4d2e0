"""GDN shapes used by several test files (per GPU: H query/key heads, HV value heads, K, V head dims)."""
from __future__ import annotations

from gdnlab.shapes import GDNShape, parse_preset

#: the served shape: Qwen3.5-397B-A17B at TP=4 (H=4, HV=16, K=V=128 per GPU), the GPU tests' shape
SERVED_TP4 = parse_preset("qwen3.5-397b-a17b@tp4")
#: the smallest shape the sweep and the reliability corpus run on the CPU (H=1, HV=2, K=V=16)
TINY = GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=16)
#: small enough for Triton's CPU interpreter, with H < HV (H=2, HV=4, K=V=16)
INTERP_SMALL = GDNShape("interp-small", num_q_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=16)
