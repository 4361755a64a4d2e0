"""Per-GPU dimensions of the decoder components of a served hybrid (GDN + full attention) MoE model.

:class:`ComponentShapes` holds what the component benchmarks need beyond :class:`gdnlab.shapes.GDNShape`
(which keeps the GDN heads, the layer counts and the hidden size): full-attention heads, the MoE
block, the vocabulary and the GDN conv kernel. Values are the models' Hugging Face ``config.json``
fields, as restated by public training scripts:

* Qwen3.5-397B-A17B: THUDM/slime ``scripts/models/qwen3.5-397B-A17B.sh``: ``--num-attention-heads
  32 --num-query-groups 2 --kv-channels 256 --hidden-size 4096 --moe-ffn-hidden-size 1024
  --moe-shared-expert-intermediate-size 1024 --moe-router-topk 10 --num-experts 512 --vocab-size
  248320 --rotary-percent 0.25 --attention-output-gate --moe-shared-expert-gate`` (HF names:
  ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``hidden_size``,
  ``moe_intermediate_size``, ``shared_expert_intermediate_size``, ``num_experts_per_tok``,
  ``num_experts``, ``vocab_size``, ``partial_rotary_factor``).
* Qwen3-Next-80B-A3B: THUDM/slime ``scripts/models/qwen3-next-80B-A3B.sh``: 16 attention heads, 2
  query groups, kv-channels 256, hidden 2048, expert and shared-expert intermediate 512, top-10 of
  512 experts, vocab 151936, one MTP layer.
* ``linear_conv_kernel_dim = 4`` for both: HF transformers ``configuration_qwen3_next.py`` default
  (Qwen3.5 keeps the Qwen3-Next linear-attention block).

Tensor parallelism ``tp`` (SGLang's default for these models, no expert parallelism): attention q
heads and GDN heads are divided by ``tp``; KV heads are divided while ``kv_heads >= tp`` and
replicated otherwise (one per GPU at TP 4: SGLang ``QKVParallelLinear`` replicates KV heads when
``tp > num_kv_heads``); expert and shared-expert intermediates are divided by ``tp`` (every GPU
holds a slice of every expert); the vocabulary of the lm_head is divided by ``tp``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..shapes import GDNShape, preset

__all__ = ["ComponentShapes", "component_shapes", "tiny_shapes", "COMPONENT_SOURCES"]

#: preset -> full-model (unsharded) values that :class:`gdnlab.shapes.GDNShape` does not hold
_MODEL_DIMS: dict[str, dict[str, int | float]] = {
    "qwen3.5-397b-a17b": dict(attn_q_heads=32, attn_kv_heads=2, attn_head_dim=256, rotary_fraction=0.25,
                              num_experts=512, experts_per_token=10, moe_intermediate=1024,
                              shared_expert_intermediate=1024, vocab_size=248320, conv_kernel=4),
    "qwen3-next-80b-a3b": dict(attn_q_heads=16, attn_kv_heads=2, attn_head_dim=256, rotary_fraction=0.25,
                               num_experts=512, experts_per_token=10, moe_intermediate=512,
                               shared_expert_intermediate=512, vocab_size=151936, conv_kernel=4),
}

COMPONENT_SOURCES: dict[str, str] = {
    "qwen3.5-397b-a17b": "THUDM/slime scripts/models/qwen3.5-397B-A17B.sh (HF config.json of "
                         "Qwen/Qwen3.5-397B-A17B); conv kernel: HF configuration_qwen3_next.py",
    "qwen3-next-80b-a3b": "THUDM/slime scripts/models/qwen3-next-80B-A3B.sh (HF config.json of "
                          "Qwen/Qwen3-Next-80B-A3B); conv kernel: HF configuration_qwen3_next.py",
}


@dataclass(frozen=True)
class ComponentShapes:
    """Per-GPU shapes of one model's decoder components at tensor parallelism ``tp``.

    ``gdn`` is the sharded GDN shape (H, HV, K, V per GPU; hidden size; layer counts). Full-model
    fields (``attn_q_heads``, ``moe_intermediate``, ...) are unsharded; the ``*_per_gpu`` properties
    give what one GPU holds. All sizes are element counts.
    """

    name: str
    gdn: GDNShape
    attn_q_heads: int
    attn_kv_heads: int
    attn_head_dim: int
    rotary_fraction: float
    num_experts: int
    experts_per_token: int
    moe_intermediate: int
    shared_expert_intermediate: int
    vocab_size: int
    conv_kernel: int = 4
    tp: int = 1
    source: str = ""

    def __post_init__(self) -> None:
        for f in ("attn_q_heads", "attn_kv_heads", "attn_head_dim", "num_experts", "experts_per_token",
                  "moe_intermediate", "shared_expert_intermediate", "vocab_size", "conv_kernel", "tp"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"ComponentShapes.{f} must be a positive integer, got {getattr(self, f)!r}")
        if self.experts_per_token > self.num_experts:
            raise ValueError("ComponentShapes.experts_per_token must not exceed num_experts")
        for f in ("attn_q_heads", "moe_intermediate", "shared_expert_intermediate"):
            if getattr(self, f) % self.tp:
                raise ValueError(f"tp={self.tp} does not divide ComponentShapes.{f}={getattr(self, f)}")

    # ------------------------------------------------------------------ per GPU
    @property
    def hidden(self) -> int:
        return self.gdn.hidden_size

    @property
    def q_heads_per_gpu(self) -> int:
        return self.attn_q_heads // self.tp

    @property
    def kv_heads_per_gpu(self) -> int:
        """KV heads one GPU holds (replicated, one per GPU, when ``tp > attn_kv_heads``)."""
        return max(1, self.attn_kv_heads // self.tp)

    @property
    def rotary_dim(self) -> int:
        return int(self.attn_head_dim * self.rotary_fraction)

    @property
    def moe_intermediate_per_gpu(self) -> int:
        return self.moe_intermediate // self.tp

    @property
    def shared_intermediate_per_gpu(self) -> int:
        return self.shared_expert_intermediate // self.tp

    @property
    def vocab_per_gpu(self) -> int:
        return math.ceil(self.vocab_size / self.tp)

    @property
    def conv_channels(self) -> int:
        """Channels of the GDN causal conv (q, k and v projections): ``2 H K + HV V`` per GPU."""
        g = self.gdn
        return 2 * g.H * g.K + g.HV * g.V

    @property
    def gdn_in_proj_out(self) -> int:
        """Output width of the GDN input projections per GPU: q, k, v, z (``2HK + 2 HV V``) and b, a (``2 HV``)."""
        g = self.gdn
        return 2 * g.H * g.K + 2 * g.HV * g.V + 2 * g.HV

    @property
    def attn_qkv_out(self) -> int:
        """Output width of the attention q/gate/k/v projection per GPU (q and its output gate: ``2 Hq D``)."""
        return (2 * self.q_heads_per_gpu + 2 * self.kv_heads_per_gpu) * self.attn_head_dim

    def kv_cache_bytes(self, batch: int, kv_len: int, page_size: int = 1, dtype: torch.dtype = torch.bfloat16
                       ) -> int:
        """Bytes of one attention layer's K and V for ``batch`` requests of ``kv_len`` tokens (pages rounded up)."""
        tokens = math.ceil(kv_len / page_size) * page_size
        el = torch.empty((), dtype=dtype).element_size()
        return 2 * batch * tokens * self.kv_heads_per_gpu * self.attn_head_dim * el

    def moe_weight_bytes(self, dtype: torch.dtype = torch.bfloat16) -> int:
        """Bytes of one MoE block's weights on one GPU (routed experts, shared expert and its gate, router)."""
        el = torch.empty((), dtype=dtype).element_size()
        h = self.hidden
        routed = self.num_experts * 3 * h * self.moe_intermediate_per_gpu
        shared = 3 * h * self.shared_intermediate_per_gpu + h
        return (routed + shared + h * self.num_experts) * el

    def describe(self) -> dict[str, int | str]:
        """The per-GPU dims as a flat dict (stored with every row)."""
        g = self.gdn
        return {"preset": self.name, "tp": self.tp, "hidden": self.hidden, "gdn_H": g.H, "gdn_HV": g.HV,
                "gdn_K": g.K, "gdn_V": g.V, "conv_kernel": self.conv_kernel, "attn_q_heads": self.q_heads_per_gpu,
                "attn_kv_heads": self.kv_heads_per_gpu, "attn_head_dim": self.attn_head_dim,
                "num_experts": self.num_experts, "experts_per_token": self.experts_per_token,
                "moe_intermediate": self.moe_intermediate_per_gpu,
                "shared_intermediate": self.shared_intermediate_per_gpu, "vocab": self.vocab_per_gpu}


def component_shapes(name: str, tp: int = 1, state_dtype: torch.dtype | str | None = None) -> ComponentShapes:
    """The per-GPU component shapes of preset ``name`` at tensor parallelism ``tp``.

    ``component_shapes("qwen3.5-397b-a17b", 4)``: hidden 4096, GDN H=4 HV=16, 8 q heads + 1 KV head of
    256, 512 experts with 256-wide slices, top-10, vocab slice 62080. Raises ``ValueError`` for a
    preset without component dims or a ``tp`` that does not divide the heads.
    """
    gdn = preset(name, tp=tp, state_dtype=state_dtype)
    key = gdn.name.split("@")[0]
    if key not in _MODEL_DIMS:
        raise ValueError(f"no component dims for preset {name!r}; known: {', '.join(sorted(_MODEL_DIMS))}")
    return ComponentShapes(name=gdn.name, gdn=gdn, tp=tp, source=COMPONENT_SOURCES[key], **_MODEL_DIMS[key])


def tiny_shapes(state_dtype: torch.dtype | str = torch.float32) -> ComponentShapes:
    """A tiny shape for CPU tests (every component builds and runs in milliseconds)."""
    gdn = GDNShape("tiny", 2, 4, 16, 16, 3, 1, state_dtype, 1, 64, "tests")
    return ComponentShapes(name="tiny", gdn=gdn, attn_q_heads=4, attn_kv_heads=1, attn_head_dim=32,
                           rotary_fraction=0.25, num_experts=8, experts_per_token=2, moe_intermediate=32,
                           shared_expert_intermediate=32, vocab_size=128, conv_kernel=4, tp=1, source="tests")

