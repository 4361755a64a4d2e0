"""``gdnlab summary [FILE]``: what a sweep file or a trace holds; without FILE, run the reference kernel
on a preset shape and check the contract's identities.

A sweep (``.parquet``/``.csv`` written by ``gdnlab sweep``, or its folder): rows by measure, backend,
verify strategy (a call's mode and buffer) and state dtype (how many ran, were checked against the
reference and passed; B and T ranges; timing methods), the GPUs and commits the rows came from, then
the sweep's own summary table.
A trace (nsys SQLite export or Kineto JSON): its provenance, kernels, GPU busy time and top kernels.

Examples::

    gdnlab summary traces/h200/sweep.parquet
    gdnlab summary traces/h200/triton_c64_osl512_t4_replay_ring.sqlite --top 5
    gdnlab summary --batches 1,4,16 --draft-tokens 4 --state-dtype bfloat16
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import _registry as R
from ._args import input_file, list_option, option

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default=None, metavar="FILE",
                        help="a sweep (parquet/CSV, or its folder) or a trace (nsys SQLite, Kineto JSON) to summarise; "
                             "without it: run the reference kernel (the options below)")
    parser.add_argument("--top", type=int, default=10, help="kernels listed for a trace, by total time")
    k = parser.add_argument_group("reference kernel (without FILE)")
    option(k, "--preset", default=R.DEFAULT_PRESET, valid=R.preset_choices(), help="model preset")
    k.add_argument("--tp", type=int, default=4, help="tensor-parallel degree the shape is sharded for")
    list_option(k, "--batches", "--batch", dest="batches", metavar="B", item=int, minimum=1, default=[1, 4, 16],
                help="batch sizes B")
    k.add_argument("--draft-tokens", type=int, default=4, help="draft tokens T per verify")
    option(k, "--state-dtype", default="float32", valid=R.STATE_DTYPES, help="state pool dtype")
    option(k, "--device", default=None, valid=R.DEVICES, shown_default="cuda when available",
           help="device to run on")


def _span(values) -> str:
    """``"1-256"`` (or ``"4"``) of a numeric column, ``"-"`` when all missing."""
    v = values.dropna()
    if v.empty:
        return "-"
    lo, hi = v.min(), v.max()
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _counts(values, width: int = 12) -> str:
    """``"a (3), b (1)"``: each value (cut to ``width`` characters) with its rows, most first."""
    vc = values.fillna("unknown").astype(str).str[:width].value_counts()
    return ", ".join(f"{k} ({n} rows)" for k, n in vc.items())


def sweep_overview(df):
    """Rows of a sweep by (measure, backend, what, state_dtype), ``what`` being the verify strategy of a
    step row and the call of a call row (``decode``, ``verify/batch buffer``, ``verify/pool buffer``):
    ``rows``, ``ok`` (status ok), ``checked`` (compared with the reference), ``correct`` (and within
    tolerance), ``B`` and ``T`` ranges, ``timing`` (the timing methods used, comma-separated).
    ``df``: :func:`gdnlab.results.load_sweep`."""
    measure = df["measure"].fillna("call")
    call = df["mode"].astype("string").fillna("?")
    scoped = df["buffer_scope"].isin(["batch", "pool"]).fillna(False)
    call = call.where(~scoped, call + "/" + df["buffer_scope"].astype("string") + " buffer")
    d = df.assign(measure=measure, what=df["strategy"].astype("string").where(measure == "step", call),
                  _ok=df["status"].eq("ok").fillna(False), _checked=df["correct"].notna(),
                  _correct=df["correct"].eq(True).fillna(False))
    g = d.groupby(["measure", "backend", "what", "state_dtype"], sort=False, dropna=False)
    out = g.agg(rows=("status", "size"), ok=("_ok", "sum"), checked=("_checked", "sum"),
                correct=("_correct", "sum"))
    out["B"] = g["batch"].agg(_span)
    out["T"] = g["draft_tokens"].agg(_span)
    out["timing"] = g["timing_method"].agg(lambda s: ",".join(sorted(set(s.dropna().astype(str)))) or "-")
    return out.reset_index()


def _summarise_sweep(path: Path) -> None:
    import pandas as pd

    from ..plots.sweep import sweep_provenance_text
    from ..results import load_sweep
    from ..sweep import summary_table

    df = load_sweep(path)
    print(f"gdnlab summary · {path} · sweep, {len(df)} rows")
    if df.empty:
        return
    print(f"provenance: {sweep_provenance_text(df)}")
    gpus = df["gpu"].fillna("unknown").astype(str) + " (" + df["sm"].fillna("sm?").astype(str) + ")"
    print(f"GPUs: {_counts(gpus, width=60)}")
    dirty = df["git_dirty"].map({True: " (uncommitted changes)"}).fillna("") if "git_dirty" in df else ""
    print(f"commits: {_counts(df['git_commit'].fillna('unknown').astype(str).str[:12] + dirty, width=40)}")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print("rows by measure, backend, what (a step's verify strategy, a call's mode and buffer), state dtype "
              "(ok: ran; checked: compared with the reference; correct: within tolerance):")
        print(sweep_overview(df).to_string(index=False))
    print(summary_table(df))


def _summarise_trace(path: Path, top: int) -> None:
    import pandas as pd

    from .. import traces
    from ..traces.analysis import gpu_busy_total_ns

    t = traces.load(path)
    k = t.kernels
    print(f"gdnlab summary · {path} · {t.kind} trace")
    print(f"provenance: {t.provenance()}")
    if k.empty:
        print("kernels: none in the trace")
        return
    span = int(k["end_ns"].max() - k["start_ns"].min())
    busy = gpu_busy_total_ns(k)
    devices = k["device"].nunique()
    print(f"kernels: {len(k)} ({k['short_name'].nunique()} distinct) on {devices} device(s); NVTX ranges: "
          f"{len(t.nvtx)}")
    share = 100.0 * busy / span if span else float("nan")
    print(f"GPU busy: {busy / 1e6:.3f} ms of {span / 1e6:.3f} ms from the first kernel's start to the last one's "
          f"end ({share:.1f} %{', summed over devices' if devices > 1 else ''})")
    s = t.kernel_summary(by="short_name").head(top)
    table = pd.DataFrame({"kernel": s["short_name"], "count": s["count"], "total_ms": s["total_ns"] / 1e6,
                          "share_pct": s["share_pct"], "mean_us": s["mean_ns"] / 1e3,
                          "median_us": s["median_ns"] / 1e3})
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.float_format", "{:.3f}".format):
        print(f"top {len(table)} kernels by total time:")
        print(table.to_string(index=False))


def _summarise_file(path: Path, top: int) -> None:
    """A sweep or a trace, told apart by content (an SQLite header or a JSON trace is a trace)."""
    from ..errors import DataError
    from ..traces import sniff

    if top < 1:
        from ..errors import InputError
        raise InputError(f"--top must be an integer >= 1, got {top}")
    if path.is_dir():
        _summarise_sweep(path)
        return
    input_file(path, "a sweep (parquet/CSV from gdnlab sweep) or a trace (nsys SQLite export, Kineto JSON)")
    try:
        kind = sniff(path)
    except DataError:
        kind = "sweep"
    if kind == "kineto" and path.suffix.lower() == ".jsonl":      # a sweep written as JSON lines
        kind = "sweep"
    if kind == "sweep":
        _summarise_sweep(path)
    else:
        _summarise_trace(path, top)


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        _summarise_file(Path(args.file), args.top)
        return 0
    from ..errors import InputError
    from ..instrument import resolve_device
    from ..selfcheck import contract_identities

    if args.draft_tokens < 1:
        raise InputError(f"--draft-tokens must be an integer >= 1 (T, tokens per verify), got {args.draft_tokens}")
    device = str(resolve_device(args.device))       # unknown: bad input; no CUDA here: unavailable
    shape, df = contract_identities(args.preset, args.tp, args.batches, args.draft_tokens, args.state_dtype, device)
    print(f"gdnlab reference kernel on {device}: {shape.describe()} (measured wall time, PyTorch reference)")
    print(df.to_string(index=False))
    return 0
