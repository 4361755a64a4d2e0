"""Check the kernel contract's identities on the spot, with the reference backend.

For each batch size: verify of T tokens equals T decodes (outputs, and the state after token T), and
commit(accepted=T) equals T decodes over the whole pool. Also the wall time of each call and the
roofline bytes it moves. ``gdnlab summary`` prints the table.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
import torch

from .errors import InputError
from .inputs import make_inputs
from .kernels import get_backend
from .roofline import gdn_bytes
from .shapes import GDNShape, preset
from .state import StatePool

__all__ = ["contract_identities"]


def contract_identities(preset_name: str, tp: int, batches: Sequence[int], T: int, state_dtype: str,
                        device: str | torch.device) -> tuple[GDNShape, pd.DataFrame]:
    """One row per batch size B: wall time of decode (µs per token) and verify (µs), bytes (MB), and the
    identity errors ``max|o_verify - o_decodes|``, ``max|S_T - decode^T|``, ``max|commit(T) - decode^T|``.

    Raises ``InputError`` for a batch size or T below 1 and ``ValueError`` for an unknown preset, tp or
    dtype."""
    bad = [b for b in batches if int(b) < 1]
    if bad or not batches:
        raise InputError(f"batch sizes must be >= 1, got {list(batches)}")
    if int(T) < 1:
        raise InputError(f"draft tokens T must be >= 1, got {T}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: no CUDA device here (use --device cpu)")
    shape = preset(preset_name, tp=tp, state_dtype=state_dtype)
    be = get_backend("reference")
    rows = []
    for B in batches:
        pool = StatePool(shape, capacity=2 * B + 1, device=dev).randomize_(seed=B)
        slots = pool.alloc(B).flip(0)                      # slots not in 0..B-1 order
        idx = pool.batch_indices(slots)
        x = make_inputs(shape, B, T, device=dev, seed=B)
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
        rows.append({"batch": B, "draft_tokens": T, "decode_us_per_token": round(t_decode, 1),
                     "verify_us": round(t_verify, 1),
                     "decode_MB": gdn_bytes(shape, B, 1, mode="decode").total / 1e6,
                     "verify_MB": gdn_bytes(shape, B, T, mode="verify").total / 1e6,
                     "max|o_verify - o_decodes|": err_o, "max|S_T - decode^T|": err_s,
                     "max|commit(T) - decode^T|": err_c})
    return shape, pd.DataFrame(rows)
