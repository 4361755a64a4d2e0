"""The strategy ledger: tables of a sweep's step rows and of per-strategy traces (pandas only).

Inputs are what gdnlab already wrote: sweep rows (:func:`gdnlab.results.load_sweep`; step rows have
``measure == "step"``, one per backend, strategy, state dtype, T, accept length and B, timed as
:mod:`gdnlab.sweep.step` describes) and decode-loop traces of one strategy each (their kernel
tables, split by :mod:`gdnlab.analysis.phases`). Nothing here measures, plots or reads files:

* :func:`step_rows` / :func:`strategy_ledger`: the step rows with the derived columns
  ``per_token_us`` (= ``step_us / accept_len``: time per accepted token), ``vs_full_cache`` (step
  time / ``full_cache``'s at the same backend, state dtype, T, accept length and B),
  ``floor_ratio`` (``step_us / copy_floor_us``: measured time over the formula bytes' time at the
  measured copy bandwidth), ``commit_floor_ratio`` and ``flag`` (:data:`FLAG_INCORRECT` where the
  strategy check failed, ``correct == False``; :data:`FLAG_UNCHECKED` where it did not run,
  ``correct`` NA; :data:`FLAG_EAGER` where the step was timed eagerly because CUDA-graph capture
  failed, ``timing_method == "eager"``, so its time is not comparable with graph-timed rows;
  comma separated when several apply). Flagged rows are kept and shown, never dropped;
* :func:`winners`: the fastest strategy per (backend, state dtype, T, accept length, B), among
  rows that are ``ok`` and carry no flag (flagged ones are listed beside the winner);
* :func:`served_scratch`: scratch and memory GiB of each strategy for a served model (default
  Qwen3.5-397B-A17B at TP 4, all its GDN layers) at one B, from :mod:`gdnlab.roofline`;
* :func:`targets`, :func:`busy_targets`: measured value, goal and met (yes / no / no data) of the
  strategy targets (:class:`Targets`);

Per-strategy traces (their file names, verify / commit / fold breakdown and GPU busy share) are
:mod:`gdnlab.analysis.strategy_traces`; :func:`busy_targets` judges the latter.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..results import require_columns
from ..shapes import GDNShape, dtype_from_name, dtype_name, preset
from ..strategies.registry import BASELINE, STRATEGY_NAMES, strategy_class, strategy_order

__all__ = ["GROUP", "Targets", "step_rows", "strategy_ledger", "ledger_table", "winners",
           "served_scratch", "options_from_rows", "targets", "busy_targets", "SERVED_PRESET", "SERVED_TP",
           "FLAG_INCORRECT", "FLAG_UNCHECKED", "FLAG_EAGER", "FLAG_TEXT", "has_flag", "MET_NOT_COMPARABLE"]

#: columns that, with ``batch``, identify one step point of a sweep
GROUP = ("backend", "state_dtype", "draft_tokens", "accept_len")
#: the served model the scratch table is for (``gdnlab.shapes.preset(SERVED_PRESET, tp=SERVED_TP)``)
SERVED_PRESET, SERVED_TP = "qwen3.5-397b-a17b", 4
#: ``flag`` of a row whose strategy check failed (``correct == False``)
FLAG_INCORRECT = "INCORRECT"
#: ``flag`` of a row that ran but whose strategy check did not (``correct`` NA)
FLAG_UNCHECKED = "UNCHECKED"
#: ``flag`` of a row timed eagerly (CUDA-graph capture failed): not comparable with graph-timed rows
FLAG_EAGER = "EAGER-TIMED"
#: what each flag means, for legends and table notes
FLAG_TEXT = {FLAG_INCORRECT: "check failed (correct = False)",
             FLAG_UNCHECKED: "unchecked (the check did not run)",
             FLAG_EAGER: "eager-timed (graph capture failed): not comparable"}
#: ``met`` of a target whose measurement cannot be judged against the goal (eager-timed, eager trace)
MET_NOT_COMPARABLE = "not comparable"
_GIB = float(2 ** 30)
_TOL = 1e-6


@dataclass(frozen=True)
class Targets:
    """The goals of the verify strategies and the conditions they are judged at.

    Attributes:
        batch: B of the step-time goals (rows).
        draft_tokens: T (tokens).
        accept_len: mean accepted tokens per step (tokens).
        state_dtype: pool dtype.
        commit_floor_max: ``full_cache``'s ``commit_us / commit_floor_us`` at most this (x).
        best_step_max: the best other strategy's ``step_us`` / ``full_cache``'s at most this (x).
        ahead_from_batch: that strategy is faster than ``full_cache`` at every B >= this (rows).
        bw_pct_min: each strategy's verify and commit reach at least this % of the HBM peak ...
        bw_from_batch: ... at every B >= this (rows).
        busy_pct_min: GPU busy share of a step in a decode-loop trace at least this (%).
    """

    batch: int = 256
    draft_tokens: int = 4
    accept_len: float = 3.17
    state_dtype: str = "bfloat16"
    commit_floor_max: float = 1.2
    best_step_max: float = 0.4
    ahead_from_batch: int = 16
    bw_pct_min: float = 75.0
    bw_from_batch: int = 64
    busy_pct_min: float = 90.0


# ------------------------------------------------------------------------------------------ step rows


def _need(df: Any, cols: Iterable[str], what: str = "sweep rows") -> None:
    require_columns(df, cols, what=what)


def step_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The step rows of a sweep (``measure == "step"``, every status; a point stored twice keeps its
    last row, as :func:`gdnlab.results.load_sweep` does), sorted by backend, state dtype, T, accept
    length, strategy and B; empty (same columns) when the sweep has none."""
    _need(df, ("strategy", "batch", "backend", "status"))
    if "measure" in df.columns:
        is_step = df["measure"].astype("string") == "step"
    else:
        is_step = df["mode"].astype("string") == "step"
    out = df[is_step.fillna(False).astype(bool)].copy()
    for c in ("state_dtype", "draft_tokens", "accept_len"):
        if c not in out.columns:
            out[c] = pd.NA
    from ..results import KEY_COLUMNS

    keys = [c for c in KEY_COLUMNS if c in out.columns]
    out = out[~out[keys].astype("string").fillna("<NA>").duplicated(keep="last")]
    out["_rank"] = out["strategy"].map(strategy_order)
    out = out.sort_values(["backend", "state_dtype", "draft_tokens", "accept_len", "_rank", "batch"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = _num(a), _num(b)
    return (a / b).where(b > 0)


def has_flag(flags: pd.Series, flag: str) -> pd.Series:
    """Boolean: whether each ``flag`` value of a ledger (comma-separated flags) contains ``flag``."""
    return flags.astype("string").str.split(", ").map(lambda v: isinstance(v, list) and flag in v).astype(bool)


def _flags(led: pd.DataFrame, ok: pd.Series) -> pd.Series:
    correct = led["correct"].astype("boolean")
    eager = (led["timing_method"].astype("string") == "eager").fillna(False).astype(bool)
    parts = [(correct.eq(False).fillna(False).astype(bool), FLAG_INCORRECT),
             (ok & correct.isna(), FLAG_UNCHECKED), (ok & eager, FLAG_EAGER)]
    out = []
    for i in range(len(led)):
        names = [f for m, f in parts if bool(m.iloc[i])]
        out.append(", ".join(names) if names else pd.NA)
    return pd.Series(out, index=led.index, dtype="string")


def strategy_ledger(df: pd.DataFrame) -> pd.DataFrame:
    """Every step row of ``df`` with derived columns (module docstring): ``per_token_us``,
    ``vs_full_cache``, ``floor_ratio``, ``commit_floor_ratio`` and ``flag``. Rows keep every sweep
    column (provenance included); rows that did not run (``status != "ok"``) keep NaN times."""
    led = step_rows(df)
    for c in ("step_us", "accept_len", "copy_floor_us", "commit_us", "commit_floor_us", "correct", "timing_method"):
        if c not in led.columns:
            led[c] = pd.NA
    ok = led["status"].astype("string") == "ok"
    step = _num(led["step_us"]).where(ok.fillna(False).astype(bool))
    led["per_token_us"] = step / _num(led["accept_len"]).where(_num(led["accept_len"]) >= 1)
    led["floor_ratio"] = _ratio(step, led["copy_floor_us"])
    led["commit_floor_ratio"] = _ratio(_num(led["commit_us"]).where(ok.fillna(False).astype(bool)),
                                       led["commit_floor_us"])
    led["flag"] = _flags(led, ok.fillna(False).astype(bool))
    base = led.assign(_step=step)[led["strategy"] == BASELINE]
    keys = [*GROUP, "batch"]
    base = base[keys + ["_step"]].dropna(subset=["_step"]).drop_duplicates(keys, keep="last")
    base = base.rename(columns={"_step": "_full_cache_step"})
    merged = led.assign(_step=step).merge(base, on=keys, how="left")
    led["vs_full_cache"] = (merged["_step"] / merged["_full_cache_step"]).to_numpy()
    return led


#: the columns :func:`ledger_table` shows, in order
LEDGER_COLUMNS = ("backend", "state_dtype", "draft_tokens", "accept_len", "batch", "strategy", "status", "flag",
                  "timing_method", "step_us", "per_token_us", "vs_full_cache", "verify_us", "commit_us", "fold_us",
                  "bytes", "floor_ratio", "commit_floor_ratio", "pct_of_peak_bw", "verify_pct_of_peak_bw",
                  "commit_pct_of_peak_bw", "scratch_bytes", "state_drift")


def ledger_table(led: pd.DataFrame, *, state_dtype: str | None = None, draft_tokens: int | None = None,
                 batches: Sequence[int] | None = None) -> pd.DataFrame:
    """The ledger's display columns (:data:`LEDGER_COLUMNS` present), optionally one state dtype,
    one T and some B."""
    out = _select(led, state_dtype=state_dtype, draft_tokens=draft_tokens)
    if batches is not None:
        out = out[out["batch"].isin(list(batches))]
    return out[[c for c in LEDGER_COLUMNS if c in out.columns]].reset_index(drop=True)


def _select(led: pd.DataFrame, *, state_dtype: str | None = None, draft_tokens: int | None = None,
            accept_len: float | None = None) -> pd.DataFrame:
    out = led
    if state_dtype is not None:
        out = out[out["state_dtype"].astype("string") == dtype_name(state_dtype)]
    if draft_tokens is not None:
        out = out[_num(out["draft_tokens"]) == int(draft_tokens)]
    if accept_len is not None:
        out = out[(_num(out["accept_len"]) - float(accept_len)).abs() <= _TOL]
    return out


def _contenders(led: pd.DataFrame) -> pd.DataFrame:
    """Rows that may win: status ok, a step time, and no flag (checked, graph-timed)."""
    ok = (led["status"].astype("string") == "ok").fillna(False).astype(bool)
    return led[ok & _num(led["step_us"]).notna() & led["flag"].isna()]


def winners(led: pd.DataFrame) -> pd.DataFrame:
    """The fastest strategy per (backend, state dtype, T, accept length, B) among rows that ran
    (``ok``) and carry no flag (failed or missing check, eager timing).

    Columns: the group and ``batch``, ``winner``, ``step_us``, ``per_token_us``, ``runner_up``,
    ``runner_up_step_us``, ``full_cache_step_us``, ``vs_full_cache`` (winner / full_cache),
    ``speedup`` (full_cache / winner), ``contenders`` (strategies compared), ``flagged``
    (strategies left out and why: ``"replay_ring (UNCHECKED); token_slots (INCORRECT)"``) and
    ``fastest_flagged`` / ``fastest_flagged_step_us`` (the fastest left-out row, when it would have
    beaten the winner: shown, never counted)."""
    if "flag" not in led.columns:
        led = strategy_ledger(led)
    cols = [*GROUP, "batch", "winner", "step_us", "per_token_us", "runner_up", "runner_up_step_us",
            "full_cache_step_us", "vs_full_cache", "speedup", "contenders", "flagged", "fastest_flagged",
            "fastest_flagged_step_us"]
    keys = [*GROUP, "batch"]
    rows = []
    flagged = led[led["flag"].notna()]
    for key, g in _contenders(led).groupby(keys, sort=True, dropna=False):
        g = g.assign(_t=_num(g["step_us"])).sort_values(["_t"], kind="stable")
        best = g.iloc[0]
        fc = g.loc[g["strategy"] == BASELINE, "_t"]
        fc_t = float(fc.iloc[0]) if len(fc) else math.nan
        bad = flagged
        for c, v in zip(keys, key):
            bad = bad[(bad[c] == v) if not pd.isna(v) else bad[c].isna()]
        fb = _fastest_flagged(bad, float(best["_t"]))
        rows.append({**dict(zip(keys, key)), "winner": best["strategy"], "step_us": float(best["_t"]),
                     "per_token_us": float(best["per_token_us"]) if pd.notna(best["per_token_us"]) else math.nan,
                     "runner_up": g.iloc[1]["strategy"] if len(g) > 1 else None,
                     "runner_up_step_us": float(g.iloc[1]["_t"]) if len(g) > 1 else math.nan,
                     "full_cache_step_us": fc_t, "vs_full_cache": float(best["_t"]) / fc_t if fc_t > 0 else math.nan,
                     "speedup": fc_t / float(best["_t"]) if fc_t > 0 and best["_t"] > 0 else math.nan,
                     "contenders": len(g), "flagged": _flag_list(bad), "fastest_flagged": fb[0],
                     "fastest_flagged_step_us": fb[1]})
    return pd.DataFrame(rows, columns=cols)


def _flag_list(bad: pd.DataFrame) -> str | None:
    """``"replay_ring (UNCHECKED); token_slots (INCORRECT)"`` of flagged rows."""
    if bad.empty:
        return None
    pairs = bad[["strategy", "flag"]].astype(str).drop_duplicates()
    pairs = pairs.assign(_r=pairs["strategy"].map(strategy_order)).sort_values("_r")
    return "; ".join(f"{s} ({f})" for s, f, _ in pairs.itertuples(index=False))


def _fastest_flagged(bad: pd.DataFrame, than: float) -> tuple[str | None, float]:
    """``("replay_ring (UNCHECKED)", µs)`` of the fastest flagged row faster than ``than`` µs."""
    t = _num(bad["step_us"]) if len(bad) else pd.Series(dtype=float)
    t = t[t < than]
    if t.empty:
        return None, math.nan
    r = bad.loc[t.idxmin()]
    return f"{r['strategy']} ({r['flag']})", float(t.min())


# ------------------------------------------------------------------------------------------ scratch


def options_from_rows(led: pd.DataFrame, backend: str) -> dict[str, dict]:
    """``{strategy: roofline options}`` of ``backend`` as its step rows recorded them
    (``backend_options``, JSON of :meth:`VerifyStrategy.roofline_options`); strategies without a
    record get ``{}``."""
    import json

    out: dict[str, dict] = {}
    if "backend_options" not in led.columns:
        return out
    rows = led[(led["backend"].astype("string") == backend) & led["backend_options"].notna()]
    for strategy, text in zip(rows["strategy"], rows["backend_options"]):
        try:
            opts = json.loads(str(text))
        except (TypeError, ValueError):
            continue
        if isinstance(opts, dict):
            out[str(strategy)] = {k: v for k, v in opts.items() if v is not None}
    return out


def served_scratch(shape: GDNShape | None = None, *, batch: int = 256, draft_tokens: int = 4,
                   state_dtype: str = "bfloat16", layers: int | None = None, requests: int | None = None,
                   strategies: Sequence[str] = STRATEGY_NAMES,
                   options: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Scratch and memory of each strategy for a served model, all its GDN layers, at one B.

    Args:
        shape: per-GPU GDN shape (default ``preset("qwen3.5-397b-a17b", tp=4)``).
        batch: B, requests verified per step (rows).
        draft_tokens: T (tokens).
        state_dtype: pool dtype.
        layers: GDN layers (default ``shape.num_gdn_layers``, 45 for the default).
        requests: concurrent requests the pool holds (default ``batch``).
        options: per strategy, the roofline options of a backend (:func:`options_from_rows`).

    Returns:
        one row per strategy: ``pool_slots`` (rows of one layer's pool),
        ``scratch_bytes_per_layer`` (the strategy class's ``scratch_formula``),
        ``memory_bytes_per_layer`` (its ``memory_formula``: pool + scratch),
        ``scratch_gib`` / ``memory_gib`` (times ``layers``, GiB = 2^30 bytes), ``extra_gib``
        (memory beyond a pool of one row per request: what the strategy costs over plain decode;
        ``token_slots`` keeps its T extra states per request in the pool), and the conditions.
    """
    shape = shape or preset(SERVED_PRESET, tp=SERVED_TP)
    L = int(layers if layers is not None else shape.num_gdn_layers)
    R = int(requests if requests is not None else batch)
    sd = dtype_name(state_dtype)
    row_bytes = shape.HV * shape.V * shape.K * dtype_from_name(sd).itemsize
    plain_pool = (1 + R) * row_bytes
    rows = []
    for s in strategies:
        opts = dict((options or {}).get(s, {}))
        cls = strategy_class(s)
        P = 1 + R * cls.slots_per_request(draft_tokens)
        scratch = cls.scratch_formula(shape, batch, draft_tokens, P, state_dtype=sd, **opts)
        memory = cls.memory_formula(shape, R, batch, draft_tokens, state_dtype=sd, **opts)
        rows.append({"strategy": s, "shape": shape.name, "layers": L, "batch": batch, "requests": R,
                     "draft_tokens": draft_tokens, "state_dtype": sd, "pool_slots": P,
                     "scratch_bytes_per_layer": int(scratch), "memory_bytes_per_layer": int(memory),
                     "scratch_gib": scratch * L / _GIB, "memory_gib": memory * L / _GIB,
                     "extra_gib": (memory - plain_pool) * L / _GIB,
                     "options": ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or "defaults"})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ targets

_TARGET_COLUMNS = ["target", "backend", "strategy", "measured", "unit", "goal", "met", "detail", "source"]


def _met(ok: bool | None) -> str:
    return "no data" if ok is None else ("yes" if ok else "no")


def _source(rows: pd.DataFrame | None, status: str | None = None) -> str | None:
    """``<status> · GPU · commit abcdef1234`` of the rows a target was judged on (their own
    provenance; ``status`` as the caller read it from the data, e.g. :func:`gdnlab.report.data_status`)."""
    if rows is None or rows.empty:
        return None
    parts = [status] if status else []
    for col, fmt in (("gpu", str), ("git_commit", lambda v: f"commit {str(v)[:10]}")):
        if col in rows.columns:
            vals = sorted({fmt(v) for v in rows[col].dropna().unique()})
            if vals:
                parts.append(" / ".join(vals))
    return " · ".join(parts) or None


def _row(target: str, backend: Any, strategy: Any, measured: float | None, unit: str, goal: str,
         ok: bool | None, detail: str, rows: pd.DataFrame | None, status: Any = None) -> dict:
    m = None if measured is None or pd.isna(measured) else float(measured)
    return {"target": target, "backend": backend, "strategy": strategy, "measured": m, "unit": unit, "goal": goal,
            "met": _met(None if m is None else bool(ok)), "detail": detail,
            "source": _source(rows, status if isinstance(status, str) else None)}


def targets(led: pd.DataFrame, goals: Targets = Targets(), *, status: str | None = None) -> pd.DataFrame:
    """The sweep targets, one row per target and backend (per strategy for the bandwidth goal):
    ``target``, ``backend``, ``strategy``, ``measured`` (float), ``unit``, ``goal`` (text), ``met``
    (``yes`` / ``no`` / ``no data``), ``detail`` (where it was judged, what is missing) and
    ``source`` (``status``, then GPU and commit of the rows used). Judged at ``goals``' state dtype,
    T and accept length; rows flagged incorrect never count as a strategy's best."""
    if "flag" not in led.columns:
        led = strategy_ledger(led)
    g = goals
    at = _select(led, state_dtype=g.state_dtype, draft_tokens=g.draft_tokens, accept_len=g.accept_len)
    cond = f"{dtype_name(g.state_dtype)} state, T={g.draft_tokens}, accept length {g.accept_len:g}"
    out: list[dict] = []
    backends = sorted(at["backend"].dropna().astype(str).unique()) or sorted(led["backend"].dropna().astype(str)
                                                                            .unique())
    for be in backends:
        mine = at[at["backend"].astype(str) == be]
        ok = _contenders(mine)
        # 1. full_cache's commit against its byte floor at B
        fc = mine[(mine["strategy"] == BASELINE) & (mine["batch"] == g.batch)]
        v = _num(fc["commit_floor_ratio"]).dropna()
        out.append(_row(f"{BASELINE} commit / its byte floor", be, BASELINE, v.iloc[0] if len(v) else None, "x",
                        f"<= {g.commit_floor_max:g}x", bool(len(v)) and v.iloc[0] <= g.commit_floor_max,
                        f"B={g.batch}, {cond}; floor = commit bytes / measured copy bandwidth", fc))
        # 2. the best other strategy's step against full_cache's, at B
        at_b = ok[ok["batch"] == g.batch]
        fc_t = _num(at_b.loc[at_b["strategy"] == BASELINE, "step_us"])
        others = at_b[at_b["strategy"] != BASELINE].assign(_t=lambda d: _num(d["step_us"])).sort_values("_t")
        best = str(others.iloc[0]["strategy"]) if len(others) else None
        ratio = float(others.iloc[0]["_t"]) / float(fc_t.iloc[0]) if best and len(fc_t) else None
        bad = mine[mine["flag"].notna() & (mine["batch"] == g.batch)]
        note = f"; left out: {_flag_list(bad)}" if len(bad) else ""
        fb = _fastest_flagged(bad, float(others.iloc[0]["_t"]) if best else math.inf)
        if fb[0] is not None and len(fc_t):
            note += f"; faster but not counted: {fb[0]} at {fb[1] / float(fc_t.iloc[0]):.3g}x"
        out.append(_row("best strategy's step / full_cache's step", be, best, ratio, "x", f"<= {g.best_step_max:g}x",
                        ratio is not None and ratio <= g.best_step_max, f"B={g.batch}, {cond}{note}", at_b))
        # 3. that strategy ahead of full_cache at every B >= ahead_from_batch
        out.append(_ahead_row(ok, best, g, cond, be))
        # 4. each strategy's verify and commit bandwidth at B >= bw_from_batch
        for s in sorted(mine["strategy"].dropna().astype(str).unique(), key=strategy_order):
            out.append(_bw_row(mine[mine["strategy"] == s], be, s, g, cond))
    table = pd.DataFrame(out, columns=_TARGET_COLUMNS)
    if status:
        table["source"] = [f"{status} · {v}" if v else None for v in table["source"]]
    return table


def _ahead_row(ok: pd.DataFrame, best: str | None, g: Targets, cond: str, be: str) -> dict:
    name = f"best strategy ahead of full_cache at every B >= {g.ahead_from_batch}"
    big = ok[ok["batch"] >= g.ahead_from_batch]
    if best is None or big.empty:
        return _row(name, be, best, None, "x", "< 1x at every B", None, f"{cond}: no rows", big)
    t = big.assign(_t=_num(big["step_us"])).pivot_table(index="batch", columns="strategy", values="_t", aggfunc="last")
    batches = [int(b) for b in t.index]
    have = t[best] if best in t else pd.Series(math.nan, index=t.index)
    base = t[BASELINE] if BASELINE in t else pd.Series(math.nan, index=t.index)
    r = (have / base)
    gaps = [b for b, v in zip(batches, r) if pd.isna(v)]
    behind = [b for b, v in zip(batches, r) if pd.notna(v) and v >= 1.0]
    worst = float(r.max()) if r.notna().any() else None
    detail = f"{best} vs full_cache at B={', '.join(map(str, batches))} ({cond}); worst ratio shown"
    if behind:
        detail += f"; behind at B={', '.join(map(str, behind))}"
    if gaps:
        detail += f"; no pair at B={', '.join(map(str, gaps))}"
    return _row(name, be, best, worst, "x", "< 1x at every B", not behind and not gaps, detail, big)


def _bw_row(rows: pd.DataFrame, be: str, s: str, g: Targets, cond: str) -> dict:
    name = f"verify and commit % of HBM peak at B >= {g.bw_from_batch}"
    ok = (rows["status"].astype("string") == "ok").fillna(False).astype(bool)
    big = rows[ok & (rows["batch"] >= g.bw_from_batch)]
    worst: tuple[float, str, int] | None = None
    for phase in ("verify", "commit"):
        col = f"{phase}_pct_of_peak_bw"
        if col not in big.columns:
            continue
        v = _num(big[col])
        for b, p in zip(big["batch"], v):
            if pd.notna(p) and (worst is None or p < worst[0]):
                worst = (float(p), phase, int(b))
    flags = sorted({f for v in rows["flag"].dropna().astype(str) for f in v.split(", ")})
    flag = f"; flagged {', '.join(flags)}" if flags else ""
    if len(big) and has_flag(big["flag"], FLAG_EAGER).all():
        r = _row(name, be, s, worst[0] if worst else None, "%", f">= {g.bw_pct_min:g} %", False,
                 f"every row eager-timed (graph capture failed): {FLAG_TEXT[FLAG_EAGER]}{flag}", big)
        r["met"] = MET_NOT_COMPARABLE
        return r
    if worst is None:
        return _row(name, be, s, None, "%", f">= {g.bw_pct_min:g} %", None,
                    f"{cond}: no verify/commit bandwidth at B >= {g.bw_from_batch}{flag}", big)
    return _row(name, be, s, worst[0], "%", f">= {g.bw_pct_min:g} %", worst[0] >= g.bw_pct_min,
                f"lowest: {worst[1]} at B={worst[2]} ({cond}){flag}", big)


def busy_targets(busy: pd.DataFrame, goals: Targets = Targets()) -> pd.DataFrame:
    """The GPU-busy goal per trace of :func:`trace_busy`: ``measured`` = median busy % of its
    complete steps (verify marker to the next one). A trace whose kernels were launched eagerly
    (``launch == "eager"``, no CUDA graph) is measured but ``met`` is :data:`MET_NOT_COMPARABLE`."""
    out = []
    for r in busy.itertuples(index=False):
        med = getattr(r, "busy_pct_median", math.nan)
        src = pd.DataFrame([{"gpu": getattr(r, "gpu", None)}])
        ok = pd.notna(med) and med >= goals.busy_pct_min
        launch = getattr(r, "launch", None)
        span = getattr(r, "span_busy_pct_median", math.nan)
        detail = (f"{r.file}: median of {getattr(r, 'complete_steps', r.steps)} complete steps "
                  f"(min {getattr(r, 'busy_pct_min', math.nan):.1f} %); kernels over the step's own span "
                  f"{span:.1f} %; launch: {launch or 'unknown'}")
        row = _row("GPU busy % of a step (trace)", r.backend, r.strategy, med, "%", f">= {goals.busy_pct_min:g} %",
                   ok, detail, src, getattr(r, "status", None))
        if launch == "eager" and row["met"] != "no data":
            row["met"] = MET_NOT_COMPARABLE
            row["detail"] = "eager trace (no CUDA graph): not comparable; " + detail
        out.append(row)
    return pd.DataFrame(out, columns=_TARGET_COLUMNS)
