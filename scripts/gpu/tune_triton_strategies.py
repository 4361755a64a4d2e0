#!/usr/bin/env python3
"""Tiling of gdnlab's Triton verify-strategy kernels: time every strategy's step per (BV, warps).

    python3 scripts/gpu/tune_triton_strategies.py --out $OUT/tune_triton.parquet      # GPU, ~3 min
    python3 scripts/gpu/tune_triton_strategies.py --out /tmp/t.parquet --device cpu --tiny   # CPU smoke run

For each tiling (``--tilings``: ``BV:WARPS`` pairs, ``auto`` = :func:`gdnlab.kernels.triton.auto_config`)
it runs the strategy-step grid of :func:`gdnlab.sweep.run_sweep` for the ``triton`` backend only
(every strategy, ``--batches``, T=4, accept length 3.17, bf16 state by default, correctness check at
B = ``--check-batch``) with ``strategy_options={"triton": {"bv": BV, "num_warps": WARPS}}``, so every
row is an ordinary step row (amortised over 16 steps in one CUDA graph, L2 flushed) plus ``bv`` and
``num_warps`` columns. Writes all rows to ``--out`` and prints, per strategy and B, the step time of
each tiling and the fastest checked one, relative to ``auto``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd

from gdnlab.errors import InputError
from gdnlab.shapes import GDNShape
from gdnlab.strategies.registry import STRATEGY_NAMES
from gdnlab.sweep import DEFAULT_ACCEPT_LEN, SweepConfig, run_sweep

DEFAULT_TILINGS = "auto,8:1,16:1,32:1,16:2,32:2,32:4,64:4,64:8"


def parse_tilings(text: str) -> list[tuple[int | None, int | None]]:
    """``"auto,16:2"`` -> ``[(None, None), (16, 2)]``; :class:`InputError` names a bad item."""
    out: list[tuple[int | None, int | None]] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "auto":
            out.append((None, None))
            continue
        try:
            bv, nw = (int(x) for x in item.split(":"))
        except ValueError as exc:
            raise InputError(f"tiling {item!r}: expected BV:WARPS (e.g. 16:2) or auto") from exc
        if bv < 1 or bv & (bv - 1) or nw not in (1, 2, 4, 8, 16):
            raise InputError(f"tiling {item!r}: BV must be a power of two and WARPS one of 1, 2, 4, 8, 16")
        out.append((bv, nw))
    if not out:
        raise InputError("no tilings given")
    return out


def best_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, batch): step µs of ``auto`` and of the fastest checked tiling, and their ratio."""
    ok = df[(df["status"] == "ok") & (df["correct"].fillna(False).astype(bool))].copy()
    ok["tiling"] = ok["tiling"].astype(str)
    rows = []
    for (name, B), g in ok.groupby(["strategy", "batch"], sort=True):
        auto = g[g["tiling"] == "auto"]["step_us"]
        best = g.loc[g["step_us"].idxmin()]
        rows.append({"strategy": name, "batch": int(B), "auto_step_us": float(auto.iloc[0]) if len(auto) else None,
                     "best_tiling": best["tiling"], "best_step_us": float(best["step_us"]),
                     "best_vs_auto": float(best["step_us"] / auto.iloc[0]) if len(auto) else None})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, help="parquet file for every row")
    ap.add_argument("--tilings", default=DEFAULT_TILINGS, help="comma list of BV:WARPS or auto")
    ap.add_argument("--batches", default="1,16,64,256", help="batches B (comma list)")
    ap.add_argument("--state-dtype", default="bfloat16", help="state dtype of the pool")
    ap.add_argument("--accept-len", type=float, default=DEFAULT_ACCEPT_LEN, help="mean accepted tokens per step")
    ap.add_argument("--check-batch", type=int, default=16, help="B of each tiling's correctness check")
    ap.add_argument("--repeats", type=int, default=20, help="timed samples per point")
    ap.add_argument("--budget-s", type=float, default=400.0, help="stop starting new tilings after this long")
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    ap.add_argument("--tiny", action="store_true", help="a tiny shape (CPU smoke run with TRITON_INTERPRET=1)")
    args = ap.parse_args(argv)
    try:
        tilings = parse_tilings(args.tilings)
        batches = tuple(int(b) for b in args.batches.split(","))
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    preset = (GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=16) if args.tiny
              else "qwen3.5-397b-a17b@tp4")
    t0, frames = time.perf_counter(), []
    for bv, nw in tilings:
        if time.perf_counter() - t0 > args.budget_s:
            print(f"budget of {args.budget_s:g} s spent: tilings from {bv}:{nw} on not run", flush=True)
            break
        label = "auto" if bv is None else f"{bv}:{nw}"
        opts = {} if bv is None else {"bv": bv, "num_warps": nw}
        cfg = SweepConfig(modes=(), strategies=STRATEGY_NAMES, strategy_backends=("triton",), strategy_batches=batches,
                          strategy_draft_tokens=(4,), accept_lens=(args.accept_len,), state_dtypes=(args.state_dtype,),
                          presets=(preset,), check_batch=args.check_batch, repeats=args.repeats, device=args.device,
                          strategy_options={"triton": opts})
        t1 = time.perf_counter()
        df = run_sweep(cfg, None, progress=False)
        df["tiling"], df["bv"], df["num_warps"] = label, bv, nw
        frames.append(df)
        bad = df[df["status"] != "ok"]
        print(f"tiling {label}: {len(df)} rows in {time.perf_counter() - t1:.1f} s"
              + (f"; {len(bad)} not ok: {bad['status'].iloc[0][:120]}" if len(bad) else ""), flush=True)
    if not frames:
        print("error: no tiling ran", file=sys.stderr)
        return 1
    allrows = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    allrows.to_parquet(out)
    pivot = allrows[allrows["status"] == "ok"].pivot_table(index=["strategy", "batch"], columns="tiling",
                                                           values="step_us", aggfunc="first")
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print("\nstep µs per tiling (BV:WARPS)\n" + pivot.round(1).to_string())
        print("\nfastest checked tiling per strategy and B\n" + best_table(allrows).round(3).to_string(index=False))
    print(f"wrote {len(allrows)} rows to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
