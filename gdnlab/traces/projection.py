"""NVTX-to-GPU projection and the interval helpers it needs, in vectorised numpy (times in ns).

The projection follows nsys's ``nvtx_gpu_proj_trace`` recipe:

* a kernel is *launched by* the CUDA API call (runtime or driver) with the same correlation id in the
  same process; a ``cudaGraphLaunch`` launches every kernel of the graph, which all carry its
  correlation id;
* a kernel *belongs to* every NVTX range on the launching thread whose CPU interval contains the
  start of the launch call (``range.start <= launch.start <= range.end``), nested ranges included;
* per range: ``kernel_count``, ``kernel_sum_ns`` (sum of kernel durations), ``gpu_start_ns`` (first
  kernel start), ``gpu_end_ns`` (last kernel end) and ``gpu_busy_ns`` (length of the union of the
  kernel intervals, so overlapping kernels on several streams are not double counted).

The array functions (:func:`link_launches`, :func:`nesting_depth`, :func:`project_ranges`, ...) take
numpy arrays; :func:`link_frames`, :func:`nvtx_frame` and :func:`gpu_ranges_frame` apply them to the
frames of :class:`~gdnlab.traces.Trace`. Nothing loops over rows in Python: loops run over threads
(a handful) at most.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["link_launches", "nesting_depth", "project_ranges", "merged_intervals", "union_ns",
           "slice_reduce", "link_frames", "nvtx_frame", "gpu_ranges_frame", "thread_key"]

_I64 = np.int64


def link_launches(kernel_pid: np.ndarray, kernel_corr: np.ndarray,
                  api_pid: np.ndarray, api_corr: np.ndarray) -> np.ndarray:
    """Index of the API call that launched each kernel (same process and correlation id), or -1.

    When several API rows share a (pid, correlation id) the first one wins (callers put runtime rows
    before driver rows). Pids may be any integers (e.g. -1 when unknown on both sides); a negative
    correlation id (unknown) links to nothing.
    """
    kernel_pid = np.asarray(kernel_pid, _I64)
    kernel_corr = np.asarray(kernel_corr, _I64)
    api_pid = np.asarray(api_pid, _I64)
    api_corr = np.asarray(api_corr, _I64)
    out = np.full(len(kernel_corr), -1, dtype=np.intp)
    if len(api_corr) == 0 or len(kernel_corr) == 0:
        return out
    codes, pids = pd.factorize(np.concatenate([api_pid, kernel_pid]))
    a_code, k_code = codes[: len(api_pid)], codes[len(api_pid):]
    lo = min(int(api_corr.min()), int(kernel_corr.min()))
    span = max(int(api_corr.max()), int(kernel_corr.max())) - lo + 1
    bits = max(1, int(span - 1).bit_length())
    if bits + max(1, len(pids).bit_length()) > 62:     # cannot pack: fall back to a sort on two keys
        order = np.lexsort((api_corr, a_code))
        keys_api = np.rec.fromarrays([a_code[order], api_corr[order]])
        keys_k = np.rec.fromarrays([k_code, kernel_corr])
        pos = np.searchsorted(keys_api, keys_k)
        ok = pos < len(order)
        ok[ok] = keys_api[pos[ok]] == keys_k[ok]
        # first occurrence among duplicates: searchsorted 'left' on a stable lexsort gives it
        out[ok] = order[pos[ok]]
        return out
    key_api = (a_code.astype(_I64) << bits) | (api_corr - lo)
    key_k = (k_code.astype(_I64) << bits) | (kernel_corr - lo)
    index = pd.Index(key_api)                          # hash lookups, no sort
    if not index.is_unique:
        first = np.flatnonzero(~index.duplicated(keep="first"))
        pos = index[first].get_indexer(key_k)
        out = np.where(pos >= 0, first[np.maximum(pos, 0)], -1).astype(np.intp)
    else:
        out = index.get_indexer(key_k).astype(np.intp)
    out[kernel_corr < 0] = -1                          # unknown correlation id: no link
    return out


def _groups(thread: np.ndarray):
    """Yield (thread_value, index array) for each distinct thread (loop over threads, not rows)."""
    thread = np.asarray(thread)
    if len(thread) == 0:
        return
    order = np.argsort(thread, kind="stable")
    t_sorted = thread[order]
    cuts = np.flatnonzero(np.diff(t_sorted)) + 1
    for idx in np.split(order, cuts):
        yield thread[idx[0]], idx


def nesting_depth(thread: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Nesting level of each range on its thread: the number of ranges of the same thread that were
    opened before it (start earlier, or same start and later end) and are still open at its start.

    For properly nested push/pop ranges this is the usual depth (0 = outermost). Zero-length ranges are
    treated as 1 ns long. Overlapping start/end ranges get the number of ranges open at their start.
    """
    start = np.asarray(start, _I64)
    end_eff = np.maximum(np.asarray(end, _I64), start + 1)
    depth = np.zeros(len(start), dtype=_I64)
    for _, idx in _groups(thread):
        s, e = start[idx], end_eff[idx]
        order = np.lexsort((-e, s))                 # start asc, end desc: parents before children
        pos = np.arange(len(idx), dtype=_I64)
        closed = np.searchsorted(np.sort(e), s[order], side="right")
        depth[idx[order]] = pos - closed
    return depth


def slice_reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 empty) -> np.ndarray:
    """``ufunc.reduce(values[lo[i]:hi[i]])`` for every i in one ``reduceat`` call; ``empty`` where
    ``lo[i] >= hi[i]``. Slices may overlap or nest."""
    lo = np.asarray(lo, np.intp)
    hi = np.asarray(hi, np.intp)
    res = np.full(len(lo), empty, dtype=np.result_type(values, np.asarray(empty)))
    if len(values) == 0 or len(lo) == 0:
        return res
    ext = np.append(values, np.asarray(empty, dtype=values.dtype))
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2] = np.minimum(lo, len(values))
    idx[1::2] = np.minimum(hi, len(values))
    red = ufunc.reduceat(ext, idx)[0::2]
    nonempty = hi > lo
    res[nonempty] = red[nonempty]
    return res


def merged_intervals(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals ``[start, end)`` as sorted, disjoint (starts, ends) arrays."""
    start = np.asarray(start, _I64)
    end = np.asarray(end, _I64)
    if len(start) == 0:
        return start[:0], end[:0]
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    return s[first], run_end[last]


def union_ns(start: np.ndarray, end: np.ndarray) -> int:
    """Length in ns of the union of intervals ``[start, end)``."""
    s, e = merged_intervals(start, end)
    return int((e - s).sum())


def _busy_exact(lo: np.ndarray, hi: np.ndarray, ks: np.ndarray, ke: np.ndarray) -> np.ndarray:
    """Union length of ``[ks, ke)`` over each slice ``[lo, hi)``: expand (slice, kernel) pairs,
    sort each slice by start, and sum the parts not covered by the running maximum of the ends."""
    counts = (hi - lo).astype(np.intp)
    out = np.zeros(len(lo), dtype=_I64)
    total = int(counts.sum())
    if total == 0:
        return out
    grp = np.repeat(np.arange(len(lo), dtype=np.intp), counts)
    first = np.cumsum(counts) - counts
    member = np.arange(total, dtype=np.intp) - np.repeat(first, counts) + np.repeat(lo, counts)
    s, e = ks[member], ke[member]
    order = np.lexsort((s, grp))
    grp, s, e = grp[order], s[order], e[order]
    # running max of ends within each group: offset groups so one global accumulate does it
    base = int(min(s.min(), e.min()))
    width = int(max(s.max(), e.max())) - base + 1
    if width * (len(lo) + 1) < (1 << 62):
        shifted = (e - base) + grp.astype(_I64) * width
        run = np.maximum.accumulate(shifted) - grp.astype(_I64) * width + base
    else:  # pragma: no cover - astronomically long traces: per-group fallback
        run = e.copy()
        for g in np.unique(grp):
            m = grp == g
            run[m] = np.maximum.accumulate(e[m])
    prev = np.empty_like(run)
    prev[0] = np.iinfo(_I64).min
    prev[1:] = run[:-1]
    newgrp = np.ones(len(grp), dtype=bool)
    newgrp[1:] = grp[1:] != grp[:-1]
    prev[newgrp] = np.iinfo(_I64).min
    part = np.clip(e - np.maximum(s, prev), 0, None)
    starts = np.flatnonzero(newgrp)
    out[grp[starts]] = np.add.reduceat(part, starts)
    return out


def project_ranges(range_thread: np.ndarray, range_start: np.ndarray, range_end: np.ndarray,
                   kernel_thread: np.ndarray, launch_start: np.ndarray,
                   kernel_start: np.ndarray, kernel_end: np.ndarray,
                   *, exact: bool = False) -> dict[str, np.ndarray]:
    """Project CPU ranges onto the GPU (see the module docstring).

    Args:
        range_thread, range_start, range_end: one entry per range (thread: any integer code).
        kernel_thread, launch_start: thread code and start of the launching API call per kernel;
            kernels with ``kernel_thread < 0`` (no launch found) are ignored.
        kernel_start, kernel_end: GPU interval of each kernel.
        exact: always use the pairwise union computation (the fast path, used when the kernels of a
            range run one after another without overlap, gives the same numbers; tests compare both).

    Returns arrays, one entry per range: ``kernel_count``, ``kernel_sum_ns``, ``gpu_start_ns``,
    ``gpu_end_ns``, ``gpu_busy_ns`` (``gpu_*`` are -1 where a range launched no kernel).
    """
    range_thread = np.asarray(range_thread, _I64)
    rs = np.asarray(range_start, _I64)
    re_ = np.asarray(range_end, _I64)
    n = len(rs)
    kt = np.asarray(kernel_thread, _I64)
    keep = kt >= 0
    kt = kt[keep]
    lt = np.asarray(launch_start, _I64)[keep]
    ks = np.asarray(kernel_start, _I64)[keep]
    ke = np.asarray(kernel_end, _I64)[keep]
    order = np.lexsort((ks, lt, kt))                  # thread, then launch time, then GPU start
    kt, lt, ks, ke = kt[order], lt[order], ks[order], ke[order]
    lo = np.zeros(n, dtype=np.intp)
    hi = np.zeros(n, dtype=np.intp)
    t_first = np.searchsorted(kt, range_thread, side="left")
    t_last = np.searchsorted(kt, range_thread, side="right")
    for _, idx in _groups(range_thread):
        a, b = t_first[idx[0]], t_last[idx[0]]
        if a == b:
            continue
        lo[idx] = a + np.searchsorted(lt[a:b], rs[idx], side="left")
        hi[idx] = a + np.searchsorted(lt[a:b], re_[idx], side="right")
    count = (hi - lo).astype(_I64)
    dur = ke - ks
    csum = np.concatenate([[0], np.cumsum(dur)])
    ksum = csum[hi] - csum[lo]
    gstart = slice_reduce(np.minimum, ks, lo, hi, np.iinfo(_I64).max)
    gend = slice_reduce(np.maximum, ke, lo, hi, np.iinfo(_I64).min)
    # fast path: a slice whose kernels (in launch order) each start after the previous one ended
    # is a chain of disjoint intervals, so its union is the plain sum of durations
    viol = np.zeros(len(ks), dtype=_I64)
    if len(ks) > 1:
        viol[:-1] = (ks[1:] < ke[:-1]) & (kt[1:] == kt[:-1])
    vcum = np.concatenate([[0], np.cumsum(viol)])
    has_overlap = (count > 1) & ((vcum[np.maximum(hi - 1, lo)] - vcum[lo]) > 0)
    if exact:
        has_overlap = count > 0
    busy = ksum.copy()
    if has_overlap.any():
        sel = np.flatnonzero(has_overlap)
        busy[sel] = _busy_exact(lo[sel], hi[sel], ks, ke)
    none = count == 0
    gstart[none] = -1
    gend[none] = -1
    busy[none] = 0
    return {"kernel_count": count, "kernel_sum_ns": ksum, "gpu_start_ns": gstart, "gpu_end_ns": gend,
            "gpu_busy_ns": busy}


# --------------------------------------------------------------------------- frames

def _nullable(values: np.ndarray, mask: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(np.int64), mask)


def thread_key(pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """One int64 per (pid, tid): ``pid << 32 ^ (tid & 0xFFFFFFFF)``."""
    return (np.asarray(pid, np.int64) << 32) ^ (np.asarray(tid, np.int64) & 0xFFFFFFFF)


def link_frames(kernels: pd.DataFrame, api: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Add the launching call's ``tid``, ``launch_start_ns`` and ``launch_api`` (NA where none) to a
    raw kernel frame (changed in place, and returned) and give the index of that call in ``api`` per
    kernel (-1 where none; see :func:`link_launches`). When no kernel knows its process (``pid`` -1,
    Kineto), kernels are linked by correlation id alone, and take their ``pid`` from the call."""
    k, a = kernels, api
    k_pid = k["pid"].to_numpy()
    a_pid = a["pid"].to_numpy()
    if len(k_pid) and (k_pid < 0).all():          # no process on the kernel side: correlation only
        a_pid = np.full(len(a), -1, np.int64)
    idx = link_launches(k_pid, k["correlation_id"].to_numpy(), a_pid, a["correlation_id"].to_numpy())
    miss = idx < 0
    safe = np.where(miss, 0, idx)
    if len(a):
        if (k_pid < 0).any():
            k["pid"] = np.where(k_pid < 0, np.where(miss, -1, a["pid"].to_numpy()[safe]), k_pid)
        k["tid"] = _nullable(a["tid"].to_numpy()[safe], miss)
        k["launch_start_ns"] = _nullable(a["start_ns"].to_numpy()[safe], miss)
        codes = np.where(miss, -1, a["name"].cat.codes.to_numpy()[safe])
        k["launch_api"] = pd.Categorical.from_codes(codes, categories=a["name"].cat.categories)
    else:
        k["tid"] = _nullable(np.zeros(len(k), np.int64), np.ones(len(k), bool))
        k["launch_start_ns"] = k["tid"].copy()
        k["launch_api"] = pd.Categorical([None] * len(k), categories=[])
    return k, idx


def nvtx_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """A raw NVTX frame with ``duration_ns`` and ``depth`` (:func:`nesting_depth` per thread) added,
    indexed by ``range_id``."""
    df = raw.copy()
    df["duration_ns"] = df["end_ns"] - df["start_ns"]
    thread = pd.factorize(thread_key(df["pid"].to_numpy(), df["tid"].to_numpy()))[0]
    df["depth"] = nesting_depth(thread, df["start_ns"].to_numpy(), df["end_ns"].to_numpy())
    df.index.name = "range_id"
    return df


def gpu_ranges_frame(nvtx: pd.DataFrame, kernels: pd.DataFrame, api: pd.DataFrame,
                     launch_index: np.ndarray) -> pd.DataFrame:
    """Every NVTX range of :func:`nvtx_frame` projected onto the GPU with :func:`project_ranges`:
    range_id, text, domain, kind, pid, tid, depth, start_ns, end_ns, duration_ns, kernel_count,
    kernel_sum_ns, gpu_start_ns / gpu_end_ns / gpu_span_ns (Int64, NA without kernels), gpu_busy_ns.
    ``launch_index`` comes from :func:`link_frames`."""
    nv, k, a, idx = nvtx, kernels, api, launch_index
    has = idx >= 0
    safe = np.where(has, idx, 0)
    r_key = thread_key(nv["pid"].to_numpy(), nv["tid"].to_numpy())
    if len(a):
        l_key = thread_key(a["pid"].to_numpy()[safe], a["tid"].to_numpy()[safe])
        l_start = a["start_ns"].to_numpy()[safe]
    else:
        l_key = np.zeros(len(k), np.int64)
        l_start = np.zeros(len(k), np.int64)
    codes, _ = pd.factorize(np.concatenate([r_key, l_key]))
    r_code, k_code = codes[: len(r_key)], codes[len(r_key):]
    k_code = np.where(has, k_code, -1)
    p = project_ranges(r_code, nv["start_ns"].to_numpy(), nv["end_ns"].to_numpy(), k_code, l_start,
                       k["start_ns"].to_numpy(), k["end_ns"].to_numpy())
    none = p["kernel_count"] == 0
    out = nv[["text", "domain", "kind", "pid", "tid", "depth", "start_ns", "end_ns", "duration_ns"]].copy()
    out["kernel_count"] = p["kernel_count"]
    out["kernel_sum_ns"] = p["kernel_sum_ns"]
    out["gpu_start_ns"] = _nullable(p["gpu_start_ns"], none)
    out["gpu_end_ns"] = _nullable(p["gpu_end_ns"], none)
    out["gpu_span_ns"] = _nullable(p["gpu_end_ns"] - p["gpu_start_ns"], none)
    out["gpu_busy_ns"] = p["gpu_busy_ns"]
    return out.reset_index()
