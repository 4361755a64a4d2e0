"""``gdnlab counters``: profile the GDN kernels with Nsight Compute, or re-read / compare stored counters.

Examples::

    gdnlab counters --check                                  # can nsight-python drive this ncu? which ncu?
    gdnlab counters --backends triton,flashinfer --batches 1,16,64,256 --out out/
    gdnlab counters --from-raw out/ncu_raw.csv --manifest out/ncu_manifest.json --out out/
    gdnlab counters --input out/ncu_metrics.parquet --sweep out/sweep.parquet --html out/counters.html

``gdnlab metrics`` is another name for this command.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import DataError, InputError
from . import _registry as R
from ._args import input_file, list_option, option, output_file

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gdnlab counters`` (see the module docstring)."""
    parser.description = (parser.description or "") + "\n\n" + __doc__.split("\n\n", 1)[1]
    g = parser.add_argument_group("what to profile")
    list_option(g, "--backends", metavar="NAME", default=["flashinfer", "triton"], valid=R.kernel_backends(),
                help="kernel backends (gdnlab backends says which run here)")
    list_option(g, "--modes", metavar="MODE", default=["decode", "verify"], valid=R.SWEEP_MODES,
                help="kernel calls to profile")
    list_option(g, "--batches", "--batch", dest="batches", metavar="B", item=int, default=[1, 16, 64, 256],
                help="batch sizes B")
    list_option(g, "--state-dtypes", metavar="DTYPE", default=["float32", "bfloat16"], valid=R.STATE_DTYPES,
                help="state pool dtypes")
    option(g, "--preset", default=R.DEFAULT_PRESET, valid=R.preset_choices(), help="model preset (NAME or NAME@tpN)")
    g.add_argument("--tp", type=int, default=4, help="tensor-parallel degree (4: H=4 HV=16 K=V=128 per GPU)")
    g.add_argument("--draft-tokens", type=int, default=4, help="draft tokens T of a verify call")
    g.add_argument("--repeats", type=int, default=2, help="profiled calls per configuration")
    e = parser.add_argument_group("how")
    e.add_argument("--engine", choices=("auto", "nsight-python", "ncu-csv"), default="auto",
                   help="nsight-python (needs Nsight Compute >= 2026.2.1), ncu-csv (ncu as a subprocess over "
                        "gdnlab's driver, any ncu), or auto: nsight-python where it can drive the installed ncu")
    e.add_argument("--gate", choices=("profiler-api", "nvtx"), default="profiler-api",
                   help="ncu-csv: cudaProfilerStart/Stop or --nvtx-include gdnlab_profile/ around each call")
    e.add_argument("--clock-control", choices=("none", "base"), default="none",
                   help="none: clocks as in a sweep, so durations compare; base: ncu locks base clocks")
    e.add_argument("--cache-control", choices=("all", "none"), default="all",
                   help="all: ncu flushes the caches before every replay pass, so DRAM bytes are cold-cache "
                        "traffic as the byte formula assumes; none: caches kept between passes")
    option(e, "--ncu", default=None, help="path of ncu", shown_default="$NCU, PATH, /usr/local/cuda/bin/ncu")
    e.add_argument("--kernel-regex", default=None, help="optional extra ncu --kernel-name regex filter")
    option(e, "--time-budget", type=float, default=None, help="seconds for all ncu runs", shown_default="no limit")
    option(e, "--workdir", default=None, help="plans, logs and .ncu-rep reports", shown_default="a temporary folder")
    o = parser.add_argument_group("inputs and outputs")
    o.add_argument("--check", action="store_true", help="only report whether nsight-python can drive the installed ncu")
    o.add_argument("--from-raw", default=None,
                   help="re-read a stored raw ncu CSV (needs --manifest) instead of profiling")
    o.add_argument("--manifest", default=None, help="manifest JSON written with the raw CSV")
    o.add_argument("--input", default=None, help="load a stored counters table (ncu_metrics.parquet/.csv) instead of "
                                                 "profiling")
    list_option(o, "--sweep", metavar="FILE", default=None, help="sweep files to compare with (counters vs formula)")
    o.add_argument("--time-col", default="time_us", help="the sweep's timing column (µs)")
    o.add_argument("--tolerance", type=float, default=0.10, help="relative agreement counters vs formula")
    option(o, "--out", default=None, help="output folder", shown_default="$GDNLAB_OUT, else ./out")
    o.add_argument("--html", default=None, help="write the figures to this HTML file (needs plotly)")


def _read_manifest(path: str) -> dict:
    p = input_file(path, "a counters manifest (the JSON written beside the raw ncu CSV)")
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not a counters manifest (expected the JSON written beside the raw ncu CSV): "
                        f"{type(exc).__name__}") from None
    if not isinstance(manifest, dict) or "configs" not in manifest:
        raise DataError(f"{p}: not a counters manifest (a JSON object with 'configs' expected)")
    return manifest


def _figures_html(df, cmp, tolerance: float) -> str:
    from gdnlab.plots.counters import bandwidth_agreement_figure, counters_figure, l2_residency_figure

    figs = [counters_figure(df)]
    if cmp is not None:
        figs += [bandwidth_agreement_figure(cmp, tolerance=tolerance), l2_residency_figure(cmp)]
    return "\n".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs))


def run(args: argparse.Namespace) -> int:
    """Run ``gdnlab counters``; returns 0 on success, 1 when nothing could be profiled."""
    from gdnlab.counters import (
        assemble,
        compare_with_sweep,
        format_table,
        load_counters,
        nsight_python_support,
        parse_raw_csv,
        profile_kernels,
        save_frame,
        summarize_calls,
        write_text_atomic,
    )

    if args.check:
        print(nsight_python_support(args.ncu).describe())
        return 0
    if not 0 < args.tolerance < 1:
        raise InputError(f"--tolerance must be in (0, 1), got {args.tolerance}")
    if args.from_raw and not args.manifest:
        raise InputError("--from-raw needs --manifest (the JSON written beside the raw CSV)")
    out = Path(args.out or os.environ.get("GDNLAB_OUT", "out"))
    if args.html:
        output_file(args.html, "--html")
    if args.input:
        df = load_counters(input_file(args.input, "a counters table (ncu_metrics.parquet or .csv)"))
    elif args.from_raw:
        raw = input_file(args.from_raw, "a raw ncu CSV ('ncu --import REPORT --csv --page raw')")
        df = assemble(parse_raw_csv(raw), _read_manifest(args.manifest))
    else:
        out.mkdir(parents=True, exist_ok=True)
        df = profile_kernels(backends=args.backends, modes=args.modes, batches=args.batches,
                             state_dtypes=args.state_dtypes, preset=args.preset, tp=args.tp,
                             draft_tokens=args.draft_tokens, repeats=args.repeats, engine=args.engine,
                             gate=args.gate, clock_control=args.clock_control,
                             cache_control=args.cache_control, ncu=args.ncu, kernel_regex=args.kernel_regex,
                             time_budget_s=args.time_budget, workdir=args.workdir,
                             raw_csv_out=out / "ncu_raw.csv", manifest_out=out / "ncu_manifest.json")
    cmp = None
    if args.sweep:          # read before anything is written: a bad sweep file loses nothing
        cmp = compare_with_sweep(df, args.sweep, time_col=args.time_col, tolerance=args.tolerance)
    if not args.input:
        path = save_frame(df, out / "ncu_metrics.parquet")
        print(f"wrote {path} ({len(df)} rows)")
    summary = summarize_calls(df)
    if cmp is not None:
        path = save_frame(cmp, out / "ncu_vs_sweep.csv")
        n_flag = int(cmp["flag"].sum())
        print(f"wrote {path}: {len(cmp) - n_flag}/{len(cmp)} configurations agree within "
              f"{args.tolerance:.0%}; every configuration's diagnosis:")
        for _, r in cmp.iterrows():
            print(f"  {r['backend']} {r['mode']} B={r['batch']} {r['state_dtype']}: {r['diagnosis']}")
    if args.html:
        html = _figures_html(df, cmp, args.tolerance)
        print(f"wrote {write_text_atomic(args.html, html)}")
    skipped = df[df["outcome"] != "ok"] if "outcome" in df else df.iloc[0:0]
    for _, r in skipped.drop_duplicates(["backend", "mode", "batch", "state_dtype"]).iterrows():
        print(f"not profiled: {r['backend']} {r['mode']} B={r['batch']} {r['state_dtype']}: "
              f"{r['outcome']} ({r.get('reason', '')})")
    print(format_table(summary))
    return 0 if not summary.empty else 1
