"""Measuring one sweep point: a checked first call against the reference, then the timed calls.

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
   each sample unless ``l2_flush=False``. On CPU the wall clock is used (``timing_method``).

Pool-scoped verify (strategy ``full_cache_pool_scoped``): the pool-sized buffer goes to the
backend's public ``verify_pool_scoped`` when it has one (FlashInfer: the buffer reaches the kernel
unsliced; its bf16 wrapper rejects it and the point is stored as ``"rejected: <message>"``), else
to ``verify(intermediate=buffer)`` (the contract accepts more rows; kernels index by batch row).
``pool_rows_untouched`` records whether rows ``>= B`` of the buffer stayed untouched.

Status: ``"ok"``, ``"oom"`` (``torch.cuda.OutOfMemoryError``), ``"unsupported: ..."`` (the
backend declines the state dtype or the shape), ``"rejected: ..."``, ``"error: ..."``.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..kernels import make_backend
from ..provenance import IDENTITY_COLUMNS
from ..shapes import GDNShape, dtype_from_name, dtype_name
from .config import SweepConfig, SweepPoint

__all__ = ["MeasureContext", "measure_point", "verify_call"]


@dataclass
class MeasureContext:
    """What the points of one run share: settings, device, provenance, backends, pools."""

    cfg: SweepConfig
    device: torch.device
    prov: dict
    peak_gbps: float
    sweep_id: str
    copy_bw_gbps: float = float("nan")
    backends: dict = field(default_factory=dict)
    pools: dict = field(default_factory=dict)
    reference: Any = None
    #: (backend, strategy) -> (strategy object or None, reason)
    strategies: dict = field(default_factory=dict)
    #: step-point group -> :class:`gdnlab.sweep.step.StrategyCheckResult`
    checks: dict = field(default_factory=dict)
    step_pools: dict = field(default_factory=dict)
    #: where progress lines go (the runner writes them above its progress bar)
    log: Callable[[str], None] = field(default=lambda msg: None)

    def backend(self, name: str):
        """The backend ``name``, made once with the engine's options."""
        if name not in self.backends:
            self.backends[name] = make_backend(name, self.cfg.engine, **self.cfg.backend_options.get(name, {}))
        return self.backends[name]

    def pool(self, shape: GDNShape, dtype: torch.dtype) -> torch.Tensor:
        """One randomised ``[pool_slots, HV, V, K]`` pool per (state shape, dtype), reused by every
        point (decode points keep updating it; the GDN recurrence keeps it bounded)."""
        from ..state import StatePool

        key = (shape.state_shape, dtype)
        if key not in self.pools:
            for k in [k for k in self.pools if k[1] == dtype]:  # one pool per dtype at most: memory
                del self.pools[k]
            self.pools[key] = StatePool(shape.state_shape, self.cfg.capacity, dtype=dtype,
                                        device=self.device).randomize_(self.cfg.seed).tensor
        return self.pools[key]


    def strategy(self, backend: str, name: str):
        """``(strategy, "")`` made once per run, or ``(None, reason)`` when it cannot run here."""
        from ..errors import UnavailableError
        from ..strategies import get_strategy

        key = (backend, name)
        if key not in self.strategies:
            try:
                self.strategies[key] = (get_strategy(name, backend=backend,
                                                     **self.cfg.strategy_options.get(backend, {})), "")
            except (UnavailableError, ValueError, TypeError) as exc:
                self.strategies[key] = (None, str(exc))
        return self.strategies[key]

    def step_pool(self, shape: GDNShape, dtype: torch.dtype, rows: int) -> torch.Tensor:
        """A randomised ``[rows, HV, V, K]`` pool for step points (generated on the device), reused by
        every step point with these rows and dtype; pools of the other dtype are dropped first."""
        key = (shape.state_shape, dtype, rows)
        if key not in self.step_pools:
            for k in [k for k in self.step_pools if k[1] != dtype or k[0] != shape.state_shape]:
                del self.step_pools[k]
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + rows)
            t = torch.randn((rows, *shape.state_shape), generator=gen, device=self.device, dtype=torch.float32)
            pool = (0.1 * t).to(dtype)
            del t
            pool[0] = 0                                             # slot 0: the reserved padding slot
            self.step_pools[key] = pool
        return self.step_pools[key]


def _describe(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"``; a bare ``assert`` (no message) is described by its source line and file."""
    msg = str(exc).strip()
    if not msg:
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            msg = f"{(tb[-1].line or '').strip()} ({Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return f"{type(exc).__name__}: {msg}"[:limit]


def _err_stats(x: torch.Tensor, r: torch.Tensor, tol, chunk_rows: int = 8) -> tuple[float, float, float]:
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


def verify_call(backend, args: tuple, pool: torch.Tensor, idx: torch.Tensor, buf: torch.Tensor, strategy: str,
                validate: bool = False) -> tuple[Callable[[], Any], str]:
    """The verify call of ``strategy`` (no arguments; returns what the backend returns) and its
    description. ``full_cache_pool_scoped`` uses the backend's ``verify_pool_scoped`` when it has one."""
    name = getattr(backend, "name", "?")
    if strategy == "full_cache_pool_scoped":
        hook = getattr(backend, "verify_pool_scoped", None)
        if callable(hook):
            return (lambda: hook(*args, pool, idx, intermediate=buf, validate=validate),
                    f"{name}.verify_pool_scoped(intermediate=pool-sized)")
        return (lambda: backend.verify(*args, pool, idx, intermediate=buf, validate=validate),
                f"{name}.verify(intermediate=pool-sized)")
    return (lambda: backend.verify(*args, pool, idx, intermediate=buf, validate=validate),
            f"{name}.verify(intermediate=batch)")


def _first_output(res: Any) -> torch.Tensor:
    return res[0] if isinstance(res, (tuple, list)) else res


def _base_row(pt: SweepPoint, ctx: MeasureContext) -> dict:
    shape = pt.shape
    row = pt.key_row()
    row.update(intermediate=pt.intermediate, shape=shape.name, H=shape.H, HV=shape.HV, K=shape.K, V=shape.V)
    row.update({k: ctx.prov.get(k) for k in (*IDENTITY_COLUMNS, "git_dirty", "host")})
    row["copy_bw_gbps"] = ctx.copy_bw_gbps
    row.update(sweep_id=ctx.sweep_id, timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return row


def _roofline(row: dict, shape: GDNShape, inter_dtype: torch.dtype | None, peak_gbps: float,
              copy_gbps: float = float("nan")) -> None:
    from ..roofline import gdn_bytes, gdn_flops

    B, T = row["batch"], row["draft_tokens"]
    by = gdn_bytes(shape, B, T, mode=row["mode"], state_dtype=row["state_dtype"], act_dtype=row["act_dtype"],
                   intermediate_dtype=inter_dtype or torch.float32)
    row.update(bytes=by.total, bytes_state=by.state_read + by.state_write, bytes_intermediate=by.intermediate_write,
               flops=gdn_flops(shape, B, T), peak_bw_gbps=peak_gbps)
    if peak_gbps == peak_gbps and peak_gbps > 0:
        row["floor_us"] = by.total / (peak_gbps * 1e9) * 1e6
    row["copy_bw_gbps"] = copy_gbps
    if copy_gbps == copy_gbps and copy_gbps > 0:
        row["copy_floor_us"] = by.total / (copy_gbps * 1e9) * 1e6


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
        row["status"] = f"error: {_describe(exc)}"
    finally:
        row["point_s"] = time.perf_counter() - t0


def _time_calls(pt: SweepPoint, ctx: MeasureContext, make_calls: Callable[[int], list], max_calls: int):
    """Time ``make_calls(n)``'s calls as :attr:`SweepPoint.timing` asks (:func:`gdnlab.instrument.time_calls`)."""
    from ..instrument import time_calls

    cfg = ctx.cfg
    return time_calls(make_calls, timing=pt.timing, min_sample_us=cfg.min_sample_us, max_calls=max_calls,
                      warmup=cfg.warmup, repeats=cfg.repeats, l2_flush=pt.l2_flush, device=ctx.device)


def measure_point(pt: SweepPoint, ctx: MeasureContext) -> dict:
    """Run one call point (``measure="call"``) and return its row (:data:`gdnlab.results.COLUMNS`).
    Never raises for a failing backend call (``KeyboardInterrupt`` excepted): the failure is the
    row's ``status``."""
    from ..inputs import make_inputs
    from ..kernels.tolerances import intermediate_tol, output_tol, state_tol

    shape = pt.shape
    row = _base_row(pt, ctx)
    sd, act = dtype_from_name(pt.state_dtype), dtype_from_name(pt.act_dtype)
    B, T, mode = pt.batch, pt.draft_tokens, pt.mode
    inter_dtype: torch.dtype | None = None
    with recorded_outcome(row):
        be = ctx.backend(pt.backend)
        row["backend_options"] = json.dumps(getattr(be, "gdnlab_options", {}), sort_keys=True, default=str)
        allowed = be.decode_state_dtypes if mode == "decode" else be.verify_state_dtypes
        if sd not in allowed:
            row["status"] = (f"unsupported: {be.name} {mode} does not support a {pt.state_dtype} state pool "
                             f"(supports {[dtype_name(d) for d in allowed]})")
            return row
        pool = ctx.pool(shape, sd)
        P = pool.shape[0]
        gen = torch.Generator().manual_seed(ctx.cfg.seed * 7919 + B)
        perm = torch.randperm(P - 1, generator=gen) + 1                 # scattered live slots, never slot 0
        idx = perm[:B].to(torch.int32).to(ctx.device)
        x = make_inputs(shape, B, T, act_dtype=act, device=ctx.device, seed=ctx.cfg.seed + 31 * B + T)
        args = x.args()
        buf = None
        if mode == "verify":
            batch_buf = be.new_intermediate(shape.call_dims(B, T, P), pool)
            inter_dtype = batch_buf.dtype
            if pt.strategy == "full_cache_pool_scoped":
                del batch_buf
                buf = torch.full((P, T, shape.HV, shape.V, shape.K), float("nan"), dtype=inter_dtype,
                                 device=ctx.device)
            else:
                buf = batch_buf
            row["intermediate_dtype"] = dtype_name(inter_dtype)
            row["intermediate_rows"] = int(buf.shape[0])
        _roofline(row, shape, inter_dtype, ctx.peak_gbps, ctx.copy_bw_gbps)

        # ---- checked first call (JIT happens here) + reference on the same device and state
        check_pool = pool.clone() if mode == "decode" else pool
        t0 = time.perf_counter()
        try:
            if mode == "decode":
                out = be.decode(*args, check_pool, idx, validate=True)
                call_desc = f"{be.name}.decode"
            else:
                fn, call_desc = verify_call(be, args, pool, idx, buf, pt.strategy, validate=True)
                row["intermediate_call"] = call_desc
                try:
                    out = _first_output(fn())
                except (torch.cuda.OutOfMemoryError, KeyboardInterrupt, NotImplementedError, ValueError):
                    raise
                except Exception as exc:
                    if pt.strategy != "full_cache_pool_scoped":
                        raise
                    row["status"] = f"rejected: {_describe(exc)}"        # the backend refused the buffer
                    return row
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
        except (NotImplementedError, ValueError) as exc:
            row["status"] = f"unsupported: {_describe(exc)}"
            return row
        row["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        row["intermediate_call"] = call_desc
        row["kernel"] = be.last_path.kernel
        row["kernel_path"] = json.dumps(be.last_path.as_dict(), default=str, sort_keys=True)
        if ctx.cfg.check:
            ref = ctx.reference
            if mode == "decode":
                ref_pool = pool.clone()
                o_ref = ref.decode(*args, ref_pool, idx, validate=False)
                st_x, st_r = check_pool[idx.long()], ref_pool[idx.long()]
                st_tol = state_tol(sd)
                del ref_pool
            else:
                o_ref, inter_ref = ref.verify(*args, pool, idx, validate=False)
                st_x, st_r = buf[:B, :T], inter_ref.to(buf.dtype)
                st_tol = intermediate_tol(buf.dtype, sd)
            e_o, m_o, r_o = _err_stats(out, o_ref, output_tol(act, sd))
            e_s, m_s, r_s = _err_stats(st_x, st_r, st_tol)
            row.update(max_abs_err=e_o, max_rel_err=e_o / m_o if m_o > 0 else float("nan"),
                       state_max_abs_err=e_s, state_max_rel_err=e_s / m_s if m_s > 0 else float("nan"),
                       tol_ratio=max(r_o, r_s))
            row["correct"] = bool(row["tol_ratio"] <= 1.0)
            del o_ref, st_x, st_r
        if pt.strategy == "full_cache_pool_scoped":
            rest = buf[B:]
            row["pool_rows_untouched"] = bool(torch.isnan(rest).all()) if rest.numel() else None
        del out, check_pool

        # ---- timing: n calls on n disjoint row sets of the pool (each verify with its own buffer)
        max_calls = max(1, min(ctx.cfg.max_calls, (P - 1) // max(B, 1)))
        if buf is not None:
            per_buf = buf.numel() * buf.element_size()
            max_calls = max(1, min(max_calls, 1 + int(ctx.cfg.buffer_budget_gb * 1e9 // per_buf)))
        bufs = [buf]

        def make_calls(n: int) -> list[Callable[[], Any]]:
            if n > max_calls:
                raise ValueError(f"asked for {n} calls on disjoint pool rows, the pool holds {max_calls}")
            calls = []
            for j in range(n):
                rows_j = idx if j == 0 else perm[j * B:(j + 1) * B].to(torch.int32).to(ctx.device)
                if mode == "decode":
                    calls.append(lambda r=rows_j: be.decode(*args, pool, r, validate=False))
                    continue
                while len(bufs) <= j:
                    bufs.append(torch.empty_like(buf))
                calls.append(verify_call(be, args, pool, rows_j, bufs[j], pt.strategy)[0])
            return calls

        tm = _time_calls(pt, ctx, make_calls, max_calls)
        bufs.clear()                      # the extra buffers go with the calls
        row.update(time_us=tm.median_us, time_p10_us=tm.p10_us, time_p90_us=tm.p90_us, time_mean_us=tm.mean_us,
                   time_min_us=tm.min_us, repeats=tm.repeats,
                   calls_per_sample=int(tm.calls_per_sample), timing_method=tm.method,
                   timing_note=tm.note or None)
        if tm.median_us > 0:
            row["bw_gbps"] = row["bytes"] / (tm.median_us * 1e-6) / 1e9
            row["tflops"] = row["flops"] / (tm.median_us * 1e-6) / 1e12
            if ctx.peak_gbps == ctx.peak_gbps and ctx.peak_gbps > 0:
                row["pct_of_peak_bw"] = 100.0 * row["bw_gbps"] / ctx.peak_gbps
        row["status"] = "ok"
    return row
