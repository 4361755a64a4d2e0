"""The model's accuracy targets in one compact frame: :func:`target_summary`.

One row per target, from :func:`gdnlab.model.validate` (nothing here fits anything; every row's
prediction was made with numbers fitted on other rows, :mod:`gdnlab.model.calibration`):

* ``slice`` -- the measured synthetic bf16 slice vs the sum of its measured components, within 10 %
  at every point;
* ``cross_gpu`` -- the H100 sweep's GDN kernels projected to the H200 by the datasheet bandwidth
  ratio vs the H200's own sweep, both as kernel time (one timing method), within 10 % at B >= 16; a
  second row with the measured copy-bandwidth ratio, for comparison (not the model's reading);
* ``e2e: every scored row`` and one row per group (seed TPOT, seed OSL throughput, seed MTP speedups,
  seed Triton/FlashInfer ratios, published TPOT, published throughput) -- within 10 %;
* ``e2e vs AIConfigurator`` -- gdnlab's mean |error| below AIConfigurator's own prediction's on the
  same rows (overall, and on the seed and on the published rows);
* ``vs baseline`` -- below each trivial baseline's mean |error| on the rows it predicts;
* ``predict coverage`` -- :func:`gdnlab.model.predict.predict` answers for H100, H200, B200 and GB200
  at TP 4 and 8 (a TPOT, or the reason it cannot run: the weights do not fit);
* ``gdn_share`` -- the GDN kernels' share of a step is reported with an interval (the sweep rows'
  p10/p90 and the host numbers' spread across folds), not an identity of the composition.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import load_sweep
from .gdn_sweep import SweepGDN
from .measured import load_components
from .validation import cross_gpu_rows, shipped_path, validate

__all__ = ["target_summary", "H100_COPY_GBPS", "TARGET_COLUMNS", "E2E_GROUPS"]

#: device-to-device copy bandwidth measured on the H100 SXM (GB/s; :mod:`gdnlab.hardware` docstring:
#: "an H100 SXM device-to-device copy moves about 3.0 TB/s here")
H100_COPY_GBPS = 3000.0
#: columns of :func:`target_summary`
TARGET_COLUMNS = ["target", "criterion", "value", "n", "n_within", "passed", "detail"]
#: (label, check, metric) groups of the end-to-end rows scored separately
E2E_GROUPS = (("seed TPOT (fixed state)", "seed", "mean_tpot"), ("seed OSL throughput", "seed", "output_throughput"),
              ("seed MTP speedup", "seed", "mtp_speedup"),
              ("seed Triton/FlashInfer TPOT", "seed", "tpot_ratio_triton_over_flashinfer"),
              ("published TPOT", "published", "mean_tpot"), ("published throughput", "published", "output_throughput"))


def _within(err: pd.Series, tol: float) -> tuple[float, int, int]:
    e = err.abs().dropna()
    return (float(e.max()) if len(e) else np.nan), int(len(e)), int((e <= tol).sum())


def _cross_row(x: pd.DataFrame, tol: float, min_batch: int, name: str, how: str) -> dict:
    sel = x[x["batch"] >= min_batch]
    worst, n, k = _within(sel["rel_error"], tol)
    miss = sel[sel["rel_error"].abs() > tol]
    misses = ", ".join(f"{r.mode} {r.backend} B={r.batch:g} {r.note.split(' · ')[-1]} {r.rel_error:+.1%}"
                       for r in miss.itertuples())
    return {"target": name, "criterion": f"|error| <= {tol:.0%} at B >= {min_batch} ({how})", "value": worst,
            "n": n, "n_within": k, "passed": bool(n and k == n),
            "detail": (f"outside: {misses}" if misses else "all within") + f"; mean |error| "
                      f"{sel['rel_error'].abs().mean():.1%}; all B: worst {x['rel_error'].abs().max():.1%}"}


def _cross_gpu(x, times, reference_sweep, target_sweep, tol, min_batch) -> list[dict]:
    pair = str(x["gpu"].iloc[0])
    rows = [_cross_row(x, tol, min_batch, "cross_gpu", f"{pair}, datasheet bandwidth ratio, kernel time")]
    if reference_sweep is None or target_sweep is None:
        return rows
    copy = SweepGDN.from_sweep(target_sweep).copy_bw_gbps
    if np.isfinite(copy) and SweepGDN.from_sweep(reference_sweep).gpu.name.startswith("H100"):
        r = H100_COPY_GBPS / copy
        alt = cross_gpu_rows(reference_sweep, times, target_sweep, min_batch=min_batch, ratio=r,
                             ratio_source="measured copy bandwidths")
        row = _cross_row(alt, tol, min_batch, "cross_gpu (copy-bandwidth ratio, not used)",
                         f"ratio {H100_COPY_GBPS:g} / {copy:.0f} GB/s = {r:.3f}")
        row["detail"] = "not the model's reading; " + row["detail"]
        rows.append(row)
    return rows


def _e2e_rows(v: pd.DataFrame, tol: float) -> list[dict]:
    s = v[v["check"].isin(["seed", "published"]) & (v["role"] == "check")]
    if s.empty:
        return []
    rows = []
    worst, n, k = _within(s["rel_error"], tol)
    rows.append({"target": "e2e: every scored row", "criterion": f"|error| <= {tol:.0%}, nothing fitted on the row "
                 "or its source", "value": worst, "n": n, "n_within": k, "passed": bool(n and k == n),
                 "detail": f"mean |error| {s['rel_error'].abs().mean():.1%}; folds: "
                           + "; ".join(f"{f}: {p['source']}" for f, p in v.attrs.get("engine_params", {}).items())})
    for label, check, metric in E2E_GROUPS:
        g = s[(s["check"] == check) & (s["metric"] == metric)]
        if g.empty:
            continue
        worst, n, k = _within(g["rel_error"], tol)
        out = g[g["rel_error"].abs() > tol]
        misses = ", ".join(f"{r.case_id} {r.rel_error:+.1%}" for r in out.itertuples())
        rows.append({"target": f"e2e: {label}", "criterion": f"|error| <= {tol:.0%}", "value": worst, "n": n,
                     "n_within": k, "passed": bool(k == n),
                     "detail": f"mean |error| {g['rel_error'].abs().mean():.1%}" + (f"; outside: {misses}" if misses
                                                                                    else "")})
    for label, sel in (("all scored rows", s), ("seed rows", s[s["check"] == "seed"]),
                       ("published rows", s[s["check"] == "published"])):
        both = sel[sel["aic_rel_error"].notna()]
        if both.empty:
            continue
        m, a = both["rel_error"].abs().mean(), both["aic_rel_error"].abs().mean()
        rows.append({"target": f"e2e vs AIConfigurator: {label}",
                     "criterion": "gdnlab mean |error| < AIConfigurator's on the same rows", "value": m - a,
                     "n": len(both), "n_within": int((both["rel_error"].abs() < both["aic_rel_error"].abs()).sum()),
                     "passed": bool(m < a), "detail": f"gdnlab {m:.1%} (worst {both['rel_error'].abs().max():.1%}) vs "
                                                      f"AIConfigurator 0.12.0 {a:.1%} (worst "
                                                      f"{both['aic_rel_error'].abs().max():.1%}); n_within = rows "
                                                      f"where gdnlab is closer"})
    for b, name in (("baseline_err_constant_speedup", "constant speedup (oracle)"),
                    ("baseline_err_triton_eq_flashinfer", "triton = flashinfer")):
        sel = s[s[b].notna()]
        if sel.empty:
            continue
        m, base = sel["rel_error"].abs().mean(), sel[b].abs().mean()
        rows.append({"target": f"e2e vs baseline: {name}", "criterion": "model mean |error| < baseline's",
                     "value": m - base, "n": len(sel), "n_within": int((sel["rel_error"].abs() < sel[b].abs()).sum()),
                     "passed": bool(m < base), "detail": f"model {m:.1%} vs baseline {base:.1%}"})
    return rows


def _predict_rows(gpus=("h100", "h200", "b200", "gb200"), tps=(4, 8)) -> list[dict]:
    from .predict import predict

    p = predict(list(gpus), tp=list(tps), concurrency=[16], draft_tokens=4, accept_len=3.2)
    answered = p["tpot_ms"].notna() | p["status"].astype(str).str.startswith("does not fit")
    priced = p[p["tpot_ms"].notna()]
    cover = {"target": "predict coverage", "criterion": "a TPOT or the reason it cannot run, for every GPU x TP",
             "value": float(answered.mean()), "n": len(p), "n_within": int(answered.sum()),
             "passed": bool(answered.all()),
             "detail": "; ".join(f"{r.gpu} TP{r.tp}: " + (f"{r.tpot_ms:.2f} ms/token" if pd.notna(r.tpot_ms)
                                                          else str(r.status)) for r in p.itertuples())}
    ok = priced[(priced["gdn_share_lo"] <= priced["gdn_share"]) & (priced["gdn_share"] <= priced["gdn_share_hi"])]
    share = {"target": "gdn_share", "criterion": "GDN share of the step reported with an interval that holds it",
             "value": float((priced["gdn_share_hi"] - priced["gdn_share_lo"]).max()) if len(priced) else np.nan,
             "n": len(priced), "n_within": len(ok), "passed": bool(len(priced) and len(ok) == len(priced)),
             "detail": "; ".join(f"{r.gpu} TP{r.tp} B=16 T=4: {r.gdn_share:.1%} [{r.gdn_share_lo:.1%}, "
                                 f"{r.gdn_share_hi:.1%}]" for r in priced.itertuples())}
    return [cover, share]


def target_summary(v: pd.DataFrame | None = None, *, times=None, reference_sweep: pd.DataFrame | None = None,
                   target_sweep: pd.DataFrame | None = None, tol: float = 0.10, min_batch: int = 16,
                   components_dir="traces/h200/components", reference_sweep_path="traces/h100/sweep.parquet",
                   target_sweep_path="traces/h200/sweep.parquet", with_predict: bool = True) -> pd.DataFrame:
    """One row per target (:data:`TARGET_COLUMNS`): ``value`` is the worst |relative error| (for a
    comparison, the model's mean |error| minus the other's; for ``predict coverage`` the answered
    fraction; for ``gdn_share`` the widest interval), ``n`` points, ``n_within`` inside ``tol`` (or
    where the model is closer). Inputs default to the shipped data (as :func:`gdnlab.model.validate`);
    pass ``v`` and the rest to reuse what a caller already has. ``with_predict``: score the predict
    coverage and GDN-share interval (eight predictions)."""
    if times is None:
        times = load_components(shipped_path(components_dir))
    if reference_sweep is None and reference_sweep_path and shipped_path(reference_sweep_path).is_file():
        reference_sweep = load_sweep(shipped_path(reference_sweep_path))
    if target_sweep is None and target_sweep_path and shipped_path(target_sweep_path).is_file():
        target_sweep = load_sweep(shipped_path(target_sweep_path))
    if v is None:
        v = validate(times, reference_sweep, target_sweep, target_sweep_path=None)
    rows = []
    s = v[v["check"] == "slice"]
    worst, n, k = _within(s["rel_error"], tol)
    rows.append({"target": "slice", "criterion": f"|error| <= {tol:.0%} at every point", "value": worst, "n": n,
                 "n_within": k, "passed": bool(n and k == n),
                 "detail": (f"composed vs measured synthetic bf16/SDPA slice ({times.gpu.name}); mean |error| "
                            f"{s['rel_error'].abs().mean():.1%}") if n else "no slice rows"})
    x = v[v["check"] == "cross_gpu"]
    if not x.empty:
        rows += _cross_gpu(x, times, reference_sweep, target_sweep, tol, min_batch)
    rows += _e2e_rows(v, tol)
    if with_predict:
        rows += _predict_rows()
    out = pd.DataFrame(rows, columns=TARGET_COLUMNS)
    out.attrs["provenance"] = ("slice: measured (synthetic bf16 components); cross_gpu: projected vs measured sweeps "
                               "(kernel time); e2e: projected (engine model) vs reported, AIConfigurator 0.12.0 "
                               "reported beside; predict: projected")
    return out
