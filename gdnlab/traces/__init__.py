"""Nsight Systems SQLite exports and PyTorch profiler (Kineto) traces as pandas DataFrames.

>>> from gdnlab import traces
>>> t = traces.load("traces/h100/fi_c64.sqlite")        # doctest: +SKIP
>>> t.kernels, t.nvtx, t.runtime, t.gpu_ranges, t.metadata  # doctest: +SKIP
>>> t.status, t.warnings, t.provenance()                # doctest: +SKIP
>>> traces.kernel_summary(t)                            # doctest: +SKIP

All times are integer nanoseconds. Modules, in pipeline order: :mod:`.files`, the readers
(:mod:`.nsys`, :mod:`.kineto`, with :mod:`.metadata`) -> :mod:`.projection` (NVTX ranges onto the
GPU) -> :mod:`.analysis` (DataFrames in, DataFrames out), with :class:`Trace` (:mod:`.trace`) as the
facade over them.
:mod:`.synthetic` writes generated traces for tests and benchmarks.
"""
from __future__ import annotations

from .errors import TraceDataError, TraceError, TraceNotFoundError
from .names import DEFAULT_CLASS_RULES, kernel_class, kernel_classes, short_kernel_name
from .trace import Trace, compare, gpu_idle_gaps, kernel_summary, load, range_breakdown, sniff, step_overhead

__all__ = ["load", "sniff", "Trace", "TraceError", "TraceDataError", "TraceNotFoundError", "kernel_summary",
           "range_breakdown", "gpu_idle_gaps", "step_overhead", "compare", "kernel_class",
           "kernel_classes", "short_kernel_name", "DEFAULT_CLASS_RULES"]
