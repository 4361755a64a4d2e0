"""The verify-strategy contract: how a speculative step keeps (or recomputes) GDN states.

A *strategy* decides where the states of the T verified tokens live and what "commit the accepted
prefix" costs. Every strategy, on every backend, answers one interface (shapes as in
:mod:`gdnlab.kernels.base`; B rows, T tokens per row, pool ``[P, HV, V, K]`` float32 or bfloat16)::

    s = get_strategy("recompute", backend="triton")
    scratch = s.allocate(pool, max_batch=B, T=T)          # strategy-owned buffers (allocated once)
    o = s.verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale=None)   # o [B,T,HV,V]
    s.commit(pool, indices, scratch, accepted)             # accepted [B] int, 1..T (bonus included)
    st = s.state(pool, indices, scratch)                   # [B,HV,V,K] float32 committed states
    s.scratch_bytes(shape, batch=B, T=T, pool_slots=P)     # bytes kept besides the pool

**One speculative step is ``verify`` then ``commit``** — for every strategy. Work a strategy does
only now and then (``replay_ring``'s fold of its ring into the checkpoint) happens inside
``verify`` as its own launch, only on rows that need it, decided on the device; so timing
``verify + commit`` over many steps with the right accept lengths measures the amortised cost.
:meth:`VerifyStrategy.fold` with ``force=True`` folds everything (e.g. before freeing a slot).

Semantics shared by all strategies:

* ``indices [B]`` int32/int64 names each row's request by its pool slot (slot 0 is reserved, see
  :class:`gdnlab.state.StatePool`); a negative index is a padding row: its outputs are zeros and no
  pool row, scratch entry or bookkeeping entry of any request is changed.
* Per-request bookkeeping (cursor, current slot, pending count) lives **on the device** in the
  scratch, indexed by pool slot, with one extra dummy entry at index ``P`` that padding rows
  write to — nothing in ``verify``/``commit`` reads a value back to the host when
  ``validate=False``. Rows may be reordered between steps (a request is its pool slot); batch-scoped
  buffers (``full_cache``'s intermediate, ``recompute``'s stash) live only from a verify to the
  commit of the same batch.
* ``commit`` must follow the ``verify`` of the same ``indices``; a verify without a commit leaves
  every request's committed state unchanged (the step is dropped).
* ``reset(scratch, slots)`` forgets the bookkeeping of slots handed to new requests (whose initial
  state the caller wrote into ``pool[slot]``).
* ``validate=True`` (default) checks arguments and reads small index tensors back to the host
  (:mod:`gdnlab.kernels.validation`); pass ``validate=False`` in timed loops. With
  ``validate=False``, ``verify``, ``commit`` and ``fold`` are CUDA-graph capturable: no host
  tensor is built or copied, nothing is read back, no allocation is sized by data
  (:func:`gdnlab.strategies.host_sync.forbid_host_sync` checks this on any device).
* Pool slots a strategy's kernels may overwrite besides its requests' own (padding rows redirected
  to a sacrificial slot) are declared by :meth:`VerifyStrategy.scratch_slots_for`; default none.

**One step over many layers, as an engine runs it** (:class:`StepPlan`): the per-request metadata
of a step (bookkeeping indices, cursors, slot lists, accepted counts) is the same for every layer,
so an engine computes it once per step. Allocate the layers' scratches with
``allocate(pool_l, B, T, share=scratch_0)`` (their bookkeeping tensors are then one set), make one
``plan = StepPlan()`` per step and pass it to every layer's ``verify`` and ``commit``: the first
layer computes each bookkeeping value and the others reuse it; bookkeeping writes run once per
step. Without a plan every call computes its own (a step of one layer). A plan spans one step of
layers that share bookkeeping; using it with a scratch that does not share raises ``ValueError``.

**The class is the one home of a strategy's facts** (read through :mod:`gdnlab.strategies.registry`,
never by comparing names elsewhere): ``name``, ``summary``, ``color`` (every figure), ``launches``
and ``bookkeeping_ops`` per phase, ``main_kernel_phases`` (the phases its main kernel serves: how a
trace is split), ``separable_verify`` (its verify, run without the commit, is a steady-state
verify: timed alone by the sweep), ``folds`` (it has an amortised fold), the byte formulas
(:meth:`row_bytes` per live row and phase, :meth:`step_bytes`, :meth:`scratch_formula`,
:meth:`memory_formula`, :meth:`slots_per_request`), ``engine_runs`` (which released engines run it
and with which flags, :class:`gdnlab.engines.EngineRun`) and :meth:`supports` (configurations a
backend's class cannot run).

Backend modules (``gdnlab.strategies.reference``, ``.triton``, ``.flashinfer``: the ``strategies``
entry of :mod:`gdnlab.backends`) follow one small contract: a module exposes
``STRATEGIES: dict[str, type[VerifyStrategy]]`` (name -> class, the class's ``backend`` attribute
names the module's backend) and ``availability() -> (bool, reason)``. A class may add its own
``availability()`` classmethod for conditions of that strategy alone.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from ..engines import EngineRun
from ..kernels.validation import GDNCallDims, check_gdn_inputs, check_indices
from ..roofline import RowBytes, StrategyBytes, assemble_step_bytes, dtype_size, entry_bytes, gdn_bytes
from ..shapes import GDNShape, dtype_from_name, dtype_name
from .ops import RecurrentOps, Replay

__all__ = ["VerifyStrategy", "StrategyStatus", "Scratch", "ByteUnits", "StepPlan", "bookkeeping_index"]


@dataclass(frozen=True)
class ByteUnits:
    """The sizes a strategy's byte formula is written in (bytes, one row of one layer): ``S`` one
    state ``[HV, V, K]`` in the state dtype, ``Si`` the same in the intermediate dtype, ``e`` one
    stash/ring entry ``u [HV, V] + k [HV, K] + g [HV]`` in the stash dtype (:func:`gdnlab.roofline.entry_bytes`)."""

    S: int
    Si: int
    e: int

    @classmethod
    def of(cls, shape: GDNShape, state_dtype: torch.dtype | str | None = None,
           intermediate_dtype: torch.dtype | str | None = None,
           stash_dtype: torch.dtype | str | None = None) -> ByteUnits:
        sd = shape.state_dtype if state_dtype is None else state_dtype
        n = shape.HV * shape.V * shape.K
        return cls(n * dtype_size(sd), n * dtype_size(intermediate_dtype or sd), entry_bytes(shape, stash_dtype))


@dataclass(frozen=True)
class StrategyStatus:
    """Whether strategy ``name`` on ``backend`` can run here and, if not, why."""

    name: str
    backend: str
    available: bool
    reason: str

    def __str__(self) -> str:
        return (f"{self.name}/{self.backend}: {'available' if self.available else 'unavailable'} — "
                f"{self.reason}")


@dataclass
class Scratch:
    """Strategy-owned buffers of one allocation; subclasses add their tensors as fields.

    ``T`` draft tokens, ``max_batch`` rows, ``pool_slots`` = P rows of the pool it was allocated
    for, ``state_dtype`` the pool's dtype. :meth:`nbytes` sums every tensor field.
    """

    T: int
    max_batch: int
    pool_slots: int
    state_dtype: torch.dtype
    device: torch.device

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def nbytes(self) -> int:
        """Bytes of every tensor this scratch holds."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


class StepPlan:
    """Per-request metadata of one speculative step, computed once and shared by every layer.

    Strategies read metadata through :meth:`memo` (computed by the first layer that needs it, reused
    by the others) and write bookkeeping through :meth:`once` (run by the first layer only). All of
    it happens on the device and is recorded like any other op in a CUDA graph: a graph of a whole
    step holds one set of bookkeeping kernels instead of one per layer. A plan belongs to one step
    (make a new one for the next step) and to scratches that share their bookkeeping tensors
    (``allocate(..., share=...)``); :meth:`bind` checks the latter on the host (no device read).
    """

    __slots__ = ("_values", "_done", "_book")

    def __init__(self) -> None:
        self._values: dict[str, object] = {}
        self._done: set[str] = set()
        self._book: int | None = None

    def memo(self, key: str, fn):
        """``fn()`` the first time ``key`` is asked for in this step, the same value afterwards."""
        if key not in self._values:
            self._values[key] = fn()
        return self._values[key]

    def once(self, key: str, fn) -> None:
        """Run ``fn()`` (a bookkeeping write) the first time ``key`` is seen in this step only."""
        if key not in self._done:
            self._done.add(key)
            fn()

    def bind(self, scratch: Scratch, fields: tuple[str, ...]) -> None:
        """Check that ``scratch`` holds the same bookkeeping tensors (``fields``) as the scratches the
        plan has served so far; ``ValueError`` otherwise (its bookkeeping would not be updated)."""
        tensors = [getattr(scratch, f, None) for f in fields]
        key = hash(tuple(t.data_ptr() if isinstance(t, torch.Tensor) else id(t) for t in tensors))
        if self._book is None:
            self._book = key
        elif key != self._book:
            raise ValueError("a step plan serves layers whose scratches share their bookkeeping: allocate "
                             "them with allocate(..., share=first_scratch), or make one plan per layer")


def bookkeeping_index(indices: torch.Tensor, pool_slots: int) -> torch.Tensor:
    """``indices`` as int64 with padding rows mapped to the dummy entry ``P`` of a ``[P+1]`` table."""
    idx = indices.long()
    return torch.where(idx >= 0, idx, torch.full_like(idx, pool_slots))


class VerifyStrategy(ABC):
    """One verify strategy on one backend. Subclasses set :attr:`name`, :attr:`backend` and
    implement :meth:`_allocate`, :meth:`_verify`, :meth:`_commit` (and :meth:`_state` where the
    committed state is not simply ``pool[indices]``).

    ``ops`` is the backend's recurrent primitive (:class:`gdnlab.strategies.ops.RecurrentOps`):
    the strategy logic is written once and each backend supplies the kernels.
    """

    name: ClassVar[str] = "base"
    backend: ClassVar[str] = "base"
    #: one line saying where the T states live and what commit does
    summary: ClassVar[str] = ""
    #: its colour in every figure (hex)
    color: ClassVar[str] = "#7f7f7f"
    #: the phases its main (GDN) kernel serves; a commit-only scatter kernel is recognised by name
    main_kernel_phases: ClassVar[tuple[str, ...]] = ("verify",)
    #: its verify, run without the commit, is a steady-state verify (the sweep times it alone)
    separable_verify: ClassVar[bool] = True
    #: it has an amortised fold of pending work into the pool (timed as the rest of the step)
    folds: ClassVar[bool] = False
    #: the released engines that run this strategy and the flags that select it
    engine_runs: ClassVar[tuple[EngineRun, ...]] = ()
    #: scratch fields that hold per-request bookkeeping (cursors, slot tables): shared by the layers of
    #: one model (``allocate(..., share=...)``) and written once per step under a :class:`StepPlan`
    bookkeeping_fields: ClassVar[tuple[str, ...]] = ()
    #: kernel launches per step by phase (custom kernels; tiny bookkeeping torch ops not counted)
    launches: ClassVar[dict[str, int]] = {}
    #: bookkeeping torch ops per step by phase (elementwise gathers/scatters on [B] int tensors)
    bookkeeping_ops: ClassVar[dict[str, int]] = {}

    #: pool slots this strategy's kernels may overwrite for padding rows (sacrificial slots that hold no
    #: request, e.g. the reserved slot 0); :meth:`scratch_slots_for` says for which state dtypes
    scratch_slots: ClassVar[tuple[int, ...]] = ()
    #: True when a verify replays stashed tokens with *its own* ``A_log`` / ``dt_bias``: the gates must
    #: stay the same from one step to the next (a layer's constants) or be preceded by ``fold(force=True)``
    constant_gates: ClassVar[bool] = False

    #: builds the backend's primitive when no ``ops`` is passed (set by each backend module)
    make_ops: ClassVar[type[RecurrentOps] | None] = None

    def __init__(self, ops: RecurrentOps | None = None) -> None:
        if ops is None:
            if self.make_ops is None:
                raise TypeError(f"{type(self).__name__} has no backend: pass ops= or use get_strategy()")
            ops = self.make_ops()
        self.ops = ops

    # ------------------------------------------------------------------ public contract
    def allocate(self, pool: torch.Tensor, max_batch: int, T: int, *, share: Scratch | None = None) -> Scratch:
        """Allocate the strategy's buffers for batches of up to ``max_batch`` rows of ``T`` tokens
        on ``pool`` (``[P, HV, V, K]``); everything starts empty (no request has pending work).
        ``share``: another layer's scratch of this strategy whose per-request bookkeeping
        (:attr:`bookkeeping_fields`) this one uses too (one model's layers; see :class:`StepPlan`)."""
        if not isinstance(pool, torch.Tensor) or pool.dim() != 4:
            raise ValueError("pool must be a 4-D tensor [P, HV, V, K]")
        if pool.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"pool has dtype {pool.dtype}, expected float32 or bfloat16")
        if int(max_batch) < 1 or int(T) < 1:
            raise ValueError(f"need max_batch >= 1 and T >= 1, got max_batch={max_batch}, T={T}")
        scratch = self._allocate(pool, int(max_batch), int(T))
        if share is not None:
            self._share(scratch, share)
        return scratch

    def _share(self, scratch: Scratch, share: Scratch) -> None:
        if type(share) is not type(scratch) or (share.T, share.max_batch, share.pool_slots) != (
                scratch.T, scratch.max_batch, scratch.pool_slots):
            raise ValueError(f"share= must be a scratch of {self.name} allocated for the same T, max_batch and "
                             "pool size")
        for f in self.bookkeeping_fields:
            setattr(scratch, f, getattr(share, f))

    def verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch: Scratch,
               scale: float | None = None, *, validate: bool = True, plan: StepPlan | None = None) -> torch.Tensor:
        """Run the T tokens of every row from its committed state; return ``o [B,T,HV,V]`` in
        q's dtype. No request's committed state changes (pending work may be folded in first).
        ``plan``: the step's :class:`StepPlan` shared by every layer (default: this call's own)."""
        dims, scale = self._check_verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, validate)
        o = torch.empty((dims.B, dims.T, dims.HV, dims.V), dtype=q.dtype, device=q.device)
        with self._planned(plan, scratch):
            self._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o)
        return o

    def _check_verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch: Scratch, scale: float | None,
                      validate: bool):
        """The checks every verify runs first: ``(dims, scale)`` (scale defaults to ``K ** -0.5``)."""
        dims = check_gdn_inputs(q, k, v, a, b, A_log, dt_bias, pool, indices, single_token=False,
                                validate_values=validate)
        self._check_scratch(scratch, pool, dims.B, dims.T)
        if validate:
            self._check_slots(indices, scratch)
        return dims, (float(dims.K) ** -0.5 if scale is None else float(scale))

    def commit(self, pool: torch.Tensor, indices: torch.Tensor, scratch: Scratch, accepted: torch.Tensor,
               *, validate: bool = True, plan: StepPlan | None = None) -> None:
        """Keep the first ``accepted[i]`` (1..T) tokens of the last verify of row ``i``. ``plan``:
        the step's :class:`StepPlan` (the one its verify had)."""
        B = self._check_commit(pool, indices, scratch, accepted, validate)
        if B:
            with self._planned(plan, scratch):
                self._commit(pool, indices, scratch, accepted)

    @contextmanager
    def _planned(self, plan: StepPlan | None, scratch: Scratch):
        """Make ``plan`` (or a plan of this call alone) the one :meth:`_memo` and :meth:`_once` use."""
        if plan is not None:
            plan.bind(scratch, self.bookkeeping_fields)
        self._plan = plan if plan is not None else StepPlan()
        try:
            yield
        finally:
            self._plan = None

    def _memo(self, key: str, fn):
        """A per-request value of this step (:meth:`StepPlan.memo`); outside a step, computed afresh."""
        plan = getattr(self, "_plan", None)
        return fn() if plan is None else plan.memo(key, fn)

    def _once(self, key: str, fn) -> None:
        """A bookkeeping write, once per step (:meth:`StepPlan.once`); outside a step, run now."""
        plan = getattr(self, "_plan", None)
        if plan is None:
            fn()
        else:
            plan.once(key, fn)

    def _bk(self, indices: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """:func:`bookkeeping_index` of this step's rows (computed once per step)."""
        return self._memo("bk", lambda: bookkeeping_index(indices, scratch.pool_slots))

    def state(self, pool: torch.Tensor, indices: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """Each row's committed state, materialised as float32 ``[B, HV, V, K]`` (zeros for padding
        rows). Pending replays are applied to a copy: nothing the strategy keeps is changed."""
        if not isinstance(indices, torch.Tensor) or indices.dim() != 1:
            raise ValueError("indices must be a 1-D tensor [B]")
        self._check_scratch(scratch, pool, None, scratch.T)
        out = self._state(pool, indices, scratch)
        return torch.where((indices >= 0).view(-1, 1, 1, 1), out, torch.zeros_like(out))

    def fold(self, pool: torch.Tensor, indices: torch.Tensor, scratch: Scratch, force: bool = False) -> None:
        """Fold pending work into the pool rows of ``indices``: rows that need it (``force=False``)
        or every row with pending work (``force=True``). No-op for strategies without pending work.
        ``indices`` may list more rows than ``max_batch`` (e.g. every live request)."""
        self._check_scratch(scratch, pool, None, scratch.T)

    def reset(self, scratch: Scratch, slots: torch.Tensor) -> None:
        """Forget the bookkeeping of pool ``slots`` (new requests; their state is ``pool[slot]``).
        Strategies without per-request bookkeeping have nothing to forget."""
        return None

    def scratch_bytes(self, shape: GDNShape, batch: int, T: int, pool_slots: int,
                      state_dtype: torch.dtype | str | None = None) -> int:
        """Bytes this strategy keeps besides the pool for ``batch`` rows, ``T`` tokens and a pool of
        ``pool_slots`` rows (:meth:`scratch_formula` with this instance's options)."""
        return self.scratch_formula(shape, batch, T, pool_slots, state_dtype=state_dtype, **self.roofline_options())

    def bytes_moved(self, shape: GDNShape, batch: int, T: int, accept_len: float, *,
                    state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                    padding_rows: int = 0) -> StrategyBytes:
        """Bytes one step (verify + commit + amortised fold) moves (:meth:`step_bytes` with this
        instance's options)."""
        return self.step_bytes(shape, batch, T, accept_len, state_dtype=state_dtype, act_dtype=act_dtype,
                               padding_rows=padding_rows, **self.roofline_options())

    def scratch_slots_for(self, state_dtype: torch.dtype | str) -> tuple[int, ...]:
        """Pool slots a step on a ``state_dtype`` pool may overwrite besides its requests' own slots
        (their contents are garbage afterwards; they must hold no request): :attr:`scratch_slots`."""
        return tuple(self.scratch_slots)

    # ------------------------------------------------------------------ facts: byte formulas
    @classmethod
    def slots_per_request(cls, T: int) -> int:
        """Pool rows one request occupies (1; ``token_slots``: 1 + T)."""
        return 1

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, **options) -> dict[str, RowBytes]:
        """Bytes one live row moves per phase (``"verify"``, ``"commit"``, ``"fold"``; a phase left
        out moves nothing) in one step of ``T`` tokens keeping ``accept_len`` on average, in the
        units ``u``. ``options``: the strategy's byte options (``ring_slots``, ``flush_min``)."""
        raise NotImplementedError(f"{cls.__name__} states no byte formula")

    @classmethod
    def scratch_formula(cls, shape: GDNShape, batch: int, T: int, pool_slots: int, *,
                        state_dtype: torch.dtype | str | None = None,
                        intermediate_dtype: torch.dtype | str | None = None,
                        stash_dtype: torch.dtype | str | None = None, ring_slots: int | None = None,
                        flush_min: int | None = None) -> int:
        """Bytes the strategy allocates besides the pool for batches of ``batch`` rows of ``T`` tokens
        on a pool of ``pool_slots`` = P rows (slot 0 included)."""
        if batch < 1 or T < 1 or pool_slots < 1:
            raise ValueError(f"need batch, draft_tokens, pool_slots >= 1; got {batch}, {T}, {pool_slots}")
        u = ByteUnits.of(shape, state_dtype, intermediate_dtype, stash_dtype)
        return int(cls._scratch(u, batch, T, pool_slots, ring_slots=ring_slots))

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        raise NotImplementedError(f"{cls.__name__} states no scratch formula")

    @classmethod
    def step_bytes(cls, shape: GDNShape, batch: int, draft_tokens: int, accept_len: float, *,
                   state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                   intermediate_dtype: torch.dtype | str | None = None,
                   stash_dtype: torch.dtype | str | None = None, ring_slots: int | None = None,
                   flush_min: int | None = None, padding_rows: int = 0) -> StrategyBytes:
        """Minimum bytes one step (verify + commit + amortised fold) moves for ``batch`` rows
        (``padding_rows`` of them padding) of ``draft_tokens`` = T tokens keeping ``accept_len`` = a
        on average: the inputs and output of one verify call (:func:`gdnlab.roofline.gdn_bytes`, plus
        ``accepted`` int32) and :meth:`row_bytes` per live row."""
        B, T, a = batch, draft_tokens, float(accept_len)
        if B < 0 or T < 1 or not 0 <= padding_rows <= B or not 1 <= a <= T:
            raise ValueError(f"need batch >= 0, draft_tokens >= 1, 0 <= padding_rows <= batch, 1 <= accept_len <= "
                             f"draft_tokens; got batch={B}, draft_tokens={T}, padding_rows={padding_rows}, "
                             f"accept_len={accept_len}")
        sd = shape.state_dtype if state_dtype is None else state_dtype
        base = gdn_bytes(shape, B, T, mode="verify", state_dtype=sd, act_dtype=act_dtype, padding_rows=padding_rows)
        rows = cls.row_bytes(ByteUnits.of(shape, sd, intermediate_dtype, stash_dtype), T, a,
                             ring_slots=ring_slots, flush_min=flush_min)
        return assemble_step_bytes(base.inputs + B * 4, base.output, B - padding_rows, rows)

    @classmethod
    def memory_formula(cls, shape: GDNShape, requests: int, batch: int, T: int, *,
                       state_dtype: torch.dtype | str | None = None, **options) -> int:
        """Device memory (bytes, one layer) to serve ``requests`` concurrent requests: the pool (slot 0
        plus :meth:`slots_per_request` rows per request) plus :meth:`scratch_formula`."""
        P = 1 + int(requests) * cls.slots_per_request(T)
        sd = shape.state_dtype if state_dtype is None else state_dtype
        return P * ByteUnits.of(shape, sd).S + cls.scratch_formula(shape, batch, T, P, state_dtype=sd, **options)

    # ------------------------------------------------------------------ facts: constraints
    @classmethod
    def supports(cls, state_dtype: torch.dtype | str | None = None, T: int | None = None,
                 batch: int | None = None, sm: int | str | tuple[int, int] | None = None, *,
                 HV: int | None = None, K: int | None = None, V: int | None = None,
                 act_dtype: torch.dtype | str | None = None) -> tuple[bool, str]:
        """Whether this class runs that configuration (``None``: not asked), and why not. The
        strategy logic runs any; a backend's class narrows it (FlashInfer's kernels)."""
        if state_dtype is not None and dtype_from_name(state_dtype) not in (torch.float32, torch.bfloat16):
            return False, f"state dtype {dtype_name(dtype_from_name(state_dtype))} is not float32 or bfloat16"
        return True, "ok"

    def roofline_options(self) -> dict:
        """Options of this instance that change its byte counts (dtypes, ring size)."""
        return {}

    @property
    def kernels_per_step(self) -> dict[str, int]:
        """Kernel launches per step by phase, plus ``"total"``."""
        d = dict(self.launches)
        d["total"] = sum(self.launches.values())
        return d

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r}, ops={self.ops.name!r})"

    # ------------------------------------------------------------------ helpers for subclasses
    def _check_scratch(self, scratch: Scratch, pool: torch.Tensor, B: int | None, T: int) -> None:
        if not isinstance(scratch, Scratch):
            raise ValueError(f"scratch must come from {self.name}.allocate(), got {type(scratch).__name__}")
        if not isinstance(pool, torch.Tensor) or pool.dim() != 4:
            raise ValueError("pool must be a 4-D tensor [P, HV, V, K]")
        if B is not None and B > scratch.max_batch:
            raise ValueError(f"batch of {B} rows exceeds the scratch's max_batch={scratch.max_batch}")
        if T != scratch.T:
            raise ValueError(f"{T} draft tokens, but the scratch was allocated for T={scratch.T}")
        if pool.shape[0] != scratch.pool_slots or pool.dtype != scratch.state_dtype:
            raise ValueError(f"pool {tuple(pool.shape)} {pool.dtype} is not the pool the scratch was allocated "
                             f"for ({scratch.pool_slots} slots, {scratch.state_dtype})")
        if pool.device != scratch.device:
            raise ValueError(f"pool is on {pool.device}, the scratch on {scratch.device}")

    def _check_slots(self, indices: torch.Tensor, scratch: Scratch) -> None:
        """Extra index checks of a strategy (e.g. only base slots); default: none."""
        return None

    def _check_commit(self, pool, indices, scratch, accepted, validate: bool) -> int:
        if not isinstance(indices, torch.Tensor) or indices.dim() != 1:
            raise ValueError("indices must be a 1-D tensor [B]")
        B = indices.shape[0]
        self._check_scratch(scratch, pool, B, scratch.T)
        if not isinstance(accepted, torch.Tensor) or tuple(accepted.shape) != (B,):
            got = tuple(accepted.shape) if isinstance(accepted, torch.Tensor) else type(accepted).__name__
            raise ValueError(f"accepted has shape {got}, expected [B] = ({B},)")
        for name, t in (("indices", indices), ("accepted", accepted)):
            if t.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"{name} has dtype {t.dtype}, expected int32 or int64")
            if t.device != pool.device:
                raise ValueError(f"{name} is on {t.device}, but pool is on {pool.device}")
        if validate:
            check_indices(indices, pool.shape[0])
            self._check_slots(indices, scratch)
            live = indices.detach().cpu() >= 0
            acc = accepted.detach().cpu()[live]
            if acc.numel() and (int(acc.min()) < 1 or int(acc.max()) > scratch.T):
                raise ValueError(f"accepted lengths must be in 1..T={scratch.T} for live rows, got min "
                                 f"{int(acc.min())}, max {int(acc.max())}")
        return B

    def _materialise(self, pool: torch.Tensor, indices: torch.Tensor, replay: Replay | None,
                     src: torch.Tensor | None = None) -> torch.Tensor:
        """``pool[src]`` (default ``indices``) with ``replay`` applied, as float32 ``[B,HV,V,K]``,
        computed on a copy with the backend's own replay (the stored value, rounded to the pool dtype)."""
        src = indices if src is None else src
        B = src.shape[0]
        tmp = torch.zeros((B + 1, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)
        s = src.long()
        tmp[1:] = pool[s.clamp(min=0)]
        rows = torch.arange(1, B + 1, device=pool.device, dtype=torch.int32)
        tmp_src = torch.where(s >= 0, rows, torch.full_like(rows, -1))
        if replay is not None:
            self.ops.recurrent(tmp, tmp_src, replay=replay)
        return tmp[1:].float()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _allocate(self, pool: torch.Tensor, max_batch: int, T: int) -> Scratch: ...

    @abstractmethod
    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale: float,
                dims: GDNCallDims, o: torch.Tensor) -> None: ...

    @abstractmethod
    def _commit(self, pool, indices, scratch, accepted) -> None: ...

    def _state(self, pool: torch.Tensor, indices: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        return pool[indices.long().clamp(min=0)].float()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Conditions of this strategy alone (the backend module's are checked first)."""
        return True, "ok"


def _dtype_opt(value: torch.dtype | str | None, what: str,
               allowed: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16)) -> torch.dtype | None:
    if value is None:
        return None
    dt = dtype_from_name(value)
    if dt not in allowed:
        raise ValueError(f"{what} must be one of {[str(d) for d in allowed]}, got {dt}")
    return dt
