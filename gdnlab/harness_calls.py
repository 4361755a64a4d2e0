"""Calls on disjoint pool rows: what :func:`gdnlab.instrument.time_calls` captures in one CUDA graph
so that each call reads state that is not in L2 and the per-call time is amortised over ``n`` calls,
as the layers of an engine's step run back to back.

* :class:`RowSets` — disjoint sets of ``batch`` rows of a state pool (slot 0 never handed out), in a
  seeded scattered order (a sweep's shared pool) or in order (a fresh pool);
* :func:`disjoint_calls` — *the* factory: ``make_calls(n)`` whose call ``j`` runs on row set ``j``
  (or ``j % count``, rotating, for a strategy's consecutive steps); the sweep builds its kernel calls
  and its strategy steps with it, and so do the benchmarks and the GPU scripts;
* :class:`KernelCalls` — one backend's decode (T = 1) or verify call of ``batch`` rows on given rows,
  a verify with its own intermediate buffer per call (batch-scoped, or pool-sized: the buffer SGLang
  handed FlashInfer before PR #23273);
* :func:`kernel_calls` — ``make_calls(n)`` of one backend's calls on a fresh randomised pool of
  ``n * batch + 1`` rows.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import InputError, UnavailableError
from .inputs import make_inputs
from .instrument import resolve_device
from .kernels.base import GDNBackend
from .shapes import GDNShape, dtype_from_name, dtype_name
from .state import StatePool

__all__ = ["RowSets", "disjoint_calls", "KernelCalls", "kernel_calls", "MakeCalls", "VERIFY_BUFFER_SCOPES"]

#: ``make_calls(n)`` for :func:`gdnlab.instrument.time_calls`: ``n`` zero-argument calls
MakeCalls = Callable[[int], list[Callable[[], object]]]
#: intermediate buffers a verify call can be handed (a decode has none: scope ``none``)
VERIFY_BUFFER_SCOPES = ("batch", "pool")


@dataclass
class RowSets:
    """``count`` disjoint sets of ``batch`` pool rows: set ``j`` is ``order[j*batch:(j+1)*batch]``
    (int32 on ``device``); with ``rotate``, set ``j`` is set ``j % count``.

    Attributes:
        order: pool rows (int64, CPU) in the order they are handed out; never slot 0.
        batch: rows per set (B).
        device: where the index tensors go.
        count: sets handed out (default, and at most: as many as ``order`` holds).
        rotate: hand the sets out again (consecutive steps of the same requests).
    """

    order: torch.Tensor
    batch: int
    device: torch.device
    count: int | None = None
    rotate: bool = False
    _sets: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        most = int(self.order.numel()) // self.batch
        if most < 1:
            raise InputError(f"a pool with {int(self.order.numel())} rows to hand out holds no set of "
                             f"batch={self.batch} rows")
        self.count = most if self.count is None else max(1, min(int(self.count), most))

    @classmethod
    def scattered(cls, rows: int, batch: int, seed: int, device: torch.device, **kw: Any) -> RowSets:
        """Rows ``1..rows`` in a permutation seeded by ``seed`` (live slots scattered over the pool,
        as an engine's are)."""
        gen = torch.Generator().manual_seed(seed)
        return cls(torch.randperm(rows, generator=gen) + 1, batch, device, **kw)

    @classmethod
    def in_order(cls, rows: int, batch: int, device: torch.device, **kw: Any) -> RowSets:
        """Rows ``1..rows`` in order: set ``j`` is rows ``1 + j*batch .. (j+1)*batch``."""
        return cls(torch.arange(1, rows + 1), batch, device, **kw)

    def __len__(self) -> int:
        return int(self.count)

    def __getitem__(self, j: int) -> torch.Tensor:
        k = j % len(self) if self.rotate else j
        if not 0 <= k < len(self):
            raise IndexError(f"row set {j} of {len(self)}")
        if k not in self._sets:
            self._sets[k] = self.order[k * self.batch:(k + 1) * self.batch].to(torch.int32).to(self.device)
        return self._sets[k]


def disjoint_calls(call: Callable[[torch.Tensor, int], Callable[[], object]], rows: RowSets) -> MakeCalls:
    """``make_calls(n)`` for :func:`gdnlab.instrument.time_calls`: ``[call(rows[j], j) for j < n]``.

    ``call(rows_j, j)`` returns call ``j``'s zero-argument closure (``rows_j``: int32 ``[batch]``).
    Without ``rows.rotate``, asking for more calls than ``rows`` has disjoint sets raises ``ValueError``."""

    def make_calls(n: int) -> list[Callable[[], object]]:
        if not isinstance(n, int) or n < 1:
            raise InputError(f"make_calls needs n >= 1 calls, got {n!r}")
        if not rows.rotate and n > len(rows):
            raise ValueError(f"asked for {n} calls on disjoint pool rows, the pool holds {len(rows)}")
        return [call(rows[j], j) for j in range(n)]

    return make_calls


class KernelCalls:
    """One backend's decode (``draft_tokens == 1``) or verify call of ``batch`` rows of ``pool`` with
    the inputs ``args``; a :func:`disjoint_calls` ``call`` (each call gets its own verify buffer).

    ``buffer_scope`` (verify; a decode ignores it): ``"batch"`` — a ``[B, T, HV, V, K]`` buffer from the backend's
    ``new_intermediate`` (or zeros of ``intermediate_dtype``); ``"pool"`` — a pool-sized
    ``[pool rows, T, HV, V, K]`` buffer filled with NaN (rows the kernel must not touch), handed to
    the backend's ``verify_pool_scoped`` when it has one (FlashInfer: unsliced), else to ``verify``.
    """

    def __init__(self, backend: GDNBackend, shape: GDNShape, pool: torch.Tensor, args: tuple, *, draft_tokens: int,
                 buffer_scope: str = "batch", intermediate_dtype: torch.dtype | str | None = None) -> None:
        self.backend, self.shape, self.pool, self.args = backend, shape, pool, args
        self.T, self.scope = int(draft_tokens), buffer_scope
        self.op = "decode" if self.T == 1 else "verify"
        if self.op == "verify" and buffer_scope not in VERIFY_BUFFER_SCOPES:
            raise InputError(f"buffer_scope of a verify must be one of {VERIFY_BUFFER_SCOPES}, got {buffer_scope!r}")
        self.intermediate_dtype = None if intermediate_dtype is None else dtype_from_name(intermediate_dtype)
        hook = getattr(backend, "verify_pool_scoped", None)
        self._verify = hook if (buffer_scope == "pool" and callable(hook)) else backend.verify
        name = getattr(backend, "name", "?")
        how = "verify_pool_scoped" if self._verify is hook else "verify"
        #: what one call is, in words (a sweep row's ``intermediate_call``)
        self.description = (f"{name}.decode" if self.op == "decode" else
                            f"{name}.{how}(intermediate={'batch' if buffer_scope == 'batch' else 'pool-sized'})")

    def buffer(self) -> torch.Tensor | None:
        """A new intermediate buffer of the scope (``None`` for decode)."""
        if self.op == "decode":
            return None
        P, sh = self.pool.shape[0], self.shape
        dims = sh.call_dims(self.args[0].shape[0], self.T, P)
        if self.scope == "batch":
            if self.intermediate_dtype is None:
                return self.backend.new_intermediate(dims, self.pool)
            return torch.zeros((dims.B, self.T, *sh.state_shape), dtype=self.intermediate_dtype,
                               device=self.pool.device)
        if self.intermediate_dtype is None:
            self.intermediate_dtype = self.backend.new_intermediate(dims, self.pool).dtype
        return torch.full((P, self.T, *sh.state_shape), float("nan"), dtype=self.intermediate_dtype,
                          device=self.pool.device)

    def __call__(self, rows: torch.Tensor, j: int = 0, *, validate: bool = False,
                 buffer: torch.Tensor | None = None) -> Callable[[], object]:
        """The call on pool rows ``rows`` (verify: into ``buffer``, default a new one)."""
        be, args, pool = self.backend, self.args, self.pool
        if self.op == "decode":
            return lambda: be.decode(*args, pool, rows, validate=validate)
        buf = self.buffer() if buffer is None else buffer
        return lambda: self._verify(*args, pool, rows, intermediate=buf, validate=validate)


def kernel_calls(backend: GDNBackend, shape: GDNShape, *, batch: int, draft_tokens: int = 1,
                 state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                 device: torch.device | str | None = None, seed: int = 0,
                 intermediate_dtype: torch.dtype | str | None = None, check: bool = True) -> MakeCalls:
    """``make_calls(n)`` of one decode (``draft_tokens = 1``) or verify call of ``batch`` rows per
    closure (:class:`KernelCalls`, batch-scoped buffers), call ``j`` on pool rows
    ``1 + j*batch .. (j+1)*batch`` of a fresh pool of ``n*batch + 1`` rows (slot 0 reserved) filled by
    :meth:`StatePool.randomize_`.

    The closures run with ``validate=False`` (capturable); with ``check`` the factory runs one call
    with ``validate=True`` the first time it is used (this is where a JIT compile happens). ``make_calls``
    keeps its last pool alive only while its closures are referenced.
    """
    if not isinstance(batch, int) or batch < 1 or not isinstance(draft_tokens, int) or draft_tokens < 1:
        raise InputError(f"need batch >= 1 and draft_tokens >= 1, got batch={batch!r}, draft_tokens={draft_tokens!r}")
    dev = resolve_device(device)
    sd = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
    op = "decode" if draft_tokens == 1 else "verify"
    allowed = backend.decode_state_dtypes if op == "decode" else backend.verify_state_dtypes
    if sd not in allowed:
        raise UnavailableError(f"state_dtype {dtype_name(sd)} is not supported by {backend.name} {op}; "
                               f"supported: {[dtype_name(d) for d in allowed]}")
    args = make_inputs(shape, batch, draft_tokens, act_dtype=act_dtype, device=dev, seed=seed).args()
    checked = {"done": not check}

    def make_calls(n: int) -> list[Callable[[], object]]:
        if not isinstance(n, int) or n < 1:
            raise InputError(f"make_calls needs n >= 1 calls, got {n!r}")
        pool = StatePool(shape, n * batch, dtype=sd, device=dev).randomize_(seed)
        calls = KernelCalls(backend, shape, pool.tensor, args, draft_tokens=draft_tokens,
                            intermediate_dtype=intermediate_dtype)
        rows = RowSets.in_order(n * batch, batch, dev)
        if not checked["done"]:
            calls(rows[0], validate=True)()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            checked["done"] = True
        return disjoint_calls(calls, rows)(n)

    return make_calls
