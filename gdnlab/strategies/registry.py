"""The strategy registry: every verify strategy, in display order, one entry each.

A strategy is a class (:class:`gdnlab.strategies.base.VerifyStrategy`) that holds its facts —
name, colour, byte formulas, phases, whether its verify is separable and whether it folds, the
engines that run it — and its logic on a backend's primitive. :data:`STRATEGY_CLASSES` lists the
backend-independent classes; the reference and Triton backends bind each of them to their kernels,
other backends (FlashInfer) implement the names they run. Everything that needs a fact of a
strategy asks here (:func:`strategy_class`) and never compares names: an unknown name raises
``ValueError`` naming the known strategies.

Adding a strategy = its module (the class with its facts) + one entry in :data:`STRATEGY_CLASSES`.
Importing this module imports torch but neither Triton nor FlashInfer.
"""
from __future__ import annotations

from ..roofline import StrategyBytes
from ..shapes import GDNShape
from .base import VerifyStrategy
from .full_cache import FullCache
from .recompute import Recompute, RecomputeFused
from .replay_ring import ReplayRing
from .token_slots import TokenSlots

__all__ = ["STRATEGY_CLASSES", "STRATEGY_NAMES", "BASELINE", "strategy_class", "strategy_names", "strategy_order",
           "strategy_color", "strategy_bytes", "strategy_scratch_bytes", "strategy_memory_bytes", "check_strategy"]

#: the verify strategies, in display order (tables, legends): one entry per strategy
STRATEGY_CLASSES: tuple[type[VerifyStrategy], ...] = (FullCache, TokenSlots, Recompute, RecomputeFused, ReplayRing)

#: the strategy every other is compared with (the seed's, SGLang PR #23273): ``vs_full_cache`` columns
BASELINE: str = FullCache.name

_BY_NAME: dict[str, type[VerifyStrategy]] = {c.name: c for c in STRATEGY_CLASSES}
#: strategy names in display order
STRATEGY_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def check_strategy(name: str) -> str:
    """``name`` as its registry key (case and blanks ignored); ``ValueError`` naming the known
    strategies for any other name."""
    key = str(name).strip().lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")
    return key


def strategy_class(name: str) -> type[VerifyStrategy]:
    """The backend-independent class of strategy ``name``: where its facts are read."""
    return _BY_NAME[check_strategy(name)]


def strategy_names() -> tuple[str, ...]:
    """Every strategy name, in display order."""
    return STRATEGY_NAMES


def strategy_order(name: str) -> int:
    """Display position of a strategy (0 first); names that are not strategies sort after all of them."""
    key = str(name).strip().lower()
    return STRATEGY_NAMES.index(key) if key in _BY_NAME else len(STRATEGY_NAMES)


def strategy_color(name: str) -> str | None:
    """The colour of a strategy in every figure, ``None`` for a name that is not a strategy."""
    cls = _BY_NAME.get(str(name).strip().lower())
    return cls.color if cls else None


def strategy_bytes(shape: GDNShape, strategy: str, batch: int, draft_tokens: int, accept_len: float,
                   **options) -> StrategyBytes:
    """Bytes one step of ``strategy`` moves (:meth:`VerifyStrategy.step_bytes` of its class)."""
    return strategy_class(strategy).step_bytes(shape, batch, draft_tokens, accept_len, **options)


def strategy_scratch_bytes(shape: GDNShape, strategy: str, batch: int, draft_tokens: int, pool_slots: int,
                           **options) -> int:
    """Bytes ``strategy`` allocates besides the pool (:meth:`VerifyStrategy.scratch_formula`)."""
    return strategy_class(strategy).scratch_formula(shape, batch, draft_tokens, pool_slots, **options)


def strategy_memory_bytes(shape: GDNShape, strategy: str, requests: int, batch: int, draft_tokens: int,
                          **options) -> int:
    """Pool plus scratch bytes (one layer) to serve ``requests`` requests (:meth:`VerifyStrategy.memory_formula`)."""
    return strategy_class(strategy).memory_formula(shape, requests, batch, draft_tokens, **options)
