"""Kernel sweep, one row per point (:data:`gdnlab.results.COLUMNS`), stored as each point finishes:

* the **call grid** (``measure="call"``): backend x batch x mode (decode / verify T x verify call)
  x state dtype x preset x timing — one backend kernel call per row;
* the **step grid** (``measure="step"``, ``mode="step"``): strategy backend x verify strategy
  (:mod:`gdnlab.strategies`) x batch x T x accept length x state dtype — one speculative step
  (verify + commit + amortised fold) per row, with its per-phase split and a correctness check.

``gdnlab sweep`` (:mod:`gdnlab.cli.sweep`) or :func:`run_sweep`; read results with
:func:`gdnlab.results.load_sweep`. Modules, in pipeline order:

* :mod:`.config` — :class:`SweepConfig` and the grid (:func:`grid_points`);
* :mod:`.point` — measuring one call point (checked call, reference comparison, timing);
* :mod:`.step` — measuring one step point (strategy check, step / verify / commit graphs) and the
  copy bandwidth;
* :mod:`.runner` — :func:`run_sweep`: checks, progress, crash-safe storage, resume.
"""
from __future__ import annotations

from .config import (
    CALL_POOL_ROW_SETS,
    CALL_STRATEGIES,
    DEFAULT_ACCEPT_LEN,
    DEFAULT_BATCHES,
    DEFAULT_PRESET,
    DEFAULT_STRATEGY_BATCHES,
    MEASURES,
    MODES,
    STEP_STRATEGIES,
    TIMINGS,
    SweepConfig,
    SweepPoint,
    default_backends,
    default_strategy_backends,
    grid_points,
)
from .point import MeasureContext, measure_point, verify_call
from .runner import SweepInterrupted, resolve_device, run_sweep, summary_table
from .step import copy_bandwidth, measure_step_point

__all__ = ["SweepConfig", "SweepPoint", "grid_points", "default_backends", "default_strategy_backends", "run_sweep",
           "measure_point", "measure_step_point", "copy_bandwidth", "verify_call", "MeasureContext",
           "resolve_device", "summary_table", "SweepInterrupted", "DEFAULT_BATCHES", "DEFAULT_STRATEGY_BATCHES",
           "DEFAULT_ACCEPT_LEN", "DEFAULT_PRESET", "CALL_POOL_ROW_SETS", "MODES", "MEASURES", "CALL_STRATEGIES",
           "STEP_STRATEGIES",
           "TIMINGS"]
