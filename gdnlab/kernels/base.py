"""The backend contract every GDN kernel implementation follows.

Shapes follow FlashInfer's ``gated_delta_rule_decode_pretranspose`` / ``gated_delta_rule_mtp`` and
SGLang's state pool (layout ``[HV, V, K]``, K-last):

* ``decode(q, k, v, a, b, A_log, dt_bias, pool, indices, scale=None) -> o``
  q, k ``[B,1,H,K]``; v ``[B,1,HV,V]``; a, b ``[B,1,HV]``; A_log, dt_bias ``[HV]``;
  pool ``[P,HV,V,K]`` float32 or bfloat16, updated in place at rows ``indices``;
  indices ``[B]`` int32, negative = padding row (output zeros, no pool row touched);
  returns o ``[B,1,HV,V]`` in q's dtype.
* ``verify(..., intermediate=None) -> (o, intermediate)``: T = q.shape[1] draft tokens, pool NOT
  changed; intermediate ``[B,T,HV,V,K]`` holds the state after each token, **batch-scoped**: row i
  belongs to batch row i whatever its pool index (the detail of the seed's
  ``intermediate_states_buffer[:batch_size]`` fix). Padding rows' intermediate rows are not written.
* ``commit(pool, indices, intermediate, accepted)``: accepted ``[B]`` in 1..T;
  ``pool[indices[i]] = intermediate[i, accepted[i]-1]``; padding rows untouched.

Math per token and value head ``hv`` (q/k head ``hv // (HV // H)``):
``g = -exp(A_log)*softplus(a+dt_bias)``, ``beta = sigmoid(b)``, q and k L2-normalised
(``x * rsqrt(sum x^2 + 1e-6)``), q scaled by ``scale`` (default ``K**-0.5``);
``S = exp(g) S; u = beta (v - S k); S = S + u k^T; o = S q``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from .validation import GDNCallDims, check_commit, check_gdn_inputs, check_intermediate, check_scale

__all__ = ["GDNBackend", "BackendStatus", "KernelPath"]


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here and, if not, why (e.g. ``"no CUDA device"``)."""

    name: str
    available: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {'available' if self.available else 'unavailable'} — {self.reason}"


@dataclass
class KernelPath:
    """Which implementation served the last call (recorded by backends, read by sweeps)."""

    op: str = ""                 # "decode" | "verify" | "commit"
    kernel: str = ""             # e.g. "pretranspose_fp32_pool", "bf16_wide_vec_mtp", "torch"
    arch: str = ""               # e.g. "sm90"
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"op": self.op, "kernel": self.kernel, "arch": self.arch, **self.detail}


class GDNBackend(ABC):
    """Base class: argument checking, intermediate-buffer allocation and the shared commit.

    Subclasses implement :meth:`_decode` and :meth:`_verify` on already-checked arguments.
    """

    name: str = "base"
    #: state dtypes this backend supports for decode and for verify
    decode_state_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16)
    verify_state_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16)

    def __init__(self) -> None:
        self.last_path = KernelPath()

    # ------------------------------------------------------------------ public contract
    def decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None,
               *, validate: bool = True) -> torch.Tensor:
        """One token per row; updates ``pool`` in place; returns ``o [B,1,HV,V]``."""
        dims = check_gdn_inputs(q, k, v, a, b, A_log, dt_bias, pool, indices, single_token=True,
                                validate_values=validate)
        check_scale(scale)
        self._check_state_dtype(pool.dtype, "decode")
        return self._decode(q, k, v, a, b, A_log, dt_bias, pool, indices, self._scale(scale, dims), dims)

    def verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None,
               intermediate: torch.Tensor | None = None, *, validate: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """T = q.shape[1] tokens per row; the pool is not changed; returns ``(o, intermediate)``."""
        dims = check_gdn_inputs(q, k, v, a, b, A_log, dt_bias, pool, indices, single_token=False,
                                validate_values=validate)
        check_scale(scale)
        self._check_state_dtype(pool.dtype, "verify")
        if intermediate is None:
            intermediate = self.new_intermediate(dims, pool)
        else:
            check_intermediate(intermediate, dims, pool.dtype, q.device)
        o = self._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, self._scale(scale, dims), dims,
                         intermediate)
        return o, intermediate

    def commit(self, pool: torch.Tensor, indices: torch.Tensor, intermediate: torch.Tensor,
               accepted: torch.Tensor, *, validate: bool = True) -> None:
        """Keep the state after the accepted prefix: ``pool[indices[i]] = intermediate[i, accepted[i]-1]``."""
        check_commit(pool, indices, intermediate, accepted, validate_values=validate)
        self._commit(pool, indices, intermediate, accepted)
        self.last_path = KernelPath("commit", "torch_index_scatter", _arch(pool.device))

    # ------------------------------------------------------------------ helpers
    def new_intermediate(self, dims: GDNCallDims, pool: torch.Tensor) -> torch.Tensor:
        """A batch-scoped ``[B, T, HV, V, K]`` float32 buffer (backends may prefer another dtype)."""
        return torch.zeros((dims.B, dims.T, dims.HV, dims.V, dims.K), dtype=torch.float32, device=pool.device)

    @staticmethod
    def _scale(scale: float | None, dims: GDNCallDims) -> float:
        return float(dims.K) ** -0.5 if scale is None else float(scale)

    def _check_state_dtype(self, dtype: torch.dtype, op: str) -> None:
        allowed = self.decode_state_dtypes if op == "decode" else self.verify_state_dtypes
        if dtype not in allowed:
            raise ValueError(f"{self.name} {op} does not support a {dtype} state pool here; "
                             f"supported: {[str(d) for d in allowed]}")

    @staticmethod
    def _commit(pool: torch.Tensor, indices: torch.Tensor, intermediate: torch.Tensor,
                accepted: torch.Tensor) -> None:
        # pool[indices[i]] = intermediate[i, accepted[i]-1] for live rows (one gather + one scatter).
        idx = indices.long()
        live_rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
        step = accepted.long()[live_rows] - 1
        pool.index_copy_(0, idx[live_rows], intermediate[live_rows, step].to(pool.dtype))

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _decode(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float,
                dims: GDNCallDims) -> torch.Tensor: ...

    @abstractmethod
    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float,
                dims: GDNCallDims, intermediate: torch.Tensor) -> torch.Tensor: ...

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(can_run_here, reason)`` without side effects beyond imports."""
        return True, "ok"


def _arch(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm{major}{minor}"
