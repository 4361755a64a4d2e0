"""The ``flashinfer`` backend of the verify strategies: FlashInfer 0.7.4's GDN kernels behind gdnlab's
strategy contract (:mod:`gdnlab.strategies.base`).

Read against the flashinfer-python 0.7.4 wheel: ``flashinfer/gdn_decode.py`` = "gd",
``flashinfer/gdn_kernels/gdn_decode_bf16_state.py`` = "bf16",
``gdn_kernels/gdn_decode_bf16_wy_output_only.py`` = "wy", ``gdn_kernels/gdn_decode_bf16_wy_ucache_flush.py``
= "uf", ``gdn_kernels/gdn_decode_mtp.py`` = "mtp"; line numbers of that wheel.

================  ===========  ==================================================================
strategy          state dtype  FlashInfer calls (verify; commit)
================  ===========  ==================================================================
full_cache        fp32, bf16   :class:`gdnlab.kernels.flashinfer.FlashInferBackend` verify (gd L1331
                               ``gated_delta_rule_mtp`` / bf16 L3602, batch-scoped
                               ``intermediate_states_buffer``, ``disable_state_update=True``);
                               commit: the strategy ops' fused scatter (Triton when importable).
token_slots       fp32, bf16   gd L1331 / bf16 L3602 with ``ssm_state_indices [B, T]`` (gd L1405-L1420,
                               L1637-L1657: ``T >= 2``, ``disable_state_update=False``, no buffer; the
                               final write-back to ``initial_state_indices`` is skipped); commit moves
                               a cursor (no kernel).
recompute         bf16         verify: wy L2021 ``gated_delta_rule_mtp`` (frozen state, output only,
                               T <= 16); commit: bf16 L3602 with ``accepted_steps = accepted - 1``,
                               ``disable_output=True`` (ILP4 L478-L482 / wide_vec L1641: the loop stops
                               after the accepted token, then the state is written back once).
recompute         fp32         verify: gd L1331 with ``disable_state_update=True`` and no buffer;
                               commit: gd L1331 with ``disable_state_update=False`` over T tokens whose
                               rejected tail is *masked* (see below).
recompute_fused   bf16         bf16 L3602 per-request fused recovery (bf16 L949-L968, L1377-L1384,
                               L1604-L1653): Phase A replays ``accepted_steps + 1`` stashed tokens
                               without output and writes that state to the pool, Phase B runs the
                               rest with output; wide_vec only, ``B * HV >= 128`` (bf16 L3759-L3764).
replay_ring       bf16         uf L3280 ``gated_delta_rule_mtp_ucache_flush`` (32-slot ring, window
                               <= 16, ``T in {4, 8}``, HMMA on SM90; uf L3327-L3329: cursor commits
                               are the caller's), ``restart_hist_on_flush=False``; commit moves the
                               cursor (no kernel).
================  ===========  ==================================================================

Not on SM90: ``gated_delta_rule_mtp(cache_replayssm=True)`` and
``gated_delta_rule_replayssm_commit`` (fold every commit) need SM100/SM103 or SM120 (gd L1666-L1668,
gd L1836-L1838); :data:`SM90_UNAVAILABLE` lists them with that reason.

**Masked tokens.** FlashInfer's fixed-T kernels have no per-row token count except the bf16
``accepted_steps``. A token with ``a = b =`` :data:`MASK_LOGIT` leaves the state exactly unchanged:
``softplus(a + dt_bias)`` is ``log(1 + exp(-1e4)) = 0`` (``gdn_kernels/_softplus.py``), so the decay
is ``exp(0) = 1``, and ``beta = 1 / (1 + exp(1e4)) = 0`` (mtp L363), so ``u = 0``. Replays of
``count[i] < T`` tokens mask the tail; the fused verify masks rejected stashed tokens.

**Stashes** hold the raw inputs a FlashInfer replay takes (``k``, ``v``, ``a``, ``b`` in the
activation dtype, plus ``A_log``/``dt_bias`` for :meth:`VerifyStrategy.state`), not the reference's
``(u, k, g)``: FlashInfer's recovery recomputes ``S k`` per token. They are allocated at the first
verify (the q/k head count H is not known from the pool) and sized for bf16 activations in
:meth:`scratch_bytes`.

Padding rows: the bf16 kernels read (and the state-writing ones write) slot 0 for index -1 (bf16
L1028-L1029), which :class:`gdnlab.state.StatePool` reserves; every strategy here declares it with
:meth:`~VerifyStrategy.scratch_slots_for` (bf16 pools); the WY kernel is handed slot 0 explicitly;
outputs of padding rows are zeroed after each call. Bookkeeping never reads the device from the
host and never assigns a host scalar through an index (``index_fill_``), so ``verify``/``commit``
are CUDA-graph capturable. FlashInfer is imported lazily: importing this module needs neither
FlashInfer nor a GPU.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, ClassVar

import torch

from ..errors import UnavailableError
from ..kernels.base import KernelPath
from ..kernels.flashinfer import FlashInferBackend, device_capability
from ..kernels.validation import GDNCallDims
from ..shapes import GDNShape, dtype_from_name, dtype_name
from .base import Scratch, VerifyStrategy, bookkeeping_index
from .full_cache import FullCache
from .ops import RecurrentOps, TorchOps
from .recompute import Recompute, RecomputeFused
from .token_slots import TokenSlots

__all__ = ["STRATEGIES", "availability", "BACKEND", "SM90_UNAVAILABLE", "MASK_LOGIT", "FlashInferOps",
           "FlashInferFullCache", "FlashInferTokenSlots", "FlashInferRecompute", "FlashInferRecomputeFused",
           "FlashInferReplayRing", "RawStashScratch", "FusedRawStashScratch", "UCacheRingScratch"]

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

# the ucache-flush ring (uf L316-L323): 16-row live window, 32 physical slots
_W_RING = 16
_RING_SLOTS = 32

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
    ``(False, "needs SM90+, found sm80")`` or ``(True, "flashinfer 0.7.4 on <GPU> (sm90)")``."""
    cc = _current_cc()
    if cc is None:
        return False, "no CUDA device"
    for mod in ("cutlass.cute", _GD, _MTP, _BF16):
        try:
            _import_module(mod)
        except Exception as exc:  # noqa: BLE001 - any failure is the reason
            return False, f"flashinfer not importable: {mod}: {type(exc).__name__}: {exc}"
    if cc[0] < 9:
        return False, f"needs SM90+, found {_sm_name(cc)}"
    try:
        version = metadata.version("flashinfer-python")
    except Exception:  # noqa: BLE001 - bundles on PYTHONPATH may lack dist-info
        version = str(getattr(_import_module("flashinfer"), "__version__", "unknown"))
    return True, f"flashinfer {version} on {torch.cuda.get_device_name()} ({_sm_name(cc)})"


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
                    from .triton import TritonOps
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
            except Exception as exc:  # noqa: BLE001
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

    @staticmethod
    def _emit(o: torch.Tensor, out: torch.Tensor, indices: torch.Tensor) -> None:
        """Copy a kernel's output into ``o`` (unless it wrote ``o``) and zero padding rows."""
        if out is not o:
            o.copy_(out)
        o.masked_fill_((indices < 0).view(-1, 1, 1, 1), 0)

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


# ---------------------------------------------------------------------------------------------- full_cache
class FlashInferFullCache(_FlashInferStrategy, FullCache):
    """``full_cache`` on FlashInfer: verify is :meth:`FlashInferBackend.verify` (batch-scoped
    intermediate in the pool's dtype, as FlashInfer asserts); commit is the ops' fused scatter."""

    constraints = "state float32 or bfloat16; T >= 2"

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        return super()._allocate(pool, max_batch, T)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        self._prepare(q, pool, dims)
        out, _ = self.fi.verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scale,
                                intermediate=scratch.intermediate, validate=False)
        o.copy_(out)  # FlashInferBackend zeroes padding rows' outputs
        fp = self.fi.last_path
        self.last_path = KernelPath("verify", fp.kernel, fp.arch, {"strategy": self.name, **fp.detail})

    def _commit(self, pool, indices, scratch, accepted):
        self.ops.scatter_commit(pool, indices, scratch.intermediate, accepted)
        kernel = getattr(self.ops, "scatter_kernel", "") or type(self.ops).__name__
        self.last_path = KernelPath("commit", kernel, self.last_path.arch, {"strategy": self.name})


# ---------------------------------------------------------------------------------------------- token_slots
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
        src, dst = self._slots(indices, scratch)
        src = src.to(torch.int32).contiguous()
        dst = dst.clamp(min=0).to(torch.int32).contiguous()
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

    def _commit(self, pool, indices, scratch, accepted):
        super()._commit(pool, indices, scratch, accepted)
        self.last_path = KernelPath("commit", "cursor_move", self.last_path.arch, {"strategy": self.name})


# ---------------------------------------------------------------------------------------------- recompute
@dataclass
class RawStashScratch(Scratch):
    """Raw inputs of the last verify, batch-scoped: ``k [N,T,H,K]``, ``v [N,T,HV,V]``, ``a``, ``b
    [N,T,HV]`` (activation dtype; allocated at the first verify), ``A_log``/``dt_bias [HV]`` float32."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    A_log: torch.Tensor | None = None
    dt_bias: torch.Tensor | None = None


def _raw_entry_bytes(shape: GDNShape, act_bytes: int = 2) -> int:
    """Bytes of one stashed token: k ``[H, K]``, v ``[HV, V]``, a and b ``[HV]``."""
    return (shape.H * shape.K + shape.HV * shape.V + 2 * shape.HV) * act_bytes


def _ensure_stash(scratch: RawStashScratch, rows: int, q: torch.Tensor, v: torch.Tensor) -> None:
    """(Re)allocate the raw stash for this call's H and activation dtype (host-side shape check only)."""
    T, H, K = scratch.T, q.shape[2], q.shape[3]
    HV, V = v.shape[2], v.shape[3]
    if scratch.k is not None and tuple(scratch.k.shape) == (rows, T, H, K) and scratch.k.dtype == q.dtype:
        return
    z = dict(dtype=q.dtype, device=q.device)
    scratch.k = torch.zeros((rows, T, H, K), **z)
    scratch.v = torch.zeros((rows, T, HV, V), **z)
    scratch.a = torch.zeros((rows, T, HV), **z)
    scratch.b = torch.zeros((rows, T, HV), **z)
    scratch.A_log = torch.zeros(HV, dtype=torch.float32, device=q.device)
    scratch.dt_bias = torch.zeros(HV, dtype=torch.float32, device=q.device)


class FlashInferRecompute(_FlashInferStrategy, Recompute):
    """``recompute`` on FlashInfer: output-only verify (bf16: the WY kernel; fp32: MTP with a frozen
    state), the raw k/v/a/b stashed; commit replays the accepted tokens with one MTP launch."""

    summary = "verify output-only (FlashInfer WY / frozen MTP), stashes raw k, v, a, b; commit replays them"
    kernel_modules = (_GD, _MTP, _BF16, _WY)
    constraints = "state float32 or bfloat16; 2 <= T (<= 16 for bfloat16, the WY kernel's tile)"

    def __init__(self, ops: RecurrentOps | None = None) -> None:
        super().__init__(ops)

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if sd == torch.bfloat16 and T is not None and T > 16:
            return False, f"FlashInfer's WY output-only kernel takes T <= 16 (wy L2111), got T={T}"
        return True, "ok"

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Raw stash ``B T (H K + HV V + 2 HV) * 2`` (bf16 activations) + gate copies ``2 HV * 4``."""
        return batch * T * _raw_entry_bytes(shape) + 2 * shape.HV * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        return RawStashScratch(T, max_batch, pool.shape[0], pool.dtype, pool.device)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        _ensure_stash(scratch, scratch.max_batch, q, v)
        B = dims.B
        idx = indices.to(torch.int32).contiguous()
        qc, kc, vc, ac, bc = (t.contiguous() for t in (q, k, v, a, b))
        if pool.dtype == torch.bfloat16:
            self._path("verify", "bf16_wy_output_only", cc, dims, pool.dtype,
                       fi_api="gdn_kernels.gated_delta_rule_mtp_wy_output_only", native_T=dims.T in (4, 8))
            # frozen state: padding rows read the reserved slot 0 (a TMA load at -1 is not defined)
            src = torch.where(idx < 0, torch.zeros_like(idx), idx)
            # A_log/dt_bias as given: the kernel caches their bf16 cast by tensor identity (wy L1998-L2018)
            out = self._module(_WY).gated_delta_rule_mtp(
                A_log=A_log, a=ac, dt_bias=dt_bias, softplus_beta=1.0, softplus_threshold=20.0, q=qc, k=kc, v=vc,
                b=bc, initial_state_source=pool, initial_state_indices=src, use_qk_l2norm_in_kernel=True,
                scale=scale, output=self._out_arg(o))
        else:
            self._path("verify", "mtp_fp32", cc, dims, pool.dtype, fi_api="gdn_decode.gated_delta_rule_mtp",
                       disable_state_update=True, intermediate="none")
            A, dt = self._gates(A_log, dt_bias)
            out, _ = self.fi.kernels.mtp_fp32(
                q=qc, k=kc, v=vc, initial_state=pool, initial_state_indices=idx, A_log=A, a=ac, dt_bias=dt, b=bc,
                scale=scale, output=self._out_arg(o), intermediate_states_buffer=None, disable_state_update=True,
                use_qk_l2norm=True)
        self._emit(o, out, indices)
        for dst, src_t in ((scratch.k, kc), (scratch.v, vc), (scratch.a, ac), (scratch.b, bc)):
            dst[:B].copy_(src_t)
        scratch.A_log.copy_(A_log)
        scratch.dt_bias.copy_(dt_bias)

    def _commit(self, pool, indices, scratch, accepted):
        if scratch.k is None:
            raise ValueError("commit without a verify: nothing is stashed")
        B = indices.shape[0]
        cc = _tensor_cc(pool) or (0, 0)
        kernel, detail = self._replay(pool, indices, scratch.k[:B], scratch.v[:B], scratch.a[:B], scratch.b[:B],
                                      accepted, scratch.A_log, scratch.dt_bias)
        self.last_path = KernelPath("commit", kernel, _sm_name(cc), {"strategy": self.name, **detail})


# ---------------------------------------------------------------------------------------------- recompute_fused
@dataclass
class FusedRawStashScratch(RawStashScratch):
    """Pool-scoped raw stash (rows ``0..P``, row P = padding dummy), ``pending [P+1]`` int32 (stashed
    tokens still to replay), and the packed ``[max_batch, 2T, ...]`` inputs of the fused call
    (``pq`` ... ``pb``; positions ``0..T-1`` stashed tokens, ``T..2T-1`` the new ones)."""

    pending: torch.Tensor | None = None
    pq: torch.Tensor | None = None
    pk: torch.Tensor | None = None
    pv: torch.Tensor | None = None
    pa: torch.Tensor | None = None
    pb: torch.Tensor | None = None


class FlashInferRecomputeFused(_FlashInferStrategy, RecomputeFused):
    """``recompute_fused`` on FlashInfer: one bf16 MTP launch per step over ``2T`` packed tokens —
    the row's pending (accepted, stashed) tokens with the rejected ones masked, then the T new ones —
    with ``accepted_steps = max(pending, 1) - 1``: Phase A replays the first ``max(pending, 1)``
    tokens and writes that state to the pool, Phase B runs the rest (masked ones leave the state as
    it is) and emits the outputs; ``o = out[:, T:]``. The new tokens are stashed by pool slot;
    commit records ``pending[slot] = accepted``. Needs ``B * HV >= 128``: below that FlashInfer
    dispatches to its ILP4 kernel, which has no fused mode (bf16 L3759-L3764).

    The stash keeps raw ``a``/``b``, so the replay uses the *next* call's ``A_log``/``dt_bias``: they
    must be the layer's constants (as in a model), not values that change between steps; before they
    change, ``fold(force=True)`` replays pending tokens with the stashed gates (:attr:`constant_gates`)."""

    summary = "one bf16 MTP launch replays the pending accepted tokens, writes S once, then verifies"
    constant_gates = True
    kernel_modules = (_GD, _BF16)
    state_dtypes = (torch.bfloat16,)
    constraints = "state bfloat16; T >= 2; B * HV >= 128 (wide_vec kernel)"

    def __init__(self, ops: RecurrentOps | None = None) -> None:
        super().__init__(ops)

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if batch is not None and HV is not None and batch * HV < 128:
            return False, (f"FlashInfer's fused recovery runs in the wide_vec kernel only, which needs "
                           f"B * HV >= 128; got B={batch}, HV={HV} (bf16 L3759-L3764)")
        return True, "ok"

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Pool-scoped raw stash ``(P+1) T e`` + packed inputs ``B 2T (2 H K + HV V + 2 HV) * 2`` +
        pending ``(P+1) * 4`` + gate copies (e: :func:`_raw_entry_bytes`, bf16 activations)."""
        packed = batch * 2 * T * (2 * shape.H * shape.K + shape.HV * shape.V + 2 * shape.HV) * 2
        return (pool_slots + 1) * T * _raw_entry_bytes(shape) + packed + (pool_slots + 1) * 4 + 2 * shape.HV * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        P = pool.shape[0]
        pending = torch.zeros(P + 1, dtype=torch.int32, device=pool.device)
        return FusedRawStashScratch(T, max_batch, P, pool.dtype, pool.device, pending=pending)

    def _ensure(self, scratch, q, v) -> None:
        _ensure_stash(scratch, scratch.pool_slots + 1, q, v)
        n, T2 = scratch.max_batch, 2 * scratch.T
        if scratch.pq is not None and scratch.pq.shape[2] == q.shape[2] and scratch.pq.dtype == q.dtype:
            return
        z = dict(dtype=q.dtype, device=q.device)
        scratch.pq = torch.zeros((n, T2, *q.shape[2:]), **z)   # positions < T stay zero (no output needed)
        scratch.pk = torch.zeros((n, T2, *q.shape[2:]), **z)
        scratch.pv = torch.zeros((n, T2, *v.shape[2:]), **z)
        scratch.pa = torch.zeros((n, T2, v.shape[2]), **z)
        scratch.pb = torch.zeros((n, T2, v.shape[2]), **z)

    def _stashed(self, indices, scratch):
        """``(bk, pending [B], k, v, a, b)`` of each row's stash (masked: rejected tokens)."""
        bk = bookkeeping_index(indices, scratch.pool_slots)
        pend = torch.where(indices >= 0, scratch.pending[bk], torch.zeros_like(scratch.pending[bk]))
        return bk, pend, scratch.k[bk], scratch.v[bk], scratch.a[bk], scratch.b[bk]

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        self._ensure(scratch, q, v)
        B, T = dims.B, dims.T
        bk, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        keep = (torch.arange(T, device=q.device)[None, :] < pend.long()[:, None])[..., None]   # [B, T, 1]
        pq, pk, pv, pa, pb = (t[:B] for t in (scratch.pq, scratch.pk, scratch.pv, scratch.pa, scratch.pb))
        pk[:, :T].copy_(sk)
        pv[:, :T].copy_(sv)
        pa[:, :T].copy_(torch.where(keep, sa, torch.full_like(sa, MASK_LOGIT)))
        pb[:, :T].copy_(torch.where(keep, sb, torch.full_like(sb, MASK_LOGIT)))
        for dst, src in ((pq, q), (pk, k), (pv, v), (pa, a), (pb, b)):
            dst[:, T:].copy_(src)
        steps = (pend.clamp(min=1) - 1).to(torch.int32).contiguous()
        A, dt = self._gates(A_log, dt_bias)
        tile = self._module(_BF16)._select_wide_vec_tile_v(B, dims.HV)
        self._path("verify", "bf16_wide_vec_mtp", cc, dims, pool.dtype, tile_v=tile, fused_recovery=True,
                   fi_api="gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp", packed_tokens=2 * T)
        out = self.fi.kernels.mtp_bf16(
            A_log=A, a=pa, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=pq, k=pk, v=pv, b=pb,
            initial_state_source=pool, initial_state_indices=indices.to(torch.int32).contiguous(),
            accepted_steps=steps, disable_state_update=False, use_qk_l2norm_in_kernel=True, scale=scale)
        self._emit(o, out[:, T:], indices)
        # stash the new tokens by pool slot (padding rows -> dummy row P); the kernel read the packed copy
        for dst, src in ((scratch.k, k), (scratch.v, v), (scratch.a, a), (scratch.b, b)):
            dst.index_copy_(0, bk, src.to(dst.dtype))
        scratch.A_log.copy_(A_log)
        scratch.dt_bias.copy_(dt_bias)
        scratch.pending.index_fill_(0, bk, 0)    # not pending[bk] = 0: that copies a host scalar

    def _commit(self, pool, indices, scratch, accepted):
        bk = bookkeeping_index(indices, scratch.pool_slots)
        scratch.pending[bk] = torch.where(indices >= 0, accepted, torch.zeros_like(accepted)).to(torch.int32)
        self.last_path = KernelPath("commit", "pending_record", self.last_path.arch, {"strategy": self.name})

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.pending.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 0)

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """``force``: replay pending tokens into the pool rows now (one MTP launch); else nothing is
        due (the next verify replays them). ``indices`` may list more rows than ``max_batch``."""
        self._check_scratch(scratch, pool, None, scratch.T)
        if not force or not indices.numel() or scratch.k is None:
            return
        bk, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        self._replay(pool, indices, sk, sv, sa, sb, pend, scratch.A_log, scratch.dt_bias)
        scratch.pending.index_fill_(0, bk, 0)

    def _state(self, pool, indices, scratch):
        if scratch.k is None:
            return pool[indices.long().clamp(min=0)].float()
        B = indices.shape[0]
        _, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        tmp = torch.zeros((B + 1, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)  # row 0: padding sink
        tmp[1:] = pool[indices.long().clamp(min=0)]
        rows = torch.arange(1, B + 1, dtype=torch.int32, device=pool.device)
        src = torch.where(indices >= 0, rows, torch.full_like(rows, -1))
        self._replay(tmp, src, sk, sv, sa, sb, pend, scratch.A_log, scratch.dt_bias)
        return tmp[1:].float()


# ---------------------------------------------------------------------------------------------- replay_ring
@dataclass
class UCacheRingScratch(Scratch):
    """FlashInfer's ring, pool-scoped (uf L57-L72): ``k_cache [P, H, 32, K]`` (L2-normalised keys;
    allocated at the first verify), ``u_cache [P, HV, 32, V]`` (bf16), ``g_cache [P, HV, 32]`` float32
    (log decay accumulated since the checkpoint); cursors ``hist [P+1]`` (live entries, <= 16) and
    ``base [P+1]`` (window start, mod 32) int32 (entry P: padding dummy); ``flush_min``."""

    k_cache: torch.Tensor | None = None
    u_cache: torch.Tensor | None = None
    g_cache: torch.Tensor | None = None
    hist: torch.Tensor | None = None
    base: torch.Tensor | None = None
    flush_min: int = 0


class FlashInferReplayRing(_FlashInferStrategy):
    """``replay_ring`` on FlashInfer's ``gated_delta_rule_mtp_ucache_flush`` (ReplaySSM).

    verify: one launch; rows with ``hist >= flush_min`` fold their window into the checkpoint
    (``S0 <- e^{G} S0 + sum_j e^{G - G_j} u_j k_j^T``, written to the pool) and append the T new
    entries past the window, others only append. Then, on the device, flushed rows' cursors slide
    (``base = (base + hist) & 31``, ``hist = 0``: the caller's commit of uf L3327-L3329, done here so
    that a verify without a commit leaves the committed state as it was). commit: ``hist +=
    accepted``. :meth:`state` evaluates the fold formula in PyTorch (float32).

    Args: ``flush_min`` (default ``17 - T``: flush when the window cannot take T more,
    uf L3663-L3668); ``ring_backend`` ``"auto"`` | ``"hmma"`` | ``"umma"`` (uf L3597-L3640; on SM90
    and for bf16 state ``"auto"`` runs HMMA).
    """

    name = "replay_ring"
    summary = "checkpoint + FlashInfer 32-slot (u, k, g) ring; verify folds full windows; commit moves a cursor"
    launches = {"verify": 1, "commit": 0}
    bookkeeping_ops = {"verify": 6, "commit": 3}
    kernel_modules = (_UF,)
    state_dtypes = (torch.bfloat16,)
    constraints = "state bfloat16; T in {4, 8}; K = V = 128"

    def __init__(self, ops: RecurrentOps | None = None, flush_min: int | None = None,
                 ring_backend: str = "auto") -> None:
        super().__init__(ops)
        if flush_min is not None and (not isinstance(flush_min, int) or flush_min < 1):
            raise ValueError(f"flush_min must be an integer >= 1, got {flush_min!r}")
        if ring_backend not in ("auto", "hmma", "umma"):
            raise ValueError(f"ring_backend must be 'auto', 'hmma' or 'umma', got {ring_backend!r}")
        self.flush_min = flush_min
        self.ring_backend = ring_backend

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if T is not None and T not in (4, 8):
            return False, f"FlashInfer's ucache-flush kernel takes T in {{4, 8}}, got T={T} (uf L3656-L3661)"
        return True, "ok"

    def roofline_options(self) -> dict:
        return {"ring_slots": _RING_SLOTS, "flush_min": self.flush_min, "stash_dtype": torch.bfloat16}

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Ring ``P * 32 * (H K + HV V) * 2 + P * HV * 32 * 4`` + cursors ``2 (P+1) * 4``."""
        P = pool_slots
        return P * _RING_SLOTS * ((shape.H * shape.K + shape.HV * shape.V) * 2 + shape.HV * 4) + 2 * (P + 1) * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        cap = _W_RING - T + 1
        fm = cap if self.flush_min is None else self.flush_min
        if not 1 <= fm <= cap:
            raise ValueError(f"flush_min={fm} out of range [1, {cap}] for T={T} (uf L3665-L3668)")
        P, HV, V, _ = pool.shape
        z = dict(device=pool.device)
        return UCacheRingScratch(
            T, max_batch, P, pool.dtype, pool.device, None,
            torch.zeros((P, HV, _RING_SLOTS, V), dtype=torch.bfloat16, **z),
            torch.zeros((P, HV, _RING_SLOTS), dtype=torch.float32, **z),
            torch.zeros(P + 1, dtype=torch.int32, **z), torch.zeros(P + 1, dtype=torch.int32, **z), fm)

    def reset(self, scratch, slots) -> None:
        bk = bookkeeping_index(torch.as_tensor(slots, device=scratch.device).reshape(-1), scratch.pool_slots)
        scratch.hist.index_fill_(0, bk, 0)
        scratch.base.index_fill_(0, bk, 0)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        if scratch.k_cache is None or scratch.k_cache.shape[1] != dims.H:
            scratch.k_cache = torch.zeros((scratch.pool_slots, dims.H, _RING_SLOTS, dims.K), dtype=torch.bfloat16,
                                          device=pool.device)
        mod = self._module(_UF)
        if (getattr(mod, "RING_SLOTS", _RING_SLOTS), getattr(mod, "W_RING", _W_RING)) != (_RING_SLOTS, _W_RING):
            raise UnavailableError(f"this FlashInfer's ucache ring has {mod.RING_SLOTS} slots / window "
                                   f"{mod.W_RING}; gdnlab reads 0.7.4's {_RING_SLOTS} / {_W_RING}")
        live = indices >= 0
        bk = bookkeeping_index(indices, scratch.pool_slots)
        hist = scratch.hist[bk].contiguous()
        base = scratch.base[bk].contiguous()
        kernel = "ucache_flush_hmma"
        why = getattr(mod, "_umma_unavailable_reason", None)
        if self.ring_backend != "hmma" and why is not None:
            try:
                if why(q.device, dims.T, dims.H, dims.H, dims.HV, True, False) is None:
                    kernel = "ucache_flush_umma"
            except Exception:  # noqa: BLE001 - description only
                pass
        self._path("verify", kernel, cc, dims, pool.dtype, fi_api="gdn_kernels.gated_delta_rule_mtp_ucache_flush",
                   flush_min=scratch.flush_min, ring_backend=self.ring_backend)
        out = mod.gated_delta_rule_mtp_ucache_flush(
            A_log=A_log, a=a.contiguous(), dt_bias=dt_bias, softplus_beta=1.0, softplus_threshold=20.0,
            q=q.contiguous(), k=k.contiguous(), v=v.contiguous(), b=b.contiguous(), initial_state_source=pool,
            initial_state_indices=indices.to(torch.int32).contiguous(), use_qk_l2norm_in_kernel=True, scale=scale,
            output=self._out_arg(o), k_cache=scratch.k_cache, u_cache=scratch.u_cache, g_cache=scratch.g_cache,
            hist_len=hist, cache_base=base, flush_min=scratch.flush_min, restart_hist_on_flush=False,
            backend=self.ring_backend)
        self._emit(o, out, indices)  # the kernel retires padding rows' CTAs (uf L511-L530): zero their outputs
        flushed = live & (hist >= scratch.flush_min)
        zero = torch.zeros_like(hist)
        scratch.base[bk] = torch.where(flushed, (base + hist) & (_RING_SLOTS - 1), torch.where(live, base, zero))
        scratch.hist[bk] = torch.where(flushed | ~live, zero, hist)

    def _commit(self, pool, indices, scratch, accepted):
        bk = bookkeeping_index(indices, scratch.pool_slots)
        live = indices >= 0
        new = scratch.hist[bk] + accepted.to(torch.int32)
        scratch.hist[bk] = torch.where(live, new, torch.zeros_like(new))
        self.last_path = KernelPath("commit", "cursor_move", self.last_path.arch, {"strategy": self.name})

    def _window_state(self, pool, indices, scratch) -> torch.Tensor:
        """Checkpoint with the live window folded in, float32 ``[B, HV, V, K]`` (the kernel's flush
        formula, uf L18-L33 and L1814-L1834, in PyTorch)."""
        slots = indices.long().clamp(min=0)
        S0 = pool[slots].float()
        if scratch.k_cache is None:
            return S0
        bk = bookkeeping_index(indices, scratch.pool_slots)
        n = torch.where(indices >= 0, scratch.hist[bk], torch.zeros_like(scratch.hist[bk])).long()   # [B]
        B, HV = S0.shape[:2]
        H = scratch.k_cache.shape[1]
        j = torch.arange(_W_RING, device=pool.device)
        pos = (scratch.base[bk].long()[:, None] + j) & (_RING_SLOTS - 1)                             # [B, W]
        G = torch.gather(scratch.g_cache[slots], 2, pos[:, None, :].expand(B, HV, _W_RING))          # [B, HV, W]
        U = torch.gather(scratch.u_cache[slots], 2, pos[:, None, :, None].expand(B, HV, _W_RING, S0.shape[2]))
        Kc = torch.gather(scratch.k_cache[slots], 2, pos[:, None, :, None].expand(B, H, _W_RING, S0.shape[3]))
        Kc = Kc.repeat_interleave(HV // H, dim=1)
        G_last = torch.gather(G, 2, (n - 1).clamp(min=0)[:, None, None].expand(B, HV, 1))[..., 0]    # [B, HV]
        has = (n > 0)[:, None]
        mask = (j[None, :] < n[:, None])[:, None, :]                                                  # [B, 1, W]
        w = torch.where(mask, torch.exp(G_last[..., None] - G), torch.zeros_like(G))
        bdec = torch.where(has, torch.exp(G_last), torch.ones_like(G_last))
        return bdec[..., None, None] * S0 + torch.einsum("bhw,bhwv,bhwk->bhvk", w, U.float(), Kc.float())

    def _state(self, pool, indices, scratch):
        # as a fold would store it (rounded to the pool dtype), so fold(force=True) keeps it exactly
        return self._window_state(pool, indices, scratch).to(pool.dtype).float()

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """``force``: fold every live row's window into its checkpoint now (PyTorch, one write per
        row) and empty the window; without ``force`` nothing is due (verify folds full windows).
        ``indices`` may list more rows than ``max_batch``. Padding rows write back slot 0's own
        value (no host sync to drop them)."""
        self._check_scratch(scratch, pool, None, scratch.T)
        if not force or not indices.numel():
            return
        live = indices >= 0
        slots = indices.long().clamp(min=0)
        S = self._window_state(pool, indices, scratch)
        pool.index_copy_(0, slots, torch.where(live.view(-1, 1, 1, 1), S.to(pool.dtype), pool[slots]))
        bk = bookkeeping_index(indices, scratch.pool_slots)       # padding rows: the dummy entry P
        hist = scratch.hist[bk]
        scratch.base[bk] = torch.where(live, (scratch.base[bk] + hist) & (_RING_SLOTS - 1), scratch.base[bk])
        scratch.hist.index_fill_(0, bk, 0)


STRATEGIES: dict[str, type[VerifyStrategy]] = {
    c.name: c for c in (FlashInferFullCache, FlashInferTokenSlots, FlashInferRecompute, FlashInferRecomputeFused,
                        FlashInferReplayRing)}
