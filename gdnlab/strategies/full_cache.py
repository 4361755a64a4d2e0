"""``full_cache``: verify keeps the state after every draft token; commit copies the accepted one.

The seed's (and SGLang's ``--gdn-mtp-cache-mode full``) strategy. Verify reads each row's state
once and writes T states into a **batch-scoped** intermediate buffer ``[max_batch, T, HV, V, K]``
(row ``i`` belongs to batch row ``i``); commit copies ``intermediate[i, accepted[i]-1]`` into
``pool[indices[i]]`` with one fused scatter kernel and no host sync (on the Triton backend, as
SGLang's ``fused_mamba_state_scatter_with_mask`` in
``python/sglang/srt/layers/attention/mamba/mamba_state_scatter_triton.py``).

State traffic per step: read S + write T intermediates + read one + write S = (T+3) S when the
intermediate has the pool's dtype (:func:`gdnlab.roofline.strategy_bytes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Scratch, VerifyStrategy, _dtype_opt
from .ops import Tokens

__all__ = ["FullCache", "FullCacheScratch"]


@dataclass
class FullCacheScratch(Scratch):
    """``intermediate [max_batch, T, HV, V, K]`` in ``intermediate_dtype`` (batch-scoped)."""

    intermediate: torch.Tensor = None


class FullCache(VerifyStrategy):
    """Args: ``intermediate_dtype``: dtype of the intermediate buffer (default: the pool's, as
    FlashInfer's MTP kernels require; ``float32`` keeps full-precision intermediates)."""

    name = "full_cache"
    summary = "verify writes T states (batch-scoped buffer); commit scatters the accepted one"
    launches = {"verify": 1, "commit": 1}

    def __init__(self, ops=None, intermediate_dtype: torch.dtype | str | None = None) -> None:
        super().__init__(ops)
        self.intermediate_dtype = _dtype_opt(intermediate_dtype, "intermediate_dtype")

    def roofline_options(self) -> dict:
        return {"intermediate_dtype": self.intermediate_dtype}

    def _allocate(self, pool, max_batch, T):
        dt = self.intermediate_dtype or pool.dtype
        inter = torch.zeros((max_batch, T, *pool.shape[1:]), dtype=dt, device=pool.device)
        return FullCacheScratch(T, max_batch, pool.shape[0], pool.dtype, pool.device, inter)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        self.ops.recurrent(pool, indices, tokens=Tokens(q, k, v, a, b, A_log, dt_bias, scale, o,
                                                        inter=scratch.intermediate))

    def _commit(self, pool, indices, scratch, accepted):
        self.ops.scatter_commit(pool, indices, scratch.intermediate, accepted)
