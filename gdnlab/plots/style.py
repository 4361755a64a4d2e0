"""One plot style for every gdnlab figure: colours per backend, strategy, state dtype and kernel
class, line styles, and the axis-title convention (units in brackets).

Colours are fixed per name, not by rank within a figure, so one backend or kernel class has the
same colour in every panel and on every page of a report: a backend's colour is declared by the
backend (:mod:`gdnlab.backends`), a strategy's by its class (:mod:`gdnlab.strategies.registry`).
Unknown names get a colour from a stable hash of the name (the same on every run).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

__all__ = ["SEED_SERIES_COLORS", "STATE_DTYPE_DASH", "MODE_SYMBOL", "PALETTE", "color_for",
           "backend_color", "strategy_color", "kernel_class_color", "class_colors", "axis_title"]

#: plotly's D3 palette (colour-blind friendly enough for 10 categories)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

#: series labels of the seed's tables that are kernel states rather than backends (FlashInfer before #3147)
SEED_SERIES_COLORS = {"flashinfer_pre3147": "#17becf"}
#: kernel classes that appear in gdnlab's traces, fixed so the GDN kernel is always the same blue
KERNEL_CLASS_COLORS = {"gdn": "#1f77b4", "commit": "#d62728", "index_elementwise_kernel": "#ff7f0e",
                       "vectorized_elementwise_kernel": "#2ca02c", "unrolled_elementwise_kernel": "#9467bd",
                       "DeviceSelectSweepKernel": "#8c564b", "DeviceReduceSingleTileKernel": "#e377c2",
                       "DeviceCompactInitKernel": "#17becf", "copy": "#bcbd22", "memset": "#7f7f7f",
                       "other": "#c7c7c7"}
#: colours for classes not listed above: none of the fixed ones, so an unknown class never looks like gdn
_FALLBACK = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
             "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
STATE_DTYPE_DASH = {"float32": "solid", "bfloat16": "dash"}
MODE_SYMBOL = {"decode": "circle", "verify": "diamond"}


def color_for(name: str, known: dict[str, str] | None = None) -> str:
    """The colour of ``name``: from ``known`` if listed there, else a stable hash into :data:`PALETTE`."""
    if known and name in known:
        return known[name]
    return PALETTE[zlib.crc32(str(name).encode()) % len(PALETTE)]


def backend_color(name: str) -> str:
    """The colour the backend registry declares for ``name`` (a seed series' or a hashed one otherwise)."""
    from ..backends import backend_color as registered

    return registered(name) or color_for(name, SEED_SERIES_COLORS)


def strategy_color(name: str) -> str:
    """The colour the strategy's class declares (a hashed one for a name that is not a strategy)."""
    from ..strategies.registry import strategy_color as registered

    return registered(name) or color_for(name)


def kernel_class_color(name: str) -> str:
    """Fixed colour of a known kernel class; others hash into a palette disjoint from the fixed ones."""
    if name in KERNEL_CLASS_COLORS:
        return KERNEL_CLASS_COLORS[name]
    return _FALLBACK[zlib.crc32(str(name).encode()) % len(_FALLBACK)]


def class_colors(classes: Iterable[str]) -> dict[str, str]:
    """``{class: colour}`` for kernel classes, the same mapping in every panel of a report."""
    return {c: kernel_class_color(c) for c in classes}


def axis_title(quantity: str, unit: str | None = None) -> str:
    """``"kernel time (µs)"``: a quantity in words and its unit in brackets."""
    return f"{quantity} ({unit})" if unit else quantity
