"""Synthetic decoder layers with random weights at a served model's per-GPU shapes, split into the ops
the component benchmarks time one by one.

A layer is built once (weights) and *bound* to one step (:class:`StepPoint`: decode of B tokens, or
an MTP verify of B rows x T draft tokens at one KV length). Binding allocates the step's state (GDN
state and conv pools, the strategy's scratch) and returns a :class:`Bound`: the layer's ops in order,
each an :class:`Op` (component name + a zero-argument callable that reads its inputs from, and writes
its outputs to, the bound layer's namespace), the ops that run after the whole forward (``post``:
the GDN commit of an MTP step) and a getter of the output hidden states ``[N, hidden]``. Ops never
synchronise with the host, so any run of them can be captured in one CUDA graph; the first eager
run creates every intermediate, so any single op can also be captured alone.

Ops and their components (``N = B * tokens per row``; shapes per GPU, :mod:`gdnlab.components.dims`):

=====================  ==========================================================================
component              what runs
=====================  ==========================================================================
``gdn.norm``           RMSNorm of the input ``[N, hidden]``
``gdn.in_proj``        ``[N, hidden] x [hidden, 2HK + 2HV V + 2HV]`` (q, k, v, z, b, a)
``gdn.conv1d``         causal depthwise conv (kernel 4) over q, k, v with the request's conv state
                       (gathered from and written back to a conv pool), SiLU
``gdn.recurrent``      decode: the backend's GDN decode kernel (gates fused); MTP: the strategy's
                       ``verify`` (:mod:`gdnlab.strategies`)
``gdn.commit``         MTP only, after the forward: the strategy's ``commit``
``gdn.gated_norm``     ``RMSNorm(o) * SiLU(z)`` per value head
``gdn.out_proj``       ``[N, HV V] x [HV V, hidden]``
``attn.norm``          RMSNorm
``attn.qkv_proj``      ``[N, hidden] x [hidden, (2Hq + 2Hkv) D]`` (q, its output gate, k, v)
``attn.qk_norm_rope``  per-head RMSNorm of q and k, rotary embedding on the first ``rotary_dim``
``attn.kv_write``      append k, v to the KV cache
``attn.attention``     paged decode / verify attention (:mod:`gdnlab.components.attention`)
``attn.out_gate``      ``o * sigmoid(gate)``
``attn.o_proj``        ``[N, Hq D] x [Hq D, hidden]``
``moe.norm``           residual add + RMSNorm
``moe.router``         router GEMM ``[N, hidden] x [hidden, E]``, softmax, top-k, renormalise, sort
                       the ``N k`` assignments by expert, group offsets
``moe.experts``        gather, grouped GEMM gate/up, SiLU-mul, grouped GEMM down, weighted scatter-add
``moe.shared_expert``  shared expert (gate/up, SiLU-mul, down) x sigmoid gate, + residual + routed
``lm_head.norm``       final RMSNorm
``lm_head.gemm``       ``[N, hidden] x [hidden, vocab / tp]``
``mtp.fc``             MTP draft input: ``[norm(emb), norm(h)] x [2 hidden, hidden]``
=====================  ==========================================================================

The routed experts run through ``torch._grouped_mm`` (bf16 grouped GEMM; offsets = cumulative token
counts per expert; weights stored ``[E, out, in]`` and passed transposed, as pytorch/torchtitan
``torchtitan/models/moe.py`` ``GroupedExperts`` does) or, where that is missing, a padded
``torch.bmm`` over every expert with capacity ``N`` (exact, slower). Routing is what random router
weights give on random inputs (close to uniform over experts).

Weights are random (std ``fan_in ** -0.5``) in the activation dtype (bf16 on GPU); GDN ``A_log`` and
``dt_bias`` are float32 as in the checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn.functional as nnf

from .attention import AttentionKernel
from .dims import ComponentShapes

__all__ = ["StepPoint", "Op", "Bound", "GDNMixer", "AttentionMixer", "MoEBlock", "DecoderLayer", "LMHead",
           "MTPDraft", "grouped_mm_available", "STEP_MODES"]

#: the decoder steps the component benchmarks time: a plain decode step (B tokens) or an MTP step
#: (B rows x T draft tokens verified); not the kernel calls of the sweep (``gdnlab.sweep.MODES``)
STEP_MODES: tuple[str, ...] = ("decode", "mtp")
RMS_EPS = 1e-6


@dataclass(frozen=True)
class StepPoint:
    """One step: ``mode`` ``"decode"`` (B tokens) or ``"mtp"`` (B rows x ``draft_tokens`` tokens
    verified), ``batch`` B, ``kv_len`` tokens each request has after the step (prompt + generated)."""

    mode: str
    batch: int
    draft_tokens: int = 4
    kv_len: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in STEP_MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {STEP_MODES}")
        if self.batch < 1 or self.draft_tokens < 1 or self.kv_len < self.tokens_per_row:
            raise ValueError(f"invalid step point {self}")

    @property
    def tokens_per_row(self) -> int:
        return 1 if self.mode == "decode" else self.draft_tokens

    @property
    def tokens(self) -> int:
        return self.batch * self.tokens_per_row


@dataclass
class Op:
    """One timed unit: ``component`` (e.g. ``"gdn.in_proj"``) and a zero-argument callable."""

    component: str
    fn: Callable[[], None]

    def __call__(self) -> None:
        self.fn()


@dataclass
class Bound:
    """A layer bound to one step: ``ops`` in order, ``post`` ops run after the whole forward, the
    output getter, optional ``set_kv_len`` (re-plans attention for another KV length, host side) and
    ``info`` (implementation details stored with the rows)."""

    ops: list[Op]
    output: Callable[[], torch.Tensor]
    post: list[Op] = field(default_factory=list)
    set_kv_len: Callable[[int], None] | None = None
    info: dict = field(default_factory=dict)

    def run(self, with_post: bool = True) -> torch.Tensor:
        for op in self.ops:
            op()
        if with_post:
            for op in self.post:
                op()
        return self.output()


def _w(shape: tuple[int, ...], fan_in: int, dtype, device, gen: torch.Generator) -> torch.Tensor:
    return (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * fan_in ** -0.5).to(dtype)


def _gen(device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return nnf.rms_norm(x, (x.shape[-1],), w, RMS_EPS)


def grouped_mm_available(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> tuple[bool, str]:
    """Whether ``torch._grouped_mm`` runs here for ``dtype`` (tried on a small case), and why not."""
    if not hasattr(torch, "_grouped_mm"):
        return False, f"torch {torch.__version__} has no torch._grouped_mm"
    try:
        a = torch.randn(24, 32, dtype=dtype, device=device)
        b = torch.randn(3, 16, 32, dtype=dtype, device=device)
        offs = torch.tensor([5, 5, 24], dtype=torch.int32, device=device)
        out = torch._grouped_mm(a, b.transpose(-2, -1), offs=offs)
        ref = torch.cat([a[:5] @ b[0].T, a[5:] @ b[2].T])
        if not torch.allclose(out.float(), ref.float(), atol=0.1, rtol=0.05):
            return False, "torch._grouped_mm disagrees with matmul on a test case"
    except Exception as exc:  # noqa: BLE001 - any failure means "use the fallback"
        return False, f"torch._grouped_mm failed: {type(exc).__name__}: {str(exc)[:160]}"
    return True, "ok"


# ============================================================================================ GDN
class GDNMixer:
    """The GDN (linear-attention) mixer of one layer. ``backend``: a :mod:`gdnlab.kernels` backend for
    decode; ``strategy`` (from :func:`gdnlab.strategies.get_strategy`) for MTP verify + commit."""

    kind = "gdn"

    def __init__(self, shapes: ComponentShapes, dtype: torch.dtype, device, seed: int = 0) -> None:
        g, h = shapes.gdn, shapes.hidden
        self.shapes, self.dtype, self.device = shapes, dtype, torch.device(device)
        gen = _gen(self.device, seed)
        self.norm_w = torch.ones(h, dtype=dtype, device=self.device)
        self.w_in = _w((shapes.gdn_in_proj_out, h), h, dtype, self.device, gen)
        self.conv_w = _w((shapes.conv_channels, 1, shapes.conv_kernel), shapes.conv_kernel, dtype, self.device, gen)
        self.A_log = torch.log(torch.empty(g.HV, device=self.device).uniform_(1, 16, generator=gen))
        self.dt_bias = torch.rand(g.HV, device=self.device, generator=gen)
        self.norm_o_w = torch.ones(g.V, dtype=dtype, device=self.device)
        self.w_out = _w((h, g.HV * g.V), g.HV * g.V, dtype, self.device, gen)

    def bind(self, x_fn: Callable[[], torch.Tensor], point: StepPoint, *, backend=None, strategy=None,
             contiguous_inputs: bool = False, seed: int = 1) -> Bound:
        """Bind to ``point``; ``backend`` is needed for decode, ``strategy`` for MTP."""
        sh, g = self.shapes, self.shapes.gdn
        B, T, N = point.batch, point.tokens_per_row, point.tokens
        HK, HVV, C, km1 = g.H * g.K, g.HV * g.V, sh.conv_channels, sh.conv_kernel - 1
        dev = self.device
        gen = _gen(dev, seed)
        spr = strategy.slots_per_request(T) if (point.mode == "mtp" and strategy is not None) else 1
        P = B * spr + 1
        st = SimpleNamespace()
        st.pool = (torch.randn((P, g.HV, g.V, g.K), generator=gen, device=dev) * 0.05).to(g.state_dtype)
        st.conv_pool = (torch.randn((P, C, km1), generator=gen, device=dev) * 0.5).to(self.dtype)
        st.indices = (1 + torch.arange(B, device=dev, dtype=torch.int32) * spr)
        st.slot = st.indices.long()
        st.accepted = torch.randint(1, T + 1, (B,), generator=gen, device=dev, dtype=torch.int32)
        if point.mode == "mtp":
            if strategy is None:
                raise ValueError("an MTP step needs a verify strategy")
            st.scratch = strategy.allocate(st.pool, B, T)
        elif backend is None:
            raise ValueError("a decode step needs a GDN kernel backend")

        def norm() -> None:
            st.hn = _rms(x_fn(), self.norm_w)

        def in_proj() -> None:
            st.proj = nnf.linear(st.hn, self.w_in)

        def conv1d() -> None:
            qkv = st.proj[:, :C].view(B, T, C).transpose(1, 2)                      # [B, C, T]
            win = torch.cat([st.conv_pool[st.slot], qkv], dim=2)                     # [B, C, km1 + T]
            st.conv_pool[st.slot] = win[:, :, T:]
            act = nnf.silu(nnf.conv1d(win, self.conv_w, groups=C)).transpose(1, 2)       # [B, T, C]
            act = act.contiguous()
            q, k, v = act[..., :HK], act[..., HK:2 * HK], act[..., 2 * HK:]
            b = st.proj[:, C + HVV:C + HVV + g.HV].view(B, T, g.HV)
            a = st.proj[:, C + HVV + g.HV:].view(B, T, g.HV)
            st.q, st.k = q.view(B, T, g.H, g.K), k.view(B, T, g.H, g.K)
            st.v, st.a, st.b = v.view(B, T, g.HV, g.V), a, b
            if contiguous_inputs:
                st.q, st.k, st.v = st.q.contiguous(), st.k.contiguous(), st.v.contiguous()
                st.a, st.b = st.a.contiguous(), st.b.contiguous()

        def recurrent() -> None:
            args = (st.q, st.k, st.v, st.a, st.b, self.A_log, self.dt_bias, st.pool, st.indices)
            if point.mode == "decode":
                st.o = backend.decode(*args, validate=False)
            else:
                st.o = strategy.verify(*args, st.scratch, validate=False)

        def commit() -> None:
            strategy.commit(st.pool, st.indices, st.scratch, st.accepted, validate=False)

        def gated_norm() -> None:
            z = st.proj[:, C:C + HVV].view(N, g.HV, g.V)
            st.y = _rms(st.o.reshape(N, g.HV, g.V), self.norm_o_w) * nnf.silu(z)

        def out_proj() -> None:
            st.out = nnf.linear(st.y.reshape(N, HVV), self.w_out)

        ops = [Op("gdn.norm", norm), Op("gdn.in_proj", in_proj), Op("gdn.conv1d", conv1d),
               Op("gdn.recurrent", recurrent), Op("gdn.gated_norm", gated_norm), Op("gdn.out_proj", out_proj)]
        post = [Op("gdn.commit", commit)] if point.mode == "mtp" else []
        info = {"gdn_backend": getattr(backend, "name", None),
                "strategy": getattr(strategy, "name", None) if point.mode == "mtp" else None,
                "state_dtype": str(g.state_dtype).removeprefix("torch.")}
        bound = Bound(ops, lambda: st.out, post, None, info)
        bound.state = st
        return bound


# ====================================================================================== attention
class AttentionMixer:
    """Gated full attention (Qwen3-Next / Qwen3.5: q carries an output gate, per-head q/k RMSNorm,
    partial rotary) over ``kernel`` (:class:`gdnlab.components.attention.AttentionKernel`)."""

    kind = "attn"

    def __init__(self, shapes: ComponentShapes, kernel: AttentionKernel, dtype: torch.dtype, device,
                 seed: int = 0) -> None:
        h, D = shapes.hidden, shapes.attn_head_dim
        self.shapes, self.kernel, self.dtype, self.device = shapes, kernel, dtype, torch.device(device)
        gen = _gen(self.device, seed)
        self.Hq, self.Hkv, self.D, self.rot = shapes.q_heads_per_gpu, shapes.kv_heads_per_gpu, D, shapes.rotary_dim
        self.norm_w = torch.ones(h, dtype=dtype, device=self.device)
        self.w_qkv = _w((shapes.attn_qkv_out, h), h, dtype, self.device, gen)
        self.q_norm_w = torch.ones(D, dtype=dtype, device=self.device)
        self.k_norm_w = torch.ones(D, dtype=dtype, device=self.device)
        self.w_o = _w((h, self.Hq * D), self.Hq * D, dtype, self.device, gen)
        self.inv_freq = 1.0 / (1e7 ** (torch.arange(0, self.rot, 2, device=self.device).float() / self.rot))

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        r2 = self.rot // 2
        x1, x2 = x[..., :r2], x[..., r2:self.rot]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., self.rot:]], dim=-1)

    def bind(self, x_fn: Callable[[], torch.Tensor], point: StepPoint, **_: object) -> Bound:
        B, T, N = point.batch, point.tokens_per_row, point.tokens
        Hq, Hkv, D = self.Hq, self.Hkv, self.D
        st = SimpleNamespace()

        def set_kv_len(kv_len: int) -> None:
            self.kernel.prepare(B, T, kv_len)
            pos = (kv_len - T + torch.arange(T, device=self.device)).repeat(B).float()
            ang = pos[:, None] * self.inv_freq[None, :]
            st.cos, st.sin = ang.cos()[:, None, :].to(self.dtype), ang.sin()[:, None, :].to(self.dtype)

        def norm() -> None:
            st.hn = _rms(x_fn(), self.norm_w)

        def qkv_proj() -> None:
            st.qkv = nnf.linear(st.hn, self.w_qkv)

        def qk_norm_rope() -> None:
            qg = st.qkv[:, :2 * Hq * D].view(N, Hq, 2 * D)
            q, st.gate = qg[..., :D], qg[..., D:]
            k = st.qkv[:, 2 * Hq * D:(2 * Hq + Hkv) * D].view(N, Hkv, D)
            st.v = st.qkv[:, (2 * Hq + Hkv) * D:].view(N, Hkv, D)
            st.q = self._rope(_rms(q, self.q_norm_w), st.cos, st.sin)
            st.k = self._rope(_rms(k, self.k_norm_w), st.cos, st.sin)

        def kv_write() -> None:
            self.kernel.write_kv(st.k, st.v)

        def attention() -> None:
            st.o = self.kernel.attend(st.q)

        def out_gate() -> None:
            st.og = st.o * torch.sigmoid(st.gate)

        def o_proj() -> None:
            st.out = nnf.linear(st.og.reshape(N, Hq * D), self.w_o)

        set_kv_len(point.kv_len)
        ops = [Op("attn.norm", norm), Op("attn.qkv_proj", qkv_proj), Op("attn.qk_norm_rope", qk_norm_rope),
               Op("attn.kv_write", kv_write), Op("attn.attention", attention), Op("attn.out_gate", out_gate),
               Op("attn.o_proj", o_proj)]
        bound = Bound(ops, lambda: st.out, [], set_kv_len,
                      {"attn_impl": self.kernel.impl, "page_size": getattr(self.kernel, "page_size", None)})
        bound.state = st
        return bound


# ============================================================================================ MoE
class MoEBlock:
    """Routed experts (top-k of E, renormalised) plus a sigmoid-gated shared expert; ``impl``
    ``"grouped_mm"`` (``torch._grouped_mm``) or ``"bmm"`` (padded ``torch.bmm``, capacity N)."""

    def __init__(self, shapes: ComponentShapes, dtype: torch.dtype, device, impl: str = "grouped_mm",
                 seed: int = 0) -> None:
        if impl not in ("grouped_mm", "bmm"):
            raise ValueError(f"MoE impl {impl!r}: expected 'grouped_mm' or 'bmm'")
        h, E, I, Is = shapes.hidden, shapes.num_experts, shapes.moe_intermediate_per_gpu, \
            shapes.shared_intermediate_per_gpu
        self.shapes, self.dtype, self.device, self.impl = shapes, dtype, torch.device(device), impl
        self.E, self.k, self.I = E, shapes.experts_per_token, I
        gen = _gen(self.device, seed)
        self.norm_w = torch.ones(h, dtype=dtype, device=self.device)
        self.w_router = _w((E, h), h, dtype, self.device, gen)
        self.w13 = _w((E, 2 * I, h), h, dtype, self.device, gen)          # [E, out, in]
        self.w2 = _w((E, h, I), I, dtype, self.device, gen)
        self.ws13 = _w((2 * Is, h), h, dtype, self.device, gen)
        self.ws2 = _w((h, Is), Is, dtype, self.device, gen)
        self.w_sgate = _w((1, h), h, dtype, self.device, gen)

    def _experts_grouped(self, xs: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
        h1 = torch._grouped_mm(xs, self.w13.transpose(-2, -1), offs=offs)
        act = nnf.silu(h1[:, :self.I]) * h1[:, self.I:]
        return torch._grouped_mm(act, self.w2.transpose(-2, -1), offs=offs)

    def _experts_bmm(self, xs: torch.Tensor, sorted_ids: torch.Tensor, counts: torch.Tensor,
                     offs: torch.Tensor, cap: int) -> torch.Tensor:
        M = xs.shape[0]
        pos = torch.arange(M, device=xs.device) - (offs - counts).long()[sorted_ids]
        xp = xs.new_zeros((self.E, cap, xs.shape[1]))
        xp[sorted_ids, pos] = xs
        h1 = torch.bmm(xp, self.w13.transpose(1, 2))
        act = nnf.silu(h1[..., :self.I]) * h1[..., self.I:]
        return torch.bmm(act, self.w2.transpose(1, 2))[sorted_ids, pos]

    def bind(self, x_fn: Callable[[], torch.Tensor], mixer_out: Callable[[], torch.Tensor], point: StepPoint
             ) -> Bound:
        N, E, k = point.tokens, self.E, self.k
        st = SimpleNamespace()
        ones = torch.ones(N * k, dtype=torch.int32, device=self.device)

        def norm() -> None:
            st.h = x_fn() + mixer_out()
            st.hn = _rms(st.h, self.norm_w)

        def router() -> None:
            logits = nnf.linear(st.hn, self.w_router).float()
            topv, topi = torch.softmax(logits, dim=-1).topk(k, dim=-1)
            topv = topv / topv.sum(-1, keepdim=True)
            flat = topi.reshape(-1)
            order = torch.argsort(flat, stable=True)
            st.sorted_ids, st.token_of = flat[order], order // k
            st.weights = topv.reshape(-1)[order].to(self.dtype)
            st.counts = torch.zeros(E, dtype=torch.int32, device=self.device).scatter_add_(0, flat, ones)
            st.offs = torch.cumsum(st.counts, 0, dtype=torch.int32)

        def experts() -> None:
            xs = st.hn[st.token_of]
            if self.impl == "grouped_mm":
                y = self._experts_grouped(xs, st.offs)
            else:
                y = self._experts_bmm(xs, st.sorted_ids, st.counts, st.offs, N)
            st.routed = torch.zeros_like(st.hn).index_add_(0, st.token_of, y * st.weights[:, None])

        def shared_expert() -> None:
            gu = nnf.linear(st.hn, self.ws13)
            Is = gu.shape[1] // 2
            s = nnf.linear(nnf.silu(gu[:, :Is]) * gu[:, Is:], self.ws2)
            st.out = st.h + st.routed + torch.sigmoid(nnf.linear(st.hn, self.w_sgate)) * s

        ops = [Op("moe.norm", norm), Op("moe.router", router), Op("moe.experts", experts),
               Op("moe.shared_expert", shared_expert)]
        bound = Bound(ops, lambda: st.out, [], None, {"moe_impl": self.impl})
        bound.state = st
        return bound


# ======================================================================================= layers
class DecoderLayer:
    """A mixer (:class:`GDNMixer` or :class:`AttentionMixer`) followed by a :class:`MoEBlock`."""

    def __init__(self, mixer: GDNMixer | AttentionMixer, moe: MoEBlock) -> None:
        self.mixer, self.moe = mixer, moe

    @property
    def kind(self) -> str:
        return self.mixer.kind

    def bind(self, x_fn: Callable[[], torch.Tensor], point: StepPoint, **opts) -> Bound:
        m = self.mixer.bind(x_fn, point, **opts)
        e = self.moe.bind(x_fn, m.output, point)
        bound = Bound(m.ops + e.ops, e.output, m.post, m.set_kv_len, {**m.info, **e.info})
        bound.state = getattr(m, "state", None)          # the mixer's pools (GDN) or namespace
        return bound


class LMHead:
    """Final RMSNorm and the vocabulary-parallel lm_head GEMM (``vocab / tp`` logits per token)."""

    def __init__(self, shapes: ComponentShapes, dtype: torch.dtype, device, seed: int = 0) -> None:
        h = shapes.hidden
        gen = _gen(torch.device(device), seed)
        self.norm_w = torch.ones(h, dtype=dtype, device=device)
        self.w = _w((shapes.vocab_per_gpu, h), h, dtype, torch.device(device), gen)

    def bind(self, x_fn: Callable[[], torch.Tensor], point: StepPoint, **_: object) -> Bound:
        st = SimpleNamespace()

        def norm() -> None:
            st.hn = _rms(x_fn(), self.norm_w)

        def gemm() -> None:
            st.logits = nnf.linear(st.hn, self.w)

        return Bound([Op("lm_head.norm", norm), Op("lm_head.gemm", gemm)], lambda: st.logits)


class MTPDraft:
    """The MTP draft layer: ``fc([norm(emb), norm(h)])`` then one full-attention decoder layer with
    MoE and a final RMSNorm (Qwen3-Next ``mtp``); the draft tokens' embeddings are a fixed random
    buffer (the lookup is a gather of ``B`` rows). One draft step runs ``B`` tokens."""

    def __init__(self, shapes: ComponentShapes, layer: DecoderLayer, dtype: torch.dtype, device,
                 seed: int = 0) -> None:
        h = shapes.hidden
        gen = _gen(torch.device(device), seed)
        self.layer, self.dtype, self.device = layer, dtype, torch.device(device)
        self.emb_norm_w = torch.ones(h, dtype=dtype, device=device)
        self.h_norm_w = torch.ones(h, dtype=dtype, device=device)
        self.final_norm_w = torch.ones(h, dtype=dtype, device=device)
        self.w_fc = _w((h, 2 * h), 2 * h, dtype, self.device, gen)
        self.hidden = h

    def bind(self, x_fn: Callable[[], torch.Tensor], point: StepPoint, **opts) -> Bound:
        st = SimpleNamespace()
        st.emb = torch.randn((point.tokens, self.hidden), dtype=self.dtype, device=self.device)

        def fc() -> None:
            st.x = nnf.linear(torch.cat([_rms(st.emb, self.emb_norm_w), _rms(x_fn(), self.h_norm_w)], -1), self.w_fc)

        inner = self.layer.bind(lambda: st.x, point, **opts)

        def final_norm() -> None:
            st.out = _rms(inner.output(), self.final_norm_w)

        ops = [Op("mtp.fc", fc), *inner.ops, Op("mtp.norm", final_norm)]
        return Bound(ops, lambda: st.out, inner.post, inner.set_kv_len, inner.info)


def tokens_hidden(point: StepPoint, hidden: int, dtype: torch.dtype, device, seed: int = 7) -> torch.Tensor:
    """A random ``[N, hidden]`` input of the step (unit RMS)."""
    gen = _gen(torch.device(device), seed)
    return torch.randn((point.tokens, hidden), generator=gen, device=device, dtype=torch.float32).to(dtype)


def expert_capacity_note(impl: str) -> str:
    """How the MoE block runs its routed experts, for the rows' ``impl`` column."""
    return {"grouped_mm": "torch._grouped_mm", "bmm": "torch.bmm (padded, capacity N)"}.get(impl, impl)

