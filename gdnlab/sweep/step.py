"""Measuring one step point: a verify strategy's speculative step (verify + commit + amortised fold).

A step point (:class:`gdnlab.sweep.config.SweepPoint` with ``measure="step"``) is one (strategy
backend, strategy, B, T, state dtype, accept length). :func:`measure_step_point`:

1. makes the strategy once per run (:func:`gdnlab.strategies.get_strategy`); a strategy that cannot
   run here, or declines these conditions (``supports(...)`` of FlashInfer's wrappers), gives a row
   with status ``"unsupported: <reason>"``;
2. writes the byte formulas (:meth:`VerifyStrategy.bytes_moved`, :func:`gdnlab.roofline.strategy_bytes`
   at the point's accept length) and the memory (:meth:`VerifyStrategy.scratch_bytes` + the pool);
3. checks correctness once per (preset, backend, strategy, state dtype, T) — not per point — with
   :func:`gdnlab.strategies.check.check_strategy` (``check_steps`` consecutive steps against the
   float64 reference decode, at the largest batch of the group the strategy supports, or
   ``check_batch``); every row of the group carries ``correct``, ``state_drift``, ``tol_ratio``;
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

from ..shapes import GDNShape, dtype_from_name, dtype_name
from ..strategies.registry import strategy_class
from .config import SweepPoint

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


def _roofline(row: dict, s, shape: GDNShape, pt: SweepPoint, sd: torch.dtype, act: torch.dtype,
              peak_gbps: float, copy_gbps: float) -> Any:
    from ..roofline import gdn_flops

    B, T = pt.batch, pt.draft_tokens
    by = s.bytes_moved(shape, B, T, pt.accept_len, state_dtype=sd, act_dtype=act)
    scratch = int(s.scratch_bytes(shape, B, T, pt.pool_slots, state_dtype=sd))
    pool = pt.pool_slots * shape.HV * shape.V * shape.K * torch.empty((), dtype=sd).element_size()
    row.update(bytes=int(round(by.total)), bytes_state=int(round(by.state_read + by.state_write)),
               bytes_intermediate=int(round(by.scratch_read + by.scratch_write)), bytes_verify=float(by.verify),
               bytes_commit=float(by.commit), bytes_fold=float(by.fold), scratch_bytes=scratch,
               memory_bytes=int(pool + scratch), flops=gdn_flops(shape, B, T), peak_bw_gbps=peak_gbps,
               copy_bw_gbps=copy_gbps)
    if peak_gbps == peak_gbps and peak_gbps > 0:
        row["floor_us"] = by.total / (peak_gbps * 1e9) * 1e6
    if copy_gbps == copy_gbps and copy_gbps > 0:
        row["copy_floor_us"] = by.total / (copy_gbps * 1e9) * 1e6
        row["verify_floor_us"] = by.verify / (copy_gbps * 1e9) * 1e6
        row["commit_floor_us"] = by.commit / (copy_gbps * 1e9) * 1e6
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

    key = pt.group()
    if key in ctx.checks:
        return ctx.checks[key]
    cfg = ctx.cfg
    B = _check_batch(pt, ctx, s, sd, act)
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
        from .point import _describe
        res.summary = f"check failed: {_describe(exc)}"
    res.seconds = time.perf_counter() - t0
    ctx.checks[key] = res
    verdict = {True: "ok", False: "MISMATCH", None: "not run"}[res.ok]
    ctx.log(f"check {pt.backend}/{pt.strategy} {pt.state_dtype} T={pt.draft_tokens} B={B} x{cfg.check_steps} "
            f"steps: {verdict} ({res.seconds:.1f} s) {res.summary[:160]}")
    return res


def _timing_row(row: dict, tm) -> None:
    row.update(time_us=tm.median_us, time_p10_us=tm.p10_us, time_p90_us=tm.p90_us, time_mean_us=tm.mean_us,
               time_min_us=tm.min_us, repeats=tm.repeats, calls_per_sample=int(tm.calls_per_sample),
               timing_method=tm.method, timing_note=tm.note or None, step_us=tm.median_us)


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


def measure_step_point(pt: SweepPoint, ctx) -> dict:
    """Run one step point and return its row (:data:`gdnlab.results.COLUMNS`); see the module
    docstring. Never raises for a failing strategy (``KeyboardInterrupt`` excepted)."""
    from ..acceptance import sample_accepted
    from ..inputs import make_inputs
    from .point import _base_row, _describe, _time_calls, recorded_outcome

    cfg, shape = ctx.cfg, pt.shape
    row = _base_row(pt, ctx)
    row["copy_bw_gbps"] = ctx.copy_bw_gbps
    sd, act = dtype_from_name(pt.state_dtype), dtype_from_name(pt.act_dtype)
    B, T, name = pt.batch, pt.draft_tokens, pt.strategy
    with recorded_outcome(row):
        s, why = ctx.strategy(pt.backend, name)
        if s is None:
            row["status"] = f"unsupported: {why}"
            return row
        row["backend_options"] = json.dumps({**s.roofline_options(), **cfg.strategy_options.get(pt.backend, {})},
                                            sort_keys=True, default=str)
        ok, why = _supports(s, pt, ctx, sd, act)
        if not ok:
            row["status"] = f"unsupported: {why}"
            return row
        by = _roofline(row, s, shape, pt, sd, act, ctx.peak_gbps, ctx.copy_bw_gbps)
        if cfg.check:
            chk = run_check(pt, ctx, s, sd, act)
            row.update(correct=chk.ok, tol_ratio=chk.tol_ratio, max_abs_err=chk.output_err, state_drift=chk.drift,
                       check_batch=chk.batch, check_steps=chk.steps, check_summary=chk.summary or None)

        # ---- pool, row sets, scratch, inputs, accepted vectors
        pool = ctx.step_pool(shape, sd, pt.pool_slots)
        cap = cfg.strategy_capacity
        n_steps = cfg.steps_per_sample
        R = max(1, min(n_steps, cap // B))
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + B)
        perm = torch.randperm(cap, generator=gen) + 1              # base slots 1..capacity, scattered
        sets = [perm[j * B:(j + 1) * B].to(torch.int32).to(ctx.device) for j in range(R)]
        row["row_sets"] = R
        scratch = s.allocate(pool, max_batch=B, T=T)
        x = make_inputs(shape, B, T, act_dtype=act, device=ctx.device, seed=cfg.seed + 31 * B + T)
        args = x.args()
        dgen = torch.Generator(device=ctx.device).manual_seed(cfg.seed + 17 * B + T)
        accepted = [sample_accepted(B, T, pt.accept_len, dgen) for _ in range(n_steps)]
        row["intermediate_call"] = f"{pt.backend} {name}: verify + commit (validate=False)"
        if hasattr(scratch, "intermediate") and isinstance(scratch.intermediate, torch.Tensor):
            row["intermediate_dtype"] = dtype_name(scratch.intermediate.dtype)
            row["intermediate_rows"] = int(scratch.intermediate.shape[0])

        # ---- one validated eager step (JIT compilation happens here)
        t0 = time.perf_counter()
        try:
            s.verify(*args, pool, sets[0], scratch)
            s.commit(pool, sets[0], scratch, accepted[0])
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
        except (NotImplementedError, ValueError) as exc:
            row["status"] = f"unsupported: {_describe(exc)}"
            return row
        row["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        row["kernel"] = f"{pt.backend}:{name}"
        row["kernel_path"] = _kernel_path(s)

        def steps(n: int) -> list[Callable[[], None]]:
            def one(j: int) -> Callable[[], None]:
                rows, acc = sets[j % R], accepted[j % n_steps]

                def call() -> None:
                    s.verify(*args, pool, rows, scratch, validate=False)
                    s.commit(pool, rows, scratch, acc, validate=False)
                return call
            return [one(j) for j in range(n)]

        def verifies(n: int) -> list[Callable[[], Any]]:
            return [(lambda r=sets[j % R]: s.verify(*args, pool, r, scratch, validate=False)) for j in range(n)]

        def commits(n: int) -> list[Callable[[], None]]:
            return [(lambda r=sets[j % R], a=accepted[j % n_steps]: s.commit(pool, r, scratch, a, validate=False))
                    for j in range(n)]

        from ..instrument import time_calls
        tm = time_calls(steps, timing="amortised", min_sample_us=1e12, max_calls=n_steps, warmup=cfg.warmup,
                        repeats=cfg.repeats, l2_flush=pt.l2_flush, device=ctx.device)
        _timing_row(row, tm)
        facts = strategy_class(name)
        if facts.separable_verify:
            row["verify_us"] = _time_calls(pt, ctx, verifies, cfg.max_calls).median_us
        row["commit_us"] = _time_calls(pt, ctx, commits, cfg.max_calls).median_us    # last: see module docstring
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
        _bandwidths(row, by, ctx.peak_gbps)
        row["status"] = "ok"
    return row


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
