"""vLLM 0.33.0's own GDN kernels: the ``vllm_triton`` kernel-contract backend (decode) and the loaders
the ``vllm_*`` verify strategies share (:mod:`gdnlab.strategies.vllm`).

vLLM's Qwen GDN layer (``vllm/model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py`` in the 0.33.0
wheel) runs:

* plain decode: ``fused_recurrent_gated_delta_rule_packed_decode`` (L1981-L2031; default
  ``VLLM_ENABLE_FLA_PACKED_RECURRENT_DECODE=1``, ``vllm/envs.py`` L1228) from
  ``vllm/third_party/flash_linear_attention/ops/fused_recurrent.py`` — :class:`VLLMTritonBackend`;
* speculative verify, ``VLLM_GDN_DECODE_KERNEL=triton``: ``fused_sigmoid_gating_delta_rule_update``
  with ``ssm_state_indices [B, T]`` and ``num_accepted_tokens`` (L1757-L1778, ``ops/fused_sigmoid_gating.py``):
  the state after token t is written to the request's slot t, the next verify starts from slot
  ``num_accepted - 1`` — gdnlab's ``token_slots`` strategy, not a batch-scoped intermediate buffer;
* speculative verify, ``VLLM_GDN_DECODE_KERNEL=cuda`` (default where supported: BF16 model, K = V =
  128, BF16 conv cache, FP32/BF16 state, cc >= 8.0, L779-L801): the compiled
  ``torch.ops._C.fused_gdn_decode_post_conv_mtp`` (``vllm/_custom_ops.py`` L2872-L2908, in
  ``vllm/_C_stable_libtorch.abi3.so``), same slots, fused with the gated RMSNorm of the output.

So vLLM has no verify of the kernel contract's shape: :class:`VLLMTritonBackend` implements decode
only (``verify_state_dtypes = ()``); the verify paths are strategies. Inputs: the packed decode reads a
``mixed_qkv`` row per request (see :func:`gdnlab.kernels.sglang.packed_qkv`: a view when q, k, v
are packed, else one ``cat``); padding rows (index -1; vLLM's null block is slot 0, ``<= 0`` skipped,
L297-L303) get zero outputs from the kernel itself, so no extra launch is needed.
"""
from __future__ import annotations

import torch

from . import _engine_import as eng
from ._triton_interpret import interpret_enabled
from .base import GDNBackend, KernelPath, _arch
from .sglang import packed_qkv

__all__ = ["VLLMTritonBackend", "MODULES", "load_ops", "triton_device_ok", "cuda_op_ok"]

#: vLLM modules (0.33.0) gdnlab calls, by role
MODULES: dict[str, str] = {
    "fused_recurrent": "vllm.third_party.flash_linear_attention.ops.fused_recurrent",
    "fused_sigmoid_gating": "vllm.third_party.flash_linear_attention.ops.fused_sigmoid_gating",
    "custom_ops": "vllm._custom_ops",
    "compiled": "vllm._C_stable_libtorch",
}
_ENGINE = "vllm"


def load_ops(role: str, *names: str) -> tuple:
    """Symbols of vLLM module ``role`` (:data:`MODULES`); in Triton's interpreter the module's
    ``tl`` aliases are rebound first (:func:`gdnlab.kernels._engine_import.interpreter_aliases`)."""
    out = eng.load_symbols(_ENGINE, MODULES[role], *names)
    if interpret_enabled() and role in ("fused_recurrent", "fused_sigmoid_gating"):
        eng.interpreter_aliases(eng.load(_ENGINE, MODULES[role]))
    return out


def triton_device_ok() -> tuple[bool, str]:
    """``(ok, where)`` for vLLM's Triton kernels: a CUDA device, or Triton's CPU interpreter."""
    ok, why = eng.check(_ENGINE)
    if not ok:
        return False, why
    try:
        import triton  # noqa: F401 - presence check
    except ImportError:
        return False, "triton not installed"
    if torch.cuda.is_available():
        return True, f"{why} on {torch.cuda.get_device_name()}"
    if interpret_enabled():
        return True, f"{why} via Triton's CPU interpreter (TRITON_INTERPRET=1, no CUDA device; slow, for tests)"
    return False, f"{why}: no CUDA device (set TRITON_INTERPRET=1 to run vLLM's Triton kernels on the CPU)"


def cuda_op_ok() -> tuple[bool, str]:
    """``(ok, reason)`` for ``torch.ops._C.fused_gdn_decode_post_conv_mtp``: vLLM installed, a CUDA
    GPU of cc >= 8.0, ``vllm._C_stable_libtorch`` loadable (it needs the torch it was built for:
    2.11 + CUDA 13 for vLLM 0.33.0) and the op registered."""
    ok, why = eng.check(_ENGINE)
    if not ok:
        return False, why
    if not torch.cuda.is_available():
        return False, f"{why}: the compiled op needs a CUDA GPU"
    cc = torch.cuda.get_device_capability()
    if cc < (8, 0):
        return False, f"{why}: the compiled op needs compute capability >= 8.0, this GPU is {cc}"
    try:
        eng.load(_ENGINE, MODULES["compiled"])
    except eng.EngineUnavailable as exc:
        return False, (f"{exc} (vllm/_C_stable_libtorch.abi3.so missing or built for another torch; the GPU bundle "
                       "carries it with GPU_VLLM_C=1)")
    if not hasattr(torch.ops._C, "fused_gdn_decode_post_conv_mtp"):
        return False, f"{why}: torch.ops._C.fused_gdn_decode_post_conv_mtp is not registered"
    try:
        load_ops("custom_ops", "fused_gdn_decode_post_conv_mtp")
    except eng.EngineUnavailable as exc:
        return False, str(exc)
    return True, f"{why} torch.ops._C.fused_gdn_decode_post_conv_mtp on {torch.cuda.get_device_name()}"


class VLLMTritonBackend(GDNBackend):
    """vLLM's packed Triton decode (decode only: vLLM's verify is the ``token_slots`` strategy,
    :mod:`gdnlab.strategies.vllm`)."""

    name = "vllm_triton"
    decode_state_dtypes = (torch.float32, torch.bfloat16)
    verify_state_dtypes = ()

    def __init__(self) -> None:
        super().__init__()
        (self._decode_fn,) = load_ops("fused_recurrent", "fused_recurrent_gated_delta_rule_packed_decode")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, why = triton_device_ok()
        if not ok:
            return False, why
        try:
            load_ops("fused_recurrent", "fused_recurrent_gated_delta_rule_packed_decode")
        except eng.EngineUnavailable as exc:
            return False, str(exc)
        return True, f"{why}: fused_recurrent_gated_delta_rule_packed_decode"

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        mixed, copied = packed_qkv(q, k, v)
        out = torch.empty((dims.B, 1, dims.HV, dims.V), dtype=q.dtype, device=q.device)
        self._decode_fn(mixed_qkv=mixed, a=a[:, 0], b=b[:, 0], A_log=A_log, dt_bias=dt_bias, scale=scale,
                        initial_state=pool, out=out, ssm_state_indices=indices, use_qk_l2norm_in_kernel=True)
        self.last_path = KernelPath("decode", "fused_recurrent_gated_delta_rule_packed_decode", _arch(q.device), {
            "engine": f"vllm {eng.ENGINE_VERSIONS['vllm']}", "interpreter": q.device.type != "cuda",
            "qkv": "concatenated (one cat launch)" if copied else "packed view (no copy)"})
        return out

    def _verify(self, *args, **kwargs):
        raise ValueError("vLLM has no full-cache verify: its verify writes per-token state slots "
                         "(strategy 'token_slots' on backend 'vllm_triton')")
