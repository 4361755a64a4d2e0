"""The :class:`Trace` facade: one object over an nsys SQLite export or a Kineto JSON trace.

Frames are built on first use and cached. All times are integer nanoseconds on the trace's own
clock (nsys: its session clock; Kineto: the trace's µs timestamps x 1000). The facade only reads
(:mod:`.nsys`, :mod:`.kineto`), assembles (:mod:`.projection`) and hands frames to the analyses
(:mod:`.analysis`, which take DataFrames and know nothing of this module), in the manner of HTA's
``TraceAnalysis`` (facebookresearch/HolisticTraceAnalysis: ``hta/trace_analysis.py``).

Status (:data:`gdnlab.provenance.STATUSES`) comes from the trace's own metadata, never from hope:
``status=`` given to :func:`load` wins; a trace carrying the synthetic marker (:mod:`.synthetic`
writes it) is ``synthetic``; a trace that says gdnlab made it (nsys: the profiled command names
gdnlab, as ``gdnlab capture`` records; Kineto: a top-level ``"gdnlab"`` object) on a GPU it names
with its compute capability is ``measured``; anything else is ``synthetic``.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from gdnlab.errors import InputError
from gdnlab.provenance import STATUSES

from . import analysis, checks
from .errors import TraceDataError
from .files import regular_file
from .kineto import GZIP_MAGIC, KinetoSource
from .names import DEFAULT_CLASS_RULES
from .nsys import SQLITE_MAGIC, NsysSource
from .projection import gpu_ranges_frame, link_frames, nvtx_frame

__all__ = ["Trace", "load", "sniff", "kernel_summary", "range_breakdown", "gpu_idle_gaps", "step_overhead",
           "compare"]


def sniff(path: str | Path) -> str:
    """``"nsys"`` (SQLite header) or ``"kineto"`` (gzip, or JSON text). A path that is not a regular
    file (directory, FIFO, device) is refused without being opened. Raises
    :class:`~.errors.TraceNotFoundError` or :class:`~.errors.TraceDataError`."""
    path = Path(path)
    regular_file(path)
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        raise TraceDataError(path, "empty file (0 bytes), not a trace")
    if head.startswith(SQLITE_MAGIC):
        return "nsys"
    if head.startswith(GZIP_MAGIC) or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "kineto"
    raise TraceDataError(path, "neither an nsys SQLite export (no 'SQLite format 3' header) nor a Kineto "
                               "JSON trace (no JSON object / gzip data); export a .nsys-rep with "
                               "'nsys export --type sqlite'")


def load(path: str | Path, *, workers: int | None = None, status: str | None = None) -> Trace:
    """Open a trace: an nsys SQLite export, or a PyTorch profiler (Kineto) chrome trace (``.json`` or
    ``.json.gz``), recognised by content, not by name. The file is validated now; frames are read
    lazily (and checked as they are read). Raises :class:`~.errors.TraceDataError` (a
    :class:`gdnlab.errors.DataError`) for anything that is not a readable trace and
    :class:`~.errors.TraceNotFoundError` (a ``FileNotFoundError``) for a missing file.

    ``workers``: reader threads for nsys exports (default: up to 4, by CPU count). ``status``: what
    the trace is, when its metadata cannot say (one of :data:`gdnlab.provenance.STATUSES`, e.g.
    ``"measured"`` for a real capture gdnlab did not make); default: from the metadata (module
    docstring)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    kind = sniff(path)
    source = NsysSource(path, workers=workers) if kind == "nsys" else KinetoSource(path)
    return Trace(source, status=status)


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
      Refused (:class:`~.errors.TraceDataError`) when the trace has ranges and kernels but no kernel
      can be linked to its launch: every range would show 0 GPU time.
    * ``metadata``: dict: source, file, gpus (name, sm, compute_capability, sm_count, memory_bytes,
      memory_bandwidth_bytes_per_s, ...), nsys_version / schema_version, capture start, counts,
      gdnlab_capture (the trace says gdnlab made it), synthetic (the generator's marker, or None),
      checks (what the physical-consistency checks of :mod:`.checks` found, filled as frames are read).
    * ``warnings``: what the trace lacks or what was left out, and the checks' findings (list of
      str); shown in :meth:`provenance`. A trace no GPU could have produced (kernels of one stream
      overlapping, absurd end times) is refused when its kernels are read.
    * ``status``: ``measured`` / ``synthetic`` / ... (see the module docstring), ``status_reason``.
    """

    def __init__(self, source: NsysSource | KinetoSource, *, status: str | None = None) -> None:
        self._source = source
        self.path: Path = source.path
        self.kind: str = source.kind
        self._status = status
        self._warnings: list[str] = []
        self._checks: list[str] = []

    def __repr__(self) -> str:
        return f"Trace({self.kind}, {self.path.name!r})"

    @property
    def name(self) -> str:
        """The file name, e.g. ``fi_c64.sqlite``."""
        return self.path.name

    # ------------------------------------------------------------------ frames
    def _check(self, warning: str | None) -> None:
        """Record what a physical-consistency check (:mod:`.checks`) found."""
        if warning and warning not in self._checks:
            self._checks.append(warning)

    @cached_property
    def _kernels_and_runtime(self) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        k, dup_k = checks.drop_duplicates(self._source.read_kernels(), checks.KERNEL_KEY, "kernel")
        a, dup_a = checks.drop_duplicates(self._source.read_api_calls(), checks.API_KEY, "CUDA API call")
        checks.check_kernel_ends(self.path, k, checks.absurd_limit(k, a))
        for w in (dup_k, dup_a, *checks.check_streams(self.path, k)):
            self._check(w)
        k, idx = link_frames(k, a)
        self._check(checks.kernels_before_launch(k))
        lost = int((idx < 0).sum())
        if lost and len(a):
            self._warnings.append(f"{lost} of {len(k)} kernels have no launching CUDA call in the trace "
                                  f"(launched before the capture?); they are in no NVTX range")
        return k, a, idx

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
        k, a, _ = self._kernels_and_runtime
        raw = self._nvtx_raw[0]
        raw, absurd = checks.drop_absurd_ranges(raw, checks.absurd_limit(k, a, raw))
        self._check(absurd)
        return nvtx_frame(raw)

    @cached_property
    def gpu_ranges(self) -> pd.DataFrame:
        nv = self.nvtx
        k, a, idx = self._kernels_and_runtime
        if len(nv) and len(k) and not (idx >= 0).any():
            raise TraceDataError(self.path, f"none of the {len(k)} kernels can be linked to the CUDA call that "
                                            f"launched it ({len(a)} API calls in the trace), so the GPU time of "
                                            f"the {len(nv)} NVTX ranges is unknown (capture with -t cuda,nvtx)")
        return gpu_ranges_frame(nv, k, a, idx)

    @cached_property
    def metadata(self) -> dict:
        md = dict(self._source.read_metadata())
        md["file"] = self.path.name
        md["path"] = str(self.path)
        md["nvtx_unclosed"] = self._nvtx_raw[1]
        md["checks"] = self._checks          # filled as the frames are read (``warnings`` reads them all)
        return md

    @property
    def warnings(self) -> list[str]:
        """What the trace lacks, what was left out and what its physical-consistency checks found (reads
        the frames, so the list is complete)."""
        _ = self._kernels_and_runtime, self.nvtx
        return [*self._source.warnings, *self._warnings, *self._checks]

    # ------------------------------------------------------------------ provenance
    @property
    def gpu(self) -> dict | None:
        """The first GPU in the metadata (the one the kernels ran on, in a one-GPU capture)."""
        gpus = self.metadata.get("gpus") or []
        return gpus[0] if gpus else None

    @cached_property
    def _status_and_reason(self) -> tuple[str, str]:
        if self._status is not None:
            return self._status, "given to load()"
        md = self.metadata
        if md.get("synthetic") is not None:
            return "synthetic", "the trace carries the synthetic marker (generated, not captured)"
        if not md.get("gdnlab_capture"):
            return "synthetic", "the trace does not say gdnlab captured it (pass status= to load() if it is real)"
        g = self.gpu
        if not (g and g.get("name") and g.get("sm") and not g.get("sm_inferred")):
            return "synthetic", "the trace names no GPU with its compute capability"
        return "measured", "captured by gdnlab on the GPU the trace names"

    @property
    def status(self) -> str:
        """``measured`` or ``synthetic`` (or the ``status`` given to :func:`load`), from the metadata."""
        return self._status_and_reason[0]

    @property
    def status_reason(self) -> str:
        """Why :attr:`status` is what it is, in words."""
        return self._status_and_reason[1]

    def provenance(self) -> str:
        """One line for figure footnotes: ``<status> · <GPU> (<sm>) · <file> · nsys <version>``, then
        one ``warning: ...`` part per entry of :attr:`warnings`."""
        parts = [self.status]
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
        parts += [f"warning: {w}" for w in self.warnings]
        return " · ".join(parts)

    def _tag(self, df: pd.DataFrame, *others: Trace) -> pd.DataFrame:
        df.attrs["provenance"] = " | ".join(t.provenance() for t in (self, *others))
        return df

    # ------------------------------------------------------------------ analyses
    def kernel_summary(self, *, by: str = "name") -> pd.DataFrame:
        """:func:`gdnlab.traces.analysis.kernel_summary` of :attr:`kernels`, with provenance."""
        return self._tag(analysis.kernel_summary(self.kernels, by=by))

    def range_breakdown(self, *, depth: int | None = None, pattern: str | None = None,
                        group_numbers: bool = True, with_kernels_only: bool = False) -> pd.DataFrame:
        """:func:`gdnlab.traces.analysis.range_breakdown` of :attr:`gpu_ranges`, with provenance."""
        return self._tag(analysis.range_breakdown(self.gpu_ranges, self.kernels, depth=depth, pattern=pattern,
                                                  group_numbers=group_numbers,
                                                  with_kernels_only=with_kernels_only))

    def gpu_idle_gaps(self, *, device: int | None = None, min_gap_ns: int = 0, step: str = "step",
                      regex: bool = False) -> pd.DataFrame:
        """:func:`gdnlab.traces.analysis.gpu_idle_gaps` of :attr:`kernels`, with provenance."""
        return self._tag(analysis.gpu_idle_gaps(self.kernels, self.gpu_ranges, device=device,
                                                min_gap_ns=min_gap_ns, step=step, regex=regex))

    def step_overhead(self, *, step: str = "step", regex: bool = False) -> pd.DataFrame:
        """:func:`gdnlab.traces.analysis.step_overhead` of :attr:`gpu_ranges`, with provenance."""
        return self._tag(analysis.step_overhead(self.gpu_ranges, step=step, regex=regex))

    def compare(self, other: Trace, labels: tuple[str, str] = ("flashinfer", "triton"), *,
                rules=DEFAULT_CLASS_RULES, depth: int | None = None) -> pd.DataFrame:
        """:func:`gdnlab.traces.analysis.compare` of this trace (``labels[0]``) and ``other``: kernel
        classes (``rules`` overrides the class rules) and range breakdowns (``depth`` keeps one
        nesting level), with both provenances."""
        if len(labels) != 2 or labels[0] == labels[1]:
            raise ValueError("labels must be two different names")
        out = analysis.compare(self.kernels, other.kernels, self.range_breakdown(depth=depth),
                               other.range_breakdown(depth=depth), labels, rules=rules)
        return self._tag(out, other)


# ---------------------------------------------------------------------- function forms of the facade

def kernel_summary(trace: Trace, **kw) -> pd.DataFrame:
    """:meth:`Trace.kernel_summary` (``by``: ``"name"``, ``"short_name"`` or ``"class"``)."""
    return trace.kernel_summary(**kw)


def range_breakdown(trace: Trace, **kw) -> pd.DataFrame:
    """:meth:`Trace.range_breakdown` (``depth``, ``pattern``, ``group_numbers``, ``with_kernels_only``)."""
    return trace.range_breakdown(**kw)


def gpu_idle_gaps(trace: Trace, **kw) -> pd.DataFrame:
    """:meth:`Trace.gpu_idle_gaps` (``device``, ``min_gap_ns``, ``step``, ``regex``)."""
    return trace.gpu_idle_gaps(**kw)


def step_overhead(trace: Trace, **kw) -> pd.DataFrame:
    """:meth:`Trace.step_overhead` (``step``, ``regex``)."""
    return trace.step_overhead(**kw)


def compare(trace_a: Trace, trace_b: Trace, labels: tuple[str, str] = ("flashinfer", "triton"), **kw) -> pd.DataFrame:
    """:meth:`Trace.compare` of ``trace_a`` and ``trace_b`` (``rules``, ``depth``)."""
    return trace_a.compare(trace_b, labels, **kw)
