"""GDN layer shapes and model presets.

A :class:`GDNShape` describes the Gated DeltaNet (linear-attention) layers of one model *as one GPU
sees them*: after tensor-parallel (TP) sharding both the q/k heads ``H`` and the value heads ``HV``
are divided by TP (vLLM ``mamba_utils.gated_delta_net_state_shape`` and SGLang ``MambaPool`` use
``num_v_heads // tp``; sglang PR #40656 quotes per-rank H=8/HV=16 for Qwen3.5-35B-A3B at TP=2, so H
is divided too). Layer counts are not sharded.

The per-request recurrent state of one layer has shape ``[HV, V, K]`` ("pretranspose", K-last),
the layout of SGLang's pool and of FlashInfer's ``gated_delta_rule_decode_pretranspose``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["GDNShape", "GDNCallDims", "PRESETS", "preset", "preset_names", "parse_preset", "dtype_from_name",
           "dtype_name"]

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    """Map ``"fp32"``/``"float32"``/``"bf16"``/``"bfloat16"``/``"fp16"`` (or a torch dtype) to a torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(set(_DTYPES))}") from None


def dtype_name(dtype: torch.dtype | str) -> str:
    """Short name of a dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
    return str(dtype_from_name(dtype)).removeprefix("torch.")


@dataclass(frozen=True)
class GDNCallDims:
    """Dimensions of one kernel call: batch B, draft tokens T, heads H/HV, head dims K/V, pool slots P."""

    B: int
    T: int
    H: int
    HV: int
    K: int
    V: int
    P: int


@dataclass(frozen=True)
class GDNShape:
    """Per-GPU shape of a model's GDN layers.

    Attributes:
        name: preset name (plus ``@tpN`` when sharded).
        num_q_heads: ``H``, q/k heads per GPU.
        num_v_heads: ``HV``, value heads per GPU (``HV % H == 0``; value head ``j`` reads q/k head
            ``j // (HV // H)``).
        head_k_dim: ``K``, key head dimension (elements).
        head_v_dim: ``V``, value head dimension (elements).
        num_gdn_layers: linear-attention (GDN) layers in the model (not sharded by TP).
        num_full_attn_layers: full-attention layers in the model.
        state_dtype: dtype of the recurrent state pool (``float32`` or ``bfloat16``).
        tp: tensor-parallel degree this shape was sharded for (1 = unsharded).
        hidden_size: model hidden size (elements), for the step-time model.
        source: where the numbers come from.
    """

    name: str
    num_q_heads: int
    num_v_heads: int
    head_k_dim: int = 128
    head_v_dim: int = 128
    num_gdn_layers: int = 1
    num_full_attn_layers: int = 0
    state_dtype: torch.dtype = torch.float32
    tp: int = 1
    hidden_size: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        for f in ("num_q_heads", "num_v_heads", "head_k_dim", "head_v_dim", "tp"):
            if int(getattr(self, f)) <= 0:
                raise ValueError(f"GDNShape.{f} must be a positive integer, got {getattr(self, f)!r}")
        if self.num_v_heads % self.num_q_heads:
            raise ValueError(f"GDNShape: num_v_heads ({self.num_v_heads}) must be a multiple of "
                             f"num_q_heads ({self.num_q_heads})")
        object.__setattr__(self, "state_dtype", dtype_from_name(self.state_dtype))

    # short aliases used in formulas
    @property
    def H(self) -> int:
        return self.num_q_heads

    @property
    def HV(self) -> int:
        return self.num_v_heads

    @property
    def K(self) -> int:
        return self.head_k_dim

    @property
    def V(self) -> int:
        return self.head_v_dim

    @property
    def gva_ratio(self) -> int:
        """Value heads per q/k head (``HV // H``)."""
        return self.num_v_heads // self.num_q_heads

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Per-request, per-layer state shape ``(HV, V, K)``."""
        return (self.num_v_heads, self.head_v_dim, self.head_k_dim)

    def state_bytes(self, dtype: torch.dtype | str | None = None) -> int:
        """Bytes of one request's state in one layer."""
        dt = self.state_dtype if dtype is None else dtype_from_name(dtype)
        return self.num_v_heads * self.head_v_dim * self.head_k_dim * torch.empty((), dtype=dt).element_size()

    def with_state_dtype(self, dtype: torch.dtype | str) -> GDNShape:
        """The same shape with another state dtype."""
        return replace(self, state_dtype=dtype_from_name(dtype))

    def shard(self, tp: int) -> GDNShape:
        """Per-GPU shape under tensor parallelism ``tp`` (heads divided, layers kept)."""
        if not isinstance(tp, int) or tp < 1:
            raise ValueError(f"tp must be a positive integer, got {tp!r}")
        if tp == 1:
            return self
        if self.tp != 1:
            raise ValueError(f"shape {self.name!r} is already sharded (tp={self.tp}); shard the unsharded preset")
        bad = [f"{n}={v}" for n, v in (("num_q_heads", self.num_q_heads), ("num_v_heads", self.num_v_heads))
               if v % tp]
        if bad:
            raise ValueError(f"tp={tp} does not divide the heads of {self.name!r} ({', '.join(bad)}); "
                             f"valid tp values: {valid_tp(self)}")
        return replace(self, name=f"{self.name}@tp{tp}", num_q_heads=self.num_q_heads // tp,
                       num_v_heads=self.num_v_heads // tp, tp=tp)

    def call_dims(self, batch: int, T: int = 1, pool_slots: int | None = None) -> GDNCallDims:
        """Dims of a call on this shape: ``batch`` rows of ``T`` tokens on a pool of ``pool_slots`` rows
        (default ``batch + 1``: one slot per row plus the reserved slot 0)."""
        if int(batch) < 1 or int(T) < 1:
            raise ValueError(f"batch and T must be >= 1, got batch={batch!r}, T={T!r}")
        P = int(batch) + 1 if pool_slots is None else int(pool_slots)
        return GDNCallDims(int(batch), int(T), self.H, self.HV, self.K, self.V, P)

    def describe(self) -> str:
        """One-line description, e.g. ``qwen3.5-397b-a17b@tp4: H=4 HV=16 K=128 V=128, 45 GDN layers, bfloat16``."""
        return (f"{self.name}: H={self.H} HV={self.HV} K={self.K} V={self.V}, "
                f"{self.num_gdn_layers} GDN + {self.num_full_attn_layers} full-attn layers, "
                f"state {dtype_name(self.state_dtype)}")


def valid_tp(shape: GDNShape) -> list[int]:
    """TP degrees that divide both head counts."""
    return [t for t in range(1, shape.num_q_heads + 1)
            if shape.num_q_heads % t == 0 and shape.num_v_heads % t == 0]


PRESETS: dict[str, GDNShape] = {
    # Qwen3-Next-80B-A3B: HF transformers configuration_qwen3_next.py defaults
    # (checkpoint Qwen/Qwen3-Next-80B-A3B-Instruct): hidden 2048, 48 layers, full_attention_interval 4
    # (layer i is full iff (i+1) % 4 == 0 -> 36 GDN + 12 full), linear_num_key_heads 16,
    # linear_num_value_heads 32, linear_key/value_head_dim 128. FlashInfer's bench preset agrees
    # ("Qwen3-Next-80B-A3B linear attention config (GVA): q=k=16, v=32, d=128").
    "qwen3-next-80b-a3b": GDNShape(
        "qwen3-next-80b-a3b", 16, 32, 128, 128, 36, 12, torch.float32, 1, 2048,
        "HF transformers configuration_qwen3_next.py; flashinfer benchmarks/bench_gdn_decode.py preset"),
    # Qwen3.5-397B-A17B: 60 layers, hidden 4096, 16 key heads, 64 value heads, 128 dims,
    # full_attention_interval 4 -> 45 GDN + 15 full. Sources: Megatron-bridge test fixture
    # "sample Qwen3.5-397B-A17B MoE configuration", a model table keyed Qwen/Qwen3.5-397B-A17B, and
    # flashinfer commits calling HV=64, K=V=128 "Qwen3.5 dims" (PR #2842, #3147). The seed
    # (SGLang PR #23273) runs it at TP=4 with --mamba-ssm-dtype bfloat16.
    "qwen3.5-397b-a17b": GDNShape(
        "qwen3.5-397b-a17b", 16, 64, 128, 128, 45, 15, torch.bfloat16, 1, 4096,
        "Megatron-bridge Qwen3.5-397B-A17B fixture; flashinfer PR #2842/#3147 'Qwen3.5 dims'"),
    # Qwen3.5-35B-A3B: 40 layers (30 GDN + 10 full), hidden 2048, 16/32 heads, 128 dims; sglang PR
    # #40656 quotes per-rank H=8/HV=16 at TP=2.
    "qwen3.5-35b-a3b": GDNShape(
        "qwen3.5-35b-a3b", 16, 32, 128, 128, 30, 10, torch.bfloat16, 1, 2048,
        "model table keyed Qwen/Qwen3.5-35B-A3B; sglang PR #40656"),
}

_ALIASES = {"qwen3-next": "qwen3-next-80b-a3b", "qwen3.5-397b": "qwen3.5-397b-a17b",
            "qwen3.5-35b": "qwen3.5-35b-a3b"}


def preset_names() -> list[str]:
    """Names accepted by :func:`preset` (aliases included)."""
    return sorted(PRESETS) + sorted(_ALIASES)


def preset(name: str, tp: int = 1, state_dtype: torch.dtype | str | None = None) -> GDNShape:
    """A model preset, sharded for ``tp`` GPUs.

    ``preset("qwen3.5-397b-a17b", tp=4)`` gives H=4, HV=16, K=V=128 per GPU.
    Raises ``ValueError`` for an unknown name or a ``tp`` that does not divide the heads.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    shape = PRESETS[key].shard(tp)
    return shape if state_dtype is None else shape.with_state_dtype(state_dtype)


def parse_preset(text: str | GDNShape, state_dtype: torch.dtype | str | None = None) -> GDNShape:
    """``"qwen3.5-397b-a17b@tp4"`` (or ``"qwen3.5-397b-a17b"``, tp 1) -> the sharded :class:`GDNShape`.

    A :class:`GDNShape` passes through (with ``state_dtype`` applied). The one parser of ``NAME@tpN``
    strings: sweep presets, counters and the model all use it."""
    if isinstance(text, GDNShape):
        return text if state_dtype is None else text.with_state_dtype(state_dtype)
    name, sep, tp_s = str(text).strip().partition("@")
    tp = 1
    if sep:
        if not tp_s.lower().startswith("tp") or not tp_s[2:].isdigit() or int(tp_s[2:]) < 1:
            raise ValueError(f"preset {text!r}: expected NAME or NAME@tpN (e.g. qwen3.5-397b-a17b@tp4)")
        tp = int(tp_s[2:])
    return preset(name, tp=tp, state_dtype=state_dtype)
