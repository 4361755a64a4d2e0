"""What every sweep row is built from, call points and step points alike.

* :func:`base_row` — the grid key, the shape and the provenance columns (GPU, versions, commit, run
  id, time);
* :func:`recorded_outcome` — a failure while measuring becomes the row's ``status``;
* :func:`first_call` — the point's first, validated call (JIT compilation happens there):
  ``first_call_ms``, or the ``unsupported`` / ``rejected`` status;
* :func:`row_sets` and :func:`point_inputs` — the B pool rows each call runs on (a permutation seeded
  by the sweep seed and B) and the inputs (seeded by the sweep seed, B and T);
* :func:`floors`, :func:`timing_columns`, :func:`time_point` — the roofline floors, the timing
  columns, and the timing of a point's calls as its ``timing`` asks.
"""
from __future__ import annotations

import datetime as _dt
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..harness_calls import MakeCalls, RowSets
from ..provenance import IDENTITY_COLUMNS
from .config import SweepPoint
from .context import MeasureContext

__all__ = ["base_row", "describe", "recorded_outcome", "first_call", "row_sets", "point_inputs", "floors",
           "timing_columns", "time_point"]

#: provenance columns copied from the run's :func:`gdnlab.provenance.collect`
_PROVENANCE = (*IDENTITY_COLUMNS, "git_dirty", "host")


def base_row(pt: SweepPoint, ctx: MeasureContext) -> dict:
    """The columns every row has: grid key, shape, provenance, copy bandwidth, run id and time."""
    shape = pt.shape
    row = pt.key_row()
    row.update(shape=shape.name, H=shape.H, HV=shape.HV, K=shape.K, V=shape.V)
    row.update({k: ctx.prov.get(k) for k in _PROVENANCE})
    row["copy_bw_gbps"] = ctx.copy_bw_gbps
    row.update(sweep_id=ctx.sweep_id, timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return row


def describe(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"``; a bare ``assert`` (no message) is described by its source line and file."""
    msg = str(exc).strip()
    if not msg:
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            msg = f"{(tb[-1].line or '').strip()} ({Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return f"{type(exc).__name__}: {msg}"[:limit]


@contextmanager
def recorded_outcome(row: dict) -> Iterator[None]:
    """Measure one point inside this block: an out-of-memory or any other failure becomes the row's
    ``status`` (``oom`` / ``error: ...``) and the sweep goes on; Ctrl-C propagates; ``point_s`` is the
    block's wall time (s)."""
    t0 = time.perf_counter()
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        row["status"] = "oom"
        row["timing_note"] = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else None
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        row["status"] = f"error: {describe(exc)}"
    finally:
        row["point_s"] = time.perf_counter() - t0


def first_call(row: dict, call: Callable[[], Any], device: torch.device, *, rejectable: bool = False
               ) -> tuple[bool, Any]:
    """Run the point's first call (validated; JIT compilation happens here) and wait for the device.

    Returns ``(True, result)`` and records ``first_call_ms`` (wall time, ms); or ``(False, None)`` with
    the row's ``status``: ``unsupported: ...`` for a ``NotImplementedError`` / ``ValueError`` (the
    backend declines the dtype or shape), ``rejected: ...`` for any other error of the call itself
    when ``rejectable`` (a backend refusing a pool-sized buffer). Out of memory and other errors
    propagate (:func:`recorded_outcome` records them)."""
    t0 = time.perf_counter()
    try:
        try:
            out = call()
        except (torch.cuda.OutOfMemoryError, NotImplementedError, ValueError):
            raise
        except Exception as exc:
            if not rejectable:
                raise
            row["status"] = f"rejected: {describe(exc)}"
            return False, None
        if device.type == "cuda":
            torch.cuda.synchronize()
    except (NotImplementedError, ValueError) as exc:
        row["status"] = f"unsupported: {describe(exc)}"
        return False, None
    row["first_call_ms"] = (time.perf_counter() - t0) * 1e3
    return True, out


def row_sets(ctx: MeasureContext, rows: int, batch: int, **kw: Any) -> RowSets:
    """Disjoint sets of ``batch`` of the pool rows ``1..rows``, scattered by a permutation seeded by
    the sweep seed and ``batch`` (:meth:`RowSets.scattered`; ``kw``: ``count``, ``rotate``)."""
    return RowSets.scattered(rows, batch, ctx.cfg.seed * 7919 + batch, ctx.device, **kw)


def point_inputs(pt: SweepPoint, ctx: MeasureContext) -> tuple:
    """The point's q, k, v, a, b, A_log, dt_bias (:func:`gdnlab.inputs.make_inputs`, seeded by the
    sweep seed, B and T)."""
    from ..inputs import make_inputs
    from ..shapes import dtype_from_name

    B, T = pt.batch, pt.draft_tokens
    return make_inputs(pt.shape, B, T, act_dtype=dtype_from_name(pt.act_dtype), device=ctx.device,
                       seed=ctx.cfg.seed + 31 * B + T).args()


def floors(row: dict, total_bytes: float, peak_gbps: float, copy_gbps: float) -> None:
    """``peak_bw_gbps``, ``copy_bw_gbps`` and the floors of ``total_bytes``: ``floor_us`` at the
    datasheet peak, ``copy_floor_us`` at the measured copy bandwidth (each when that bandwidth is known)."""
    row.update(peak_bw_gbps=peak_gbps, copy_bw_gbps=copy_gbps)
    if peak_gbps == peak_gbps and peak_gbps > 0:
        row["floor_us"] = total_bytes / (peak_gbps * 1e9) * 1e6
    if copy_gbps == copy_gbps and copy_gbps > 0:
        row["copy_floor_us"] = total_bytes / (copy_gbps * 1e9) * 1e6


def timing_columns(row: dict, tm) -> None:
    """The time columns of a :class:`gdnlab.instrument.Timing` (µs per call)."""
    row.update(time_us=tm.median_us, time_p10_us=tm.p10_us, time_p90_us=tm.p90_us, time_mean_us=tm.mean_us,
               time_min_us=tm.min_us, repeats=tm.repeats, calls_per_sample=int(tm.calls_per_sample),
               timing_method=tm.method, timing_note=tm.note or None)


def time_point(pt: SweepPoint, ctx: MeasureContext, make_calls: MakeCalls, max_calls: int):
    """Time ``make_calls(n)``'s calls as :attr:`SweepPoint.timing` asks (:func:`gdnlab.instrument.time_calls`)."""
    from ..instrument import time_calls

    cfg = ctx.cfg
    return time_calls(make_calls, timing=pt.timing, min_sample_us=cfg.min_sample_us, max_calls=max_calls,
                      warmup=cfg.warmup, repeats=cfg.repeats, l2_flush=pt.l2_flush, device=ctx.device)
