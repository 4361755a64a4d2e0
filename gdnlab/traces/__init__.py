"""Nsight Systems SQLite exports and PyTorch profiler (Kineto) traces as pandas DataFrames.

>>> from gdnlab import traces
>>> t = traces.load("traces/h100/fi_c64.sqlite")        # doctest: +SKIP
>>> t.kernels, t.nvtx, t.runtime, t.gpu_ranges, t.metadata  # doctest: +SKIP
>>> traces.kernel_summary(t)                            # doctest: +SKIP

All times are integer nanoseconds. See :class:`Trace` for the columns and :mod:`.projection` for
how NVTX ranges are projected onto the GPU.
"""
from __future__ import annotations

from .analysis import compare, gpu_idle_gaps, kernel_summary, range_breakdown, step_overhead
from .errors import TraceError, TraceNotFoundError
from .names import DEFAULT_CLASS_RULES, kernel_class, kernel_classes, short_kernel_name
from .trace import Trace, load, sniff

__all__ = ["load", "sniff", "Trace", "TraceError", "TraceNotFoundError", "kernel_summary",
           "range_breakdown", "gpu_idle_gaps", "step_overhead", "compare", "kernel_class",
           "kernel_classes", "short_kernel_name", "DEFAULT_CLASS_RULES"]
