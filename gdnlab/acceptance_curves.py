"""Acceptance as a curve: accept length as a function of T, from reported tables, a user's file or
an engine's own logs and metrics.

A speculative step verifies T tokens (the bonus token and T - 1 drafts, gdnlab's ``draft_tokens``)
and keeps ``accepted`` of them (1..T); the **accept length** ``a(T)`` is its mean. Acceptance falls
with draft position, so ``a(T)`` is concave, and one number stretched by a constant-rate chain
(:class:`gdnlab.acceptance.ChainAcceptance` with one rate) misprices other T. An
:class:`AcceptanceCurve` holds measured points ``{T: a(T)}`` and is itself an acceptance model:
``P(the first j drafts are all accepted) = a(j + 1) - a(j)`` gives the per-position chain, so
``pmf(T)`` and ``mean(T)`` reproduce every point exactly and interpolate between them; beyond the
last point the last conditional probability repeats (``extrapolated(T)`` says so).

Sources (each curve keeps its ``source`` and ``status``: ``reported``, ``measured`` or ``synthetic``):

* :func:`reported_curves` — curves shipped with gdnlab (``gdnlab/data/acceptance_curves.csv``,
  status ``reported``, each row citing its source);
* :func:`read_curve_file` — a user's CSV/parquet with ``draft_tokens, accept_len`` (optionally
  ``context_bucket``);
* :func:`parse_vllm_log` — vLLM's ``SpecDecoding metrics: ... Per-position acceptance rate: ...``
  log lines (``vllm/v1/spec_decode/metrics.py``: per-position rates are unconditional, ``rate[i]`` =
  P(drafts 0..i accepted)), and :func:`parse_vllm_prometheus` — its ``/metrics`` counters
  ``vllm:spec_decode_num_drafts_total`` and ``vllm:spec_decode_num_accepted_tokens_per_pos_total``;
* :func:`parse_sglang_log` — SGLang's ``Decode batch ... accept len: X`` lines
  (``python/sglang/srt/managers/scheduler_components/metrics_reporter.py`` in 0.5.23): one mean per
  logging interval at the server's T, optionally bucketed by context length (``#token`` /
  ``#running-req``).

Units: T and accept lengths in tokens per verify step; context lengths in tokens.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .acceptance import AcceptanceModel, chain_pmf
from .errors import DataError, InputError

__all__ = ["AcceptanceCurve", "reported_curves", "read_curve_file", "curve_by_name", "parse_vllm_log",
           "parse_vllm_prometheus", "parse_sglang_log", "curves_table", "CURVE_STATUSES"]

CURVE_STATUSES = ("reported", "measured", "synthetic")


def _gap_rate(reach: float, n: int, need: float) -> float:
    """The constant conditional rate ``r`` in [0, 1] with ``reach (r + r^2 + ... + r^n) = need``
    (clamped to [0, 1] when no rate reaches ``need``)."""
    if reach <= 0 or need <= 0:
        return 0.0
    if need >= reach * n:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if reach * sum(mid ** k for k in range(1, n + 1)) < need:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class AcceptanceCurve(AcceptanceModel):
    """Accept length per T from measured points, as an acceptance model.

    Attributes:
        points: ``{T: accept length}`` for the measured T (T >= 2; ``a(1) = 1`` is implied).
        name: a short label (``"inferencex-thinking-on"``).
        source: where the points were read (a URL, a file, a log).
        status: ``reported``, ``measured`` or ``synthetic``.
        adjusted: True when the points are not a chain (an accept length fell, or grew by more than
            the previous gain allows): the gap's conditional rate was clamped to [0, 1] and the model
            differs from those points by at most :attr:`max_adjustment` (tokens per step).

    Between two points (and from ``a(1) = 1`` to the first) the missing positions share one
    conditional rate, chosen to hit the next point: a single point is the constant-rate chain.
    """

    points: Mapping[int, float]
    name: str = "curve"
    source: str = ""
    status: str = "measured"
    adjusted: bool = field(default=False, init=False)
    max_adjustment: float = field(default=0.0, init=False)
    _tail: tuple[float, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in CURVE_STATUSES:
            raise InputError(f"acceptance curve {self.name!r}: status must be one of {', '.join(CURVE_STATUSES)}, "
                             f"got {self.status!r}")
        pts = self._checked_points(self.points)
        reach = [1.0]                        # reach[j] = P(the first j drafts are all accepted); reach[0]: bonus
        dev = 0.0
        for T in sorted(pts):                # a(T) = sum_{j < T} reach[j]; a gap gets one conditional rate
            have = float(sum(reach))
            r = _gap_rate(reach[-1], T - len(reach), pts[T] - have)
            for _ in range(T - len(reach)):
                reach.append(reach[-1] * r)
            dev = max(dev, abs(float(sum(reach)) - pts[T]))
        object.__setattr__(self, "points", dict(sorted(pts.items())))
        object.__setattr__(self, "adjusted", bool(dev > 1e-6))
        object.__setattr__(self, "max_adjustment", float(dev))
        object.__setattr__(self, "_tail", tuple(reach[1:]))

    def _checked_points(self, points: Mapping[int, float]) -> dict[int, float]:
        if not isinstance(points, Mapping) or not points:
            raise InputError(f"acceptance curve {self.name!r} has no points (draft_tokens -> accept_len)")
        out: dict[int, float] = {}
        for t, a in points.items():
            if isinstance(t, bool) or int(t) != t or int(t) < 2:
                raise InputError(f"acceptance curve {self.name!r}: T must be an integer >= 2 (tokens verified per "
                                 f"step, the bonus token included), got {t!r}")
            a = float(a)
            if not math.isfinite(a) or not 1.0 <= a <= int(t):
                raise InputError(f"acceptance curve {self.name!r}: accept length {a!r} at T={int(t)} is outside "
                                 f"[1, {int(t)}] (it counts the tokens kept per step, the bonus token included)")
            out[int(t)] = a
        return out

    @property
    def max_measured(self) -> int:
        """The largest T with a point."""
        return max(self.points)

    def extrapolated(self, T: int) -> bool:
        """Whether ``T`` lies beyond the measured points (its value repeats the last conditional rate)."""
        return int(T) > self.max_measured

    def conditional(self) -> tuple[float, ...]:
        """Per-position conditional acceptance ``p_j`` = P(draft j accepted | drafts 1..j-1 accepted),
        j = 1..max_measured - 1 (the chain the points imply)."""
        reach = np.concatenate([[1.0], np.asarray(self._tail)])
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(reach[:-1] > 0, reach[1:] / reach[:-1], 0.0)
        return tuple(float(min(max(v, 0.0), 1.0)) for v in p)

    def pmf(self, T: int) -> np.ndarray:
        return chain_pmf(self.conditional() or (0.0,), T)


# ---------------------------------------------------------------------------------------------- tables


def curves_table(curves: Iterable[AcceptanceCurve], draft_tokens: Iterable[int] = range(2, 10)):
    """One row per (curve, T): ``curve, draft_tokens, accept_len, point`` (the measured value, NaN
    where none), ``extrapolated``, ``status``, ``source``."""
    import pandas as pd

    rows = []
    for c in curves:
        for T in draft_tokens:
            rows.append({"curve": c.name, "draft_tokens": int(T), "accept_len": c.mean(int(T)),
                         "point": c.points.get(int(T), float("nan")), "extrapolated": c.extrapolated(int(T)),
                         "status": c.status, "source": c.source})
    return pd.DataFrame(rows)


def _curves_from_frame(df, what: str, default_status: str, default_source: str) -> dict[str, AcceptanceCurve]:
    need = {"draft_tokens", "accept_len"}
    if not need <= set(df.columns):
        raise DataError(f"{what} needs columns draft_tokens, accept_len; has {list(df.columns)}")
    df = df.copy()
    if "curve" not in df.columns and "curve_id" in df.columns:     # the anchors' table names the column curve_id
        df = df.rename(columns={"curve_id": "curve"})
    df["curve"] = df["curve"].astype(str) if "curve" in df.columns else "curve"
    if "context_bucket" in df.columns:
        df["curve"] = df["curve"] + df["context_bucket"].map(lambda b: "" if b != b else f"@ctx{b}")
    out = {}
    for name, g in df.groupby("curve", sort=False):
        dup = g["draft_tokens"][g["draft_tokens"].duplicated()]
        if len(dup):
            raise DataError(f"{what}: curve {name!r} gives T={int(dup.iloc[0])} twice; give one accept length per T")
        status = str(g["status"].iloc[0]) if "status" in g.columns else default_status
        source = str(g["source"].iloc[0]) if "source" in g.columns else default_source
        try:
            out[str(name)] = AcceptanceCurve({int(t): float(a) for t, a in zip(g["draft_tokens"], g["accept_len"])},
                                             name=str(name), source=source, status=status)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what}: curve {name!r}: {exc}") from None
    return out


def reported_curves() -> dict[str, AcceptanceCurve]:
    """The acceptance curves shipped with gdnlab (``gdnlab/data/acceptance_curves.csv``), by name;
    status ``reported``, each with its source. Points are in gdnlab's T (tokens verified per step);
    a table in draft positions (``convention == "drafts"``) is shifted by the bonus token."""
    import pandas as pd

    with resources.files("gdnlab").joinpath("data/acceptance_curves.csv").open() as fh:
        df = pd.read_csv(fh, comment="#")
    if "convention" in df.columns:
        drafts = df["convention"].astype(str).str.lower().eq("drafts")
        df.loc[drafts, "draft_tokens"] = df.loc[drafts, "draft_tokens"] + 1
    return _curves_from_frame(df, "gdnlab/data/acceptance_curves.csv", "reported", "gdnlab/data/acceptance_curves.csv")


def read_curve_file(path: str | Path) -> dict[str, AcceptanceCurve]:
    """A user's curve(s) from CSV or parquet: columns ``draft_tokens`` (T, tokens verified per step,
    the bonus token included) and ``accept_len``; optional ``curve`` (several curves), ``context_bucket``
    (one curve per bucket), ``status`` (default ``measured``) and ``source``. A T given twice in one
    curve is refused (never averaged)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"acceptance curve file {p} is not a file")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable table is one DataError naming the file
        raise DataError(f"cannot read acceptance curve file {p}: {type(exc).__name__}: {exc}") from None
    return _curves_from_frame(df, f"acceptance curve file {p}", "measured", str(p))


def curve_by_name(spec: str | Path) -> AcceptanceCurve:
    """A reported curve by name (:func:`reported_curves`) or the one curve of a file
    (:func:`read_curve_file`); ``InputError`` naming the known curves otherwise."""
    known = reported_curves()
    if str(spec) in known:
        return known[str(spec)]
    p = Path(spec)
    if p.suffix in (".csv", ".parquet") or p.exists():
        got = read_curve_file(p)
        if len(got) != 1:
            raise InputError(f"acceptance curve file {p} holds {len(got)} curves ({', '.join(got)}); give a file "
                             "with one curve")
        return next(iter(got.values()))
    raise InputError(f"unknown acceptance curve {str(spec)!r}; known: {', '.join(known)} (or a CSV/parquet file)")


# ---------------------------------------------------------------------------------------------- engine logs

_VLLM_LINE = re.compile(r"SpecDecoding metrics:.*?Accepted: (\d+) tokens, Drafted: (\d+) tokens, "
                        r"Per-position acceptance rate: ([0-9., ]+?), Avg Draft")
_VLLM_PROM = re.compile(r"^vllm:spec_decode_(num_drafts|num_accepted_tokens_per_pos)(?:_total)?"
                        r"(?:\{([^}]*)\})?\s+([0-9.eE+-]+)\s*$")


_LOG_MARKERS = ("SpecDecoding metrics", "vllm:spec_decode", "accept len:")


def _text(log: str | Path) -> tuple[str, str]:
    """``(text, where)``: a :class:`~pathlib.Path` or a path string is read; a string that holds log
    lines (a newline or an engine's marker) is the text itself."""
    if isinstance(log, Path) or ("\n" not in log and not any(m in log for m in _LOG_MARKERS)):
        p = Path(log)
        if not p.is_file():
            raise FileNotFoundError(f"log file {p} is not a file")
        return p.read_text(errors="replace"), str(p)
    return log, "log text"


def parse_vllm_log(source: str | Path, *, name: str = "vllm-log") -> AcceptanceCurve:
    """A curve from vLLM's ``SpecDecoding metrics`` log lines (a file or the text): each line's
    per-position rates weighted by its draft count (``Drafted / k`` steps of k drafts); ``a(T) = 1 +
    sum_{i < T-1} rate_i`` for T = 2..k+1."""
    text, where = _text(source)
    sums, steps, k = None, 0.0, None
    for m in _VLLM_LINE.finditer(text):
        rates = np.array([float(x) for x in m.group(3).split(",") if x.strip()])
        drafted = float(m.group(2))
        if k is None:
            k, sums = len(rates), np.zeros(len(rates))
        if len(rates) != k or not len(rates):
            raise DataError(f"{where}: per-position rates change length ({k} then {len(rates)}): several "
                            "num_speculative_tokens in one log; split it")
        n = drafted / k
        sums, steps = sums + rates * n, steps + n
    if k is None or steps <= 0:
        raise DataError(f"{where}: no 'SpecDecoding metrics: ... Per-position acceptance rate' line with drafts")
    rates = sums / steps
    pts = {t: 1.0 + float(rates[: t - 1].sum()) for t in range(2, k + 2)}
    return AcceptanceCurve(pts, name=name, source=where, status="measured")


def parse_vllm_prometheus(source: str | Path, *, name: str = "vllm-metrics") -> AcceptanceCurve:
    """A curve from vLLM's Prometheus text (``/metrics``): ``num_accepted_tokens_per_pos{position=i}``
    over ``num_drafts`` is the unconditional per-position rate; summed over labels other than position."""
    text, where = _text(source)
    drafts, per_pos = 0.0, {}
    for line in text.splitlines():
        m = _VLLM_PROM.match(line.strip())
        if not m:
            continue
        kind, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if kind == "num_drafts":
            drafts += value
        else:
            pos = re.search(r'position="(\d+)"', labels)
            if pos:
                per_pos[int(pos.group(1))] = per_pos.get(int(pos.group(1)), 0.0) + value
    if drafts <= 0 or not per_pos:
        raise DataError(f"{where}: no vllm:spec_decode_num_drafts and ..._per_pos counters with drafts > 0")
    k = max(per_pos) + 1
    rates = np.array([per_pos.get(i, 0.0) / drafts for i in range(k)])
    return AcceptanceCurve({t: 1.0 + float(rates[: t - 1].sum()) for t in range(2, k + 2)},
                           name=name, source=where, status="measured")


_SGL_LINE = re.compile(r"Decode batch.*?#running-req: (\d+)(.*?)accept len: ([0-9.]+)")
_SGL_TOKENS = re.compile(r"#token: (\d+)")


def parse_sglang_log(source: str | Path, draft_tokens: int, *, name: str = "sglang-log",
                     context_buckets: Iterable[int] | None = None) -> dict[str, AcceptanceCurve]:
    """Accept length at the server's T (``--speculative-num-draft-tokens`` = ``draft_tokens``) from
    SGLang's ``Decode batch ... accept len: X`` lines: the mean over lines (one per logging interval).
    ``context_buckets`` (upper edges in tokens, e.g. ``(4096, 32768)``): one curve per bucket of the
    mean context per request (``#token / #running-req``), named ``<name>@ctx<=edge`` (and ``>last``).
    SGLang logs one T, so each curve has one point."""
    T = int(draft_tokens)
    if T < 2:
        raise InputError(f"draft_tokens={draft_tokens}: SGLang's accept length is logged for T >= 2")
    text, where = _text(source)
    edges = sorted(int(e) for e in context_buckets) if context_buckets else []
    groups: dict[str, list[float]] = {}
    for m in _SGL_LINE.finditer(text):
        running, rest, acc = int(m.group(1)), m.group(2), float(m.group(3))
        key = name
        if edges:
            tok = _SGL_TOKENS.search(rest)
            ctx = int(tok.group(1)) / max(running, 1) if tok else float("nan")
            if ctx != ctx:
                continue
            key = next((f"{name}@ctx<={e}" for e in edges if ctx <= e), f"{name}@ctx>{edges[-1]}")
        groups.setdefault(key, []).append(acc)
    if not groups:
        raise DataError(f"{where}: no 'Decode batch ... accept len:' line (is speculative decoding on?)")
    return {k: AcceptanceCurve({T: float(np.mean(v))}, name=k, source=f"{where} ({len(v)} log lines)",
                               status="measured") for k, v in groups.items()}
