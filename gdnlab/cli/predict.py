"""``gdnlab predict``: TPOT, throughput per GPU and the share of each part of a step (the GDN share with
its interval) for a served Qwen3.5-397B-A17B configuration, from shipped data (no GPU needed).

Examples::

    gdnlab predict --gpu h200 --tp 4 --concurrency 1,16,64,128 --draft-tokens none,4 --accept-len 3.17
    gdnlab predict --gpu h100,h200,b200,gb200 --tp 8 --weights fp8_block --kv-dtype fp8
    gdnlab predict --gpu gb200 --weights nvfp4 --accept-curve inferencex-golden-thinking-on --draft-tokens 2,4,6

Op times are AIConfigurator 0.12.0's measured tables (reported; gdnlab's engine-grade measurements
replace them where a GPU has them), GDN verify + commit come from gdnlab's strategy sweep, the engine's
host numbers are fitted on named published rows: every row says so in its source columns.
"""
from __future__ import annotations

import argparse

from . import _registry as R
from ._args import list_option, option, output_file


def _draft(text: str) -> int | None:
    """One ``--draft-tokens`` item: an integer T >= 2, or ``none`` (no speculation)."""
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        t = int(text)
    except ValueError:
        t = 0
    if t < 2:
        raise argparse.ArgumentTypeError(f"expected an integer T >= 2 or 'none', got {text!r}")
    return t


def configure_parser(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("what is served")
    list_option(g, "--gpu", metavar="GPU", default=["h200"], valid=R.gpu_names(),
                help="GPUs (any spelling: h100, H100-SXM)")
    option(g, "--preset", default=R.DEFAULT_PRESET, valid=(R.DEFAULT_PRESET,),
           help="served model (AIConfigurator's op tables cover this one)")
    list_option(g, "--tp", metavar="N", item=int, default=[4], valid=R.PREDICT_TP, help="tensor parallelism")
    g.add_argument("--ep", type=int, default=None, help="expert parallelism: 1 or the TP degree (default 1)")
    list_option(g, "--weights", metavar="DTYPE", default=["fp8_block"], valid=R.PREDICT_WEIGHTS,
                help="weights dtypes (nvfp4: Blackwell only)")
    list_option(g, "--kv-dtype", metavar="DTYPE", default=["bf16"], valid=R.PREDICT_KV_DTYPES,
                help="KV cache dtypes")
    option(g, "--state-dtype", default="bfloat16", valid=R.STATE_DTYPES, help="GDN state dtype")
    option(g, "--engine", default="sglang", valid=("sglang",), help="serving engine of the op tables")
    w = parser.add_argument_group("workload and speculation")
    list_option(w, "--isl", metavar="TOKENS", item=int, minimum=1, default=[1024], help="input tokens per request")
    list_option(w, "--osl", metavar="TOKENS", item=int, minimum=1, default=[1024], help="output tokens per request")
    list_option(w, "--concurrency", metavar="C", item=int, minimum=1, default=[1, 4, 16, 64, 128],
                help="requests in flight")
    list_option(w, "--draft-tokens", metavar="T", item=_draft, default=[4],
                help="draft tokens T verified per step (topk-1 chain of T-1 drafts); none: no speculation")
    w.add_argument("--accept-len", type=float, default=3.17,
                   help="accept length (tokens kept per verify step, in [1, T]; the same at every T)")
    w.add_argument("--accept-curve", default=None, metavar="FILE|NAME",
                   help="a reported acceptance curve by name (acceptance_curves.csv) or a CSV/parquet file "
                        "(draft_tokens, accept_len); replaces --accept-len")
    list_option(w, "--strategy", metavar="NAME", default=["full_cache"], valid=R.STRATEGIES,
                help="GDN verify strategies")
    list_option(w, "--backend", metavar="NAME", default=["triton"], valid=R.kernel_backends(),
                help="GDN kernel backends")
    w.add_argument("--num-prompts", type=int, default=None, help="prompts per simulated run (default 8 x concurrency)")
    w.add_argument("--max-running", type=int, default=None, help="engine's running-request cap (default: concurrency)")
    w.add_argument("--range-ratio", type=float, default=1.0,
                   help="bench_serving --random-range-ratio (1: fixed lengths)")
    o = parser.add_argument_group("output")
    o.add_argument("--all-columns", action="store_true", help="print every column (sources included)")
    o.add_argument("--out", default=None, help="also write the table (.csv or .parquet)")


def _accept(args):
    if not args.accept_curve:
        return args.accept_len
    from pathlib import Path

    from ..acceptance_curves import read_curve_file
    from ..errors import InputError
    from ..model.predict import published_curve

    p = Path(args.accept_curve)
    if p.is_file():
        got = read_curve_file(p)
        if len(got) != 1:
            raise InputError(f"--accept-curve {p} holds {len(got)} curves ({', '.join(got)}); give a file with one")
        return next(iter(got.values()))
    return published_curve(args.accept_curve)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..model.predict import predict

    if args.out:
        output_file(args.out, "--out")
    df = predict(args.gpu, args.preset, args.tp, args.ep, args.weights, args.kv_dtype, args.isl, args.osl,
                 args.concurrency, args.draft_tokens, _accept(args), args.strategy, args.backend, args.engine,
                 state_dtype=args.state_dtype, num_prompts=args.num_prompts, max_running=args.max_running,
                 range_ratio=args.range_ratio)
    if args.out:
        _write(df, args.out)
    cols = df.columns if args.all_columns else \
        ["gpu", "tp", "weights_dtype", "kv_dtype", "backend", "strategy", "draft_tokens", "accept_len", "concurrency",
         "tpot_ms", "output_tok_s_per_gpu", "step_ms", "gdn_share", "gdn_share_lo", "gdn_share_hi", "share_moe",
         "share_attention", "share_host", "status"]
    with pd.option_context("display.width", 220, "display.max_columns", 60, "display.max_colwidth", 90):
        print(f"gdnlab predict · {args.preset} · {args.engine}")
        print(df[list(cols)].round(3).to_string(index=False))
        print("provenance: " + df.attrs.get("provenance", ""))
        src = df["gdn_source"].dropna().unique()
        if len(src):
            print("GDN kernels: " + "; ".join(src))
    return 0


def _write(df, path: str) -> None:
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    try:
        if p.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
