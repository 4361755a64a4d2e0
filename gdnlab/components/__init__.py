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

from .allreduce import allreduce_frame, allreduce_us
from .compose import check_frame, predict_step_us
from .dims import ComponentShapes, component_shapes, tiny_shapes
from .layers import STEP_MODES, StepPoint
from .slice import SyntheticSlice

__all__ = ["ComponentShapes", "component_shapes", "tiny_shapes", "StepPoint", "STEP_MODES", "SyntheticSlice",
           "check_frame", "predict_step_us", "allreduce_us", "allreduce_frame", "GridConfig", "run_grid"]


def __getattr__(name: str):
    if name in ("GridConfig", "run_grid"):
        from . import bench
        return getattr(bench, name)
    raise AttributeError(name)
