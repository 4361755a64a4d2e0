"""Kernel metrics: why each backend's GDN kernel is as fast as it is (Nsight Compute counters).

``profile_kernels(backends=..., modes=..., batches=..., state_dtypes=..., preset=...) -> DataFrame`` profiles
the decode and verify kernels of each backend (``gdnlab.kernels.get_backend``) and returns one row per
profiled kernel launch: DRAM bytes read/written and throughput (% of peak), achieved occupancy, SM
throughput, L2 hit rate, registers per thread, duration, the sweep's join keys (``backend, mode, batch,
draft_tokens, state_dtype, preset``) and the provenance columns of :func:`gdnlab.provenance.collect`.
``compare_with_sweep`` checks counters against gdnlab's byte formula and the sweep's timing.

Engines (``engine="auto"|"nsight-python"|"ncu-csv"``, same DataFrame either way):

* **nsight-python** (``nsight.analyze.kernel`` + ``nsight.annotate``) needs Nsight Compute >= 2026.2.1:
  nsight-python 1.1.0 checks ``MIN_NCU_VERSION = (2026, 2, 1, 0)`` (``nsight/collection/ncu.py`` L32) and
  attaches in-process through 2026.2.1's injection API. :func:`nsight_python_support` decides without
  importing ``nsight`` (whose import starts ncu injection unless ``NSPY_NCU_INIT_AT_IMPORT=0``).
* **ncu-csv** runs ``ncu`` as a subprocess over a small driver (``python -m gdnlab.metrics.driver``) and
  parses ``--csv --page raw``; it works with Nsight Compute 2025.3.1 (the H100's).

Nothing here imports a GPU-only package at import time.
"""
from __future__ import annotations

from .cli import configure_parser, run
from .compare import compare_with_sweep, normalize_sweep
from .ncu import (
                  GDN_KERNEL_REGEX,
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
from .profile import (
                  DEFAULT_BACKENDS,
                  ENGINES,
                  JOIN_KEYS,
                  assemble,
                  attribute_kernels,
                  format_table,
                  profile_kernels,
                  save_frame,
                  summarize_calls,
)

__all__ = ["profile_kernels", "compare_with_sweep", "normalize_sweep", "summarize_calls", "format_table",
           "assemble", "attribute_kernels", "parse_raw_csv", "save_frame", "nsight_python_support",
           "NsightPythonSupport", "find_ncu", "ncu_version", "NcuNotFoundError", "build_profile_command",
           "build_import_command", "metric_names", "METRICS", "MetricSpec", "JOIN_KEYS", "ENGINES",
           "DEFAULT_BACKENDS", "GDN_KERNEL_REGEX", "MARKER_KERNEL", "PROFILE_RANGE", "configure_parser", "run"]
