"""What a sweep measures: :class:`SweepConfig` (the grid and timing settings) and its points.

A point is one backend call configuration (:class:`SweepPoint`): preset, backend, mode, strategy,
draft tokens T, batch B, state dtype, timing. The grid is the product of the config's lists;
``mode="decode"`` has T = 1 and strategy ``"decode"``; ``mode="verify"`` runs every T of
``draft_tokens`` with every verify strategy of ``strategies``:

* ``full_cache``: the state after each token written to a batch-scoped ``[B, T, HV, V, K]`` buffer
  (SGLang after PR #23273's ``[:batch_size]`` slice);
* ``full_cache_pool_scoped``: the pool-sized ``[pool_slots, T, HV, V, K]`` buffer handed over
  unsliced, as SGLang did before that fix.

The pool has ``pool_slots = pool_capacity + 1`` rows (slot 0 reserved; default capacity = the
largest batch, as a server sizes its pool for ``max_running_requests``).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..errors import InputError
from ..shapes import GDNShape, dtype_from_name, dtype_name, parse_preset

__all__ = ["SweepConfig", "SweepPoint", "grid_points", "default_backends", "DEFAULT_BATCHES", "DEFAULT_PRESET",
           "MODES", "STRATEGIES", "TIMINGS", "INTERMEDIATE_OF_STRATEGY"]

DEFAULT_BATCHES = (1, 4, 16, 32, 64, 128, 256)
DEFAULT_PRESET = "qwen3.5-397b-a17b@tp4"
MODES = ("decode", "verify")
#: verify strategies the sweep measures (decode points have strategy "decode")
STRATEGIES = ("full_cache", "full_cache_pool_scoped")
#: ``amortised``: n calls on disjoint pool rows captured in one CUDA graph, time per call = sample / n;
#: ``single``: one call per CUDA-graph sample; ``eager``: one call per sample, no graph (host launch included)
TIMINGS = ("amortised", "single", "eager")
#: the ``intermediate`` column (buffer scope) of each strategy
INTERMEDIATE_OF_STRATEGY = {"decode": "none", "full_cache": "batch", "full_cache_pool_scoped": "pool"}


@dataclass
class SweepConfig:
    """What to sweep and how to time it.

    Attributes:
        backends: backend names; ``None``: every available backend except ``reference``
            (``reference`` alone when nothing else runs here, e.g. on CPU).
        batches: batch sizes B (rows per call).
        modes: ``decode`` and/or ``verify``.
        draft_tokens: T values of verify points (each >= 2).
        strategies: verify strategies (:data:`STRATEGIES`).
        state_dtypes: pool dtypes, ``float32`` / ``bfloat16``.
        presets: ``"NAME@tpN"`` strings or :class:`GDNShape` objects (e.g. a tiny test shape).
        timings: :data:`TIMINGS`; ``amortised`` is the default.
        max_calls: most calls in one amortised sample (fewer when the pool has fewer disjoint row
            sets, or verify buffers would pass ``buffer_budget_gb``).
        min_sample_us: an amortised sample holds enough calls to last at least this long (µs).
        buffer_budget_gb: GB of extra verify intermediate buffers an amortised point may allocate.
        l2_flush: flush L2 before each timed sample.
        warmup, repeats: untimed calls first, then timed samples (times are per call, µs).
        act_dtype: dtype of q, k, v, a, b and the output.
        pool_capacity: request slots of the pool (``None``: the largest batch).
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"`` (``None``: CUDA when available).
        check: compare the first call of each point with the reference backend.
        seed: seeds the pool fill, the row placement and the inputs.
        engine: whose options the backends are made with (:func:`gdnlab.kernels.make_backend`).
    """

    backends: Sequence[str] | None = None
    batches: Sequence[int] = DEFAULT_BATCHES
    modes: Sequence[str] = MODES
    draft_tokens: Sequence[int] = (2, 4, 8)
    strategies: Sequence[str] = STRATEGIES
    state_dtypes: Sequence[str] = ("float32", "bfloat16")
    presets: Sequence[str | GDNShape] = (DEFAULT_PRESET,)
    timings: Sequence[str] = ("amortised",)
    max_calls: int = 64
    min_sample_us: float = 50.0
    buffer_budget_gb: float = 8.0
    l2_flush: bool = True
    warmup: int = 5
    repeats: int = 40
    act_dtype: str = "bfloat16"
    pool_capacity: int | None = None
    device: str | None = None
    check: bool = True
    seed: int = 0
    engine: str | None = "sglang"
    backend_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`~gdnlab.errors.InputError` naming the first bad setting."""
        if not self.batches or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in self.batches):
            raise InputError(f"batches must be integers >= 1, got {list(self.batches)}")
        _among("modes", self.modes, MODES)
        if "verify" in self.modes:
            if not self.draft_tokens or any(not isinstance(t, int) or t < 2 for t in self.draft_tokens):
                raise InputError(f"draft_tokens must be integers >= 2 for verify, got {list(self.draft_tokens)}")
            _among("strategies", self.strategies, STRATEGIES)
        for d in self.state_dtypes or [None]:
            try:
                ok = d is not None and dtype_from_name(d) in (torch.float32, torch.bfloat16)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise InputError(f"state_dtypes must be float32/bfloat16, got {list(self.state_dtypes)}")
        _among("timings", self.timings, TIMINGS)
        if self.max_calls < 1 or self.buffer_budget_gb <= 0 or not self.min_sample_us > 0:
            raise InputError(f"need max_calls >= 1, buffer_budget_gb > 0, min_sample_us > 0; got {self.max_calls}, "
                             f"{self.buffer_budget_gb}, {self.min_sample_us}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError(f"repeats must be >= 1 and warmup >= 0, got repeats={self.repeats}, warmup={self.warmup}")
        if self.pool_capacity is not None and self.pool_capacity < max(self.batches):
            raise InputError(f"pool_capacity={self.pool_capacity} is smaller than the largest batch "
                             f"{max(self.batches)}")
        if not self.presets:
            raise InputError("presets is empty")
        for p in self.presets:
            try:
                parse_preset(p)
            except InputError:
                raise
            except ValueError as exc:
                raise InputError(str(exc)) from None

    @property
    def capacity(self) -> int:
        """Request slots of the pool (the pool has one more row: slot 0)."""
        return self.pool_capacity or max(self.batches)


def _among(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise InputError(f"{name} must be among {', '.join(allowed)}; got {list(values)}")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid; :meth:`key` gives its :data:`gdnlab.results.KEY_COLUMNS` values."""

    shape: GDNShape
    backend: str
    mode: str
    strategy: str
    draft_tokens: int
    batch: int
    state_dtype: str
    timing: str
    l2_flush: bool
    act_dtype: str
    pool_slots: int

    @property
    def preset(self) -> str:
        return self.shape.name.partition("@")[0]

    @property
    def intermediate(self) -> str:
        return INTERMEDIATE_OF_STRATEGY[self.strategy]

    def key_row(self) -> dict:
        """The grid columns of this point's row."""
        return {"preset": self.preset, "tp": self.shape.tp, "backend": self.backend, "mode": self.mode,
                "strategy": self.strategy, "draft_tokens": self.draft_tokens, "batch": self.batch,
                "state_dtype": self.state_dtype, "timing": self.timing, "l2_flush": self.l2_flush,
                "act_dtype": self.act_dtype, "pool_slots": self.pool_slots}

    def label(self) -> str:
        """Short text for a progress bar."""
        m = "decode" if self.mode == "decode" else f"verify T={self.draft_tokens} {self.strategy}"
        return f"{self.backend} {m} {self.state_dtype} {self.timing} B={self.batch}"


def default_backends() -> list[str]:
    """Every backend available here except ``reference`` (``["reference"]`` when none is)."""
    from ..kernels import available_backends

    avail = [n for n, st in available_backends().items() if st.available and n != "reference"]
    return avail or ["reference"]


def grid_points(cfg: SweepConfig) -> list[SweepPoint]:
    """Every point of the grid, in run order (preset, state dtype, backend, mode, timing, batch)."""
    cfg.validate()
    backends = list(cfg.backends) if cfg.backends else default_backends()
    modes: list[tuple[str, int, str]] = []
    for m in cfg.modes:
        if m == "decode":
            modes.append(("decode", 1, "decode"))
        else:
            modes += [("verify", t, s) for t in cfg.draft_tokens for s in cfg.strategies]
    act = dtype_name(cfg.act_dtype)
    return [SweepPoint(shape=parse_preset(p), backend=str(be).strip().lower(), mode=mode, strategy=strat,
                       draft_tokens=int(t), batch=int(b), state_dtype=dtype_name(sd), timing=timing,
                       l2_flush=bool(cfg.l2_flush), act_dtype=act, pool_slots=cfg.capacity + 1)
            for p, sd, be, (mode, t, strat), timing, b in itertools.product(
                cfg.presets, cfg.state_dtypes, backends, modes, cfg.timings, cfg.batches)]
