"""gdnlab: instrument, profile and model Gated DeltaNet (GDN) decode and MTP-verify kernels.

Importing gdnlab never imports a GPU-only package (FlashInfer, nvtx, nsight-python); those are
loaded lazily by the modules that need them.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {"kernels", "shapes", "state", "hardware", "roofline", "provenance", "inputs",
         "traces", "spec", "seed", "sweep", "workload", "instrument", "plots", "report",
         "metrics", "capture", "stepmodel"}


def __getattr__(name: str) -> Any:  # PEP 562: submodules load on first use
    if name in _LAZY:
        return import_module(f"gdnlab.{name}")
    raise AttributeError(f"module 'gdnlab' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
