"""Analyses of a trace's frames; each takes DataFrames and returns a DataFrame (times in ns).

The inputs are the frames of :class:`~gdnlab.traces.Trace` (``kernels``, ``gpu_ranges``); this module
knows nothing of files or of the :class:`~gdnlab.traces.Trace` class. Use the facade
(``trace.kernel_summary()`` or ``gdnlab.traces.kernel_summary(trace)``), which also stamps
``df.attrs["provenance"]`` with the trace's one-line provenance, so a figure made from the result can
show where the numbers come from.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .names import DEFAULT_CLASS_RULES, kernel_classes
from .projection import merged_intervals

__all__ = ["kernel_summary", "range_breakdown", "gpu_idle_gaps", "step_overhead", "compare",
           "kernel_class_summary", "gpu_busy_total_ns", "step_mask", "group_text"]

_NUM = re.compile(r"\d+")


def group_text(text: pd.Series) -> pd.Series:
    """Range text with every run of digits replaced by ``#`` (``"step 12"`` -> ``"step #"``), so that
    numbered ranges group together."""
    return text.astype(str).str.replace(_NUM, "#", regex=True)


def step_mask(text: pd.Series, step: str = "step", *, regex: bool = False) -> np.ndarray:
    """Which range texts are *steps*. Default: the text starts with ``step`` (case-insensitive) and
    the next character, if any, is not a letter (``"step"``, ``"step 3"``, ``"step_12"``; not
    ``"steps"``). ``regex=True``: ``step`` is a regular expression searched in the text."""
    rx = re.compile(step if regex else rf"(?i)^{re.escape(step)}(?![a-z])")
    codes, uniq = pd.factorize(np.asarray(text.astype(str), dtype=object))   # one search per distinct text
    hits = np.array([rx.search(u) is not None for u in uniq], dtype=bool)
    return hits[codes] if len(hits) else np.zeros(len(codes), dtype=bool)


def kernel_summary(kernels: pd.DataFrame, *, by: str = "name") -> pd.DataFrame:
    """Per kernel of a ``kernels`` frame (``by``: ``"name"``, ``"short_name"`` or ``"class"``, see
    :mod:`.names`): count, total_ns, share_pct (of the summed kernel time), mean_ns, median_ns, min_ns,
    max_ns, std_ns, sorted by total time — the numbers of ``nsys stats -r cuda_gpu_kern_sum``."""
    k = kernels
    key = kernel_classes(k["name"]) if by == "class" else k[by]
    g = k["duration_ns"].groupby(key.rename(by), observed=True, sort=False)
    out = pd.DataFrame({"count": g.size(), "total_ns": g.sum(), "mean_ns": g.mean(), "median_ns": g.median(),
                        "min_ns": g.min(), "max_ns": g.max(), "std_ns": g.std(ddof=1).fillna(0.0)})
    total = out["total_ns"].sum()
    out.insert(2, "share_pct", 100.0 * out["total_ns"] / total if total else np.nan)
    out = out.sort_values(["total_ns", "count"], ascending=False).reset_index()
    out[by] = out[by].astype(object)
    return out


def gpu_busy_total_ns(kernels: pd.DataFrame) -> int:
    """GPU busy time of a ``kernels`` frame: per device, the length of the union of the kernel
    intervals (overlapping streams counted once), summed over devices."""
    k = kernels
    total = 0
    for _, g in k.groupby("device", sort=False):
        s, e = merged_intervals(g["start_ns"].to_numpy(), g["end_ns"].to_numpy())
        total += int((e - s).sum())
    return total


def range_breakdown(gpu_ranges: pd.DataFrame, kernels: pd.DataFrame, *, depth: int | None = None,
                    pattern: str | None = None, group_numbers: bool = True,
                    with_kernels_only: bool = False) -> pd.DataFrame:
    """Per NVTX range text: count, cpu_total_ns / cpu_mean_ns (range durations on the CPU),
    gpu_busy_total_ns / gpu_busy_mean_ns (union of the range's kernels on the GPU), gpu_span_mean_ns,
    kernel_count (total), kernels_per_range, share_pct (= gpu_busy_total_ns / GPU busy time of the whole
    trace x 100; nested ranges each count their kernels, so shares of different depths overlap), and
    the smallest depth at which the text occurs. Sorted by gpu_busy_total_ns.

    ``depth``: keep one nesting level; ``pattern``: regex the text must contain;
    ``group_numbers``: group ``"step 1"``, ``"step 2"`` as ``"step #"``; ``with_kernels_only``: drop
    ranges that launched no kernel. ``kernels`` gives the GPU busy time of the whole trace.
    """
    r = gpu_ranges
    if depth is not None:
        r = r[r["depth"] == depth]
    if pattern is not None:
        r = r[r["text"].astype(str).str.contains(pattern, regex=True)]
    if with_kernels_only:
        r = r[r["kernel_count"] > 0]
    key = (group_text(r["text"]) if group_numbers else r["text"].astype(str)).rename("range")
    g = r.groupby(key, sort=False)
    out = pd.DataFrame({
        "count": g.size(),
        "cpu_total_ns": g["duration_ns"].sum(), "cpu_mean_ns": g["duration_ns"].mean(),
        "gpu_busy_total_ns": g["gpu_busy_ns"].sum(), "gpu_busy_mean_ns": g["gpu_busy_ns"].mean(),
        "gpu_span_mean_ns": g["gpu_span_ns"].mean().astype(float),
        "kernel_count": g["kernel_count"].sum(), "kernels_per_range": g["kernel_count"].mean(),
        "depth": g["depth"].min(),
    })
    busy = gpu_busy_total_ns(kernels)
    out["share_pct"] = 100.0 * out["gpu_busy_total_ns"] / busy if busy else np.nan
    return out.sort_values(["gpu_busy_total_ns", "cpu_total_ns"], ascending=False).reset_index()


def gpu_idle_gaps(kernels: pd.DataFrame, gpu_ranges: pd.DataFrame, *, device: int | None = None,
                  min_gap_ns: int = 0, step: str = "step", regex: bool = False) -> pd.DataFrame:
    """Idle periods of each GPU: the gaps between consecutive busy periods (kernels merged across
    streams, so a gap means *no* kernel ran on the device). Columns: device, gap_start_ns, gap_end_ns,
    gap_ns, before / after (names of the kernel that ended / started the gap), step_range_id and
    in_step (the step range whose projected GPU span [gpu_start_ns, gpu_end_ns] contains the gap —
    idle time *inside* a step — or NA / False for gaps between steps). Steps are matched as in
    :func:`step_mask` among ``gpu_ranges``. Only gaps >= ``min_gap_ns`` (default: all, > 0) are kept."""
    k = kernels
    if device is not None:
        k = k[k["device"] == device]
    frames = []
    for dev, g in k.groupby("device", sort=True):
        order = np.argsort(g["start_ns"].to_numpy(), kind="stable")
        s = g["start_ns"].to_numpy()[order]
        e = g["end_ns"].to_numpy()[order]
        names = g["name"].astype(object).to_numpy()[order]
        run = np.maximum.accumulate(e)
        gap = s[1:] - run[:-1]
        at = np.flatnonzero(gap > max(0, min_gap_ns - 1))
        # kernel that ended the busy period: the one whose end equals the running max
        last_end_idx = np.maximum.accumulate(np.where(e == run, np.arange(len(e)), 0))
        frames.append(pd.DataFrame({"device": dev, "gap_start_ns": run[at], "gap_end_ns": s[at + 1],
                                    "gap_ns": gap[at], "before": names[last_end_idx[at]],
                                    "after": names[at + 1]}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["device", "gap_start_ns", "gap_end_ns", "gap_ns", "before", "after"])
    steps = gpu_ranges
    steps = steps[step_mask(steps["text"], step, regex=regex) & (steps["kernel_count"] > 0)]
    step_id = np.full(len(out), -1, np.int64)
    if len(steps) and len(out):
        st = steps.sort_values("gpu_start_ns")
        gs = st["gpu_start_ns"].to_numpy(np.int64)
        ge = st["gpu_end_ns"].to_numpy(np.int64)
        pos = np.searchsorted(gs, out["gap_start_ns"].to_numpy(np.int64), side="right") - 1
        ok = pos >= 0
        ok[ok] = out["gap_end_ns"].to_numpy(np.int64)[ok] <= ge[pos[ok]]
        step_id[ok] = st["range_id"].to_numpy()[pos[ok]]
    out["step_range_id"] = pd.arrays.IntegerArray(np.maximum(step_id, 0), step_id < 0)
    out["in_step"] = step_id >= 0
    return out


def step_overhead(gpu_ranges: pd.DataFrame, *, step: str = "step", regex: bool = False) -> pd.DataFrame:
    """Per step range of ``gpu_ranges`` (matched as in :func:`step_mask`): GPU busy time against wall
    time.

    Columns: range_id, text, pid, tid, start_ns, cpu_ns (range duration on the CPU), period_ns (to the
    next step's start on the same thread; NA for the last), kernel_count, gpu_start_ns, gpu_end_ns,
    gpu_span_ns, gpu_busy_ns, gpu_idle_in_span_ns (= span - busy), launch_latency_ns (first kernel
    start - range start), wall_ns (= max(range end, last kernel end) - range start: until both the host
    and the step's GPU work are done), overhead_ns (= wall_ns - gpu_busy_ns: time the step costs beyond
    its kernels, i.e. launch and host overhead), busy_pct (= 100 x gpu_busy_ns / wall_ns).
    """
    r = gpu_ranges
    r = r[step_mask(r["text"], step, regex=regex)].copy()
    r = r.sort_values(["pid", "tid", "start_ns"], kind="stable")
    nxt = r.groupby(["pid", "tid"], sort=False)["start_ns"].shift(-1)
    out = pd.DataFrame({
        "range_id": r["range_id"], "text": r["text"], "pid": r["pid"], "tid": r["tid"],
        "start_ns": r["start_ns"], "cpu_ns": r["duration_ns"],
        "period_ns": (nxt - r["start_ns"]).astype("Int64"),
        "kernel_count": r["kernel_count"], "gpu_start_ns": r["gpu_start_ns"], "gpu_end_ns": r["gpu_end_ns"],
        "gpu_span_ns": r["gpu_span_ns"], "gpu_busy_ns": r["gpu_busy_ns"],
    })
    out["gpu_idle_in_span_ns"] = out["gpu_span_ns"] - out["gpu_busy_ns"]
    out["launch_latency_ns"] = out["gpu_start_ns"] - out["start_ns"]
    end = np.maximum(r["end_ns"].to_numpy(np.int64), r["gpu_end_ns"].fillna(0).to_numpy(np.int64))
    out["wall_ns"] = end - out["start_ns"].to_numpy(np.int64)
    out["overhead_ns"] = out["wall_ns"] - out["gpu_busy_ns"]
    out["busy_pct"] = np.where(out["wall_ns"] > 0, 100.0 * out["gpu_busy_ns"] / out["wall_ns"].clip(lower=1), np.nan)
    return out.sort_values("start_ns", kind="stable", ignore_index=True)


def _long(df_a: pd.DataFrame, df_b: pd.DataFrame, key: str, metrics: Sequence[str], kind: str,
          labels: tuple[str, str]) -> pd.DataFrame:
    a = df_a.set_index(key)[list(metrics)]
    b = df_b.set_index(key)[list(metrics)]
    keys = a.index.union(b.index, sort=False)
    rows = []
    for m in metrics:
        va = a[m].reindex(keys).astype(float)
        vb = b[m].reindex(keys).astype(float)
        rows.append(pd.DataFrame({"kind": kind, "key": keys.astype(str), "metric": m,
                                  labels[0]: va.to_numpy(), labels[1]: vb.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def kernel_class_summary(kernels: pd.DataFrame,
                         rules: Sequence[tuple[str, str]] = DEFAULT_CLASS_RULES) -> pd.DataFrame:
    """Per kernel class (see :mod:`.names`; ``rules`` overrides the class rules): class (str), count,
    total_ns, mean_ns, median_ns."""
    k = kernels
    g = k["duration_ns"].groupby(kernel_classes(k["name"], rules).rename("class"), observed=True)
    out = pd.DataFrame({"count": g.size(), "total_ns": g.sum(), "mean_ns": g.mean(),
                        "median_ns": g.median()}).reset_index()
    out["class"] = out["class"].astype(str)
    return out


def compare(kernels_a: pd.DataFrame, kernels_b: pd.DataFrame, ranges_a: pd.DataFrame | None = None,
            ranges_b: pd.DataFrame | None = None, labels: tuple[str, str] = ("flashinfer", "triton"), *,
            rules: Sequence[tuple[str, str]] = DEFAULT_CLASS_RULES) -> pd.DataFrame:
    """Side-by-side numbers of two traces, long format: one row per (kind, key, metric) with the
    value in each trace (columns named by ``labels``), ``delta`` (= b - a) and ``ratio`` (= b / a,
    NaN when a is 0 or missing).

    * kind ``"kernel_class"`` from the ``kernels`` frames (key: class, see
      :func:`kernel_class_summary`): metrics count, total_ns, mean_ns, median_ns;
    * kind ``"range"`` from the :func:`range_breakdown` tables ``ranges_a`` / ``ranges_b`` (key: range
      text with numbers grouped), when given and not both empty: count, gpu_busy_mean_ns,
      cpu_mean_ns, kernels_per_range.
    """
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError("labels must be two different names")
    parts = [_long(kernel_class_summary(kernels_a, rules), kernel_class_summary(kernels_b, rules), "class",
                   ("count", "total_ns", "mean_ns", "median_ns"), "kernel_class", labels)]
    ra = ranges_a if ranges_a is not None else pd.DataFrame()
    rb = ranges_b if ranges_b is not None else pd.DataFrame()
    if len(ra) or len(rb):
        cols = ["range", "count", "gpu_busy_mean_ns", "cpu_mean_ns", "kernels_per_range"]
        ra = ra if len(ra) else pd.DataFrame(columns=cols)
        rb = rb if len(rb) else pd.DataFrame(columns=cols)
        parts.append(_long(ra, rb, "range", ("count", "gpu_busy_mean_ns", "cpu_mean_ns", "kernels_per_range"),
                           "range", labels))
    out = pd.concat(parts, ignore_index=True)
    a, b = out[labels[0]], out[labels[1]]
    out["delta"] = b - a
    out["ratio"] = np.where((a != 0) & a.notna(), b / a.where(a != 0), np.nan)
    return out
