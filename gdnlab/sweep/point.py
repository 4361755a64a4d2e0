"""Measuring one call point: a checked first call against the reference, then the timed calls.

Step points (``measure="step"``, a verify strategy's whole step) are measured by
:func:`gdnlab.sweep.step.measure_step_point` (the runner picks by ``measure``). Each call point:

1. makes the backend (:func:`gdnlab.kernels.make_backend`, the options of the engine measured),
   a randomised pool (:class:`gdnlab.state.StatePool`, one per state shape and dtype, reused), the
   batch's B rows scattered over it (a seeded permutation; never slot 0, no padding rows) and inputs;
2. runs one checked call (``validate=True``; JIT compilation happens here, its wall time is
   ``first_call_ms``) and compares output and states with
   :class:`~gdnlab.kernels.reference.ReferenceBackend` on the same device and starting state;
3. times the call. ``timing="amortised"``: n calls on n *disjoint* row sets of the pool (verify:
   each with its own intermediate buffer, as consecutive layers have), captured in one CUDA graph;
   time per call = sample / n (``calls_per_sample``). ``"single"``: one call per CUDA-graph sample;
   ``"eager"``: one call per sample without a graph (host launch included). L2 is flushed before
   each sample unless ``l2_flush=False``. On CPU the wall clock is used (``timing_method``). The calls
   come from :func:`gdnlab.harness_calls.disjoint_calls` (:class:`~gdnlab.harness_calls.KernelCalls`).

Pool-scoped verify (``buffer_scope="pool"``): the pool-sized buffer goes to the backend's public
``verify_pool_scoped`` when it has one (FlashInfer: the buffer reaches the kernel unsliced; its
bf16 wrapper rejects it and the point is stored as ``"rejected: <message>"``), else to
``verify(intermediate=buffer)`` (the contract accepts more rows; kernels index by batch row).
``pool_rows_untouched`` records whether rows ``>= B`` of the buffer stayed untouched.

Status: ``"ok"``, ``"oom"`` (``torch.cuda.OutOfMemoryError``), ``"unsupported: ..."`` (the
backend declines the state dtype or the shape), ``"rejected: ..."``, ``"error: ..."``.
"""
from __future__ import annotations

import json
from typing import Any

import torch

from ..harness_calls import KernelCalls, disjoint_calls
from ..shapes import dtype_from_name, dtype_name
from .config import SweepPoint
from .context import MeasureContext
from .rows import base_row, first_call, floors, point_inputs, recorded_outcome, row_sets, time_point, timing_columns

__all__ = ["measure_point"]


def measure_point(pt: SweepPoint, ctx: MeasureContext) -> dict:
    """Run one call point (``measure="call"``) and return its row (:data:`gdnlab.results.COLUMNS`).
    Never raises for a failing backend call (``KeyboardInterrupt`` excepted): the failure is the
    row's ``status``."""
    row = base_row(pt, ctx)
    with recorded_outcome(row):
        _measure(pt, ctx, row)
    return row


def _measure(pt: SweepPoint, ctx: MeasureContext, row: dict) -> None:
    be = ctx.backend(pt.backend)
    row["backend_options"] = json.dumps(getattr(be, "gdnlab_options", {}), sort_keys=True, default=str)
    sd = dtype_from_name(pt.state_dtype)
    allowed = be.decode_state_dtypes if pt.mode == "decode" else be.verify_state_dtypes
    if sd not in allowed:
        row["status"] = (f"unsupported: {be.name} {pt.mode} does not support a {pt.state_dtype} state pool "
                         f"(supports {[dtype_name(d) for d in allowed]})")
        return
    pool = ctx.pool(pt.shape, sd)
    calls = KernelCalls(be, pt.shape, pool, point_inputs(pt, ctx), draft_tokens=pt.draft_tokens,
                        buffer_scope=pt.buffer_scope)
    buf = calls.buffer()
    if buf is not None:
        row.update(intermediate_dtype=dtype_name(buf.dtype), intermediate_rows=int(buf.shape[0]),
                   intermediate_call=calls.description)
    _call_roofline(row, pt, None if buf is None else buf.dtype, ctx)
    max_calls = max(1, min(ctx.cfg.max_calls, (pool.shape[0] - 1) // max(pt.batch, 1)))
    if buf is not None:                   # each call has its own buffer: stay within the budget
        per_buf = buf.numel() * buf.element_size()
        max_calls = max(1, min(max_calls, 1 + int(ctx.cfg.buffer_budget_gb * 1e9 // per_buf)))
    rows = row_sets(ctx, pool.shape[0] - 1, pt.batch, count=max_calls)
    if not _checked_call(pt, ctx, row, calls, rows[0], buf):
        return
    make_calls = disjoint_calls(lambda r, j: calls(r, buffer=buf if j == 0 else None), rows)  # 0: checked buffer
    tm = time_point(pt, ctx, make_calls, max_calls)
    timing_columns(row, tm)
    if tm.median_us > 0:
        row["bw_gbps"] = row["bytes"] / (tm.median_us * 1e-6) / 1e9
        row["tflops"] = row["flops"] / (tm.median_us * 1e-6) / 1e12
        if ctx.peak_gbps == ctx.peak_gbps and ctx.peak_gbps > 0:
            row["pct_of_peak_bw"] = 100.0 * row["bw_gbps"] / ctx.peak_gbps
    row["status"] = "ok"


def _call_roofline(row: dict, pt: SweepPoint, inter_dtype: torch.dtype | None, ctx: MeasureContext) -> None:
    """Bytes and FLOPs of one call (:func:`gdnlab.roofline.gdn_bytes`, ``gdn_flops``) and its floors."""
    from ..roofline import gdn_bytes, gdn_flops

    B, T = pt.batch, pt.draft_tokens
    by = gdn_bytes(pt.shape, B, T, mode=pt.mode, state_dtype=pt.state_dtype, act_dtype=pt.act_dtype,
                   intermediate_dtype=inter_dtype or torch.float32)
    row.update(bytes=by.total, bytes_state=by.state_read + by.state_write, bytes_intermediate=by.intermediate_write,
               flops=gdn_flops(pt.shape, B, T))
    floors(row, by.total, ctx.peak_gbps, ctx.copy_bw_gbps)


def _checked_call(pt: SweepPoint, ctx: MeasureContext, row: dict, calls: KernelCalls, first: torch.Tensor,
                  buf: torch.Tensor | None) -> bool:
    """The first call, validated, on the point's first row set ``first`` (a decode on a copy of the
    pool: the shared pool stays as it was), compared with the reference when the sweep checks.
    False: the row's status says why the point stops here."""
    check = calls if calls.op == "verify" else KernelCalls(calls.backend, pt.shape, calls.pool.clone(), calls.args,
                                                           draft_tokens=1)
    ran, res = first_call(row, check(first, validate=True, buffer=buf), ctx.device,
                          rejectable=pt.buffer_scope == "pool")
    if not ran:
        return False
    be = calls.backend
    row.update(intermediate_call=calls.description, kernel=be.last_path.kernel,
               kernel_path=json.dumps(be.last_path.as_dict(), default=str, sort_keys=True))
    if ctx.cfg.check:
        _compare_with_reference(pt, ctx, row, calls, first, buf, res[0] if isinstance(res, (tuple, list)) else res,
                                check.pool)
    if pt.buffer_scope == "pool":
        rest = buf[pt.batch:]
        row["pool_rows_untouched"] = bool(torch.isnan(rest).all()) if rest.numel() else None
    return True


def _compare_with_reference(pt: SweepPoint, ctx: MeasureContext, row: dict, calls: KernelCalls, idx: torch.Tensor,
                            buf: torch.Tensor | None, out: torch.Tensor, after: torch.Tensor) -> None:
    """Output and states of the checked call vs :class:`~gdnlab.kernels.reference.ReferenceBackend`
    from the same state (``after``: the pool the decode updated): errors, ``tol_ratio``, ``correct``."""
    from ..kernels.tolerances import intermediate_tol, output_tol, state_tol

    ref, args, pool = ctx.reference, calls.args, calls.pool
    sd, act = dtype_from_name(pt.state_dtype), dtype_from_name(pt.act_dtype)
    if calls.op == "decode":
        ref_pool = pool.clone()
        o_ref = ref.decode(*args, ref_pool, idx, validate=False)
        st_x, st_r, st_tol = after[idx.long()], ref_pool[idx.long()], state_tol(sd)
    else:
        o_ref, inter_ref = ref.verify(*args, pool, idx, validate=False)
        st_x, st_r = buf[:pt.batch, :pt.draft_tokens], inter_ref.to(buf.dtype)
        st_tol = intermediate_tol(buf.dtype, sd)
    e_o, m_o, r_o = _err_stats(out, o_ref, output_tol(act, sd))
    e_s, m_s, r_s = _err_stats(st_x, st_r, st_tol)
    row.update(max_abs_err=e_o, max_rel_err=e_o / m_o if m_o > 0 else float("nan"),
               state_max_abs_err=e_s, state_max_rel_err=e_s / m_s if m_s > 0 else float("nan"),
               tol_ratio=max(r_o, r_s))
    row["correct"] = bool(row["tol_ratio"] <= 1.0)


def _err_stats(x: torch.Tensor, r: torch.Tensor, tol: Any, chunk_rows: int = 8) -> tuple[float, float, float]:
    """``(max |x - r|, max |r|, max tolerance ratio)`` computed in row chunks (bounded memory)."""
    if tuple(x.shape) != tuple(r.shape):
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(r.shape)}")
    max_err = max_ref = max_ratio = 0.0
    for i in range(0, x.shape[0], chunk_rows):
        xs, rs = x[i:i + chunk_rows].double(), r[i:i + chunk_rows].double()
        err = (xs - rs).abs()
        if torch.isnan(err).any():
            return float("nan"), float(rs.abs().max()), float("inf")
        max_err = max(max_err, float(err.max()) if err.numel() else 0.0)
        max_ref = max(max_ref, float(rs.abs().max()) if rs.numel() else 0.0)
        if err.numel():
            max_ratio = max(max_ratio, float((err / (tol.atol + tol.rtol * rs.abs())).max()))
    return max_err, max_ref, max_ratio

