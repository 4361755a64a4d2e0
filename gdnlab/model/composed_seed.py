"""The composed bf16-component model (:class:`~gdnlab.model.composed.ComposedStep`) against the seed's
GB200 rows, with two fitted numbers per software state -- kept for ``gdnlab plan`` until it moves to
:func:`gdnlab.model.predict.predict`; :func:`gdnlab.model.validate` checks the engine model instead.

:func:`seed_step` projects the measured H200 components (bf16 grouped GEMMs, SDPA attention, unfused
norms, L2 flushed: not what an engine runs) to GB200 (bandwidth ratio; NVFP4 bytes for the routed and
shared experts) with GDN kernel times from a sweep projected the same way. :func:`seed_comparison`
fits ``Overheads`` (``component_scale``, ``request_us``) per software state on that state's fit rows
(:func:`gdnlab.model.seed_runs.seed_roles`: no-MTP OSL rows and FlashInfer TPOT rows) and predicts the
rest. Caveat stated where these numbers are used: the fixed-state fit rows (FlashInfer TPOT) and its
held-out rows (Triton TPOT at the same concurrencies, within 1 % of them) are nearly the same numbers,
so that state's held-out check is close to circular.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..seed import SEED_FLASHINFER as FI
from ..seed import SEED_TRITON as TR
from ..seed import load_seed
from .composed import ComposedStep, Overheads
from .gdn_sweep import SweepGDN
from .measured import NVFP4_BYTES_PER_PARAM, ComponentTimes
from .numeric import nnls
from .seed_runs import SeedAssumptions, check_seed_df, seed_equation, seed_roles, seed_run
from .served import ServedModel

__all__ = ["seed_step", "seed_comparison", "SeedComparison", "SEED_STATES", "MOE_NVFP4"]


#: weight-byte ratios for the seed's NVFP4 checkpoint vs the bf16 components
MOE_NVFP4 = {"moe.experts": NVFP4_BYTES_PER_PARAM / 2.0, "moe.shared_expert": NVFP4_BYTES_PER_PARAM / 2.0,
             "mtp_draft": 0.5 * (1.0 + NVFP4_BYTES_PER_PARAM / 2.0)}
#: software state -> seed tables
SEED_STATES = {"before_fix": ("osl_sweep", "tpot_concurrency"), "fixed": ("tpot_concurrency_fixed",)}


def seed_step(times: ComponentTimes, sweep: pd.DataFrame | None = None, *, gpu: str = "GB200") -> ComposedStep:
    """The seed's step on ``gpu``: components projected from their GPU, GDN kernels from ``sweep``
    (projected from the sweep's GPU; bf16 state as the seed's ``--mamba-ssm-dtype bfloat16``)."""
    proj = times.projected(gpu, weight_bytes=MOE_NVFP4)
    gdn = None
    if sweep is not None:
        gdn = SweepGDN.from_sweep(sweep, shape=ServedModel().gdn).projected(gpu)
    return ComposedStep(proj, gdn=gdn, state_dtype="bfloat16")


@dataclass
class SeedComparison:
    """Rows (one per compared number), the fitted numbers per software state, the step model."""

    rows: pd.DataFrame
    params: dict
    step: ComposedStep


def _state(table: str) -> str:
    return "fixed" if table == "tpot_concurrency_fixed" else "before_fix"


def seed_comparison(step: ComposedStep, seed_df: pd.DataFrame | None = None,
                    assumptions: SeedAssumptions | None = None) -> SeedComparison:
    """Fit ``Overheads`` per software state on its fit rows, predict the rest, add the baselines.

    Columns: ``metric, table, backend, mtp, x_name, x, kernel_state, unit, predicted, observed,
    rel_error, role`` (fit / heldout), ``baseline_constant_speedup``,
    ``baseline_triton_eq_flashinfer`` (each baseline's prediction where it makes one, else NaN)."""
    a = assumptions or SeedAssumptions()
    df = load_seed() if seed_df is None else seed_df
    check_seed_df(df)
    roles = seed_roles(df)
    perf = df[roles != "unused"]
    runs = {i: seed_run(step, row, a, str(row["backend"])) for i, row in perf.iterrows()}
    params = {}
    for state, tables in SEED_STATES.items():
        fit = perf[(roles[perf.index] == "fit") & perf["table"].isin(tables)]
        if fit.empty:
            continue
        A, b = zip(*(seed_equation(runs[i], row) for i, row in fit.iterrows()))
        th = nnls(np.vstack(A), np.asarray(b))
        names = "; ".join(f"{r['table']} {r['backend']} {'MTP' if r['mtp'] else 'no MTP'} "
                          f"{'OSL' if r['table'] == 'osl_sweep' else 'c'}"
                          f"{int(r['osl'] if r['table'] == 'osl_sweep' else r['concurrency'])}"
                          for _, r in fit.iterrows())
        params[state] = Overheads(float(th[0]), float(th[1]),
                                  source=f"fitted on the seed's {state} fit rows (GB200, {len(fit)}: {names})")
    rows, val = [], {}
    for i, row in perf.iterrows():
        p = params.get(_state(row["table"]), Overheads())
        run = runs[i]
        if row["metric"] == "output_throughput":
            pred, xn, x, unit = run.throughput(p), "osl", int(row["osl"]), "tok/s"
        else:
            pred, xn, x, unit = run.tpot_ms(p), "concurrency", int(row["concurrency"]), "ms"
        val[(row["table"], row["backend"], bool(row["mtp"]), x)] = (pred, float(row["value"]))
        rows.append({"metric": str(row["metric"]), "table": row["table"], "backend": row["backend"],
                     "mtp": bool(row["mtp"]), "x_name": xn, "x": x, "kernel_state": _state(row["table"]),
                     "unit": unit, "predicted": pred, "observed": float(row["value"]), "role": roles[i]})
    # baselines on the direct rows
    speedups = [val[("osl_sweep", FI, True, x)][1] / val[("osl_sweep", FI, False, x)][1]
                for (t, be, m, x) in val if t == "osl_sweep" and be == FI and m
                and ("osl_sweep", FI, False, x) in val]
    c = float(np.mean(speedups)) if speedups else np.nan
    for r in rows:
        key_fi = (r["table"], FI, r["mtp"], r["x"])
        r["baseline_triton_eq_flashinfer"] = val[key_fi][1] if r["backend"] == TR and key_fi in val else np.nan
        no = ("osl_sweep", FI, False, r["x"])
        r["baseline_constant_speedup"] = val[no][1] * c if r["table"] == "osl_sweep" and r["mtp"] \
            and no in val else np.nan
    # derived held-out rows
    for (t, be, m, x), (p, o) in list(val.items()):
        if t == "osl_sweep" and be == FI and m and (t, be, False, x) in val:
            p0, o0 = val[(t, be, False, x)]
            rows.append({"metric": "mtp_speedup", "table": t, "backend": be, "mtp": True, "x_name": "osl", "x": x,
                         "kernel_state": "before_fix", "unit": "ratio", "predicted": p / p0, "observed": o / o0,
                         "role": "heldout", "baseline_constant_speedup": c, "baseline_triton_eq_flashinfer": np.nan})
        if t.startswith("tpot") and be == TR and (t, FI, m, x) in val:
            p1, o1 = val[(t, FI, m, x)]
            rows.append({"metric": "tpot_ratio_triton_over_flashinfer", "table": t, "backend": f"{TR}/{FI}",
                         "mtp": m, "x_name": "concurrency", "x": x, "kernel_state": _state(t), "unit": "ratio",
                         "predicted": p / p1, "observed": o / o1, "role": "heldout",
                         "baseline_constant_speedup": np.nan, "baseline_triton_eq_flashinfer": 1.0})
        if t == "osl_sweep" and be == TR and m and (t, FI, True, x) in val:
            p1, o1 = val[(t, FI, True, x)]
            rows.append({"metric": "throughput_ratio_flashinfer_over_triton", "table": t,
                         "backend": f"{FI}/{TR}", "mtp": True, "x_name": "osl", "x": x,
                         "kernel_state": "before_fix", "unit": "ratio", "predicted": p1 / p, "observed": o1 / o,
                         "role": "heldout", "baseline_constant_speedup": np.nan,
                         "baseline_triton_eq_flashinfer": 1.0})
    out = pd.DataFrame(rows)
    out["rel_error"] = (out["predicted"] - out["observed"]) / out["observed"]
    return SeedComparison(out, dict(params), step)
