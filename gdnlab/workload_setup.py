"""What a :class:`gdnlab.workload.DecodeWorkload` is built from: the backend or verify strategy it
runs (a name resolved the way a serving engine would), the default acceptance model, and an estimate
of the device memory it allocates.

* :func:`make_workload_backend` — a backend instance; a name gets SGLang's options.
* :func:`make_strategy` — a verify strategy by name (or instance) on the backend named like ``backend``.
* :func:`default_acceptance` — the seed's mean accept length as a chain model.
* :func:`estimate_memory_bytes` — pool plus intermediate states, in bytes.

:mod:`gdnlab.workload` re-exports all of them.
"""
from __future__ import annotations

import torch

from .acceptance import ChainAcceptance
from .errors import InputError
from .kernels.base import GDNBackend
from .seed import SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS
from .shapes import GDNShape

__all__ = ["default_acceptance", "make_workload_backend", "make_strategy", "estimate_memory_bytes"]

#: per-draft chain rate of the seed's mean accept length (3.175 at T=4), used for any T by default
_SEED_MEAN = sum(SEED_ACCEPT_LEN) / 2


def default_acceptance() -> ChainAcceptance:
    """The default acceptance model: one per-draft rate (chain model) whose mean accept length at the
    seed's T=4 is the middle of the seed's reported 3.13-3.22."""
    return ChainAcceptance.from_accept_len(_SEED_MEAN, SEED_DRAFT_TOKENS)


def make_workload_backend(backend: GDNBackend | str) -> GDNBackend:
    """A backend instance; a name gets the options SGLang runs with (FlashInfer without gdnlab's
    padding fixup). Raises :class:`UnavailableError` when it cannot run here."""
    if not isinstance(backend, str):
        return backend
    from .kernels import make_backend
    return make_backend(backend, "sglang")


def estimate_memory_bytes(shape: GDNShape, batch: int, layers: int, draft_tokens: int = 1, *,
                          state_dtype: torch.dtype | str | None = None,
                          intermediate_dtype: torch.dtype | str = torch.float32) -> int:
    """Device bytes the workload allocates: the pool ``layers x (B+1)`` states plus, for verify,
    ``layers x B x T`` intermediate states (inputs are negligible)."""
    sd = shape.state_dtype if state_dtype is None else state_dtype
    pool = layers * (batch + 1) * shape.state_bytes(sd)
    inter = layers * batch * draft_tokens * shape.state_bytes(intermediate_dtype) if draft_tokens >= 2 else 0
    return pool + inter


def _strategy_backend_name(backend) -> str:
    name = backend if isinstance(backend, str) else getattr(backend, "name", None)
    if not isinstance(name, str):
        raise InputError(f"backend must be a name (reference, triton, flashinfer) or a backend, got {backend!r}")
    return name.strip().lower()


def make_strategy(strategy, backend, **options):
    """A :class:`gdnlab.strategies.VerifyStrategy` for ``strategy`` (a name or an instance) on the
    strategy backend named like ``backend``. Unknown names are :class:`InputError`; strategies that
    cannot run here :class:`UnavailableError` (both one line, naming the problem)."""
    from .strategies import VerifyStrategy, get_strategy

    if isinstance(strategy, VerifyStrategy):
        return strategy
    if not isinstance(strategy, str) or not strategy.strip():
        raise InputError(f"strategy must be a strategy name or a VerifyStrategy, got {strategy!r}")
    try:
        return get_strategy(strategy, backend=_strategy_backend_name(backend), **options)
    except (ValueError, TypeError) as exc:
        raise InputError(f"strategy={strategy!r} on backend={backend!r}: {exc}") from None
