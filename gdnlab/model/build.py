"""Assemble the component step model for a GPU from shipped data (no GPU needed).

:func:`step_for_gpu` reads the component run of ``gpu`` (``traces/<gpu>/``), projects it when the
requested GPU is another one, takes GDN kernel times from that GPU's sweep when it has one, else
from a reference sweep projected by bandwidth (and says so), and applies the fitted numbers of the
seed's ``fixed`` software state (or none). Every choice is listed in ``notes``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError, InputError
from ..hardware import spec_for
from ..results import load_sweep
from .composed import ComposedStep, Overheads
from .gdn_sweep import SweepGDN
from .measured import ComponentTimes, load_components
from .served import ServedModel
from .validation import seed_comparison, seed_step

__all__ = ["step_for_gpu", "step_from_times", "fitted_overheads"]


def fitted_overheads(times: ComponentTimes, reference_sweep=None, state: str = "fixed") -> Overheads:
    """The two numbers fitted on the seed's ``state`` fit rows (:func:`seed_comparison`)."""
    params = seed_comparison(seed_step(times, reference_sweep)).params
    if state not in params:
        raise InputError(f"no fitted numbers for seed state {state!r}; have {sorted(params)}")
    p = params[state]
    return Overheads(p.component_scale, p.request_us, source=p.source)


def step_from_times(times: ComponentTimes, gpu: str | None = None, *, reference_sweep=None,
                    sweep_path: str | Path | None = None, fitted: str | None = "fixed",
                    model: ServedModel | None = None) -> ComposedStep:
    """The step on ``gpu`` (default: the GPU ``times`` were measured on) from loaded components.

    GDN kernels: the sweep at ``sweep_path`` when that file exists, else ``reference_sweep`` (a
    frame) projected by bandwidth, else the components alone. ``fitted``: the seed software state whose
    two numbers apply (None: components only); they are fitted with the GDN kernels of the GPU's own
    sweep when there is one (as :func:`gdnlab.model.validate` does), else of ``reference_sweep``.
    What was chosen is listed in ``step.notes``."""
    spec = spec_for(gpu) if gpu else times.gpu
    base = times
    notes = [f"components: {times.source}"]
    if times.gpu.name != spec.name:
        times = times.projected(spec)
        notes.append(f"components projected to {spec.name} by bandwidth ratio")
    gdn = None
    own = load_sweep(sweep_path) if sweep_path and Path(sweep_path).is_file() else None
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
            params = fitted_overheads(base, own if own is not None else reference_sweep, fitted)
            notes.append(f"fitted: {params.short()} ({params.source})")
        except DataError as exc:
            notes.append(f"fitted numbers unavailable ({exc}); step = components only")
    step = ComposedStep(times, model or ServedModel(), params, gdn=gdn)
    step.notes = notes
    return step


def step_for_gpu(gpu: str, components_dir: str | Path, *, sweep_path: str | Path | None = None,
                 reference_sweep_path: str | Path | None = None, preset: str = "qwen3.5-397b-a17b", tp: int = 4,
                 fitted: str | None = "fixed") -> tuple[ComposedStep, list[str]]:
    """``(step, notes)`` for ``gpu`` from files (:func:`step_from_times`)."""
    times = load_components(components_dir)
    have = {str(p) for p in times.rows["preset"].dropna().unique()} if "preset" in times.rows else set()
    want = f"{preset}@tp{tp}"
    if have and want not in have:
        raise InputError(f"the component run measured {sorted(have)}, not {want}")
    ref = load_sweep(reference_sweep_path) if reference_sweep_path and Path(reference_sweep_path).is_file() else None
    model = ServedModel.qwen35_397b(tp=tp) if preset.startswith("qwen3.5-397b") else ServedModel()
    step = step_from_times(times, gpu, reference_sweep=ref, sweep_path=sweep_path, fitted=fitted, model=model)
    return step, step.notes
