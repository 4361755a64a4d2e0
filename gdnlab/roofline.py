"""Bytes and FLOPs of one GDN decode or verify call: the memory roofline.

The formula follows FlashInfer's ``benchmarks/bench_gdn_decode.py`` (``gdn_decode_bytes``): each
input read once, each output written once, the state read once and (unless the update is disabled)
written once, plus one write of the intermediate state per draft token when verify caches them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .shapes import GDNShape, dtype_from_name

__all__ = ["GDNBytes", "gdn_bytes", "gdn_flops", "floor_time_us", "StrategyBytes", "strategy_bytes",
           "strategy_scratch_bytes", "strategy_memory_bytes", "ring_fold_period"]


def _size(dtype: torch.dtype | str) -> int:
    return torch.empty((), dtype=dtype_from_name(dtype)).element_size()


@dataclass(frozen=True)
class GDNBytes:
    """Bytes one call moves through device memory, by part (all in bytes)."""

    inputs: int         # q, k, v, a, b (activation dtype), A_log, dt_bias (fp32), indices (int32)
    output: int         # o (activation dtype)
    state_read: int     # B rows of [HV, V, K] in the state dtype
    state_write: int    # the same again when the state is written back (decode), else 0
    intermediate_write: int  # B*T rows of [HV, V, K] in the intermediate dtype (verify), else 0

    @property
    def total(self) -> int:
        return self.inputs + self.output + self.state_read + self.state_write + self.intermediate_write

    def as_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["total"] = self.total
        return d


def gdn_bytes(shape: GDNShape, batch: int, draft_tokens: int = 1, *, mode: str = "decode",
              state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
              intermediate_dtype: torch.dtype | str = torch.float32, padding_rows: int = 0) -> GDNBytes:
    """Minimum bytes moved by one GDN call over ``batch`` rows (``padding_rows`` of them padding).

    Args:
        shape: per-GPU GDN shape (H, HV, K, V).
        batch: B, rows in the call (padding rows included).
        draft_tokens: T, tokens per row (1 for decode).
        mode: ``"decode"`` (state read + write back) or ``"verify"`` (state read, no write back,
            T intermediate states written per row).
        state_dtype: pool dtype (defaults to ``shape.state_dtype``).
        act_dtype: dtype of q, k, v, a, b and the output.
        intermediate_dtype: dtype of the verify intermediate buffer.
        padding_rows: rows with a negative index: their state is neither read nor written.

    Returns:
        :class:`GDNBytes`; ``.total`` is the roofline numerator.
    """
    if mode not in ("decode", "verify"):
        raise ValueError(f"mode must be 'decode' or 'verify', got {mode!r}")
    if batch < 0 or draft_tokens < 1 or not 0 <= padding_rows <= batch:
        raise ValueError(f"need batch >= 0, draft_tokens >= 1, 0 <= padding_rows <= batch; got "
                         f"batch={batch}, draft_tokens={draft_tokens}, padding_rows={padding_rows}")
    sd = shape.state_dtype if state_dtype is None else state_dtype
    B, T = batch, draft_tokens
    H, HV, K, V = shape.H, shape.HV, shape.K, shape.V
    act, st = _size(act_dtype), _size(sd)
    live = B - padding_rows
    inputs = (B * T * (2 * H * K + HV * V + 2 * HV)) * act + 2 * HV * 4 + B * 4
    output = B * T * HV * V * act
    state = live * HV * V * K * st
    inter = live * T * HV * V * K * _size(intermediate_dtype) if mode == "verify" else 0
    return GDNBytes(inputs, output, state, state if mode == "decode" else 0, inter)


def gdn_flops(shape: GDNShape, batch: int, draft_tokens: int = 1) -> int:
    """FLOPs of one call: ``6 * B * T * HV * K * V`` (k·S, the rank-1 update, q·S; gates and norms
    ignored), FlashInfer's ``bench_gdn_decode.py`` count with ``max(Hq, HV) = HV``."""
    return 6 * batch * draft_tokens * shape.HV * shape.K * shape.V


def floor_time_us(total_bytes: int, peak_gbps: float) -> float:
    """Memory-roofline floor in microseconds: bytes / peak bandwidth (GB/s = 1e9 B/s). A NaN peak
    (unknown GPU, see :func:`gdnlab.hardware.detect`) gives NaN."""
    if not peak_gbps > 0 and peak_gbps == peak_gbps:
        raise ValueError(f"peak_gbps must be > 0 GB/s, got {peak_gbps!r}")
    return total_bytes / (peak_gbps * 1e9) * 1e6


# ---------------------------------------------------------------------------- verify strategies
_STRATEGIES = ("full_cache", "token_slots", "recompute", "recompute_fused", "replay_ring")


@dataclass(frozen=True)
class StrategyBytes:
    """Bytes one speculative step (verify + commit + amortised fold) of a verify strategy moves,
    by part and by phase (bytes; fractional where a cost is amortised over steps).

    Parts: ``inputs`` (q, k, v, a, b, gates, indices, accepted), ``output`` (o), ``state_read`` /
    ``state_write`` (pool rows), ``scratch_read`` / ``scratch_write`` (intermediate states, stash or
    ring entries). Phases: ``verify``, ``commit``, ``fold`` (their sum is :attr:`total`).
    Bookkeeping of a few int32 per row (cursors, slot tables) is not counted.
    """

    inputs: float
    output: float
    state_read: float
    state_write: float
    scratch_read: float
    scratch_write: float
    verify: float
    commit: float
    fold: float

    @property
    def total(self) -> float:
        return self.inputs + self.output + self.state_read + self.state_write + self.scratch_read + self.scratch_write

    @property
    def state_and_scratch(self) -> float:
        """State plus scratch traffic: the part the strategy chooses."""
        return self.state_read + self.state_write + self.scratch_read + self.scratch_write

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["total"] = self.total
        return d


def _check_strategy(strategy: str) -> str:
    key = str(strategy).strip().lower()
    if key not in _STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(_STRATEGIES)}")
    return key


def _entry_bytes(shape: GDNShape, stash_dtype: torch.dtype | str | None) -> int:
    """One stash/ring entry of one row: u [HV, V], k [HV, K], g [HV] in the stash dtype (default fp32)."""
    return shape.HV * (shape.V + shape.K + 1) * _size(stash_dtype or torch.float32)


def _ring_slots(T: int, ring_slots: int | None) -> int:
    return ring_slots or max(16, 4 * T)


def ring_fold_period(T: int, accept_len: float, ring_slots: int | None = None, flush_min: int | None = None) -> int:
    """Steps between two folds of a ``replay_ring`` row whose cursor grows by ``accept_len`` a step:
    the smallest ``f >= 1`` with ``f a > R - T`` (the next verify would not fit) or ``f a >= flush_min``,
    i.e. ``min(floor((R - T) / a) + 1, ceil(flush_min / a))``. A mean-value estimate: real rows draw
    integer accept lengths, so measure the fold by timing steps with the intended distribution."""
    R = _ring_slots(T, ring_slots)
    if not 1 <= accept_len <= T or R < T:
        raise ValueError(f"need 1 <= accept_len <= T and ring_slots >= T; got accept_len={accept_len}, T={T}, "
                         f"ring_slots={R}")
    m = min(flush_min or R, R)
    return max(1, min(math.floor((R - T) / accept_len) + 1, math.ceil(m / accept_len)))


def strategy_bytes(shape: GDNShape, strategy: str, batch: int, draft_tokens: int, accept_len: float, *,
                   state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                   intermediate_dtype: torch.dtype | str | None = None, stash_dtype: torch.dtype | str | None = None,
                   ring_slots: int | None = None, flush_min: int | None = None,
                   padding_rows: int = 0) -> StrategyBytes:
    """Minimum bytes one step of ``strategy`` moves for ``batch`` rows (``padding_rows`` of them
    padding) of ``draft_tokens`` = T tokens, keeping ``accept_len`` = a tokens per row on average.

    With S = one row's state ``HV V K`` in the state dtype, S_i the same in the intermediate dtype
    (default: the state dtype), e = one stash/ring entry ``HV (V + K + 1)`` in the stash dtype
    (default float32), per live row:

    * ``full_cache``: verify reads S and writes T S_i; commit reads S_i and writes S:
      ``2 S + (T + 1) S_i`` = (T + 3) S when S_i = S.
    * ``token_slots``: verify reads S and writes T states into their slots; commit moves a pointer:
      ``(T + 1) S``.
    * ``recompute``: verify reads S, writes T e; commit reads S and a e, writes S: ``3 S + (T + a) e``.
    * ``recompute_fused``: verify reads S and the a pending entries, writes S once and T e:
      ``2 S + (T + a) e`` (steady state: every step has pending steps).
    * ``replay_ring``: fold period f = :func:`ring_fold_period`; verify reads S, on average
      ``a (f - 1) / 2`` live entries, writes T e; the fold reads S and ``f a`` entries and writes S
      every f steps: ``S (1 + 2 / f) + e (a (f - 1) / 2 + T + a)``.

    Inputs and outputs are those of one verify call (:func:`gdn_bytes`) plus ``accepted`` (int32).
    """
    key = _check_strategy(strategy)
    B, T, a = batch, draft_tokens, float(accept_len)
    if batch < 0 or T < 1 or not 0 <= padding_rows <= batch or not 1 <= a <= T:
        raise ValueError(f"need batch >= 0, draft_tokens >= 1, 0 <= padding_rows <= batch, 1 <= accept_len <= "
                         f"draft_tokens; got batch={batch}, draft_tokens={T}, padding_rows={padding_rows}, "
                         f"accept_len={accept_len}")
    sd = shape.state_dtype if state_dtype is None else state_dtype
    base = gdn_bytes(shape, B, T, mode="verify", state_dtype=sd, act_dtype=act_dtype, padding_rows=padding_rows)
    inputs, output = base.inputs + B * 4, base.output
    L = B - padding_rows
    S = shape.HV * shape.V * shape.K * _size(sd)
    Si = shape.HV * shape.V * shape.K * _size(intermediate_dtype or sd)
    e = _entry_bytes(shape, stash_dtype)
    # (verify: state_r, state_w, scratch_r, scratch_w), (commit: ...), (fold: ...) per live row
    zero = (0.0, 0.0, 0.0, 0.0)
    if key == "full_cache":
        v, c, f = (S, 0.0, 0.0, T * Si), (0.0, S, Si, 0.0), zero
    elif key == "token_slots":
        v, c, f = (S, T * S, 0.0, 0.0), zero, zero
    elif key == "recompute":
        v, c, f = (S, 0.0, 0.0, T * e), (S, S, a * e, 0.0), zero
    elif key == "recompute_fused":
        v, c, f = (S, S, a * e, T * e), zero, zero
    else:
        per = ring_fold_period(T, a, ring_slots, flush_min)
        v, c, f = (S, 0.0, a * (per - 1) / 2 * e, T * e), zero, (S / per, S / per, a * e, 0.0)
    parts = [L * sum(p[i] for p in (v, c, f)) for i in range(4)]
    return StrategyBytes(inputs, output, *parts, verify=inputs + output + L * sum(v), commit=L * sum(c),
                         fold=L * sum(f))


def strategy_scratch_bytes(shape: GDNShape, strategy: str, batch: int, draft_tokens: int, pool_slots: int, *,
                           state_dtype: torch.dtype | str | None = None,
                           intermediate_dtype: torch.dtype | str | None = None,
                           stash_dtype: torch.dtype | str | None = None, ring_slots: int | None = None,
                           flush_min: int | None = None) -> int:
    """Bytes a strategy allocates besides the pool (its scratch) for batches of ``batch`` rows of
    ``draft_tokens`` = T tokens on a pool of ``pool_slots`` = P rows (slot 0 included):

    * ``full_cache``: intermediate ``B T S_i``.
    * ``token_slots``: slot table ``P (T+1)`` + cursor ``P + 1`` int32 — its T extra states per
      request live in the pool (see :func:`strategy_memory_bytes`).
    * ``recompute``: stash ``B T e`` + two ``[B]`` int32 row tables.
    * ``recompute_fused``: double-buffered pool-scoped stash ``2 P T e`` + pending and parity
      ``2 (P + 1)`` + one ``[B]`` int32.
    * ``replay_ring``: ring ``P R e`` + cursor ``P + 1`` int32 (R = ring_slots, default max(16, 4 T)).
    """
    key = _check_strategy(strategy)
    B, T, P = batch, draft_tokens, pool_slots
    if B < 1 or T < 1 or P < 1:
        raise ValueError(f"need batch, draft_tokens, pool_slots >= 1; got {B}, {T}, {P}")
    sd = shape.state_dtype if state_dtype is None else state_dtype
    e = _entry_bytes(shape, stash_dtype)
    if key == "full_cache":
        return B * T * shape.HV * shape.V * shape.K * _size(intermediate_dtype or sd)
    if key == "token_slots":
        return P * (T + 1) * 4 + (P + 1) * 4
    if key == "recompute":
        return B * T * e + 2 * B * 4
    if key == "recompute_fused":
        return 2 * P * T * e + 2 * (P + 1) * 4 + B * 4
    return P * _ring_slots(T, ring_slots) * e + (P + 1) * 4


def strategy_memory_bytes(shape: GDNShape, strategy: str, requests: int, batch: int, draft_tokens: int, *,
                          state_dtype: torch.dtype | str | None = None, **options) -> int:
    """Device memory (bytes, one layer) to serve ``requests`` concurrent requests: the pool (slot 0
    plus 1 row per request, ``token_slots``: 1 + T rows) plus :func:`strategy_scratch_bytes`."""
    key = _check_strategy(strategy)
    per_req = draft_tokens + 1 if key == "token_slots" else 1
    P = 1 + requests * per_req
    sd = shape.state_dtype if state_dtype is None else state_dtype
    pool = P * shape.HV * shape.V * shape.K * _size(sd)
    return pool + strategy_scratch_bytes(shape, key, batch, draft_tokens, P, state_dtype=sd, **options)
