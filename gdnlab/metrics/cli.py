"""``gdnlab metrics``: profile the GDN kernels with Nsight Compute, or re-read / compare stored results.

Examples::

    gdnlab metrics --check                                   # can nsight-python drive this ncu? which ncu?
    gdnlab metrics --backends triton,flashinfer --batches 1,16,64,256 --out out/
    gdnlab metrics --from-raw out/ncu_raw.csv --manifest out/ncu_manifest.json --out out/
    gdnlab metrics --input out/ncu_metrics.parquet --sweep out/sweep.parquet --html out/metrics.html
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["configure_parser", "run"]


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gdnlab metrics`` (see the module docstring)."""
    g = parser.add_argument_group("what to profile")
    g.add_argument("--backends", type=_csv_list, default=["flashinfer", "triton"], help="comma-separated (default: flashinfer,triton)")
    g.add_argument("--modes", type=_csv_list, default=["decode", "verify"], help="decode,verify")
    g.add_argument("--batches", type=_int_list, default=[1, 16, 64, 256], help="comma-separated B (default 1,16,64,256)")
    g.add_argument("--state-dtypes", type=_csv_list, default=["float32", "bfloat16"], help="float32,bfloat16")
    g.add_argument("--preset", default="qwen3.5-397b-a17b", help="model preset (default qwen3.5-397b-a17b)")
    g.add_argument("--tp", type=int, default=4, help="tensor-parallel degree (default 4: H=4 HV=16 K=V=128)")
    g.add_argument("--draft-tokens", type=int, default=4, help="T of verify (default 4)")
    g.add_argument("--repeats", type=int, default=2, help="profiled calls per configuration (default 2)")
    e = parser.add_argument_group("how")
    e.add_argument("--engine", choices=("auto", "nsight-python", "ncu-csv"), default="auto")
    e.add_argument("--gate", choices=("profiler-api", "nvtx"), default="profiler-api",
                   help="ncu-csv: cudaProfilerStart/Stop (default) or --nvtx-include gdnlab_profile/")
    e.add_argument("--clock-control", choices=("none", "base"), default="none",
                   help="none (default): clocks as in a sweep, so durations compare")
    e.add_argument("--cache-control", choices=("all", "none"), default="all")
    e.add_argument("--ncu", default=None, help="path of ncu (default: $NCU, PATH, /usr/local/cuda/bin/ncu)")
    e.add_argument("--kernel-regex", default=None, help="optional extra --kernel-name regex filter")
    e.add_argument("--time-budget", type=float, default=None, help="seconds for all ncu runs")
    e.add_argument("--workdir", default=None, help="plans, logs and .ncu-rep reports (default: a temp dir)")
    o = parser.add_argument_group("inputs and outputs")
    o.add_argument("--check", action="store_true", help="only report whether nsight-python can drive the installed ncu")
    o.add_argument("--from-raw", default=None, help="re-read a stored raw ncu CSV (needs --manifest) instead of profiling")
    o.add_argument("--manifest", default=None, help="manifest JSON written with the raw CSV")
    o.add_argument("--input", default=None, help="load a stored metrics parquet/csv instead of profiling")
    o.add_argument("--sweep", default=None, help="sweep parquet/csv to compare with (compare_with_sweep)")
    o.add_argument("--time-col", default=None, help="the sweep's timing column (default: time_us, ...)")
    o.add_argument("--tolerance", type=float, default=0.10, help="agreement tolerance (default 0.10)")
    o.add_argument("--out", default=None, help="output directory (default $GDNLAB_OUT or ./out)")
    o.add_argument("--html", default=None, help="write the figures to this HTML file (needs plotly)")
    parser.set_defaults(_handler=run)


def _read_frame(path: str):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)


def run(args: argparse.Namespace) -> int:
    """Run ``gdnlab metrics``; returns 0 on success, 1 when nothing could be profiled."""
    from . import (
        compare_with_sweep,
        format_table,
        nsight_python_support,
        parse_raw_csv,
        profile_kernels,
        save_frame,
        summarize_calls,
    )
    from .profile import assemble

    if args.check:
        print(nsight_python_support(args.ncu).describe())
        return 0
    out = Path(args.out or os.environ.get("GDNLAB_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    if args.input:
        df = _read_frame(args.input)
    elif args.from_raw:
        if not args.manifest:
            raise ValueError("--from-raw needs --manifest (the JSON written beside the raw CSV)")
        manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
        df = assemble(parse_raw_csv(Path(args.from_raw)), manifest)
    else:
        df = profile_kernels(backends=args.backends, modes=args.modes, batches=args.batches,
                             state_dtypes=args.state_dtypes, preset=args.preset, tp=args.tp,
                             draft_tokens=args.draft_tokens, repeats=args.repeats, engine=args.engine,
                             gate=args.gate, clock_control=args.clock_control, cache_control=args.cache_control,
                             ncu=args.ncu, kernel_regex=args.kernel_regex, time_budget_s=args.time_budget,
                             workdir=args.workdir, raw_csv_out=out / "ncu_raw.csv",
                             manifest_out=out / "ncu_manifest.json")
    if not args.input:
        path = save_frame(df, out / "ncu_metrics.parquet")
        print(f"wrote {path} ({len(df)} rows)")
    summary = summarize_calls(df)
    cmp = None
    if args.sweep:
        cmp = compare_with_sweep(df, _read_frame(args.sweep), time_col=args.time_col, tolerance=args.tolerance)
        path = save_frame(cmp, out / "ncu_vs_sweep.csv")
        n_flag = int(cmp["flag"].sum())
        print(f"wrote {path}: {len(cmp) - n_flag}/{len(cmp)} configurations agree within "
              f"{args.tolerance:.0%}; flagged:")
        for _, r in cmp[cmp["flag"]].iterrows():
            print(f"  {r['backend']} {r['mode']} B={r['batch']} {r['state_dtype']}: {r['diagnosis']}")
    if args.html:
        from gdnlab.plots.metrics import bandwidth_agreement_figure, counters_figure

        figs = [counters_figure(df)] + ([bandwidth_agreement_figure(cmp, tolerance=args.tolerance)] if cmp is not None else [])
        Path(args.html).write_text("\n".join(f.to_html(full_html=False, include_plotlyjs=(i == 0))
                                             for i, f in enumerate(figs)), encoding="utf-8")
        print(f"wrote {args.html}")
    skipped = df[df["outcome"] != "ok"] if "outcome" in df else df.iloc[0:0]
    for _, r in skipped.drop_duplicates(["backend", "mode", "batch", "state_dtype"]).iterrows():
        print(f"not profiled: {r['backend']} {r['mode']} B={r['batch']} {r['state_dtype']}: "
              f"{r['outcome']} ({r.get('reason', '')})")
    print(format_table(summary))
    return 0 if not summary.empty else 1


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="gdnlab metrics")
    configure_parser(p)
    sys.exit(run(p.parse_args()))
