"""Measured decoder components of a served hybrid GDN + MoE model and a synthetic slice to check their sum.

* :mod:`~gdnlab.components.dims`: per-GPU shapes (:class:`ComponentShapes`, :func:`component_shapes`).
* :mod:`~gdnlab.components.attention`: FlashInfer paged / SDPA attention over a KV cache.
* :mod:`~gdnlab.components.layers`: GDN, attention, MoE, lm_head and MTP draft layers with random
  weights, as lists of timed ops.
* :mod:`~gdnlab.components.slice`: 3 GDN + 1 attention layers bound to one step (decode or MTP verify
  + commit), run as one CUDA graph.
* :mod:`~gdnlab.components.bench`: the grid of timings (:func:`run_grid`).
* :mod:`~gdnlab.components.compose`: the predicted step from the components vs the measured step.
* :mod:`~gdnlab.components.allreduce`: the projected TP all-reduce.

Importing this package imports neither FlashInfer nor Triton.
"""
from __future__ import annotations

from importlib import import_module

# name -> submodule; loaded on first use, so importing one submodule (e.g. ``allreduce`` for the step
# model) does not import torch through the others
_HOMES = {
    "allreduce_frame": "allreduce", "allreduce_us": "allreduce",
    "check_frame": "compose", "predict_step_us": "compose",
    "ComponentShapes": "dims", "component_shapes": "dims", "tiny_shapes": "dims",
    "STEP_MODES": "layers", "StepPoint": "layers",
    "SyntheticSlice": "slice",
    "GridConfig": "bench", "run_grid": "bench",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
