"""``gdnlab plan``: the best verify setup (strategy, T, state dtype, GDN backend) per batch size, with
expected TPOT and throughput, their provenance, and the engine settings that select it.

Example: ``gdnlab plan --gpu h200 --preset qwen3.5-397b-a17b --tp 4 --accept-len 3.17``
(or ``--accept-table accept.csv`` with columns ``draft_tokens, accept_len``). Runs on CPU from the
shipped data: the component run in ``traces/<gpu>/``, that GPU's kernel sweep when present, else the
reference sweep projected by bandwidth.
"""
from __future__ import annotations

import argparse

from . import _registry as R
from ._args import input_file, list_option, option


def configure_parser(parser: argparse.ArgumentParser) -> None:
    option(parser, "--gpu", default="h200", valid=R.gpu_names(),
           help="GPU to plan for (any case; h100 = H100-SXM); its data is read from traces/<gpu>/")
    option(parser, "--preset", default=R.DEFAULT_PRESET, valid=R.preset_choices(),
           help="model preset the components were measured for")
    parser.add_argument("--tp", type=int, default=4, help="tensor-parallel degree")
    parser.add_argument("--accept-len", type=float, default=3.17,
                        help="mean accept length (tokens kept per verify step, 1..T) at --accept-len-draft-tokens")
    parser.add_argument("--accept-len-draft-tokens", type=int, default=4,
                        help="T at which --accept-len was measured (other T follow the one-rate chain model)")
    parser.add_argument("--accept-table", default=None,
                        help="measured accept length vs T (CSV/parquet: draft_tokens, accept_len)")
    list_option(parser, "--batches", "--batch", dest="batches", metavar="B", item=int, minimum=1,
                default=[1, 4, 16, 64, 128, 256], help="concurrency buckets (running requests B)")
    list_option(parser, "--draft-tokens", metavar="T", item=int, minimum=1, default=[2, 4, 8],
                help="draft tokens T to consider (only those the sweep measured are priced)")
    list_option(parser, "--strategies", metavar="NAME", default=None, valid=R.STRATEGIES, shown_default="all priced",
                help="verify strategies to consider")
    list_option(parser, "--state-dtypes", metavar="DTYPE", default=None, valid=R.STATE_DTYPES,
                shown_default="all priced", help="state dtypes to consider")
    parser.add_argument("--ctx", type=float, default=1024.0, help="context tokens per running request")
    option(parser, "--components", default=None, help="component run folder", shown_default="traces/<gpu>/components/")
    option(parser, "--sweep", default=None, help="that GPU's kernel sweep", shown_default="traces/<gpu>/sweep.parquet")
    parser.add_argument("--reference-sweep", default="traces/h100/sweep.parquet",
                        help="sweep projected by bandwidth when the GPU has none; also used for the seed fit")
    parser.add_argument("--fitted", choices=["fixed", "before_fix", "none"], default="fixed",
                        help="seed software state whose two fitted numbers apply (none: components only)")
    parser.add_argument("--checked-only", action="store_true",
                        help="choose only among options whose GDN rows passed their correctness check")
    parser.add_argument("--all", action="store_true", help="print every priced option, not only the best per batch")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr (there is none when stderr is not a terminal)")


def _check(args: argparse.Namespace) -> None:
    """The values' checks, done before the component run and the sweeps are read (seconds)."""
    from ..errors import InputError
    from ..shapes import dtype_name
    from ..strategies import STRATEGY_NAMES

    unknown = [s for s in args.strategies or () if s not in STRATEGY_NAMES]
    if unknown:            # else they would be filtered out silently, leaving a decode-only plan
        raise InputError(f"--strategies: unknown {', '.join(unknown)}; known: {', '.join(STRATEGY_NAMES)}")
    for d in args.state_dtypes or ():
        dtype_name(d)      # ValueError naming the known dtypes
    if args.tp < 1:
        raise InputError(f"--tp must be an integer >= 1 (tensor-parallel degree), got {args.tp}")
    if not 0 < args.ctx < float("inf"):
        raise InputError(f"--ctx must be a number of context tokens > 0, got {args.ctx:g}")
    if any(t < 2 for t in args.draft_tokens):
        raise InputError(f"--draft-tokens must be >= 2 for speculation, got {','.join(map(str, args.draft_tokens))}")
    if args.accept_len_draft_tokens < 1:
        raise InputError(f"--accept-len-draft-tokens must be an integer >= 1, got {args.accept_len_draft_tokens}")
    if not args.accept_table and not 1 <= args.accept_len <= args.accept_len_draft_tokens:
        raise InputError(f"--accept-len must lie in [1, T={args.accept_len_draft_tokens}] (mean tokens kept per "
                         f"verify step), got {args.accept_len:g}")
    if args.accept_table:
        input_file(args.accept_table, "an accept-length table (CSV or parquet: draft_tokens, accept_len)")


def _plan(args: argparse.Namespace, gpu: str, bar) -> tuple:
    """``(candidates, best, best checked, notes)``: the model composed from the component run and
    the sweeps, every option priced, the best per batch; ``bar`` advances by one per stage."""
    bar.set_postfix_str("checking the options, loading the model")
    _check(args)
    from ..model.build import step_for_gpu
    from ..model.plan import best_plan, plan_candidates, read_accept_table

    accept = read_accept_table(args.accept_table) if args.accept_table else args.accept_len
    bar.update()
    bar.set_postfix_str("composing the step from the component run and the sweeps")
    folder = args.components or f"traces/{args.gpu.lower()}/components"
    sweep = args.sweep or f"traces/{args.gpu.lower()}/sweep.parquet"
    step, notes = step_for_gpu(gpu, folder, sweep_path=sweep, reference_sweep_path=args.reference_sweep,
                               preset=args.preset, tp=args.tp, fitted=None if args.fitted == "none" else args.fitted)
    bar.update()
    bar.set_postfix_str("pricing every option")
    cand = plan_candidates(step, batches=args.batches, accept=accept, accept_T=args.accept_len_draft_tokens,
                           draft_tokens=args.draft_tokens, ctx_per_request=args.ctx, strategies=args.strategies,
                           state_dtypes=args.state_dtypes)
    bar.update()
    bar.set_postfix_str("choosing the best per batch")
    best = best_plan(cand, checked_only=args.checked_only)
    safe = best if args.checked_only else best_plan(cand, checked_only=True)
    bar.update()
    return cand, best, safe, notes


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..hardware import spec_for
    from ._progress import progress_bar

    try:
        spec = spec_for(args.gpu.upper() if args.gpu.lower() in ("h200", "b200", "gb200") else args.gpu)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with progress_bar(args, total=4, desc="gdnlab plan", unit="stages") as bar:
        cand, best, safe, notes = _plan(args, spec.name, bar)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_colwidth", 200, "display.max_columns", 30):
        print(f"gdnlab plan · {spec.name} · {args.preset}@tp{args.tp} · context {args.ctx:g} tokens/request")
        print("accept length per T: " + ", ".join(f"T={t}: {a:.2f}" for t, a in cand.attrs["accept_lengths"].items())
              + (" (measured table)" if args.accept_table else f" (chain model from {args.accept_len} at "
                                                               f"T={args.accept_len_draft_tokens})"))
        for n in notes + cand.attrs["notes"]:
            print(f"  · {n}")
        cols = ["batch", "strategy", "draft_tokens", "state_dtype", "backend", "accept_len", "tpot_ms",
                "throughput_tok_s", "speedup", "gdn_share", "check"]
        shown = cand if args.all else best
        print(shown[cols].round({"accept_len": 2, "tpot_ms": 3, "throughput_tok_s": 0, "speedup": 3,
                                 "gdn_share": 3}).to_string(index=False))
        alt = safe.merge(best[["batch", "check"]], on="batch", suffixes=("", "_best"))
        alt = alt[alt["check_best"] == "unchecked"]
        if not alt.empty:
            print("best option that passed its correctness check, where the best above is unchecked:")
            print(alt[cols].round({"accept_len": 2, "tpot_ms": 3, "throughput_tok_s": 0, "speedup": 3,
                                   "gdn_share": 3}).to_string(index=False))
        print("provenance: TPOT and throughput are " + best["provenance"].iloc[0])
        print("engine settings of the best option per batch:")
        for r in best.itertuples():
            print(f"  B={r.batch}: SGLang {r.sglang}\n         vLLM   {r.vllm}")
        print("sources: " + "; ".join(dict.fromkeys(s for x in best["sources"] for s in x.split("; "))))
    return 0
