"""The ``vllm_cuda`` verify strategy: vLLM 0.33.0's compiled ``fused_gdn_decode_post_conv_mtp``
(``VLLM_GDN_DECODE_KERNEL=cuda``, vLLM's default where supported), per-token state slots as
:mod:`gdnlab.strategies.vllm`.

The op (``vllm/_custom_ops.py`` L2872-L2908 -> ``torch.ops._C``, ``vllm/_C_stable_libtorch.abi3.so``)
reads the packed ``mixed_qkv [B*T, 2HK + HV V]`` (a view of gdnlab's inputs when they are packed,
:func:`gdnlab.kernels.sglang.pack_inputs`, else one ``cat``) and fuses the layer's gated RMSNorm
into its output: ``out = o * rsqrt(mean_V(o^2) + eps) * w * gate``. gdnlab has no norm weights or
output gate, so it passes ``w = 1`` (float32) and a gate of +30 with the ``sigmoid`` activation
(``sigmoid(30)`` is 1.0 in float32), both allocated once: **verify returns the RMS-normalised
output** ``o / rms(o)`` per (token, value head), not ``o``. The states it writes are the plain delta-rule
states. Constraints (``qwen_gdn_linear_attn.py`` L779-L801, the op's instantiations): bf16
activations, K = V = 128, float32 or bf16 state, T <= 8, cc >= 8.0, and the op present in the
installed ``vllm._C_stable_libtorch`` (built for torch 2.11 / CUDA 13).
"""
from __future__ import annotations

import torch

from ...kernels.base import KernelPath, _arch
from ...kernels.sglang import packed_qkv, token_offsets
from ...kernels.vllm import cuda_op_ok, load_ops
from ...shapes import dtype_from_name
from ..base import VerifyStrategy
from . import VLLMTokenSlots

__all__ = ["STRATEGIES", "availability", "BACKEND", "VLLMCudaTokenSlots", "NORM_EPS", "GATE_LOGIT"]

BACKEND = "vllm_cuda"
#: eps of the fused RMSNorm gdnlab passes (vLLM passes the model's ``layer_norm_epsilon``)
NORM_EPS = 1e-6
#: output-gate logit: ``sigmoid(30) == 1.0`` in float32
GATE_LOGIT = 30.0


def availability() -> tuple[bool, str]:
    return cuda_op_ok()


class VLLMCudaTokenSlots(VLLMTokenSlots):
    """``token_slots`` on vLLM's compiled op; ``verify`` returns ``o / rms(o)`` (module docstring)."""

    backend = BACKEND
    #: verify's output is the RMS-normalised output (checks compare it with the normalised reference)
    output_is_rms_normalised = True

    @classmethod
    def supports(cls, state_dtype=None, T=None, batch=None, sm=None, *, HV=None, K=None, V=None, act_dtype=None):
        """The op's constraints (module docstring)."""
        ok, why = super().supports(state_dtype, T, batch, sm, HV=HV, K=K, V=V, act_dtype=act_dtype)
        if not ok:
            return ok, why
        if T is not None and not 1 <= int(T) <= 8:
            return False, f"vLLM's fused op is instantiated for 1..8 tokens per request, got T={T}"
        if (K is not None and K != 128) or (V is not None and V != 128):
            return False, f"vLLM's fused op needs K = V = 128, got K={K}, V={V}"
        if act_dtype is not None and dtype_from_name(act_dtype) != torch.bfloat16:
            return False, f"vLLM's fused op needs bf16 activations, got {act_dtype}"
        return True, "ok"

    def _launch(self, q, k, v, a, b, A_log, dt_bias, pool, rows, acc, scratch, scale, dims):
        (op,) = load_ops("custom_ops", "fused_gdn_decode_post_conv_mtp")
        N = dims.B * dims.T
        ex = scratch.extra
        if ex.get("gate") is None or ex["gate"].shape[0] < N:
            n = scratch.max_batch * scratch.T
            ex["gate"] = torch.full((n, dims.HV, dims.V), GATE_LOGIT, dtype=q.dtype, device=q.device)
            ex["weight"] = torch.ones(dims.V, dtype=torch.float32, device=q.device)
        mixed, copied = packed_qkv(q, k, v)
        out = torch.empty((N, dims.HV, dims.V), dtype=q.dtype, device=q.device)
        op(mixed_qkv=mixed.reshape(N, -1), a=a.reshape(N, dims.HV), b=b.reshape(N, dims.HV),
           A_log=A_log.float(), dt_bias=dt_bias, state_indices=rows, cu_seqlens=token_offsets(dims.B, dims.T, q.device),
           num_accepted_tokens=acc, state=pool, output_gate=ex["gate"][:N], norm_weight=ex["weight"], out=out,
           scale=scale, norm_eps=NORM_EPS, output_gate_activation="sigmoid")
        self.last_path = KernelPath("verify", "gdn_decode_post_conv_mtp_kernel", _arch(q.device), {
            "strategy": self.name, "engine": "vllm 0.33.0", "output": "rms-normalised",
            "qkv": "concatenated (one cat launch)" if copied else "packed view (no copy)"})
        return out.view(dims.B, dims.T, dims.HV, dims.V)


STRATEGIES: dict[str, type[VerifyStrategy]] = {VLLMCudaTokenSlots.name: VLLMCudaTokenSlots}
