"""Tables people can read: the formatter every DataFrame a notebook shows goes through (:func:`show`).

:func:`format_table` turns a DataFrame into a :class:`TableView`:

* **columns**: the ones asked for (names the frame lacks are skipped, so a table whose producer gains
  or loses columns still shows); by default every column except provenance columns, empty columns
  and columns with one value in every row (those go into a caption line: ``every row: T 4 ·
  state dtype bfloat16``), at most ``max_columns`` (the rest are named under the table, never cut);
* **headers** in words with the unit in brackets, from the glossary and the column's suffix
  (``step_us`` -> ``step (µs)``, ``tpot_ms`` -> ``TPOT (ms)``, ``draft_tokens`` -> ``T``,
  ``bw_gbps`` -> ``bw (GB/s)``, ``*_ns`` shown in µs, ``*_bytes`` in MB, a share in %);
* **numbers** to the column's significant digits (:data:`SIGNIFICANT`: 4 for times, 3 for the rest:
  percentages, ratios, bandwidths), thousands separators, never scientific notation (values at or
  above ``10**(digits-1)`` as integers: ``18,397``); integer columns as integers (``1,024``);
  booleans ``yes`` / ``no``;
* **missing values** (NaN, ``<NA>``, ``None``, NaT) as an em dash ``—``;
* **text** whole, wrapped in the cell (engine flags in ``<code>``, broken at spaces), HTML-escaped;
* a column called ``status`` shows provenance statuses (measured / projected / reported /
  synthetic) only: one holding anything else (a run's ``ok`` / ``unsupported: ...``) is headed
  ``result``, and ``x_status`` ``x basis``.

The HTML comes from :class:`pandas.io.formats.style.Styler` (index hidden); :meth:`TableView.to_text`
gives the same cells as plain text.
"""
from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["TableView", "format_table", "header_for", "format_number", "column_unit", "MISSING", "SIGNIFICANT"]

#: what an empty cell shows
MISSING = "—"
#: significant digits by unit: times 4, everything else (percentages, ratios, counts per unit) 3
SIGNIFICANT = {"µs": 4, "ms": 4, "s": 4}
#: words for glossary names and abbreviations (``batch`` is B, ``draft_tokens`` is T)
_WORDS = {"batch": "B", "draft_tokens": "T", "accept_len": "accept length", "state_dtype": "state dtype",
          "act_dtype": "act dtype", "tpot": "TPOT", "gdn": "GDN", "bw": "bandwidth", "pct": "%", "ncu": "ncu",
          "cpu": "CPU", "gpu": "GPU", "kv": "KV", "len": "length", "p10": "p10", "p90": "p90", "vs": "vs",
          "rel": "relative", "err": "error", "tok": "tokens", "hbm": "HBM", "dram": "DRAM", "sm": "SM",
          "l2": "L2", "mtp": "MTP", "tp": "TP"}
#: suffix -> (unit, scale): the value shown is value * scale
_SUFFIX_UNITS: tuple[tuple[str, str, float], ...] = (
    ("_tok_s", "tokens/s", 1.0), ("_us", "µs", 1.0), ("_ms", "ms", 1.0), ("_ns", "µs", 1e-3), ("_s", "s", 1.0),
    ("_pct", "%", 1.0), ("_gbps", "GB/s", 1.0), ("_gib", "GiB", 1.0), ("_mib", "MiB", 1.0), ("_mb", "MB", 1.0),
    ("_bytes", "MB", 1e-6), ("_tflops", "TFLOP/s", 1.0))
#: whole names -> (unit, scale)
_NAME_UNITS = {"bytes": ("MB", 1e-6), "tflops": ("TFLOP/s", 1.0), "speedup": ("×", 1.0), "ratio": ("×", 1.0),
               "floor_ratio": ("×", 1.0), "bw_gbps": ("GB/s", 1.0), "pct_of_peak_bw": ("%", 1.0)}
#: a unit inside a name (``window_us_median``, ``span_gbps_p10``) -> (unit, scale)
_UNIT_TOKENS = {"us": ("µs", 1.0), "ms": ("ms", 1.0), "ns": ("µs", 1e-3), "gbps": ("GB/s", 1.0),
                "gib": ("GiB", 1.0), "mib": ("MiB", 1.0)}
_RATIO_PREFIXES = ("vs_", "speedup_", "ratio_")
_FLAGS = re.compile(r"^\s*--[a-z]")
#: a column that is the spread of another (p10 / p90, lo / hi of a median)
_SPREAD = re.compile(r"(^|_)(lo|hi|p10|p90|p25|p75|std)(_|$)")
#: magnitudes below 10**_TINY are written with a power of ten
_TINY = -4
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
#: text up to this many characters stays on one line
_SHORT = 32
#: a text column this long (characters) whose rows repeat a few values is shown as numbered notes
_NOTE_LEN = 160


def _provenance_columns() -> set[str]:
    from ..provenance import PROVENANCE_COLUMNS

    return {*PROVENANCE_COLUMNS, "sweep_id", "kernel_path", "backend_options"}


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() in ("", "nan", "NaN", "<NA>", "None", "NaT")
    try:
        import pandas as pd

        r = pd.isna(v)
        return bool(r) if isinstance(r, (bool, int)) or getattr(r, "shape", None) == () else False
    except (TypeError, ValueError):
        return False


def column_unit(name: str, values: Sequence[Any] = ()) -> tuple[str | None, float]:
    """``(unit, scale)`` of a column from its name (values shown are ``value * scale``): ``step_us`` ->
    ``("µs", 1)``, ``mean_ns`` -> ``("µs", 1e-3)``, ``formula_bytes`` -> ``("MB", 1e-6)``,
    ``vs_full_cache`` -> ``("×", 1)``; a ``share`` column of fractions (all in 0..1) -> ``("%", 100)``."""
    n = str(name)
    if n in _NAME_UNITS:
        return _NAME_UNITS[n]
    if n.startswith(_RATIO_PREFIXES) or n.endswith("_ratio") or "_vs_" in n:
        return "×", 1.0
    if n.endswith("_pct") or "_pct_" in n or n.startswith("pct_"):
        return "%", 1.0
    for suffix, unit, scale in _SUFFIX_UNITS:
        if n.endswith(suffix):
            return unit, scale
    for token in reversed(n.split("_")[1:]):
        if token in _UNIT_TOKENS:
            return _UNIT_TOKENS[token]
    if n == "share" or n.endswith("_share"):
        nums = [float(v) for v in values if isinstance(v, (int, float)) and not _missing(v)]
        if nums and all(0 <= v <= 1 for v in nums):
            return "%", 100.0
    return None, 1.0


def _strip_unit(name: str, unit: str | None) -> str:
    for suffix, u, _ in _SUFFIX_UNITS:
        if u == unit and name.endswith(suffix) and name != suffix.lstrip("_"):
            return name[: -len(suffix)]
    if unit == "%" and name.endswith("_pct"):
        return name[:-4]
    return name


@lru_cache(maxsize=1)
def _identifiers() -> tuple[str, ...]:
    """Names that headers keep whole (the strategies: ``full_cache``, not ``full cache``), longest first."""
    from ..strategies.registry import STRATEGY_NAMES

    return tuple(sorted((n for n in STRATEGY_NAMES if "_" in n), key=len, reverse=True))


def header_for(name: str, unit: str | None = None) -> str:
    """A column header in words with its unit in brackets: ``step_us`` -> ``step (µs)``,
    ``throughput_tok_s`` -> ``throughput (tokens/s)``, ``draft_tokens`` -> ``T``, ``batch`` -> ``B``,
    ``busy_pct_median`` -> ``busy median (%)``, ``pct_of_peak_bw`` -> ``% of peak bandwidth``."""
    n = str(name)
    base = _strip_unit(n, unit) if unit else n
    keep = _identifiers()
    for ident in keep:                           # strategy names stay as they are written everywhere
        base = base.replace(ident, ident.replace("_", "\0"))
    tokens = [t.replace("\0", "_") for t in base.split("_") if t]
    base = base.replace("\0", "_")
    if unit == "%" and tokens and tokens[0] != "pct":
        tokens = [t for t in tokens if t != "pct"]
    infix = [i for i, t in enumerate(tokens) if i and t in _UNIT_TOKENS and _UNIT_TOKENS[t][0] == unit]
    if base == n and infix:                      # the unit inside the name: window_us_median
        del tokens[infix[-1]]
        base = "_".join(tokens)
    words = _WORDS.get(base) or " ".join(_WORDS.get(t, t) for t in tokens) or n
    if not unit or unit == "%" and "%" in words:
        return words
    return f"{words} ({unit})"


def format_number(v: float, sig: int = 4) -> str:
    """``v`` to ``sig`` significant digits without scientific notation, with thousands separators;
    values at or above ``10**(sig-1)`` (after rounding) as integers (``18,397``, ``1,000``); below
    ``1e-4`` (rounding noise, tiny errors) as ``2.12×10⁻¹⁶``; :data:`MISSING` for NaN / inf."""
    if _missing(v) or not math.isfinite(float(v)):
        return MISSING
    v = float(v)
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(float(f"{v:.{max(sig, 1) - 1}e}"))))     # after rounding: 999.96 -> 1,000
    if mag >= sig - 1:
        return f"{round(v):,}"
    if mag < _TINY:                      # 2.12e-16 as 2.12×10⁻¹⁶: readable, not 0.000000000000000212
        mant = f"{v / 10.0**mag:.{max(sig - 1, 0)}f}"
        return f"{mant}×10{str(mag).translate(_SUPERSCRIPT)}"
    return f"{v:,.{sig - 1 - mag}f}"


@dataclass
class _Col:
    name: str
    header: str
    cells: list[str]
    numeric: bool
    code: bool = False

    @property
    def width(self) -> int:
        """Characters of the longest cell."""
        return max((len(c) for c in self.cells), default=0)

    @property
    def css(self) -> dict[str, str]:
        """Cell style: numbers right-aligned on one line, short text on one line, long text and engine
        flags wrapped (at spaces; a word breaks only where it cannot fit) in a column wide enough to read."""
        if self.numeric:
            return {"text-align": "right", "white-space": "nowrap", "font-variant-numeric": "tabular-nums"}
        if self.width <= _SHORT and not self.code:
            return {"text-align": "left", "white-space": "nowrap"}
        wide = "24em" if self.code or self.width > 120 else "12em"
        return {"text-align": "left", "white-space": "normal", "min-width": wide, "max-width": "40em",
                "overflow-wrap": "break-word"}


def _is_integral(vals: list[float]) -> bool:
    return all(float(v).is_integer() for v in vals) and all(abs(v) < 2**53 for v in vals)


def _numeric_cells(name: str, series) -> tuple[str, list[str]]:
    """(header, cells) of a numeric column."""
    import pandas as pd

    raw = pd.to_numeric(series, errors="coerce")
    unit, scale = column_unit(name, [v for v in raw.tolist() if not _missing(v)])
    vals = [None if _missing(v) else float(v) * scale for v in raw.tolist()]
    present = [v for v in vals if v is not None and math.isfinite(v)]
    header = header_for(name, unit)
    if present and _is_integral(present) and scale == 1.0:
        return header, [MISSING if v is None or not math.isfinite(v) else f"{int(v):,}" for v in vals]
    sig = SIGNIFICANT.get(unit or "", 3)
    return header, [MISSING if v is None else format_number(v, sig) for v in vals]


def _text_cell(v: Any) -> str:
    if _missing(v):
        return MISSING
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "yes" if v else "no"
    if isinstance(v, float):
        return format_number(v)
    return str(v)


def _status_header(name: str, values: list[str]) -> str | None:
    """A header for a status column whose values are not provenance statuses (``None``: keep it)."""
    from ..provenance import STATUSES

    n = str(name)
    if not (n == "status" or n.endswith("_status")):
        return None
    present = {v.split(" ")[0] for v in values if v != MISSING}
    if present <= set(STATUSES):
        return None
    return "result" if n == "status" else header_for(n[: -len("_status")]) + " basis"


def _column(df, name: str) -> _Col:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    s = df[name]
    if is_numeric_dtype(s) and not is_bool_dtype(s):
        header, cells = _numeric_cells(name, s)
        return _Col(str(name), header, cells, numeric=True)
    cells = [_text_cell(v) for v in s.tolist()]
    header = _status_header(name, cells) or header_for(name)
    code = any(_FLAGS.match(c) for c in cells)
    return _Col(str(name), header, cells, numeric=False, code=code)


def _constant(s) -> Any:
    """The single value of a column with one value in every row (``None`` otherwise or when empty)."""
    vals = s.dropna()
    if len(vals) != len(s) or len(s) < 2:
        return None
    try:
        uniq = vals.astype(str).unique()
    except (TypeError, ValueError):
        return None
    return vals.iloc[0] if len(uniq) == 1 else None


def _choose(df, columns: Sequence[str] | None, max_columns: int) -> tuple[list[str], list[str], list[str]]:
    """(columns shown, columns folded into the caption (one value in every row), columns left out)."""
    names = [str(c) for c in df.columns]
    if columns is not None:
        shown = [c for c in columns if c in names]
        if shown:
            return shown, [], []
    prov = _provenance_columns()
    shown, const = [], []
    for c in names:
        s = df[c]
        if (c in prov and not _holds_flags(s)) or s.map(_missing).all():
            continue        # an engine's version column shares the engine's name with its flags column
        if len(df) > 1 and _constant(s) is not None and len(names) > 2:
            const.append(c)
        else:
            shown.append(c)
    if not shown:                     # every column constant: show them, one row says it all
        shown, const = const, []
    return _keep(df, shown, const, max_columns)


def _holds_flags(s) -> bool:
    """Whether a column holds engine command-line flags (``--flag value ...``)."""
    return any(isinstance(v, str) and _FLAGS.match(v) for v in s.tolist())


def _keep(df, shown: list[str], const: list[str], max_columns: int) -> tuple[list[str], list[str], list[str]]:
    """At most ``max_columns`` of ``shown`` (returned with ``const`` and the columns left out): engine
    flags always stay; spreads of another column (``*_lo_*``, ``*_hi_*``, ``*_p10_*``, ...) go first,
    then the last columns."""
    if len(shown) <= max_columns:
        return shown, const, []
    flags = {c for c in shown if _holds_flags(df[c])}
    spread = [c for c in shown if _SPREAD.search(c) and c not in flags]
    rest = [c for c in reversed(shown) if c not in flags and c not in spread]
    drop: list[str] = []
    for c in spread + rest:
        if len(shown) - len(drop) <= max(max_columns, len(flags)):
            break
        drop.append(c)
    return [c for c in shown if c not in drop], const, [c for c in shown if c in drop]


@dataclass
class TableView:
    """A formatted table: columns (header, cells), a caption above, notes below."""

    columns: list[_Col]
    caption: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    @property
    def rows(self) -> list[list[str]]:
        return [list(r) for r in zip(*(c.cells for c in self.columns))] if self.columns else []

    def to_text(self) -> str:
        """The table as aligned plain text (captions above, notes below)."""
        widths = [max([len(c.header)] + [len(x) for x in c.cells]) for c in self.columns]
        lines = [*self.caption, "  ".join(h.rjust(w) for h, w in zip(self.headers, widths))]
        lines += ["  ".join(x.rjust(w) for x, w in zip(r, widths)) for r in self.rows]
        return "\n".join(lines + self.notes)

    def to_html(self) -> str:
        """The table as HTML (pandas Styler, index hidden), text wrapped, numbers right-aligned."""
        import pandas as pd

        disp = pd.DataFrame({i: [_html_cell(x, c.code) for x in c.cells] for i, c in enumerate(self.columns)})
        disp.columns = [html.escape(h) for h in self.headers]
        st = disp.style.hide(axis="index").set_table_attributes('class="gdnlab-formatted"')
        st = st.set_table_styles([
            {"selector": "", "props": "border-collapse:collapse;font-size:12.5px;margin:2px 0 6px 0"},
            {"selector": "th", "props": "text-align:right;vertical-align:bottom;white-space:normal;"
                                        "max-width:9em;padding:3px 8px;border-bottom:1px solid #bbb"},
            {"selector": "td", "props": "padding:3px 8px;vertical-align:top;border-bottom:1px solid #eee"},
            {"selector": "tbody tr:nth-child(even)", "props": "background:#f7f7f7"}], overwrite=True)
        for i, c in enumerate(self.columns):
            st = st.set_properties(subset=[disp.columns[i]], **c.css)
        left = {disp.columns[i]: [{"selector": "th", "props": "text-align:left"}]
                for i, c in enumerate(self.columns) if not c.numeric}
        if left:
            st = st.set_table_styles(left, overwrite=False)
        cap = "".join(f'<div class="gdnlab-caption" style="font:12px sans-serif;color:#555;margin:2px 0">'
                      f"{html.escape(t)}</div>" for t in self.caption)
        notes = "".join(f'<div class="gdnlab-note" style="font:12px sans-serif;color:#666;margin:2px 0">'
                        f"{html.escape(t)}</div>" for t in self.notes)
        return cap + st.to_html() + notes


def _html_cell(text: str, code: bool) -> str:
    """Escaped cell text; engine flags in ``<code>``, each flag and value kept on one line (lines break
    between them, never inside ``--speculative-num-steps``), the text copied as it is."""
    if code and text != MISSING:
        words = " ".join(f'<span style="white-space:nowrap">{html.escape(w)}</span>' for w in text.split(" "))
        return f'<code style="white-space:normal;font-size:11.5px">{words}</code>'
    return html.escape(text)


def _as_notes(cols: list[_Col]) -> list[str]:
    """Long text (not engine flags) that repeats a few values down a column (citations, sources) becomes
    numbered notes under the table, the cells ``[1]``, ``[2]``: each text is printed once. Returns the notes."""
    notes: list[str] = []
    for c in cols:
        distinct = list(dict.fromkeys(x for x in c.cells if x != MISSING))
        if c.numeric or c.code or c.width <= _NOTE_LEN or not 0 < len(distinct) < min(len(c.cells), 7):
            continue
        start = len(notes)
        ref = {x: f"[{start + i + 1}]" for i, x in enumerate(distinct)}
        notes += [f"{ref[x]} {c.header}: {x}" for x in distinct]
        c.cells = [ref.get(x, x) for x in c.cells]
    return notes


def _label(column: Any) -> str:
    """A column label as text: a tuple of a MultiIndex joined (``("decode", 16.0)`` -> ``decode 16``)."""
    if isinstance(column, tuple):
        parts = [_label(p) for p in column if not _missing(p) and str(p) != ""]
        return " ".join(parts)
    if isinstance(column, float) and column.is_integer():
        return str(int(column))
    return str(column)


def format_table(df, columns: Sequence[str] | None = None, *, max_columns: int = 14,
                 headers: dict[str, str] | None = None) -> TableView:
    """The :class:`TableView` of DataFrame ``df``: see the module docstring. ``columns``: the columns
    to show, in order (names ``df`` lacks are skipped; none present: the default choice);
    ``headers``: header text for some columns, replacing the derived one."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"format_table needs a pandas DataFrame, got {type(df).__name__}")
    d = df
    named = any(n is not None for n in d.index.names)
    if not isinstance(d.index, pd.RangeIndex) and (named or not pd.api.types.is_integer_dtype(d.index)):
        d = d.reset_index() if named else d.reset_index(names=[""] * d.index.nlevels)   # labels, not positions
    d = d.set_axis([_label(c) for c in d.columns], axis=1)
    d = d.loc[:, ~d.columns.duplicated()]
    shown, const, rest = _choose(d, columns, max_columns)
    cols = [_column(d, c) for c in shown]
    for c in cols:
        if headers and c.name in headers:
            c.header = headers[c.name]
    notes = _as_notes(cols)
    caption = []
    if const:
        folded = [_column(d, c) for c in const]
        caption.append("every row: " + " · ".join(f"{c.header} {c.cells[0]}" for c in folded))
    if len(d) > 30:
        notes.insert(0, f"{len(d):,} rows")
    if rest:
        notes.append(f"also in the data ({len(rest)} more columns): " + ", ".join(rest))
    prov = d.attrs.get("provenance") if isinstance(getattr(d, "attrs", None), dict) else None
    if isinstance(prov, str) and prov.strip():
        notes.append(f"provenance: {prov}")
    return TableView(cols, caption, notes)
