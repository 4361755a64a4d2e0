"""Full-attention kernels over a KV cache for the component benchmarks: FlashInfer's paged kernels or
PyTorch SDPA over a dense cache.

Both implement one small interface (:class:`AttentionKernel`): ``prepare(batch, T, kv_len)`` plans on
the host (outside any CUDA graph), ``write_kv(k, v)`` appends the step's ``batch * T`` tokens at
positions ``kv_len - T .. kv_len - 1`` of each request, ``attend(q)`` returns ``o``. Shapes: q and o
``[N, Hq, D]``, k and v ``[N, Hkv, D]`` with ``N = batch * T`` rows ordered request-major; bf16 on GPU.
``kv_len`` is the request's length after the step's tokens are appended (prompt + generated).

* :class:`FlashInferPaged` (``impl = "flashinfer"``): ``BatchDecodeWithPagedKVCacheWrapper`` for
  ``T = 1`` (``use_tensor_cores=True``, as SGLang picks for GQA group sizes >= 4) and
  ``BatchPrefillWithPagedKVCacheWrapper`` with ``qo_len = T`` (causal) for verify; both in CUDA-graph
  mode (fixed index buffers, ``plan()`` outside the graph, ``run()`` inside). API read from
  flashinfer-ai/flashinfer ``flashinfer/decode.py`` (``BatchDecodeWithPagedKVCacheWrapper.__init__``:
  ``float_workspace_buffer, kv_layout, use_cuda_graph, use_tensor_cores, paged_kv_indptr_buffer,
  paged_kv_indices_buffer, paged_kv_last_page_len_buffer``; ``plan(indptr, indices, last_page_len,
  num_qo_heads, num_kv_heads, head_dim, page_size, ...)``; ``run(q, paged_kv_cache)``) and
  ``flashinfer/prefill.py`` (``BatchPrefillWithPagedKVCacheWrapper(..., qo_indptr_buf,
  paged_kv_indptr_buf, paged_kv_indices_buf, paged_kv_last_page_len_buf)``; ``plan(qo_indptr,
  paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
  head_dim_qk, page_size, causal=...)``). Cache layout NHD: ``[pages, 2, page_size, Hkv, D]``.
* :class:`DenseSDPA` (``impl = "sdpa"``): ``torch.nn.functional.scaled_dot_product_attention`` over
  ``[B, Hkv, L, D]`` views of a dense cache (``enable_gqa``). For ``T > 1`` the draft tokens attend
  to the whole window without the causal mask among themselves (a mask would force the slow math
  backend; the work differs by ``T / kv_len``).

FlashInfer's paged kernels are JIT-compiled on first use; :func:`flashinfer_selftest` runs them once
at the benchmark's head dims (in a subprocess the caller can time out) so a missing compiler or
missing kernel sources show up before the measurement starts.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as nnf

__all__ = ["AttentionKernel", "FlashInferPaged", "DenseSDPA", "make_attention", "flashinfer_selftest",
           "FLASHINFER_WORKSPACE_BYTES"]

#: FlashInfer float workspace (split-KV partial results); 128 MiB as FlashInfer's docs recommend
FLASHINFER_WORKSPACE_BYTES = 128 * 1024 * 1024


class AttentionKernel(ABC):
    """Attention of ``Hq`` query heads over ``Hkv`` KV heads of dim ``D`` for up to ``max_batch``
    requests of up to ``max_kv_len`` tokens."""

    impl: str = "base"

    def __init__(self, num_q_heads: int, num_kv_heads: int, head_dim: int, max_batch: int, max_kv_len: int,
                 dtype: torch.dtype, device: torch.device, page_size: int = 16) -> None:
        self.Hq, self.Hkv, self.D = int(num_q_heads), int(num_kv_heads), int(head_dim)
        self.max_batch, self.max_kv_len = int(max_batch), int(max_kv_len)
        self.page_size = int(page_size)
        self.dtype, self.device = dtype, torch.device(device)
        self.scale = self.D ** -0.5
        self.batch = self.T = self.kv_len = 0

    def _check(self, batch: int, T: int, kv_len: int) -> None:
        if not (1 <= batch <= self.max_batch and 1 <= T <= kv_len <= self.max_kv_len):
            raise ValueError(f"attention point batch={batch} T={T} kv_len={kv_len} outside the cache "
                             f"(max_batch={self.max_batch}, max_kv_len={self.max_kv_len})")

    def _positions(self, batch: int, T: int, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Request index and token position of each of the ``batch * T`` new rows (int64)."""
        req = torch.arange(batch, device=self.device).repeat_interleave(T)
        pos = (kv_len - T + torch.arange(T, device=self.device)).repeat(batch)
        return req, pos

    @abstractmethod
    def prepare(self, batch: int, T: int, kv_len: int) -> None:
        """Host-side planning for one point (never inside a CUDA graph)."""

    @abstractmethod
    def write_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append the step's tokens: k, v ``[batch*T, Hkv, D]``."""

    @abstractmethod
    def attend(self, q: torch.Tensor) -> torch.Tensor:
        """``q [batch*T, Hq, D] -> o [batch*T, Hq, D]``."""

    @abstractmethod
    def cache_bytes(self) -> int:
        """Bytes of the allocated K and V."""


class DenseSDPA(AttentionKernel):
    """SDPA over a dense ``[max_batch, Hkv, max_kv_len, D]`` K and V."""

    impl = "sdpa"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        shape = (self.max_batch, self.Hkv, self.max_kv_len, self.D)
        self.k_cache = torch.randn(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.randn(shape, dtype=self.dtype, device=self.device)

    def cache_bytes(self) -> int:
        return 2 * self.k_cache.numel() * self.k_cache.element_size()

    def prepare(self, batch: int, T: int, kv_len: int) -> None:
        self._check(batch, T, kv_len)
        self.batch, self.T, self.kv_len = batch, T, kv_len
        self._req, self._pos = self._positions(batch, T, kv_len)

    def write_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k_cache[self._req, :, self._pos] = k
        self.v_cache[self._req, :, self._pos] = v

    def attend(self, q: torch.Tensor) -> torch.Tensor:
        B, T, L = self.batch, self.T, self.kv_len
        qv = q.view(B, T, self.Hq, self.D).transpose(1, 2)
        k, v = self.k_cache[:B, :, :L], self.v_cache[:B, :, :L]
        o = nnf.scaled_dot_product_attention(qv, k, v, scale=self.scale, enable_gqa=self.Hq != self.Hkv)
        return o.transpose(1, 2).reshape(B * T, self.Hq, self.D)


class FlashInferPaged(AttentionKernel):
    """FlashInfer paged decode (T = 1) / prefill (T > 1) over an NHD paged cache; request ``i`` owns
    pages ``i * pages_per_request ..`` (contiguous, as after a fresh prefill)."""

    impl = "flashinfer"

    def __init__(self, *args, kv_dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        import flashinfer

        self._fi = flashinfer
        self.kv_dtype = kv_dtype or self.dtype
        self.pages_per_request = math.ceil(self.max_kv_len / self.page_size)
        n_pages = self.max_batch * self.pages_per_request
        self.cache = torch.randn((n_pages, 2, self.page_size, self.Hkv, self.D), dtype=self.dtype,
                                 device=self.device).to(self.kv_dtype)
        self.workspace = torch.empty(FLASHINFER_WORKSPACE_BYTES, dtype=torch.uint8, device=self.device)
        self.wrapper = None

    def cache_bytes(self) -> int:
        return self.cache.numel() * self.cache.element_size()

    def prepare(self, batch: int, T: int, kv_len: int) -> None:
        self._check(batch, T, kv_len)
        self.batch, self.T, self.kv_len = batch, T, kv_len
        dev, ps = self.device, self.page_size
        npr = math.ceil(kv_len / ps)
        first = torch.arange(batch, device=dev, dtype=torch.int32) * self.pages_per_request
        indices = (first[:, None] + torch.arange(npr, device=dev, dtype=torch.int32)[None, :]).reshape(-1)
        indptr = torch.arange(batch + 1, device=dev, dtype=torch.int32) * npr
        last = torch.full((batch,), kv_len - (npr - 1) * ps, device=dev, dtype=torch.int32)
        req, pos = self._positions(batch, T, kv_len)
        self._page = (req * self.pages_per_request + pos // ps).long()
        self._off = (pos % ps).long()
        # fixed buffers for CUDA-graph mode (sized for this point; the wrapper lives with the point)
        self._bufs = (indptr.clone(), indices.clone(), last.clone())
        fi = self._fi
        if T == 1:
            w = fi.BatchDecodeWithPagedKVCacheWrapper(
                self.workspace, "NHD", use_cuda_graph=True, use_tensor_cores=True,
                paged_kv_indptr_buffer=self._bufs[0], paged_kv_indices_buffer=self._bufs[1],
                paged_kv_last_page_len_buffer=self._bufs[2])
            w.plan(indptr, indices, last, self.Hq, self.Hkv, self.D, ps, pos_encoding_mode="NONE",
                   q_data_type=self.dtype, kv_data_type=self.kv_dtype, sm_scale=self.scale)
        else:
            qo_indptr = torch.arange(batch + 1, device=dev, dtype=torch.int32) * T
            self._qo = qo_indptr.clone()
            w = fi.BatchPrefillWithPagedKVCacheWrapper(
                self.workspace, "NHD", use_cuda_graph=True, qo_indptr_buf=self._qo,
                paged_kv_indptr_buf=self._bufs[0], paged_kv_indices_buf=self._bufs[1],
                paged_kv_last_page_len_buf=self._bufs[2])
            w.plan(qo_indptr, indptr, indices, last, self.Hq, self.Hkv, self.D, ps, causal=True,
                   q_data_type=self.dtype, kv_data_type=self.kv_dtype, sm_scale=self.scale)
        self.wrapper = w

    def write_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.cache[self._page, 0, self._off] = k.to(self.kv_dtype)
        self.cache[self._page, 1, self._off] = v.to(self.kv_dtype)

    def attend(self, q: torch.Tensor) -> torch.Tensor:
        return self.wrapper.run(q, self.cache)

    def reference(self, q: torch.Tensor) -> torch.Tensor:
        """float32 SDPA over the same cache rows (the last :meth:`prepare`'s point), causal among the
        step's ``T`` tokens: ``q [B*T, Hq, D] -> [B*T, Hq, D]``."""
        B, T, L, ps = self.batch, self.T, self.kv_len, self.page_size
        pages = (torch.arange(B, device=self.device)[:, None] * self.pages_per_request
                 + torch.arange(math.ceil(L / ps), device=self.device)[None, :])
        kv = self.cache[pages].float()                       # [B, npr, 2, ps, Hkv, D]
        k = kv[:, :, 0].reshape(B, -1, self.Hkv, self.D)[:, :L].transpose(1, 2)
        v = kv[:, :, 1].reshape(B, -1, self.Hkv, self.D)[:, :L].transpose(1, 2)
        qv = q.view(B, T, self.Hq, self.D).transpose(1, 2).float()
        mask = torch.arange(L, device=self.device)[None, :] <= (L - T + torch.arange(T, device=self.device))[:, None]
        o = nnf.scaled_dot_product_attention(qv, k, v, attn_mask=mask, scale=self.scale,
                                           enable_gqa=self.Hq != self.Hkv)
        return o.transpose(1, 2).reshape(B * T, self.Hq, self.D)


def make_attention(impl: str, num_q_heads: int, num_kv_heads: int, head_dim: int, max_batch: int, max_kv_len: int,
                   dtype: torch.dtype, device: torch.device | str, page_size: int = 16) -> AttentionKernel:
    """An attention kernel by ``impl`` (``"flashinfer"`` or ``"sdpa"``) with its cache allocated."""
    cls = {"flashinfer": FlashInferPaged, "sdpa": DenseSDPA}.get(impl)
    if cls is None:
        raise ValueError(f"unknown attention impl {impl!r}; expected 'flashinfer' or 'sdpa'")
    return cls(num_q_heads, num_kv_heads, head_dim, max_batch, max_kv_len, dtype, torch.device(device), page_size)


def flashinfer_selftest(num_q_heads: int, num_kv_heads: int, head_dim: int, page_size: int = 16,
                        draft_tokens: int = 4, kv_dtype: str = "bfloat16") -> float:
    """Run FlashInfer's paged decode and verify kernels once on CUDA (compiling them) inside a CUDA
    graph and compare with SDPA; returns the largest abs difference, raises on failure. ``kv_dtype``:
    ``bfloat16`` or ``float8_e4m3fn`` (the KV cache's)."""
    dev = torch.device("cuda", torch.cuda.current_device())
    kvd = getattr(torch, kv_dtype)
    worst = 0.0
    for T in (1, draft_tokens):
        B, L = 3, 2 * page_size + 5
        fi = FlashInferPaged(num_q_heads, num_kv_heads, head_dim, B, L, torch.bfloat16, dev, page_size, kv_dtype=kvd)
        fi.prepare(B, T, L)
        q = torch.randn(B * T, num_q_heads, head_dim, dtype=torch.bfloat16, device=dev)
        g = torch.cuda.CUDAGraph()
        fi.attend(q)
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            o = fi.attend(q)
        g.replay()
        torch.cuda.synchronize()
        kc = fi.cache[:, 0].float().reshape(B, -1, num_kv_heads, head_dim)[:, :L].transpose(1, 2)
        vc = fi.cache[:, 1].float().reshape(B, -1, num_kv_heads, head_dim)[:, :L].transpose(1, 2)
        qv = q.view(B, T, num_q_heads, head_dim).transpose(1, 2).float()
        mask = (torch.arange(L, device=dev)[None, :] <= (L - T + torch.arange(T, device=dev))[:, None])
        ref = nnf.scaled_dot_product_attention(qv, kc.float(), vc.float(), attn_mask=mask,
                                             enable_gqa=num_q_heads != num_kv_heads)
        ref = ref.transpose(1, 2).reshape(B * T, num_q_heads, head_dim)
        err = float((o.float() - ref).abs().max())
        if not err < (5e-2 if kvd == torch.bfloat16 else 1e-1):
            raise RuntimeError(f"FlashInfer paged attention (T={T}) differs from SDPA by {err:.3g}")
        worst = max(worst, err)
    return worst
