"""``gdnlab summary``: run the reference kernel on a preset shape and print a small table.

Checks on the spot the contract's identities — verify of T tokens equals T decodes (outputs and the
state after token T), and commit(accepted=T) equals T decodes (the whole pool) — and shows the
roofline bytes of each call.
"""
from __future__ import annotations

import argparse
import time

import torch

from ..inputs import make_inputs
from ..kernels import get_backend
from ..roofline import gdn_bytes
from ..shapes import preset
from ..state import StatePool


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="qwen3.5-397b-a17b")
    parser.add_argument("--tp", type=int, default=4)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--draft-tokens", type=int, default=4)
    parser.add_argument("--state-dtype", default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def summarize(preset_name: str, tp: int, batches: list[int], T: int, state_dtype: str, device: str):
    """Rows (dicts) for each batch size: wall time of decode/verify, bytes, and the identity errors."""
    import pandas as pd

    shape = preset(preset_name, tp=tp, state_dtype=state_dtype)
    be = get_backend("reference")
    rows = []
    for B in batches:
        pool = StatePool(shape, capacity=2 * B + 1, device=device).randomize_(seed=B)
        slots = pool.alloc(B).flip(0)                      # slots not in 0..B-1 order
        idx = pool.batch_indices(slots)
        x = make_inputs(shape, B, T, device=device, seed=B)
        t0 = time.perf_counter()
        o, inter = be.verify(*x.args(), pool.tensor, idx)
        t_verify = (time.perf_counter() - t0) * 1e6
        ref = pool.tensor.clone()
        outs = []
        t0 = time.perf_counter()
        for t in range(T):
            outs.append(be.decode(*x.token(t).args(), ref, idx))
        t_decode = (time.perf_counter() - t0) * 1e6 / T
        err_o = (torch.cat(outs, 1).float() - o.float()).abs().max().item()
        err_s = (ref[idx.long()].float() - inter[:, T - 1].float()).abs().max().item()
        committed = pool.tensor.clone()                    # commit(accepted=T) == T decodes
        be.commit(committed, idx, inter, torch.full((B,), T, dtype=torch.int32, device=idx.device))
        err_c = (committed.float() - ref.float()).abs().max().item()
        rows.append({"batch": B, "T": T, "decode_us_per_token": round(t_decode, 1), "verify_us": round(t_verify, 1),
                     "decode_MB": gdn_bytes(shape, B, 1, mode="decode").total / 1e6,
                     "verify_MB": gdn_bytes(shape, B, T, mode="verify").total / 1e6,
                     "max|o_verify - o_decodes|": err_o, "max|S_T - decode^T|": err_s,
                     "max|commit(T) - decode^T|": err_c})
    return shape, pd.DataFrame(rows)


def run(args: argparse.Namespace) -> int:
    shape, df = summarize(args.preset, args.tp, args.batch, args.draft_tokens, args.state_dtype, args.device)
    print(f"gdnlab reference kernel on {args.device}: {shape.describe()} (measured wall time, PyTorch reference)")
    print(df.to_string(index=False))
    return 0
