"""Shared plumbing of the ``flashinfer`` verify strategies (:mod:`gdnlab.strategies.flashinfer`, whose
docstring has the FlashInfer sources and the abbreviations "gd", "bf16", "wy", "uf", "mtp"): the
FlashInfer module names, the masked-token logit, the SM90 gaps, the seams CPU tests replace, the
module's :func:`availability`, :class:`FlashInferOps` and the strategies' base class.

Seams (:func:`_import_module`, :func:`_cuda_available`, :func:`_current_cc`, :func:`_tensor_cc`) are
looked up in this module at call time (other modules of the package call them as ``_common.<name>``),
so a test replaces them here.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, ClassVar

import torch

from ...errors import UnavailableError
from ...kernels.base import KernelPath
from ...kernels.flashinfer import FlashInferBackend, check_flashinfer, device_capability
from ...kernels.validation import GDNCallDims
from ...shapes import dtype_from_name, dtype_name
from ..base import VerifyStrategy
from ..ops import RecurrentOps, TorchOps

BACKEND = "flashinfer"

#: ``a`` and ``b`` of a masked (state-preserving) token; exact in bf16 and fp16 (module docstring)
MASK_LOGIT = -1.0e4

#: FlashInfer GDN kernels that exist in 0.7.4 but not on SM90: name -> reason (source)
SM90_UNAVAILABLE: dict[str, str] = {
    "cache_replayssm": "gated_delta_rule_mtp(cache_replayssm=True) needs SM100/SM103 or SM120 "
                       "(flashinfer gdn_decode.py L1666-L1668)",
    "gated_delta_rule_replayssm_commit": "fold-every-commit ReplaySSM commit needs SM100/SM103 or SM120 "
                                         "(flashinfer gdn_decode.py L1836-L1838)",
}

_GD = "flashinfer.gdn_decode"
_MTP = "flashinfer.gdn_kernels.gdn_decode_mtp"
_BF16 = "flashinfer.gdn_kernels.gdn_decode_bf16_state"
_WY = "flashinfer.gdn_kernels.gdn_decode_bf16_wy_output_only"
_UF = "flashinfer.gdn_kernels.gdn_decode_bf16_wy_ucache_flush"


# ---------------------------------------------------------------------------------------------- seams
# Small module-level functions so CPU tests can stand in for a GPU or an install.

def _import_module(name: str) -> ModuleType:
    os.environ.setdefault("FLASHINFER_DISABLE_VERSION_CHECK", "1")  # as SGLang does
    return importlib.import_module(name)


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _current_cc() -> tuple[int, int] | None:
    """Compute capability of the current CUDA device, ``None`` without one."""
    if not _cuda_available():
        return None
    return device_capability(torch.device("cuda", torch.cuda.current_device()))


def _tensor_cc(t: torch.Tensor) -> tuple[int, int] | None:
    return device_capability(t.device)


def _sm_name(cc: tuple[int, int]) -> str:
    return f"sm{cc[0]}{cc[1]}"


def _as_cc(sm: int | str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``90``, ``"sm90"``, ``(9, 0)`` -> ``(9, 0)``; ``None`` stays ``None``."""
    if sm is None or isinstance(sm, tuple):
        return sm
    n = int(str(sm).lower().removeprefix("sm").rstrip("a"))
    return (n // 10, n % 10)


def availability() -> tuple[bool, str]:
    """``(False, "no CUDA device")``, ``(False, "flashinfer not importable: <error>")``,
    ``(False, "needs SM90+, found sm80")`` or ``(True, "flashinfer 0.7.4 on <GPU> (sm90)")``
    (:func:`gdnlab.kernels.flashinfer.check_flashinfer` with this module's seams)."""
    return check_flashinfer(_current_cc(), ("cutlass.cute", _GD, _MTP, _BF16), import_module=_import_module,
                            failed="flashinfer not importable")


# ---------------------------------------------------------------------------------------------- ops
class FlashInferOps(RecurrentOps):
    """The strategy primitive for this backend. FlashInfer has no ``(u, k, g)`` replay kernel, so
    :meth:`recurrent` (used by the base class only to materialise states for inspection) is the
    PyTorch one; :meth:`scatter_commit` is gdnlab's fused Triton scatter
    (:class:`gdnlab.strategies.triton.TritonOps`) when it imports, else ``index_copy_`` (one gather
    and one scatter launch). :attr:`scatter_kernel` says which ran last."""

    name = "flashinfer"

    def __init__(self) -> None:
        self._torch = TorchOps()
        self._scatter: RecurrentOps | None = None
        self.scatter_kernel = ""

    def recurrent(self, pool, src, *, replay=None, tokens=None) -> None:
        self._torch.recurrent(pool, src, replay=replay, tokens=tokens)

    def _scatter_ops(self, device: torch.device) -> RecurrentOps:
        if self._scatter is None:
            self._scatter = self._torch
            self.scatter_kernel = "torch_index_copy"
            if device.type == "cuda":
                try:
                    from ..triton import TritonOps
                    self._scatter = TritonOps()
                    self.scatter_kernel = "triton_fused_scatter"
                except Exception:  # noqa: BLE001 - fall back to index_copy_ (two launches)
                    pass
        return self._scatter

    def scatter_commit(self, pool, indices, inter, accepted) -> None:
        self._scatter_ops(pool.device).scatter_commit(pool, indices, inter, accepted)


# ---------------------------------------------------------------------------------------------- common
class _FlashInferStrategy(VerifyStrategy):
    """Shared plumbing: the composed :class:`FlashInferBackend` (kernel handles, gate casts, kernel
    descriptions), argument checks against :meth:`supports`, ``last_path``."""

    backend = BACKEND
    make_ops = FlashInferOps
    #: FlashInfer modules this strategy calls (imported by :meth:`availability`)
    kernel_modules: ClassVar[tuple[str, ...]] = (_GD, _MTP, _BF16)
    #: one line of constraints, shown by ``gdnlab backends``
    constraints: ClassVar[str] = ""
    state_dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.bfloat16)
    #: FlashInfer's bf16 kernels redirect padding rows (index -1) to pool slot 0, by design (a
    #: sacrificial slot, :attr:`gdnlab.kernels.flashinfer.FlashInferBackend.scratch_slots`)
    scratch_slots = (0,)

    def __init__(self, ops: RecurrentOps | None = None, **options: Any) -> None:
        super().__init__(ops, **options)
        self.fi = FlashInferBackend()
        #: which kernel served the last verify/commit (op, kernel, arch, detail)
        self.last_path = KernelPath()

    # ------------------------------------------------------------------ what runs where
    @classmethod
    def supports(cls, state_dtype: torch.dtype | str | None = None, T: int | None = None,
                 batch: int | None = None, sm: int | str | tuple[int, int] | None = None, *,
                 HV: int | None = None, K: int | None = None, V: int | None = None,
                 act_dtype: torch.dtype | str | None = None) -> tuple[bool, str]:
        """``(True, "ok")`` or ``(False, reason)`` for this strategy at these conditions; ``None``
        means "not known yet" and is not checked. ``sm`` as ``90``, ``"sm90"`` or ``(9, 0)``."""
        cc = _as_cc(sm)
        if cc is not None and cc[0] < 9:
            return False, f"FlashInfer's GDN MTP kernels need SM90+, found {_sm_name(cc)}"
        sd = None if state_dtype is None else dtype_from_name(state_dtype)
        if sd is not None and sd not in cls.state_dtypes:
            return False, (f"{cls.name} on flashinfer takes a {' or '.join(dtype_name(d) for d in cls.state_dtypes)} "
                           f"state pool, got {dtype_name(sd)}")
        if T is not None and T < 2:
            return False, f"FlashInfer's MTP kernels verify T >= 2 tokens, got T={T}"
        if act_dtype is not None and dtype_from_name(act_dtype) not in (torch.bfloat16, torch.float16):
            return False, f"q/k/v must be bfloat16 or float16 for FlashInfer, got {dtype_name(act_dtype)}"
        if sd == torch.bfloat16 and (K, V) != (None, None) and (K, V) != (128, 128):
            return False, f"FlashInfer's bf16-state kernels need K = V = 128, got K={K}, V={V}"
        if sd == torch.float32 and ((K is not None and K < 128) or (V is not None and (V < 128 or V % 64))):
            return False, f"FlashInfer's fp32 MTP kernel needs K >= 128, V >= 128 and V % 64 == 0, got K={K}, V={V}"
        return cls._supports(sd, T, batch, cc, HV)

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV) -> tuple[bool, str]:
        return True, "ok"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Conditions of this strategy on the current GPU (the module's are checked first)."""
        cc = _current_cc()
        if cc is None:
            return False, "no CUDA device"
        ok, why = cls.supports(sm=cc)
        if not ok:
            return False, why
        for mod in cls.kernel_modules:
            try:
                _import_module(mod)
            except Exception as exc:  # noqa: BLE001 - any import failure is why it is unavailable
                return False, f"flashinfer not importable: {mod}: {type(exc).__name__}: {exc}"
        return True, cls.constraints or "ok"

    def scratch_slots_for(self, state_dtype: torch.dtype | str) -> tuple[int, ...]:
        """``(0,)`` on a bfloat16 pool (the bf16 kernels read, and the state-writing ones write, slot 0
        for padding rows: bf16 L1028-L1029), ``()`` on a float32 pool (the fp32 kernels skip them)."""
        return tuple(self.scratch_slots) if dtype_from_name(state_dtype) == torch.bfloat16 else ()

    # ------------------------------------------------------------------ helpers
    def _check_alloc(self, pool: torch.Tensor, T: int) -> None:
        ok, why = self.supports(pool.dtype, T, K=pool.shape[3], V=pool.shape[2])
        if not ok:
            raise ValueError(f"{self.name} on flashinfer: {why}")

    def _prepare(self, q: torch.Tensor, pool: torch.Tensor, dims: GDNCallDims) -> tuple[int, int]:
        """Device and :meth:`supports` checks FlashInfer would otherwise fail deep inside; the GPU's cc."""
        cc = _tensor_cc(q)
        if cc is None or pool.device.type != q.device.type:
            raise ValueError(f"{self.name} on flashinfer needs CUDA tensors; q is on {q.device}, pool on {pool.device}")
        ok, why = self.supports(pool.dtype, dims.T, dims.B, cc, HV=dims.HV, K=dims.K, V=dims.V, act_dtype=q.dtype)
        if not ok:
            exc = UnavailableError if (cc[0] < 9) else ValueError
            raise exc(f"{self.name} on flashinfer: {why}")
        return cc

    def _module(self, name: str) -> ModuleType:
        return _import_module(name)

    def _gates(self, A_log, dt_bias):
        return self.fi._gates(A_log, dt_bias)  # float32 A_log, bf16/fp32 dt_bias (gd L1522-L1525)

    def _path(self, op: str, kernel: str, cc: tuple[int, int], dims: GDNCallDims, state_dtype, **detail) -> None:
        self.last_path = KernelPath(op, kernel, _sm_name(cc), {
            "strategy": self.name, "state_dtype": dtype_name(state_dtype), "B": dims.B, "T": dims.T,
            "HV": dims.HV, **detail})

    @staticmethod
    def _out_arg(o: torch.Tensor) -> torch.Tensor | None:
        """``o`` when a kernel can write it directly (bf16, contiguous), else ``None``."""
        return o if (o.dtype == torch.bfloat16 and o.is_contiguous()) else None

    def _emit(self, o: torch.Tensor, out: torch.Tensor, indices: torch.Tensor) -> None:
        """Copy a kernel's output into ``o`` (unless it wrote ``o``) and zero padding rows."""
        if out is not o:
            o.copy_(out)
        o.masked_fill_(self._memo("padding", lambda: (indices < 0).view(-1, 1, 1, 1)), 0)

    def _kernel_name(self, cc, dims: GDNCallDims, bf16: bool) -> tuple[str, dict]:
        return self.fi._verify_kernel(cc, dims, bf16)  # kernel choice as FlashInfer's dispatch makes it

    def _replay(self, pool, src, k, v, a, b, count, A_log, dt_bias) -> tuple[str, dict]:
        """Run the first ``count[i]`` (0..T) of T stashed tokens from ``pool[src[i]]`` and write the
        state back to ``pool[src[i]]`` (no output). Tokens ``t >= count[i]`` are masked; on a bf16
        pool ``accepted_steps = max(count, 1) - 1`` stops the loop early (bf16 L478-L482)."""
        T = k.shape[1]
        src = src.to(torch.int32).contiguous()
        keep = torch.arange(T, device=k.device)[None, :] < count.long()[:, None]               # [B, T]
        a_m = torch.where(keep[..., None], a, torch.full_like(a, MASK_LOGIT)).contiguous()
        b_m = torch.where(keep[..., None], b, torch.full_like(b, MASK_LOGIT)).contiguous()
        A, dt = self._gates(A_log, dt_bias)
        if pool.dtype == torch.bfloat16:
            steps = (count.clamp(1, T) - 1).to(torch.int32).contiguous()
            self.fi.kernels.mtp_bf16(
                A_log=A, a=a_m, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=k, k=k, v=v, b=b_m,
                initial_state_source=pool, initial_state_indices=src, accepted_steps=steps,
                disable_state_update=False, use_qk_l2norm_in_kernel=True, disable_output=True)
            return "bf16_mtp_replay", {"fi_api": "gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp",
                                       "accepted_steps": True, "disable_output": True}
        self.fi.kernels.mtp_fp32(
            q=k, k=k, v=v, initial_state=pool, initial_state_indices=src, A_log=A, a=a_m, dt_bias=dt, b=b_m,
            intermediate_states_buffer=None, disable_state_update=False, use_qk_l2norm=True)
        return "mtp_fp32_replay", {"fi_api": "gdn_decode.gated_delta_rule_mtp", "masked_tail": True}
