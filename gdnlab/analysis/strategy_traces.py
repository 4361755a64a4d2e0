"""Per-strategy decode-loop traces: their file names, verify / commit / fold breakdown and GPU busy
share (pandas only; the traces come from :func:`gdnlab.traces.load`, one strategy each, split by
:mod:`gdnlab.analysis.phases`). :func:`gdnlab.analysis.ledger.busy_targets` judges the busy shares.

File names, as the GPU session writes them (``scripts/gpu/session.sh``):
``<backend>_c<B>_osl<OSL>_t<T>_<strategy>[_fp32].sqlite``, where ``backend`` and ``strategy`` are
registered names (:mod:`gdnlab.backends`, :mod:`gdnlab.strategies.registry`) and ``_fp32`` marks a
float32 state (no suffix: the session's bfloat16). :func:`trace_paths` names gdnlab's traces,
:func:`parse_trace_name` reads a name, :func:`find_traces` lists a folder's, and
:func:`engine_trace_paths` gives an engine backend's traces with its twin's
(:func:`gdnlab.analysis.engine_gap.engine_trace_table` compares them).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from ..backends import engine_names, twin
from ..backends import names as backend_names
from ..strategies.registry import BASELINE, STRATEGY_NAMES, strategy_order

__all__ = ["trace_paths", "parse_trace_name", "find_traces", "engine_trace_paths", "STATE_SUFFIXES",
           "DEFAULT_TRACE_STATE", "trace_phases", "trace_busy", "phase_summary"]

#: file-name suffix -> state dtype of a per-strategy trace
STATE_SUFFIXES = {"_fp32": "float32"}
#: state dtype of a trace whose name has no suffix (the GPU session captures with a bfloat16 state)
DEFAULT_TRACE_STATE = "bfloat16"


def trace_paths(folder: str, backends: Sequence[str], strategies: Sequence[str] = STRATEGY_NAMES, *,
                batch: int = 64, osl: int = 512, draft_tokens: int = 4) -> dict[tuple[str, str], str]:
    """``{(backend, strategy): path}`` of the per-strategy decode-loop traces in ``folder``, named
    as the GPU session writes them: ``<backend>_c<B>_osl<OSL>_t<T>_<strategy>.sqlite``."""
    return {(be, s): str(PurePosixPath(str(folder)) / f"{be}_c{batch}_osl{osl}_t{draft_tokens}_{s}.sqlite")
            for be in backends for s in strategies}


def _alternation(names: Sequence[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def _name_pattern() -> re.Pattern:
    suffixes = _alternation(list(STATE_SUFFIXES))
    return re.compile(rf"(?P<backend>{_alternation(backend_names())})_c(?P<batch>\d+)_osl(?P<osl>\d+)"
                      rf"_t(?P<draft_tokens>\d+)_(?P<strategy>{_alternation(STRATEGY_NAMES)})"
                      rf"(?P<suffix>{suffixes})?\.sqlite")


def parse_trace_name(name: str) -> dict[str, Any] | None:
    """``{backend, batch, osl, draft_tokens, strategy, state_dtype}`` of a per-strategy trace's file
    name (a path's last part; module docstring), ``None`` for any other name (an unregistered backend
    or strategy, a decode-only capture, another suffix)."""
    m = _name_pattern().fullmatch(PurePosixPath(str(name).replace("\\", "/")).name)
    if m is None:
        return None
    return {"backend": m["backend"], "batch": int(m["batch"]), "osl": int(m["osl"]),
            "draft_tokens": int(m["draft_tokens"]), "strategy": m["strategy"],
            "state_dtype": STATE_SUFFIXES[m["suffix"]] if m["suffix"] else DEFAULT_TRACE_STATE}


def find_traces(folder: str | Path, backends: Sequence[str] | None = None,
                strategies: Sequence[str] = STRATEGY_NAMES, *, batch: int = 64, osl: int = 512,
                draft_tokens: int = 4) -> dict[tuple[str, str, str], str]:
    """``{(backend, strategy, state_dtype): path}`` of the per-strategy traces in ``folder`` (those
    :func:`parse_trace_name` reads, at B, OSL and T, of ``backends`` (default: every backend) and
    ``strategies``), ordered by backend and strategy as given, then state dtype; empty when ``folder``
    is not a folder."""
    base = Path(folder)
    if not base.is_dir():
        return {}
    want = list(backends) if backends is not None else list(backend_names())
    found = {}
    for p in sorted(base.iterdir()):
        f = parse_trace_name(p.name)
        if f and p.is_file() and f["backend"] in want and f["strategy"] in strategies \
                and (f["batch"], f["osl"], f["draft_tokens"]) == (batch, osl, draft_tokens):
            found[(f["backend"], f["strategy"], f["state_dtype"])] = str(PurePosixPath(str(folder)) / p.name)
    order = {n: i for i, n in enumerate([*want, *strategies])}
    return dict(sorted(found.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]], kv[0][2])))


def engine_trace_paths(folder: str | Path, engines: Sequence[str] | None = None,
                       strategies: Sequence[str] = (BASELINE,), *, batch: int = 64, osl: int = 512,
                       draft_tokens: int = 4) -> dict[tuple[str, str, str], str]:
    """``{(backend, strategy, state_dtype): path}`` of the per-strategy traces of the engine backends
    ``engines`` (default: every backend with an engine) in ``folder``, at every state dtype found, each
    engine's followed by its twin's traces of the same strategies (:func:`gdnlab.backends.twin`) where
    the engine has one. An engine without a trace of a strategy gets the path it would have at the
    default state dtype (it does not exist: :func:`gdnlab.report.load` says it is missing) and no twin."""
    engines = list(engines) if engines is not None else list(engine_names())
    twins = [t for t in (twin(e) for e in engines) if t]
    found = find_traces(folder, [*engines, *twins], strategies, batch=batch, osl=osl, draft_tokens=draft_tokens)
    out: dict[tuple[str, str, str], str] = {}
    for e in engines:
        for s in strategies:
            mine = {k: v for k, v in found.items() if k[:2] == (e, s)}
            if not mine:
                out[(e, s, DEFAULT_TRACE_STATE)] = trace_paths(folder, [e], [s], batch=batch, osl=osl,
                                                               draft_tokens=draft_tokens)[(e, s)]
                continue
            out.update(mine)
            out.update({k: v for k, v in found.items() if twin(e) and k[:2] == (twin(e), s)})
    return out


def _kernels_of(obj: Any) -> pd.DataFrame | None:
    k = getattr(obj, "kernels", obj)
    return k if isinstance(k, pd.DataFrame) else None


def _launch(k: pd.DataFrame) -> str | None:
    """``"CUDA graph"`` when most kernels of a trace were graph nodes, ``"eager"`` when none or few
    were, ``None`` when the kernel table cannot tell (no ``graph_node_id`` / ``launch_api``)."""
    if "graph_node_id" in k.columns and len(k):
        share = float(k["graph_node_id"].notna().mean())
    elif "launch_api" in k.columns and len(k):
        share = float(k["launch_api"].astype("string").str.contains("Graph", case=False).fillna(False).mean())
    else:
        return None
    return "CUDA graph" if share >= 0.5 else "eager"


def _trace_fields(obj: Any) -> dict:
    gpu = getattr(obj, "gpu", None) if not isinstance(obj, pd.DataFrame) else None
    md = getattr(obj, "metadata", None) if not isinstance(obj, pd.DataFrame) else None
    path = getattr(obj, "path", None)
    return {"status": getattr(obj, "status", None) if isinstance(getattr(obj, "status", None), str) else None,
            "gpu": (gpu or {}).get("name") if isinstance(gpu, dict) else None,
            "sm": (gpu or {}).get("sm") if isinstance(gpu, dict) else None,
            "nsys": (md or {}).get("nsys_version") if isinstance(md, dict) else None,
            "file": getattr(path, "name", None)}


def _traces(traces: Mapping[Any, Any]) -> list[tuple[str, str, Any, pd.DataFrame]]:
    """``(backend, strategy, object, kernels)`` of the entries that have a kernel table (a missing
    trace, e.g. :class:`gdnlab.report.Missing`, is left out)."""
    out = []
    for key, obj in traces.items():
        k = _kernels_of(obj)
        if k is None:
            continue
        be, s = key[:2] if isinstance(key, tuple) else ("", str(key))
        out.append((str(be), str(s), obj, k))
    return out


def trace_phases(traces: Mapping[Any, Any]) -> pd.DataFrame:
    """:func:`gdnlab.analysis.phases.phase_breakdown` of each trace (``{(backend, strategy): Trace or kernel
    table}``), stacked: ``backend``, ``strategy``, ``phase``, ``kernels``, ``time_us``,
    ``time_per_step_us``, ``bookkeeping_us``, ``share_pct``, ``steps`` and the trace's
    ``status``, ``gpu``, ``sm``, ``nsys``, ``file``. Entries without a kernel table are left out."""
    from .phases import phase_breakdown, step_busy

    frames = []
    for be, s, obj, k in _traces(traces):
        b = phase_breakdown(k, s, backend=be or None)
        frames.append(b.assign(backend=be, strategy=s, steps=len(step_busy(k)), launch=_launch(k),
                               **_trace_fields(obj)))
    cols = ["backend", "strategy", "phase", "kernels", "time_us", "time_per_step_us", "bookkeeping_us", "share_pct",
            "steps", "launch", "status", "gpu", "sm", "nsys", "file"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def trace_busy(traces: Mapping[Any, Any]) -> pd.DataFrame:
    """GPU busy share of each trace's steps (:func:`gdnlab.analysis.phases.step_busy`): ``backend``,
    ``strategy``, ``steps`` (verify markers), ``complete_steps`` (those a next marker closes),
    ``busy_pct_median`` / ``busy_pct_min`` (kernel time over verify marker to the next, complete
    steps), ``span_busy_pct_median`` (kernel time over the step's own span on the device),
    ``window_us_median``, ``span_us_median``, ``kernel_us_median`` (µs), ``launch`` (``"CUDA
    graph"`` / ``"eager"``, from the kernels' graph node ids) and the trace's provenance fields."""
    from .phases import step_busy

    def med(b: pd.DataFrame, col: str, how: str = "median") -> float:
        v = pd.to_numeric(b[col], errors="coerce").dropna() if len(b) else pd.Series(dtype=float)
        return float(getattr(v, how)()) if len(v) else math.nan

    rows = []
    for be, s, obj, k in _traces(traces):
        b = step_busy(k)
        rows.append({"backend": be, "strategy": s, "steps": len(b),
                     "complete_steps": int(b["complete"].sum()) if len(b) else 0,
                     "busy_pct_median": med(b, "busy_pct"), "busy_pct_min": med(b, "busy_pct", "min"),
                     "span_busy_pct_median": med(b, "span_busy_pct"), "window_us_median": med(b, "window_us"),
                     "span_us_median": med(b, "span_us"), "kernel_us_median": med(b, "kernel_us"),
                     "launch": _launch(k), **_trace_fields(obj)})
    cols = ["backend", "strategy", "steps", "complete_steps", "busy_pct_median", "busy_pct_min",
            "span_busy_pct_median", "window_us_median", "span_us_median", "kernel_us_median", "launch", "status",
            "gpu", "sm", "nsys", "file"]
    return pd.DataFrame(rows, columns=cols)


def phase_summary(phases: pd.DataFrame) -> pd.DataFrame:
    """:func:`trace_phases` one row per trace: µs per step of each phase (``fold_us``,
    ``verify_us``, ``commit_us``, ``marker_us``, ``other_us``, where present), ``kernel_us`` (their
    sum), the verify / commit / fold shares of it (``*_pct``), ``bookkeeping_us`` (per step: the small
    torch kernels run per layer around the strategy's own kernels — gdnlab's index bookkeeping on
    ``[B]`` tensors such as cursor gathers, and torch ops inside a library's Python wrapper; an engine
    computes such metadata once per step, not per layer), ``bookkeeping_pct`` (of ``kernel_us``),
    ``strategy_kernel_us`` (``kernel_us`` without bookkeeping and markers: the strategy's own
    kernels), ``strategy_kernel_vs_full_cache``
    (that over the same backend's ``full_cache`` trace), ``steps``, ``launch``, ``status`` and ``file``."""
    cols = ["backend", "strategy"]
    if phases.empty:
        return pd.DataFrame(columns=[*cols, "kernel_us", "bookkeeping_us", "bookkeeping_pct", "strategy_kernel_us",
                                     "strategy_kernel_vs_full_cache", "steps", "status", "file"])
    w = phases.pivot_table(index=cols, columns="phase", values="time_per_step_us", aggfunc="sum", sort=False)
    order = [p for p in ("fold", "verify", "commit", "marker", "other") if p in w.columns]
    w = w[order + [c for c in w.columns if c not in order]]
    w.columns = [f"{c}_us" for c in w.columns]
    w["kernel_us"] = w.sum(axis=1)
    for p in ("fold", "verify", "commit"):
        if f"{p}_us" in w.columns:
            w[f"{p}_pct"] = 100.0 * w[f"{p}_us"] / w["kernel_us"]
    per_step = phases["time_per_step_us"] / phases["time_us"].where(phases["time_us"] > 0)
    bk = (phases["bookkeeping_us"] * per_step.fillna(0.0)).groupby([phases[c] for c in cols], sort=False).sum()
    w["bookkeeping_us"] = bk.reindex(w.index).fillna(0.0)
    w["bookkeeping_pct"] = 100.0 * w["bookkeeping_us"] / w["kernel_us"]
    w["strategy_kernel_us"] = w["kernel_us"] - w["bookkeeping_us"] - w.get("marker_us", 0.0).fillna(0.0)
    ref = w["strategy_kernel_us"].xs(BASELINE, level="strategy") if BASELINE in set(
        w.index.get_level_values("strategy")) else pd.Series(dtype=float)
    w["strategy_kernel_vs_full_cache"] = [v / ref[be] if be in ref.index and ref[be] > 0 else math.nan
                                          for (be, _), v in w["strategy_kernel_us"].items()]
    info = phases.drop_duplicates(cols).set_index(cols)[[c for c in ("steps", "launch", "status", "file")
                                                          if c in phases.columns]]
    out = w.join(info).reset_index()
    out["_r"] = out["strategy"].map(strategy_order)
    return out.sort_values(["backend", "_r"]).drop(columns="_r").reset_index(drop=True)
