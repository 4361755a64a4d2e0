"""Validation of the component step model in one tidy frame: :func:`validate`.

Three checks, each row with ``role`` and ``rel_error = (predicted - observed) / observed``:

* ``slice`` — the measured synthetic slice (3 GDN + 1 attention layers, one CUDA graph) against
  the sum of its measured components (:func:`gdnlab.components.check_frame`); role ``check``;
* ``cross_gpu`` — GDN kernel times of the reference GPU's sweep (shipped H100 data) projected to
  the lent GPU by the bandwidth ratio (:meth:`SweepGDN.projected`) against what the lent GPU
  measured: its own sweep when given, else its ``gdn.recurrent`` component rows; role ``check``;
* ``seed`` — the seed's GB200 numbers against the components projected to GB200
  (:mod:`gdnlab.model.seed_check`), role ``fit`` / ``heldout``, with the two trivial baselines'
  predictions and errors beside the model's.

:func:`sensitivity` re-runs the seed comparison under other readings of what the seed does not
state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..components.compose import check_frame
from ..errors import DataError
from ..shapes import dtype_name
from .gdn_sweep import SweepGDN
from .measured import ComponentTimes
from .seed_check import seed_comparison, seed_step
from .seed_fit import SeedAssumptions, seed_variants
from .served import ServedModel

__all__ = ["validate", "slice_rows", "cross_gpu_rows", "sensitivity", "baseline_summary", "seed_table", "COLUMNS"]

COLUMNS = ["check", "gpu", "metric", "backend", "mode", "batch", "draft_tokens", "kv_len", "x_name", "x",
           "predicted", "observed", "rel_error", "role", "predicted_status", "observed_status",
           "baseline_constant_speedup", "baseline_triton_eq_flashinfer", "note"]


def slice_rows(times: ComponentTimes) -> pd.DataFrame:
    """Slice steps composed from components vs measured (needs ``times.slices``)."""
    if times.slices is None or times.slices.empty:
        raise DataError("the component run has no slice.parquet: nothing to check the composition against")
    comp = times.rows.assign(outcome="ok")
    chk = check_frame(comp, times.slices, times.recipes, times.overhead_us)
    out = pd.DataFrame({
        "check": "slice", "gpu": times.gpu.name, "metric": "slice_step_us", "backend": None,
        "mode": chk["mode"], "batch": chk["batch"], "draft_tokens": np.where(chk["mode"] == "mtp",
                                                                             times.draft_tokens, 1),
        "kv_len": chk["kv_len"], "x_name": "batch", "x": chk["batch"], "predicted": chk["predicted_us"],
        "observed": chk["measured_us"], "rel_error": chk["rel_err"], "role": "check",
        "predicted_status": "composed from measured components", "observed_status": times.status,
        "note": chk["outcome"]})
    return out


def _component_gdn_rows(times: ComponentTimes) -> pd.DataFrame:
    """The lent GPU's GDN kernels from its component rows (graph replay cost included, as a sweep's)."""
    r = times.rows[times.rows["component"] == "gdn.recurrent"].copy()
    backend = str(times.meta.get("presets", {}).get(next(iter(times.meta.get("presets", {}) or {"": 0})), {})
                  .get("gdn_backend", "triton")) if times.meta else "triton"
    r["backend"] = backend
    r["time_us"] = r["net_us"] + times.overhead_us
    r["draft_tokens"] = np.where(r["mode"] == "mtp", times.draft_tokens, 1)
    r["mode"] = r["mode"].replace({"mtp": "verify"})
    r["strategy"] = r["strategy"].fillna("decode")
    sd = r["state_dtype"] if "state_dtype" in r else "bfloat16"
    r["state_dtype"] = pd.Series(sd, index=r.index).map(lambda v: dtype_name(v))
    return r[["backend", "mode", "strategy", "draft_tokens", "state_dtype", "batch", "time_us"]]


def cross_gpu_rows(reference_sweep: pd.DataFrame, times: ComponentTimes | None = None,
                   target_sweep: pd.DataFrame | None = None, *, min_batch: int = 16, ratio: float | None = None,
                   ratio_source: str = "") -> pd.DataFrame:
    """Reference-GPU sweep projected to the lent GPU vs the lent GPU's measurement (its sweep's call
    rows, else its component rows). ``note`` says whether the point is inside the target range
    (B >= ``min_batch``). ``ratio``: the bandwidth ratio ``BW_ref / BW_lent`` (default: datasheet
    peaks, :meth:`SweepGDN.projected`)."""
    shape = ServedModel().gdn
    ref = SweepGDN.from_sweep(reference_sweep, shape=shape)
    if target_sweep is not None:
        tgt = SweepGDN.from_sweep(target_sweep, shape=shape)
        obs = tgt.table.drop(columns=["step_us"])
        gpu, obs_src = tgt.gpu, "measured (sweep)"
    elif times is not None:
        obs = _component_gdn_rows(times)
        gpu, obs_src = times.gpu, "measured (gdn.recurrent components)"
    else:
        raise DataError("cross-GPU check needs the lent GPU's sweep or its component rows")
    proj = ref.projected(gpu, ratio=ratio, ratio_source=ratio_source).table
    keys = ["backend", "mode", "strategy", "draft_tokens", "state_dtype", "batch"]
    m = obs.merge(proj[keys + ["time_us"]].rename(columns={"time_us": "predicted"}), on=keys, how="inner")
    if m.empty:
        raise DataError(f"no (backend, mode, strategy, T, state dtype, batch) point in common between the "
                        f"{ref.gpu.name} sweep and the {gpu.name} measurement")
    return pd.DataFrame({
        "check": "cross_gpu", "gpu": f"{ref.gpu.name}->{gpu.name}", "metric": "gdn_kernel_us",
        "backend": m["backend"], "mode": m["mode"] + np.where(m["mode"] == "verify", " " + m["strategy"], ""),
        "batch": m["batch"], "draft_tokens": m["draft_tokens"], "kv_len": np.nan, "x_name": "batch",
        "x": m["batch"], "predicted": m["predicted"], "observed": m["time_us"],
        "rel_error": (m["predicted"] - m["time_us"]) / m["time_us"], "role": "check",
        "predicted_status": "projected", "observed_status": obs_src,
        "note": np.where(m["batch"] >= min_batch, f"B >= {min_batch}", f"B < {min_batch}") + " · " + m["state_dtype"]})


def _seed_frame(times: ComponentTimes, sweep: pd.DataFrame | None, seed_df, assumptions) -> tuple[pd.DataFrame, dict]:
    cmp_ = seed_comparison(seed_step(times, sweep), seed_df, assumptions)
    s = cmp_.rows
    out = pd.DataFrame({
        "check": "seed", "gpu": "GB200", "metric": s["metric"], "backend": s["backend"],
        "mode": np.where(s["mtp"], "mtp", "decode"), "batch": np.nan, "draft_tokens": np.where(s["mtp"], 4, 1),
        "kv_len": np.nan, "x_name": s["x_name"], "x": s["x"], "predicted": s["predicted"], "observed": s["observed"],
        "rel_error": s["rel_error"], "role": s["role"], "predicted_status": "projected", "observed_status": "reported",
        "baseline_constant_speedup": s["baseline_constant_speedup"],
        "baseline_triton_eq_flashinfer": s["baseline_triton_eq_flashinfer"],
        "note": s["table"] + " · " + s["kernel_state"]})
    return out, cmp_.params


def _path(p: str | Path) -> Path:
    """``p`` as given when it exists, else relative to the repository root (shipped data)."""
    q = Path(p)
    if q.is_absolute() or q.exists():
        return q
    root = Path(__file__).resolve().parents[2] / q
    return root if root.exists() else q


def validate(times: ComponentTimes | None = None, reference_sweep: pd.DataFrame | None = None,
             target_sweep: pd.DataFrame | None = None, *, components_dir: str | Path = "traces/h200/components",
             reference_sweep_path: str | Path = "traces/h100/sweep.parquet",
             target_sweep_path: str | Path | None = "traces/h200/sweep.parquet", seed_df: pd.DataFrame | None = None,
             assumptions: SeedAssumptions | None = None) -> pd.DataFrame:
    """All checks in one frame (:data:`COLUMNS`). ``times``: the lent GPU's component run (default:
    read from ``components_dir``); ``reference_sweep``: the shipped H100 sweep (cross-GPU check and
    GDN kernels of the seed projection; default read from ``reference_sweep_path``); ``target_sweep``:
    the lent GPU's own sweep (cross-GPU check; preferred for the seed projection's GDN kernels; default
    read from ``target_sweep_path`` when that file exists). Checks whose inputs are missing are left
    out and named in ``attrs["skipped"]``; ``attrs["params"]`` holds the fitted numbers per seed
    software state."""
    from ..results import load_sweep
    from .measured import load_components

    if times is None:
        times = load_components(_path(components_dir))
    if reference_sweep is None and reference_sweep_path is not None and _path(reference_sweep_path).is_file():
        reference_sweep = load_sweep(_path(reference_sweep_path))
    if target_sweep is None and target_sweep_path is not None and _path(target_sweep_path).is_file():
        target_sweep = load_sweep(_path(target_sweep_path))
    frames, skipped = [], {}
    for name, fn in (("slice", lambda: slice_rows(times)),
                     ("cross_gpu", lambda: cross_gpu_rows(reference_sweep, times, target_sweep))):
        if name == "cross_gpu" and reference_sweep is None:
            skipped[name] = "no reference (H100) sweep"
            continue
        try:
            frames.append(fn())
        except DataError as exc:
            skipped[name] = str(exc)
    seed, params = _seed_frame(times, target_sweep if target_sweep is not None else reference_sweep, seed_df,
                               assumptions)
    frames.append(seed)
    out = pd.concat([f.reindex(columns=COLUMNS) for f in frames], ignore_index=True)
    for b in ("baseline_constant_speedup", "baseline_triton_eq_flashinfer"):
        out[b.replace("baseline_", "baseline_err_")] = (out[b] - out["observed"]) / out["observed"]
    out.attrs["skipped"] = skipped
    out.attrs["params"] = {k: {"component_scale": v.component_scale, "request_us": v.request_us, "source": v.source}
                           for k, v in params.items()}
    return out


def seed_table(v: pd.DataFrame) -> pd.DataFrame:
    """The seed rows of :func:`validate` with the columns a reader needs."""
    cols = ["metric", "backend", "mode", "x_name", "x", "note", "role", "predicted", "observed", "rel_error",
            "baseline_err_constant_speedup", "baseline_err_triton_eq_flashinfer"]
    return v.loc[v["check"] == "seed", cols].reset_index(drop=True)


def baseline_summary(v: pd.DataFrame) -> pd.DataFrame:
    """Worst and mean |relative error| of the model and of each baseline on the seed's held-out rows
    where the baseline makes a prediction (one row per comparison set)."""
    s = v[(v["check"] == "seed") & (v["role"] == "heldout")]
    rows = []
    for b in ("baseline_err_constant_speedup", "baseline_err_triton_eq_flashinfer"):
        sel = s[s[b].notna()]
        if sel.empty:
            continue
        rows.append({"rows": b.removeprefix("baseline_err_"), "n": len(sel),
                     "model_max_abs_err": sel["rel_error"].abs().max(),
                     "model_mean_abs_err": sel["rel_error"].abs().mean(),
                     "baseline_max_abs_err": sel[b].abs().max(), "baseline_mean_abs_err": sel[b].abs().mean()})
    rows.append({"rows": "all held-out", "n": len(s), "model_max_abs_err": s["rel_error"].abs().max(),
                 "model_mean_abs_err": s["rel_error"].abs().mean(), "baseline_max_abs_err": np.nan,
                 "baseline_mean_abs_err": np.nan})
    return pd.DataFrame(rows)


def sensitivity(times: ComponentTimes, reference_sweep: pd.DataFrame | None = None,
                variants: dict[str, SeedAssumptions] | None = None) -> pd.DataFrame:
    """Held-out seed errors under other readings of the seed (each variant re-fits): one row per
    variant and held-out metric group, ``variant, metric, n, max_abs_err, mean_abs_err`` and the
    fitted numbers of the fixed state."""
    variants = variants or seed_variants()
    step = seed_step(times, reference_sweep)
    rows = []
    for name, a in variants.items():
        c = seed_comparison(step, None, a)
        h = c.rows[c.rows["role"] == "heldout"]
        fx = c.params.get("fixed")
        for metric, g in h.groupby("metric"):
            rows.append({"variant": name, "metric": metric, "n": len(g), "max_abs_err": g["rel_error"].abs().max(),
                         "mean_abs_err": g["rel_error"].abs().mean(),
                         "fixed_component_scale": fx.component_scale if fx else np.nan,
                         "fixed_request_us": fx.request_us if fx else np.nan})
    return pd.DataFrame(rows)
