"""Kernel counters: why each backend's GDN kernel is as fast as it is (Nsight Compute).

``profile_kernels(backends=..., modes=..., batches=..., state_dtypes=..., preset=...) -> DataFrame`` profiles
the decode and verify kernels of each backend (built by :func:`gdnlab.kernels.make_backend`, with the
options an engine uses, so the profiled call is the call the sweep times) and returns one row per
profiled kernel launch: DRAM bytes read/written and throughput (% of peak), achieved occupancy, SM
throughput, L2 hit rate, registers per thread, duration, the sweep's join keys (``backend, mode, batch,
draft_tokens, state_dtype, preset``) and the provenance columns of :func:`gdnlab.provenance.collect`.
:func:`summarize_calls` reduces them to one row per configuration; :func:`compare_with_sweep` checks
counters against gdnlab's byte formula and the sweep's timing, with a diagnosis for every configuration.

Engines (``engine="auto"|"nsight-python"|"ncu-csv"``, same DataFrame either way):

* **nsight-python** (``nsight.analyze.kernel`` + ``nsight.annotate``) needs Nsight Compute >= 2026.2.1:
  nsight-python 1.1.0 checks ``MIN_NCU_VERSION = (2026, 2, 1, 0)`` (``nsight/collection/ncu.py`` L32) and
  attaches in-process through 2026.2.1's injection API. :func:`nsight_python_support` decides without
  importing ``nsight`` (whose import starts ncu injection unless ``NSPY_NCU_INIT_AT_IMPORT=0``).
* **ncu-csv** runs ``ncu`` as a subprocess over a small driver (``python -m gdnlab.counters.driver``) and
  parses ``--csv --page raw``; it works with Nsight Compute 2025.3.1 (the H100's).

Modules: :mod:`.ncu` (the ncu CLI and its CSV), :mod:`.nspy` (can nsight-python run here),
:mod:`.driver` (the profiled process), :mod:`.profile` (running it), :mod:`.frame` (the tidy frame),
:mod:`.summary` (per configuration), :mod:`.compare` (against the sweep), :mod:`.files` (on disk).
The command line is :mod:`gdnlab.cli.counters`, the figures :mod:`gdnlab.plots.counters`.
Nothing here imports a GPU-only package at import time.
"""
from __future__ import annotations

from .compare import CAUSES, compare_with_sweep
from .files import COUNTER_COLUMNS, load_counters, save_frame, write_text_atomic
from .frame import JOIN_KEYS, assemble, attribute_kernels, nspy_rows_to_kernels
from .ncu import (
    MARKER_KERNEL,
    METRICS,
    PROFILE_RANGE,
    MetricSpec,
    NcuNotFoundError,
    build_import_command,
    build_profile_command,
    find_ncu,
    metric_names,
    ncu_version,
    parse_raw_csv,
)
from .nspy import NsightPythonSupport, nsight_python_support
from .profile import DEFAULT_BACKENDS, ENGINES, profile_kernels, resolve_shape
from .summary import format_table, formula_bytes, summarize_calls

__all__ = ["profile_kernels", "compare_with_sweep", "summarize_calls", "format_table", "formula_bytes",
           "assemble", "attribute_kernels", "nspy_rows_to_kernels", "parse_raw_csv", "save_frame",
           "load_counters", "write_text_atomic", "nsight_python_support", "NsightPythonSupport", "find_ncu",
           "ncu_version", "NcuNotFoundError", "build_profile_command", "build_import_command", "metric_names",
           "resolve_shape", "METRICS", "MetricSpec", "JOIN_KEYS", "ENGINES", "DEFAULT_BACKENDS", "CAUSES",
           "COUNTER_COLUMNS", "MARKER_KERNEL", "PROFILE_RANGE"]
