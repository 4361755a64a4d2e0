"""Physical-consistency checks of a trace's frames, run by :class:`gdnlab.traces.Trace` as it reads them.

A trace whose times are each valid (integer ns, start <= end: the readers check that) can still
describe something no GPU did. These checks take the raw frames (:mod:`.nsys`, :mod:`.kineto`) and
either refuse the file (:class:`~.errors.TraceDataError`, when every number built on it would be
wrong) or return a warning that :meth:`Trace.provenance` shows and ``Trace.metadata["checks"]`` lists:

* rows stored twice (a kernel with the same name, device, stream, correlation id, start and end; an
  API call with the same name, thread, correlation id, start and end): counted once, with a warning;
* kernels launched one by one (not CUDA-graph nodes, which may run side by side) on one stream of
  one process run one after another: when their durations add up to more than the time from the stream's first
  start to its last end, the file is refused; a kernel starting while the previous one on its
  stream still runs (by more than :data:`OVERLAP_TOLERANCE_NS`) is a warning, and so are graph
  nodes of one stream adding up to more than :data:`GRAPH_CONCURRENCY` times that time;
* a kernel cannot start before the CUDA call that launched it: warning (the CPU and GPU clocks of the
  trace disagree, so the kernels' NVTX ranges may be wrong);
* absurd end times, beyond the trace's last event by more than :func:`absurd_limit` allows (e.g. an
  open range written with a 2^62 ns sentinel end): a kernel's is refused; NVTX ranges are left out as
  never closed, with a warning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TraceDataError

__all__ = ["drop_duplicates", "check_streams", "kernels_before_launch", "absurd_limit", "check_kernel_ends",
           "drop_absurd_ranges", "OVERLAP_TOLERANCE_NS", "GRAPH_CONCURRENCY", "BUSY_TOLERANCE"]

#: a kernel may start this long before the previous one on its stream ends (clock rounding), ns
OVERLAP_TOLERANCE_NS = 1_000
#: kernels launched one by one on a stream may add up to this fraction of its span (rounding)
BUSY_TOLERANCE = 1.05
#: CUDA-graph nodes of one stream adding up to more than this times its span get a warning
GRAPH_CONCURRENCY = 2.0
#: an end this far (ns) after the trace's last event is absurd, whatever the trace's length
_ABSURD_NS = 3600 * 10**9

KERNEL_KEY = ["name", "device", "stream", "correlation_id", "start_ns", "end_ns"]
API_KEY = ["name", "api", "pid", "tid", "correlation_id", "start_ns", "end_ns"]


def drop_duplicates(df: pd.DataFrame, key: list[str], what: str) -> tuple[pd.DataFrame, str | None]:
    """``df`` without rows whose ``key`` columns repeat an earlier row, and a warning when any did."""
    cols = [c for c in key if c in df.columns]
    if df.empty or not cols:
        return df, None
    dup = df.duplicated(cols, keep="first").to_numpy()
    n = int(dup.sum())
    if not n:
        return df, None
    return (df[~dup].reset_index(drop=True),
            f"{n} {what} rows are stored twice (same {', '.join(c.removesuffix('_ns') for c in cols)}); each is "
            f"counted once")


def check_streams(path: Path, kernels: pd.DataFrame) -> list[str]:
    """Refuse kernels launched one by one that overlap on a stream beyond what one stream can run;
    return warnings for smaller overlaps and for heavily concurrent graph nodes (see the module)."""
    out: list[str] = []
    if kernels.empty:
        return out
    by = [c for c in ("pid", "device", "stream") if c in kernels.columns]   # stream ids are per process
    for keys, g in kernels.groupby(by, sort=True, observed=True):
        dev, stream = keys[-2], keys[-1]
        is_graph = (g["graph_node_id"].notna() if "graph_node_id" in g else pd.Series(False, index=g.index)).to_numpy()
        for nodes, part in ((False, g[~is_graph]), (True, g[is_graph])):
            if len(part) < 2:
                continue
            part = part.sort_values("start_ns", kind="stable")
            s, e = part["start_ns"].to_numpy(np.int64), part["end_ns"].to_numpy(np.int64)
            span = int(e.max() - s.min())
            busy = int((e - s).sum())
            ratio = busy / span if span > 0 else float("inf")
            where = f"stream {stream} (device {dev})"
            if nodes:
                if ratio > GRAPH_CONCURRENCY:
                    out.append(f"CUDA-graph kernels on {where} add up to {ratio:.1f}x the time from their first "
                               f"start to their last end (that many running at once on average)")
                continue
            if ratio > BUSY_TOLERANCE:
                raise TraceDataError(path, f"{len(part)} kernels on {where} overlap: their durations add up to "
                                           f"{ratio:.1f}x the time from the first start to the last end, and kernels "
                                           f"launched one by one on a stream run one after another")
            early = np.maximum.accumulate(e)[:-1] - s[1:]
            n = int((early > OVERLAP_TOLERANCE_NS).sum())
            if n:
                out.append(f"{n} kernels on {where} start while the previous one on that stream still runs (up to "
                           f"{early.max() / 1000:.1f} µs before it ends)")
    return out


def kernels_before_launch(kernels: pd.DataFrame) -> str | None:
    """A warning when linked kernels start before the API call that launched them (``launch_start_ns``)."""
    if "launch_start_ns" not in kernels or kernels.empty:
        return None
    launch = pd.to_numeric(kernels["launch_start_ns"], errors="coerce")
    linked = launch.notna().to_numpy()
    if not linked.any():
        return None
    lead = launch.to_numpy(np.float64, na_value=np.nan)[linked] - kernels["start_ns"].to_numpy(np.float64)[linked]
    n = int((lead > 0).sum())
    if not n:
        return None
    return (f"{n} of {int(linked.sum())} kernels start before the CUDA call that launched them (up to "
            f"{lead.max() / 1000:.1f} µs before it): the trace's CPU and GPU clocks disagree, so the NVTX ranges "
            f"these kernels fall in may be wrong")


def absurd_limit(kernels: pd.DataFrame, api: pd.DataFrame, nvtx: pd.DataFrame | None = None) -> int | None:
    """The latest end time (ns) that is not absurd: the trace's last kernel start, API call end or NVTX
    start, plus one hour or ten times the trace's length, whichever is more. ``None`` without events."""
    lo, hi = [], []
    for frame, ends in ((kernels, "start_ns"), (api, "end_ns"), (nvtx, "start_ns")):
        if frame is not None and len(frame):
            lo.append(int(frame["start_ns"].min()))
            hi.append(int(frame[ends].max()))
    if not hi:
        return None
    first, last = min(lo), max(hi)
    return last + max(_ABSURD_NS, 10 * (last - first))


def check_kernel_ends(path: Path, kernels: pd.DataFrame, limit: int | None) -> None:
    """Refuse kernels ending after ``limit`` (:func:`absurd_limit`)."""
    if limit is None or kernels.empty:
        return
    bad = kernels["end_ns"].to_numpy(np.int64) > limit
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name, end = str(kernels["name"].iloc[i])[:60], int(kernels["end_ns"].iloc[i])
        raise TraceDataError(path, f"{int(bad.sum())} of {len(kernels)} kernels end at an absurd time (first: "
                                   f"{name!r} ends at {end} ns, more than an hour after the trace's last event)")


def drop_absurd_ranges(nvtx: pd.DataFrame, limit: int | None) -> tuple[pd.DataFrame, str | None]:
    """``nvtx`` without ranges ending after ``limit`` (:func:`absurd_limit`), and a warning when any did."""
    if limit is None or nvtx.empty:
        return nvtx, None
    bad = nvtx["end_ns"].to_numpy(np.int64) > limit
    n = int(bad.sum())
    if not n:
        return nvtx, None
    first = nvtx[bad].iloc[0]
    return (nvtx[~bad].reset_index(drop=True),
            f"{n} NVTX range(s) end at an absurd time (first: {str(first['text'])[:40]!r} at {int(first['end_ns'])} "
            f"ns, more than an hour after the trace's last event): left out, as never closed")
