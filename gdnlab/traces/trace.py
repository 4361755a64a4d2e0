"""The :class:`Trace` facade: one object over an nsys SQLite export or a Kineto JSON trace.

Frames are built on first use and cached. All times are integer nanoseconds on the trace's own
clock (nsys: its session clock; Kineto: the trace's µs timestamps x 1000).
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TraceError, TraceNotFoundError
from .kineto import GZIP_MAGIC, KinetoSource
from .nsys import SQLITE_MAGIC, NsysSource
from .projection import link_launches, nesting_depth, project_ranges

__all__ = ["Trace", "load", "sniff"]


def sniff(path: str | Path) -> str:
    """``"nsys"`` (SQLite header) or ``"kineto"`` (gzip, or JSON text); raises :class:`TraceError`."""
    path = Path(path)
    if not path.exists():
        raise TraceNotFoundError(path)
    if path.is_dir():
        raise TraceError(path, "is a directory, not a trace file")
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        raise TraceError(path, "empty file (0 bytes), not a trace")
    if head.startswith(SQLITE_MAGIC):
        return "nsys"
    if head.startswith(GZIP_MAGIC) or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "kineto"
    raise TraceError(path, "neither an nsys SQLite export (no 'SQLite format 3' header) nor a Kineto "
                           "JSON trace (no JSON object / gzip data); export a .nsys-rep with "
                           "'nsys export --type sqlite'")


def load(path: str | Path, *, workers: int | None = None) -> Trace:
    """Open a trace: an nsys SQLite export, or a PyTorch profiler (Kineto) chrome trace (``.json`` or
    ``.json.gz``), recognised by content, not by name. The file is validated now; frames are read
    lazily. Raises :class:`TraceError` (a ``ValueError``) for anything that is not a readable trace,
    and :class:`TraceNotFoundError` (also a ``FileNotFoundError``) for a missing file.
    ``workers``: reader threads for nsys exports (default: up to 4, by CPU count)."""
    kind = sniff(path)
    source = NsysSource(path, workers=workers) if kind == "nsys" else KinetoSource(path)
    return Trace(source)


def _nullable(values: np.ndarray, mask: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(np.int64), mask)


class Trace:
    """A loaded trace. Attributes (pandas DataFrames, built on first access, times in ns):

    * ``kernels``: name (demangled), short_name, start_ns, end_ns, duration_ns, device, stream,
      correlation_id, grid_x/y/z, block_x/y/z, graph_node_id (Int64, NA when not a graph node),
      global_pid, pid, and from the launching API call (NA when none was recorded): tid,
      launch_start_ns, launch_api (e.g. ``cudaLaunchKernel_v7000``, ``cudaGraphLaunch_v10000``).
    * ``runtime``: CUDA runtime and driver API calls: name, start_ns, end_ns, duration_ns,
      correlation_id, global_tid, pid, tid, api ("runtime" / "driver").
    * ``nvtx``: closed NVTX push/pop and start/end ranges (Kineto: ``user_annotation`` events):
      text, start_ns, end_ns, duration_ns, kind, domain, global_tid, pid, tid, depth (0 = outermost
      on its thread). The index is the ``range_id`` used by ``gpu_ranges``.
    * ``gpu_ranges``: every NVTX range projected onto the GPU (see :mod:`.projection`): range_id,
      text, domain, kind, pid, tid, depth, start_ns, end_ns, duration_ns (CPU), kernel_count,
      kernel_sum_ns, gpu_start_ns, gpu_end_ns, gpu_span_ns (Int64, NA without kernels), gpu_busy_ns.
    * ``metadata``: dict: source, file, gpus (name, sm, compute_capability, sm_count, memory_bytes,
      memory_bandwidth_bytes_per_s, ...), nsys_version / schema_version, capture start, counts.
    """

    def __init__(self, source: NsysSource | KinetoSource) -> None:
        self._source = source
        self.path: Path = source.path
        self.kind: str = source.kind

    def __repr__(self) -> str:
        return f"Trace({self.kind}, {self.path.name!r})"

    @property
    def name(self) -> str:
        """The file name, e.g. ``fi_c64.sqlite``."""
        return self.path.name

    # ------------------------------------------------------------------ frames
    @cached_property
    def _kernels_and_runtime(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        k = self._source.read_kernels()
        a = self._source.read_api_calls()
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
        self._launch_index = idx
        return k, a

    @property
    def kernels(self) -> pd.DataFrame:
        return self._kernels_and_runtime[0]

    @property
    def runtime(self) -> pd.DataFrame:
        return self._kernels_and_runtime[1]

    @cached_property
    def _nvtx_raw(self) -> tuple[pd.DataFrame, int]:
        return self._source.read_nvtx()

    @cached_property
    def nvtx(self) -> pd.DataFrame:
        df, _ = self._nvtx_raw
        df = df.copy()
        df["duration_ns"] = df["end_ns"] - df["start_ns"]
        thread = self._thread_codes(df["pid"].to_numpy(), df["tid"].to_numpy())
        df["depth"] = nesting_depth(thread, df["start_ns"].to_numpy(), df["end_ns"].to_numpy())
        df.index.name = "range_id"
        return df

    @staticmethod
    def _thread_key(pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
        return (np.asarray(pid, np.int64) << 32) ^ (np.asarray(tid, np.int64) & 0xFFFFFFFF)

    def _thread_codes(self, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
        return pd.factorize(self._thread_key(pid, tid))[0]

    @cached_property
    def gpu_ranges(self) -> pd.DataFrame:
        nv = self.nvtx
        k = self.kernels
        a = self.runtime
        idx = self._launch_index
        has = idx >= 0
        safe = np.where(has, idx, 0)
        r_key = self._thread_key(nv["pid"].to_numpy(), nv["tid"].to_numpy())
        if len(a):
            l_key = self._thread_key(a["pid"].to_numpy()[safe], a["tid"].to_numpy()[safe])
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

    @cached_property
    def metadata(self) -> dict:
        md = dict(self._source.read_metadata())
        md["file"] = self.path.name
        md["path"] = str(self.path)
        md["nvtx_unclosed"] = self._nvtx_raw[1]
        return md

    # ------------------------------------------------------------------ provenance
    @property
    def gpu(self) -> dict | None:
        """The first GPU in the metadata (the one the kernels ran on, in a one-GPU capture)."""
        gpus = self.metadata.get("gpus") or []
        return gpus[0] if gpus else None

    def provenance(self) -> str:
        """One line for figure footnotes: ``measured · <GPU> (<sm>) · <file> · nsys <version>``."""
        parts = ["measured"]
        g = self.gpu
        if g and g.get("name"):
            sm = g.get("sm")
            parts.append(f"{g['name']} ({sm}{', inferred from name' if g.get('sm_inferred') else ''})"
                         if sm else str(g["name"]))
        else:
            parts.append("GPU unknown (not in trace)")
        parts.append(self.path.name)
        md = self.metadata
        if self.kind == "nsys":
            parts.append(f"nsys {md.get('nsys_version') or 'version unknown'}")
        else:
            parts.append(f"PyTorch profiler (Kineto schema {md.get('schema_version', '?')})")
        return " · ".join(parts)

    # ------------------------------------------------------------------ analyses
    def kernel_summary(self, **kw) -> pd.DataFrame:
        """See :func:`gdnlab.traces.analysis.kernel_summary`."""
        from .analysis import kernel_summary
        return kernel_summary(self, **kw)

    def range_breakdown(self, **kw) -> pd.DataFrame:
        """See :func:`gdnlab.traces.analysis.range_breakdown`."""
        from .analysis import range_breakdown
        return range_breakdown(self, **kw)

    def gpu_idle_gaps(self, **kw) -> pd.DataFrame:
        """See :func:`gdnlab.traces.analysis.gpu_idle_gaps`."""
        from .analysis import gpu_idle_gaps
        return gpu_idle_gaps(self, **kw)

    def step_overhead(self, **kw) -> pd.DataFrame:
        """See :func:`gdnlab.traces.analysis.step_overhead`."""
        from .analysis import step_overhead
        return step_overhead(self, **kw)
