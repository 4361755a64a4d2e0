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

from ._args import int_list, output_file, str_list


def _draft_list(text: str) -> list[int | None]:
    out: list[int | None] = []
    for t in str_list(text):
        if t.lower() in ("none", "off", "0"):
            out.append(None)
            continue
        try:
            out.append(int(t))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--draft-tokens: expected integers >= 2 or 'none', got {t!r}") from None
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", type=str_list, default=["h200"], help="GPU(s): h100, h200, b200, gb200 (comma list)")
    parser.add_argument("--preset", default="qwen3.5-397b-a17b", help="served model")
    parser.add_argument("--tp", type=int_list, default=[4], help="tensor parallelism: 4 and/or 8")
    parser.add_argument("--ep", type=int, default=None, help="expert parallelism: 1 or the TP degree (default 1)")
    parser.add_argument("--weights", type=str_list, default=["fp8_block"],
                        help="weights dtype(s): fp8_block, bf16, nvfp4 (Blackwell)")
    parser.add_argument("--kv-dtype", type=str_list, default=["bf16"], help="KV cache dtype(s): bf16, fp8")
    parser.add_argument("--state-dtype", default="bfloat16", help="GDN state dtype: bfloat16 or float32")
    parser.add_argument("--isl", type=int_list, default=[1024], help="input tokens per request")
    parser.add_argument("--osl", type=int_list, default=[1024], help="output tokens per request")
    parser.add_argument("--concurrency", type=int_list, default=[1, 4, 16, 64, 128], help="requests in flight")
    parser.add_argument("--draft-tokens", type=_draft_list, default=[4],
                        help="T verified per step (topk-1 chain of T-1 drafts); 'none' = no speculation")
    parser.add_argument("--accept-len", type=float, default=3.17,
                        help="tokens kept per verify step, in [1, T] (the same at every T)")
    parser.add_argument("--accept-curve", default=None,
                        help="a reported acceptance curve by name (acceptance_curves.csv) or a CSV/parquet file "
                             "(draft_tokens, accept_len); replaces --accept-len")
    parser.add_argument("--strategy", type=str_list, default=["full_cache"], help="GDN verify strategy(ies)")
    parser.add_argument("--backend", type=str_list, default=["triton"], help="GDN kernels: triton, flashinfer")
    parser.add_argument("--engine", default="sglang", help="serving engine of the op tables")
    parser.add_argument("--num-prompts", type=int, default=None,
                        help="prompts per simulated run (default 8 x concurrency)")
    parser.add_argument("--max-running", type=int, default=None,
                        help="engine's running-request cap (default: concurrency)")
    parser.add_argument("--range-ratio", type=float, default=1.0,
                        help="bench_serving --random-range-ratio (1: fixed lengths)")
    parser.add_argument("--all-columns", action="store_true", help="print every column (sources included)")
    parser.add_argument("--out", default=None, help="also write the table (.csv or .parquet)")


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
