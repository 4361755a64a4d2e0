"""The seed's roofline step model (the earlier model; kept for comparison, not used by the planner).

One engine iteration = roofline parts from documented numbers (served-model bytes, GDN kernel
bandwidth models from FlashInfer's PR texts, datasheet peaks) plus five per-event costs fitted on
the seed's fit rows (SGLang PR #23273, ``gdnlab/data/seed_results.csv``). The component model in
:mod:`gdnlab.model` replaces it: measured components, two fitted numbers.

* :mod:`~gdnlab.model.legacy.params` — documented roofline numbers and the fitted per-event costs;
* :mod:`~gdnlab.model.legacy.gdn_costs` — GDN kernel cost per call: bandwidth model or measured rows;
* :mod:`~gdnlab.model.legacy.iteration` — time of one engine iteration (:class:`StepModel`);
* :mod:`~gdnlab.model.legacy.fit` — per-event costs fitted on the seed's fit rows (:func:`seed_model`);
* :mod:`~gdnlab.model.legacy.validation` — predicted vs reported on the held-out rows, sensitivity.

Shared with the component model: the served model (:class:`~gdnlab.model.served.ServedModel`), the
MTP setup (:mod:`gdnlab.model.mtp`), the serving simulation (:mod:`gdnlab.model.serving`), the seed
rows as fit targets (:mod:`gdnlab.model.seed_runs`) and :func:`gdnlab.model.numeric.nnls`.
Everything computed here is ``status = "projected"``.
"""
from .fit import SeedFit, fit_to_seed, kernel_for, seed_model
from .gdn_costs import GDN_KERNELS, GDNKernel, MeasuredGDN
from .iteration import StepModel
from .params import FEATURES, NVLINK_GBPS, PEAK_DENSE_TFLOPS, FittedParams, RooflineParams
from .validation import sensitivity, validate_against_seed

__all__ = ["SeedFit", "fit_to_seed", "kernel_for", "seed_model", "GDN_KERNELS", "GDNKernel", "MeasuredGDN",
           "StepModel", "FEATURES", "NVLINK_GBPS", "PEAK_DENSE_TFLOPS", "FittedParams", "RooflineParams",
           "sensitivity", "validate_against_seed"]
