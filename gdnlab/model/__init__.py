"""Step-time models of a hybrid (GDN + full-attention + MoE) model served by an engine, their checks
against measured, published and AIConfigurator-predicted data, and the planner built on them.

The engine model (what :func:`predict` and ``gdnlab predict`` use):

* :mod:`~gdnlab.model.aic_steps` / :mod:`~gdnlab.model.step_ops` — AIConfigurator 0.12.0's measured
  per-op step tables (reported), with gdnlab's engine-grade measurements in their place where a GPU
  has them;
* :mod:`~gdnlab.model.engine_step` — one engine iteration (:class:`EngineStep`): those ops, gdnlab's
  GDN verify + commit at T from the strategy sweep, the MTP draft passes, and two named host numbers
  (:class:`EngineParams`); :mod:`~gdnlab.model.engine_build` assembles it for a GPU (:func:`engine_step_for`);
* :mod:`~gdnlab.model.calibration` — the seed's and published rows as :class:`~gdnlab.model.calibration.Case`
  objects, the host numbers fitted on named rows, never on the rows they are checked against;
* :mod:`~gdnlab.model.e2e` — every seed row and published run with MTP, predicted, beside
  AIConfigurator's own prediction (:mod:`~gdnlab.model.aic_seed`) and the trivial baselines;
* :mod:`~gdnlab.model.predict` — :func:`predict`: TPOT, throughput and each part's share of a step,
  the GDN share with its interval;
* :mod:`~gdnlab.model.compare_ops` — gdnlab's component measurements beside AIConfigurator's tables.

Checks and targets: :mod:`~gdnlab.model.validation` (:func:`validate`: decoder slice, cross-GPU with
one timing method, the end-to-end rows), :mod:`~gdnlab.model.targets` (:func:`target_summary`).

The composed bf16-component model (kept for ``gdnlab plan`` until it moves to :func:`predict`):
:mod:`~gdnlab.model.measured` (:func:`load_components`, :class:`ComponentTimes`),
:mod:`~gdnlab.model.gdn_sweep` (:class:`SweepGDN`), :mod:`~gdnlab.model.composed`
(:class:`ComposedStep` + two fitted numbers), :mod:`~gdnlab.model.composed_seed` (their seed fit),
:mod:`~gdnlab.model.build` (:func:`step_for_gpu`, :func:`gpu_data`: every GPU answers), and the server
plan: :mod:`~gdnlab.model.plan` (every option priced per batch, :func:`plan_candidates`; the best per
batch with runner-up and ties, :func:`best_plan`; one configuration per engine, :func:`make_plan`),
:mod:`~gdnlab.model.memory` (the concurrency memory holds), :mod:`~gdnlab.model.server_config` (engine
flags from the strategy registry, adaptive T), :mod:`~gdnlab.model.plan_accept` (the acceptance curve),
:mod:`~gdnlab.model.plan_gdn` (GDN cost per accept length), :mod:`~gdnlab.model.plan_report` (text, JSON).

Shared: :mod:`~gdnlab.model.served` (:class:`ServedModel`), :mod:`~gdnlab.model.mtp` (:class:`MTPConfig`),
:mod:`~gdnlab.model.serving` (a bench_serving run replayed through a step model),
:mod:`~gdnlab.model.seed_runs` (the seed's rows), :mod:`~gdnlab.model.numeric`; the seed's earlier
roofline fit is :mod:`gdnlab.model.legacy`, kept for comparison. Acceptance models are
:mod:`gdnlab.acceptance` / :mod:`gdnlab.acceptance_curves`; the seed's numbers :mod:`gdnlab.seed`.
Everything computed here is ``status = "projected"``.
"""
from .build import fitted_overheads, gpu_data, step_for_gpu, step_from_times
from .calibration import deployment_params
from .compare_ops import component_vs_aic
from .composed import OVERHEAD_NAMES, PARTS, ComposedStep, Overheads
from .e2e import e2e_rows, e2e_summary, sensitivity
from .engine_build import engine_rows, engine_step_for
from .engine_step import EngineParams, EngineStep
from .gdn_sweep import SweepGDN, comparable_rows
from .measured import ComponentTimes, load_components
from .memory import max_concurrency, memory_need
from .mtp import SEED_MTP, MTPConfig
from .plan import (
    Plan,
    accept_lengths,
    best_plan,
    breakdown_by_batch,
    make_plan,
    not_engine_run,
    plan_candidates,
    read_accept_table,
    speedup_table,
    tokens_per_step_table,
)
from .plan_accept import resolve_acceptance
from .predict import predict
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
    slice_rows,
    validate,
)

__all__ = ["fitted_overheads", "gpu_data", "step_for_gpu", "step_from_times", "OVERHEAD_NAMES", "PARTS", "ComposedStep",
           "Overheads", "SweepGDN", "comparable_rows", "ComponentTimes", "load_components", "SEED_MTP", "MTPConfig",
           "max_concurrency", "memory_need", "Plan", "make_plan", "not_engine_run", "resolve_acceptance",
           "accept_lengths", "best_plan", "breakdown_by_batch", "plan_candidates",
           "read_accept_table", "speedup_table", "tokens_per_step_table", "SeedAssumptions", "seed_roles",
           "seed_variants", "ServedModel", "LinearRun", "ServingScenario", "project", "simulate_serving",
           "H100_COPY_GBPS", "target_summary", "SeedComparison", "baseline_summary", "cross_gpu_rows",
           "seed_comparison", "seed_step", "seed_table", "sensitivity", "slice_rows", "validate", "e2e_rows",
           "e2e_summary", "engine_step_for", "engine_rows", "EngineParams", "EngineStep", "deployment_params",
           "predict", "component_vs_aic"]
