"""Measuring one step point: a verify strategy's speculative step (verify + commit + amortised fold).

A step point (:class:`gdnlab.sweep.config.SweepPoint` with ``measure="step"``) is one (strategy
backend, strategy, B, T, state dtype, accept length). :func:`measure_step_point`:

1. makes the strategy once per run (:func:`gdnlab.strategies.get_strategy`); a strategy that cannot
   run here, or declines these conditions (``supports(...)`` of FlashInfer's wrappers), gives a row
   with status ``"unsupported: <reason>"``;
2. writes the byte formulas (:meth:`VerifyStrategy.bytes_moved`, :meth:`VerifyStrategy.step_bytes`
   at the point's accept length) and the memory (:meth:`VerifyStrategy.scratch_bytes` + the pool);
3. checks correctness with :func:`gdnlab.strategies.check.check_strategy` (``check_steps``
   consecutive steps against the float64 reference decode) at the point's own batch (default), or,
   with ``check_batch``, once per (preset, backend, strategy, state dtype, T) at the largest batch of
   the group the strategy supports up to it; every row carries ``correct``, ``state_drift``,
   ``tol_ratio`` and ``check_batch`` (the B that was checked);
4. on a pool of ``capacity`` requests (``pool_slots`` rows, randomised once per (shape, dtype,
   rows) and reused) with a fresh scratch, runs one validated eager step (JIT happens here:
   ``first_call_ms``), then times three CUDA graphs with :func:`gdnlab.instrument.time_calls`:

   * **step** (``step_us``, ``time_us``): ``steps_per_sample`` (16) consecutive steps, each
     ``verify`` then ``commit(accepted_j)`` with ``validate=False``; the accepted vectors are drawn
     on the device beforehand with :func:`gdnlab.acceptance.sample_accepted` (mean = the accept
     length; one vector per step), so bookkeeping (cursors, pending counts) and the fold of
     ``replay_ring`` (every few steps, decided on the device) run as in an engine; time per step =
     replay time / steps, L2 flushed before each replay. The steps rotate over ``row_sets`` =
     ``min(steps, capacity // B)`` disjoint sets of B requests: each set sees every
     ``row_sets``-th step and keeps its own state from step to step and replay to replay (an
     engine's other layers stand between two steps of the same rows, so a step never finds its
     state in L2; at B = capacity every step runs on the same rows, whose state exceeds L2 at the
     real shape). A graph replays the same launches, so step j always commits accepted vector j:
     each request cycles through its own draws, and over the replays (warm-up included) its folds
     come at the rate the mean of those draws gives — across requests, the accept length;
   * **commit** (``commit_us``): a graph of commits alone (as many as ``min_sample_us`` asks),
     rotating over the same row sets;
   * **verify** (``verify_us``): a graph of verifies alone where a verify without its commit is a
     steady-state verify (``full_cache``, ``token_slots``, ``recompute``, ``replay_ring``: for the
     last, the verify without the fold, which only a commit makes due); for ``recompute_fused``,
     whose verify replays what the previous commit accepted, ``verify_us = step_us - commit_us``.
     ``fold_us = step_us - verify_us - commit_us`` for ``replay_ring`` (its amortised fold; empty
     when that difference is negative, i.e. the fold runs inside the verify kernel), empty for the
     others. ``split_method`` records which.

The commits timed alone run without verifies in between (a ring cursor may pass the ring's end):
nothing reads the scratch afterwards, it is dropped with the point.

Bandwidths: ``bw_gbps = bytes / step_us`` (all phases), ``verify_bw_gbps = bytes_verify /
verify_us``, ``commit_bw_gbps = bytes_commit / commit_us``, each also as % of the datasheet peak;
floors at the measured device-to-device copy bandwidth (:func:`copy_bandwidth`):
``copy_floor_us``, ``verify_floor_us``, ``commit_floor_us``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..harness_calls import RowSets, disjoint_calls
from ..shapes import dtype_from_name, dtype_name
from ..strategies.registry import strategy_class
from .config import SweepPoint
from .context import MeasureContext
from .rows import (
    base_row,
    describe,
    first_call,
    floors,
    point_inputs,
    recorded_outcome,
    row_sets,
    time_point,
    timing_columns,
)

__all__ = ["measure_step_point", "copy_bandwidth", "StrategyCheckResult"]



@dataclass
class StrategyCheckResult:
    """Outcome of one strategy check (shared by the points of its group)."""

    batch: int | None
    steps: int
    ok: bool | None = None
    tol_ratio: float | None = None
    output_err: float | None = None
    drift: float | None = None
    summary: str = ""
    seconds: float = 0.0


def copy_bandwidth(device: torch.device, nbytes: int, *, repeats: int = 20, l2_flush: bool = True) -> float:
    """Device-to-device copy bandwidth in GB/s: ``2 * nbytes`` (read + write) / median time of the
    faster of two copies of ``nbytes`` bytes, timed with :func:`gdnlab.instrument.time_calls`
    (``single``: one copy per CUDA-graph replay; on CPU the wall clock): ``dst.copy_(src)`` (a
    ``cudaMemcpyAsync``, served by the copy path that does not reach HBM peak on Hopper) and
    ``torch.mul(src, 1, out=dst)`` (an elementwise SM kernel, the path a GDN commit kernel takes)."""
    from ..instrument import time_calls

    n = max(1, int(nbytes) // 4)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for copy in (lambda: dst.copy_(src), lambda: torch.mul(src, 1.0, out=dst)):
        tm = time_calls(lambda k, c=copy: [c] * k, timing="single", warmup=3, repeats=repeats,
                        l2_flush=l2_flush, device=device)
        if tm.median_us > 0:
            best = min(best, tm.median_us)
    return 2 * n * 4 / (best * 1e-6) / 1e9 if best < float("inf") else float("nan")


def _supports(s, pt: SweepPoint, ctx, sd: torch.dtype, act: torch.dtype) -> tuple[bool, str]:
    """The strategy's own ``supports(...)`` where it has one (FlashInfer's wrappers), else yes."""
    fn = getattr(s, "supports", None)
    if not callable(fn):
        return True, "ok"
    sm = torch.cuda.get_device_capability(ctx.device) if ctx.device.type == "cuda" else None
    sh = pt.shape
    return fn(sd, pt.draft_tokens, pt.batch, sm, HV=sh.HV, K=sh.K, V=sh.V, act_dtype=act)


def _step_roofline(row: dict, s, pt: SweepPoint, sd: torch.dtype, act: torch.dtype, ctx: MeasureContext) -> Any:
    """Bytes of one step at the point's accept length (:meth:`VerifyStrategy.bytes_moved`), scratch and
    memory, FLOPs, and the floors (whole step, verify and commit at the copy bandwidth)."""
    from ..roofline import gdn_flops

    shape, B, T = pt.shape, pt.batch, pt.draft_tokens
    by = s.bytes_moved(shape, B, T, pt.accept_len, state_dtype=sd, act_dtype=act)
    scratch = int(s.scratch_bytes(shape, B, T, pt.pool_slots, state_dtype=sd))
    pool = pt.pool_slots * shape.HV * shape.V * shape.K * torch.empty((), dtype=sd).element_size()
    row.update(bytes=int(round(by.total)), bytes_state=int(round(by.state_read + by.state_write)),
               bytes_intermediate=int(round(by.scratch_read + by.scratch_write)), bytes_verify=float(by.verify),
               bytes_commit=float(by.commit), bytes_fold=float(by.fold), scratch_bytes=scratch,
               memory_bytes=int(pool + scratch), flops=gdn_flops(shape, B, T))
    copy = ctx.copy_bw_gbps
    floors(row, by.total, ctx.peak_gbps, copy)
    if copy == copy and copy > 0:
        row["verify_floor_us"] = by.verify / (copy * 1e9) * 1e6
        row["commit_floor_us"] = by.commit / (copy * 1e9) * 1e6
    return by


def _check_batch(pt: SweepPoint, ctx, s, sd, act) -> int | None:
    """The largest batch of ``pt``'s group the strategy supports (at most ``check_batch`` when set)."""
    from dataclasses import replace

    cfg = ctx.cfg
    ok = [b for b in cfg.strategy_batches if _supports(s, replace(pt, batch=b), ctx, sd, act)[0]]
    capped = [b for b in ok if cfg.check_batch is None or b <= cfg.check_batch]
    return max(capped) if capped else (min(ok) if ok else None)


def run_check(pt: SweepPoint, ctx, s, sd: torch.dtype, act: torch.dtype) -> StrategyCheckResult:
    """:func:`gdnlab.strategies.check.check_strategy` for ``pt``'s group, once per run (cached in
    ``ctx.checks``); a failure to run is recorded in the summary, never raised (except
    ``KeyboardInterrupt``)."""
    from ..strategies.check import check_strategy

    cfg = ctx.cfg
    each = cfg.check_batch is None                   # each point at its own batch
    key = (*pt.group(), pt.batch) if each else pt.group()
    if key in ctx.checks:
        return ctx.checks[key]
    B = pt.batch if each else _check_batch(pt, ctx, s, sd, act)
    res = StrategyCheckResult(batch=B, steps=cfg.check_steps)
    t0 = time.perf_counter()
    try:
        if B is None:
            res.summary = "not checked: no batch of the grid is supported"
        else:
            chk = check_strategy(s, pt.shape, batch=B, T=pt.draft_tokens, steps=cfg.check_steps, state_dtype=sd,
                                 act_dtype=act, device=ctx.device, seed=cfg.seed)
            res.ok = bool(chk.ok)
            res.tol_ratio = max(chk.output_ratio + chk.state_ratio, default=0.0)
            res.output_err = max(chk.output_err, default=0.0)
            res.drift = float(chk.state_drift)
            res.summary = chk.summary()
    except torch.cuda.OutOfMemoryError as exc:
        res.summary = f"check failed: out of memory: {str(exc).strip()[:200]}"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded; the points still run (and say what fails)
        res.summary = f"check failed: {describe(exc)}"
    res.seconds = time.perf_counter() - t0
    ctx.checks[key] = res
    verdict = {True: "ok", False: "MISMATCH", None: "not run"}[res.ok]
    ctx.log(f"check {pt.backend}/{pt.strategy} {pt.state_dtype} T={pt.draft_tokens} B={B} x{cfg.check_steps} "
            f"steps: {verdict} ({res.seconds:.1f} s) {res.summary[:160]}")
    return res


def _bandwidths(row: dict, by, peak: float) -> None:
    def bw(nbytes: float, us) -> float | None:
        return nbytes / (us * 1e-6) / 1e9 if us is not None and us > 0 and nbytes > 0 else None

    row["bw_gbps"] = bw(by.total, row.get("step_us"))
    row["verify_bw_gbps"] = bw(by.verify, row.get("verify_us"))
    row["commit_bw_gbps"] = bw(by.commit, row.get("commit_us"))
    row["tflops"] = row["flops"] / (row["step_us"] * 1e-6) / 1e12 if row.get("step_us") else None
    if peak == peak and peak > 0:
        for src, dst in (("bw_gbps", "pct_of_peak_bw"), ("verify_bw_gbps", "verify_pct_of_peak_bw"),
                         ("commit_bw_gbps", "commit_pct_of_peak_bw")):
            if row.get(src) is not None:
                row[dst] = 100.0 * row[src] / peak


def measure_step_point(pt: SweepPoint, ctx: MeasureContext) -> dict:
    """Run one step point and return its row (:data:`gdnlab.results.COLUMNS`); see the module
    docstring. Never raises for a failing strategy (``KeyboardInterrupt`` excepted)."""
    row = base_row(pt, ctx)
    with recorded_outcome(row):
        _measure(pt, ctx, row)
    return row


def _measure(pt: SweepPoint, ctx: MeasureContext, row: dict) -> None:
    cfg = ctx.cfg
    sd, act = dtype_from_name(pt.state_dtype), dtype_from_name(pt.act_dtype)
    s, why = ctx.strategy(pt.backend, pt.strategy)
    if s is None:
        row["status"] = f"unsupported: {why}"
        return
    row["backend_options"] = json.dumps({**s.roofline_options(), **cfg.strategy_options.get(pt.backend, {})},
                                        sort_keys=True, default=str)
    ok, why = _supports(s, pt, ctx, sd, act)
    if not ok:
        row["status"] = f"unsupported: {why}"
        return
    by = _step_roofline(row, s, pt, sd, act, ctx)
    if cfg.check:
        chk = run_check(pt, ctx, s, sd, act)
        row.update(correct=chk.ok, tol_ratio=chk.tol_ratio, max_abs_err=chk.output_err, state_drift=chk.drift,
                   check_batch=chk.batch, check_steps=chk.steps, check_summary=chk.summary or None)
    run = _StepRun.make(pt, ctx, s, sd, act)
    row["row_sets"] = len(run.rows)
    row["intermediate_call"] = f"{pt.backend} {pt.strategy}: verify + commit (validate=False)"
    inter = getattr(run.scratch, "intermediate", None)
    if isinstance(inter, torch.Tensor):
        row["intermediate_dtype"] = dtype_name(inter.dtype)
        row["intermediate_rows"] = int(inter.shape[0])
    if not first_call(row, run.first_step, ctx.device)[0]:
        return
    row["kernel"] = f"{pt.backend}:{pt.strategy}"
    row["kernel_path"] = _kernel_path(s)
    _time_phases(pt, ctx, row, run)
    _bandwidths(row, by, ctx.peak_gbps)
    row["status"] = "ok"


@dataclass
class _StepRun:
    """A step point's strategy on its pool: row sets (rotating), scratch, inputs and one accepted
    vector per step of a sample; builds the calls of :func:`gdnlab.harness_calls.disjoint_calls`."""

    s: Any
    pool: torch.Tensor
    rows: RowSets
    scratch: Any
    args: tuple
    accepted: list

    @classmethod
    def make(cls, pt: SweepPoint, ctx: MeasureContext, s, sd: torch.dtype, act: torch.dtype) -> _StepRun:
        """Pool of ``capacity`` requests, ``min(steps, capacity // B)`` disjoint sets of B requests
        (scattered), a fresh scratch, the inputs and the accepted vectors (drawn on the device)."""
        from ..acceptance import sample_accepted

        cfg, B, T = ctx.cfg, pt.batch, pt.draft_tokens
        pool = ctx.step_pool(pt.shape, sd, pt.pool_slots)
        cap, n_steps = cfg.strategy_capacity, cfg.steps_per_sample
        rows = row_sets(ctx, cap, B, count=max(1, min(n_steps, cap // B)), rotate=True)
        scratch = s.allocate(pool, max_batch=B, T=T)
        dgen = torch.Generator(device=ctx.device).manual_seed(cfg.seed + 17 * B + T)
        accepted = [sample_accepted(B, T, pt.accept_len, dgen) for _ in range(n_steps)]
        return cls(s, pool, rows, scratch, point_inputs(pt, ctx), accepted)

    def first_step(self) -> None:
        """One validated eager step on the first row set (JIT compilation happens here)."""
        self.s.verify(*self.args, self.pool, self.rows[0], self.scratch)
        self.s.commit(self.pool, self.rows[0], self.scratch, self.accepted[0])

    def step(self, rows: torch.Tensor, j: int) -> Callable[[], None]:
        """Step ``j``: verify, then commit accepted vector ``j`` (capturable)."""
        s, acc = self.s, self.accepted[j % len(self.accepted)]

        def call() -> None:
            s.verify(*self.args, self.pool, rows, self.scratch, validate=False)
            s.commit(self.pool, rows, self.scratch, acc, validate=False)
        return call

    def verify(self, rows: torch.Tensor, j: int) -> Callable[[], Any]:
        return lambda: self.s.verify(*self.args, self.pool, rows, self.scratch, validate=False)

    def commit(self, rows: torch.Tensor, j: int) -> Callable[[], None]:
        acc = self.accepted[j % len(self.accepted)]
        return lambda: self.s.commit(self.pool, rows, self.scratch, acc, validate=False)


def _time_phases(pt: SweepPoint, ctx: MeasureContext, row: dict, run: _StepRun) -> None:
    """``step_us`` (a graph of consecutive steps), ``verify_us`` and ``commit_us`` (graphs of each
    alone, or the rest of the step), ``fold_us`` and ``split_method`` (module docstring)."""
    from ..instrument import time_calls

    cfg, name = ctx.cfg, pt.strategy
    tm = time_calls(disjoint_calls(run.step, run.rows), timing="amortised", min_sample_us=1e12,
                    max_calls=cfg.steps_per_sample, warmup=cfg.warmup, repeats=cfg.repeats, l2_flush=pt.l2_flush,
                    device=ctx.device)
    timing_columns(row, tm)
    row["step_us"] = tm.median_us
    facts = strategy_class(name)
    if facts.separable_verify:
        row["verify_us"] = time_point(pt, ctx, disjoint_calls(run.verify, run.rows), cfg.max_calls).median_us
    row["commit_us"] = time_point(pt, ctx, disjoint_calls(run.commit, run.rows), cfg.max_calls).median_us  # last
    method = "step: graph of consecutive steps; commit: graph of commits alone; "
    if facts.separable_verify:
        method += "verify: graph of verifies alone"
        if facts.folds:
            rest = row["step_us"] - row["verify_us"] - row["commit_us"]
            if rest >= 0:
                row["fold_us"] = rest
                method += " (no fold due); fold: step - verify - commit"
            else:  # e.g. FlashInfer's ring kernel folds inside its verify: nothing left to attribute
                method += f"; fold: not separable (step - verify - commit = {rest:.1f} us < 0)"
    else:
        row["verify_us"] = row["step_us"] - row["commit_us"]
        method += "verify: step - commit (its verify replays what the previous commit accepted)"
    row["split_method"] = method


def _kernel_path(s) -> str:
    """What the strategy launched last (FlashInfer: its ``last_path``; Triton: the ops' last launch)."""
    rec: dict[str, Any] = {"strategy": s.name, "backend": s.backend, "launches": s.kernels_per_step}
    path = getattr(s, "last_path", None)
    if path is not None and hasattr(path, "as_dict"):
        rec["last_path"] = path.as_dict()
    launch = getattr(getattr(s, "ops", None), "last_launch", None)
    if launch:
        rec["last_launch"] = launch
    return json.dumps(rec, default=str, sort_keys=True)
