"""SGLang 0.5.23's own GDN kernels behind gdnlab's kernel contract (``sglang_*`` backends).

Each class calls SGLang's kernel classes from the installed ``sglang`` package (imported through a
bare package, :mod:`gdnlab.kernels._engine_import`; nothing of SGLang is copied into gdnlab), with
the arguments SGLang's GDN backend passes (``sglang/srt/layers/attention/linear/gdn_backend.py``
``forward_decode`` L678-L917 and ``forward_extend`` L948-L1228 of the 0.5.23 wheel):

=================  ==========================================================================
backend            calls
=================  ==========================================================================
sglang_triton      decode: ``TritonGDNKernel.packed_decode`` (``kernels/gdn_triton.py`` L47-L136 ->
                   ``fused_recurrent_gated_delta_rule_packed_decode``, ``fla/fused_recurrent.py``);
                   verify: ``TritonGDNKernel.target_verify`` (L232-L270 ->
                   ``fused_sigmoid_gating_delta_rule_update(disable_state_update=True,
                   intermediate_states_buffer, intermediate_state_indices, cache_steps)``);
                   commit: ``fused_mamba_state_scatter_with_mask``
                   (``sglang/kernels/ops/mamba/mamba_state_scatter_triton.py`` L312-L398).
sglang_flashinfer  decode: ``FlashInferGDNKernel.decode`` (``kernels/gdn_flashinfer.py`` L404-L482:
                   SM90 gathers ``ssm_states[cache_indices]``, runs FlashInfer's non-pool
                   ``gated_delta_rule_decode_pretranspose`` and scatters back; SM100 uses the pool API);
                   verify: ``FlashInferGDNKernel.target_verify`` (L632-L760, FlashInfer
                   ``gated_delta_rule_mtp``: float32 state on SM90, bf16 on SM100); commit: as
                   sglang_triton (SGLang commits every full-cache verify with the Triton scatter).
sglang_cutedsl     decode only: ``CuteDSLGDNKernel.decode`` (``kernels/gdn_cutedsl.py`` L84-L113 ->
                   ``cutedsl_fused_sigmoid_gating_delta_rule_update``); SGLang has no CuTe-DSL verify
                   (``target_verify`` raises, L176-L177): SGLang verifies with Triton there.
=================  ==========================================================================

**Layouts.** SGLang's state pool is ``[slots+1, HV, V, K]`` (K last), gdnlab's ``[P, HV, V, K]``: the
pool is passed as it is. Verify inputs go in as SGLang's ``[1, B*T, ...]`` token-major views with
``query_start_loc = [0, T, 2T, ...]`` (int32, cached per (B, T, device)); the batch-scoped
intermediate ``[B, T, HV, V, K]`` is SGLang's ``intermediate_ssm`` with
``intermediate_state_indices = arange(B)`` (cached) and ``cache_steps = T``. Extra work the
adaptation adds, visible in timings:

* decode (sglang_triton): SGLang's packed decode reads one ``mixed_qkv [B, 2HK + HV V]`` row per
  request (the conv1d output). When q, k and v are views of one such buffer
  (:func:`pack_inputs`) it is passed as a strided view (no copy); otherwise the adapter
  concatenates them (one ``cat`` launch), recorded as ``last_path.detail["qkv"]``.
* ``contract_padding=True`` (default, gdnlab's contract): padding rows' outputs are zeroed (one
  ``masked_fill_``) and their intermediate rows are not written (``intermediate_state_indices`` of
  padding rows set to -1: one ``where``); for sglang_flashinfer SM90 decode padding rows are sent to
  the reserved slot 0 instead of SGLang's ``-1`` (the last slot of SGLang's pool, its dummy row).
  ``contract_padding=False`` runs exactly SGLang's launches (what :func:`gdnlab.kernels.make_backend`
  passes for ``engine="sglang"``).

**Numerics.** SGLang's packed decode rounds ``beta = sigmoid(b)`` to the activation dtype before the
update (``fla/fused_recurrent.py`` L255); gdnlab's reference does not, so the decode state differs by
up to one bf16 ulp of beta times ``|u k|``: :meth:`SGLangTritonBackend.extra_tolerance` declares it
(:func:`gdnlab.kernels.tolerances.rounded_beta_extra`).

Without CUDA the Triton paths run in Triton's CPU interpreter (``TRITON_INTERPRET=1``); there the
scatter's wrapper (CUDA/XPU tensors only) is bypassed by launching its kernel
(``_fused_mamba_state_scatter_with_mask_kernel``) with the wrapper's own arguments, and fla's
``exp = tl.exp`` alias is rebound (:func:`~gdnlab.kernels._engine_import.interpreter_aliases`).
"""
from __future__ import annotations

import functools

import torch

from ..inputs import GDNInputs
from . import _engine_import as eng
from . import tolerances as tol_
from ._triton_interpret import interpret_enabled
from .base import GDNBackend, KernelPath, _arch
from .validation import GDNCallDims, check_commit

__all__ = ["SGLangTritonBackend", "SGLangFlashInferBackend", "SGLangCuteDSLBackend", "pack_inputs", "packed_qkv",
           "sglang_scatter_commit", "token_offsets", "MODULES"]

#: SGLang modules (0.5.23) this file calls, by role
MODULES: dict[str, str] = {
    "triton": "sglang.srt.layers.attention.linear.kernels.gdn_triton",
    "flashinfer": "sglang.srt.layers.attention.linear.kernels.gdn_flashinfer",
    "cutedsl": "sglang.srt.layers.attention.linear.kernels.gdn_cutedsl",
    "scatter": "sglang.kernels.ops.mamba.mamba_state_scatter_triton",
    "fla_recurrent": "sglang.kernels.ops.attention.fla.fused_recurrent",
}
_ENGINE = "sglang"


# ---------------------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=64)
def _offsets(B: int, T: int, device: str) -> torch.Tensor:
    return torch.arange(0, B * T + 1, T, dtype=torch.int32, device=device)


def token_offsets(B: int, T: int, device: torch.device) -> torch.Tensor:
    """``query_start_loc = [0, T, ..., B T]`` int32 (cached: SGLang builds it once per batch, not per layer)."""
    return _offsets(int(B), int(T), str(device))


@functools.lru_cache(maxsize=64)
def _rows(B: int, device: str) -> torch.Tensor:
    return torch.arange(B, dtype=torch.int32, device=device)


def packed_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``mixed_qkv [N, 2HK + HV V]`` from q, k ``[B, T, H, K]`` and v ``[B, T, HV, V]`` (N = B T):
    a strided view when they are views of one such buffer (:func:`pack_inputs`), else a new
    ``cat``. Returns ``(mixed, copied)``."""
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    D = 2 * H * K + HV * V
    same = (q.dtype == k.dtype == v.dtype and q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
            == v.untyped_storage().data_ptr())
    o = q.storage_offset()

    def strided(t: torch.Tensor, want: tuple[int, ...]) -> bool:      # strides of size-1 dims are free
        return all(n == 1 or s == w for n, s, w in zip(t.shape, t.stride(), want))

    if (same and k.storage_offset() == o + H * K and v.storage_offset() == o + 2 * H * K
            and strided(q, (T * D, D, K, 1)) and strided(k, (T * D, D, K, 1)) and strided(v, (T * D, D, V, 1))):
        return torch.as_strided(q, (B * T, D), (D, 1), o), False
    N = B * T
    return torch.cat([q.reshape(N, H * K), k.reshape(N, H * K), v.reshape(N, HV * V)], dim=-1), True


def pack_inputs(inp: GDNInputs) -> GDNInputs:
    """The same inputs with q, k, v as views of one packed ``[B, T, 2HK + HV V]`` buffer, the layout
    of SGLang's conv1d output (so the packed decode reads them without a copy)."""
    B, T, H, K = inp.q.shape
    HV, V = inp.v.shape[2], inp.v.shape[3]
    buf = torch.cat([inp.q.reshape(B, T, H * K), inp.k.reshape(B, T, H * K), inp.v.reshape(B, T, HV * V)], dim=-1)
    q = buf[..., :H * K].view(B, T, H, K)
    k = buf[..., H * K:2 * H * K].view(B, T, H, K)
    v = buf[..., 2 * H * K:].view(B, T, HV, V)
    return GDNInputs(q, k, v, inp.a, inp.b, inp.A_log, inp.dt_bias)


def _triton_device_ok() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401 - presence check
    except ImportError:
        return False, "triton not installed"
    if torch.cuda.is_available():
        return True, torch.cuda.get_device_name()
    if interpret_enabled():
        return True, "Triton's CPU interpreter (TRITON_INTERPRET=1, no CUDA device; slow, for tests)"
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run SGLang's Triton kernels in Triton's CPU interpreter)"


def _cuda_cc() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def sglang_scatter_commit(pool: torch.Tensor, indices: torch.Tensor, inter: torch.Tensor,
                          accepted: torch.Tensor) -> str:
    """SGLang's full-cache commit, ``pool[indices[i]] = inter[i, accepted[i]-1]`` through
    ``fused_mamba_state_scatter_with_mask`` on ``[1, ...]`` layer views (no copy); rows with a negative
    index are skipped by the kernel. ``accepted - 1`` is one elementwise op (SGLang's
    ``last_correct_step_indices``, computed by its spec bookkeeping). Returns how it launched."""
    sc = eng.load(_ENGINE, MODULES["scatter"])
    steps = (accepted - 1).to(torch.int32)
    dst, src = pool.unsqueeze(0), inter.unsqueeze(0)
    if pool.is_cuda:
        sc.fused_mamba_state_scatter_with_mask(dst, src, indices, steps, None)
        return "fused_mamba_state_scatter_with_mask"
    if not interpret_enabled():
        raise ValueError(f"SGLang's scatter needs CUDA tensors (or TRITON_INTERPRET=1), got {pool.device}")
    import triton
    # the wrapper (L312-L398) refuses CPU tensors; its own launch, argument for argument
    idx = indices.to(torch.int32).contiguous()
    rows = torch.arange(steps.shape[0], dtype=torch.int32)
    epe = dst.numel() // (dst.shape[0] * dst.shape[1])
    grid = (steps.shape[0], 1, triton.cdiv(epe, 1024))
    sc._fused_mamba_state_scatter_with_mask_kernel[grid](
        src, dst, idx, steps.contiguous(), rows, epe, src.stride(0), src.stride(1), src.stride(2), dst.stride(0),
        dst.stride(1), src.shape[1], src.shape[2], dst.shape[1], BLOCK_SIZE=1024)
    return "_fused_mamba_state_scatter_with_mask_kernel (interpreter: launched without its CUDA-only wrapper)"


class _SGLangBackend(GDNBackend):
    """Shared: availability (package, version, device, symbols), padding handling, ``last_path``."""

    #: (role in :data:`MODULES`, class name) this backend calls
    kernel_class: tuple[str, str] = ("triton", "TritonGDNKernel")

    def __init__(self, contract_padding: bool = True) -> None:
        super().__init__()
        self.contract_padding = bool(contract_padding)
        role, cls = self.kernel_class
        self.kernel = getattr(eng.load(_ENGINE, MODULES[role]), cls)()

    @classmethod
    def _device_ok(cls) -> tuple[bool, str]:
        return _triton_device_ok()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, why = eng.check(_ENGINE)
        if not ok:
            return False, why
        dev_ok, dev = cls._device_ok()
        if not dev_ok:
            return False, f"{why}: {dev}"
        try:
            eng.load_symbols(_ENGINE, MODULES[cls.kernel_class[0]], cls.kernel_class[1])
            eng.load_symbols(_ENGINE, MODULES["scatter"], "fused_mamba_state_scatter_with_mask",
                             "_fused_mamba_state_scatter_with_mask_kernel")
        except eng.EngineUnavailable as exc:
            return False, str(exc)
        return True, f"{why} {cls.kernel_class[1]} on {dev}"

    def new_intermediate(self, dims: GDNCallDims, pool: torch.Tensor) -> torch.Tensor:
        """``[B, T, HV, V, K]`` in the pool's dtype: SGLang's ``intermediate_ssm`` has the SSM dtype
        (``sglang/srt/mem_cache/memory_pool.py`` L883-L895)."""
        return torch.empty((dims.B, dims.T, dims.HV, dims.V, dims.K), dtype=pool.dtype, device=pool.device)

    def commit(self, pool, indices, intermediate, accepted, *, validate: bool = True) -> None:
        """SGLang's scatter (:func:`sglang_scatter_commit`)."""
        check_commit(pool, indices, intermediate, accepted, validate_values=validate)
        how = sglang_scatter_commit(pool, indices, intermediate[:indices.shape[0]], accepted)
        self.last_path = KernelPath("commit", "fused_mamba_state_scatter_with_mask", _arch(pool.device),
                                    {"engine": f"sglang {eng.ENGINE_VERSIONS['sglang']}", "launch": how})

    def _zero_padding(self, o: torch.Tensor, indices: torch.Tensor) -> None:
        if self.contract_padding:
            o.masked_fill_((indices < 0).view(-1, *([1] * (o.dim() - 1))), 0)

    def _path(self, op: str, kernel: str, device: torch.device, **detail) -> None:
        self.last_path = KernelPath(op, kernel, _arch(device), {
            "engine": f"sglang {eng.ENGINE_VERSIONS['sglang']}", "padding": "contract" if self.contract_padding
            else "engine", "interpreter": device.type != "cuda", **detail})


# ---------------------------------------------------------------------------------------------- Triton
class SGLangTritonBackend(_SGLangBackend):
    """SGLang's Triton GDN path (``--linear-attn-decode-backend triton``, the default, and
    ``--linear-attn-verify-backend triton``). Args: ``contract_padding`` (module docstring)."""

    name = "sglang_triton"
    decode_state_dtypes = (torch.float32, torch.bfloat16)
    verify_state_dtypes = (torch.float32, torch.bfloat16)
    kernel_class = ("triton", "TritonGDNKernel")

    def __init__(self, contract_padding: bool = True) -> None:
        super().__init__(contract_padding)
        if interpret_enabled():
            eng.interpreter_aliases(eng.load(_ENGINE, MODULES["fla_recurrent"]))

    def extra_tolerance(self, op: str, state_dtype: torch.dtype) -> dict[str, tol_.Tolerance]:
        """Error beyond the storage tolerances: SGLang's packed decode rounds beta to the activation dtype."""
        return tol_.rounded_beta_extra() if op == "decode" else {}

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        mixed, copied = packed_qkv(q, k, v)
        out = self.kernel.packed_decode(mixed, a[:, 0], b[:, 0], A_log=A_log, dt_bias=dt_bias, scale=scale,
                                        ssm_states=pool, cache_indices=indices, num_v_heads=dims.HV,
                                        head_v_dim=dims.V)
        self._path("decode", "fused_recurrent_gated_delta_rule_packed_decode", q.device,
                   call="TritonGDNKernel.packed_decode", qkv="concatenated (one cat launch)" if copied
                   else "packed view (no copy)")
        return out.transpose(0, 1)          # [1, B, HV, V] -> [B, 1, HV, V], a view (padding rows: zeros)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate):
        if abs(scale - dims.K ** -0.5) > 1e-12 * scale:
            raise ValueError("SGLang's Triton verify always uses scale K**-0.5 (TritonGDNKernel.target_verify "
                             f"passes none); got scale={scale}")
        B, T, N = dims.B, dims.T, dims.B * dims.T
        rows = _rows(B, str(q.device))
        if self.contract_padding:
            rows = torch.where(indices >= 0, rows, torch.full_like(rows, -1))
        o = self.kernel.target_verify(
            A_log, dt_bias, q.reshape(1, N, dims.H, dims.K), k.reshape(1, N, dims.H, dims.K),
            v.reshape(1, N, dims.HV, dims.V), a.reshape(N, dims.HV), b.reshape(N, dims.HV), ssm_states=pool,
            cache_indices=indices, query_start_loc=token_offsets(B, T, q.device),
            intermediate_states_buffer=intermediate, intermediate_state_indices=rows, cache_steps=T,
            retrieve_parent_token=None).view(B, T, dims.HV, dims.V)
        self._zero_padding(o, indices)
        self._path("verify", "fused_sigmoid_gating_delta_rule_update", q.device, call="TritonGDNKernel.target_verify")
        return o


# ---------------------------------------------------------------------------------------------- FlashInfer
class SGLangFlashInferBackend(_SGLangBackend):
    """SGLang's FlashInfer GDN path (``--linear-attn-decode-backend flashinfer``; verify follows).
    State dtypes follow the GPU: float32 on SM90 (gather/run/scatter decode, fp32 MTP verify),
    bfloat16 on SM100 (pool decode, bf16 MTP verify); see :mod:`gdnlab.kernels.sglang_rule`."""

    name = "sglang_flashinfer"
    kernel_class = ("flashinfer", "FlashInferGDNKernel")

    def __init__(self, contract_padding: bool = True) -> None:
        super().__init__(contract_padding)
        major = (_cuda_cc() or (0, 0))[0]
        dt = (torch.float32,) if major == 9 else (torch.bfloat16,)
        self.decode_state_dtypes = dt
        self.verify_state_dtypes = dt if getattr(self.kernel, "supports_target_verify", False) else ()
        self.writes_padding_intermediate = major >= 10

    @classmethod
    def _device_ok(cls) -> tuple[bool, str]:
        cc = _cuda_cc()
        if cc is None:
            return False, "needs a CUDA GPU (SM90 or SM100: FlashInferGDNKernel)"
        if cc[0] < 9:
            return False, f"needs SM90+ (FlashInferGDNKernel), this GPU is sm{cc[0]}{cc[1]}"
        return True, f"{torch.cuda.get_device_name()} (sm{cc[0]}{cc[1]})"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """As the other SGLang backends, plus FlashInfer's GDN kernels importing (SGLang's
        ``_get_flashinfer_gdn_kernels``, ``gdn_flashinfer.py`` L122-L160)."""
        ok, why = super().availability()
        if not ok:
            return ok, why
        (probe,) = eng.load_symbols(_ENGINE, MODULES["flashinfer"], "_get_flashinfer_gdn_kernels")
        if not probe()[0]:
            return False, ("SGLang's FlashInfer GDN kernels did not import (flashinfer-python with its CuTe-DSL "
                           "runtime: pip install 'gdnlab[gpu]' or the GPU bundle)")
        return ok, why

    def scratch_slots_for(self, op: str, state_dtype: torch.dtype) -> tuple[int, ...]:
        """Pool slots a call may overwrite for padding rows: slot 0 (SM90 decode's gather/scatter of
        padding rows, sent there under ``contract_padding``; SM100's bf16 kernels' null slot)."""
        return (0,) if (op == "decode" or self.writes_padding_intermediate) else ()

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        if abs(scale - dims.K ** -0.5) > 1e-12 * scale:
            raise ValueError(f"SGLang's FlashInfer decode uses scale K**-0.5; got scale={scale}")
        idx = torch.where(indices >= 0, indices, torch.zeros_like(indices)) if self.contract_padding else indices
        out = self.kernel.decode(q, k, v, a, b, A_log=A_log, dt_bias=dt_bias, ssm_states=pool, cache_indices=idx,
                                 query_start_loc=token_offsets(dims.B, 1, q.device))
        o = out.view(dims.B, 1, dims.HV, dims.V)
        self._zero_padding(o, indices)
        self._path("decode", "gated_delta_rule_decode_pretranspose", q.device, call="FlashInferGDNKernel.decode",
                   state="pool API" if self.kernel.use_state_pool else "gather, run, scatter")
        return o

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate):
        if abs(scale - dims.K ** -0.5) > 1e-12 * scale:
            raise ValueError(f"SGLang's FlashInfer verify uses scale K**-0.5; got scale={scale}")
        B, T, N = dims.B, dims.T, dims.B * dims.T
        o = self.kernel.target_verify(
            A_log, dt_bias, q.reshape(1, N, dims.H, dims.K), k.reshape(1, N, dims.H, dims.K),
            v.reshape(1, N, dims.HV, dims.V), a.reshape(N, dims.HV), b.reshape(N, dims.HV), ssm_states=pool,
            cache_indices=indices, query_start_loc=token_offsets(B, T, q.device),
            intermediate_states_buffer=intermediate, intermediate_state_indices=_rows(B, str(q.device)),
            cache_steps=T, retrieve_parent_token=None).view(B, T, dims.HV, dims.V)
        self._zero_padding(o, indices)
        self._path("verify", "gated_delta_rule_mtp", q.device, call="FlashInferGDNKernel.target_verify",
                   fallback=bool(getattr(self.kernel, "_alignment_fallback_warned", False)))
        return o


# ---------------------------------------------------------------------------------------------- CuTe DSL
class SGLangCuteDSLBackend(_SGLangBackend):
    """SGLang's CuTe-DSL decode (``--linear-attn-decode-backend cutedsl``): decode only, SGLang
    verifies with Triton there (``sglang_triton``). Needs CUDA, SM90+, ``nvidia-cutlass-dsl`` and
    ``cuda-python`` (``cuda.bindings``)."""

    name = "sglang_cutedsl"
    decode_state_dtypes = (torch.float32, torch.bfloat16)
    verify_state_dtypes = ()
    kernel_class = ("cutedsl", "CuteDSLGDNKernel")

    @classmethod
    def _device_ok(cls) -> tuple[bool, str]:
        cc = _cuda_cc()
        if cc is None:
            return False, "needs a CUDA GPU (SM90+: CuTe DSL decode kernel)"
        if cc[0] < 9:
            return False, f"needs SM90+ (CuTe DSL decode kernel), this GPU is sm{cc[0]}{cc[1]}"
        return True, f"{torch.cuda.get_device_name()} (sm{cc[0]}{cc[1]})"

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        B = dims.B
        out = self.kernel.decode(q.reshape(1, B, dims.H, dims.K), k.reshape(1, B, dims.H, dims.K),
                                 v.reshape(1, B, dims.HV, dims.V), a.reshape(B, dims.HV), b.reshape(B, dims.HV),
                                 A_log=A_log, dt_bias=dt_bias, ssm_states=pool, cache_indices=indices,
                                 query_start_loc=token_offsets(B, 1, q.device))
        o = out.reshape(B, 1, dims.HV, dims.V).to(q.dtype)
        self._zero_padding(o, indices)
        self._path("decode", "cutedsl_fused_sigmoid_gating_delta_rule_update", q.device,
                   call="CuteDSLGDNKernel.decode")
        return o

    def _verify(self, *args, **kwargs):
        raise ValueError("SGLang's CuTe DSL backend has no verify kernel (CuteDSLGDNKernel.target_verify raises); "
                         "SGLang verifies with Triton there: use backend 'sglang_triton'")
