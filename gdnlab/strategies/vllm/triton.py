"""The ``vllm_triton`` verify strategy: vLLM 0.33.0's Triton spec verify with per-token state slots
(``VLLM_GDN_DECODE_KERNEL=triton``): ``fused_sigmoid_gating_delta_rule_update`` from
``vllm/third_party/flash_linear_attention/ops/fused_sigmoid_gating.py`` with
``ssm_state_indices [B, T]``, ``num_accepted_tokens [B]``, ``inplace_final_state=True`` and the
token-major ``[1, B*T, ...]`` inputs and ``cu_seqlens`` vLLM passes
(``qwen_gdn_linear_attn.py`` L1757-L1778). The wrapper calls ``.contiguous()`` on q, k, v, a, b: in
vLLM they are strided views of the packed projection, so vLLM pays five copies there; gdnlab's
inputs are contiguous, so those copies are no-ops here (a timing here is that much faster than
vLLM's own call). Layout and bookkeeping: :mod:`gdnlab.strategies.vllm`."""
from __future__ import annotations

from ...kernels.base import KernelPath, _arch
from ...kernels.sglang import token_offsets
from ...kernels.vllm import load_ops, triton_device_ok
from ..base import VerifyStrategy
from . import VLLMTokenSlots

__all__ = ["STRATEGIES", "availability", "BACKEND", "VLLMTritonTokenSlots"]

BACKEND = "vllm_triton"


def availability() -> tuple[bool, str]:
    ok, why = triton_device_ok()
    if not ok:
        return False, why
    try:
        load_ops("fused_sigmoid_gating", "fused_sigmoid_gating_delta_rule_update")
    except Exception as exc:  # noqa: BLE001 - any failure to import vLLM's module is the reason
        return False, str(exc)
    return True, f"{why}: fused_sigmoid_gating_delta_rule_update"


class VLLMTritonTokenSlots(VLLMTokenSlots):
    """``token_slots`` on vLLM's Triton kernel (one launch per verify, none per commit)."""

    backend = BACKEND

    def _launch(self, q, k, v, a, b, A_log, dt_bias, pool, rows, acc, scratch, scale, dims):
        (fn,) = load_ops("fused_sigmoid_gating", "fused_sigmoid_gating_delta_rule_update")
        N = dims.B * dims.T
        o, _ = fn(A_log=A_log, a=a.reshape(N, dims.HV), b=b.reshape(N, dims.HV), dt_bias=dt_bias,
                  q=q.reshape(1, N, dims.H, dims.K), k=k.reshape(1, N, dims.H, dims.K),
                  v=v.reshape(1, N, dims.HV, dims.V), scale=scale, initial_state=pool, inplace_final_state=True,
                  cu_seqlens=token_offsets(dims.B, dims.T, q.device), ssm_state_indices=rows,
                  num_accepted_tokens=acc, use_qk_l2norm_in_kernel=True)
        self.last_path = KernelPath("verify", "fused_sigmoid_gating_delta_rule_update", _arch(q.device),
                                    {"strategy": self.name, "engine": "vllm 0.33.0"})
        return o.view(dims.B, dims.T, dims.HV, dims.V)


STRATEGIES: dict[str, type[VerifyStrategy]] = {VLLMTritonTokenSlots.name: VLLMTritonTokenSlots}
