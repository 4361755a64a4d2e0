"""FlashInfer backend: GDN decode and MTP verify through FlashInfer's CuTe-DSL kernels, the SGLang
path after PR #23273 (pool API on every architecture; batch-scoped intermediate buffer).

Read against flashinfer-python 0.7.2.post1 (``flashinfer/gdn_decode.py`` = "gd",
``flashinfer/gdn_kernels/gdn_decode_bf16_state.py`` = "bf16", ``gdn_kernels/gdn_decode_mtp.py`` =
"mtp", ``gdn_kernels/gdn_decode_pretranspose.py`` = "pt"; line numbers of that wheel).

Which kernel runs (recorded in :attr:`FlashInferBackend.last_path`; the same on SM90 and SM100
except where noted):

=============  ===========  =====================================================================
op             state dtype  path
=============  ===========  =====================================================================
decode         float32      ``gd.gated_delta_rule_decode_pretranspose(state=None, initial_state=pool,
                            initial_state_indices=idx)`` → legacy fp32 pool path (gd L1019-L1120)
                            → ``pt.run_pretranspose_decode`` (8 CTAs per state, TILE_V=8;
                            sm107 retunes, pt L911). kernel ``pretranspose_fp32_pool``.
decode         bfloat16     the same wrapper → bf16 fast path (gd L879, L967) →
                            ``bf16.gated_delta_rule`` (bf16 L2712): ``B*HV >= 512`` → wide_vec T=1
                            (tile_v 64/128, bf16 L2791/L2931), else ILP4 MTP kernel (tile_v via
                            ``_get_bf16_mtp_config``). kernels ``bf16_wide_vec_t1`` / ``bf16_mtp_ilp4``.
verify (T>1)   float32      ``gd.gated_delta_rule_mtp(..., intermediate_states_buffer=buf[:B],
                            disable_state_update=True)`` (gd L1334) → ``mtp.run_mtp_decode``:
                            inline kernel if ``B*HV <= 128`` else warp-specialised (mtp L2958),
                            tile_v/ilp from ``get_mtp_config`` (mtp L78). kernel ``mtp_fp32``.
verify (T>1)   bfloat16     ``bf16.gated_delta_rule_mtp(..., intermediate_states_buffer=buf[:B],
                            disable_state_update=True)`` (bf16 L3608) — what SGLang's SM100 adapter
                            calls; ``B*HV >= 128`` → wide_vec (tile_v 32/64/128), else ILP4.
                            kernels ``bf16_wide_vec_mtp`` / ``bf16_mtp_ilp4``.
=============  ===========  =====================================================================

SM90 vs SM100: all four paths run on both. The bf16 kernels use scalar FMAs on SM90 and packed
``fma_packed_f32x2`` on SM100+ (bf16 L84; ``device_target.py`` L113 ``use_packed_fma=major >= 10``),
recorded as ``detail["fma"]``. SGLang itself, in the versions read, runs SM90 decode through a
gather/scatter around the non-pool kernel and has no bf16 verify on SM90 (its SM90 MTP entry is the
fp32-only ``gated_delta_rule_mtp``); gdnlab uses the pool API everywhere, as SGLang PR #23273
does for SM100, and notes the difference in ``detail["sglang"]``. SM100-only features —
``cache_replayssm`` (gd L1635) and the tcgen05 ReplaySSM kernel, ``backend="rubin"`` (cc 10.7 only,
gd L834) — raise a clear error on other GPUs instead of failing inside FlashInfer.

Padding rows (index < 0) and slot 0 — the contract says a padding row's output is zero and no pool
row is touched. FlashInfer honours that on the fp32 paths (the kernels skip ``idx < 0``: pt L161,
mtp L466; the wrappers allocate a zeroed output). The **bf16 kernels redirect ``-1`` to slot 0**
("sacrificial null slot", gd L725-L741; bf16 L277, L1008, L2041): they read slot 0, T=1 decode
writes its result back **into slot 0**, the padding row's output is garbage and, in verify, the
padding row's intermediate rows are written (from slot 0's state). gdnlab's
:class:`~gdnlab.state.StatePool` reserves slot 0 (``PADDING_SLOT``) exactly for this, as SGLang's
``MambaPool`` (size+1 slots) does. So this backend:

* declares :attr:`FlashInferBackend.scratch_slots` ``= (0,)``: slot 0 may be overwritten by a call
  that has padding rows (bf16 decode only; fp32 paths and every verify leave the pool untouched);
* declares :attr:`FlashInferBackend.writes_padding_intermediate` ``= True``: bf16 verify may write
  padding rows' intermediate rows (fp32 verify does not);
* zeroes padding rows' outputs after a bf16 call (one ``masked_fill_``; ``zero_padding_output=False``
  skips it to run exactly what SGLang runs);
* refuses (``ValueError``, when ``validate=True``) a bf16 *decode* batch that has padding rows and
  also uses slot 0 for a live row: both would write slot 0 at once and the live row's state would be
  corrupted.

Intermediate buffer: the kernels index it by batch position (``flat_idx = i_n*T*HV + i_t*HV + i_hv``,
bf16 L781, mtp L870), so row i belongs to batch row i; the fp32 wrapper asserts ``dim0 >= B``
(gd L1569), the bf16 one ``dim0 == B`` (bf16 L3701). This backend passes ``intermediate[:B]`` (the
seed's ``[:batch_size]`` fix), in the pool's dtype (the fp32 wrapper asserts float32, gd L1578; the
bf16 one asserts bfloat16, bf16 L3708): :meth:`FlashInferBackend.new_intermediate` allocates that.
The kernels stride the buffer by T, not by its dim 1, although the wrappers accept ``dim1 >= T``;
a buffer with more tokens than T (or a float32 buffer for a bf16 pool) therefore goes through a
``[B, T]`` scratch buffer and a copy of the live rows (``detail["intermediate"] == "staged"``).

FlashInfer is imported lazily (first call or :meth:`FlashInferBackend.availability`): importing
this module never needs FlashInfer, CuTe DSL or a GPU.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import torch

from ..shapes import dtype_name
from .base import GDNBackend, KernelPath
from .validation import GDNCallDims, check_gdn_inputs, check_intermediate, check_scale

__all__ = ["FlashInferBackend", "device_capability", "check_flashinfer", "FI_BACKENDS", "SM100_ONLY",
           "KERNEL_MODULES"]

#: ``backend=`` values of ``gated_delta_rule_decode_pretranspose`` this class accepts.
#: ``"flashinfer"`` (default) always runs the generic CuTe-DSL kernels, so the recorded path is
#: certain; ``"auto"`` is FlashInfer's default (what SGLang gets): on SM100/SM103 it may route an
#: exact manifest row to the source-only "cake_gdn" backend (needs FlashInfer's csrc + nvcc), on
#: cc 10.7 to the Rubin kernel; ``"rubin"`` forces the Rubin kernel (cc 10.7 only).
FI_BACKENDS = ("flashinfer", "auto", "rubin")

#: features that exist only on some architectures: name -> (allowed (major, minor) set, source)
SM100_ONLY: dict[str, tuple[frozenset[tuple[int, int]], str]] = {
    "cache_replayssm": (frozenset({(10, 0), (10, 3)}),
                        "flashinfer gdn_decode.py L1635: 'ReplaySSM caching currently requires SM100/SM103'"),
    "rubin": (frozenset({(10, 7)}),
              "flashinfer gdn_decode.py L834-L841: backend='rubin' needs compute capability 10.7"),
}

_INSTALL_HINT = "pip install 'gdnlab[gpu]'"
#: FlashInfer's GDN kernel modules this backend calls. ``flashinfer.gdn_decode`` swallows their import
#: errors (its flags turn False and calls then fail with 'NoneType is not callable'), so an availability
#: check imports them themselves.
KERNEL_MODULES = ("flashinfer.gdn_kernels.gdn_decode_pretranspose", "flashinfer.gdn_kernels.gdn_decode_mtp",
                  "flashinfer.gdn_kernels.gdn_decode_bf16_state", "flashinfer.gdn_decode")


# ---------------------------------------------------------------------------------------------- seams
# Small module-level functions so CPU tests can stand in for a GPU or a broken install.

def _find_spec(name: str):
    return importlib.util.find_spec(name)


def _import_module(name: str) -> ModuleType:
    return importlib.import_module(name)


def device_capability(device: torch.device) -> tuple[int, int] | None:
    """``(major, minor)`` compute capability of a CUDA device, ``None`` for any other device."""
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def _sm(cc: tuple[int, int]) -> str:
    return f"sm{cc[0]}{cc[1]}"


@dataclass
class _Kernels:
    """The FlashInfer entry points this backend calls (and the helpers it reads tile choices from)."""

    decode: Any            # flashinfer.gdn_decode.gated_delta_rule_decode_pretranspose
    mtp_fp32: Any          # flashinfer.gdn_decode.gated_delta_rule_mtp
    mtp_bf16: Any          # flashinfer.gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp
    gd: ModuleType
    bf16: ModuleType


def _load_kernels() -> _Kernels:
    os.environ.setdefault("FLASHINFER_DISABLE_VERSION_CHECK", "1")  # as SGLang does
    gd = _import_module("flashinfer.gdn_decode")
    bf16 = _import_module("flashinfer.gdn_kernels.gdn_decode_bf16_state")
    return _Kernels(gd.gated_delta_rule_decode_pretranspose, gd.gated_delta_rule_mtp,
                    bf16.gated_delta_rule_mtp, gd, bf16)


def _flashinfer_version(import_module: Callable[[str], ModuleType] | None = None) -> str:
    try:
        return metadata.version("flashinfer-python")
    except Exception:  # noqa: BLE001 - bundles on PYTHONPATH may lack dist-info
        mod = (import_module or _import_module)("flashinfer")
        return str(getattr(mod, "__version__", "unknown"))


def check_flashinfer(cc: tuple[int, int] | None, modules: Sequence[str], *,
                     import_module: Callable[[str], ModuleType], failed: str) -> tuple[bool, str]:
    """The one availability check of FlashInfer's GDN kernels on the current CUDA device of compute
    capability ``cc`` (``None``: no CUDA device): every module of ``modules`` imports (by
    ``import_module``), and the GPU is SM90+.

    Returns ``(False, "no CUDA device")``, ``(False, "<failed>: <module>: <error>")``,
    ``(False, "needs SM90+, found sm80")`` or ``(True, "flashinfer 0.7.4 on <GPU> (sm90)")``."""
    if cc is None:
        return False, "no CUDA device"
    os.environ.setdefault("FLASHINFER_DISABLE_VERSION_CHECK", "1")  # as SGLang does
    for mod in modules:
        try:
            import_module(mod)
        except Exception as exc:  # noqa: BLE001 - any failure is the reason
            return False, f"{failed}: {mod}: {type(exc).__name__}: {exc}"
    if cc[0] < 9:
        return False, f"needs SM90+, found {_sm(cc)}"
    name = torch.cuda.get_device_name(torch.device("cuda", torch.cuda.current_device()))
    return True, f"flashinfer {_flashinfer_version(import_module)} on {name} ({_sm(cc)})"


class FlashInferBackend(GDNBackend):
    """GDN decode / verify through FlashInfer (SM90+), as SGLang calls it after PR #23273.

    Args:
        fi_backend: ``backend=`` for ``gated_delta_rule_decode_pretranspose`` (one of
            :data:`FI_BACKENDS`; default ``"flashinfer"``, the generic CuTe-DSL kernels).
        zero_padding_output: after a bf16-state call, write zeros into padding rows' outputs (the
            contract); ``False`` leaves FlashInfer's garbage there, exactly as SGLang runs.
        cache_replayssm: ReplaySSM verify (SM100/SM103 only). Raises ``NotImplementedError`` on
            other GPUs with the reason; on SM100 it is not wired into gdnlab's verify/commit
            contract yet and raises too.

    Attributes:
        scratch_slots: pool slots a call may overwrite for padding rows (slot 0, bf16 decode only;
            see the module docstring). A test of "untouched slots" must skip these.
        writes_padding_intermediate: verify may write padding rows' intermediate rows (bf16 only).
        last_path: :class:`~gdnlab.kernels.base.KernelPath` of the last call (kernel, arch, tile
            choice, FMA flavour, whether the intermediate buffer was passed directly or staged).
    """

    name = "flashinfer"
    scratch_slots: tuple[int, ...] = (0,)
    writes_padding_intermediate: bool = True
    #: state dtypes per architecture major (both paths exist on SM90 and SM100+; FlashInfer needs SM90+)
    STATE_DTYPES_BY_MAJOR: dict[int, tuple[torch.dtype, ...]] = {
        9: (torch.float32, torch.bfloat16),    # pretranspose fp32 + bf16 (scalar FMA), mtp fp32 + bf16
        10: (torch.float32, torch.bfloat16),   # same kernels, packed FMA; + ReplaySSM (not wired)
        12: (torch.float32, torch.bfloat16),   # SM120: "Requires SM90+" (gd L749); not run by gdnlab yet
    }

    def __init__(self, fi_backend: str = "flashinfer", zero_padding_output: bool = True,
                 cache_replayssm: bool = False) -> None:
        super().__init__()
        if fi_backend not in FI_BACKENDS:
            raise ValueError(f"fi_backend must be one of {FI_BACKENDS}, got {fi_backend!r}")
        self.fi_backend = fi_backend
        self.zero_padding_output = bool(zero_padding_output)
        self.cache_replayssm = bool(cache_replayssm)
        self._fi: _Kernels | None = None
        self._validate_values = True
        if torch.cuda.is_available():  # fail fast on a GPU that lacks an asked-for feature
            cc = device_capability(torch.device("cuda", torch.cuda.current_device()))
            if cc is not None:
                self._check_features(cc)
                self._set_dtypes(cc)

    # ------------------------------------------------------------------ availability
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(False, "no CUDA device")``, ``(False, "flashinfer-python not installed (...)")``,
        ``(False, "CuTe DSL failed to import: <error>")``, ``(False, "needs SM90+, found sm80")`` or
        ``(True, "flashinfer 0.7.2.post1 on NVIDIA H100 ... (sm90)")``."""
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        if _find_spec("flashinfer") is None:
            return False, f"flashinfer-python not installed ({_INSTALL_HINT})"
        ok, why = check_flashinfer(device_capability(torch.device("cuda", torch.cuda.current_device())),
                                   ("cutlass", "cutlass.cute", *KERNEL_MODULES), import_module=_import_module,
                                   failed="CuTe DSL failed to import")
        if not ok:
            return ok, why
        try:
            why += f", CuTe DSL {metadata.version('nvidia-cutlass-dsl')}"
        except Exception:  # noqa: BLE001 - the version is a detail of the reason
            pass
        return ok, why

    # ------------------------------------------------------------------ contract entry points
    def decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None,
               *, validate: bool = True) -> torch.Tensor:
        """See :meth:`GDNBackend.decode`; bf16 pools use slot 0 as padding scratch (module docstring)."""
        self._validate_values = validate
        return super().decode(q, k, v, a, b, A_log, dt_bias, pool, indices, scale, validate=validate)

    def verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None,
               intermediate: torch.Tensor | None = None, *, validate: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`GDNBackend.verify`; ``intermediate`` defaults to the pool's dtype."""
        self._validate_values = validate
        return super().verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scale, intermediate,
                              validate=validate)

    def verify_pool_scoped(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None,
                           *, intermediate: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """Verify with an intermediate buffer handed to FlashInfer *unsliced* (e.g. pool-sized
        ``[P, T, HV, V, K]``), as SGLang did before PR #23273's ``[:batch_size]`` fix; returns ``o``.

        :meth:`verify` passes ``intermediate[:B]`` (the fix); this passes the whole buffer, in the
        pool's dtype and with exactly T tokens (``ValueError`` otherwise), so the kernel sees what the
        unfixed engine gave it. The fp32 MTP wrapper accepts ``dim0 >= B`` (gd L1569) and writes rows
        by batch position; the bf16 one asserts ``dim0 == B`` (bf16 L3701) and raises its
        ``AssertionError`` for a larger buffer. ``last_path.detail["intermediate"] == "unsliced"``.
        """
        self._validate_values = validate
        dims = check_gdn_inputs(q, k, v, a, b, A_log, dt_bias, pool, indices, single_token=False,
                                validate_values=validate)
        check_scale(scale)
        self._check_state_dtype(pool.dtype, "verify")
        check_intermediate(intermediate, dims, pool.dtype, q.device)
        if intermediate.dtype != pool.dtype or intermediate.shape[1] != dims.T:
            raise ValueError(f"verify_pool_scoped needs an intermediate buffer in the pool's dtype ({pool.dtype}) "
                             f"with T={dims.T} tokens, got {intermediate.dtype} with {intermediate.shape[1]}")
        return self._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, self._scale(scale, dims), dims,
                            intermediate, unsliced=True)

    def new_intermediate(self, dims: GDNCallDims, pool: torch.Tensor) -> torch.Tensor:
        """``[B, T, HV, V, K]`` zeros in the pool's dtype: FlashInfer's fp32 MTP asserts float32, its
        bf16 MTP asserts bfloat16, so this buffer is handed to the kernel without staging."""
        return torch.zeros((dims.B, dims.T, dims.HV, dims.V, dims.K), dtype=pool.dtype, device=pool.device)

    def scratch_slots_for(self, op: str, state_dtype: torch.dtype) -> tuple[int, ...]:
        """Slots a call of ``op`` ("decode"/"verify") on a ``state_dtype`` pool may write for
        padding rows: ``(0,)`` for bf16 decode, ``()`` otherwise."""
        return self.scratch_slots if (op == "decode" and state_dtype == torch.bfloat16) else ()

    # ------------------------------------------------------------------ implementation
    @property
    def kernels(self) -> _Kernels:
        if self._fi is None:
            self._fi = _load_kernels()
        return self._fi

    def _set_dtypes(self, cc: tuple[int, int]) -> None:
        if cc[0] < 9:  # leave the defaults: calls then fail with "needs SM90+", not "dtype unsupported"
            return
        dts = self.STATE_DTYPES_BY_MAJOR.get(cc[0], (torch.float32, torch.bfloat16))
        self.decode_state_dtypes = dts
        self.verify_state_dtypes = dts

    def _check_features(self, cc: tuple[int, int]) -> None:
        wanted = [f for f, on in (("cache_replayssm", self.cache_replayssm),
                                  ("rubin", self.fi_backend == "rubin")) if on]
        for feat in wanted:
            allowed, src = SM100_ONLY[feat]
            if cc not in allowed:
                need = "/".join(_sm(c) for c in sorted(allowed))
                raise NotImplementedError(f"{feat} needs {need} (SM100-class GPU), this GPU is {_sm(cc)} ({src})")
        if self.cache_replayssm:
            raise NotImplementedError(
                "cache_replayssm is not wired into gdnlab's verify/commit contract: it replaces the "
                "intermediate buffer with raw K/V/g/beta windows and needs gated_delta_rule_replayssm_commit")

    def _prepare(self, q, indices, pool, dims: GDNCallDims, op: str) -> tuple[tuple[int, int], torch.Tensor]:
        """Device/arch/shape checks FlashInfer would otherwise fail deep inside; int32 indices."""
        cc = device_capability(q.device)
        if cc is None:
            raise ValueError(f"the flashinfer backend needs CUDA tensors; q is on {q.device}")
        if cc[0] < 9:
            raise ValueError(f"the flashinfer backend needs SM90+, found {_sm(cc)} (q on {q.device})")
        self._check_features(cc)
        if q.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"q has dtype {q.dtype}: FlashInfer's GDN kernels take bfloat16/float16 "
                             "activations (q, k, v)")
        if pool.dtype == torch.bfloat16:
            if (dims.K, dims.V) != (128, 128):
                raise ValueError(f"a bfloat16 pool needs K = V = 128 for FlashInfer's bf16-state kernels; "
                                 f"pool has K={dims.K}, V={dims.V} (use a float32 pool)")
        else:
            step = 8 if op == "decode" else 64
            if dims.K < 128 or dims.V < 128 or dims.V % step:
                raise ValueError(f"a float32 pool needs K >= 128, V >= 128 and V % {step} == 0 for FlashInfer's "
                                 f"{op} kernel; pool has K={dims.K}, V={dims.V}")
        idx = indices if indices.dtype == torch.int32 else indices.to(torch.int32)
        return cc, idx

    def _gates(self, A_log, dt_bias):
        A = A_log.detach().float()  # FlashInfer asserts float32 A_log (SGLang: A_log.detach().float())
        dt = dt_bias.detach()
        if dt.dtype not in (torch.float32, torch.bfloat16):
            dt = dt.float()  # FlashInfer takes bf16 or fp32 dt_bias
        return A, dt

    def _path(self, op: str, kernel: str, cc: tuple[int, int], dims: GDNCallDims, pool: torch.Tensor,
              **detail: Any) -> None:
        base = {"state_dtype": dtype_name(pool.dtype), "B": dims.B, "T": dims.T, "HV": dims.HV,
                "fi_backend": self.fi_backend}
        if self.fi_backend == "auto" and cc in {(10, 0), (10, 3), (10, 7)}:
            base["note"] = "backend='auto' may route to cake_gdn/rubin kernels on this GPU"
        self.last_path = KernelPath(op, kernel, _sm(cc), {**base, **detail})

    def _zero_padding(self, o: torch.Tensor, idx: torch.Tensor) -> None:
        if self.zero_padding_output:
            o.masked_fill_((idx < 0).view(-1, *([1] * (o.dim() - 1))), 0)

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        cc, idx = self._prepare(q, indices, pool, dims, "decode")
        bf16 = pool.dtype == torch.bfloat16
        if bf16 and self._validate_values and dims.B:
            host = indices.detach().cpu()
            if bool((host < 0).any()) and bool((host == 0).any()):
                raise ValueError("indices has padding rows (negative) and also uses pool slot 0 for a live row: "
                                 "FlashInfer's bf16-state decode writes padding rows' state into slot 0 (its null "
                                 "slot), so slot 0 must not hold a live request (gdnlab's StatePool never hands "
                                 "it out)")
        kernel, detail = self._decode_kernel(cc, dims, bf16)
        self._path("decode", kernel, cc, dims, pool, **detail)
        if dims.B == 0:
            return q.new_zeros((0, 1, dims.HV, dims.V))
        A, dt = self._gates(A_log, dt_bias)
        o, _ = self.kernels.decode(
            q=q.contiguous(), k=k.contiguous(), v=v.contiguous(), state=None, A_log=A, a=a.contiguous(), dt_bias=dt,
            b=b.contiguous(), scale=scale, use_qk_l2norm=True, initial_state=pool, initial_state_indices=idx,
            backend=self.fi_backend)
        o = o if o.dtype == q.dtype else o.to(q.dtype)
        if bf16:
            self._zero_padding(o, idx)
        return o

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate, unsliced=False):
        cc, idx = self._prepare(q, indices, pool, dims, "verify")
        bf16 = pool.dtype == torch.bfloat16
        kdtype = pool.dtype  # what the kernel's buffer must be (fp32 MTP: float32; bf16 MTP: bfloat16)
        direct = intermediate.dtype == kdtype and intermediate.shape[1] == dims.T
        if unsliced:
            buf, how = intermediate, "unsliced"
        elif direct:
            buf, how = intermediate[:dims.B], "direct"
        else:
            buf = torch.empty((dims.B, dims.T, dims.HV, dims.V, dims.K), dtype=kdtype, device=pool.device)
            how = "staged"
        kernel, detail = self._verify_kernel(cc, dims, bf16)
        self._path("verify", kernel, cc, dims, pool, intermediate=how, **detail)
        if dims.B == 0:
            return q.new_zeros((0, dims.T, dims.HV, dims.V))
        A, dt = self._gates(A_log, dt_bias)
        qc, kc, vc, ac, bc = (t.contiguous() for t in (q, k, v, a, b))
        if bf16:
            # SGLang's SM100 adapter (gdn_flashinfer.py, _mtp_bf16_adapted) calls exactly this.
            o = self.kernels.mtp_bf16(
                A_log=A, a=ac, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=qc, k=kc, v=vc, b=bc,
                initial_state_source=pool, initial_state_indices=idx, intermediate_states_buffer=buf,
                disable_state_update=True, use_qk_l2norm_in_kernel=True, scale=scale, output=None)
        else:
            o, _ = self.kernels.mtp_fp32(
                q=qc, k=kc, v=vc, initial_state=pool, initial_state_indices=idx, A_log=A, a=ac, dt_bias=dt, b=bc,
                scale=scale, output=None, intermediate_states_buffer=buf, disable_state_update=True,
                use_qk_l2norm=True)
        o = o if o.dtype == q.dtype else o.to(q.dtype)
        if bf16:
            self._zero_padding(o, idx)
        if not direct:  # copy live rows only: padding rows' intermediate rows stay as they were
            dst = intermediate[:dims.B, :dims.T]
            live = (idx >= 0).view(-1, 1, 1, 1, 1)
            dst.copy_(torch.where(live, buf.to(dst.dtype), dst))
        return o

    # ------------------------------------------------------------------ path description
    def _fma(self, cc: tuple[int, int]) -> str:
        return "packed_f32x2" if cc[0] >= 10 else "scalar"

    def _decode_kernel(self, cc, dims: GDNCallDims, bf16: bool) -> tuple[str, dict]:
        work = dims.B * dims.HV
        if not bf16:
            blocks, stages = (4, 5 if work >= 3072 else 3) if (cc == (10, 7) and work >= 256) else (8, 2)
            return "pretranspose_fp32_pool", {
                "fi_api": "gdn_decode.gated_delta_rule_decode_pretranspose", "tile_v": 8,
                "blocks_per_state": blocks, "num_stages": stages,
                "sglang": "SM100 decode path (pool API); SGLang SM90 gathers/scatters around the same kernel"}
        detail = {"fi_api": "gdn_decode.gated_delta_rule_decode_pretranspose", "fma": self._fma(cc),
                  "sglang": "SM100 decode path (pool API, bf16 state)"}
        if cc == (10, 7) and work >= 512 and self.fi_backend in ("auto", "rubin"):
            return "bf16_rubin_t1", detail
        tile = self._wide_vec_tile(dims)
        if tile is not None and tile >= 64:
            return "bf16_wide_vec_t1", {**detail, "tile_v": tile}
        return "bf16_mtp_ilp4", {**detail, **self._ilp4_tile(dims)}

    def _verify_kernel(self, cc, dims: GDNCallDims, bf16: bool) -> tuple[str, dict]:
        if not bf16:
            detail: dict = {"fi_api": "gdn_decode.gated_delta_rule_mtp", "fma": self._fma(cc),
                            "variant": "inline" if dims.B * dims.HV <= 128 else "warp_specialized",
                            "sglang": "SGLang verify path on SM90 (fp32 state)"}
            cfg = getattr(self._kernels_or_none("gd"), "get_mtp_config", None)
            if cfg is not None:
                try:
                    tile_v, _, ilp, smem_v = cfg(dims.B, dims.T, dims.HV, dims.V, True)
                    detail.update(tile_v=tile_v, ilp_rows=ilp, smem_v=smem_v)
                except Exception:  # noqa: BLE001 - description only
                    pass
            return "mtp_fp32", detail
        detail = {"fi_api": "gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp", "fma": self._fma(cc),
                  "sglang": "SGLang verify path on SM100 (bf16 state)"
                            + ("" if cc[0] >= 10 else "; SGLang has no bf16 verify on SM90")}
        tile = self._wide_vec_tile(dims)
        if tile is not None:
            return "bf16_wide_vec_mtp", {**detail, "tile_v": tile}
        return "bf16_mtp_ilp4", {**detail, **self._ilp4_tile(dims)}

    def _kernels_or_none(self, which: str) -> ModuleType | None:
        try:
            return getattr(self.kernels, which)
        except Exception:  # noqa: BLE001 - not loadable here: callers fall back
            return None

    def _wide_vec_tile(self, dims: GDNCallDims) -> int | None:
        sel = getattr(self._kernels_or_none("bf16"), "_select_wide_vec_tile_v", None)
        if sel is not None:
            try:
                return sel(dims.B, dims.HV)
            except Exception:  # noqa: BLE001 - private helper changed: our copy below
                pass
        work = dims.B * dims.HV  # bf16 L2931-L2961, in case the private helper moves
        return 128 if work >= 1024 else 64 if work >= 512 else 32 if work >= 128 else None

    def _ilp4_tile(self, dims: GDNCallDims) -> dict:
        if dims.B * dims.HV <= 128:
            return {"tile_v": min(16, dims.V), "ilp_rows": 4}  # bf16 L2913
        return {"ilp_rows": 4}  # tile_v depends on the SM count (bf16 _select_tile_v_for_mtp)
