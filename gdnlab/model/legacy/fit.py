"""Fitting the roofline step model's per-event costs on the seed's reported numbers.

:func:`gdnlab.model.seed_runs.seed_roles` splits the seed's rows into **fit** and **heldout**;
:func:`fit_to_seed` fits :class:`~gdnlab.model.legacy.params.FittedParams` on the fit rows only
(non-negative least squares on relative errors of simulated bench_serving runs); :func:`seed_model`
is the fitted :class:`~gdnlab.model.legacy.iteration.StepModel`.
:mod:`gdnlab.model.legacy.validation` predicts the held-out rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from ...hardware import GPUSpec
from ...seed import SEED_FLASHINFER, load_seed
from ..numeric import nnls
from ..seed_runs import SeedAssumptions, check_seed_df, seed_equation, seed_roles, seed_run
from ..served import ServedModel
from .iteration import StepModel
from .params import FEATURES, FittedParams

__all__ = ["SeedFit", "fit_to_seed", "seed_model", "kernel_for"]


@dataclass
class SeedFit:
    """Fitted parameters for the two software states of the seed and the runs behind them."""

    before: FittedParams
    fixed: FittedParams
    assumptions: SeedAssumptions
    model: StepModel
    runs: dict = field(repr=False, default_factory=dict)


def kernel_for(row, a: SeedAssumptions) -> str:
    """GDN kernel model of a seed row: FlashInfer before flashinfer#3147 except in the fixed TPOT table."""
    if row["backend"] == SEED_FLASHINFER and row["table"] != "tpot_concurrency_fixed":
        return a.before_kernel
    return str(row["backend"])


def fit_to_seed(seed_df: pd.DataFrame | None = None, assumptions: SeedAssumptions | None = None,
                sm: StepModel | None = None) -> SeedFit:
    """Fit :class:`FittedParams` on the seed's **fit** rows only (:func:`seed_roles`).

    Stage 1 (software state before flashinfer#3147): all five parameters by non-negative least
    squares on relative errors over the 3 no-MTP OSL-sweep rows and the 7 FlashInfer rows of the
    first TPOT table. Stage 2 (the "fixed" TPOT table): ``assumptions.fixed_free`` re-fitted on its
    6 FlashInfer rows, the rest carried over.

    With the default assumptions the fit gives (µs): before the fix ``pass_us`` 6867 (a 60-layer
    target pass; a draft pass 2/61 of it), ``request_us`` 31, ``token_us`` 77, ``kv_mtoken_us`` 1311,
    ``prefill_pass_us`` 66752; with the fix ``pass_us`` 6393, ``request_us`` 0, ``token_us`` 30,
    ``prefill_pass_us`` 5759 (``kv_mtoken_us`` carried over). These are effective costs of the seed's
    setup (host, kernels far from roofline, eager prefill), not hardware constants.
    """
    a = assumptions or SeedAssumptions()
    df = load_seed() if seed_df is None else seed_df
    check_seed_df(df)
    roles = seed_roles(df)
    fit_rows = df[roles == "fit"]
    sm = sm or StepModel(a.gpu)
    runs = {}
    A1, b1, A2, b2 = [], [], [], []
    for i, row in fit_rows.iterrows():
        run = seed_run(sm, row, a, kernel_for(row, a))
        runs[i] = run
        Ai, bi = seed_equation(run, row)
        (A2 if row["table"] == "tpot_concurrency_fixed" else A1).append(Ai)
        (b2 if row["table"] == "tpot_concurrency_fixed" else b1).append(bi)
    if not A1:
        raise ValueError("seed_df has no fit rows for the first software state (no-MTP OSL sweep / TPOT table)")
    th1 = nnls(np.vstack(A1), np.asarray(b1))
    before = FittedParams.from_vector(th1, source="fit: seed no-MTP OSL sweep + TPOT (before fix), FlashInfer rows")
    th2 = th1.copy()
    if A2:
        free = [FEATURES.index(n) for n in a.fixed_free]
        fixed_cols = [j for j in range(len(FEATURES)) if j not in free]
        A2m = np.vstack(A2)
        rhs = np.asarray(b2) - A2m[:, fixed_cols] @ th1[fixed_cols]
        th2[free] = nnls(A2m[:, free], rhs)
    fixed = FittedParams.from_vector(
        th2, source="fit: seed TPOT table with flashinfer#3147 + slice fix, FlashInfer rows")
    return SeedFit(before, fixed, a, sm, runs)


def seed_model(kernel_state: Literal["before_fix", "fixed"] = "fixed", assumptions: SeedAssumptions | None = None,
               gpu: GPUSpec | str | None = None, model: ServedModel | None = None,
               gdn_rows: pd.DataFrame | None = None) -> StepModel:
    """A :class:`StepModel` with the parameters fitted on the seed (:func:`fit_to_seed`).

    ``kernel_state`` picks the software state: ``"before_fix"`` (the OSL sweep and first TPOT table)
    or ``"fixed"`` (the TPOT table with flashinfer#3147 and the slice fix). ``gpu`` / ``model``
    re-target the fitted model (e.g. ``gpu="H100-SXM"`` for an SM90 projection): the fitted per-event
    costs were fitted on GB200 and are carried over unchanged — a projection, labelled as such.
    ``gdn_rows`` (a sweep frame, e.g. ``gdnlab.results.load_sweep(path)``; see
    :class:`~gdnlab.model.legacy.gdn_costs.MeasuredGDN`) replaces
    the GDN bandwidth model by measured kernel times: pass them with the ``gpu`` they were measured
    on. Only the backends in the rows can then be asked for (no ``flashinfer_pre3147``).
    """
    if kernel_state not in ("before_fix", "fixed"):
        raise ValueError(f"kernel_state must be 'before_fix' or 'fixed', got {kernel_state!r}")
    fit = _cached_fit(assumptions or SeedAssumptions())
    params = fit.before if kernel_state == "before_fix" else fit.fixed
    if gpu is None and model is None and gdn_rows is None:
        return fit.model.with_params(params)
    return StepModel(gpu or fit.model.gpu, model or fit.model.model, fit.model.roofline, params, gdn_rows=gdn_rows)


@lru_cache(maxsize=8)
def _cached_fit(a: SeedAssumptions) -> SeedFit:
    return fit_to_seed(None, a)
