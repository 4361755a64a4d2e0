"""``gdnlab plan``: one server configuration per engine (T, strategy, state dtype, GDN backend and the
engine's flags) for a concurrency range, what it gives up against the per-batch best, the options no
engine runs yet, and the best option per batch, with TPOT, throughput, memory and provenance.

Examples:
  gdnlab plan --gpu h200 --batches 1,4,16,64,128,256 --accept-curve accept.csv
  gdnlab plan --gpu gb200 --accept-len 3.17 --accept-len-draft-tokens 4 --json
  gdnlab plan --accept-from-log server.log --engine sglang --accept-log-draft-tokens 4

Acceptance (one source): a shipped curve by name or a file (--accept-curve: draft_tokens, accept_len;
optional curve, context_bucket), an engine's log or metrics (--accept-from-log with --engine), or
points (--accept-len at --accept-len-draft-tokens). Every GPU of gdnlab's hardware table answers:
its own data in traces/<gpu>/ where measured, else the nearest measured GPU's, projected (labelled).
Runs on CPU from the shipped data.
"""
from __future__ import annotations

import argparse

from . import _registry as R
from ._args import input_file, list_option, option, output_file

ENGINES = ("sglang", "vllm")


def _accept_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("acceptance (give one source)")
    option(g, "--accept-curve", "--accept-table", dest="accept_curve", default=None, metavar="FILE|NAME",
           help="accept length vs T: a CSV/parquet (draft_tokens, accept_len; optional curve, context_bucket, "
                "status, source) or the name of a shipped curve",
           shown_default="the shipped InferenceX curve, else the seed's 3.175 at T=4")
    g.add_argument("--accept-curve-name", default=None, help="which curve of a file or of the shipped table")
    list_option(g, "--accept-len", metavar="A", item=float, default=None,
                help="mean accept length(s): tokens kept per verify step, 1..T")
    list_option(g, "--accept-len-draft-tokens", metavar="T", item=int, minimum=1, default=None,
                help="the T each --accept-len was measured at", shown_default="4")
    g.add_argument("--accept-from-log", default=None, metavar="FILE",
                   help="an engine's log (SGLang 'accept len', vLLM 'SpecDecoding metrics') or vLLM /metrics text")
    g.add_argument("--engine", choices=ENGINES, default=None, help="the engine that wrote --accept-from-log")
    g.add_argument("--accept-log-draft-tokens", type=int, default=None,
                   help="the server's T (SGLang's --speculative-num-draft-tokens; its log does not state it)")
    list_option(g, "--context-buckets", metavar="TOKENS", item=int, minimum=1, default=None,
                help="upper edges of context buckets for an SGLang log; --ctx picks the bucket")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    option(parser, "--gpu", default="h200", valid=R.gpu_names(),
           help="GPU to plan for (any case; h100 = H100-SXM): its data in traces/<gpu>/, else the nearest GPU's")
    option(parser, "--preset", default=R.DEFAULT_PRESET, valid=R.preset_choices(),
           help="model preset the components were measured for")
    parser.add_argument("--tp", type=int, default=4, help="tensor-parallel degree")
    parser.add_argument("--weights", choices=["nvfp4", "fp8"], default="nvfp4",
                        help="weights dtype of the served model (memory; step times are the components')")
    _accept_options(parser)
    list_option(parser, "--batches", "--batch", dest="batches", metavar="B", item=int, minimum=1,
                default=[1, 4, 16, 64, 128, 256], help="concurrency buckets (running requests B)")
    parser.add_argument("--extrapolate", action="store_true",
                        help="price batches and a context beyond the measured ranges (labelled extrapolated)")
    list_option(parser, "--draft-tokens", metavar="T", item=int, minimum=1, default=None,
                shown_default="every T the sweep measured", help="draft tokens T to consider")
    list_option(parser, "--strategies", metavar="NAME", default=None, valid=R.STRATEGIES, shown_default="all priced",
                help="verify strategies to consider")
    list_option(parser, "--state-dtypes", metavar="DTYPE", default=None, valid=R.STATE_DTYPES,
                shown_default="all priced", help="state dtypes to consider")
    list_option(parser, "--backends", metavar="NAME", default=None,
                valid=tuple(dict.fromkeys(R.kernel_backends() + R.strategy_backends())), shown_default="all priced",
                help="GDN backends to consider")
    parser.add_argument("--ctx", type=float, default=1024.0, help="context tokens per running request")
    option(parser, "--components", default=None, help="component run folder",
           shown_default="traces/<gpu>/components/, else the nearest GPU's")
    option(parser, "--sweep", default=None, help="GDN kernel sweep",
           shown_default="traces/<gpu>/sweep.parquet, else the nearest GPU's")
    option(parser, "--reference-sweep", default=None, help="sweep for the seed fit when the GPU's own has none",
           shown_default="traces/h100/sweep.parquet")
    parser.add_argument("--fitted", choices=["fixed", "before_fix", "none"], default="fixed",
                        help="seed software state whose two fitted numbers apply (none: components only)")
    parser.add_argument("--checked-only", action="store_true",
                        help="choose only among options whose GDN rows passed their correctness check")
    parser.add_argument("--adaptive-config", default=None, metavar="FILE",
                        help="write SGLang's adaptive draft-length config here when the plan has one")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (one record per recommendation)")
    parser.add_argument("--all", action="store_true", help="print every priced option, not only the best per batch")
    parser.add_argument("--no-cache", action="store_true",
                        help="refit the seed's two numbers instead of reading them from the cache")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr (there is none when stderr is not a terminal)")


def _check(args: argparse.Namespace) -> None:
    """The values' checks, done before the component run and the sweeps are read."""
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
    if any(t < 2 for t in args.draft_tokens or ()):
        raise InputError(f"--draft-tokens must be >= 2 for speculation, got {','.join(map(str, args.draft_tokens))}")
    for a in args.accept_len or ():
        if not 1.0 <= a < float("inf"):
            raise InputError(f"--accept-len must be >= 1 (tokens kept per verify step, 1..T), got {a:g}")
    if args.accept_curve and _is_path(args.accept_curve):
        input_file(args.accept_curve, "an acceptance curve (CSV or parquet: draft_tokens, accept_len)")
    if args.accept_from_log:
        input_file(args.accept_from_log, "an engine's log or metrics text")
    if args.adaptive_config:
        output_file(args.adaptive_config, "--adaptive-config")


def _is_path(text: str) -> bool:
    from pathlib import Path

    p = Path(text)
    return p.exists() or p.suffix in (".csv", ".parquet", ".tsv") or "/" in text or "\\" in text


def _cache_dir(args: argparse.Namespace):
    import os
    from pathlib import Path

    if args.no_cache:
        return None
    return Path(os.environ.get("GDNLAB_CACHE_DIR") or Path.home() / ".cache" / "gdnlab")


def _build(args: argparse.Namespace, bar):
    """``(plan, model)`` from the arguments; ``bar`` advances by one per stage (four)."""
    bar.set_postfix_str("checking the options, reading the acceptance")
    from ..model.build import gpu_data, step_for_gpu
    from ..model.plan import make_plan
    from ..model.plan_accept import resolve_acceptance

    data = gpu_data(args.gpu, components=args.components, sweep=args.sweep, reference_sweep=args.reference_sweep)
    _check(args)
    curve, how = resolve_acceptance(accept_len=args.accept_len, accept_T=args.accept_len_draft_tokens,
                                    curve=args.accept_curve, curve_name=args.accept_curve_name,
                                    log=args.accept_from_log, engine=args.engine, log_T=args.accept_log_draft_tokens,
                                    context_buckets=args.context_buckets, ctx_tokens=args.ctx)
    bar.update()
    bar.set_postfix_str("composing the step from the component run and the sweeps")
    ref = args.reference_sweep or (data.reference_sweep if data.sweep is None else None)   # read only when used
    step, _ = step_for_gpu(data.gpu.name, data.components, sweep_path=data.sweep, reference_sweep_path=ref,
                           preset=args.preset, tp=args.tp,
                           fitted=None if args.fitted == "none" else args.fitted, weights=args.weights,
                           cache_dir=_cache_dir(args))
    step.notes[:0] = data.notes
    bar.update()
    bar.set_postfix_str("pricing every option, one server per engine")
    plan = make_plan(step, batches=args.batches, curve=curve, accept_how=how, ctx_per_request=args.ctx,
                     checked_only=args.checked_only, draft_tokens=args.draft_tokens, strategies=args.strategies,
                     backends=args.backends, state_dtypes=args.state_dtypes, extrapolate=args.extrapolate,
                     adaptive_file=args.adaptive_config or "sglang_adaptive.json")
    plan.candidates.attrs["model_name"] = f"{step.model.name} TP{step.model.tp}"
    bar.update()
    return plan, step.model


def _write_adaptive(plan, path: str) -> str | None:
    import json
    import os
    import tempfile
    from pathlib import Path

    sv = plan.servers.get("sglang")
    if sv is None or sv.adaptive is None or sv.adaptive.config is None:
        return None
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(sv.adaptive.config, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, p)
    return str(p)


def run(args: argparse.Namespace) -> int:
    import json

    from ._progress import progress_bar

    with progress_bar(args, total=4, desc="gdnlab plan", unit="stages") as bar:
        plan, model = _build(args, bar)
        bar.set_postfix_str("writing the plan")
        from ..model.plan_report import plan_records, plan_text

        written = _write_adaptive(plan, args.adaptive_config) if args.adaptive_config else None
        text = json.dumps({**plan_records(plan), "adaptive_config_written": written}, indent=1, default=str) \
            if args.json else plan_text(plan, model=model, show_all=args.all)
        bar.update()
    print(text)
    if args.json:
        return 0
    if written:
        print(f"wrote {written} (SGLang --speculative-adaptive-config)")
    elif args.adaptive_config:
        print(f"{args.adaptive_config} not written: the plan has no SGLang adaptive schedule")
    return 0
