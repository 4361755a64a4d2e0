"""What a sweep measures: :class:`SweepConfig` (the grid and timing settings) and its points.

A point (:class:`SweepPoint`) is one row of the result. Two grids, one file:

**Call grid** (``measure="call"``): one backend kernel call (:mod:`gdnlab.kernels`): preset, backend,
mode, buffer scope, draft tokens T, batch B, state dtype, timing. ``mode="decode"`` has T = 1 and
buffer scope ``"none"``; ``mode="verify"`` runs every T of ``draft_tokens`` with every buffer scope
of ``buffer_scopes`` (the intermediate buffer the backend's verify writes, as the full-cache
strategy hands it over):

* ``batch``: the state after each token written to a batch-scoped ``[B, T, HV, V, K]`` buffer
  (SGLang after PR #23273's ``[:batch_size]`` slice);
* ``pool``: the pool-sized ``[pool_slots, T, HV, V, K]`` buffer handed over unsliced, as SGLang did
  before that fix.

Call points have no verify strategy (``strategy`` is empty); step points no buffer scope.

Both grids go to one file; the step grid runs first. **Step grid** (``measure="step"``,
``mode="step"``): one speculative step of a verify strategy of
:mod:`gdnlab.strategies` (verify + commit + the amortised fold) for every strategy backend, strategy
of ``strategies``, T of ``strategy_draft_tokens``, accept length of ``accept_lens``, B of
``strategy_batches`` and state dtype; timed as :mod:`gdnlab.sweep.step` describes. An accept length
above T is clipped to T (every draft accepted). Step points are timed ``amortised`` only (a graph of
consecutive steps: the fold of ``replay_ring`` happens every few steps).

Pools have ``pool_slots = capacity * slots_per_request + 1`` rows (slot 0 reserved; default capacity
= the largest batch of the grid, as a server sizes its pool for ``max_running_requests``;
``token_slots`` keeps 1 + T rows per request).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..backends import timed_names
from ..errors import InputError
from ..harness_calls import VERIFY_BUFFER_SCOPES
from ..instrument import DEFAULT_MAX_CALLS, DEFAULT_MIN_SAMPLE_US
from ..shapes import GDNShape, dtype_from_name, dtype_name, parse_preset
from ..strategies.registry import STRATEGY_NAMES, strategy_class

__all__ = ["SweepConfig", "SweepPoint", "grid_points", "default_backends", "default_strategy_backends",
           "DEFAULT_BATCHES", "DEFAULT_STRATEGY_BATCHES", "DEFAULT_ACCEPT_LEN", "DEFAULT_PRESET", "MODES",
           "VERIFY_BUFFER_SCOPES", "STEP_STRATEGIES", "TIMINGS", "MEASURES"]

DEFAULT_BATCHES = (1, 4, 16, 32, 64, 128, 256)
#: batches of the step grid (a smaller default: each step point times three CUDA graphs)
DEFAULT_STRATEGY_BATCHES = (1, 4, 16, 64, 128, 256)
#: mean accept length of the seed's setting (T = 4, "acc len 3.13-3.22", :mod:`gdnlab.seed`)
DEFAULT_ACCEPT_LEN = 3.17
DEFAULT_PRESET = "qwen3.5-397b-a17b@tp4"
#: disjoint row sets of the largest batch that the call grid's default pool holds
CALL_POOL_ROW_SETS = 4
#: the two backend calls of the call grid (the kernel contract's decode and verify)
MODES = ("decode", "verify")
#: what a row times: one backend call, or one speculative step of a strategy
MEASURES = ("call", "step")
#: verify strategies of the step grid (:data:`gdnlab.strategies.STRATEGY_NAMES`)
STEP_STRATEGIES = STRATEGY_NAMES
#: ``amortised``: n calls on disjoint pool rows captured in one CUDA graph, time per call = sample / n;
#: ``single``: one call per CUDA-graph sample; ``eager``: one call per sample, no graph (host launch included)
TIMINGS = ("amortised", "single", "eager")


@dataclass
class SweepConfig:
    """What to sweep and how to time it.

    Attributes:
        backends: backend names of the call grid; ``None``: every available backend except
            ``reference`` (``reference`` alone when nothing else runs here, e.g. on CPU).
        batches: batch sizes B (rows per call) of the call grid.
        modes: ``decode`` and/or ``verify`` (empty: no call grid).
        draft_tokens: T values of verify points (each >= 2).
        buffer_scopes: intermediate buffers the call grid's verify calls write
            (:data:`VERIFY_BUFFER_SCOPES`: ``batch`` and/or ``pool``).
        strategies: verify strategies of the step grid (:data:`STEP_STRATEGIES`; empty: no step grid).
        strategy_backends: strategy backends (:func:`gdnlab.strategies.backend_names`); ``None``: every
            one with an available strategy except ``reference`` (``reference`` alone when none is).
        strategy_batches: batch sizes B of the step grid.
        strategy_draft_tokens: T values of the step grid (each >= 2).
        accept_lens: mean accept lengths (>= 1) the step grid draws accepted vectors with.
        accept_curve: an acceptance curve (a reported curve's name, :func:`gdnlab.acceptance_curves.reported_curves`,
            or a curve file): each T of the step grid is also measured at the curve's accept length at that T
            (``accept_lens`` may then be empty).
        steps_per_sample: consecutive steps captured in one timed CUDA graph (the fold of
            ``replay_ring`` happens every few steps; the time per step is sample / steps).
        check_steps: steps of the correctness check of each (backend, strategy, state dtype, T).
        check_batch: ``None`` (default): every step point is checked at its own batch, so ``correct``
            speaks for the row's B; a number: one check per group, at the largest batch of the grid the
            strategy supports up to it (faster; the rows' ``check_batch`` says which B was checked).
        copy_mib: MiB of the device-to-device copy that measures the copy bandwidth once per run
            (``None``: 1024 on CUDA, 16 on CPU).
        state_dtypes: pool dtypes, ``float32`` / ``bfloat16`` (both grids).
        presets: ``"NAME@tpN"`` strings or :class:`GDNShape` objects (e.g. a tiny test shape).
        timings: :data:`TIMINGS`; ``amortised`` is the default.
        max_calls: most calls in one amortised sample (fewer when the pool has fewer disjoint row
            sets, or verify buffers would pass ``buffer_budget_gb``).
        min_sample_us: an amortised sample holds enough calls to last at least this long (µs).
        buffer_budget_gb: GB of extra verify intermediate buffers an amortised point may allocate.
        l2_flush: flush L2 before each timed sample.
        warmup, repeats: untimed calls first, then timed samples (times are per call, µs).
        act_dtype: dtype of q, k, v, a, b and the output.
        pool_capacity: request slots of the pool (``None``: the largest batch of the grid it serves).
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"`` (``None``: CUDA when available).
        check: compare the first call of each call point with the reference backend, and run
            :func:`gdnlab.strategies.check.check_strategy` once per step-point group.
        seed: seeds the pool fill, the row placement and the inputs.
        engine: whose options the backends are made with (:func:`gdnlab.kernels.make_backend`).
        backend_options: per backend name, extra keyword options for its kernel-call backend.
        strategy_options: per strategy backend name, keyword options for
            :func:`gdnlab.strategies.get_strategy` (e.g. ``{"triton": {"bv": 16, "num_warps": 2}}``:
            the Triton strategies' tiling); step rows record them in ``backend_options``.
    """

    backends: Sequence[str] | None = None
    batches: Sequence[int] = DEFAULT_BATCHES
    modes: Sequence[str] = MODES
    draft_tokens: Sequence[int] = (2, 4, 8)
    buffer_scopes: Sequence[str] = VERIFY_BUFFER_SCOPES
    strategies: Sequence[str] = STEP_STRATEGIES
    strategy_backends: Sequence[str] | None = None
    strategy_batches: Sequence[int] = DEFAULT_STRATEGY_BATCHES
    strategy_draft_tokens: Sequence[int] = (4,)
    accept_lens: Sequence[float] = (DEFAULT_ACCEPT_LEN,)
    accept_curve: str | None = None
    steps_per_sample: int = 16
    check_steps: int = 8
    check_batch: int | None = None
    copy_mib: float | None = None
    state_dtypes: Sequence[str] = ("float32", "bfloat16")
    presets: Sequence[str | GDNShape] = (DEFAULT_PRESET,)
    timings: Sequence[str] = ("amortised",)
    max_calls: int = DEFAULT_MAX_CALLS
    min_sample_us: float = DEFAULT_MIN_SAMPLE_US
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
    strategy_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`~gdnlab.errors.InputError` naming the first bad setting."""
        for what, opts in (("backend_options", self.backend_options), ("strategy_options", self.strategy_options)):
            if not isinstance(opts, dict) or not all(isinstance(v, dict) for v in opts.values()):
                raise InputError(f"{what} must map a backend name to a dict of options, got {opts!r}")
        if not self.modes and not self.strategies:
            raise InputError("nothing to measure: modes and strategies are both empty")
        if self.modes:
            _positive_ints("batches", self.batches)
            _among("modes", self.modes, MODES)
        if "verify" in self.modes:
            if not self.draft_tokens or any(not _is_int(t) or t < 2 for t in self.draft_tokens):
                raise InputError(f"draft_tokens must be integers >= 2 for verify, got {list(self.draft_tokens)}")
            if set(self.buffer_scopes) & set(STEP_STRATEGIES):
                raise InputError(f"buffer_scopes must be among {', '.join(VERIFY_BUFFER_SCOPES)}; got "
                                 f"{list(self.buffer_scopes)} (verify strategies go in strategies)")
            _among("buffer_scopes", self.buffer_scopes, VERIFY_BUFFER_SCOPES)
        if self.strategies:
            self._validate_steps()
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
        largest = max([*(self.batches if self.modes else ()), *(self.strategy_batches if self.strategies else ())])
        if self.pool_capacity is not None and self.pool_capacity < largest:
            raise InputError(f"pool_capacity={self.pool_capacity} is smaller than the largest batch {largest}")
        if not self.presets:
            raise InputError("presets is empty")
        for p in self.presets:
            try:
                parse_preset(p)
            except InputError:
                raise
            except ValueError as exc:
                raise InputError(str(exc)) from None

    def _validate_steps(self) -> None:
        bad = [s for s in self.strategies if s not in STEP_STRATEGIES]
        if bad:
            hint = (" (full_cache_pool_scoped is the pool-sized buffer of the call grid: buffer_scopes pool)"
                    if "full_cache_pool_scoped" in bad else "")
            raise InputError(f"strategies must be among {', '.join(STEP_STRATEGIES)}; got {list(self.strategies)}"
                             f"{hint}")
        _positive_ints("strategy_batches", self.strategy_batches)
        if not self.strategy_draft_tokens or any(not _is_int(t) or t < 2 for t in self.strategy_draft_tokens):
            raise InputError(f"strategy_draft_tokens must be integers >= 2, got {list(self.strategy_draft_tokens)}")
        try:
            acc = [float(a) for a in self.accept_lens]
        except (TypeError, ValueError):
            acc = []
        if (not acc and self.accept_curve is None) or any(not a >= 1.0 or a != a or a == float("inf") for a in acc) \
                or any(isinstance(a, bool) for a in self.accept_lens):
            raise InputError(f"accept_lens must be numbers >= 1 (mean accepted tokens per step), got "
                             f"{list(self.accept_lens)}")
        if not _is_int(self.steps_per_sample) or self.steps_per_sample < 1:
            raise InputError(f"steps_per_sample must be an integer >= 1, got {self.steps_per_sample!r}")
        if not _is_int(self.check_steps) or self.check_steps < 1:
            raise InputError(f"check_steps must be an integer >= 1, got {self.check_steps!r}")
        if self.check_batch is not None and (not _is_int(self.check_batch) or self.check_batch < 1):
            raise InputError(f"check_batch must be an integer >= 1, got {self.check_batch!r}")
        if self.copy_mib is not None and not self.copy_mib > 0:
            raise InputError(f"copy_mib must be > 0 MiB, got {self.copy_mib!r}")
        if self.strategy_backends is not None:
            from ..strategies import backend_names
            bad = [b for b in self.strategy_backends if str(b).strip().lower() not in backend_names()]
            if bad or not self.strategy_backends:
                raise InputError(f"strategy_backends must be among {', '.join(backend_names())}; got "
                                 f"{list(self.strategy_backends)}")

    @property
    def capacity(self) -> int:
        """Request slots of the call grid's pool (the pool has one more row: slot 0). Default:
        :data:`CALL_POOL_ROW_SETS` x the largest batch, so even the largest batch's amortised sample
        has that many disjoint row sets (an engine's pool is larger than one batch)."""
        return self.pool_capacity or CALL_POOL_ROW_SETS * max(self.batches)

    @property
    def strategy_capacity(self) -> int:
        """Requests the step grid's pools serve (each holds ``slots_per_request`` rows per request)."""
        return self.pool_capacity or max(self.strategy_batches)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_ints(name: str, values: Sequence[int]) -> None:
    if not values or any(not _is_int(c) or c < 1 for c in values):
        raise InputError(f"{name} must be integers >= 1, got {list(values)}")


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
    strategy: str | None
    draft_tokens: int
    batch: int
    state_dtype: str
    timing: str
    l2_flush: bool
    act_dtype: str
    pool_slots: int
    measure: str = "call"
    accept_len: float | None = None
    #: a call point's intermediate buffer (``none`` for decode, ``batch``, ``pool``); ``None`` for a
    #: step point (its scratch is the strategy's)
    buffer_scope: str | None = None

    @property
    def preset(self) -> str:
        return self.shape.name.partition("@")[0]

    def key_row(self) -> dict:
        """The grid columns of this point's row."""
        return {"preset": self.preset, "tp": self.shape.tp, "backend": self.backend, "mode": self.mode,
                "strategy": self.strategy, "buffer_scope": self.buffer_scope, "draft_tokens": self.draft_tokens,
                "batch": self.batch,
                "state_dtype": self.state_dtype, "timing": self.timing, "l2_flush": self.l2_flush,
                "act_dtype": self.act_dtype, "pool_slots": self.pool_slots, "measure": self.measure,
                "accept_len": self.accept_len}

    def group(self) -> tuple:
        """Points sharing one strategy check: (preset, backend, strategy, state dtype, T)."""
        return (self.shape.name, self.backend, self.strategy, self.state_dtype, self.draft_tokens)

    def label(self) -> str:
        """Short text for a progress bar."""
        if self.measure == "step":
            return (f"{self.backend} step {self.strategy} T={self.draft_tokens} a={self.accept_len:g} "
                    f"{self.state_dtype} B={self.batch}")
        m = "decode" if self.mode == "decode" else f"verify T={self.draft_tokens} {self.buffer_scope} buffer"
        return f"{self.backend} {m} {self.state_dtype} {self.timing} B={self.batch}"


def default_backends() -> list[str]:
    """Every backend available here except the oracle (``reference``; ``["reference"]`` when none
    is: :func:`gdnlab.backends.timed_names`)."""
    from ..kernels import available_backends

    return timed_names(n for n, st in available_backends().items() if st.available)


def default_strategy_backends() -> list[str]:
    """Every strategy backend with an available strategy here except the oracle (``reference``;
    ``["reference"]`` when none is)."""
    from ..strategies import available_strategies

    return timed_names(dict.fromkeys(b for (_, b), st in available_strategies().items() if st.available))


def step_accept_lens(cfg: SweepConfig) -> list[tuple[int, float]]:
    """``(T, accept length)`` pairs of the step grid: every T with every ``accept_lens`` value (clipped
    to T) and, with ``accept_curve``, the curve's accept length at that T (4 decimals)."""
    from ..acceptance_curves import curve_by_name

    curve = curve_by_name(cfg.accept_curve) if cfg.accept_curve is not None else None
    out: list[tuple[int, float]] = []
    for t in cfg.strategy_draft_tokens:
        levels = [min(float(a), float(t)) for a in cfg.accept_lens]
        if curve is not None:
            levels.append(round(curve.mean(int(t)), 4))
        out += [(int(t), round(a, 9)) for a in dict.fromkeys(levels)]
    return out


def grid_points(cfg: SweepConfig) -> list[SweepPoint]:
    """Every point, in run order: the step grid (preset, state dtype, backend, strategy, T, accept
    length, batch), then the call grid (preset, state dtype, backend, mode, timing, batch). Steps come
    first: a run cut short keeps the strategy comparison (a call is one part of a step)."""
    cfg.validate()
    act = dtype_name(cfg.act_dtype)
    points: list[SweepPoint] = []
    if cfg.strategies:
        backends = [str(b).strip().lower() for b in (cfg.strategy_backends or default_strategy_backends())]
        cap = cfg.strategy_capacity
        seen: set[tuple] = set()
        per_t = step_accept_lens(cfg)
        for p, sd, be, name, (t, a), b in itertools.product(cfg.presets, cfg.state_dtypes, backends, cfg.strategies,
                                                            per_t, cfg.strategy_batches):
            per_req = strategy_class(name).slots_per_request(int(t))
            pt = SweepPoint(shape=parse_preset(p), backend=be, mode="step", strategy=name, draft_tokens=int(t),
                            batch=int(b), state_dtype=dtype_name(sd), timing="amortised",
                            l2_flush=bool(cfg.l2_flush), act_dtype=act, pool_slots=1 + cap * per_req,
                            measure="step", accept_len=a)
            if pt not in seen:                 # accept lengths clipped to T may coincide
                seen.add(pt)
                points.append(pt)
    if cfg.modes:
        backends = list(cfg.backends) if cfg.backends else default_backends()
        modes: list[tuple[str, int, str]] = []
        for m in cfg.modes:
            if m == "decode":
                modes.append(("decode", 1, "none"))
            else:
                modes += [("verify", t, s) for t in cfg.draft_tokens for s in cfg.buffer_scopes]
        points += [SweepPoint(shape=parse_preset(p), backend=str(be).strip().lower(), mode=mode, strategy=None,
                              draft_tokens=int(t), batch=int(b), state_dtype=dtype_name(sd), timing=timing,
                              l2_flush=bool(cfg.l2_flush), act_dtype=act, pool_slots=cfg.capacity + 1,
                              buffer_scope=scope)
                   for p, sd, be, (mode, t, scope), timing, b in itertools.product(
                       cfg.presets, cfg.state_dtypes, backends, modes, cfg.timings, cfg.batches)]
    return points
