"""Step-time model of a hybrid (GDN + full-attention + MoE) model's decode step, composed from
measured components, its checks against measured and reported data, and the planner built on it.

* :mod:`~gdnlab.model.measured` — component op times of a measured run (:func:`load_components`),
  interpolated in batch / KV length / T, projected to another GPU by hardware ratios;
* :mod:`~gdnlab.model.gdn_sweep` — GDN kernel times per backend / strategy / T / state dtype from a
  kernel sweep (:class:`SweepGDN`; :func:`comparable_rows`), projected by bandwidth;
* :mod:`~gdnlab.model.composed` — the whole model's step from components (:class:`ComposedStep`)
  plus two fitted, named numbers (:class:`Overheads`: ``component_scale``, ``request_us``);
* :mod:`~gdnlab.model.build` — a GPU's step assembled from shipped data (:func:`step_for_gpu`);
* :mod:`~gdnlab.model.validation` — every model-vs-data check: :func:`validate` (decoder slice,
  cross-GPU and the seed's GB200 rows with two trivial baselines in one frame), :func:`sensitivity`,
  :func:`baseline_summary`, :func:`seed_table`;
* :mod:`~gdnlab.model.targets` — :func:`target_summary`: the accuracy targets in one compact frame;
* :mod:`~gdnlab.model.plan` — best (strategy, T, state dtype, backend) per batch and the engine
  settings that select it.

Shared with the seed's earlier roofline model (:mod:`gdnlab.model.legacy`, kept for comparison):
:mod:`~gdnlab.model.served` (:class:`ServedModel`), :mod:`~gdnlab.model.mtp` (:class:`MTPConfig`),
:mod:`~gdnlab.model.serving` (a bench_serving run replayed through a step model),
:mod:`~gdnlab.model.seed_runs` (the seed's rows as fit targets), :mod:`~gdnlab.model.numeric`
(interpolation, non-negative least squares). Argument parsing is :mod:`gdnlab.model._args`.

Acceptance models and the sampler of accepted lengths are :mod:`gdnlab.acceptance`; the seed's
numbers :mod:`gdnlab.seed`. Everything computed here is ``status = "projected"``.
"""
from .build import fitted_overheads, step_for_gpu, step_from_times
from .composed import OVERHEAD_NAMES, PARTS, ComposedStep, Overheads
from .gdn_sweep import SweepGDN, comparable_rows
from .measured import ComponentTimes, load_components
from .mtp import SEED_MTP, MTPConfig
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
from .seed_runs import SeedAssumptions, seed_roles, seed_variants
from .served import ServedModel
from .serving import LinearRun, ServingScenario, project, simulate_serving
from .targets import H100_COPY_GBPS, target_summary
from .validation import (
    SeedComparison,
    baseline_summary,
    cross_gpu_rows,
    seed_comparison,
    seed_step,
    seed_table,
    sensitivity,
    slice_rows,
    validate,
)

__all__ = ["fitted_overheads", "step_for_gpu", "step_from_times", "OVERHEAD_NAMES", "PARTS", "ComposedStep",
           "Overheads", "SweepGDN", "comparable_rows", "ComponentTimes", "load_components", "SEED_MTP", "MTPConfig",
           "accept_lengths", "best_plan", "breakdown_by_batch", "engine_settings", "plan_candidates",
           "read_accept_table", "speedup_table", "tokens_per_step_table", "SeedAssumptions", "seed_roles",
           "seed_variants", "ServedModel", "LinearRun", "ServingScenario", "project", "simulate_serving",
           "H100_COPY_GBPS", "target_summary", "SeedComparison", "baseline_summary", "cross_gpu_rows",
           "seed_comparison", "seed_step", "seed_table", "sensitivity", "slice_rows", "validate"]
