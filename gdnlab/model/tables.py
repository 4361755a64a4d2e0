"""What-if tables from a step model: tidy DataFrames that :mod:`gdnlab.plots.model` draws.

Every table has ``status = "projected"`` rows and carries its footnote in
``df.attrs["provenance"]`` (:meth:`StepModel.provenance` plus the table's own settings), so a
figure built from it names the GPU, the served model, the fitted parameters and the GDN cost source
without computing anything itself.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..seed import MAX_RUNNING_REQUESTS, SEED_DRAFT_TOKENS
from .params import SEED_MTP, MTPConfig
from .serving import project
from .step import StepModel

__all__ = ["speedup_grid", "break_even_table", "breakdown_table", "gdn_cost_table", "tpot_projection",
           "throughput_projection", "KERNEL_STATES"]

#: the seed's two software states; FlashInfer is modelled by ``flashinfer_pre3147`` before the fix
KERNEL_STATES = {"before_fix": {"flashinfer": "flashinfer_pre3147"}, "fixed": {}}


def _check_sm(sm) -> StepModel:
    if not isinstance(sm, StepModel):
        raise ValueError(f"sm must be a StepModel (e.g. gdnlab.model.seed_model()), got {type(sm).__name__}")
    return sm


def _ints(name: str, values: Iterable) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold positive integers, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def _finish(df: pd.DataFrame, sm: StepModel, **extra: object) -> pd.DataFrame:
    df["status"], df["gpu"] = "projected", sm.gpu.name
    df.attrs["provenance"] = sm.provenance(**extra)
    return df


def speedup_grid(sm: StepModel, *, backend: str = "flashinfer", batch: int = 128, ctx_per_request: float = 288.0,
                 draft_tokens: Iterable[int] = range(2, 9), accept_lens: Sequence[float] | None = None) -> pd.DataFrame:
    """Steady-state speedup of speculation over accept length x draft tokens T (topk-1 chain, T-1
    draft steps) at ``batch`` running requests.

    Columns ``draft_tokens, accept_len, speedup`` (NaN where accept_len > T), ``backend, batch,
    ctx_per_request, status, gpu``. ``accept_lens`` defaults to 1..max(T) in steps of 0.25.
    """
    sm = _check_sm(sm)
    Ts = _ints("draft_tokens", draft_tokens)
    acc = np.linspace(1.0, max(Ts), 4 * (max(Ts) - 1) + 1) if accept_lens is None else np.asarray(accept_lens, float)
    rows = [{"draft_tokens": T, "accept_len": float(a),
             "speedup": sm.speedup(backend, batch, ctx_per_request, float(a), T) if 1.0 <= a <= T else np.nan}
            for T in Ts for a in acc]
    df = pd.DataFrame(rows)
    df["backend"], df["batch"], df["ctx_per_request"] = backend, batch, ctx_per_request
    return _finish(df, sm, backend=backend, batch=batch, ctx=ctx_per_request)


def break_even_table(sm: StepModel, *, backends: Sequence[str] = ("flashinfer", "triton"),
                     batches: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128), draft_tokens: int = SEED_DRAFT_TOKENS,
                     ctx_per_request: float = 288.0) -> pd.DataFrame:
    """Accept length below which speculation stops paying, per backend and batch (running requests).

    Columns ``backend, batch, draft_tokens, break_even_accept_len, status, gpu`` (a value above T:
    speculation cannot pay there; T must be >= 2).
    """
    sm = _check_sm(sm)
    rows = [{"backend": b, "batch": n, "draft_tokens": draft_tokens,
             "break_even_accept_len": sm.break_even_accept_len(b, n, ctx_per_request, draft_tokens)}
            for b in backends for n in _ints("batches", batches)]
    return _finish(pd.DataFrame(rows), sm, T=draft_tokens, ctx=ctx_per_request)


def breakdown_table(sm: StepModel, *, backend: str = "flashinfer", batches: Iterable[int] = (1, 4, 16, 64, 128),
                    ctx_per_request: float = 288.0, mtp: MTPConfig | None = SEED_MTP) -> pd.DataFrame:
    """Parts of one iteration (µs) per batch: :meth:`StepModel.breakdown` stacked (``part, time_us,
    share, backend, batch, ctx_per_request, mtp, status, gpu``)."""
    sm = _check_sm(sm)
    df = pd.concat([sm.breakdown(backend, n, ctx_per_request, mtp) for n in _ints("batches", batches)],
                   ignore_index=True)
    return _finish(df, sm, backend=backend, ctx=ctx_per_request)


def gdn_cost_table(sm: StepModel, *, backends: Sequence[str] = ("flashinfer", "triton"),
                   batches: Iterable[int] = (1, 16, 64, 128), draft_tokens: Iterable[int] = (1, 2, 3, 4, 6, 8)
                   ) -> pd.DataFrame:
    """GDN time of one layer call (µs) per backend, batch and draft tokens T (T = 1 is decode).

    Columns ``backend, batch, draft_tokens, mode, time_us, status, gpu``.
    """
    sm = _check_sm(sm)
    Ts = _ints("draft_tokens", draft_tokens)
    rows = [{"backend": b, "batch": n, "draft_tokens": T, "mode": "decode" if T == 1 else "verify",
             "time_us": sm.gdn_call_us(b, "decode" if T == 1 else "verify", n, T)}
            for b in backends for n in _ints("batches", batches) for T in Ts]
    return _finish(pd.DataFrame(rows), sm, gdn_state=str(sm.model.gdn.state_dtype))


def _kernels(kernel_state: str) -> dict[str, str]:
    if kernel_state not in KERNEL_STATES:
        raise ValueError(f"kernel_state must be 'before_fix' or 'fixed', got {kernel_state!r}")
    return KERNEL_STATES[kernel_state]


def _seed_backends(kernels: pd.Series, kern: dict[str, str]) -> pd.Series:
    """Kernel model names back to the seed's backend names (``flashinfer_pre3147`` -> ``flashinfer``)."""
    back = {v: k for k, v in kern.items()}
    return kernels.map(lambda k: back.get(k, k))


def tpot_projection(sm: StepModel, *, kernel_state: str = "fixed", backends: Sequence[str] = ("flashinfer", "triton"),
                    concurrencies: Sequence[int] = (1, 4, 16, 32, 64, 128, 256), isl: int = 32, osl: int = 512
                    ) -> pd.DataFrame:
    """Mean TPOT vs client concurrency, MTP on (the seed's setting), simulated bench_serving runs with
    the seed's 128-request cap: :func:`gdnlab.model.project` rows, ``backend`` named as in the seed and
    ``kernel`` the GDN kernel model (``flashinfer_pre3147`` for FlashInfer before the fix)."""
    sm = _check_sm(sm)
    kern = _kernels(kernel_state)
    df = project(sm, backends=[kern.get(b, b) for b in backends], concurrencies=concurrencies, osls=(osl,),
                 isl=isl, mtp_setups={"MTP": SEED_MTP})
    df.insert(1, "kernel", df["backend"])
    df["backend"] = _seed_backends(df["kernel"], kern)
    df["kernel_state"] = kernel_state
    df.attrs["kernel_state"] = kernel_state
    df.attrs["provenance"] = sm.provenance(kernel_state=kernel_state, isl=isl, osl=osl)
    return df


def throughput_projection(sm: StepModel, *, kernel_state: str = "before_fix",
                          backends: Sequence[str] = ("flashinfer", "triton"),
                          osls: Sequence[int] = (512, 1024, 2048, 4096), isl: int = 32, num_prompts: int = 256
                          ) -> pd.DataFrame:
    """Output throughput vs OSL with and without MTP, all requests sent at t=0 with at most
    ``--max-running-requests`` (128) running, as the seed's OSL sweep (which ran before
    flashinfer#3147, hence ``kernel_state="before_fix"``). No-MTP rows for the first backend only
    (its GDN kernels differ least without speculation). Columns as :func:`tpot_projection`."""
    sm = _check_sm(sm)
    kern = _kernels(kernel_state)
    df = project(sm, backends=[kern.get(b, b) for b in backends], concurrencies=(None,), osls=osls, isl=isl,
                 num_prompts=num_prompts, max_running=MAX_RUNNING_REQUESTS)
    df.insert(1, "kernel", df["backend"])
    df["backend"] = _seed_backends(df["kernel"], kern)
    df = df[df["mtp"] | (df["backend"] == backends[0])].reset_index(drop=True)
    df["kernel_state"] = kernel_state
    df.attrs["kernel_state"] = kernel_state
    df.attrs["provenance"] = sm.provenance(kernel_state=kernel_state, isl=isl, num_prompts=num_prompts)
    return df
