"""Pure-PyTorch GDN reference (CPU or GPU): the oracle every other backend is tested against.

Vectorised over batch and heads, sequential over tokens, all arithmetic in float32 (or float64 with
``ReferenceBackend(compute_dtype=torch.float64)``). Modelled on FlashInfer's test reference
(``tests/gdn/reference_delta_rule.py``: ``decode_delta_rule`` / ``verify_delta_rule``) and fla's
``naive_recurrent_gated_delta_rule``, with two deliberate choices that match the *kernels* rather
than FlashInfer's test reference:

* L2 norm as ``x * rsqrt(sum(x^2) + 1e-6)`` — FlashInfer ``gdn_decode_pretranspose.py``
  (``cute.rsqrt(sum_q + 1e-6)``), fla ``fused_recurrent.py`` and SGLang
  ``fused_sigmoid_gating_recurrent.py`` all add 1e-6 (the test reference's ``F.normalize`` does not).
* State stored ``[HV, V, K]`` (K-last), as the pretranspose/MTP kernels and SGLang's pool do.

GQA/GVA head mapping: value head ``hv`` reads q/k head ``hv // (HV // H)`` — i.e.
``repeat_interleave``, not ``tile``. FlashInfer: ``i_h = i_hv // (HV // H)`` in
``gdn_kernels/gdn_decode_pretranspose.py`` and ``gdn_decode_mtp.py``; its test reference does
``k.repeat_interleave(num_v_heads // num_k_heads, dim=1)``. fla ``fused_recurrent.py``:
``i_h = i_hv // (HV // H)``; HF ``modeling_qwen3_next.py`` repeat_interleaves q/k too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..shapes import dtype_name
from .base import GDNBackend, KernelPath, _arch
from .validation import GDNCallDims

__all__ = ["ReferenceBackend", "gdn_gates", "l2norm", "gdn_step"]

L2NORM_EPS = 1e-6
SOFTPLUS_BETA = 1.0
SOFTPLUS_THRESHOLD = 20.0


def l2norm(x: torch.Tensor, eps: float = L2NORM_EPS) -> torch.Tensor:
    """``x * rsqrt(sum(x^2, -1) + eps)`` along the last dim."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def gdn_gates(a: torch.Tensor, b: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-space decay ``g = -exp(A_log) * softplus(a + dt_bias)`` (softplus beta 1, threshold 20,
    as SGLang and FlashInfer pass) and ``beta = sigmoid(b)``; both shaped like ``a``."""
    x = a.to(dtype) + dt_bias.to(dtype)
    g = -torch.exp(A_log.to(dtype)) * F.softplus(x, beta=SOFTPLUS_BETA, threshold=SOFTPLUS_THRESHOLD)
    return g, torch.sigmoid(b.to(dtype))


def gdn_step(S: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
             beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One delta-rule step for every (row, value head).

    Args: S ``[N,HV,V,K]``; q (normalised and scaled), k (normalised) ``[N,HV,K]``; v ``[N,HV,V]``;
    g, beta ``[N,HV]``. Returns ``(S_new, o[N,HV,V])``; the output uses the updated state.
    """
    S = S * torch.exp(g)[..., None, None]
    kS = torch.einsum("nhvk,nhk->nhv", S, k)
    u = beta[..., None] * (v - kS)
    S = S + u[..., :, None] * k[..., None, :]
    return S, torch.einsum("nhvk,nhk->nhv", S, q)


class ReferenceBackend(GDNBackend):
    """The PyTorch oracle. Works on any device torch supports; no custom kernels."""

    name = "reference"

    def __init__(self, compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.compute_dtype = compute_dtype

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        dev = "CUDA and CPU" if torch.cuda.is_available() else "CPU"
        return True, f"pure PyTorch {torch.__version__}, runs on {dev}"

    def _prepare(self, q, k, v, a, b, A_log, dt_bias, scale: float, dims: GDNCallDims):
        cd = self.compute_dtype
        r = dims.HV // dims.H
        qn = l2norm(q.to(cd)).repeat_interleave(r, dim=2) * scale     # [B,T,HV,K]
        kn = l2norm(k.to(cd)).repeat_interleave(r, dim=2)
        g, beta = gdn_gates(a, b, A_log, dt_bias, cd)                  # [B,T,HV]
        return qn, kn, v.to(cd), g, beta

    def _run(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims,
             intermediate: torch.Tensor | None, write_back: bool) -> torch.Tensor:
        qn, kn, vv, g, beta = self._prepare(q, k, v, a, b, A_log, dt_bias, scale, dims)
        idx = indices.long()
        live = idx >= 0
        S = pool[idx.clamp(min=0)].to(self.compute_dtype)                # [B,HV,V,K] (padding: dummy)
        o = torch.zeros((dims.B, dims.T, dims.HV, dims.V), dtype=self.compute_dtype, device=q.device)
        live_rows = torch.nonzero(live, as_tuple=True)[0]
        for t in range(dims.T):
            S, o_t = gdn_step(S, qn[:, t], kn[:, t], vv[:, t], g[:, t], beta[:, t])
            o[:, t] = o_t
            if intermediate is not None:
                intermediate[live_rows, t] = S[live_rows].to(intermediate.dtype)
        o[~live] = 0
        if write_back:
            pool.index_copy_(0, idx[live_rows], S[live_rows].to(pool.dtype))
        return o.to(q.dtype)

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        self.last_path = KernelPath("decode", "torch_reference", _arch(q.device),
                                    {"state_dtype": dtype_name(pool.dtype)})
        return self._run(q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, None, True)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate):
        self.last_path = KernelPath("verify", "torch_reference", _arch(q.device),
                                    {"state_dtype": dtype_name(pool.dtype)})
        return self._run(q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate, False)
