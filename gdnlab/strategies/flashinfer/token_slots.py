"""``token_slots`` on FlashInfer (:mod:`gdnlab.strategies.flashinfer`; "gd", "mtp", "bf16": FlashInfer
0.7.4 sources named in its docstring)."""
from __future__ import annotations

import torch

from ...kernels.base import KernelPath
from ..token_slots import TokenSlots
from ._common import _FlashInferStrategy


class FlashInferTokenSlots(_FlashInferStrategy, TokenSlots):
    """``token_slots`` on FlashInfer: the MTP kernels' ``ssm_state_indices [B, T]`` write the state
    after token t to ``slot_table[base, (c + 1 + t) % (T + 1)]``; commit moves the cursor. Padding
    rows' per-token slots become slot 0 (FlashInfer: "a negative ... entry writes outside the pool",
    gd L1413-L1419; the fp32 kernel skips padding rows, mtp L507-L508, the bf16 ones use slot 0)."""

    constraints = "state float32 or bfloat16; T >= 2; the pool holds 1 + T slots per request"

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        return super()._allocate(pool, max_batch, T)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        src, dst = self._memo("fi_slots", lambda: self._kernel_slots(indices, scratch))
        bf16 = pool.dtype == torch.bfloat16
        kernel, detail = self._kernel_name(cc, dims, bf16)
        self._path("verify", kernel, cc, dims, pool.dtype, ssm_state_indices=True, **detail)
        A, dt = self._gates(A_log, dt_bias)
        qc, kc, vc, ac, bc = (t.contiguous() for t in (q, k, v, a, b))
        if bf16:
            out = self.fi.kernels.mtp_bf16(
                A_log=A, a=ac, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=qc, k=kc, v=vc, b=bc,
                initial_state_source=pool, initial_state_indices=src, ssm_state_indices=dst,
                disable_state_update=False, use_qk_l2norm_in_kernel=True, scale=scale, output=self._out_arg(o))
        else:
            out, _ = self.fi.kernels.mtp_fp32(
                q=qc, k=kc, v=vc, initial_state=pool, initial_state_indices=src, A_log=A, a=ac, dt_bias=dt, b=bc,
                scale=scale, output=self._out_arg(o), intermediate_states_buffer=None, ssm_state_indices=dst,
                disable_state_update=False, use_qk_l2norm=True)
        self._emit(o, out, indices)

    def _kernel_slots(self, indices, scratch) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's ``initial_state_indices [B]`` and ``ssm_state_indices [B, T]`` (int32; padding
        rows' per-token slots -> slot 0)."""
        src, dst = self._slots(indices, scratch)
        return src.to(torch.int32).contiguous(), dst.clamp(min=0).to(torch.int32).contiguous()

    def _commit(self, pool, indices, scratch, accepted):
        super()._commit(pool, indices, scratch, accepted)
        self.last_path = KernelPath("commit", "cursor_move", self.last_path.arch, {"strategy": self.name})
