"""``full_cache``: verify keeps the state after every draft token; commit copies the accepted one.

The seed's strategy and SGLang's default GDN verify (SGLang 0.5.23 has no switch for it). Verify
reads each row's state once and writes T states into a **batch-scoped** intermediate buffer
``[max_batch, T, HV, V, K]`` (row ``i`` belongs to batch row ``i``); commit copies
``intermediate[i, accepted[i]-1]`` into ``pool[indices[i]]`` with one fused scatter kernel and no host
sync (on the Triton backend, as SGLang's ``fused_mamba_state_scatter_with_mask`` in
``python/sglang/kernels/ops/mamba/mamba_state_scatter_triton.py`` of SGLang 0.5.23).

State traffic per step: read S + write T intermediates + read one + write S = (T+3) S when the
intermediate has the pool's dtype (:meth:`FullCache.row_bytes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines import ENGINE_VERSIONS, EngineRun
from ..inputs import GDNInputs
from ..roofline import RowBytes
from .base import ByteUnits, Scratch, VerifyStrategy, _dtype_opt
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
    color = "#1f77b4"
    launches = {"verify": 1, "commit": 1}
    main_kernel_phases = ("verify",)
    engine_runs = (
        EngineRun("sglang", ENGINE_VERSIONS["sglang"], ("--linear-attn-verify-backend", "triton"),
                  backends=("sglang_triton",),
                  source="sgl-project/sglang v0.5.23 python/sglang/srt/server_args.py --linear-attn-verify-backend; "
                         "python/sglang/srt/layers/attention/linear/kernels/gdn_triton.py "
                         "(fused_sigmoid_gating_delta_rule_update with intermediate_states_buffer)",
                  note="SGLang's own Triton verify kernel and fused_mamba_state_scatter_with_mask commit; "
                       "gdnlab's triton backend is its own kernel with the same semantics"),
        EngineRun("sglang", ENGINE_VERSIONS["sglang"], ("--linear-attn-verify-backend", "flashinfer"),
                  state_dtypes=("float32",), backends=("flashinfer", "sglang_flashinfer"), sms=("sm90",),
                  source="sgl-project/sglang v0.5.23 python/sglang/srt/layers/attention/linear/kernels/"
                         "gdn_flashinfer.py (FlashInfer gated_delta_rule_mtp; SM90 needs a float32 state, #36611)",
                  note="FlashInfer's MTP verify with a batch-scoped intermediate buffer, as gdnlab's flashinfer "
                       "full_cache; on SM90 only with a float32 state"),
        EngineRun("sglang", ENGINE_VERSIONS["sglang"], ("--linear-attn-verify-backend", "flashinfer"),
                  state_dtypes=("bfloat16",), backends=("flashinfer", "sglang_flashinfer"), sms=("sm100", "sm103"),
                  source="sgl-project/sglang PR #23273 (FlashInfer MTP verify on SM100+; "
                         "intermediate_states_buffer[:batch_size]); v0.5.23 python/sglang/srt/arg_groups/"
                         "attention_hook.py L366-L377 (SM100+ FlashInfer verify requires --mamba-ssm-dtype bfloat16)"),
    )

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, **options) -> dict[str, RowBytes]:
        """verify reads S and writes T S_i; commit reads S_i and writes S: ``2 S + (T + 1) S_i``
        = (T + 3) S when S_i = S."""
        return {"verify": RowBytes(state_read=u.S, scratch_write=T * u.Si),
                "commit": RowBytes(state_write=u.S, scratch_read=u.Si)}

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        """intermediate ``B T S_i``."""
        return B * T * u.Si

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
        self.ops.recurrent(pool, indices, tokens=Tokens(GDNInputs(q, k, v, a, b, A_log, dt_bias), scale, o,
                                                        inter=scratch.intermediate))

    def _commit(self, pool, indices, scratch, accepted):
        self.ops.scatter_commit(pool, indices, scratch.intermediate, accepted)
