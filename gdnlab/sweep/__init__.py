"""Kernel sweep: backend x batch x mode (decode / verify T x strategy) x state dtype x preset x
timing, one row per point (:data:`gdnlab.results.COLUMNS`), stored as each point finishes.

``gdnlab sweep`` (:mod:`gdnlab.cli.sweep`) or :func:`run_sweep`; read results with
:func:`gdnlab.results.load_sweep`. Modules, in pipeline order:

* :mod:`.config` — :class:`SweepConfig` and the grid (:func:`grid_points`);
* :mod:`.point` — measuring one point (checked call, reference comparison, timing);
* :mod:`.runner` — :func:`run_sweep`: checks, progress, crash-safe storage, resume.
"""
from __future__ import annotations

from .config import (
                     DEFAULT_BATCHES,
                     DEFAULT_PRESET,
                     MODES,
                     STRATEGIES,
                     TIMINGS,
                     SweepConfig,
                     SweepPoint,
                     default_backends,
                     grid_points,
)
from .point import MeasureContext, measure_point, verify_call
from .runner import SweepInterrupted, resolve_device, run_sweep, summary_table

__all__ = ["SweepConfig", "SweepPoint", "grid_points", "default_backends", "run_sweep", "measure_point",
           "verify_call", "MeasureContext", "resolve_device", "summary_table", "SweepInterrupted",
           "DEFAULT_BATCHES", "DEFAULT_PRESET", "MODES", "STRATEGIES", "TIMINGS"]
