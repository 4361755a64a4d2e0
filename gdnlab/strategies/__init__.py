"""Speculative-verify strategies for GDN layers: one object per strategy behind one interface.

>>> from gdnlab.strategies import available_strategies, get_strategy
>>> s = get_strategy("recompute", backend="reference")
>>> available_strategies("reference")[("recompute", "reference")].available
True

The contract (``allocate`` / ``verify`` / ``commit`` / ``state`` / ``scratch_bytes``) and the
backend-module contract are documented in :mod:`gdnlab.strategies.base`. Backends: ``reference``
(PyTorch, the oracle), ``triton`` (gdnlab's own kernels; needs CUDA or ``TRITON_INTERPRET=1``),
``flashinfer`` (FlashInfer's kernels where they run). Backend modules are imported only when asked
about, so importing this package never imports Triton or FlashInfer.
:mod:`gdnlab.strategies.host_sync` checks, on any device, that a strategy's step is CUDA-graph
capturable.
"""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .. import backends as _registry
from ..errors import StrategyUnavailable
from .base import StrategyStatus, VerifyStrategy
from .registry import STRATEGY_NAMES, strategy_class

__all__ = ["get_strategy", "strategy_backend_class", "available_strategies", "strategy_names", "backend_names",
           "VerifyStrategy",
           "StrategyStatus", "STRATEGY_NAMES", "StrategyUnavailable", "strategy_class"]

#: backend -> module following the contract in :mod:`gdnlab.strategies.base` (from :mod:`gdnlab.backends`)
_BACKENDS: dict[str, str] = {b.name: b.strategies for b in _registry.BACKENDS if b.strategies}


def backend_names() -> list[str]:
    """Backends that implement verify strategies (available here or not)."""
    return list(_BACKENDS)


def _module(backend: str) -> tuple[ModuleType | None, str]:
    try:
        return import_module(_BACKENDS[backend]), ""
    except Exception as exc:  # noqa: BLE001 - any failure to import a backend module is the reason it is unavailable
        return None, f"{_BACKENDS[backend]} failed to import: {type(exc).__name__}: {exc}"


def _statuses(backend: str) -> dict[tuple[str, str], StrategyStatus]:
    mod, why = _module(backend)
    if mod is None:
        return {(n, backend): StrategyStatus(n, backend, False, why) for n in STRATEGY_NAMES}
    strategies = getattr(mod, "STRATEGIES", None)
    if not isinstance(strategies, dict):
        return {(n, backend): StrategyStatus(n, backend, False, f"{_BACKENDS[backend]} has no STRATEGIES dict")
                for n in STRATEGY_NAMES}
    try:
        ok, reason = mod.availability()
    except Exception as exc:  # noqa: BLE001 - a failing availability check is the reason it is unavailable
        ok, reason = False, f"availability check failed: {type(exc).__name__}: {exc}"
    out = {}
    for name in list(dict.fromkeys([*STRATEGY_NAMES, *strategies])):
        cls = strategies.get(name)
        if cls is None:
            out[(name, backend)] = StrategyStatus(name, backend, False, f"not implemented by the {backend} backend")
            continue
        s_ok, s_reason = bool(ok), reason
        if s_ok:
            try:
                s_ok, extra = cls.availability()
            except Exception as exc:  # noqa: BLE001 - a failing availability check is the reason it is unavailable
                s_ok, extra = False, f"availability check failed: {type(exc).__name__}: {exc}"
            s_reason = reason if extra in ("", "ok") else (extra if not s_ok else f"{reason}; {extra}")
        out[(name, backend)] = StrategyStatus(name, backend, bool(s_ok), s_reason)
    return out


def available_strategies(backend: str | None = None) -> dict[tuple[str, str], StrategyStatus]:
    """Every ``(strategy, backend)`` pair with whether it runs here and the reason, for one backend
    or all. Strategies a backend does not implement are listed as unavailable, saying so."""
    if backend is not None:
        key = _backend_key(backend)
        return _statuses(key)
    out: dict[tuple[str, str], StrategyStatus] = {}
    for b in _BACKENDS:
        out.update(_statuses(b))
    return out


def strategy_names(backend: str | None = None) -> list[str]:
    """Strategy names (available or not) for one backend or all, without duplicates."""
    return list(dict.fromkeys(n for n, _ in available_strategies(backend)))


def _backend_key(backend: str) -> str:
    key = str(backend).strip().lower()
    if key not in _BACKENDS:
        raise ValueError(f"unknown strategy backend {backend!r}; known: {', '.join(_BACKENDS)}")
    return key


def strategy_backend_class(name: str, backend: str) -> type[VerifyStrategy]:
    """The class of strategy ``name`` as ``backend`` implements it, without instantiating it (its
    ``launches``, ``supports``): ``ValueError`` for an unknown strategy or backend or a strategy the
    backend does not implement, :class:`StrategyUnavailable` when its module cannot be imported."""
    key = _backend_key(backend)
    nm = strategy_class(name).name
    mod, why = _module(key)
    if mod is None:
        raise StrategyUnavailable(f"strategy {nm!r} on backend {key!r}: {why}")
    cls = getattr(mod, "STRATEGIES", {}).get(nm)
    if cls is None:
        raise ValueError(f"strategy {nm!r} is not implemented by the {key} backend")
    return cls


def get_strategy(name: str, backend: str = "reference", **options) -> VerifyStrategy:
    """A ready strategy object; ``ValueError`` for an unknown name or backend,
    :class:`StrategyUnavailable` (an :class:`gdnlab.errors.UnavailableError`) with the reason when it
    cannot run here. ``options`` go to the strategy (e.g. ``intermediate_dtype``, ``stash_dtype``,
    ``ring_slots``, ``flush_min``)."""
    key = _backend_key(backend)
    nm = str(name).strip().lower()
    st = _statuses(key)
    if (nm, key) not in st:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(n for n, _ in st)}")
    status = st[(nm, key)]
    if not status.available:
        raise StrategyUnavailable(f"strategy {nm!r} on backend {key!r} cannot run here: {status.reason}")
    mod, _ = _module(key)
    return mod.STRATEGIES[nm](**options)
