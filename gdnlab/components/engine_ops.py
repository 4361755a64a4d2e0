"""Engine-grade ops of one Qwen3.5 decoder step at per-GPU shapes, each run the way SGLang runs it,
with a plain-torch reference to check its numerics.

Every op is built once (random weights), bound to ``tokens`` rows, and exposes ``ops`` (zero-argument
callables that never synchronise with the host, so a CUDA graph can capture them), ``output()`` and
``reference()`` (float32 torch from the same inputs, written from the maths, not from SGLang's code):

* :class:`BlockFP8Linear` -- a projection with 128x128 block-scaled FP8 weights (the FP8 checkpoint's
  format): activations quantised per token and 128-channel group by SGLang's Triton
  ``_per_token_group_quant_8bit`` (``quantization/fp8_kernel.py``), then SGLang's Triton
  ``_w8a8_block_fp8_matmul`` (``gemm/fp8_kernel.py``) with its tuned tile table
  (:func:`~gdnlab.components.sglang_kernels.block_gemm_config`);
* :class:`FusedMoEFP8` -- the MoE block: bf16 router GEMM, softmax top-k renormalised, SGLang's
  ``fused_moe_kernel`` (``moe/fused_moe_triton_kernels.py``) for the gate/up and down GEMMs of the
  routed experts (FP8 block-scaled, activations quantised as above), SiLU-and-mul, the sum over top-k,
  and the shared expert (block-FP8 GEMMs, sigmoid gate). The token sort / block alignment SGLang does
  in its CUDA helper (``moe_align_block_size``) is done here by :func:`moe_align_torch` in torch
  (graph-safe, fixed sizes) and timed on its own (``eng.moe_align_torch``) so it can be told apart;
* :class:`BF16Linear` -- the lm_head and router GEMMs (cuBLAS through torch, as SGLang runs them).

Attention is :mod:`gdnlab.components.attention` (FlashInfer's paged kernels, bf16 or fp8 KV) or
SGLang's Triton decode attention (:class:`TritonDecodeAttention`). Shapes: activations ``[N, hidden]``
bf16; FP8 = ``torch.float8_e4m3fn``; scales float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as nnf

from .sglang_kernels import (
    ATTENTION_MODULE,
    GEMM_KERNELS,
    MOE_KERNELS,
    QUANT_MODULE,
    block_gemm_config,
    import_sglang,
    jit_from_source,
    kernel,
    moe_config,
)

__all__ = ["FP8", "BLOCK", "quantize_weight", "quantize_act_ref", "moe_align_torch", "BlockFP8Linear", "BF16Linear",
           "FusedMoEFP8", "TritonDecodeAttention", "KernelSet", "load_kernels"]

FP8 = torch.float8_e4m3fn
BLOCK = 128
_FP8_MAX = 448.0


def quantize_weight(w: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """``w [..., N, K]`` -> ``(fp8 [..., N, K], scale [..., N/block, K/block])`` (one scale per
    ``block x block`` tile, amax / 448)."""
    *lead, N, K = w.shape
    t = w.float().reshape(*lead, N // block, block, K // block, block)
    s = t.abs().amax(dim=(-3, -1)).clamp(min=1e-12) / _FP8_MAX
    q = (t / s[..., :, None, :, None]).clamp(-_FP8_MAX, _FP8_MAX).to(FP8).reshape(*lead, N, K)
    return q, s.to(torch.float32)


def dequantize_weight(q: torch.Tensor, s: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    *lead, N, K = q.shape
    t = q.float().reshape(*lead, N // block, block, K // block, block) * s[..., :, None, :, None]
    return t.reshape(*lead, N, K)


def quantize_act_ref(x: torch.Tensor, group: int = BLOCK) -> torch.Tensor:
    """The float32 value an activation row has after per-token-group FP8 quantisation (reference)."""
    M, K = x.shape
    g = x.float().reshape(M, K // group, group)
    s = g.abs().amax(-1, keepdim=True).clamp(min=1e-10) / _FP8_MAX
    return ((g / s).clamp(-_FP8_MAX, _FP8_MAX).to(FP8).float() * s).reshape(M, K)


def moe_align_torch(topk_ids: torch.Tensor, num_experts: int, block_m: int, sorted_ids: torch.Tensor,
                    expert_ids: torch.Tensor, num_post: torch.Tensor) -> None:
    """SGLang's ``moe_align_block_size`` contract in torch, into fixed-size buffers (graph-safe): the
    ``n = topk_ids.numel()`` (token, expert) pairs sorted by expert, each expert's run padded to a
    multiple of ``block_m`` with the sentinel ``n`` (``sorted_ids [P]`` int32), the expert of each
    ``block_m`` block (``expert_ids [P / block_m]``, -1 past the end) and the padded total
    (``num_post [1]``)."""
    flat = topk_ids.reshape(-1).to(torch.int64)
    n = flat.numel()
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat.device).scatter_add_(0, flat,
                                                                                           torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    ends = torch.cumsum(padded, 0)
    starts = ends - padded
    order = torch.argsort(flat, stable=True)
    sorted_e = flat[order]
    first = torch.cumsum(counts, 0) - counts
    dest = starts[sorted_e] + torch.arange(n, device=flat.device) - first[sorted_e]
    sorted_ids.fill_(n)
    sorted_ids.scatter_(0, dest, order.to(sorted_ids.dtype))
    blocks = torch.arange(expert_ids.numel(), device=flat.device) * block_m
    e = torch.searchsorted(ends, blocks, right=True)
    expert_ids.copy_(torch.where(e < num_experts, e, torch.full_like(e, -1)).to(expert_ids.dtype))
    num_post.copy_(ends[-1:].to(num_post.dtype))


@dataclass
class KernelSet:
    """SGLang's kernels the ops launch and how each was obtained (``how``: one line each)."""

    quant: object
    gemm: object
    moe: object
    how: dict = field(default_factory=dict)


def load_kernels() -> KernelSet:
    """SGLang's per-token-group quant, block-FP8 GEMM and fused-MoE kernels (imported, or compiled from
    the installed files: :mod:`gdnlab.components.sglang_kernels`)."""
    how = {}
    try:
        qmod = import_sglang(QUANT_MODULE)
        quant = qmod._per_token_group_quant_8bit
        how["quant"] = f"{QUANT_MODULE}._per_token_group_quant_8bit (imported; Triton)"
    except Exception:  # noqa: BLE001 - fall back to the installed file's source
        quant = jit_from_source(QUANT_MODULE, ("_per_token_group_quant_8bit",))["_per_token_group_quant_8bit"]
        how["quant"] = f"{QUANT_MODULE}._per_token_group_quant_8bit (compiled from the installed file)"
    gemm, how["gemm"] = kernel(*GEMM_KERNELS)
    moe, how["moe"] = kernel(*MOE_KERNELS)
    return KernelSet(quant, gemm, moe, how)


def _quant(ks: KernelSet, x: torch.Tensor, q: torch.Tensor, s: torch.Tensor, group: int = BLOCK) -> None:
    """SGLang's Triton per-token-group quant of ``x [M, K]`` into ``q`` (fp8) and ``s [M, K/group]``,
    launched as ``_per_token_group_quant_8bit_raw`` launches it."""
    M = x.numel() // group
    ks.quant[(M,)](x, q, s, group, group, 1e-10, bit8_min=-_FP8_MAX, bit8_max=_FP8_MAX, BLOCK=group,
                   num_warps=1, num_stages=1)


def _gemm(ks: KernelSet, a_q, a_s, w_q, w_s, out, cfg: dict) -> None:
    """SGLang's ``_w8a8_block_fp8_matmul``, arguments as ``w8a8_block_fp8_matmul_triton`` passes them."""
    import triton

    M, K = a_q.shape
    N = w_q.shape[0]
    grid = (triton.cdiv(M, cfg["BLOCK_SIZE_M"]) * triton.cdiv(N, cfg["BLOCK_SIZE_N"]),)
    ks.gemm[grid](a_q, w_q, out, a_s, w_s, M, N, K, BLOCK, BLOCK, a_q.stride(-2), a_q.stride(-1), w_q.stride(1),
                  w_q.stride(0), out.stride(-2), out.stride(-1), a_s.stride(-2), a_s.stride(-1), w_s.stride(1),
                  w_s.stride(0), **cfg, needs_masking=bool(K % cfg["BLOCK_SIZE_K"] != 0))


class BlockFP8Linear:
    """``y [N, out] = x [N, in] @ W^T`` with 128x128 block-scaled FP8 ``W`` (module docstring)."""

    def __init__(self, ks: KernelSet, in_features: int, out_features: int, device, seed: int = 0) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        w = torch.randn((out_features, in_features), generator=gen, device=device) * in_features ** -0.5
        self.ks, self.w_q, self.w_s = ks, *quantize_weight(w)
        self.in_f, self.out_f, self.device = in_features, out_features, torch.device(device)

    def bind(self, x: torch.Tensor) -> None:
        M = x.shape[0]
        self.x = x
        self.a_q = torch.empty((M, self.in_f), dtype=FP8, device=self.device)
        self.a_s = torch.empty((M, self.in_f // BLOCK), dtype=torch.float32, device=self.device)
        self.out = torch.empty((M, self.out_f), dtype=x.dtype, device=self.device)
        self.cfg, self.cfg_how = block_gemm_config(self.out_f, self.in_f, M)

    @property
    def ops(self):
        return [lambda: _quant(self.ks, self.x, self.a_q, self.a_s),
                lambda: _gemm(self.ks, self.a_q, self.a_s, self.w_q, self.w_s, self.out, self.cfg)]

    def run(self) -> torch.Tensor:
        for op in self.ops:
            op()
        return self.out

    def reference(self) -> torch.Tensor:
        return quantize_act_ref(self.x) @ dequantize_weight(self.w_q, self.w_s).T

    def checks(self) -> dict[str, float]:
        """``gemm``: the last output against float32 from the kernel's own quantised input (exact up to
        bf16 rounding); ``quant``: that input dequantised against the bf16 activation (FP8 rounding)."""
        M = self.x.shape[0]
        a = (self.a_q.float().view(M, -1, BLOCK) * self.a_s[..., None]).view(M, self.in_f)
        return {"gemm": rel_err(self.out, a @ dequantize_weight(self.w_q, self.w_s).T), "quant": rel_err(a, self.x)}


class BF16Linear:
    """``y = x @ W^T`` in bf16 through torch (cuBLAS): the lm_head and the router."""

    def __init__(self, in_features: int, out_features: int, device, dtype=torch.bfloat16, seed: int = 0) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        self.w = (torch.randn((out_features, in_features), generator=gen, device=device)
                  * in_features ** -0.5).to(dtype)

    def bind(self, x: torch.Tensor) -> None:
        self.x = x

    @property
    def ops(self):
        return [lambda: setattr(self, "out", nnf.linear(self.x, self.w))]

    def run(self) -> torch.Tensor:
        self.ops[0]()
        return self.out

    def reference(self) -> torch.Tensor:
        return self.x.float() @ self.w.float().T


_CFG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def _moe_gemm(ks: KernelSet, a_q, a_s, w_q, w_s, out, topw, sorted_ids, expert_ids, num_post, num_valid: int,
              top_k: int, mul_routed: bool, cfg: dict) -> None:
    """SGLang's ``fused_moe_kernel`` for the FP8 W8A8 block-scaled path, with the arguments its
    ``invoke_fused_moe_kernel`` passes (no TMA descriptors, no programmatic dependent launch)."""
    import triton
    import triton.language as tl

    N, K = w_q.shape[1], w_q.shape[2]
    EM = sorted_ids.shape[0]
    c = {k: cfg[k] for k in _CFG_KEYS if k in cfg}
    swap = bool(a_q.is_cuda and torch.cuda.get_device_capability(a_q.device) == (9, 0)
                and c["BLOCK_SIZE_M"] < 64 and c["BLOCK_SIZE_N"] >= 64)
    grid = (triton.cdiv(EM, c["BLOCK_SIZE_M"]) * triton.cdiv(N, c["BLOCK_SIZE_N"]),)
    ks.moe[grid](a_q, None, w_q, None, None, out, a_s, w_s, topw, sorted_ids, expert_ids, num_post, None, N, K, EM,
                 num_valid, a_q.stride(0), a_q.stride(1), w_q.stride(0), w_q.stride(2), w_q.stride(1), 0, 0,
                 out.stride(-2), out.stride(-1), a_s.stride(0), a_s.stride(1), w_s.stride(0), w_s.stride(2),
                 w_s.stride(1), BLOCK, BLOCK, MUL_ROUTED_WEIGHT=mul_routed, top_k=top_k, compute_type=tl.bfloat16,
                 use_fp8_w8a8=True, use_int8_w8a8=False, use_int8_w8a16=False, per_channel_quant=False,
                 even_Ks=bool(K % c["BLOCK_SIZE_K"] == 0), c_sorted=False, swap_ab=swap, FUSE_ADD_TO_OUTPUT=False,
                 MASK_OUTPUT=False, FUSE_SUM_ALL_REDUCE=False, ROUTER_TOPK=1, **c)


class FusedMoEFP8:
    """One MoE block (module docstring): ``E`` experts of intermediate ``inter`` (per GPU), top-``k``,
    hidden ``hidden``, shared expert of intermediate ``shared_inter`` (per GPU)."""

    def __init__(self, ks: KernelSet, hidden: int, inter: int, num_experts: int, top_k: int, shared_inter: int,
                 device, seed: int = 0) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        dev = torch.device(device)
        w13 = torch.randn((num_experts, 2 * inter, hidden), generator=gen, device=dev) * hidden ** -0.5
        w2 = torch.randn((num_experts, hidden, inter), generator=gen, device=dev) * inter ** -0.5
        self.w13_q, self.w13_s = quantize_weight(w13)
        self.w2_q, self.w2_s = quantize_weight(w2)
        del w13, w2
        self.ks, self.H, self.I, self.E, self.k, self.device = ks, hidden, inter, num_experts, top_k, dev
        self.router = BF16Linear(hidden, num_experts, dev, seed=seed + 1)
        self.gate_up = BlockFP8Linear(ks, hidden, 2 * shared_inter, dev, seed=seed + 2)
        self.down = BlockFP8Linear(ks, shared_inter, hidden, dev, seed=seed + 3)
        self.sgate = BF16Linear(hidden, 1, dev, seed=seed + 4)
        self.Is = shared_inter

    def bind(self, x: torch.Tensor) -> None:
        M, dev, k = x.shape[0], self.device, self.k
        n = M * k
        self.x, self.n = x, n
        self.cfg, self.cfg_how = moe_config(self.E, self.I, self.H, k, M)
        bm = int(self.cfg["BLOCK_SIZE_M"])
        P = n * bm if n < self.E + 1 else n + (self.E + 1) * (bm - 1)
        P = (P + bm - 1) // bm * bm
        self.sorted_ids = torch.empty(P, dtype=torch.int32, device=dev)
        self.expert_ids = torch.empty(P // bm, dtype=torch.int32, device=dev)
        self.num_post = torch.empty(1, dtype=torch.int32, device=dev)
        f = lambda *s, dt=torch.bfloat16: torch.empty(s, dtype=dt, device=dev)
        self.a1_q, self.a1_s = f(M, self.H, dt=FP8), f(M, self.H // BLOCK, dt=torch.float32)
        self.c1, self.act = f(M, k, 2 * self.I), f(n, self.I)
        self.a2_q, self.a2_s = f(n, self.I, dt=FP8), f(n, self.I // BLOCK, dt=torch.float32)
        self.c3 = f(M, k, self.H)
        self.router.bind(x)
        self.gate_up.bind(x)
        self.s_act = f(M, self.Is)
        self.down.bind(self.s_act)
        self.sgate.bind(x)

    def _route(self) -> None:
        logits = self.router.run().float()
        w, i = torch.softmax(logits, dim=-1).topk(self.k, dim=-1)
        self.topw, self.topi = (w / w.sum(-1, keepdim=True)).contiguous(), i.to(torch.int32).contiguous()

    def _act(self) -> None:
        h = self.c1.view(self.n, 2 * self.I)
        torch.mul(nnf.silu(h[:, :self.I]), h[:, self.I:], out=self.act)

    def _shared(self) -> None:
        gu = self.gate_up.run()
        torch.mul(nnf.silu(gu[:, :self.Is]), gu[:, self.Is:], out=self.s_act)
        s = self.down.run()
        self.out = self.c3.sum(dim=1) + torch.sigmoid(self.sgate.run()) * s

    def align_op(self):
        return lambda: moe_align_torch(self.topi, self.E, int(self.cfg["BLOCK_SIZE_M"]), self.sorted_ids,
                                       self.expert_ids, self.num_post)

    @property
    def ops(self):
        ks, c = self.ks, self.cfg
        return [self._route, self.align_op(),
                lambda: _quant(ks, self.x, self.a1_q, self.a1_s),
                lambda: _moe_gemm(ks, self.a1_q, self.a1_s, self.w13_q, self.w13_s, self.c1, self.topw,
                                  self.sorted_ids, self.expert_ids, self.num_post, self.n, self.k, False, c),
                self._act,
                lambda: _quant(ks, self.act, self.a2_q, self.a2_s),
                lambda: _moe_gemm(ks, self.a2_q, self.a2_s, self.w2_q, self.w2_s, self.c3, self.topw,
                                  self.sorted_ids, self.expert_ids, self.num_post, self.n, 1, True, c),
                self._shared]

    def run(self) -> torch.Tensor:
        for op in self.ops:
            op()
        return self.out

    def _weights_f32(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The dequantised expert weights (float32, ``[E, 2I, H]`` and ``[E, H, I]``), made once."""
        if not hasattr(self, "_w_f32"):
            self._w_f32 = (dequantize_weight(self.w13_q, self.w13_s), dequantize_weight(self.w2_q, self.w2_s))
        return self._w_f32

    #: token rows of the timed batch a check recomputes in float32 (all when the batch is smaller)
    CHECK_ROWS = 64

    def checks(self) -> dict[str, float]:
        """Relative errors of the last run, on the first :data:`CHECK_ROWS` token rows of the batch it
        ran at, against float32 torch from the same routing (``topi`` / ``topw``): ``gemm1`` (gate/up
        of every routed pair from the kernel's own quantised input), ``gemm2`` (down, weighted, summed
        over top-k, from the kernel's own quantised activation), both exact up to bf16 rounding;
        ``end_to_end`` against a reference that quantises activations in torch (differs by FP8
        rounding)."""
        w13, w2 = self._weights_f32()
        M = self.x.shape[0]
        r = min(M, self.CHECK_ROWS)
        a1 = (self.a1_q.float().view(M, -1, BLOCK) * self.a1_s[..., None]).view(M, self.H)[:r]
        a2 = (self.a2_q.float().view(self.n, -1, BLOCK) * self.a2_s[..., None]).view(M, self.k, self.I)[:r]
        e = self.topi[:r].long()
        h = torch.cat([torch.einsum("mk,mnk->mn", a1, w13[e[:, j]])[:, None] for j in range(self.k)], dim=1)
        y = sum(torch.einsum("mi,mhi->mh", a2[:, j], w2[e[:, j]]) * self.topw[:r, j:j + 1] for j in range(self.k))
        return {"gemm1": rel_err(self.c1[:r], h), "gemm2": rel_err(self.c3[:r].sum(1), y),
                "end_to_end": rel_err(self.out[:r], self.reference(r))}

    def reference(self, rows: int | None = None) -> torch.Tensor:
        """float32 of the first ``rows`` token rows (all by default) from the same routing (``topi``,
        ``topw`` of the last run), dequantised weights and activations quantised per token group in
        torch."""
        w13, w2 = self._weights_f32()
        r = self.x.shape[0] if rows is None else rows
        x = self.x[:r]
        xa = quantize_act_ref(x)
        out = torch.zeros((r, self.H), device=self.device)
        for j in range(self.k):
            e = self.topi[:r, j].long()
            h = torch.einsum("mk,mnk->mn", xa, w13[e])
            a = quantize_act_ref((nnf.silu(h[:, :self.I]) * h[:, self.I:]).to(torch.bfloat16))
            out += torch.einsum("mi,mhi->mh", a, w2[e]) * self.topw[:r, j:j + 1]
        gu = (quantize_act_ref(x) @ dequantize_weight(self.gate_up.w_q, self.gate_up.w_s).T)
        s_act = (nnf.silu(gu[:, :self.Is]) * gu[:, self.Is:]).to(torch.bfloat16)
        s = quantize_act_ref(s_act) @ dequantize_weight(self.down.w_q, self.down.w_s).T
        return out + torch.sigmoid(x.float() @ self.sgate.w.float().T) * s


class TritonDecodeAttention:
    """SGLang's Triton decode attention (``decode_attention_fwd``, the engine's ``--attention-backend
    triton``) over a token-granular KV buffer (page size 1, as that backend's default), ``max_kv_splits``
    = 8 (SGLang's ``--triton-attention-num-kv-splits`` default), every request split 8 ways."""

    impl = "sglang-triton"

    def __init__(self, num_q_heads: int, num_kv_heads: int, head_dim: int, max_batch: int, max_kv_len: int,
                 kv_dtype: torch.dtype, device, splits: int = 8) -> None:
        self.fwd = import_sglang(ATTENTION_MODULE).decode_attention_fwd
        self.how = f"{ATTENTION_MODULE}.decode_attention_fwd (imported; Triton)"
        self.Hq, self.Hkv, self.D, self.splits = num_q_heads, num_kv_heads, head_dim, splits
        self.device, self.kv_dtype = torch.device(device), kv_dtype
        shape = (max_batch * max_kv_len, num_kv_heads, head_dim)
        self.k = (torch.randn(shape, device=self.device) * 0.5).to(kv_dtype)
        self.v = (torch.randn(shape, device=self.device) * 0.5).to(kv_dtype)
        self.max_kv_len = max_kv_len

    def prepare(self, batch: int, kv_len: int) -> None:
        dev = self.device
        self.B, self.L = batch, kv_len
        self.indptr = torch.arange(batch + 1, device=dev, dtype=torch.int32) * kv_len
        self.indices = (torch.arange(batch, device=dev)[:, None] * self.max_kv_len
                        + torch.arange(kv_len, device=dev)[None, :]).reshape(-1).to(torch.int64)
        self.logits = torch.empty((batch, self.Hq, self.splits, self.D), dtype=torch.float32, device=dev)
        self.lse = torch.empty((batch, self.Hq, self.splits), dtype=torch.float32, device=dev)
        self.nsplits = torch.full((batch,), self.splits, dtype=torch.int32, device=dev)
        self.q = torch.randn((batch, self.Hq, self.D), device=dev).to(torch.bfloat16)
        self.o = torch.empty_like(self.q)

    def attend(self) -> torch.Tensor:
        self.fwd(self.q, self.k, self.v, self.o, self.indptr, self.indices, self.logits, self.lse, self.nsplits,
                 self.splits, self.D ** -0.5, 1.0, 1.0)
        return self.o

    def reference(self) -> torch.Tensor:
        B, L = self.B, self.L
        idx = self.indices.view(B, L)
        k, v = self.k.float()[idx].transpose(1, 2), self.v.float()[idx].transpose(1, 2)      # [B, Hkv, L, D]
        q = self.q.float().view(B, self.Hq, 1, self.D)
        o = nnf.scaled_dot_product_attention(q, k, v, scale=self.D ** -0.5, enable_gqa=self.Hq != self.Hkv)
        return o.view(B, self.Hq, self.D)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error ``|got - ref| / |ref|`` (float)."""
    d = (got.float() - ref.float()).norm()
    r = ref.float().norm()
    return float(d / r) if r > 0 else (0.0 if d == 0 else math.inf)
