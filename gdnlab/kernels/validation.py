"""Argument checks shared by every backend: done before any work, so nothing is half-written.

Each failure raises ``ValueError`` naming the argument, what it got and what it expected.
Value checks (index range, duplicate slots, the reserved slot 0, accepted lengths, and non-finite
inputs: q, k, v, a, b, A_log, dt_bias, scale and the live rows of the pool) read tensors back to the
host; pass ``validate=False`` to a backend call in a timed loop once its inputs were checked. Without
them a NaN or Inf in a gate or state silently corrupts pool rows in place.
"""
from __future__ import annotations

import torch

from ..shapes import GDNCallDims

__all__ = ["GDNCallDims", "check_gdn_inputs", "check_indices", "check_intermediate", "check_commit",
           "check_finite", "check_scale", "STATE_DTYPES", "RESERVED_SLOT"]

#: pool slot 0 is never a live request's (gdnlab.state.StatePool reserves it; FlashInfer's bf16 kernels
#: redirect padding rows to it)
RESERVED_SLOT = 0

STATE_DTYPES = (torch.float32, torch.bfloat16)
_ACT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _expect(name: str, t: object, shape: tuple[int, ...], dims: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {dims}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {dims} = {shape}")


def _dtype(name: str, t: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    if t.dtype not in allowed:
        raise ValueError(f"{name} has dtype {t.dtype}, expected one of {[str(d) for d in allowed]}")


def check_gdn_inputs(q, k, v, a, b, A_log, dt_bias, pool, indices, *, single_token: bool,
                     validate_values: bool = True) -> GDNCallDims:
    """Check the tensors of a decode (``single_token=True``) or verify call; return their dims."""
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ValueError(f"q must be a 4-D tensor [B, T, H, K], got "
                         f"{tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__}")
    B, T, H, K = q.shape
    if isinstance(k, torch.Tensor) and k.dim() == 4 and tuple(k.shape) != tuple(q.shape):
        raise ValueError(f"k has shape {tuple(k.shape)}, q has shape {tuple(q.shape)}: expected [B, T, H, K] "
                         f"for both (q and k must match)")
    if single_token and T != 1:
        raise ValueError(f"decode takes one token per row: q has shape {tuple(q.shape)}, expected [B, 1, H, K]; "
                         "use verify() for T > 1")
    if not isinstance(pool, torch.Tensor) or pool.dim() != 4:
        raise ValueError(f"pool must be a 4-D tensor [P, HV, V, K], got "
                         f"{tuple(pool.shape) if isinstance(pool, torch.Tensor) else type(pool).__name__}")
    P, HV, V, Kp = pool.shape
    if Kp != K:
        raise ValueError(f"pool has shape {tuple(pool.shape)}: its last dim (K) must equal q's head dim {K}")
    if H <= 0 or HV % H:
        raise ValueError(f"value heads HV={HV} (pool dim 1) must be a multiple of q/k heads H={H} (q dim 2)")
    _expect("k", k, (B, T, H, K), "[B, T, H, K]")
    _expect("v", v, (B, T, HV, V), "[B, T, HV, V]")
    _expect("a", a, (B, T, HV), "[B, T, HV]")
    _expect("b", b, (B, T, HV), "[B, T, HV]")
    _expect("A_log", A_log, (HV,), "[HV]")
    _expect("dt_bias", dt_bias, (HV,), "[HV]")
    _expect("indices", indices, (B,), "[B]")
    for name, t in (("q", q), ("k", k), ("v", v), ("a", a), ("b", b)):
        _dtype(name, t, _ACT_DTYPES)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one dtype, got q={q.dtype}, k={k.dtype}, v={v.dtype}")
    _dtype("A_log", A_log, (torch.float32, torch.bfloat16, torch.float16))
    _dtype("dt_bias", dt_bias, (torch.float32, torch.bfloat16, torch.float16))
    _dtype("pool", pool, STATE_DTYPES)
    _dtype("indices", indices, (torch.int32, torch.int64))
    dev = q.device
    for name, t in (("k", k), ("v", v), ("a", a), ("b", b), ("A_log", A_log), ("dt_bias", dt_bias),
                    ("pool", pool), ("indices", indices)):
        if t.device != dev:
            raise ValueError(f"{name} is on {t.device}, but q is on {dev}: all tensors must be on one device")
    if pool.stride(-1) != 1:
        raise ValueError("pool must be contiguous in its last dim (K), stride(-1) == 1")
    if validate_values:
        check_indices(indices, P)
        check_finite(q=q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias)
        live = indices.detach().to(pool.device, torch.long)
        live = live[live >= 0]
        if live.numel():
            check_finite(**{"pool rows at indices": pool.index_select(0, live)})
    return GDNCallDims(B, T, H, HV, K, V, P)


def check_finite(**tensors: torch.Tensor) -> None:
    """Every element finite (no NaN or Inf); the error names the first tensor that is not."""
    for name, t in tensors.items():
        if t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or Inf); a GDN call would write "
                             f"them into the state pool")


def check_scale(scale: float | None) -> None:
    """``scale`` is ``None`` (use ``K ** -0.5``) or a finite positive number."""
    if scale is None:
        return
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number or None, got {scale!r}") from None
    if not (s > 0 and s != float("inf")):
        raise ValueError(f"scale must be finite and > 0 (or None for K**-0.5), got {scale!r}")


def check_indices(indices: torch.Tensor, num_slots: int) -> None:
    """Pool indices: ``-1`` (any negative) marks padding; others in ``[1, P)`` (slot 0 is reserved) and
    distinct."""
    if indices.numel() == 0:
        return
    idx = indices.detach().to("cpu", torch.int64)
    if bool((idx == RESERVED_SLOT).any()):
        raise ValueError(f"indices holds slot {RESERVED_SLOT}, which is reserved (padding rows of FlashInfer's "
                         f"bf16 kernels land there); live rows use slots 1..{num_slots - 1}, padding rows -1")
    if int(idx.max()) >= num_slots:
        raise ValueError(f"indices holds {int(idx.max())}, out of range for a pool of {num_slots} slots "
                         f"(valid: 0..{num_slots - 1}, or negative for padding)")
    live = idx[idx >= 0]
    if live.numel() != torch.unique(live).numel():
        raise ValueError("indices holds the same pool slot twice; each live row needs its own slot")


def check_intermediate(intermediate: torch.Tensor, dims: GDNCallDims, pool_dtype: torch.dtype,
                       device: torch.device) -> None:
    """Verify's intermediate buffer: ``[B, T, HV, V, K]`` (or more rows/tokens: it is batch-scoped,
    row ``i`` belongs to batch row ``i``), float32 or the pool's dtype, contiguous."""
    if not isinstance(intermediate, torch.Tensor) or intermediate.dim() != 5:
        raise ValueError(f"intermediate must be a 5-D tensor [B, T, HV, V, K] = "
                         f"{(dims.B, dims.T, dims.HV, dims.V, dims.K)}")
    n, t, hv, v, k = intermediate.shape
    if n < dims.B or t < dims.T or (hv, v, k) != (dims.HV, dims.V, dims.K):
        raise ValueError(f"intermediate has shape {tuple(intermediate.shape)}, expected [B, T, HV, V, K] = "
                         f"{(dims.B, dims.T, dims.HV, dims.V, dims.K)} (at least B rows and T tokens)")
    if intermediate.dtype not in (torch.float32, pool_dtype):
        raise ValueError(f"intermediate has dtype {intermediate.dtype}, expected float32 or the pool's {pool_dtype}")
    if intermediate.device != device:
        raise ValueError(f"intermediate is on {intermediate.device}, expected {device}")
    if not intermediate.is_contiguous():
        raise ValueError("intermediate must be contiguous")


def check_commit(pool: torch.Tensor, indices: torch.Tensor, intermediate: torch.Tensor,
                 accepted: torch.Tensor, validate_values: bool = True) -> tuple[int, int]:
    """Arguments of ``commit``; returns ``(B, T)``."""
    if not isinstance(pool, torch.Tensor) or pool.dim() != 4:
        raise ValueError("pool must be a 4-D tensor [P, HV, V, K]")
    _dtype("pool", pool, STATE_DTYPES)
    if not isinstance(indices, torch.Tensor) or indices.dim() != 1:
        raise ValueError("indices must be a 1-D tensor [B]")
    B = indices.shape[0]
    P, HV, V, K = pool.shape
    if not isinstance(intermediate, torch.Tensor) or intermediate.dim() != 5 or intermediate.shape[0] < B \
            or tuple(intermediate.shape[2:]) != (HV, V, K):
        got = tuple(intermediate.shape) if isinstance(intermediate, torch.Tensor) else type(intermediate).__name__
        raise ValueError(f"intermediate has shape {got}, expected [B, T, HV, V, K] with B >= {B} and "
                         f"(HV, V, K) = {(HV, V, K)}")
    T = intermediate.shape[1]
    _expect("accepted", accepted, (B,), "[B]")
    _dtype("indices", indices, (torch.int32, torch.int64))
    _dtype("accepted", accepted, (torch.int32, torch.int64))
    for name, t in (("indices", indices), ("intermediate", intermediate), ("accepted", accepted)):
        if t.device != pool.device:
            raise ValueError(f"{name} is on {t.device}, but pool is on {pool.device}")
    if validate_values:
        check_indices(indices, P)
        idx = indices.detach().cpu()
        acc = accepted.detach().cpu()[idx >= 0]
        if acc.numel() and (int(acc.min()) < 1 or int(acc.max()) > T):
            raise ValueError(f"accepted lengths must be in 1..T={T} for live rows, got min {int(acc.min())}, "
                             f"max {int(acc.max())}")
    return B, T
