"""Tables for figures of the acceptance-length effects (notebook 03): tokens per step vs per-draft
rate and T (chain model), speedup over plain decode vs accept length with the break-even accept
length, and a step's parts stacked over batches."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..acceptance import rate_to_accept_len
from ..backends import DEFAULT_BACKEND
from ..errors import InputError
from ..strategies.registry import BASELINE
from .composed import ComposedStep
from .mtp import MTPConfig

__all__ = ["tokens_per_step_table", "speedup_table", "breakdown_by_batch"]


def tokens_per_step_table(draft_tokens: Iterable[int] = (2, 3, 4, 6, 8), rates: Iterable[float] | None = None
                          ) -> pd.DataFrame:
    """Tokens per step (mean accept length) vs per-draft accept rate and T (chain model):
    ``draft_tokens, rate, accept_len``."""
    rs = np.linspace(0.0, 1.0, 21) if rates is None else np.asarray(list(rates), float)
    return pd.DataFrame([{"draft_tokens": int(t), "rate": float(r), "accept_len": rate_to_accept_len(float(r), int(t))}
                         for t in draft_tokens for r in rs])


def speedup_table(step: ComposedStep, *, batches: Iterable[int] = (1, 16, 64, 256),
                  draft_tokens: Iterable[int] = (2, 4, 8), strategies: Iterable[str] | None = None,
                  backend: str = DEFAULT_BACKEND, ctx_per_request: float = 1024.0, points: int = 13) -> pd.DataFrame:
    """Speedup of speculation over plain decode vs accept length, per verify strategy, T and batch,
    and the break-even accept length: ``strategy, draft_tokens, batch, accept_len, speedup,
    break_even_accept_len, gdn_share`` (at that accept length)."""
    strategies = list(strategies or (step.gdn.options().query("mode == 'verify'")["strategy"].unique()
                                     if step.gdn is not None else step.times.strategies() or [BASELINE]))
    rows = []
    for s in strategies:
        for T in draft_tokens:
            for B in batches:
                try:
                    be = step.break_even_accept_len(backend, B, ctx_per_request, int(T), strategy=s)
                except InputError:
                    continue
                for a in np.linspace(1.0, float(T), points):
                    mtp = MTPConfig(draft_tokens=int(T), acceptance=float(a))
                    rows.append({"strategy": s, "draft_tokens": int(T), "batch": int(B), "accept_len": float(a),
                                 "speedup": step.speedup(backend, B, ctx_per_request, float(a), int(T), strategy=s),
                                 "break_even_accept_len": be,
                                 "gdn_share": step.gdn_share(backend, B, ctx_per_request, mtp, strategy=s)})
    df = pd.DataFrame(rows)
    df["backend"] = backend
    df.attrs["provenance"] = step.provenance(backend=backend, ctx_per_request=ctx_per_request)
    return df


def breakdown_by_batch(step: ComposedStep, *, batches: Iterable[int] = (1, 4, 16, 64, 128, 256),
                       backend: str = DEFAULT_BACKEND, ctx_per_request: float = 1024.0, mtp: MTPConfig | None = None,
                       strategy: str = BASELINE) -> pd.DataFrame:
    """:meth:`ComposedStep.breakdown` stacked over batches (``part, time_us, share, provenance, batch``)."""
    df = pd.concat([step.breakdown(backend, int(b), ctx_per_request, mtp, strategy) for b in batches],
                   ignore_index=True)
    df.attrs["provenance"] = step.provenance(backend=backend, ctx_per_request=ctx_per_request,
                                             mtp=f"T={mtp.draft_tokens}, accept {mtp.accept_len:.2f}" if mtp else "off")
    return df
