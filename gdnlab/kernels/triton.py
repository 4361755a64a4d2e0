"""Triton backend: the GDN decode/verify path as SGLang runs it, as gdnlab's own Triton kernel.

SGLang's Triton path (``fused_sigmoid_gating_delta_rule_update``) fuses the gates (softplus/sigmoid),
the q/k L2 norm and the delta-rule recurrence into one kernel that reads the state straight out of the
pool by index, and (for MTP verify) stores the state after every draft token into a batch-scoped
intermediate buffer instead of updating the pool. fla-core 0.6.0's ``fused_recurrent_gated_delta_rule``
has neither pool indices nor intermediate states, so gdnlab carries its own kernel
(:mod:`gdnlab.kernels._triton_gdn`) with SGLang's semantics.

**No layout conversion.** The kernel works on the contract's pool layout ``[P, HV, V, K]`` (K-last),
which is also SGLang's ``MambaPool`` layout and FlashInfer's "pretranspose" layout: the pool tensor is
used in place, no transpose or copy is ever made, and timings contain no conversion cost.

Tiling: each program owns a ``[BV, K]`` tile of one (row, value head) state. ``bv`` / ``num_warps`` /
``num_stages`` are constructor arguments so a sweep can try them; ``None`` picks
:func:`auto_config` (BV 32 with one warp, SGLang's choice for K=V=128, but smaller BV when the batch is
too small to give every SM two programs). Offline ``ptxas -v`` for sm_90a (Triton 3.8, K=V=128; not
yet timed on a GPU — ``scripts/gpu/check_triton.py`` sweeps the configs): BV=32/1 warp uses 254
registers (verify fp32: 255 + 80 bytes of spill), BV=16/1 warp 146-168 without spills, BV=8/1 warp
78, BV=32/2 warps 165, BV=64/4 warps 165. Commit is the base class's shared ``index_copy_`` (no
Triton scatter kernel).

Triton is imported only when needed: importing this module never fails on a machine without Triton;
:meth:`TritonBackend.availability` then says ``"triton not installed"``. With ``TRITON_INTERPRET=1``
and no CUDA device the kernels run in Triton's CPU interpreter (slow; for tests).
"""
from __future__ import annotations

import functools

import torch

from ..shapes import dtype_from_name, dtype_name
from ._triton_interpret import interpret_enabled
from .base import GDNBackend, KernelPath, _arch
from .validation import GDNCallDims

__all__ = ["TritonBackend", "auto_config", "tiling", "check_bv", "launch_mode", "interpret_enabled", "KERNEL_NAME"]

KERNEL_NAME = "gdnlab_triton_fused_recurrent"
_POW2_WARPS = (1, 2, 4, 8, 16)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _sm_count(device_index: int) -> int:
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


def auto_config(batch: int, HV: int, V: int, device: torch.device | None = None) -> tuple[int, int, int]:
    """Default ``(BV, num_warps, num_stages)`` for a call of ``batch`` rows.

    BV = 32 rows of V with one warp (SGLang's launch for K=V=128: a [32, 128] fp32 tile is 128
    registers per thread), unless ``batch*HV*V/BV`` programs would not give every SM two programs —
    then BV halves (down to 8, fla's choice) so small batches (B=1: 16 heads) still spread over the GPU.
    """
    bv = min(32, _next_pow2(V))
    if device is not None and device.type == "cuda":
        target = 2 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
        while bv > 8 and batch * HV * -(-V // bv) < target:
            bv //= 2
    return bv, 1, 3


def tiling(batch: int, HV: int, V: int, device: torch.device, bv: int | None = None, num_warps: int | None = None,
           num_stages: int | None = None) -> tuple[int, int, int]:
    """``(BV, num_warps, num_stages)`` gdnlab's Triton kernels launch for ``batch`` rows of ``HV``
    value heads of ``V`` rows on ``device``: :func:`auto_config`, each value overridden when given
    (``bv`` capped at the next power of two of ``V``)."""
    a_bv, a_nw, a_ns = auto_config(batch, HV, V, device)
    return (min(bv, _next_pow2(V)) if bv is not None else a_bv), num_warps or a_nw, num_stages or a_ns


def check_bv(bv: int | None) -> None:
    """``ValueError`` unless ``bv`` (V rows per program) is ``None`` or a power of two >= 1."""
    if bv is not None and (not isinstance(bv, int) or bv < 1 or bv & (bv - 1)):
        raise ValueError(f"bv must be a power of two >= 1 (V rows per program), got {bv!r}")


def launch_mode(device: torch.device, who: str) -> bool:
    """Whether a launch on ``device`` runs in Triton's CPU interpreter (``TRITON_INTERPRET=1``).
    ``ValueError`` naming ``who`` for tensors that are on neither a CUDA device nor the interpreter's CPU."""
    interp = interpret_enabled()
    if device.type != "cuda" and not interp:
        raise ValueError(f"{who} got tensors on {device}: a CUDA device is needed, or TRITON_INTERPRET=1 for "
                         "Triton's CPU interpreter")
    return interp


class TritonBackend(GDNBackend):
    """gdnlab's fused recurrent Triton kernel on the ``[P, HV, V, K]`` pool (SGLang semantics).

    Args:
        bv: V rows per program (power of two); ``None`` = :func:`auto_config`.
        num_warps: warps per program (1, 2, 4, 8, 16); ``None`` = 1.
        num_stages: software-pipelining stages for the token loop; ``None`` = 3 (SGLang's value).
        intermediate_dtype: dtype of the intermediate buffer :meth:`verify` allocates when none is
            passed (default: the pool's dtype, as FlashInfer's MTP wrappers require, so the two
            backends write the same bytes; ``float32`` keeps full-precision intermediates).
    """

    name = "triton"
    decode_state_dtypes = (torch.float32, torch.bfloat16)
    verify_state_dtypes = (torch.float32, torch.bfloat16)

    def __init__(self, bv: int | None = None, num_warps: int | None = None, num_stages: int | None = None,
                 intermediate_dtype: torch.dtype | str | None = None) -> None:
        super().__init__()
        check_bv(bv)
        if num_warps is not None and num_warps not in _POW2_WARPS:
            raise ValueError(f"num_warps must be one of {_POW2_WARPS}, got {num_warps!r}")
        if num_stages is not None and (not isinstance(num_stages, int) or num_stages < 1):
            raise ValueError(f"num_stages must be an integer >= 1, got {num_stages!r}")
        if intermediate_dtype is not None:
            intermediate_dtype = dtype_from_name(intermediate_dtype)
            if intermediate_dtype not in (torch.float32, torch.bfloat16):
                raise ValueError(f"intermediate_dtype must be float32 or bfloat16, got {intermediate_dtype}")
        self.bv = bv
        self.num_warps = num_warps
        self.num_stages = num_stages
        self.intermediate_dtype = intermediate_dtype

    # ------------------------------------------------------------------ availability
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import triton
        except ImportError:
            return False, "triton not installed"
        except Exception as exc:  # noqa: BLE001 - a broken install is a reason too
            return False, f"triton failed to import: {type(exc).__name__}: {exc}"
        version = getattr(triton, "__version__", "?")
        interp = interpret_enabled()
        if torch.cuda.is_available():
            where = f"triton {version} on {torch.cuda.get_device_name()}"
            if interp:
                where += " (TRITON_INTERPRET=1: kernels run in Triton's CPU interpreter)"
            return True, where
        if interp:
            return True, (f"triton {version} via Triton's CPU interpreter (TRITON_INTERPRET=1, no CUDA device; "
                          "slow, for tests)")
        return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton's CPU interpreter)"

    # ------------------------------------------------------------------ contract
    def new_intermediate(self, dims: GDNCallDims, pool: torch.Tensor) -> torch.Tensor:
        """A batch-scoped ``[B, T, HV, V, K]`` buffer in ``intermediate_dtype`` (default: the pool's dtype)."""
        dt = self.intermediate_dtype or pool.dtype
        if dt not in (torch.float32, pool.dtype):
            raise ValueError(f"intermediate_dtype {dt} must be float32 or the pool's dtype {pool.dtype}")
        return torch.empty((dims.B, dims.T, dims.HV, dims.V, dims.K), dtype=dt, device=pool.device)

    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims):
        return self._run("decode", q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, None)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate):
        return self._run("verify", q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate)

    # ------------------------------------------------------------------ launch
    def config(self, dims: GDNCallDims, device: torch.device) -> tuple[int, int, int]:
        """``(BV, num_warps, num_stages)`` this backend launches for ``dims`` on ``device``."""
        return tiling(dims.B, dims.HV, dims.V, device, self.bv, self.num_warps, self.num_stages)

    def _run(self, op, q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, intermediate):
        from . import _triton_gdn as tg

        interp = launch_mode(q.device, "triton backend")
        bv, nw, ns = self.config(dims, q.device)
        o = torch.empty((dims.B, dims.T, dims.HV, dims.V), dtype=q.dtype, device=q.device)
        grid = tg.launch(q, k, v, a, b, A_log, dt_bias, pool, indices, o, intermediate, scale,
                         H=dims.H, HV=dims.HV, K=dims.K, V=dims.V, BV=bv, num_warps=nw, num_stages=ns,
                         write_pool=(op == "decode"), interpret=interp)
        detail = {"BV": bv, "num_warps": nw, "num_stages": ns, "grid": grid, "interpreter": interp,
                  "triton": tg.TRITON_VERSION, "state_dtype": dtype_name(pool.dtype)}
        if intermediate is not None:
            detail["intermediate_dtype"] = dtype_name(intermediate.dtype)
        self.last_path = KernelPath(op, f"{KERNEL_NAME}_{op}", "interpreter" if interp else _arch(q.device), detail)
        return o

