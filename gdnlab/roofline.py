"""Bytes and FLOPs of one GDN decode or verify call: the memory roofline.

The formula follows FlashInfer's ``benchmarks/bench_gdn_decode.py`` (``gdn_decode_bytes``): each
input read once, each output written once, the state read once and (unless the update is disabled)
written once, plus one write of the intermediate state per draft token when verify caches them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .shapes import GDNShape, dtype_from_name

__all__ = ["GDNBytes", "gdn_bytes", "gdn_flops", "floor_time_us", "RowBytes", "StrategyBytes", "STEP_PHASES",
           "assemble_step_bytes", "dtype_size", "entry_bytes"]


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
# Byte primitives the strategy classes write their formulas in (gdnlab.strategies.base.VerifyStrategy
# .row_bytes, .scratch_formula): the formulas themselves live on the strategy classes.


@dataclass(frozen=True)
class RowBytes:
    """Bytes one live row moves in one phase of a speculative step: pool rows read / written
    (``state_read`` / ``state_write``) and scratch read / written (intermediate states, stash or ring
    entries). Fractional where a cost is amortised over steps."""

    state_read: float = 0.0
    state_write: float = 0.0
    scratch_read: float = 0.0
    scratch_write: float = 0.0

    @property
    def total(self) -> float:
        return self.state_read + self.state_write + self.scratch_read + self.scratch_write


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


#: the phases of a speculative step, in the order they run (a fold, where due, precedes the verify)
STEP_PHASES: tuple[str, ...] = ("fold", "verify", "commit")


def assemble_step_bytes(inputs: float, output: float, live_rows: int, rows: dict[str, RowBytes]) -> StrategyBytes:
    """A step's :class:`StrategyBytes` from the inputs and output of its verify call (bytes, all rows)
    and the bytes one live row moves per phase (``rows``: phase -> :class:`RowBytes`, a missing phase
    moves nothing; the verify phase also carries the inputs and output)."""
    bad = set(rows) - set(STEP_PHASES)
    if bad:
        raise ValueError(f"unknown step phases {sorted(bad)}; known: {', '.join(STEP_PHASES)}")
    zero = RowBytes()
    ph = {p: rows.get(p, zero) for p in STEP_PHASES}
    L = live_rows
    return StrategyBytes(
        inputs, output, *(L * sum(getattr(r, f) for r in ph.values())
                          for f in ("state_read", "state_write", "scratch_read", "scratch_write")),
        verify=inputs + output + L * ph["verify"].total, commit=L * ph["commit"].total, fold=L * ph["fold"].total)


def dtype_size(dtype: torch.dtype | str) -> int:
    """Bytes of one element of ``dtype``."""
    return _size(dtype)


def entry_bytes(shape: GDNShape, stash_dtype: torch.dtype | str | None = None) -> int:
    """One stash/ring entry of one row: u [HV, V], k [HV, K], g [HV] in the stash dtype (default fp32)."""
    return shape.HV * (shape.V + shape.K + 1) * _size(stash_dtype or torch.float32)
