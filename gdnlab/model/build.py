"""Assemble the component step model for a GPU from shipped data (no GPU needed).

:func:`step_for_gpu` reads the component run of ``gpu`` (``traces/<gpu>/``), projects it when the
requested GPU is another one, takes GDN kernel times from that GPU's sweep when it has one, else
from a reference sweep projected by bandwidth (and says so), and applies the fitted numbers of the
seed's ``fixed`` software state (or none). Every choice is listed in ``notes``.

:func:`gpu_data` answers for every GPU of :data:`gdnlab.hardware.GPU_SPECS`: the GPU's own
measured data (a folder ``traces/<name>/`` whose name :func:`gdnlab.hardware.spec_for` maps to it)
where it exists, else the nearest measured GPU's (same SM generation first, then the closest HBM
bandwidth), projected by hardware ratios and labelled ``projected``. Paths the user names must
exist: a mistyped path is an error, never a silent fallback to other data.

The two fitted numbers (:class:`~gdnlab.model.composed.Overheads`) must lie in :data:`FIT_BOUNDS`;
outside them the component run does not describe the engine's step and the planner refuses.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, InputError
from ..hardware import GPU_SPECS, GPUSpec, spec_for
from ..results import load_sweep
from .composed import ComposedStep, Overheads
from .composed_seed import seed_comparison, seed_step
from .gdn_sweep import SweepGDN
from .measured import ComponentTimes, load_components
from .served import ServedModel

__all__ = ["step_for_gpu", "step_from_times", "fitted_overheads", "gpu_data", "GPUData", "data_root",
           "measured_gpus", "FIT_BOUNDS", "check_fitted"]

#: sane range of each fitted number, and why (outside it the planner refuses)
FIT_BOUNDS: dict[str, tuple[float, float, str]] = {
    "component_scale": (0.25, 4.0, "the engine's GPU time over the composed component time; more than 4x either "
                                   "way means the components do not describe the engine's step"),
    "request_us": (0.0, 500.0, "host time per running request per iteration (µs); 500 µs x 256 requests would "
                               "be 128 ms of host time per step"),
}


def check_fitted(params: Overheads) -> Overheads:
    """``params`` when every fitted number lies in :data:`FIT_BOUNDS`, else :class:`DataError` with the reason."""
    for name, (lo, hi, why) in FIT_BOUNDS.items():
        v = float(getattr(params, name))
        if not lo <= v <= hi:
            raise DataError(f"fitted {name}={v:.4g} is outside [{lo:g}, {hi:g}] ({why}; {params.source}); "
                            "plan from the components alone with fitted=None (--fitted none)")
    return params


#: the code and data the seed fit depends on (a change invalidates cached fits)
FIT_SOURCES = ("model/composed.py", "model/measured.py", "model/gdn_sweep.py", "model/composed_seed.py",
               "model/serving.py", "model/seed_runs.py", "model/mtp.py", "model/served.py", "model/numeric.py",
               "components/allreduce.py", "acceptance.py", "seed.py", "data/seed_results.csv")


def _source_digest() -> str:
    """sha256 of :data:`FIT_SOURCES`."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in FIT_SOURCES:
        f = pkg / name
        h.update(name.encode() + (f.read_bytes() if f.is_file() else b"missing"))
    return h.hexdigest()


def _fit_key(times: ComponentTimes, reference_sweep, state: str) -> str:
    import pandas as pd

    h = hashlib.sha256(_source_digest().encode())
    for frame in (times.rows, times.recipes, reference_sweep):
        if frame is not None:
            try:
                values = pd.util.hash_pandas_object(frame, index=False)
            except TypeError:                    # a cell pandas cannot hash (a list): hash the text
                values = pd.util.hash_pandas_object(frame.astype(str), index=False)
            h.update("|".join(map(str, frame.columns)).encode() + values.to_numpy().tobytes())
    h.update(f"{times.gpu.name}|{times.overhead_us!r}|{times.draft_tokens}|{state}".encode())
    return h.hexdigest()[:32]


def fitted_overheads(times: ComponentTimes, reference_sweep=None, state: str = "fixed", *,
                     cache_dir: str | Path | None = None) -> Overheads:
    """The two numbers fitted on the seed's ``state`` fit rows (:func:`seed_comparison`).

    ``cache_dir``: keep the result in ``<cache_dir>/fit-<key>.json``, ``key`` a hash of the component
    rows, the sweep, ``state`` and the model's code and data (the fit simulates 35 serving runs)."""
    path = Path(cache_dir) / f"fit-{_fit_key(times, reference_sweep, state)}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            d = json.loads(path.read_text())
            return Overheads(float(d["component_scale"]), float(d["request_us"]), source=str(d["source"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass                                 # an unreadable cache entry is recomputed and replaced
    params = seed_comparison(seed_step(times, reference_sweep)).params
    if state not in params:
        raise InputError(f"no fitted numbers for seed state {state!r}; have {sorted(params)}")
    p = params[state]
    out = Overheads(p.component_scale, p.request_us, source=p.source)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"component_scale": out.component_scale, "request_us": out.request_us,
                           "source": out.source}, fh)
            os.replace(tmp, path)
        except OSError:
            pass                                 # a cache that cannot be written only costs time
    return out


def step_from_times(times: ComponentTimes, gpu: str | None = None, *, reference_sweep=None,
                    sweep_path: str | Path | None = None, fitted: str | None = "fixed",
                    model: ServedModel | None = None, cache_dir: str | Path | None = None) -> ComposedStep:
    """The step on ``gpu`` (default: the GPU ``times`` were measured on) from loaded components.

    GDN kernels: the sweep at ``sweep_path`` when that file exists, else ``reference_sweep`` (a
    frame) projected by bandwidth, else the components alone. ``fitted``: the seed software state whose
    two numbers apply (None: components only); they are fitted with the GDN kernels of the GPU's own
    sweep when there is one (as :func:`gdnlab.model.validate` does), else of ``reference_sweep``.
    What was chosen is listed in ``step.notes``; the sweep frame priced is ``step.gdn_rows``."""
    spec = spec_for(gpu) if gpu else times.gpu
    base = times
    notes = [f"components: {times.source}"]
    if times.gpu.name != spec.name:
        times = times.projected(spec)
        notes.append(f"components projected {base.gpu.name} -> {spec.name} by bandwidth ratio")
    gdn = None
    own = load_sweep(sweep_path) if sweep_path and Path(sweep_path).is_file() else None
    rows = own if own is not None else reference_sweep
    if own is not None:
        gdn = SweepGDN.from_sweep(own, shape=ServedModel().gdn)
        notes.append(f"GDN kernels: {gdn.source}")
    elif reference_sweep is not None:
        gdn = SweepGDN.from_sweep(reference_sweep, shape=ServedModel().gdn)
        notes.append(f"no {spec.name} sweep: GDN kernels from the reference sweep ({gdn.gpu.name})")
    else:
        notes.append("no sweep: GDN kernels from the components only (one backend, one state dtype)")
    if gdn is not None and gdn.gpu.name != spec.name:
        gdn = gdn.projected(spec)
        notes.append(f"GDN kernels projected {gdn.source.split(' (')[0].removeprefix('projected ')}")
    params = Overheads(source="not fitted")
    if fitted:
        try:
            params = fitted_overheads(base, own if own is not None else reference_sweep, fitted, cache_dir=cache_dir)
            notes.append(f"fitted: {params.short()} ({params.source})")
        except DataError as exc:
            notes.append(f"fitted numbers unavailable ({exc}); step = components only")
    step = ComposedStep(times, model or ServedModel(), params, gdn=gdn)
    step.notes = notes
    step.gdn_rows = rows
    return step


def step_for_gpu(gpu: str, components_dir: str | Path, *, sweep_path: str | Path | None = None,
                 reference_sweep_path: str | Path | None = None, preset: str = "qwen3.5-397b-a17b", tp: int = 4,
                 fitted: str | None = "fixed", weights: str = "nvfp4", cache_dir: str | Path | None = None
                 ) -> tuple[ComposedStep, list[str]]:
    """``(step, notes)`` for ``gpu`` from files (:func:`step_from_times`). A ``sweep_path`` or
    ``reference_sweep_path`` that names no file raises ``FileNotFoundError``; fitted numbers outside
    :data:`FIT_BOUNDS` raise :class:`DataError`. ``weights``: the served model's weights dtype
    (``nvfp4`` / ``fp8``, :meth:`ServedModel.qwen35_397b`)."""
    for what, p in (("sweep", sweep_path), ("reference sweep", reference_sweep_path)):
        if p is not None and not Path(p).is_file():
            raise FileNotFoundError(f"{what} {p}: no such file")
    times = load_components(components_dir)
    have = {str(p) for p in times.rows["preset"].dropna().unique()} if "preset" in times.rows else set()
    want = f"{preset}@tp{tp}"
    if have and want not in have:
        raise InputError(f"the component run measured {sorted(have)}, not {want}")
    ref = load_sweep(reference_sweep_path) if reference_sweep_path else None
    model = ServedModel.qwen35_397b(tp=tp, weights=weights) if preset.startswith("qwen3.5-397b") else ServedModel()
    step = step_from_times(times, gpu, reference_sweep=ref, sweep_path=sweep_path, fitted=fitted, model=model,
                           cache_dir=cache_dir)
    if fitted:
        check_fitted(step.params)
    return step, step.notes


# ------------------------------------------------------------------------------------------- every GPU


def data_root() -> Path:
    """``traces/`` of the current folder when there is one, else the checkout's (beside the package)."""
    here = Path.cwd() / "traces"
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "traces"


def measured_gpus(root: str | Path | None = None) -> dict[str, Path]:
    """GPU name -> its data folder under ``root`` (folders whose name :func:`spec_for` knows)."""
    out: dict[str, Path] = {}
    base = Path(root) if root is not None else data_root()
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if d.is_dir():
            try:
                out.setdefault(spec_for(d.name.upper()).name, d)
            except ValueError:
                continue
    return out


def _nearest(spec: GPUSpec, names: list[str]) -> str:
    """The measured GPU closest to ``spec``: same SM major first, then the closest HBM bandwidth."""
    import math

    return min(names, key=lambda n: (GPU_SPECS[n].sm_major != spec.sm_major,
                                     abs(math.log(GPU_SPECS[n].peak_hbm_gbps / spec.peak_hbm_gbps)), n))


def _has_step_rows(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        if "measure" not in pq.read_schema(path).names:
            return False
        col = pq.read_table(path, columns=["measure"]).column("measure").to_pylist()
    except Exception:  # noqa: BLE001 - unreadable here means "not usable for steps"; load_sweep says why later
        return False
    return "step" in col


@dataclass
class GPUData:
    """Where one GPU's plan reads its data (paths) and why (``notes``); whether the numbers are
    measured or projected follows from the data (:attr:`ComposedStep.times` ``.status``)."""

    gpu: GPUSpec
    components: Path
    sweep: Path | None
    reference_sweep: Path | None
    notes: list[str] = field(default_factory=list)


def gpu_data(gpu: str, *, root: str | Path | None = None, components: str | Path | None = None,
             sweep: str | Path | None = None, reference_sweep: str | Path | None = None) -> GPUData:
    """Data paths for ``gpu`` (any name :func:`spec_for` knows). Named paths must exist
    (``FileNotFoundError`` / :class:`DataError`); the defaults come from the GPU's own folder under
    ``root`` (:func:`data_root`) or, where it has none, from the nearest measured GPU's (projected)."""
    try:
        spec = spec_for(gpu.upper() if gpu.lower() in ("h200", "b200", "gb200") else gpu)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    have = measured_gpus(root)
    notes: list[str] = []
    if components is not None:
        comp = Path(components)
        if not comp.is_dir():
            raise DataError(f"component run folder {comp} does not exist")
    else:
        with_comp = [n for n, d in have.items() if (d / "components").is_dir()]
        if not with_comp:
            raise DataError(f"no component run under {root or data_root()} (traces/<gpu>/components/)")
        src = spec.name if spec.name in with_comp else _nearest(spec, with_comp)
        comp = have[src] / "components"
        if src != spec.name:
            notes.append(f"no {spec.name} component run: {src}'s, projected to {spec.name} by hardware ratios")
    if sweep is not None:
        sw = Path(sweep)
        if not sw.is_file():
            raise FileNotFoundError(f"sweep {sw}: no such file")
    else:
        with_steps = [n for n, d in have.items() if (d / "sweep.parquet").is_file()
                      and _has_step_rows(d / "sweep.parquet")]
        own = have.get(spec.name)
        if spec.name in with_steps:
            sw = own / "sweep.parquet"
        elif with_steps:
            src = _nearest(spec, with_steps)
            sw = have[src] / "sweep.parquet"
            why = ("its own sweep has kernel calls only, no strategy steps" if own and (own / "sweep.parquet").is_file()
                   else f"no {spec.name} sweep")
            notes.append(f"{why}: GDN strategy steps from the {src} sweep, projected to {spec.name} by bandwidth")
        else:
            sw = own / "sweep.parquet" if own and (own / "sweep.parquet").is_file() else None
    if reference_sweep is not None:
        ref = Path(reference_sweep)
        if not ref.is_file():
            raise FileNotFoundError(f"reference sweep {ref}: no such file")
    else:
        cands = [d / "sweep.parquet" for n, d in have.items() if n != spec.name and (d / "sweep.parquet").is_file()]
        ref = next((p for p in cands if p.parent.name == "h100"), cands[0] if cands else None)
    return GPUData(spec, comp, sw, ref, notes)
