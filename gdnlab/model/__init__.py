"""Step-time model of a hybrid (GDN + full-attention + MoE) model's decode step, a serving
simulation, and their check against the seed's reported numbers (SGLang PR #23273).

The package is laid out along the pipeline, each module one concept (imports flow down the list):

* :mod:`~gdnlab.model.params` — documented roofline numbers, fitted per-event costs, the MTP setup;
* :mod:`~gdnlab.model.served` — the served model's parameters and bytes (:class:`ServedModel`);
* :mod:`~gdnlab.model.costs` — GDN kernel cost per call: bandwidth model or measured sweep rows;
* :mod:`~gdnlab.model.step` — time of one engine iteration (:class:`StepModel`);
* :mod:`~gdnlab.model.serving` — a bench_serving run replayed through the step model;
* :mod:`~gdnlab.model.seed_fit` — per-event costs fitted on the seed's fit rows (:func:`seed_model`);
* :mod:`~gdnlab.model.validate` — predicted vs reported on the held-out rows, sensitivity;
* :mod:`~gdnlab.model.tables` — what-if tables (tidy DataFrames with a provenance footnote) for
  :mod:`gdnlab.plots.model`.

Acceptance models and the sampler of accepted lengths are :mod:`gdnlab.acceptance`; the seed's
numbers :mod:`gdnlab.seed`. Everything computed here is ``status = "projected"``.
"""
from .costs import GDN_KERNELS, GDNKernel, MeasuredGDN, comparable_rows
from .params import FEATURES, NVLINK_GBPS, PEAK_DENSE_TFLOPS, SEED_MTP, FittedParams, MTPConfig, RooflineParams
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
from .validate import sensitivity, validate_against_seed

__all__ = ["GDN_KERNELS", "GDNKernel", "MeasuredGDN", "comparable_rows", "FEATURES", "NVLINK_GBPS",
           "PEAK_DENSE_TFLOPS", "SEED_MTP", "FittedParams", "MTPConfig", "RooflineParams", "SeedAssumptions",
           "SeedFit", "fit_to_seed", "seed_model", "seed_roles", "ServedModel", "LinearRun", "ServingScenario",
           "ServingTrace", "project", "simulate_serving", "StepModel", "break_even_table", "breakdown_table",
           "gdn_cost_table", "speedup_grid", "tpot_projection", "throughput_projection", "KERNEL_STATES", "sensitivity",
           "validate_against_seed"]
