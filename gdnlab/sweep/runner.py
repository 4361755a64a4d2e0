"""Running a sweep: every check first, then the points, each stored as soon as it is measured.

:func:`run_sweep` checks the settings, the device, the output (exists? another GPU's? not a
sweep?) and that every backend can run here *before* measuring anything, then measures the points
(:func:`gdnlab.sweep.point.measure_point` for kernel calls, :func:`gdnlab.sweep.step.measure_step_point`
for strategy steps) with a tqdm progress bar, storing each finished point
with :class:`gdnlab.results.SweepWriter`:

* a killed run keeps every completed point (``--resume`` skips them and runs the rest);
* ``resume`` continues a file (or an unfinished run) measured on the same GPU (another GPU's file
  is a :class:`~gdnlab.errors.DataError`); with ``retry_failed`` points stored as ``oom`` /
  ``error`` run again and replace their rows;
* ``overwrite`` replaces the output only when the new run completes: a run that fails or is stopped
  leaves the earlier file as it was (``--resume`` then continues the new run, still replacing the
  earlier file only when it completes).

Before the points, the device-to-device copy bandwidth is measured once
(:func:`gdnlab.sweep.step.copy_bandwidth`, ``copy_mib`` MiB): every row of the run carries it
(``copy_bw_gbps``, also ``df.attrs["copy_bw_gbps"]``) so floors at the bandwidth a copy reaches can
be computed from the data.

Time budget: the default call grid on an H100 is 2 backends x 98 points; after JIT warm-up a call
point costs ~0.1-0.4 s (checked call + reference, graph capture, 5 + 40 replays). A step point
times three graphs (~0.2-0.6 s); each (backend, strategy, state dtype, T) adds one correctness check
(``check_steps`` steps at the largest batch, ~1-3 s at the real shape, JIT included).
``first_call_ms`` shows where JIT compilation went.
"""
from __future__ import annotations

import datetime as _dt
import gc
import os
import sys
import uuid
from collections.abc import Callable

import pandas as pd
import torch

from ..errors import InputError, SweepInterrupted, UnavailableError
from ..instrument import resolve_device
from ..outputs import Terminated, stop_on_sigterm
from ..results import SweepWriter, point_key, resolve_output, to_frame
from ..strategies.registry import BASELINE
from .config import SweepConfig, SweepPoint, default_backends, default_strategy_backends, grid_points
from .context import MeasureContext
from .point import measure_point
from .step import copy_bandwidth, measure_step_point

__all__ = ["run_sweep", "summary_table", "SweepInterrupted"]

_STICKY = ("illegal memory access", "illegal address", "unspecified launch failure", "device-side assert",
           "misaligned address")


def _sweep_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{uuid.uuid4().hex[:8]}"


def run_sweep(cfg: SweepConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
              overwrite: bool = False, retry_failed: bool = False, on_row: Callable[[dict], None] | None = None,
              progress: bool = True, allow_mixed: bool | None = None) -> pd.DataFrame:
    """Run the grid; return every row of the output (stored ones included when resuming).

    Args:
        cfg: the grid and timing settings.
        out: a ``.parquet`` path or a directory (``sweep.parquet`` in it); ``None``: rows in memory only.
            The run holds ``out``'s lock (:func:`gdnlab.outputs.output_lock`) while it writes: a second
            run on the same file is refused (:class:`gdnlab.outputs.OutputBusyError`).
        resume: continue ``out``: skip points already stored (in it or in an unfinished run into it).
            A point is its grid values without the pool size (:data:`gdnlab.results.KEY_COLUMNS`).
        overwrite: replace ``out`` once this run completes. Without ``resume`` or ``overwrite`` an
            existing ``out`` is an error.
        retry_failed: with ``resume``, run again points stored as ``oom``/``error``.
        on_row: called with each row after it was stored (tests use it to simulate a kill).
        progress: show a tqdm progress bar on stderr.
        allow_mixed: with ``resume``, allow rows of another git commit in ``out``
            (:func:`gdnlab.results.load_sweep`).

    Returns:
        the rows (:func:`gdnlab.results.load_sweep` of ``out``); ``attrs["sweep_id"]`` names this run
        and ``attrs["points_run"]`` counts its points.

    Raises:
        SweepInterrupted: SIGTERM (or a sticky CUDA error); the completed points are stored. Ctrl-C
            stops the same way and raises ``KeyboardInterrupt``.
    """
    if resume and overwrite:
        raise InputError("pass resume or overwrite, not both")
    points = grid_points(cfg)
    device = resolve_device(cfg.device)
    path = resolve_output(out) if out is not None else None
    if path is not None and path.exists() and not (resume or overwrite):
        raise InputError(f"{path} exists: pass --resume to continue it or --overwrite to replace it")
    ctx = _context(cfg, device, points)
    with stop_on_sigterm():
        writer = None
        if path is not None:
            writer = SweepWriter(path, "resume" if resume else "overwrite" if overwrite else "new",
                                 gpu=ctx.prov["gpu"], commit=ctx.prov.get("git_commit"), allow_mixed=allow_mixed)
        try:
            done = writer.done_keys(retry_failed) if (writer is not None and resume) else set()
            todo = [p for p in points if point_key(p.key_row()) not in done]
            rows = _measure_points(ctx, todo, writer, on_row, progress)
        except Terminated:
            raise SweepInterrupted("stopped by SIGTERM; the completed points are stored: run again with --resume "
                                   "to continue") from None
        finally:
            if writer is not None:
                writer.close()
    df = writer.rows() if writer is not None else to_frame(rows)
    df.attrs["sweep_id"] = ctx.sweep_id
    df.attrs["points_run"] = len(todo)
    df.attrs["copy_bw_gbps"] = ctx.copy_bw_gbps
    return df


def _context(cfg: SweepConfig, device: torch.device, points: list[SweepPoint]) -> MeasureContext:
    """The run's :class:`MeasureContext` (provenance, datasheet peak, the reference backend), after
    checking that every backend of the grid can run here (before anything is measured or written)."""
    from ..hardware import detect
    from ..kernels import BackendUnavailable
    from ..kernels.reference import ReferenceBackend
    from ..provenance import collect

    prov = collect(device.index if device.type == "cuda" else None)
    if device.type != "cuda":
        prov = {**prov, "gpu": "cpu", "sm": None, "driver": None}
    spec = detect(device.index) if device.type == "cuda" else None
    ctx = MeasureContext(cfg=cfg, device=device, prov=prov, sweep_id=_sweep_id(),
                         peak_gbps=float(spec.peak_hbm_gbps) if spec else float("nan"))
    for name in dict.fromkeys(p.backend for p in points if p.measure == "call"):   # fail before measuring on a
        try:                                                                        # backend that cannot run
            ctx.backend(name)
        except BackendUnavailable as exc:
            raise UnavailableError(f"{exc} (available here: {', '.join(default_backends())})") from None
    _check_strategy_backends(points)
    ctx.reference = ReferenceBackend()
    return ctx


def _measure_points(ctx: MeasureContext, todo: list[SweepPoint], writer: SweepWriter | None,
                    on_row: Callable[[dict], None] | None, progress: bool) -> list[dict]:
    """Measure ``todo`` in order (the copy bandwidth first), storing each row as it completes (rows
    in memory when there is no ``writer``); the writer is finished however the loop ends."""
    rows: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="gdnlab sweep", unit="pt", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 10.0)   # a log file gets a line every 10 s
        ctx.log = lambda msg: tqdm.write(msg, file=sys.stderr)
    if todo:
        cfg, device = ctx.cfg, ctx.device
        mib = cfg.copy_mib if cfg.copy_mib is not None else (1024.0 if device.type == "cuda" else 16.0)
        ctx.copy_bw_gbps = copy_bandwidth(device, int(mib * 2**20), l2_flush=cfg.l2_flush)
        ctx.log(f"device-to-device copy of {mib:g} MiB: {ctx.copy_bw_gbps:.0f} GB/s "
                f"(datasheet peak {ctx.peak_gbps:.0f} GB/s)")
    complete = False
    try:
        for pt in todo:
            if bar is not None:
                bar.set_postfix_str(pt.label())
            row = _measure_one(ctx, pt)
            if writer is not None:
                writer.append(row)
            else:
                rows.append(row)
            if bar is not None:
                bar.update(1)
            if on_row is not None:
                on_row(row)
            status = str(row.get("status", ""))
            if any(m in status.lower() for m in _STICKY):
                raise SweepInterrupted(f"sticky CUDA error at {pt.label()}: {status}; the completed points are "
                                       f"stored: run again with --resume (a fresh process)")
        complete = True
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.finish(complete)
    return rows


def _measure_one(ctx: MeasureContext, pt: SweepPoint) -> dict:
    """One point's row; after a failed point its memory goes back to the device."""
    row = (measure_step_point if pt.measure == "step" else measure_point)(pt, ctx)
    status = str(row.get("status", ""))
    if status == "oom" or status.startswith("error"):
        gc.collect()                      # the point's tensors are gone now: give memory back
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _check_strategy_backends(points) -> None:
    """Raise :class:`UnavailableError` for a strategy backend of the grid none of whose strategies
    can run here (a single unavailable strategy becomes an ``unsupported`` row instead)."""
    from ..strategies import available_strategies

    for be in dict.fromkeys(p.backend for p in points if p.measure == "step"):
        st = available_strategies(be)
        if not any(s.available for s in st.values()):
            reasons = "; ".join(dict.fromkeys(s.reason for s in st.values()))
            raise UnavailableError(f"strategy backend {be!r} cannot run here: {reasons} (available here: "
                                   f"{', '.join(default_strategy_backends())})")


def summary_table(df: pd.DataFrame) -> str:
    """A compact text table: median µs per call (backend, mode, T, state dtype, buffer scope, timing) x
    batch for call rows; for step rows, µs per step by (backend, strategy) x batch for the first T,
    state dtype and accept length, with the ratio to ``full_cache`` and the checks' verdicts."""
    if df.empty:
        return "(no rows)"
    ok = df[df["status"] == "ok"]
    calls = ok[ok["measure"].fillna("call") == "call"]
    steps = ok[ok["measure"] == "step"]
    lines = [f"{len(df)} points: " + ", ".join(f"{k} {v}" for k, v in
                                              df["status"].str.split(":").str[0].value_counts().items())]
    fmt = ("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.1f}".format)
    if not calls.empty:
        piv = calls.pivot_table(index=["backend", "mode", "draft_tokens", "state_dtype", "buffer_scope", "timing"],
                                columns="batch", values="time_us", aggfunc="median")
        with pd.option_context(*fmt):
            lines.append("median µs per call:\n" + piv.to_string())
        pct = calls.groupby(["backend", "mode", "state_dtype"])["pct_of_peak_bw"].max()
        if pct.notna().any():
            with pd.option_context("display.float_format", "{:.0f}".format):
                lines.append("best % of peak HBM bandwidth:\n" + pct.to_string())
    if not steps.empty:
        lines += _step_summary(steps)
    for _, r in df[df["status"] != "ok"].head(12).iterrows():
        what = (f"step {r['strategy']} a={r['accept_len']:g}" if r.get("measure") == "step"
                else f"{r['mode']} ({r['buffer_scope']} buffer)" if r.get("mode") == "verify" else str(r["mode"]))
        lines.append(f"  {r['backend']} {what} T={r['draft_tokens']} {r['state_dtype']} B={r['batch']}: "
                     f"{r['status']}")
    return "\n".join(lines)


def _step_summary(steps: pd.DataFrame) -> list[str]:
    first = steps.sort_values(["draft_tokens", "state_dtype", "accept_len"]).iloc[0]
    T, sd, a = first["draft_tokens"], first["state_dtype"], first["accept_len"]
    sel = steps[(steps["draft_tokens"] == T) & (steps["state_dtype"] == sd) & (steps["accept_len"] == a)]
    fmt = ("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.1f}".format)
    piv = sel.pivot_table(index=["backend", "strategy"], columns="batch", values="step_us", aggfunc="median")
    out = []
    with pd.option_context(*fmt):
        out.append(f"µs per step (verify + commit + amortised fold), T={T}, {sd} state, accept length {a:g}:\n"
                   + piv.to_string())
    if BASELINE in piv.index.get_level_values("strategy"):
        ratio = piv.div(piv.xs(BASELINE, level="strategy"), level="backend")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                               "{:.2f}".format):
            out.append(f"step time / {BASELINE}'s (same backend):\n" + ratio.to_string())
    fc = sel[(sel["strategy"] == BASELINE) & sel["commit_floor_us"].notna() & (sel["commit_floor_us"] > 0)]
    if not fc.empty:
        r = (fc["commit_us"] / fc["commit_floor_us"]).groupby([fc["backend"], fc["batch"]]).median()
        out.append(f"{BASELINE} commit / its floor at the copy bandwidth: " +
                   ", ".join(f"{be} B={b}: {v:.2f}x" for (be, b), v in r.items()))
    chk = steps.drop_duplicates(["backend", "strategy", "state_dtype", "draft_tokens"])
    verdicts = [f"{r['backend']}/{r['strategy']} {r['state_dtype']} T={r['draft_tokens']}: "
                f"{'unchecked' if pd.isna(r['correct']) else 'ok' if bool(r['correct']) else 'MISMATCH'}"
                + (f" (drift {r['state_drift']:.2g})" if pd.notna(r["state_drift"]) else "")
                for _, r in chk.iterrows()]
    out.append("strategy checks: " + "; ".join(verdicts))
    return out
