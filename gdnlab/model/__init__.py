"""Step-time model of a hybrid (GDN + full-attention + MoE) model's decode step, a serving
simulation, and their check against the seed's reported numbers (SGLang PR #23273).

**The component model** (the current path: measured components -> step):

* :mod:`~gdnlab.model.measured` — component op times of a measured run (:func:`load_components`),
  interpolated in batch / KV length / T, projected to another GPU by hardware ratios;
* :mod:`~gdnlab.model.gdn_sweep` — GDN kernel times per backend / strategy / T / state dtype from a
  kernel sweep (:class:`SweepGDN`), projected by bandwidth;
* :mod:`~gdnlab.model.composed` — the whole model's step from components (:class:`ComposedStep`)
  plus two fitted, named numbers (:class:`Overheads`: ``component_scale``, ``request_us``);
* :mod:`~gdnlab.model.seed_check` — the seed's GB200 rows: projected vs reported, fit per software
  state on fit rows only, two trivial baselines beside;
* :mod:`~gdnlab.model.check` — :func:`validate` (slice, cross-GPU and seed rows in one frame),
  :func:`sensitivity`, :func:`baseline_summary`;
* :mod:`~gdnlab.model.targets` — :func:`target_summary`: the accuracy targets in one compact frame;
* :mod:`~gdnlab.model.plan` — best (strategy, T, state dtype, backend) per batch and the engine
  settings that select it; :mod:`~gdnlab.model.build` assembles a GPU's step from shipped data.

**Legacy** (the earlier seed-fitted roofline model with five fitted per-event costs; kept for
comparison only, not the path the planner or :func:`validate` use):

* :mod:`~gdnlab.model.params` — documented roofline numbers, fitted per-event costs, the MTP setup;
* :mod:`~gdnlab.model.served` — the served model's parameters and bytes (:class:`ServedModel`);
* :mod:`~gdnlab.model.costs` — GDN kernel cost per call: bandwidth model or measured sweep rows;
* :mod:`~gdnlab.model.step` — time of one engine iteration (:class:`StepModel`);
* :mod:`~gdnlab.model.serving` — a bench_serving run replayed through the step model;
* :mod:`~gdnlab.model.seed_fit` — per-event costs fitted on the seed's fit rows (:func:`seed_model`);
* :mod:`~gdnlab.model.legacy_validate` — predicted vs reported on the held-out rows, sensitivity;
* :mod:`~gdnlab.model.tables` — what-if tables (tidy DataFrames with a provenance footnote) for
  :mod:`gdnlab.plots.model`.

Acceptance models and the sampler of accepted lengths are :mod:`gdnlab.acceptance`; the seed's
numbers :mod:`gdnlab.seed`. Everything computed here is ``status = "projected"``.
"""
from .build import fitted_overheads, step_for_gpu, step_from_times
from .check import baseline_summary, cross_gpu_rows, seed_table, sensitivity, slice_rows, validate
from .composed import OVERHEAD_NAMES, PARTS, ComposedStep, Overheads
from .costs import GDN_KERNELS, GDNKernel, MeasuredGDN, comparable_rows
from .gdn_sweep import SweepGDN
from .legacy_validate import sensitivity as legacy_sensitivity
from .legacy_validate import validate_against_seed
from .measured import ComponentTimes, load_components
from .params import FEATURES, NVLINK_GBPS, PEAK_DENSE_TFLOPS, SEED_MTP, FittedParams, MTPConfig, RooflineParams
from .plan import (
    accept_lengths,
    best_plan,
    breakdown_by_batch,
    engine_settings,
    plan_candidates,
    read_accept_table,
    speedup_table,
    tokens_per_step_table,
)
from .seed_check import SeedComparison, seed_comparison, seed_step
from .seed_fit import SeedAssumptions, SeedFit, fit_to_seed, seed_model, seed_roles
from .served import ServedModel
from .serving import LinearRun, ServingScenario, ServingTrace, project, simulate_serving
from .step import StepModel
from .tables import (
    KERNEL_STATES,
    break_even_table,
    breakdown_table,
    gdn_cost_table,
    speedup_grid,
    throughput_projection,
    tpot_projection,
)
from .targets import H100_COPY_GBPS, target_summary

__all__ = ["GDN_KERNELS", "GDNKernel", "MeasuredGDN", "comparable_rows", "FEATURES", "NVLINK_GBPS",
           "PEAK_DENSE_TFLOPS", "SEED_MTP", "FittedParams", "MTPConfig", "RooflineParams", "SeedAssumptions",
           "SeedFit", "fit_to_seed", "seed_model", "seed_roles", "ServedModel", "LinearRun", "ServingScenario",
           "ServingTrace", "project", "simulate_serving", "StepModel", "break_even_table", "breakdown_table",
           "gdn_cost_table", "speedup_grid", "tpot_projection", "throughput_projection", "KERNEL_STATES",
           "legacy_sensitivity", "validate_against_seed", "fitted_overheads", "step_for_gpu", "step_from_times",
           "baseline_summary", "cross_gpu_rows", "seed_table",
           "sensitivity", "slice_rows", "validate", "OVERHEAD_NAMES", "PARTS", "ComposedStep", "Overheads",
           "SweepGDN",
           "ComponentTimes", "load_components", "accept_lengths", "best_plan", "engine_settings", "plan_candidates",
           "read_accept_table", "speedup_table", "tokens_per_step_table", "breakdown_by_batch", "SeedComparison",
           "seed_comparison",
           "seed_step", "target_summary", "H100_COPY_GBPS"]
