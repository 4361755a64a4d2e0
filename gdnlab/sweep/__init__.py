"""Kernel sweep, one row per point (:data:`gdnlab.results.COLUMNS`), stored as each point finishes:

* the **call grid** (``measure="call"``): backend x batch x mode (decode / verify T x buffer scope)
  x state dtype x preset x timing — one backend kernel call per row;
* the **step grid** (``measure="step"``, ``mode="step"``): strategy backend x verify strategy
  (:mod:`gdnlab.strategies`) x batch x T x accept length x state dtype — one speculative step
  (verify + commit + amortised fold) per row, with its per-phase split and a correctness check.

``gdnlab sweep`` (:mod:`gdnlab.cli.sweep`) or :func:`run_sweep`; read results with
:func:`gdnlab.results.load_sweep`. Modules, in pipeline order:

* :mod:`.config` — :class:`SweepConfig` and the grid (:func:`grid_points`);
* :mod:`.context` — :class:`MeasureContext`, what the points of a run share (backends, pools);
* :mod:`.rows` — what every row is built from (common columns, first call, row sets, inputs, timing);
* :mod:`.point` — measuring one call point (checked call, reference comparison, timing);
* :mod:`.step` — measuring one step point (strategy check, step / verify / commit graphs) and the
  copy bandwidth;
* :mod:`.runner` — :func:`run_sweep`: checks, progress, crash-safe storage, resume.
"""
from __future__ import annotations

from .config import (
    CALL_POOL_ROW_SETS,
    DEFAULT_ACCEPT_LEN,
    DEFAULT_BATCHES,
    DEFAULT_PRESET,
    DEFAULT_STRATEGY_BATCHES,
    MEASURES,
    MODES,
    STEP_STRATEGIES,
    TIMINGS,
    VERIFY_BUFFER_SCOPES,
    SweepConfig,
    SweepPoint,
    default_backends,
    default_strategy_backends,
    grid_points,
)
from .context import MeasureContext
from .point import measure_point
from .runner import SweepInterrupted, run_sweep, summary_table
from .step import copy_bandwidth, measure_step_point

__all__ = ["SweepConfig", "SweepPoint", "grid_points", "default_backends", "default_strategy_backends", "run_sweep",
           "measure_point", "measure_step_point", "copy_bandwidth", "MeasureContext", "summary_table",
           "SweepInterrupted", "DEFAULT_BATCHES", "DEFAULT_STRATEGY_BATCHES", "DEFAULT_ACCEPT_LEN", "DEFAULT_PRESET",
           "CALL_POOL_ROW_SETS", "MODES", "MEASURES", "VERIFY_BUFFER_SCOPES", "STEP_STRATEGIES", "TIMINGS"]
