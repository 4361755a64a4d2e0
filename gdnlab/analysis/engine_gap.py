"""The engines' own code paths beside gdnlab's: each engine row's time over its twin's (pandas).

An *engine backend* runs a serving engine's own GDN code (:attr:`gdnlab.backends.Backend.engine`:
``sglang_triton``, ``vllm_cuda``, ...); its *twin* is the gdnlab backend whose kernels play the same
role (:func:`gdnlab.backends.twin`: ``sglang_flashinfer`` -> ``flashinfer``, ``vllm_triton`` ->
``triton``). Sweep rows of both, from one or several files (:func:`load_engine_sweeps`), are paired
here, one output row per engine row:

* :func:`engine_gap`: step rows (``measure == "step"``), paired at the same ``gpu``, ``strategy``,
  ``state_dtype``, ``draft_tokens`` T and ``batch`` B (and the same ``preset``, ``tp``,
  ``act_dtype``, ``timing``, ``l2_flush`` where the rows have them). Among the twin's rows there the
  one nearest in ``accept_len`` is taken (an ``ok`` row before one that did not run; the last one
  stored on a tie): within :data:`ACCEPT_TOL` tokens of the engine row's it is ``measured``, else the
  row is :data:`ACCEPT_DIFFERS` and ``accept_len_gdnlab`` and ``note`` say at what it was measured.
  ``engine_step_us`` / ``gdnlab_step_us`` are the rows' ``step_us`` (µs per step); ``ratio`` = engine /
  gdnlab (> 1: the engine's path is slower), ``gap_pct`` = 100 (ratio - 1);
* :func:`engine_call_gap`: call rows (``measure == "call"``: one decode or verify kernel call), paired
  at the same ``gpu``, ``mode``, ``draft_tokens``, ``batch``, ``state_dtype`` and ``buffer_scope`` (and
  the optional keys above); ``engine_time_us`` / ``gdnlab_time_us`` are the rows' ``time_us``;
* :func:`gap_summary`: per GPU, engine backend, strategy (or call mode and buffer scope), state
  dtype and T, the median ratio and its range over B (compared rows only);
* :func:`engine_trace_table`: the decode-loop traces of engine backends beside their twins'
  (:mod:`gdnlab.analysis.strategy_traces`: kernel time per step, bookkeeping, GPU busy share).

Rows of different GPUs are never compared. ``status`` of an output row is :data:`MEASURED` or why the
two cannot be compared (:data:`STATUSES`); ``note`` explains. Both rows' ``correct`` flags are kept
(``correct_engine``, ``correct_gdnlab``), as are the engine row's provenance columns (GPU, SM, versions,
commit; the twin row's own ``status``, commit, gdnlab version and timing as ``twin_*``). Rows of backends the registry
does not know are neither engine nor twin rows. :func:`load_engine_sweeps` is the one function here
that reads files (through :func:`gdnlab.results.load_sweep`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .. import backends
from ..errors import InputError
from ..provenance import IDENTITY_COLUMNS
from ..strategies.registry import strategy_order

__all__ = ["ACCEPT_TOL", "MEASURED", "ACCEPT_DIFFERS", "NO_GDNLAB_ROW", "NOT_COMPARABLE", "ENGINE_NOT_OK",
           "GDNLAB_NOT_OK", "STATUSES", "STEP_REQUIRED", "CALL_REQUIRED", "OPTIONAL_KEYS", "engine_gap",
           "engine_call_gap", "gap_summary", "load_engine_sweeps", "engine_trace_table"]

#: accept lengths (tokens) closer than this are the same condition
ACCEPT_TOL = 0.05
#: ``status``: both rows ran, at the same accept length and timing: ``ratio`` compares them
MEASURED = "measured"
#: the twin ran at the same point but another accept length (``accept_len_gdnlab``, ``note``)
ACCEPT_DIFFERS = "accept length differs"
#: the twin has no row at this GPU, strategy (mode), state dtype, T and B (``note`` says where it has some)
NO_GDNLAB_ROW = "no gdnlab row"
#: both ran, but were timed differently (``timing_method``: a CUDA graph vs eager launches)
NOT_COMPARABLE = "not comparable"
#: the engine row did not run (its ``status`` is in ``note``)
ENGINE_NOT_OK = "engine row not ok"
#: the twin's row did not run (its ``status`` is in ``note``)
GDNLAB_NOT_OK = "gdnlab row not ok"
#: every ``status`` an output row can have
STATUSES = (MEASURED, ACCEPT_DIFFERS, NOT_COMPARABLE, NO_GDNLAB_ROW, ENGINE_NOT_OK, GDNLAB_NOT_OK)

#: columns :func:`engine_gap` needs
STEP_REQUIRED = ("measure", "gpu", "backend", "strategy", "state_dtype", "draft_tokens", "accept_len", "batch",
                 "status", "step_us", "correct")
#: columns :func:`engine_call_gap` needs
CALL_REQUIRED = ("measure", "gpu", "backend", "mode", "buffer_scope", "state_dtype", "draft_tokens", "batch",
                 "status", "time_us", "correct")
#: further columns two rows must agree on where the frame has them (the shape's preset, how it was timed)
OPTIONAL_KEYS = ("preset", "tp", "act_dtype", "timing", "l2_flush")
_STEP_KEYS = ("gpu", "strategy", "state_dtype", "draft_tokens", "batch")
_CALL_KEYS = ("gpu", "mode", "buffer_scope", "state_dtype", "draft_tokens", "batch")
_PROV = tuple(c for c in (*IDENTITY_COLUMNS, "git_dirty", "timing_method", "source") if c != "gpu")
_TWIN_PROV = ("gdnlab", "git_commit", "git_dirty", "timing_method", "source")
_HINT = "load them with gdnlab.analysis.engine_gap.load_engine_sweeps or gdnlab.results.load_sweep"


def _columns(time: str, keys: Sequence[str], accept: bool) -> list[str]:
    head = ["gpu", "engine", "backend", "twin", *[k for k in keys if k != "gpu"]]
    acc = ["accept_len", "accept_len_gdnlab"] if accept else []
    return [*head, *acc, f"engine_{time}", f"gdnlab_{time}", "ratio", "gap_pct", "correct_engine", "correct_gdnlab",
            "status", "note", "twin_status", "engine_version", "twin_version", *_PROV,
            *(f"twin_{c}" for c in _TWIN_PROV)]


#: the columns of :func:`engine_gap`'s table, in order
STEP_COLUMNS = _columns("step_us", _STEP_KEYS, True)
#: the columns of :func:`engine_call_gap`'s table, in order
CALL_COLUMNS = _columns("time_us", _CALL_KEYS, False)


# ------------------------------------------------------------------------------------------ pairing


def _check(df: Any, need: Sequence[str], fn: str) -> bool:
    """``False`` for an empty frame (nothing to compare), ``True`` for one with every column;
    :class:`InputError` otherwise."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{fn} needs a pandas DataFrame of sweep rows, got {type(df).__name__}")
    if df.empty:
        return False
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"{fn}: the sweep rows lack the columns {missing} ({_HINT})")
    return True


def _registered(name: Any, fact: str) -> Any:
    """A registry fact of backend ``name`` (``engine``, ``twin``, ``version_column``), ``None`` when the
    name is not a registered backend."""
    try:
        return getattr(backends.get(str(name)), fact)
    except ValueError:
        return None


def _key(d: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    """One string per row from ``cols`` (numbers as numbers, a missing value as ``<NA>``)."""
    parts = []
    for c in cols:
        v = d[c]
        if c in ("draft_tokens", "batch", "tp"):
            v = pd.to_numeric(v, errors="coerce").astype("Int64")
        parts.append(v.astype("string").fillna("<NA>").str.strip())
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out


def _ok(s: pd.Series) -> pd.Series:
    return (s.astype("string") == "ok").fillna(False).astype(bool)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _best_twin(pairs: pd.DataFrame, accept: bool) -> pd.DataFrame:
    """One candidate per engine row: an ``ok`` twin row first, then the nearest accept length, then the
    last stored."""
    dist = (_num(pairs["accept_len"]) - _num(pairs["_a_twin"])).abs().fillna(math.inf) if accept \
        else pd.Series(0.0, index=pairs.index)
    pairs = pairs.assign(_bad=~_ok(pairs["_st_twin"]), _dist=dist, _late=-pairs["_pos_twin"])
    pairs = pairs.sort_values(["_id", "_bad", "_dist", "_late"], kind="stable")
    return pairs.drop_duplicates("_id", keep="first").drop(columns=["_bad", "_dist", "_late"]).set_index("_id")


def _elsewhere(eng: pd.DataFrame, twins: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Per engine row, the GPUs (other than its own) where its twin has a row at the same point."""
    rest = [k for k in keys if k != "gpu"]
    if twins.empty:
        return pd.Series([[] for _ in range(len(eng))], index=eng.index, dtype=object)
    have = twins.assign(_k=twins["backend"].astype("string") + "|" + _key(twins, rest))
    gpus = have.groupby("_k")["gpu"].agg(lambda g: sorted({str(x) for x in g.dropna()}))
    k = eng["_twin"].astype("string") + "|" + _key(eng, rest)
    return pd.Series([[g for g in gpus.get(v, []) if g != str(own)] for v, own in zip(k, eng["gpu"])],
                     index=eng.index)


def _failed_checks(r: dict) -> str | None:
    bad = [who for who, c in (("engine", r["correct"]), (str(r["_twin"]), r["_c_twin"])) if c is False]
    return f"check failed: {', '.join(bad)}" if bad else None


def _verdict(r: dict, accept: bool) -> tuple[str, str | None]:
    """``(status, note)`` of one paired engine row (a dict of its columns)."""
    tw, st_e, st_g = r["_twin"], r["status"], r["_st_twin"]
    if pd.isna(st_e) or str(st_e) != "ok":
        return ENGINE_NOT_OK, f"engine row: {st_e}"
    if pd.isna(st_g):
        other = r["_other"]
        where = f"; its rows at this point are on {', '.join(other)} only: not compared" if other else ""
        return NO_GDNLAB_ROW, (f"no {tw} row at this point on {r['gpu']}{where}" if isinstance(tw, str)
                               else f"{r['backend']} has no twin backend in the registry")
    if str(st_g) != "ok":
        return GDNLAB_NOT_OK, f"{tw} row: {st_g}"
    tm_e, tm_g = r["timing_method"], r["_tm_twin"]
    if pd.notna(tm_e) and pd.notna(tm_g) and str(tm_e) != str(tm_g):
        return NOT_COMPARABLE, f"timed {tm_e} (engine) vs {tm_g} ({tw})"
    if accept:
        a_e, a_g = float(r["accept_len"]) if pd.notna(r["accept_len"]) else math.nan, \
            float(r["_a_twin"]) if pd.notna(r["_a_twin"]) else math.nan
        if not abs(a_e - a_g) <= ACCEPT_TOL:
            return ACCEPT_DIFFERS, f"{tw} measured at accept length {a_g:g}, the engine at {a_e:g}"
    return MEASURED, _failed_checks(r)


def _pair(df: pd.DataFrame, measure: str, keys: Sequence[str], time: str, accept: bool) -> pd.DataFrame | None:
    """The paired table (module docstring) of ``df``'s rows of ``measure``; ``None`` without engine rows."""
    keys = [*keys, *(k for k in OPTIONAL_KEYS if k in df.columns)]
    rows = df[(df["measure"].astype("string") == measure).fillna(False).astype(bool)].copy()
    for c in ("timing_method", *_PROV):
        if c not in rows.columns:
            rows[c] = pd.NA
    rows["_pos"] = range(len(rows))
    rows["_engine"] = [_registered(b, "engine") for b in rows["backend"]]
    rows["_twin"] = [_registered(b, "twin") for b in rows["backend"]]
    eng = rows[rows["_engine"].notna().to_numpy(dtype=bool)].copy()
    if eng.empty:
        return None
    gdnlab_own = set(backends.names()) - set(backends.engine_names())
    twins = rows[rows["backend"].astype("string").isin(gdnlab_own).fillna(False).astype(bool)]
    eng["_id"] = range(len(eng))
    eng["_k"] = eng["_twin"].astype("string").fillna("<none>") + "|" + _key(eng, keys)
    tw = twins.assign(_k=twins["backend"].astype("string") + "|" + _key(twins, keys))
    tw = tw.rename(columns={"status": "_st_twin", time: "_t_twin", "accept_len": "_a_twin", "correct": "_c_twin",
                            "_pos": "_pos_twin", "timing_method": "_tm_twin",
                            **{c: f"twin_{c}" for c in _TWIN_PROV if c != "timing_method"}})
    keep = ["_k", "_st_twin", "_t_twin", "_a_twin", "_c_twin", "_pos_twin", "_tm_twin",
            *(f"twin_{c}" for c in _TWIN_PROV if c != "timing_method"), "_version_twin"]
    tw["_version_twin"] = [r.get(_registered(r["backend"], "version_column")) for _, r in twins.iterrows()]
    if not accept:
        tw["_a_twin"] = pd.NA
    best = _best_twin(eng[["_id", "_k", *(["accept_len"] if accept else [])]].merge(
        tw[[c for c in keep if c in tw.columns]], on="_k", how="inner"), accept)
    eng = eng.set_index("_id").join(best.drop(columns=["_k", *(["accept_len"] if accept else [])]), how="left")
    eng["_other"] = _elsewhere(eng, twins, keys)
    return _table(eng, keys, time, accept)


def _table(eng: pd.DataFrame, keys: Sequence[str], time: str, accept: bool) -> pd.DataFrame:
    """The output columns of the paired engine rows."""
    verdicts = [_verdict(r, accept) for r in eng.to_dict("records")]
    t_e, t_g = _num(eng[time]), _num(eng["_t_twin"])
    ran = pd.Series([v[0] in (MEASURED, ACCEPT_DIFFERS, NOT_COMPARABLE) for v in verdicts], index=eng.index)
    ratio = (t_e / t_g).where(ran & (t_g > 0) & (t_e > 0))
    out = pd.DataFrame({
        **{k: eng[k] for k in ("gpu",)}, "engine": eng["_engine"].astype("string"), "backend": eng["backend"],
        "twin": eng["_twin"].astype("string"), **{k: eng[k] for k in keys if k != "gpu"},
        **({"accept_len": _num(eng["accept_len"]), "accept_len_gdnlab": _num(eng["_a_twin"])} if accept else {}),
        f"engine_{time}": t_e.where(_ok(eng["status"])), f"gdnlab_{time}": t_g.where(_ok(eng["_st_twin"])),
        "ratio": ratio, "gap_pct": 100.0 * (ratio - 1.0),
        "correct_engine": eng["correct"].astype("boolean"), "correct_gdnlab": eng["_c_twin"].astype("boolean"),
        "status": pd.array([v[0] for v in verdicts], dtype="string"),
        "note": pd.array([v[1] for v in verdicts], dtype="string"), "twin_status": eng["_st_twin"].astype("string"),
        "engine_version": [r.get(_registered(r["backend"], "version_column")) for _, r in eng.iterrows()],
        "twin_version": eng["_version_twin"],
        **{c: eng[c] for c in _PROV}, **{f"twin_{c}": eng[f"twin_{c}" if c != "timing_method" else "_tm_twin"]
                                         for c in _TWIN_PROV}})
    out = out.assign(_b=out["backend"].map(lambda b: backends.names().index(str(b))),
                     _s=out["strategy"].map(strategy_order) if "strategy" in out else 0)
    order = ["gpu", "_b", "_s", *[k for k in ("mode", "buffer_scope", "state_dtype", "draft_tokens", "batch")
                                  if k in out.columns]]
    return out.sort_values(order, kind="stable").drop(columns=["_b", "_s"]).reset_index(drop=True)


def engine_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Each engine step row beside its twin's (module docstring): columns :data:`STEP_COLUMNS`, then
    the :data:`OPTIONAL_KEYS` the rows were paired on (``engine_step_us`` / ``gdnlab_step_us`` in µs per
    step, missing where that row did not run). ``df``: sweep rows, one frame or several concatenated
    (:func:`load_engine_sweeps`); call rows and rows of other backends are ignored. An empty ``df``
    gives an empty table;
    :class:`~gdnlab.errors.InputError` names the columns of :data:`STEP_REQUIRED` it lacks."""
    out = _pair(df, "step", _STEP_KEYS, "step_us", accept=True) if _check(df, STEP_REQUIRED, "engine_gap") else None
    if out is None:
        return pd.DataFrame(columns=STEP_COLUMNS)
    return out[[c for c in STEP_COLUMNS if c in out.columns] + [c for c in out.columns if c not in STEP_COLUMNS]]


def engine_call_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Each engine call row (one decode or verify kernel call) beside its twin's: columns
    :data:`CALL_COLUMNS`, then the :data:`OPTIONAL_KEYS` the rows were paired on (``engine_time_us`` /
    ``gdnlab_time_us``: µs per call). Empty when ``df``
    has no call rows of an engine backend; :class:`~gdnlab.errors.InputError` names the columns of
    :data:`CALL_REQUIRED` it lacks."""
    out = _pair(df, "call", _CALL_KEYS, "time_us", accept=False) if _check(df, CALL_REQUIRED, "engine_call_gap") \
        else None
    if out is None:
        return pd.DataFrame(columns=CALL_COLUMNS)
    return out[[c for c in CALL_COLUMNS if c in out.columns] + [c for c in out.columns if c not in CALL_COLUMNS]]


# ------------------------------------------------------------------------------------------ summary

#: the columns :func:`gap_summary` groups by, where the gap table has them
SUMMARY_KEYS = ("gpu", "engine", "backend", "twin", "strategy", "mode", "buffer_scope", "state_dtype", "draft_tokens")


def gap_summary(gap: pd.DataFrame) -> pd.DataFrame:
    """Per GPU, backend, strategy (call tables: mode and buffer scope), state dtype and T of a gap table
    (:func:`engine_gap` or :func:`engine_call_gap`): ``rows``, ``compared`` (rows of status
    :data:`MEASURED`; the ratios below are theirs only), ``failed_checks`` (rows where either row's
    ``correct`` is False, compared or not), ``ratio_median``, ``ratio_min`` /
    ``ratio_max`` with the B they occur at (``batch_at_min`` / ``batch_at_max``), ``gap_pct_median``,
    the B range compared (``batches``: ``"1-256"``), and ``statuses`` (the other statuses and how many)."""
    if not isinstance(gap, pd.DataFrame) or any(c not in gap.columns for c in ("backend", "batch", "ratio", "status")):
        raise InputError("gap_summary needs a table of gdnlab.analysis.engine_gap.engine_gap or engine_call_gap")
    keys = [k for k in SUMMARY_KEYS if k in gap.columns]
    cols = [*keys, "rows", "compared", "failed_checks", "ratio_median", "ratio_min", "batch_at_min", "ratio_max",
            "batch_at_max", "gap_pct_median", "batches", "statuses"]
    if gap.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for _, g in gap.groupby([gap[c].astype("string").fillna("") for c in keys], sort=False):
        m = g[(g["status"].astype("string") == MEASURED).fillna(False).astype(bool) & _num(g["ratio"]).notna()]
        r, b = _num(m["ratio"]), pd.to_numeric(m["batch"], errors="coerce")
        other = g.loc[g["status"].astype("string") != MEASURED, "status"].value_counts()
        failed = g["correct_engine"].eq(False) | g["correct_gdnlab"].eq(False) \
            if {"correct_engine", "correct_gdnlab"} <= set(g.columns) else pd.Series(False, index=g.index)
        out.append({**dict(zip(keys, g[keys].iloc[0])), "rows": len(g), "compared": len(m),
                    "failed_checks": int(failed.fillna(False).sum()),
                    "ratio_median": float(r.median()) if len(m) else math.nan,
                    "ratio_min": float(r.min()) if len(m) else math.nan,
                    "batch_at_min": int(b[r.idxmin()]) if len(m) else pd.NA,
                    "ratio_max": float(r.max()) if len(m) else math.nan,
                    "batch_at_max": int(b[r.idxmax()]) if len(m) else pd.NA,
                    "gap_pct_median": 100.0 * (float(r.median()) - 1.0) if len(m) else math.nan,
                    "batches": f"{int(b.min())}-{int(b.max())}" if len(m) else "",
                    "statuses": ", ".join(f"{s} x{n}" for s, n in other.items())})
    return pd.DataFrame(out, columns=cols)


# ------------------------------------------------------------------------------------------ files

#: the sweep files :func:`load_engine_sweeps` reads in each GPU folder, in this order (a later file's
#: rows come later: on a tie the twin row read last is taken)
SWEEP_FILES = (re.compile(r"sweep\.parquet"), re.compile(r"sweep_t(_[A-Za-z0-9_]+)?\.parquet"),
               re.compile(r"sweep_engine_[A-Za-z0-9_]+\.parquet"))


def _sweep_files(root: Path) -> list[Path]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        out += [folder / n for pat in SWEEP_FILES for n in names if pat.fullmatch(n)]
    return out


def load_engine_sweeps(root: str | Path = "traces") -> pd.DataFrame:
    """The sweep rows an engine-vs-gdnlab comparison reads: in every GPU folder ``root/<gpu>/``,
    ``sweep.parquet``, the T sweeps ``sweep_t.parquet`` / ``sweep_t_<name>.parquet`` and the engine
    sweeps ``sweep_engine_<name>.parquet`` (the names ``scripts/gpu/session.sh`` gives them), each read
    with :func:`gdnlab.results.load_sweep` and concatenated, with a ``source`` column
    (``<gpu folder>/<file>``). Other sweeps of a folder (``sweep_triton_bf16verify_fp32intermediate``,
    an experiment with another intermediate dtype) are not read.

    Returns the rows, or, when none of them is an engine backend's, an empty frame whose
    ``attrs["missing"]`` says so (:func:`gdnlab.report.load` shows it as missing data).
    ``FileNotFoundError`` when ``root`` is not a folder."""
    from ..results import load_sweep, to_frame

    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no folder {base} (the GPU folders of sweeps, e.g. traces/h200)")
    frames = [load_sweep(p).assign(source=f"{p.parent.name}/{p.name}") for p in _sweep_files(base)]
    rows = to_frame(pd.concat(frames, ignore_index=True)) if frames else to_frame([]).assign(source=pd.NA)
    engines = backends.engine_names()
    if not rows["backend"].astype("string").isin(engines).any():
        empty = rows.iloc[:0].copy()
        empty.attrs["missing"] = (f"no engine sweep rows in {base} (no {base}/<gpu>/sweep_engine_*.parquet with rows "
                                  f"of {', '.join(engines)})")
        return empty
    return rows


# ------------------------------------------------------------------------------------------ traces


def engine_trace_table(traces: Mapping[tuple[str, str, str], Any]) -> pd.DataFrame:
    """Decode-loop traces of engine backends beside their twins' (``{(backend, strategy, state_dtype):
    Trace}``, :func:`gdnlab.analysis.strategy_traces.engine_trace_paths`; missing traces are left out),
    one row per trace: :func:`~gdnlab.analysis.strategy_traces.phase_summary`'s µs per step
    (``kernel_us``, ``verify_us``, ``commit_us``, ``bookkeeping_us``, ``strategy_kernel_us``) and
    :func:`~gdnlab.analysis.strategy_traces.trace_busy`'s ``busy_pct_median``, with ``engine`` and
    ``twin``; on an engine's row ``twin_kernel_us`` / ``twin_strategy_kernel_us`` (its twin's trace of
    the same strategy and state dtype), ``kernel_vs_twin`` and ``strategy_kernel_vs_twin`` (engine /
    twin), and a ``note`` where the twin has no trace at that state dtype."""
    from .strategy_traces import phase_summary, trace_busy, trace_phases

    frames = []
    for sd in dict.fromkeys(k[2] for k in traces):
        sub = {k[:2]: v for k, v in traces.items() if k[2] == sd}
        summ = phase_summary(trace_phases(sub))
        busy = trace_busy(sub)[["backend", "strategy", "busy_pct_median", "span_busy_pct_median", "gpu", "sm"]]
        if len(summ):
            frames.append(summ.merge(busy, on=["backend", "strategy"], how="left").assign(state_dtype=sd))
    cols = ["backend", "engine", "twin", "strategy", "state_dtype", "kernel_us", "verify_us", "commit_us",
            "bookkeeping_us", "strategy_kernel_us", "busy_pct_median", "span_busy_pct_median", "twin_kernel_us",
            "twin_strategy_kernel_us", "kernel_vs_twin", "strategy_kernel_vs_twin", "note", "launch", "steps",
            "status", "gpu", "sm", "file"]
    t = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    if t.empty:
        return pd.DataFrame(columns=cols)
    t["engine"] = pd.array([_registered(b, "engine") for b in t["backend"]], dtype="string")
    t["twin"] = pd.array([_registered(b, "twin") for b in t["backend"]], dtype="string")
    pos = {k: i for i, k in enumerate(traces)}
    t = t.assign(_pos=[pos.get((b, s, sd), len(pos)) for b, s, sd in zip(t["backend"], t["strategy"],
                                                                          t["state_dtype"])])
    t = t.sort_values("_pos", kind="stable").drop(columns="_pos").reset_index(drop=True)
    own = t.set_index(["backend", "strategy", "state_dtype"])
    pairs = list(zip(t["twin"].fillna(""), t["strategy"], t["state_dtype"]))
    for col, src in (("twin_kernel_us", "kernel_us"), ("twin_strategy_kernel_us", "strategy_kernel_us")):
        t[col] = [float(own[src].get(k, math.nan)) if k[0] else math.nan for k in pairs]
    t["kernel_vs_twin"] = _num(t["kernel_us"]) / _num(t["twin_kernel_us"])
    t["strategy_kernel_vs_twin"] = _num(t["strategy_kernel_us"]) / _num(t["twin_strategy_kernel_us"])
    have = {(b, s): sorted(g["state_dtype"]) for (b, s), g in t.groupby(["backend", "strategy"])}
    t["note"] = pd.array([(f"no {tw} {s} trace at {sd} state (it has {', '.join(have.get((tw, s), [])) or 'none'}): "
                           "not compared") if tw and math.isnan(v) else None
                          for (tw, s, sd), v in zip(pairs, t["twin_kernel_us"])], dtype="string")
    for c in cols:
        if c not in t.columns:
            t[c] = pd.NA
    return t[cols].reset_index(drop=True)
