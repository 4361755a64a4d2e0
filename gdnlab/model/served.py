"""The served model as one GPU sees it: parameter counts, weight and KV-cache bytes.

:class:`ServedModel` describes a hybrid GDN + full-attention + MoE model (default: the seed's
Qwen3.5-397B-A17B-NVFP4 at TP 4): layer counts, hidden size and TP degree for the component model
(:class:`~gdnlab.model.composed.ComposedStep`), parameter and byte counts for the roofline model
(:mod:`gdnlab.model.legacy`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..shapes import GDNShape, dtype_name, preset
from ._args import pos_int

__all__ = ["ServedModel"]


@dataclass(frozen=True)
class ServedModel:
    """Architecture of the served model as one GPU sees it (defaults: Qwen3.5-397B-A17B-NVFP4, TP 4).

    Sources: GDN shape from :func:`gdnlab.shapes.preset`. Full attention: 32 q
    heads, 2 KV heads, head_dim 256 (THUDM/slime ``scripts/models/qwen3.5-397B-A17B.sh``:
    ``--num-attention-heads 32 --num-query-groups 2 --kv-channels 256``; the Megatron-bridge
    Qwen3.5-397B-A17B test fixture agrees on 32 / 2), 15 of 60 layers (full_attention_interval 4),
    output gate on q. MoE: 512 experts, top-10, expert intermediate 1024 (both sources); shared
    expert intermediate 1024 (slime; the Megatron-bridge fixture says 4096 — 1024 gives 396 B
    parameters in all, matching "397B", 4096 would give 399 B). Vocab 248320, hidden 4096, untied
    lm_head. NVFP4 = 4-bit values + one FP8 scale per 16 values = 0.5625 byte/param (NVIDIA ModelOpt
    NVFP4); lm_head in bf16 (assumption: ModelOpt leaves lm_head unquantised by default). MTP (NEXTN)
    module: one decoder layer (full attention + MoE) plus a 2*hidden -> hidden ``fc``
    (Megatron-bridge mapping ``mtp.fc``), sharing the lm_head; its weight format is an assumption
    (as the experts). KV cache bf16 (the seed sets no ``--kv-cache-dtype``). TP 4 > 2 KV heads:
    SGLang replicates KV heads, one per GPU.
    """

    name: str = "Qwen3.5-397B-A17B-NVFP4"
    tp: int = 4
    gdn: GDNShape = field(default_factory=lambda: preset("qwen3.5-397b-a17b", tp=4))
    num_layers: int = 60
    hidden_size: int = 4096
    num_full_attn_layers: int = 15
    attn_q_heads: int = 32
    attn_kv_heads: int = 2
    attn_head_dim: int = 256
    kv_bytes: float = 2.0
    num_experts: int = 512
    experts_per_token: int = 10
    moe_intermediate: int = 1024
    shared_expert_intermediate: int = 1024
    vocab_size: int = 248320
    weight_bytes_per_param: float = 0.5625
    lm_head_bytes_per_param: float = 2.0
    mtp_layers: int = 1

    def __post_init__(self) -> None:
        for f in ("tp", "num_layers", "hidden_size", "attn_q_heads", "attn_kv_heads", "attn_head_dim",
                  "num_experts", "experts_per_token", "moe_intermediate", "vocab_size"):
            pos_int(f"ServedModel.{f}", getattr(self, f))
        for f in ("num_full_attn_layers", "shared_expert_intermediate", "mtp_layers"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"ServedModel.{f} must be an integer >= 0, got {v!r}")
        if self.experts_per_token > self.num_experts:
            raise ValueError("ServedModel.experts_per_token must not exceed num_experts")
        if self.num_full_attn_layers > self.num_layers:
            raise ValueError("ServedModel.num_full_attn_layers must not exceed num_layers")
        for f in ("kv_bytes", "weight_bytes_per_param", "lm_head_bytes_per_param"):
            if not float(getattr(self, f)) > 0:
                raise ValueError(f"ServedModel.{f} must be > 0 (bytes), got {getattr(self, f)!r}")
        if self.gdn.tp != self.tp:
            raise ValueError(f"ServedModel.gdn is sharded for tp={self.gdn.tp} but tp={self.tp}")

    @classmethod
    def qwen35_397b(cls, tp: int = 4, weights: Literal["nvfp4", "fp8"] = "nvfp4") -> ServedModel:
        """The seed's model at another TP degree or in FP8 (e.g. for Hopper, which has no FP4 tensor
        cores: FP8 = 1 byte/param + per-block scales, taken as 1.0 B/param)."""
        bpp = {"nvfp4": 0.5625, "fp8": 1.0}
        if weights not in bpp:
            raise ValueError(f"weights must be 'nvfp4' or 'fp8', got {weights!r}")
        return cls(name=f"Qwen3.5-397B-A17B-{weights.upper()}", tp=tp,
                   gdn=preset("qwen3.5-397b-a17b", tp=tp), weight_bytes_per_param=bpp[weights])

    # parameter counts (whole model)
    @property
    def expert_params(self) -> float:
        """Parameters of one routed expert in one layer (gate, up, down)."""
        return 3.0 * self.hidden_size * self.moe_intermediate

    @property
    def gdn_layer_params(self) -> float:
        """Projections of one GDN layer (in: q, k, v, z, b, a; out)."""
        H, HV, K, V = self.gdn.H * self.tp, self.gdn.HV * self.tp, self.gdn.K, self.gdn.V
        return float(self.hidden_size * (2 * H * K + 2 * HV * V + 2 * HV) + HV * V * self.hidden_size)

    @property
    def attn_layer_params(self) -> float:
        """Projections of one full-attention layer (q with output gate, k, v, o)."""
        q = self.hidden_size * self.attn_q_heads * self.attn_head_dim * 2
        kv = self.hidden_size * self.attn_kv_heads * self.attn_head_dim * 2
        return float(q + kv + self.attn_q_heads * self.attn_head_dim * self.hidden_size)

    @property
    def _shared_params(self) -> float:
        return 3.0 * self.hidden_size * self.shared_expert_intermediate + self.hidden_size * self.num_experts

    @property
    def dense_params(self) -> float:
        """Non-expert, non-embedding parameters: GDN and attention projections, shared experts, routers."""
        n_gdn = self.num_layers - self.num_full_attn_layers
        return n_gdn * self.gdn_layer_params + self.num_full_attn_layers * self.attn_layer_params \
            + self.num_layers * self._shared_params

    @property
    def total_params(self) -> float:
        return self.dense_params + self.num_layers * self.num_experts * self.expert_params \
            + 2.0 * self.vocab_size * self.hidden_size

    @property
    def active_params(self) -> float:
        """Parameters one token touches (lm_head included, embedding row excluded)."""
        return self.dense_params + self.num_layers * self.experts_per_token * self.expert_params \
            + self.vocab_size * self.hidden_size

    @property
    def kv_heads_per_gpu(self) -> int:
        return max(1, self.attn_kv_heads // self.tp)

    @property
    def kv_bytes_per_token_layer(self) -> float:
        """KV-cache bytes per context token per full-attention layer on one GPU (K and V)."""
        return 2.0 * self.kv_heads_per_gpu * self.attn_head_dim * self.kv_bytes

    def weight_bytes(self, tokens: float, *, draft: bool = False) -> float:
        """Weight bytes one GPU reads in a forward over ``tokens`` tokens (expected, uniform routing).

        Target: dense + lm_head + the touched experts of every layer. Draft (``draft=True``): the MTP
        layer(s) (attention, shared expert, router, touched experts), its ``fc`` and the lm_head.
        """
        m = max(float(tokens), 0.0)
        touched = self.num_experts * (1.0 - (1.0 - self.experts_per_token / self.num_experts) ** m)
        bpp = self.weight_bytes_per_param
        lm = self.vocab_size * self.hidden_size * self.lm_head_bytes_per_param
        if draft:
            layer = self.attn_layer_params + self._shared_params + 2.0 * self.hidden_size**2
            return (self.mtp_layers * (layer + touched * self.expert_params) * bpp + lm) / self.tp
        return (self.dense_params * bpp + self.num_layers * touched * self.expert_params * bpp + lm) / self.tp

    def weight_gb_per_gpu(self) -> float:
        """Resident weights per GPU (GB = 1e9 bytes): target + MTP module, embedding and lm_head."""
        bpp = self.weight_bytes_per_param
        emb = self.vocab_size * self.hidden_size
        mtp = self.mtp_layers * (self.attn_layer_params + self._shared_params
                                 + self.num_experts * self.expert_params + 2.0 * self.hidden_size**2) * bpp
        body = (self.total_params - 2 * emb) * bpp
        return (body + 2 * emb * self.lm_head_bytes_per_param + mtp) / self.tp / 1e9

    def describe(self) -> str:
        return (f"{self.name} TP{self.tp}: {self.total_params / 1e9:.0f}B params "
                f"({self.active_params / 1e9:.1f}B active), {self.weight_bytes_per_param:g} B/param, "
                f"{self.num_layers - self.num_full_attn_layers} GDN (HV={self.gdn.HV}/GPU, "
                f"{dtype_name(self.gdn.state_dtype)} state) + {self.num_full_attn_layers} full-attn layers "
                f"({self.kv_heads_per_gpu} KV head x {self.attn_head_dim}/GPU)")
