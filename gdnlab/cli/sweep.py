"""``gdnlab sweep``: time backends over batch x mode (decode / verify T x strategy) x state dtype
into a parquet file (:mod:`gdnlab.sweep`), one row per point (:data:`gdnlab.results.COLUMNS`).

Lists take commas or spaces: ``--batches 1,4,16`` or ``--batches 1 4 16``.

Storage: every finished point is kept as it completes; a killed run keeps its completed points
and ``--resume`` runs only the rest (into the same GPU's file only). ``--overwrite`` replaces
``--out`` only when the new run completes: until then the earlier file stays as it was (``--resume``
continues such an unfinished run). Read the file with :func:`gdnlab.results.load_sweep`.

Examples::

    gdnlab sweep --out out/sweep.parquet
    gdnlab sweep --backends triton --batches 1,64,256 --modes verify --draft-tokens 4 --resume
    gdnlab sweep --timing amortised,single,eager --state-dtypes bfloat16 --overwrite
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable

from ..errors import InputError

__all__ = ["configure_parser", "run", "config_from_args"]


#: earlier names of a timing method (``graph``: one call per CUDA-graph replay, now ``single``)
_TIMING_ALIASES = {"graph": "single"}


def _split(values: str | Iterable[str] | None) -> list[str]:
    out: list[str] = []
    for v in [values] if isinstance(values, str) else values or []:
        out += [s.strip() for s in str(v).split(",") if s.strip()]
    return out


def _ints(flag: str, values: Iterable[str] | None) -> list[int]:
    items = _split(values)
    try:
        return [int(s) for s in items]
    except ValueError:
        raise InputError(f"{flag} takes integers (e.g. 1,4,16), got {','.join(items)}") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The options of ``gdnlab sweep``."""
    from ..sweep import DEFAULT_BATCHES, DEFAULT_PRESET, MODES, STRATEGIES, TIMINGS

    def lst(text: str) -> str:
        return f"{text} (comma or space separated)"

    g = parser.add_argument_group("grid")
    g.add_argument("--backends", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help=lst("kernel backends; default: every available one except reference"))
    g.add_argument("--batches", nargs="+", metavar="B", default=",".join(map(str, DEFAULT_BATCHES)),
                   help=lst("batch sizes B (rows per call)"))
    g.add_argument("--modes", nargs="+", metavar="MODE", default=",".join(MODES), help=lst("decode and/or verify"))
    g.add_argument("--draft-tokens", nargs="+", metavar="T", default="2,4,8",
                   help=lst("draft tokens T of verify points (each >= 2)"))
    g.add_argument("--strategies", nargs="+", metavar="NAME", default=",".join(STRATEGIES),
                   help=lst("verify strategies: full_cache (batch-scoped intermediate buffer) and/or "
                            "full_cache_pool_scoped (pool-sized buffer, SGLang before PR #23273)"))
    g.add_argument("--state-dtypes", nargs="+", metavar="DTYPE", default="float32,bfloat16",
                   help=lst("state pool dtypes: float32, bfloat16"))
    g.add_argument("--presets", nargs="+", metavar="NAME@tpN", default=DEFAULT_PRESET,
                   help=lst("model presets, sharded per GPU"))
    g.add_argument("--act-dtype", default="bfloat16", help="dtype of q, k, v, a, b and the output")
    g.add_argument("--pool-capacity", type=int, default=argparse.SUPPRESS,
                   help="request slots of the state pool (default: the largest batch)")
    t = parser.add_argument_group("timing")
    t.add_argument("--timing", nargs="+", metavar="METHOD", default="amortised",
                   help=lst(f"one or more of {', '.join(TIMINGS)}: amortised = n calls on disjoint pool rows in "
                            "one CUDA graph, time per call = sample / n; single = one call per graph replay; "
                            "eager = one host call per sample (graph, the earlier name of single, is accepted)"))
    t.add_argument("--max-calls", type=int, default=64, help="most calls in one amortised sample")
    t.add_argument("--min-sample-us", type=float, default=50.0,
                   help="an amortised sample holds enough calls to last at least this long (µs)")
    t.add_argument("--buffer-budget-gb", type=float, default=8.0,
                   help="GB of extra verify intermediate buffers an amortised point may allocate")
    t.add_argument("--warmup", type=int, default=5, help="untimed calls (or replays) before timing")
    t.add_argument("--repeats", type=int, default=40, help="timed samples per point")
    t.add_argument("--no-l2-flush", action="store_true", help="do not flush L2 before each timed sample")
    r = parser.add_argument_group("run")
    r.add_argument("--device", default=argparse.SUPPRESS, help="cuda, cuda:N or cpu (default: cuda when available)")
    r.add_argument("--engine", choices=("sglang", "none"), default="sglang",
                   help="make backends with the options this engine runs them with (none: gdnlab's contract)")
    r.add_argument("--no-check", action="store_true", help="skip the comparison of each first call with the reference")
    r.add_argument("--seed", type=int, default=0, help="seed of the pool fill, the row placement and the inputs")
    r.add_argument("--out", default=None,
                   help="result .parquet file or a directory (default: $GDNLAB_OUT/sweep.parquet, else "
                        "out/sweep.parquet)")
    r.add_argument("--resume", action="store_true",
                   help="continue --out: skip points already stored (also those of a killed run)")
    r.add_argument("--retry-failed", action="store_true", help="with --resume: run oom/error points again")
    r.add_argument("--overwrite", action="store_true",
                   help="replace --out once this run completes (the earlier file stays until then)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    """The :class:`gdnlab.sweep.SweepConfig` the options describe."""
    from ..shapes import dtype_name
    from ..sweep import SweepConfig

    def names(values: str | Iterable[str], conv: Callable[[str], str] = str.lower) -> list[str]:
        return [conv(s) for s in _split(values)]

    def dtypes(flag: str, values: str | Iterable[str]) -> list[str]:
        try:
            return names(values, dtype_name)
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{flag}: expected float32/bfloat16 (or fp32/bf16), got {','.join(_split(values))}") \
                from None

    backends = getattr(args, "backends", None)
    return SweepConfig(
        backends=names(backends) if backends else None, batches=_ints("--batches", args.batches),
        modes=names(args.modes), draft_tokens=_ints("--draft-tokens", args.draft_tokens),
        strategies=names(args.strategies), state_dtypes=dtypes("--state-dtypes", args.state_dtypes),
        presets=_split(args.presets), timings=[_TIMING_ALIASES.get(t, t) for t in names(args.timing)],
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
    t0 = time.perf_counter()
    df = run_sweep(cfg, out, resume=args.resume, overwrite=args.overwrite, retry_failed=args.retry_failed,
                   progress=not args.no_progress)
    wall = time.perf_counter() - t0
    this = df[df["sweep_id"] == df.attrs.get("sweep_id")]
    jit_s = float(this["first_call_ms"].fillna(0).sum()) / 1e3 if len(this) else 0.0
    print(summary_table(df))
    print(f"sweep: {len(this)} points run now in {wall:.1f} s wall (first calls incl. JIT {jit_s:.1f} s); "
          f"{len(df)} rows in {out}")
    return 0
