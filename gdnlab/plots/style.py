"""One plot style for every gdnlab figure: colours per backend, strategy, phase, draft tokens and
kernel class, line styles, log-axis ticks, and the axis-title convention (units in brackets).

Colours are fixed per name, not by rank within a figure, so one backend, strategy or kernel class has
the same colour in every panel and on every page of a report: a backend's colour is declared by the
backend (:mod:`gdnlab.backends`), a strategy's by its class (:mod:`gdnlab.strategies.registry`), a
phase's and a kernel class's here. A figure never takes plotly's default colour sequence: every trace
gets its colour from one of the functions below. Names no registry knows get a colour from a stable
hash of the name; :func:`distinct_colors` keeps two such names in one figure apart.

Log axes are labelled at the values a figure shows (the measured batches B: 1, 4, 16, 64, 128, 256),
never with plotly's 2-and-5 minor labels (``1 2 5 10 2 5 100``): :func:`log_ticks`, :func:`measured_log_axis`,
:func:`decade_ticks`, :func:`decade_log_axis`.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence

__all__ = ["SEED_SERIES_COLORS", "STATE_DTYPE_DASH", "MODE_SYMBOL", "PALETTE", "PHASE_COLORS", "DECODE_COLOR",
           "KEY_COLOR", "BACKEND_DASH", "color_for", "backend_color", "strategy_color", "option_color",
           "kernel_class_color", "class_colors", "phase_color", "draft_tokens_color", "distinct_colors",
           "backend_dash", "axis_title", "tick_text", "log_ticks", "decade_ticks", "measured_log_axis",
           "decade_log_axis"]

#: plotly's D3 palette (colour-blind friendly enough for 10 categories)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

#: series labels of the seed's tables that are kernel states rather than backends (FlashInfer before #3147)
SEED_SERIES_COLORS = {"flashinfer_pre3147": "#17becf"}
#: colour per phase of a verify step (gdnlab.analysis.phases.PHASES, plus the marker kernels and the rest):
#: each distinct from the others, so verify, commit and fold never share a colour
PHASE_COLORS = {"fold": "#ff7f0e", "verify": "#1f77b4", "commit": "#d62728", "marker": "#bcbd22",
                "other": "#c7c7c7"}
#: the phase-marker kernels (gdnlab.markers): dark shades, one per phase, apart from every other class
_MARKER_COLORS = {"phase_marker_fold": "#8c6d31", "phase_marker_verify": "#393b79",
                  "phase_marker_commit": "#843c39"}
#: kernel classes that appear in gdnlab's traces, fixed so the GDN kernel is always the same blue
KERNEL_CLASS_COLORS = {"gdn": "#1f77b4", "commit": "#d62728", "index_elementwise_kernel": "#ff7f0e",
                       "vectorized_elementwise_kernel": "#2ca02c", "unrolled_elementwise_kernel": "#9467bd",
                       "elementwise_kernel": "#bcbd22", "DeviceSelectSweepKernel": "#8c564b",
                       "DeviceReduceSingleTileKernel": "#e377c2", "DeviceCompactInitKernel": "#17becf",
                       "copy": "#dbdb8d", "memset": "#7f7f7f", "other": "#c7c7c7", **_MARKER_COLORS}
#: colours for names nothing above lists: none of the fixed ones, so an unknown class never looks like gdn
_FALLBACK = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5",
             "#637939", "#7b4173", "#e7ba52", "#31a354", "#756bb1", "#636363")
#: plain decode (no speculation) beside the strategies: black, no strategy's colour
DECODE_COLOR = "#222222"
#: legend keys that explain a line style or marker rather than a series (neutral grey)
KEY_COLOR = "#555555"
STATE_DTYPE_DASH = {"float32": "solid", "bfloat16": "dash"}
MODE_SYMBOL = {"decode": "circle", "verify": "diamond"}
#: line style per backend where the colour is a strategy's (solid Triton, dashed FlashInfer, dotted reference)
BACKEND_DASH = {"triton": "solid", "flashinfer": "dash", "reference": "dot"}
_OTHER_DASHES = ("dashdot", "longdash", "longdashdot", "6px,2px,2px,2px,2px,2px", "1px,4px")
#: draft tokens T: a sequential blue-to-red scale, one colour per T (2..8 fixed, others hashed)
_T_COLORS = {1: "#222222", 2: "#4575b4", 3: "#74add1", 4: "#1a9850", 5: "#fdae61", 6: "#f46d43", 7: "#d73027",
             8: "#a50026"}


def color_for(name: str, known: dict[str, str] | None = None) -> str:
    """The colour of ``name``: from ``known`` if listed there, else a stable hash into :data:`PALETTE`."""
    if known and name in known:
        return known[name]
    return PALETTE[zlib.crc32(str(name).encode()) % len(PALETTE)]


def _hashed(name: str) -> str:
    return _FALLBACK[zlib.crc32(str(name).encode()) % len(_FALLBACK)]


def backend_color(name: str) -> str:
    """The colour the backend registry declares for ``name`` (a seed series' or a hashed one otherwise)."""
    from ..backends import backend_color as registered

    return registered(name) or SEED_SERIES_COLORS.get(str(name)) or _hashed(name)


def strategy_color(name: str) -> str:
    """The colour the strategy's class declares (a hashed one for a name that is not a strategy)."""
    from ..strategies.registry import strategy_color as registered

    return registered(name) or _hashed(name)


def option_color(name: str) -> str:
    """Colour of a planned option: a strategy's own colour, :data:`DECODE_COLOR` for plain ``decode``."""
    return DECODE_COLOR if str(name) == "decode" else strategy_color(name)


def _registered_dashes() -> dict[str, str]:
    """A line style per registered backend: :data:`BACKEND_DASH`, then the other registered backends
    in registry order, each the next unused style (no two backends alike)."""
    from ..backends import names

    out = dict(BACKEND_DASH)
    free = [d for d in _OTHER_DASHES if d not in out.values()]
    for i, b in enumerate(n for n in names() if n not in out):
        out[b] = free[i] if i < len(free) else f"{3 + 2 * i}px,3px,1px,3px"
    return out


def backend_dash(name: str) -> str:
    """Line style of a backend where the colour is a strategy's: fixed per registered backend and
    distinct among them (:func:`_registered_dashes`); a stable hashed one for any other name."""
    name = str(name)
    return _registered_dashes().get(name) or _OTHER_DASHES[zlib.crc32(name.encode()) % len(_OTHER_DASHES)]


def kernel_class_color(name: str) -> str:
    """Fixed colour of a known kernel class; others hash into a palette disjoint from the fixed ones."""
    return KERNEL_CLASS_COLORS.get(str(name)) or _hashed(name)


def phase_color(name: str) -> str:
    """Colour of a step phase (:data:`PHASE_COLORS`); an unknown phase hashes outside the fixed ones."""
    return PHASE_COLORS.get(str(name)) or _hashed(name)


def draft_tokens_color(T: int) -> str:
    """Colour of draft tokens ``T`` (light blue at 2 to dark red at 8; T=1 is plain decode, black)."""
    return _T_COLORS.get(int(T)) or _hashed(f"T={int(T)}")


def distinct_colors(names: Iterable[str], color: Callable[[str], str]) -> dict[str, str]:
    """``{name: colour}`` with every name a different colour: each keeps ``color(name)`` unless a name
    before it (in the order given) already has that colour; it then takes the first colour of
    :data:`_FALLBACK` no name in the figure has. Names registries know have distinct colours already,
    so only unknown names that hash alike ever move."""
    names = list(dict.fromkeys(str(n) for n in names))
    wanted = {n: color(n) for n in names}
    out: dict[str, str] = {}
    taken: set[str] = set()
    for n in names:
        c = wanted[n]
        if c in taken:
            c = next((f for f in _FALLBACK if f not in taken and f not in wanted.values()),
                     next((f for f in _FALLBACK if f not in taken), c))
        out[n] = c
        taken.add(c)
    return out


def class_colors(classes: Iterable[str]) -> dict[str, str]:
    """``{class: colour}`` for kernel classes, the same mapping in every panel of a figure, no two alike."""
    return distinct_colors(classes, kernel_class_color)


def axis_title(quantity: str, unit: str | None = None) -> str:
    """``"kernel time (µs)"``: a quantity in words and its unit in brackets."""
    return f"{quantity} ({unit})" if unit else quantity


# ------------------------------------------------------------------------------------------ log-axis ticks


def tick_text(v: float) -> str:
    """A tick label without scientific notation: ``1``, ``16``, ``1,000``, ``0.5``, ``0.02``, ``2.5``."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v - round(v)) < 1e-9 * max(1.0, abs(v)):
        return f"{int(round(v)):,}"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:,.{digits}f}".rstrip("0").rstrip(".")


def _positive(values: Iterable) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f > 0:
            out.append(f)
    return sorted(set(out))


def log_ticks(values: Iterable, *, max_labels: int = 10) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis at the values a figure shows (e.g. the measured batches
    1, 4, 16, 64, 128, 256): each distinct positive value once, in order. With more than ``max_labels``
    values, a subset evenly spaced in log (first and last kept) so labels never crowd."""
    vals = _positive(values)
    if len(vals) > max_labels > 1:
        logs = [math.log(v) for v in vals]
        lo, hi = logs[0], logs[-1]
        picked: list[float] = []
        for i in range(max_labels):
            target = lo + (hi - lo) * i / (max_labels - 1)
            best = min(vals, key=lambda v: abs(math.log(v) - target))
            if best not in picked:
                picked.append(best)
        vals = sorted(picked)
    return vals, [tick_text(v) for v in vals]


def decade_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks for a log axis spanning ``lo``..``hi`` (> 0): the powers of ten inside; where fewer than two
    fall inside, also 2x and 5x each power (1, 2, 5, 10, 20, 50). Labels as :func:`tick_text`."""
    if not (lo > 0 and hi > 0) or not (math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    lo, hi = min(lo, hi), max(lo, hi)
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    eps = 1e-9
    tens = [10.0**e for e in range(e0, e1 + 1) if lo * (1 - eps) <= 10.0**e <= hi * (1 + eps)]
    vals = tens
    if len(tens) < 2:
        vals = [m * 10.0**e for e in range(e0, e1 + 1) for m in (1, 2, 5)
                if lo * (1 - eps) <= m * 10.0**e <= hi * (1 + eps)]
        if not vals:                       # a range inside one 1-2-5 step: its ends
            vals = [lo, hi] if hi > lo else [lo]
    return vals, [tick_text(v) for v in vals]


def measured_log_axis(fig, values: Iterable, *, axis: str = "x", max_labels: int = 10, **where) -> None:
    """Make ``axis`` (``"x"`` or ``"y"``) of ``fig`` (the subplots ``where`` selects: ``row``, ``col``)
    a log axis labelled at ``values`` only (:func:`log_ticks`), with no minor labels."""
    vals, text = log_ticks(values, max_labels=max_labels)
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    kw = {"type": "log", "tickmode": "array", "tickvals": vals, "ticktext": text} if vals else {"type": "log"}
    update(**kw, tickangle=0, minor={"showgrid": False, "ticks": ""}, **where)


def decade_log_axis(fig, values: Sequence | Iterable, *, axis: str = "y", pad: float = 1.15, **where) -> None:
    """Make ``axis`` of ``fig`` a log axis over ``values`` (with ``pad`` x room each side), labelled at
    :func:`decade_ticks`, a light grid at 2..9 but no labels there."""
    vals = _positive(values)
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    if not vals:
        update(type="log", **where)
        return
    lo, hi = vals[0] / pad, vals[-1] * pad
    tv, tt = decade_ticks(lo, hi)
    update(type="log", tickmode="array", tickvals=tv, ticktext=tt, range=[math.log10(lo), math.log10(hi)],
           minor={"dtick": "D1", "showgrid": True, "gridcolor": "#f0f0f0", "ticks": ""}, **where)
