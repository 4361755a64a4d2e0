"""Model-vs-data checks, in one place: :func:`validate` returns them in one tidy frame (:data:`COLUMNS`),
each row with ``role`` and ``rel_error = (predicted - observed) / observed``:

* ``slice`` -- the measured synthetic slice (3 GDN + 1 attention layers, one CUDA graph, the bf16 /
  SDPA components of ``traces/h200/components``) against the sum of its measured components
  (:func:`gdnlab.components.check_frame`); role ``check`` (:func:`slice_rows`);
* ``cross_gpu`` -- GDN kernel times of the reference GPU's sweep (H100) projected to the lent GPU (H200)
  by the bandwidth ratio against what the lent GPU measured, **with one timing method**: the H100 rows
  timed one call per CUDA-graph replay (``single``) and the H200 rows a graph of 16 calls
  (``amortised``), so each row loses its share of its own GPU's graph-replay fixed cost before the
  projection and the comparison (the H100's, 3.1 µs, is the median ``graph - nsys kernel`` of its
  harness check, ``traces/h100/logs/bench.log``; the H200's is its component run's ``launch.graph``);
  role ``check`` (:func:`cross_gpu_rows`);
* ``seed`` and ``published`` -- the engine model (:mod:`gdnlab.model.e2e`) against every seed row
  (SGLang PR #23273, GB200) and every published Hopper/Blackwell run with MTP, each beside
  AIConfigurator's own prediction and the trivial baselines; role ``check`` (scored: predicted with
  host numbers fitted on other sources only) or ``fit`` (the before-fix TPOT table).

Why the seed's two TPOT tables differ by up to 2.4x (13.5 vs 32.9 ms at concurrency 128, both GDN
backends alike): the engine model explains it as host time per running request per forward pass --
161 µs fitted on the before-fix table vs 22-49 µs from the current-state sources -- which at 128
requests and 4 passes per MTP step adds ~70 ms per step, ~22 ms per token. It is a fit on that table
(its rows are the fit rows, never scored); the OSL sweep, run in the same software state (its MTP
throughput at ~128 running requests matches the before-fix table), is checked with it.

:func:`seed_table`, :func:`baseline_summary` condense the rows; :func:`gdnlab.model.targets.target_summary`
scores the targets. The composed bf16-component model's seed fit lives in :mod:`gdnlab.model.composed_seed`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..backends import DEFAULT_BACKEND
from ..components.compose import check_frame
from ..errors import DataError
from ..results import load_sweep
from ..shapes import dtype_name
from .composed_seed import MOE_NVFP4, SEED_STATES, SeedComparison, seed_comparison, seed_step
from .e2e import E2E_COLUMNS, e2e_rows, e2e_summary
from .gdn_sweep import SweepGDN
from .measured import ComponentTimes, load_components
from .served import ServedModel

__all__ = ["validate", "slice_rows", "cross_gpu_rows", "seed_step", "seed_comparison", "SeedComparison",
           "baseline_summary", "seed_table", "shipped_path", "COLUMNS", "SEED_STATES", "MOE_NVFP4",
           "graph_replay_us", "H100_HARNESS_LOG"]

COLUMNS = ["check", "gpu", "metric", "backend", "mode", "batch", "draft_tokens", "kv_len", "x_name", "x",
           "predicted", "observed", "rel_error", "role", "predicted_status", "observed_status",
           "baseline_constant_speedup", "baseline_triton_eq_flashinfer", "note"] + \
    [c for c in E2E_COLUMNS if c not in ("check", "gpu", "metric", "backend", "mode", "draft_tokens", "x_name", "x",
                                         "predicted", "observed", "rel_error", "role", "predicted_status",
                                         "observed_status", "baseline_constant_speedup",
                                         "baseline_triton_eq_flashinfer", "note")]
#: the H100 harness check whose ``graph_minus_nsys_us`` column is the H100's graph-replay fixed cost
H100_HARNESS_LOG = "traces/h100/logs/bench.log"


def shipped_path(p: str | Path) -> Path:
    """``p`` as given when it exists, else relative to the repository root (the shipped ``traces/``)."""
    q = Path(p)
    if q.is_absolute() or q.exists():
        return q
    root = Path(__file__).resolve().parents[2] / q
    return root if root.exists() else q


def slice_rows(times: ComponentTimes) -> pd.DataFrame:
    """Slice steps composed from components vs measured (needs ``times.slices``)."""
    if times.slices is None or times.slices.empty:
        raise DataError("the component run has no slice.parquet: nothing to check the composition against")
    comp = times.rows.assign(outcome="ok")
    chk = check_frame(comp, times.slices, times.recipes, times.overhead_us)
    return pd.DataFrame({
        "check": "slice", "gpu": times.gpu.name, "metric": "slice_step_us", "backend": None,
        "mode": chk["mode"], "batch": chk["batch"],
        "draft_tokens": np.where(chk["mode"] == "mtp", times.draft_tokens, 1), "kv_len": chk["kv_len"],
        "x_name": "batch", "x": chk["batch"], "predicted": chk["predicted_us"], "observed": chk["measured_us"],
        "rel_error": chk["rel_err"], "role": "check", "predicted_status": "composed from measured components",
        "observed_status": times.status, "note": chk["outcome"] + " · synthetic bf16 / SDPA slice"})


def graph_replay_us(log: str | Path = H100_HARNESS_LOG) -> float:
    """The graph replay's fixed cost (µs) from a harness-overhead log: the median of its
    ``graph_minus_nsys_us`` column (single-call graph time minus the nsys kernel time)."""
    p = shipped_path(log)
    if not p.is_file():
        raise DataError(f"{p}: no harness-overhead log")
    lines = p.read_text().splitlines()
    head = next((i for i, s in enumerate(lines) if "graph_minus_nsys_us" in s), None)
    if head is None:
        raise DataError(f"{p}: no graph_minus_nsys_us column")
    cols = lines[head].split()
    j = cols.index("graph_minus_nsys_us")
    vals = []
    for s in lines[head + 1:]:
        parts = s.split()
        if len(parts) != len(cols) or not re.match(r"^[\w.:]+$", parts[0]):
            break
        vals.append(float(parts[j]))
    if not vals:
        raise DataError(f"{p}: graph_minus_nsys_us has no values")
    return float(np.median(vals))


def _component_gdn_rows(times: ComponentTimes) -> pd.DataFrame:
    """The lent GPU's GDN kernels from its component rows (graph replay cost included, as a sweep's)."""
    r = times.rows[times.rows["component"] == "gdn.recurrent"].copy()
    presets = times.meta.get("presets", {}) if times.meta else {}
    backend = str(next(iter(presets.values()), {}).get("gdn_backend", DEFAULT_BACKEND)) if presets else DEFAULT_BACKEND
    r["backend"] = backend
    r["time_us"] = r["net_us"] + times.overhead_us
    r["calls_per_sample"] = 1.0
    r["draft_tokens"] = np.where(r["mode"] == "mtp", times.draft_tokens, 1)
    r["mode"] = r["mode"].replace({"mtp": "verify"})
    r["strategy"] = r["strategy"].fillna("decode")
    sd = r["state_dtype"] if "state_dtype" in r else "bfloat16"
    r["state_dtype"] = pd.Series(sd, index=r.index).map(lambda v: dtype_name(v))
    return r[["backend", "mode", "strategy", "draft_tokens", "state_dtype", "batch", "time_us", "calls_per_sample"]]


def _kernel_only(t: pd.DataFrame, overhead_us: float) -> pd.DataFrame:
    """``time_us`` less each row's share of one graph replay's fixed cost (``overhead / calls_per_sample``)."""
    t = t.copy()
    cps = pd.to_numeric(t.get("calls_per_sample", 1.0), errors="coerce").fillna(1.0)
    t["time_us"] = (t["time_us"] - overhead_us / cps).clip(lower=1e-3)
    return t


def cross_gpu_rows(reference_sweep: pd.DataFrame, times: ComponentTimes | None = None,
                   target_sweep: pd.DataFrame | None = None, *, min_batch: int = 16, ratio: float | None = None,
                   ratio_source: str = "", ref_overhead_us: float | None = None,
                   tgt_overhead_us: float | None = None) -> pd.DataFrame:
    """Reference-GPU sweep projected to the lent GPU vs the lent GPU's measurement (its sweep's call
    rows, else its component rows), both as kernel time: each row less ``overhead / calls_per_sample``
    of its own GPU (``ref_overhead_us`` default :func:`graph_replay_us`, ``tgt_overhead_us`` default the
    component run's ``launch.graph``, else 0). ``note`` says whether the point is inside the target
    range (B >= ``min_batch``). ``ratio``: the bandwidth ratio ``BW_ref / BW_lent`` (default: datasheet
    peaks, :meth:`SweepGDN.projected`)."""
    shape = ServedModel().gdn
    ref = SweepGDN.from_sweep(reference_sweep, shape=shape)
    r_ov = graph_replay_us() if ref_overhead_us is None else float(ref_overhead_us)
    t_ov = (times.overhead_us if times is not None else 0.0) if tgt_overhead_us is None else float(tgt_overhead_us)
    if target_sweep is not None:
        tgt = SweepGDN.from_sweep(target_sweep, shape=shape)
        obs = tgt.table.drop(columns=["step_us"])
        gpu, obs_src = tgt.gpu, "measured (sweep)"
    elif times is not None:
        obs = _component_gdn_rows(times)
        gpu, obs_src = times.gpu, "measured (gdn.recurrent components)"
    else:
        raise DataError("cross-GPU check needs the lent GPU's sweep or its component rows")
    obs = _kernel_only(obs, t_ov)
    ref.table = _kernel_only(ref.table, r_ov)
    proj = ref.projected(gpu, ratio=ratio, ratio_source=ratio_source).table
    keys = ["backend", "mode", "strategy", "draft_tokens", "state_dtype", "batch"]
    m = obs.merge(proj[keys + ["time_us"]].rename(columns={"time_us": "predicted"}), on=keys, how="inner")
    if m.empty:
        raise DataError(f"no (backend, mode, strategy, T, state dtype, batch) point in common between the "
                        f"{ref.gpu.name} sweep and the {gpu.name} measurement")
    how = f"kernel time: less {r_ov:.2f} µs / calls per sample ({ref.gpu.name}), {t_ov:.2f} µs / calls ({gpu.name})"
    return pd.DataFrame({
        "check": "cross_gpu", "gpu": f"{ref.gpu.name}->{gpu.name}", "metric": "gdn_kernel_us",
        "backend": m["backend"], "mode": m["mode"] + np.where(m["mode"] == "verify", " " + m["strategy"], ""),
        "batch": m["batch"], "draft_tokens": m["draft_tokens"], "kv_len": np.nan, "x_name": "batch",
        "x": m["batch"], "predicted": m["predicted"], "observed": m["time_us"],
        "rel_error": (m["predicted"] - m["time_us"]) / m["time_us"], "role": "check",
        "predicted_status": "projected", "observed_status": obs_src, "configuration": how,
        "note": np.where(m["batch"] >= min_batch, f"B >= {min_batch}", f"B < {min_batch}") + " · " + m["state_dtype"]})


def validate(times: ComponentTimes | None = None, reference_sweep: pd.DataFrame | None = None,
             target_sweep: pd.DataFrame | None = None, *, components_dir: str | Path = "traces/h200/components",
             reference_sweep_path: str | Path = "traces/h100/sweep.parquet",
             target_sweep_path: str | Path | None = "traces/h200/sweep.parquet", e2e: bool = True) -> pd.DataFrame:
    """All checks in one frame (:data:`COLUMNS`). ``times``: the lent GPU's component run (default:
    read from ``components_dir``); ``reference_sweep``: the H100 sweep (cross-GPU check; default read
    from ``reference_sweep_path``); ``target_sweep``: the lent GPU's own sweep (default read from
    ``target_sweep_path`` when that file exists). ``e2e``: add the seed and published rows (the engine
    model; ~30 s). Checks whose inputs are missing are left out and named in ``attrs["skipped"]``;
    ``attrs["engine_params"]`` holds the host numbers of every fold and the rows they were fitted on."""
    if times is None:
        times = load_components(shipped_path(components_dir))
    if reference_sweep is None and reference_sweep_path is not None \
            and shipped_path(reference_sweep_path).is_file():
        reference_sweep = load_sweep(shipped_path(reference_sweep_path))
    if target_sweep is None and target_sweep_path is not None and shipped_path(target_sweep_path).is_file():
        target_sweep = load_sweep(shipped_path(target_sweep_path))
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
    folds = {}
    if e2e:
        e = e2e_rows()
        folds = e.attrs.get("folds", {})
        frames.append(e)
    else:
        skipped["seed/published"] = "e2e=False"
    out = pd.concat([f.reindex(columns=COLUMNS) for f in frames], ignore_index=True)
    for b in ("baseline_constant_speedup", "baseline_triton_eq_flashinfer"):
        out[b.replace("baseline_", "baseline_err_")] = (out[b] - out["observed"]) / out["observed"]
    out.attrs["skipped"] = skipped
    out.attrs["params"] = {}
    out.attrs["engine_params"] = folds
    return out


def seed_table(v: pd.DataFrame) -> pd.DataFrame:
    """The seed and published rows of :func:`validate` with the columns a reader needs: ours,
    AIConfigurator's and the baselines' errors beside the observed number."""
    cols = ["check", "case_id", "metric", "unit", "role", "predicted", "observed", "rel_error", "aic_predicted",
            "aic_rel_error", "kernels_only", "baseline_err_constant_speedup", "baseline_err_triton_eq_flashinfer",
            "fit_rows"]
    return v.loc[v["check"].isin(["seed", "published"]), cols].reset_index(drop=True)


def baseline_summary(v: pd.DataFrame) -> pd.DataFrame:
    """Mean and worst |relative error| on the scored rows: gdnlab's model vs AIConfigurator on the
    same rows (per check and metric, :func:`gdnlab.model.e2e.e2e_summary`), then vs each trivial
    baseline on the rows it predicts."""
    e = v[v["check"].isin(["seed", "published"])]
    out = e2e_summary(e)
    s = e[e["role"] == "check"]
    rows = []
    for b in ("baseline_err_constant_speedup", "baseline_err_triton_eq_flashinfer"):
        sel = s[s[b].notna()]
        if len(sel):
            rows.append({"rows": f"vs baseline {b.removeprefix('baseline_err_')}", "n": len(sel),
                         "model_mean_abs_err": sel["rel_error"].abs().mean(),
                         "model_max_abs_err": sel["rel_error"].abs().max(),
                         "baseline_mean_abs_err": sel[b].abs().mean(), "baseline_max_abs_err": sel[b].abs().max()})
    return pd.concat([out, pd.DataFrame(rows)], ignore_index=True)
