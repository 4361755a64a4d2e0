"""gdnlab: instrument, profile and model Gated DeltaNet (GDN) decode and MTP-verify kernels.

Importing gdnlab never imports a GPU-only package (FlashInfer, nvtx, nsight-python); those are
loaded lazily by the modules that need them.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {"shapes", "state", "inputs", "hardware", "roofline", "provenance", "stats", "tools", "errors",
         "kernels", "strategies", "instrument", "results", "sweep", "workload", "capture", "selfcheck",
         "traces", "counters", "acceptance", "seed", "model", "components", "plots", "report", "cli"}


def __getattr__(name: str) -> Any:  # PEP 562: submodules load on first use
    if name in _LAZY:
        return import_module(f"gdnlab.{name}")
    raise AttributeError(f"module 'gdnlab' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
