"""End-to-end checks of the engine model (:class:`~gdnlab.model.engine_step.EngineStep`): every seed row
and every published run with MTP, each beside AIConfigurator's own prediction for the same
configuration and the trivial baselines.

:func:`e2e_rows` returns one row per reported number (:class:`~gdnlab.model.calibration.Case`) and per
number derived from two of them (the seed's MTP speedup per OSL, its Triton / FlashInfer TPOT
ratios). Each row's prediction uses the engine numbers of its fold (:func:`~gdnlab.model.calibration.fold_params`:
never fitted on the row or its source); ``fit_rows`` names what they were fitted on. Columns:

* ``predicted`` / ``observed`` / ``rel_error`` -- gdnlab's model vs the published number;
* ``kernels_only`` -- the same simulation with no host cost (the engine-grade kernels alone);
* ``aic_predicted`` / ``aic_rel_error`` -- AIConfigurator 0.12.0's own end-to-end prediction
  (``aiconfigurator_predictions.csv`` for the published runs, ``aiconfigurator_seed_predictions.csv``
  for the seed; NaN where it cannot price the row);
* ``baseline_constant_speedup`` (an oracle: MTP throughput = no-MTP x the mean reported speedup) and
  ``baseline_triton_eq_flashinfer`` (every Triton number = FlashInfer's), with their errors.

``role``: ``check`` (scored) or ``fit`` (the before-fix TPOT table, the fit rows of that software
state; shown, never scored).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..anchors.compare import load_predictions
from ..seed import SEED_FLASHINFER as FI
from ..seed import SEED_TRITON as TR
from .aic_seed import load_seed_predictions
from .calibration import Case, all_cases, fold_params, simulate_case
from .engine_step import EngineParams

__all__ = ["e2e_rows", "E2E_COLUMNS", "e2e_summary", "sensitivity"]

E2E_COLUMNS = ["check", "case_id", "source", "state", "gpu", "metric", "backend", "mode", "draft_tokens", "x_name",
               "x", "unit", "predicted", "observed", "rel_error", "role", "kernels_only", "aic_predicted",
               "aic_rel_error", "baseline_constant_speedup", "baseline_triton_eq_flashinfer", "pass_us", "request_us",
               "fit_rows", "accept_len", "accept_len_source", "configuration", "citation", "predicted_status",
               "observed_status", "note"]


def _aic_value(case: Case, seed_aic: pd.DataFrame, pub_aic: pd.DataFrame) -> float:
    if case.source.startswith("seed"):
        r = seed_aic[seed_aic["aic_key"] == case.aic_key]
    else:
        r = pub_aic[(pub_aic["run_id"] == case.aic_key) & pub_aic["supported"]]
    if r.empty:
        return float("nan")
    col = "output_tok_s_total" if case.metric == "output_throughput" else "tpot_ms"
    return float(r[col].iloc[0])


def _x(case: Case) -> tuple[str, int]:
    if case.source.startswith("seed"):
        sc = case.scenario
        return ("concurrency", int(sc.concurrency)) if case.metric == "mean_tpot" else ("osl", int(sc.osl))
    return "concurrency", int(case.scenario.concurrency or 0)


def _row(case: Case, params: EngineParams, seed_aic, pub_aic) -> dict:
    run = simulate_case(case)
    pred = case.value(run, params)
    bare = case.value(run, EngineParams(0.0, 0.0, source="kernels alone"))
    aic_v = _aic_value(case, seed_aic, pub_aic)
    xn, x = _x(case)
    mtp = case.mtp
    return {"check": "seed" if case.source.startswith("seed") else "published", "case_id": case.case_id,
            "source": case.source, "state": case.state, "gpu": case.gpu.upper(), "metric": case.metric,
            "backend": case.backend, "mode": "mtp" if mtp else "decode",
            "draft_tokens": int(mtp.draft_tokens) if mtp else 1, "x_name": xn, "x": x,
            "unit": "tok/s" if case.metric == "output_throughput" else "ms", "predicted": pred,
            "observed": case.observed, "role": case.role, "kernels_only": bare, "aic_predicted": aic_v,
            "pass_us": params.pass_us, "request_us": params.request_us, "fit_rows": params.source,
            "accept_len": mtp.accept_len if mtp else 1.0, "accept_len_source": case.accept_len_source,
            "configuration": (f"{case.gpu} TP{case.tp} EP{case.ep} {case.weights} weights, {case.kv_dtype} KV, "
                              f"{case.state_dtype} state, GDN {case.backend} {case.strategy}; ISL {case.scenario.isl}"
                              f" OSL {case.scenario.osl} range {case.scenario.range_ratio:g}, "
                              f"{case.scenario.num_prompts} prompts, concurrency {case.scenario.concurrency}, "
                              f"max running {case.scenario.max_running}, chunked prefill {case.chunked_prefill}"),
            "citation": case.citation, "predicted_status": "projected", "observed_status": "reported",
            "note": f"{case.source} · {case.state}"}


def _derived(rows: pd.DataFrame) -> list[dict]:
    """The seed's MTP speedups per OSL (FlashInfer) and Triton / FlashInfer TPOT ratios (both tables)."""
    out = []
    osl = rows[rows["case_id"].str.startswith("seed/osl_sweep/flashinfer")]
    mean_speedup = []
    for x in sorted(set(osl["x"])):
        no = osl[(osl["x"] == x) & (osl["mode"] == "decode")]
        yes = osl[(osl["x"] == x) & (osl["mode"] == "mtp")]
        if no.empty or yes.empty:
            continue
        n, y = no.iloc[0], yes.iloc[0]
        mean_speedup.append(y["observed"] / n["observed"])
        out.append({**y.to_dict(), "case_id": f"seed/osl_sweep/flashinfer/speedup/osl{x}", "metric": "mtp_speedup",
                    "unit": "ratio", "predicted": y["predicted"] / n["predicted"],
                    "observed": y["observed"] / n["observed"], "kernels_only": y["kernels_only"] / n["kernels_only"],
                    "aic_predicted": y["aic_predicted"] / n["aic_predicted"]})
    for r in out:
        r["baseline_constant_speedup"] = float(np.mean(mean_speedup))
    tp = rows[rows["metric"] == "mean_tpot"]
    for _, t in tp[tp["backend"] == TR].iterrows():
        f = tp[(tp["backend"] == FI) & (tp["source"] == t["source"]) & (tp["x"] == t["x"])
               & (tp["case_id"].str.split("/").str[1] == t["case_id"].split("/")[1])]
        if f.empty:
            continue
        f = f.iloc[0]
        out.append({**t.to_dict(), "case_id": t["case_id"].replace(f"/{TR}/", f"/{TR}_over_{FI}/"),
                    "metric": "tpot_ratio_triton_over_flashinfer", "backend": f"{TR}/{FI}", "unit": "ratio",
                    "predicted": t["predicted"] / f["predicted"], "observed": t["observed"] / f["observed"],
                    "kernels_only": t["kernels_only"] / f["kernels_only"], "aic_predicted": 1.0,
                    "baseline_triton_eq_flashinfer": 1.0})
    return out


def e2e_rows(cases: Sequence[Case] | None = None) -> pd.DataFrame:
    """Every case and derived ratio (:data:`E2E_COLUMNS`), with AIConfigurator's prediction and the
    baselines beside; ``attrs["folds"]`` holds each fold's fitted numbers and rows."""
    cases = list(cases) if cases is not None else all_cases()
    seed_aic, pub_aic = load_seed_predictions(), load_predictions()
    folds: dict[str, EngineParams] = {}
    rows = []
    for c in cases:
        key = "before_fix" if c.state == "before_fix" else c.source
        if key not in folds:
            folds[key] = fold_params(c, cases)
        rows.append(_row(c, folds[key], seed_aic, pub_aic))
    df = pd.DataFrame(rows)
    mtp_osl = df["case_id"].str.startswith("seed/osl_sweep") & (df["mode"] == "mtp")
    speedups = []
    for x in sorted(set(df.loc[mtp_osl, "x"])):
        o = df[df["case_id"] == f"seed/osl_sweep/flashinfer/nomtp/osl{x}"]
        m = df[df["case_id"] == f"seed/osl_sweep/flashinfer/mtp/osl{x}"]
        if len(o) and len(m):
            speedups.append(float(m["observed"].iloc[0] / o["observed"].iloc[0]))
    c_speed = float(np.mean(speedups)) if speedups else np.nan
    df["baseline_constant_speedup"] = np.nan
    for i in df.index[mtp_osl]:
        no = df[df["case_id"] == f"seed/osl_sweep/flashinfer/nomtp/osl{df.at[i, 'x']}"]
        if len(no):
            df.at[i, "baseline_constant_speedup"] = float(no["observed"].iloc[0]) * c_speed
    df["baseline_triton_eq_flashinfer"] = np.nan
    for i in df.index[df["backend"] == TR]:
        fi = df[(df["case_id"] == df.at[i, "case_id"].replace(f"/{TR}/", f"/{FI}/"))]
        if len(fi):
            df.at[i, "baseline_triton_eq_flashinfer"] = float(fi["observed"].iloc[0])
    df = pd.concat([df, pd.DataFrame(_derived(df))], ignore_index=True)
    df["rel_error"] = (df["predicted"] - df["observed"]) / df["observed"]
    df["aic_rel_error"] = (df["aic_predicted"] - df["observed"]) / df["observed"]
    out = df.reindex(columns=E2E_COLUMNS)
    out.attrs["folds"] = {k: {"pass_us": p.pass_us, "request_us": p.request_us, "source": p.source}
                          for k, p in folds.items()}
    return out


def e2e_summary(e: pd.DataFrame) -> pd.DataFrame:
    """Per check group (seed, published, derived ratios): rows, how many within 10 %, worst and mean
    |error| of gdnlab's model and of AIConfigurator on the same scored rows (``role == check``)."""
    s = e[e["role"] == "check"]
    out = []
    for name, g in (("all scored rows", s), *s.groupby(["check", "metric"])):
        label = name if isinstance(name, str) else " · ".join(name)
        both = g[g["aic_rel_error"].notna()]
        out.append({"rows": label, "n": len(g), "n_within_10pct": int((g["rel_error"].abs() <= 0.10).sum()),
                    "model_max_abs_err": g["rel_error"].abs().max(), "model_mean_abs_err": g["rel_error"].abs().mean(),
                    "n_aic": len(both), "model_mean_abs_err_aic_rows": both["rel_error"].abs().mean(),
                    "aic_mean_abs_err": both["aic_rel_error"].abs().mean(),
                    "aic_max_abs_err": both["aic_rel_error"].abs().max()})
    return pd.DataFrame(out)


def sensitivity(variants: dict | None = None) -> pd.DataFrame:
    """:func:`e2e_summary` of the scored rows under other readings of what the sources do not state
    (each variant re-simulates and re-fits every fold; ~30 s each): the seed's accept length at either
    end of its reported 3.13-3.22, InferenceX's unreported accept length at 3.12 and 3.5 instead of
    3.31. One row per variant and group."""
    from dataclasses import replace

    from .calibration import published_cases, seed_cases
    from .seed_runs import SeedAssumptions

    variants = variants or {
        "default": (SeedAssumptions(), 3.31), "seed accept 3.13": (replace(SeedAssumptions(), accept_len=3.13), 3.31),
        "seed accept 3.22": (replace(SeedAssumptions(), accept_len=3.22), 3.31),
        "InferenceX accept 3.12": (SeedAssumptions(), 3.12), "InferenceX accept 3.5": (SeedAssumptions(), 3.5)}
    out = []
    for name, (a, ix) in variants.items():
        s = e2e_summary(e2e_rows(seed_cases(a) + published_cases(ix)))
        out.append(s.assign(variant=name))
    return pd.concat(out, ignore_index=True)
