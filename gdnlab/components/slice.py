"""A synthetic decoder slice: a few GDN layers and one full-attention layer, each with its MoE block, at
the served model's per-GPU shapes, plus the lm_head and the MTP draft layer used by the same step.

``SyntheticSlice(shapes, ...)`` builds the layers once (random weights); ``bind(point, ...)`` binds
them to one step (:class:`gdnlab.components.layers.StepPoint`) and returns a :class:`BoundSlice`
whose :meth:`BoundSlice.step_ops` are what one engine step runs on one GPU for these layers: every
layer's ops in order, then the ops deferred to after the forward (the GDN commit of an MTP verify).
``step_ops`` are captured as one CUDA graph per step by the benchmark. :meth:`BoundSlice.recipe`
counts the step's ops by component, which is what the composition
(:mod:`gdnlab.components.compose`) multiplies the component times by.

Layer order follows the models' ``full_attention_interval = 4`` (layers 0-2 GDN, layer 3 full
attention). The lm_head and the draft layer are bound alongside but are not part of the slice step.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from .attention import make_attention
from .dims import ComponentShapes
from .layers import (
    AttentionMixer,
    Bound,
    DecoderLayer,
    GDNMixer,
    LMHead,
    MoEBlock,
    MTPDraft,
    Op,
    StepPoint,
    tokens_hidden,
)

__all__ = ["SyntheticSlice", "BoundSlice", "DEFAULT_PATTERN"]

#: layer kinds of the default slice: three GDN layers then one full-attention layer
DEFAULT_PATTERN: tuple[str, ...] = ("gdn", "gdn", "gdn", "attn")


@dataclass
class BoundSlice:
    """A slice bound to one step. ``x``: the step's input hidden states ``[N, hidden]``."""

    point: StepPoint
    x: torch.Tensor
    layers: list[Bound]
    kinds: tuple[str, ...]
    lm_head: Bound | None = None
    draft: Bound | None = None
    info: dict = field(default_factory=dict)

    def step_ops(self) -> list[Op]:
        """The step: every layer's ops in order, then every layer's post ops (commits)."""
        return [op for b in self.layers for op in b.ops] + [op for b in self.layers for op in b.post]

    def run(self) -> torch.Tensor:
        """Run the step eagerly; returns the last layer's output ``[N, hidden]``."""
        for op in self.step_ops():
            op()
        return self.layers[-1].output()

    def output(self) -> torch.Tensor:
        return self.layers[-1].output()

    def recipe(self) -> dict[str, int]:
        """Number of ops of each component in one step (e.g. ``{"gdn.in_proj": 3, "moe.experts": 4}``)."""
        return dict(Counter(op.component for op in self.step_ops()))

    def set_kv_len(self, kv_len: int) -> None:
        """Re-plan every attention op (slice and draft) for another KV length (host side)."""
        self.point = StepPoint(self.point.mode, self.point.batch, self.point.draft_tokens, kv_len)
        for b in [*self.layers, self.draft]:
            if b is not None and b.set_kv_len is not None:
                b.set_kv_len(kv_len)

    def first_of(self, kind: str) -> Bound:
        """The first bound layer of ``kind`` (``"gdn"`` or ``"attn"``)."""
        return self.layers[self.kinds.index(kind)]


class SyntheticSlice:
    """Layers with random weights for ``shapes`` (per GPU).

    Args:
        shapes: per-GPU component shapes (:func:`gdnlab.components.dims.component_shapes`).
        pattern: layer kinds in order (default :data:`DEFAULT_PATTERN`).
        dtype: weights and activations (bf16 on GPU).
        device: where everything lives.
        attn_impl: ``"flashinfer"`` or ``"sdpa"`` (:mod:`gdnlab.components.attention`).
        moe_impl: ``"grouped_mm"`` or ``"bmm"``.
        max_batch, max_kv_len: the KV caches are sized for these.
        page_size: paged-KV page size (tokens).
        with_draft: also build the MTP draft layer (its own attention cache and MoE block).
        with_lm_head: also build the lm_head.
    """

    def __init__(self, shapes: ComponentShapes, *, pattern: tuple[str, ...] = DEFAULT_PATTERN,
                 dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu", attn_impl: str = "sdpa",
                 moe_impl: str = "grouped_mm", max_batch: int = 1, max_kv_len: int = 1024, page_size: int = 16,
                 with_draft: bool = True, with_lm_head: bool = True, seed: int = 0) -> None:
        bad = [k for k in pattern if k not in ("gdn", "attn")]
        if bad or not pattern:
            raise ValueError(f"slice pattern {pattern!r}: expected a non-empty sequence of 'gdn'/'attn'")
        self.shapes, self.pattern, self.dtype = shapes, tuple(pattern), dtype
        self.device = torch.device(device)
        self.attn_impl, self.moe_impl, self.page_size = attn_impl, moe_impl, page_size

        def attention(s: int) -> AttentionMixer:
            kern = make_attention(attn_impl, shapes.q_heads_per_gpu, shapes.kv_heads_per_gpu, shapes.attn_head_dim,
                                  max_batch, max_kv_len, dtype, self.device, page_size)
            return AttentionMixer(shapes, kern, dtype, self.device, seed=s)

        self.layers: list[DecoderLayer] = []
        for i, kind in enumerate(self.pattern):
            s = seed + 100 * i
            mixer = GDNMixer(shapes, dtype, self.device, seed=s) if kind == "gdn" else attention(s)
            self.layers.append(DecoderLayer(mixer, MoEBlock(shapes, dtype, self.device, moe_impl, seed=s + 1)))
        self.lm_head = LMHead(shapes, dtype, self.device, seed=seed + 7) if with_lm_head else None
        self.draft = None
        if with_draft:
            s = seed + 1000
            layer = DecoderLayer(attention(s), MoEBlock(shapes, dtype, self.device, moe_impl, seed=s + 1))
            self.draft = MTPDraft(shapes, layer, dtype, self.device, seed=s + 2)

    def bind(self, point: StepPoint, *, backend=None, strategy=None, contiguous_inputs: bool = False,
             seed: int = 11) -> BoundSlice:
        """Bind every layer to ``point`` (state pools, scratch, attention plan) and run nothing.

        ``backend``: GDN kernel backend (decode); ``strategy``: verify strategy (MTP). The lm_head
        runs on the slice output (``N`` tokens); for an MTP step the draft layer runs one draft step
        of ``B`` tokens (a decode point at the same KV length)."""
        x = tokens_hidden(point, self.shapes.hidden, self.dtype, self.device, seed=seed)
        bound: list[Bound] = []
        prev = lambda: x
        for i, layer in enumerate(self.layers):
            b = layer.bind(prev, point, **({"backend": backend, "strategy": strategy,
                                             "contiguous_inputs": contiguous_inputs, "seed": seed + i}
                                            if layer.kind == "gdn" else {}))
            bound.append(b)
            prev = b.output
        lm = self.lm_head.bind(prev, point) if self.lm_head is not None else None
        draft = None
        if self.draft is not None and point.mode == "mtp":
            dpoint = StepPoint("decode", point.batch, point.draft_tokens, point.kv_len)
            draft = self.draft.bind(lambda: x[:point.batch], dpoint)
        info: dict = {}
        for b in bound:
            info.update({k: v for k, v in b.info.items() if v is not None})
        return BoundSlice(point, x, bound, self.pattern, lm, draft, info)
