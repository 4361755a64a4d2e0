"""``gdnlab sweep``: time backend kernel calls (batch x mode (decode / verify T x buffer scope) x state
dtype) and verify strategies' whole steps (strategy x batch x T x accept length x state dtype) into
a parquet file (:mod:`gdnlab.sweep`), one row per point (:data:`gdnlab.results.COLUMNS`; ``measure``
says which: ``call`` or ``step``).

Lists are comma-separated (``--batches 1,4,16``). ``--strategies none`` runs the call grid only,
``--modes none`` the step grid only.

Storage: every finished point is kept as it completes; a killed run keeps its completed points
and ``--resume`` runs only the rest (into the same GPU's file only). ``--overwrite`` replaces
``--out`` only when the new run completes: until then the earlier file stays as it was (``--resume``
continues such an unfinished run). Read the file with :func:`gdnlab.results.load_sweep`.

Examples::

    gdnlab sweep --out out/sweep.parquet
    gdnlab sweep --backends triton --batches 1,64,256 --modes verify --draft-tokens 4 --strategies none --resume
    gdnlab sweep --modes none --strategies full_cache,replay_ring --strategy-draft-tokens 2,4,8 --accept-len 2.5,3.17
    gdnlab sweep --timing amortised,single,eager --state-dtypes bfloat16 --overwrite
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable

from ..errors import InputError
from . import _registry as R
from ._args import list_option, option, parse_list, split_list

__all__ = ["configure_parser", "run", "config_from_args"]


#: earlier names of a timing method (``graph``: one call per CUDA-graph replay, now ``single``)
_TIMING_ALIASES = {"graph": "single"}


def _names_or_none(values: str | Iterable[str], all_names: Iterable[str] = ()) -> list[str]:
    """Lower-case names; ``none`` alone -> ``[]``; ``all`` -> ``all_names``."""
    items = [s.lower() for s in split_list(values)]
    if items == ["none"]:
        return []
    if items == ["all"]:
        return list(all_names)
    return items


def _accept_lens(args: argparse.Namespace) -> list[float]:
    """``--accept-len``'s values; without it the default, or none when ``--accept-curve`` names the levels."""
    if args.accept_len is None:
        return [] if args.accept_curve else [R.SWEEP_DEFAULT_ACCEPT_LEN]
    return parse_list(args.accept_len, float, flag="--accept-len")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The options of ``gdnlab sweep`` (lists: commas, or spaces as earlier scripts give them)."""
    def lst(group, flag: str, metavar: str, **kw) -> None:
        list_option(group, flag, metavar=metavar, spaces=True, **kw)

    g = parser.add_argument_group("call grid (one backend kernel call per point)")
    lst(g, "--backends", "NAME", default=argparse.SUPPRESS, valid=R.kernel_backends(),
        shown_default="every available one except reference", help="kernel backends")
    lst(g, "--batches", "B", default=R.SWEEP_DEFAULT_BATCHES, help="batch sizes B (rows per call)")
    lst(g, "--modes", "MODE", default=R.SWEEP_MODES, valid=(*R.SWEEP_MODES, "none"),
        help="kernel calls to time; none: no call grid")
    lst(g, "--draft-tokens", "T", default=(2, 4, 8), help="draft tokens T of verify points (each >= 2)")
    list_option(g, "--buffer-scopes", "--call-strategies", dest="buffer_scopes", metavar="SCOPE", spaces=True,
                default=R.SWEEP_BUFFER_SCOPES, valid=R.SWEEP_BUFFER_SCOPES,
                help="intermediate buffers of verify calls: batch ([B,T,HV,V,K]), pool (pool-sized; SGLang before "
                     "PR #23273); --call-strategies full_cache,full_cache_pool_scoped is the earlier spelling")
    s_ = parser.add_argument_group("step grid (one speculative step of a verify strategy per point)")
    lst(s_, "--strategies", "NAME", default="all", valid=(*R.STRATEGIES, "all", "none"),
        help="verify strategies; all; none: no step grid. A step is verify + commit (+ the amortised fold) on "
             "consecutive steps")
    lst(s_, "--strategy-backends", "NAME", default=argparse.SUPPRESS, valid=R.strategy_backends(),
        shown_default="every one with an available strategy except reference", help="strategy backends")
    lst(s_, "--strategy-batches", "B", default=R.SWEEP_DEFAULT_STRATEGY_BATCHES, help="batch sizes B of step points")
    lst(s_, "--strategy-draft-tokens", "T", default=(4,), help="draft tokens T of step points (each >= 2)")
    lst(s_, "--accept-len", "A", default=None, shown_default=(R.SWEEP_DEFAULT_ACCEPT_LEN,),
        help="mean accept lengths (tokens kept per step, 1..T; above T: clipped to T) the accepted vectors are "
             "drawn with")
    s_.add_argument("--accept-curve", default=None, metavar="CURVE",
                    help="also measure each T at this acceptance curve's accept length: a reported curve's name "
                         "(gdnlab/data/acceptance_curves.csv) or a CSV/parquet file (draft_tokens, accept_len); "
                         "without --accept-len only the curve's")
    s_.add_argument("--steps-per-sample", type=int, default=16,
                    help="consecutive steps in one timed CUDA graph (time per step = sample / steps)")
    s_.add_argument("--check-steps", type=int, default=8,
                    help="steps of the correctness check run once per backend, strategy, state dtype and T")
    option(s_, "--check-batch", type=int, default=argparse.SUPPRESS, help="B of that check",
           shown_default="the largest step batch the strategy supports")
    option(s_, "--copy-mib", type=float, default=argparse.SUPPRESS,
           help="MiB of the device-to-device copy that measures the copy bandwidth once per run",
           shown_default="1024 on CUDA, 16 on CPU")
    b = parser.add_argument_group("both grids")
    lst(b, "--state-dtypes", "DTYPE", default=R.STATE_DTYPES, valid=R.STATE_DTYPES,
        help="state pool dtypes (fp32, bf16 also accepted)")
    lst(b, "--presets", "NAME@tpN", default=(R.SWEEP_DEFAULT_PRESET,), valid=R.preset_choices(),
        help="model presets, sharded per GPU (NAME or NAME@tpN)")
    option(b, "--act-dtype", default="bfloat16", valid=R.ACT_DTYPES, help="dtype of q, k, v, a, b and the output")
    option(b, "--pool-capacity", type=int, default=argparse.SUPPRESS, help="request slots of the state pools",
           shown_default="4x the largest batch for kernel calls, so amortised samples have disjoint rows; the "
                         "largest batch for strategy steps, whose token_slots pools hold 1 + T rows per request")
    t = parser.add_argument_group("timing")
    lst(t, "--timing", "METHOD", default=("amortised",), valid=R.SWEEP_TIMINGS,
        help="timing of the call grid (step points: amortised): amortised = n calls on disjoint pool rows in one "
             "CUDA graph, time per call = sample / n; single = one call per graph replay; eager = one host call "
             "per sample (graph, the earlier name of single, is accepted)")
    t.add_argument("--max-calls", type=int, default=R.DEFAULT_MAX_CALLS, help="most calls in one amortised sample")
    t.add_argument("--min-sample-us", type=float, default=R.DEFAULT_MIN_SAMPLE_US,
                   help="an amortised sample holds enough calls to last at least this long (µs)")
    t.add_argument("--buffer-budget-gb", type=float, default=8.0,
                   help="GB of extra verify intermediate buffers an amortised point may allocate")
    t.add_argument("--warmup", type=int, default=5, help="untimed calls (or replays) before timing")
    t.add_argument("--repeats", type=int, default=40, help="timed samples per point (per graph of a step point)")
    t.add_argument("--no-l2-flush", action="store_true", help="do not flush L2 before each timed sample")
    r = parser.add_argument_group("run")
    option(r, "--device", default=argparse.SUPPRESS, valid=R.DEVICES, shown_default="cuda when available",
           help="device to run on")
    r.add_argument("--engine", choices=("sglang", "none"), default="sglang",
                   help="make backends with the options this engine runs them with (none: gdnlab's contract)")
    r.add_argument("--no-check", action="store_true",
                   help="skip the comparison of each first call with the reference and the strategy checks")
    r.add_argument("--seed", type=int, default=0, help="seed of the pool fill, the row placement and the inputs")
    option(r, "--out", default=None, help="result .parquet file or a directory",
           shown_default="$GDNLAB_OUT/sweep.parquet, else out/sweep.parquet")
    r.add_argument("--resume", action="store_true",
                   help="continue --out: skip points already stored (also those of a killed run)")
    r.add_argument("--retry-failed", action="store_true", help="with --resume: run oom/error points again")
    r.add_argument("--overwrite", action="store_true",
                   help="replace --out once this run completes (the earlier file stays until then)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    """The :class:`gdnlab.sweep.SweepConfig` the options describe."""
    from ..shapes import dtype_name
    from ..sweep import STEP_STRATEGIES, SweepConfig

    def names(values: str | Iterable[str], conv: Callable[[str], str] = str.lower) -> list[str]:
        return [conv(s) for s in split_list(values)]

    def dtypes(flag: str, values: str | Iterable[str]) -> list[str]:
        try:
            return names(values, dtype_name)
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{flag}: expected float32/bfloat16 (or fp32/bf16), got {','.join(split_list(values))}") \
                from None

    from ..results import SCOPE_OF_CALL_STRATEGY

    backends = getattr(args, "backends", None)
    sbackends = getattr(args, "strategy_backends", None)
    return SweepConfig(
        backends=names(backends) if backends else None, batches=parse_list(args.batches, int, flag="--batches"),
        modes=_names_or_none(args.modes), draft_tokens=parse_list(args.draft_tokens, int, flag="--draft-tokens"),
        buffer_scopes=[SCOPE_OF_CALL_STRATEGY.get(s, s) for s in names(args.buffer_scopes)],
        strategies=_names_or_none(args.strategies, STEP_STRATEGIES),
        strategy_backends=names(sbackends) if sbackends else None,
        strategy_batches=parse_list(args.strategy_batches, int, flag="--strategy-batches"),
        strategy_draft_tokens=parse_list(args.strategy_draft_tokens, int, flag="--strategy-draft-tokens"),
        accept_lens=_accept_lens(args), accept_curve=args.accept_curve, steps_per_sample=args.steps_per_sample,
        check_steps=args.check_steps, check_batch=getattr(args, "check_batch", None),
        copy_mib=getattr(args, "copy_mib", None),
        state_dtypes=dtypes("--state-dtypes", args.state_dtypes),
        presets=split_list(args.presets), timings=[_TIMING_ALIASES.get(t, t) for t in names(args.timing)],
        max_calls=args.max_calls,
        min_sample_us=args.min_sample_us, buffer_budget_gb=args.buffer_budget_gb, l2_flush=not args.no_l2_flush,
        warmup=args.warmup, repeats=args.repeats, act_dtype=dtypes("--act-dtype", args.act_dtype)[0],
        pool_capacity=getattr(args, "pool_capacity", None), device=getattr(args, "device", None),
        check=not args.no_check, seed=args.seed,
        engine=None if args.engine == "none" else args.engine)


def run(args: argparse.Namespace) -> int:
    from ..results import resolve_output
    from ..sweep import run_sweep, summary_table

    if args.resume and args.overwrite:
        raise InputError("pass --resume or --overwrite, not both")
    if args.retry_failed and not args.resume:
        raise InputError("--retry-failed goes with --resume")
    cfg = config_from_args(args)
    out = resolve_output(args.out or os.path.join(os.environ.get("GDNLAB_OUT", "out"), "sweep.parquet"))
    if out.exists() and not out.is_file():          # a FIFO would block the --resume read forever
        raise InputError(f"--out {out} is not a regular file (a pipe, socket or device); expected a .parquet "
                         "sweep file or a folder")
    t0 = time.perf_counter()
    df = run_sweep(cfg, out, resume=args.resume, overwrite=args.overwrite, retry_failed=args.retry_failed,
                   progress=not args.no_progress)
    wall = time.perf_counter() - t0
    this = df[df["sweep_id"] == df.attrs.get("sweep_id")]
    jit_s = float(this["first_call_ms"].fillna(0).sum()) / 1e3 if len(this) else 0.0
    print(summary_table(df))
    copy = df.attrs.get("copy_bw_gbps", float("nan"))
    print(f"sweep: {len(this)} points run now in {wall:.1f} s wall (first calls incl. JIT {jit_s:.1f} s; "
          f"copy bandwidth {copy:.0f} GB/s); {len(df)} rows in {out}")
    return 0
