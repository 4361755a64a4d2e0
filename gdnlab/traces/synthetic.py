"""Synthetic Nsight Systems SQLite exports and Kineto chrome traces, for tests, examples and benchmarks.

Two ways to describe a trace, both ending in a :class:`Synthetic` (plain DataFrames, times in ns):

* :class:`Builder` for small hand-made cases (nested ranges, a CUDA-graph launch, two threads,
  a kernel launched outside any range), where the expected projection is known by hand;
* :func:`decode_loop` for large, vectorised decode-loop traces (the 1M-kernel benchmark).

Writers:

* :func:`write_nsys_sqlite` in three schema flavours (``SCHEMAS``): ``"2025.3"`` (the columns and
  tables nsys 2025.3.2 writes, as in the real exports under traces/h100/: graphNodeId,
  greenContextId, NVTX domainId/textId, StringIds ids for kernel names, TARGET_INFO_GPU with
  computeMajor/Minor and clockRate in Hz, a bare TARGET_INFO_CUDA_DEVICE, META_DATA_EXPORT, ...),
  ``"2021"`` (an older export: no graphNodeId/greenContextId, NVTX text inline only, no domains, no
  TARGET_INFO_GPU, no META_DATA_*) and ``"minimal"`` (only what a stripped export keeps: shortName
  ids, no globalPid, no grid/block);
* :func:`write_kineto_json` (PyTorch profiler chrome trace, optionally gzipped).

Every file written here says it is generated, so :meth:`gdnlab.traces.Trace.provenance` shows
``synthetic`` even though it names an H100: nsys exports get a ``GDNLAB_SYNTHETIC`` (name, value)
table, Kineto traces a top-level ``"gdnlab_synthetic"`` object. ``marker=False`` leaves the marker out,
for tests of what the readers conclude from the rest of the metadata (with
``Synthetic.capture_command``, the profiled command nsys records in ``META_DATA_CAPTURE``).

Nothing here reads traces: the readers live in :mod:`gdnlab.traces`.
"""
from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .kineto import SYNTHETIC_KEY
from .nsys import SYNTHETIC_TABLE

__all__ = ["Synthetic", "Builder", "decode_loop", "kernel_table", "handmade", "HANDMADE_EXPECTED", "write_nsys_sqlite",
           "kineto_dict", "write_kineto_json", "global_pid", "global_tid", "short_of", "SCHEMAS", "H100",
           "DECODE_KERNELS", "NVTX_PUSHPOP", "NVTX_STARTEND", "NVTX_DOMAIN_CREATE"]

SCHEMAS = ("2025.3", "2021", "minimal")

NVTX_PUSHPOP = 59
NVTX_STARTEND = 60
NVTX_DOMAIN_CREATE = 75

H100 = {"name": "NVIDIA H100 80GB HBM3", "major": 9, "minor": 0, "sm_count": 132,
        "total_memory": 85_520_809_984, "memory_bandwidth": 3_352_320_000_000, "chip": "GH100",
        "l2": 52_428_800, "clock_hz": 1_980_000_000}

KERNEL_COLUMNS = ["name", "short_name", "start", "end", "device", "stream", "corr", "gpid",
                  "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "graph_node_id"]
RUNTIME_COLUMNS = ["name", "start", "end", "corr", "gtid", "api"]
RANGE_COLUMNS = ["text", "start", "end", "gtid", "event_type", "domain", "registered"]


def global_pid(pid: int, vm: int = 1) -> int:
    """nsys globalPid: ``(vm << 48) | (pid << 24)`` (the low 24 bits, the tid, are zero)."""
    return (vm << 48) | (pid << 24)


def global_tid(pid: int, tid: int, vm: int = 1) -> int:
    """nsys globalTid: ``(vm << 48) | (pid << 24) | tid``."""
    return global_pid(pid, vm) | tid


def short_of(name: str) -> str:
    """Crude short name for the generator: identifier before ``<`` or ``(``, without ``void``."""
    core = name.removeprefix("void ").split("(")[0].split("<")[0]
    return core.split("::")[-1].strip()


@dataclass
class Synthetic:
    """A trace as plain tables (times in ns). See the module docstring for the writers."""

    kernels: pd.DataFrame
    runtime: pd.DataFrame
    ranges: pd.DataFrame
    gpus: list[dict] = field(default_factory=lambda: [dict(H100)])
    session_start_utc_ns: int = 1_790_000_000_000_000_000
    nsys_version: str = "2025.3.1.90-253135822126v0"
    #: the profiled command (``META_DATA_CAPTURE`` PROCESS_0:COMMAND / ARGUMENT_i, schema 2025.3 only)
    capture_command: list[str] | None = None


def _marker_rows() -> list[tuple[str, str]]:
    from gdnlab import __version__
    return [("generator", __name__), ("gdnlab", __version__)]


class Builder:
    """Hand-made traces. Times are absolute ns; every launch gets a fresh correlation id."""

    def __init__(self, pid: int = 4242) -> None:
        self.pid = pid
        self._corr = 100
        self._k: list[dict] = []
        self._r: list[dict] = []
        self._n: list[dict] = []

    def gtid(self, tid: int) -> int:
        return global_tid(self.pid, tid)

    def range(self, text: str, start: int, end: int, *, tid: int = 1, kind: str = "pushpop",
              domain: str | None = None, registered: bool = False) -> None:
        """An NVTX range on thread ``tid`` (``kind``: ``"pushpop"`` or ``"startend"``)."""
        etype = {"pushpop": NVTX_PUSHPOP, "startend": NVTX_STARTEND}[kind]
        self._n.append(dict(text=text, start=start, end=end, gtid=self.gtid(tid), event_type=etype,
                            domain=domain, registered=registered))

    def _kernel(self, name: str, start: int, dur: int, corr: int, *, device: int, stream: int,
                graph_node_id: int | None = None, grid=(64, 1, 1), block=(128, 1, 1)) -> None:
        self._k.append(dict(name=name, short_name=short_of(name), start=start, end=start + dur,
                            device=device, stream=stream, corr=corr, gpid=global_pid(self.pid),
                            grid_x=grid[0], grid_y=grid[1], grid_z=grid[2],
                            block_x=block[0], block_y=block[1], block_z=block[2],
                            graph_node_id=graph_node_id))

    def launch(self, name: str, cpu_start: int, gpu_start: int, gpu_dur: int, *, tid: int = 1,
               stream: int = 7, device: int = 0, cpu_dur: int = 2_000, api: str = "cudaLaunchKernel_v7000",
               driver: bool = False, **kw) -> int:
        """A launch call on ``tid`` at ``cpu_start`` and its kernel on the GPU. Returns the correlation id."""
        self._corr += 1
        self._r.append(dict(name=api, start=cpu_start, end=cpu_start + cpu_dur, corr=self._corr,
                            gtid=self.gtid(tid), api="driver" if driver else "runtime"))
        self._kernel(name, gpu_start, gpu_dur, self._corr, device=device, stream=stream, **kw)
        return self._corr

    def graph_launch(self, kernels: list[tuple[str, int, int]], cpu_start: int, *, tid: int = 1,
                     stream: int = 7, device: int = 0, cpu_dur: int = 5_000) -> int:
        """One ``cudaGraphLaunch`` whose graph runs ``kernels`` = [(name, gpu_start, gpu_dur), ...];
        all share the launch's correlation id and get distinct graphNodeIds."""
        self._corr += 1
        self._r.append(dict(name="cudaGraphLaunch_v10000", start=cpu_start, end=cpu_start + cpu_dur,
                            corr=self._corr, gtid=self.gtid(tid), api="runtime"))
        for i, (name, s, d) in enumerate(kernels):
            self._kernel(name, s, d, self._corr, device=device, stream=stream, graph_node_id=1000 + i)
        return self._corr

    def orphan_kernel(self, name: str, gpu_start: int, gpu_dur: int, *, stream: int = 7, device: int = 0) -> int:
        """A kernel whose correlation id matches no API call (e.g. launched before capture started)."""
        self._corr += 1
        self._kernel(name, gpu_start, gpu_dur, self._corr, device=device, stream=stream)
        return self._corr

    def api_call(self, name: str, start: int, dur: int, *, tid: int = 1) -> int:
        """A runtime call that launches nothing (e.g. cudaStreamSynchronize)."""
        self._corr += 1
        self._r.append(dict(name=name, start=start, end=start + dur, corr=self._corr,
                            gtid=self.gtid(tid), api="runtime"))
        return self._corr

    def build(self, **kw) -> Synthetic:
        k = pd.DataFrame(self._k, columns=KERNEL_COLUMNS)
        k["graph_node_id"] = k["graph_node_id"].astype("Int64")
        return Synthetic(kernels=k, runtime=pd.DataFrame(self._r, columns=RUNTIME_COLUMNS),
                         ranges=pd.DataFrame(self._n, columns=RANGE_COLUMNS), **kw)


DECODE_KERNELS = (
    ("void gdn::gated_delta_rule_decode_pretranspose_kernel<128, 128, float>(Params)", 9_000),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>(int, T1)", 2_000),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_kernel", 14_000),
    ("triton_poi_fused_add_mul_sigmoid_0", 3_000),
)


def kernel_table(names: Sequence[str], durations_ns: Sequence[int], gap_ns: int = 100) -> pd.DataFrame:
    """A bare kernel table (``name``, ``start_ns``, ``end_ns``, ``duration_ns``) of kernels run one after
    another from t = 0 with ``gap_ns`` between them: the input of :mod:`gdnlab.analysis.phases` and the ledger's
    trace tables, without writing a trace file."""
    rows, t = [], 0
    for n, d in zip(names, durations_ns, strict=True):
        rows.append({"name": n, "start_ns": t, "end_ns": t + d, "duration_ns": d})
        t += d + gap_ns
    return pd.DataFrame(rows)


def decode_loop(n_steps: int, layers: int = 25, kernels_per_layer: int = 4, *, graph: bool = False,
                pid: int = 4242, tid: int = 4242, t0: int = 1_000_000_000, seed: int = 0,
                registered_every: int = 2) -> Synthetic:
    """A decode loop built with numpy (fast enough for 10^6 kernels).

    Each step is an NVTX push/pop range ``"step"`` with ``layers`` nested ranges ``"layer"`` holding
    ``kernels_per_layer`` kernels each. Eager mode: one ``cudaLaunchKernel`` per kernel (2 µs of CPU,
    launches 3 µs apart); the GPU runs a kernel as soon as it is launched and the previous one is done.
    ``graph=True``: one ``cudaGraphLaunch`` per step, every kernel of the step shares its correlation id,
    and there are no layer ranges (they would only exist at capture time).
    Every ``registered_every``-th step range uses a registered string (textId) instead of inline text.
    """
    rng = np.random.default_rng(seed)
    kps = layers * kernels_per_layer
    n = n_steps * kps
    names = np.array([k for k, _ in DECODE_KERNELS], dtype=object)
    durs = np.array([d for _, d in DECODE_KERNELS], dtype=np.int64)
    kind = np.arange(n) % len(names)
    dur = durs[kind] + rng.integers(0, 500, n)
    step_gap = 20_000                                   # host work between steps
    launch_gap = 3_000
    step_of = np.arange(n) // kps
    gtid_ = global_tid(pid, tid)
    if graph:
        launch = t0 + step_of * (step_gap + 10_000)
        ready = launch + 8_000 + (np.arange(n) % kps)   # graph kernels become ready together
        cpu_step_len = 12_000
    else:
        pos = np.arange(n) % kps
        launch = t0 + step_of * (step_gap + kps * launch_gap) + pos * launch_gap + 1_000
        ready = launch + 2_500
        cpu_step_len = kps * launch_gap + 2_000
    csum = np.cumsum(dur)
    end = csum + np.maximum.accumulate(ready + dur - csum)   # end_i = max(ready_i, end_{i-1}) + dur_i
    start = end - dur
    corr = (step_of + 1) if graph else np.arange(1, n + 1)
    kernels = pd.DataFrame({
        "name": names[kind], "short_name": pd.Series(names[kind]).map(short_of).to_numpy(),
        "start": start, "end": end, "device": 0, "stream": 7, "corr": corr, "gpid": global_pid(pid),
        "grid_x": 64, "grid_y": 16, "grid_z": 1, "block_x": 128, "block_y": 1, "block_z": 1,
        "graph_node_id": pd.array((np.arange(n) % kps) + 1 if graph else [pd.NA] * n, dtype="Int64"),
    })
    if graph:
        rs = t0 + np.arange(n_steps) * (step_gap + 10_000) + 1_000
        runtime = pd.DataFrame({"name": "cudaGraphLaunch_v10000", "start": rs, "end": rs + 6_000,
                                "corr": np.arange(1, n_steps + 1), "gtid": gtid_, "api": "runtime"})
    else:
        runtime = pd.DataFrame({"name": "cudaLaunchKernel_v7000", "start": launch, "end": launch + 2_000,
                                "corr": corr, "gtid": gtid_, "api": "runtime"})
    s0 = t0 + np.arange(n_steps) * (step_gap + (10_000 if graph else kps * launch_gap))
    steps = pd.DataFrame({"text": "step", "start": s0, "end": s0 + cpu_step_len, "gtid": gtid_,
                          "event_type": NVTX_PUSHPOP, "domain": None,
                          "registered": (np.arange(n_steps) % registered_every) == 0})
    frames = [steps]
    if not graph:
        l0 = (s0[:, None] + 500 + np.arange(layers)[None, :] * kernels_per_layer * launch_gap).ravel()
        frames.append(pd.DataFrame({"text": "layer", "start": l0, "end": l0 + kernels_per_layer * launch_gap,
                                    "gtid": gtid_, "event_type": NVTX_PUSHPOP, "domain": "gdnlab",
                                    "registered": False}))
    ranges = pd.concat(frames, ignore_index=True).sort_values("start", kind="stable", ignore_index=True)
    return Synthetic(kernels=kernels, runtime=runtime, ranges=ranges)


# --------------------------------------------------------------------------- nsys SQLite writer

_KERNEL_COLS = {
    "2025.3": ["start", "end", "deviceId", "contextId", "greenContextId", "streamId", "correlationId",
               "globalPid", "demangledName", "shortName", "mangledName", "launchType", "cacheConfig",
               "registersPerThread", "gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ",
               "staticSharedMemory", "dynamicSharedMemory", "localMemoryPerThread", "localMemoryTotal",
               "gridId", "sharedMemoryExecuted", "graphNodeId", "sharedMemoryLimitConfig"],
    "2021": ["start", "end", "deviceId", "contextId", "streamId", "correlationId", "globalPid",
             "demangledName", "shortName", "launchType", "cacheConfig", "registersPerThread",
             "gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ", "staticSharedMemory",
             "dynamicSharedMemory", "localMemoryPerThread", "localMemoryTotal", "gridId",
             "sharedMemoryExecuted"],
    "minimal": ["start", "end", "deviceId", "streamId", "correlationId", "shortName"],
}
_RUNTIME_COLS = {
    "2025.3": ["start", "end", "eventClass", "globalTid", "correlationId", "nameId", "returnValue", "callchainId"],
    "2021": ["start", "end", "eventClass", "globalTid", "correlationId", "nameId", "returnValue"],
    "minimal": ["start", "end", "globalTid", "correlationId", "nameId"],
}
_NVTX_COLS = {
    "2025.3": ["start", "end", "eventType", "rangeId", "category", "color", "text", "globalTid",
               "endGlobalTid", "textId", "domainId", "uint64Value", "int64Value", "doubleValue",
               "uint32Value", "int32Value", "floatValue", "jsonTextId", "jsonText", "binaryData"],
    "2021": ["start", "end", "eventType", "rangeId", "category", "color", "text", "globalTid", "endGlobalTid"],
    "minimal": ["start", "end", "eventType", "text", "globalTid"],
}
_NOT_NULL = {"start", "end", "deviceId", "contextId", "streamId", "eventType", "eventClass", "nameId",
             "demangledName", "shortName", "returnValue", "gridX", "gridY", "gridZ", "blockX", "blockY",
             "blockZ", "registersPerThread", "gridId"}
_TEXT_COLS = {"text", "jsonText"}


def _create(db: sqlite3.Connection, table: str, cols: list[str]) -> None:
    decl = []
    for c in cols:
        typ = "TEXT" if c in _TEXT_COLS else ("BLOB" if c == "binaryData" else "INTEGER")
        nn = " NOT NULL" if c in _NOT_NULL and not (table == "NVTX_EVENTS" and c == "end") else ""
        decl.append(f"{c} {typ}{nn}")
    db.execute(f"CREATE TABLE {table} ({', '.join(decl)})")


def _insert(db: sqlite3.Connection, table: str, cols: list[str], data: dict) -> None:
    """Insert columns ``data[c]`` (numpy arrays / lists / scalars) for the columns the table has."""
    seq = (list, np.ndarray, pd.Series, pd.api.extensions.ExtensionArray)
    n = max((len(v) for v in data.values() if isinstance(v, seq)), default=0)
    columns = []
    for c in cols:
        v = data.get(c)
        if isinstance(v, np.ndarray) and v.dtype != object:
            v = v.tolist()
        elif isinstance(v, (np.ndarray, pd.Series, pd.api.extensions.ExtensionArray)):
            v = pd.Series(v).astype(object).where(pd.Series(v).notna(), None).tolist()
        elif not isinstance(v, list):
            v = [v] * n
        columns.append(v)
    placeholders = ", ".join("?" * len(cols))
    db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})", zip(*columns))


class _Strings:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def id(self, s: str) -> int:
        if s not in self.ids:
            self.ids[s] = len(self.ids) + 1
        return self.ids[s]

    def map(self, values) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
        return np.array([self.id(u) for u in uniq], dtype=np.int64)[inv]


def write_nsys_sqlite(path: str | Path, syn: Synthetic, schema: str = "2025.3", *, marker: bool = True) -> Path:
    """Write ``syn`` as an nsys SQLite export of the given ``schema`` flavour (see ``SCHEMAS``), with
    the synthetic marker table unless ``marker=False``. An existing file at ``path`` is replaced."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {SCHEMAS}")
    path = Path(path)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    strings = _Strings()
    k = syn.kernels
    kcols = _KERNEL_COLS[schema]
    _create(db, "CUPTI_ACTIVITY_KIND_KERNEL", kcols)
    demangled = strings.map(k["name"])
    short = strings.map(k["short_name"])
    _insert(db, "CUPTI_ACTIVITY_KIND_KERNEL", kcols, {
        "start": k["start"].to_numpy(), "end": k["end"].to_numpy(), "deviceId": k["device"].to_numpy(),
        "contextId": 1, "greenContextId": None, "streamId": k["stream"].to_numpy(),
        "correlationId": k["corr"].to_numpy(), "globalPid": k["gpid"].to_numpy(),
        "demangledName": demangled, "shortName": short, "mangledName": None, "launchType": 0,
        "cacheConfig": 0, "registersPerThread": 32,
        "gridX": k["grid_x"].to_numpy(), "gridY": k["grid_y"].to_numpy(), "gridZ": k["grid_z"].to_numpy(),
        "blockX": k["block_x"].to_numpy(), "blockY": k["block_y"].to_numpy(), "blockZ": k["block_z"].to_numpy(),
        "staticSharedMemory": 0, "dynamicSharedMemory": 0, "localMemoryPerThread": 0, "localMemoryTotal": 0,
        "gridId": np.arange(len(k)), "sharedMemoryExecuted": 0,
        "graphNodeId": k["graph_node_id"].array, "sharedMemoryLimitConfig": 0,
    })
    rcols = _RUNTIME_COLS[schema]
    for table, api in (("CUPTI_ACTIVITY_KIND_RUNTIME", "runtime"), ("CUPTI_ACTIVITY_KIND_DRIVER", "driver")):
        r = syn.runtime[syn.runtime["api"] == api]
        if api == "driver" and (r.empty or schema != "2025.3"):
            continue
        _create(db, table, rcols)
        _insert(db, table, rcols, {
            "start": r["start"].to_numpy(), "end": r["end"].to_numpy(), "eventClass": 1,
            "globalTid": r["gtid"].to_numpy(), "correlationId": r["corr"].to_numpy(),
            "nameId": strings.map(r["name"]) if len(r) else np.zeros(0, np.int64),
            "returnValue": 0, "callchainId": None})
    ncols = _NVTX_COLS[schema]
    _create(db, "NVTX_EVENTS", ncols)
    n = syn.ranges
    has_domains = "domainId" in ncols
    domain_ids: dict[str, int] = {}
    if has_domains:
        for d in n["domain"].dropna().unique():
            domain_ids[d] = len(domain_ids) + 1
        created = {}  # one domain-create row per (domain, thread that first used it)
        for d, g in n.dropna(subset=["domain"]).groupby("domain"):
            created[d] = (int(g["start"].min()) - 1, int(g["gtid"].iloc[0]))
        _insert(db, "NVTX_EVENTS", ncols, {
            "start": [created[d][0] for d in domain_ids], "end": None, "eventType": NVTX_DOMAIN_CREATE,
            "text": list(domain_ids), "globalTid": [created[d][1] for d in domain_ids],
            "domainId": list(domain_ids.values())})
    use_ids = "textId" in ncols
    reg = n["registered"].to_numpy(bool) & use_ids
    text = n["text"].astype(object).to_numpy().copy()
    text_id = np.full(len(n), None, dtype=object)
    if reg.any():
        text_id[reg] = strings.map(text[reg]).astype(object)
        text[reg] = None
    dom = n["domain"].map(lambda d: domain_ids.get(d, 0) if isinstance(d, str) else 0).to_numpy()
    _insert(db, "NVTX_EVENTS", ncols, {
        "start": n["start"].to_numpy(), "end": n["end"].to_numpy(), "eventType": n["event_type"].to_numpy(),
        "rangeId": None, "category": 0, "color": None, "text": list(text), "globalTid": n["gtid"].to_numpy(),
        "endGlobalTid": n["gtid"].to_numpy(), "textId": list(text_id), "domainId": dom})
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    db.executemany("INSERT INTO StringIds VALUES (?, ?)", [(i, s) for s, i in strings.ids.items()])
    if schema == "2025.3":
        _write_2025_metadata(db, syn)
    if marker:
        db.execute(f"CREATE TABLE {SYNTHETIC_TABLE} (name TEXT NOT NULL, value TEXT)")
        db.executemany(f"INSERT INTO {SYNTHETIC_TABLE} VALUES (?, ?)", _marker_rows())
    db.commit()
    db.close()
    return path


def _write_2025_metadata(db: sqlite3.Connection, syn: Synthetic) -> None:
    db.executescript("""
        CREATE TABLE META_DATA_EXPORT (name TEXT NOT NULL, value TEXT);
        CREATE TABLE META_DATA_CAPTURE (name TEXT NOT NULL, value TEXT);
        CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
        CREATE TABLE TARGET_INFO_GPU (vmId INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT, busLocation TEXT,
            isDiscrete INTEGER, l2CacheSize INTEGER, totalMemory INTEGER, memoryBandwidth INTEGER,
            clockRate INTEGER, smCount INTEGER, pwGpuId INTEGER, uuid TEXT, luid INTEGER, chipName TEXT,
            cuDevice INTEGER, computeMajor INTEGER, computeMinor INTEGER, smMajor INTEGER, smMinor INTEGER);
        CREATE TABLE TARGET_INFO_CUDA_DEVICE (gpuId INTEGER, cudaId INTEGER NOT NULL, pid INTEGER NOT NULL);
        CREATE TABLE CUDA_GRAPH_NODE_EVENTS (start INTEGER NOT NULL, end INTEGER, globalTid INTEGER,
            graphNodeId INTEGER, originalGraphNodeId INTEGER, graphId INTEGER);
    """)
    db.executemany("INSERT INTO META_DATA_EXPORT VALUES (?, ?)", [
        ("EXPORT_SCHEMA_VERSION", "3.20.3"), ("EXPORT_PRODUCT_VERSION", syn.nsys_version),
        ("EXPORT_PARAM_LAZY", "false")])
    cmd = list(syn.capture_command or [])
    db.executemany("INSERT INTO META_DATA_CAPTURE VALUES (?, ?)", [
        ("CAPTURE_EVENT_TYPE", "Cuda"), ("CAPTURE_EVENT_TYPE", "NvtxEvents"),
        *([("PROCESS_0:COMMAND", cmd[0])] if cmd else []),
        *[(f"PROCESS_0:ARGUMENT_{i}", a) for i, a in enumerate(cmd[1:])]])
    db.execute("INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (?, ?, ?)",
               (syn.session_start_utc_ns, "2026-09-21T10:00:00Z", "2026-09-21T10:00:00"))
    for i, g in enumerate(syn.gpus):
        db.execute("INSERT INTO TARGET_INFO_GPU VALUES (0, ?, ?, '0000:1b:00.0', 1, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?, "
                   "?, ?, ?, ?)",
                   (i, g["name"], g["l2"], g["total_memory"], g["memory_bandwidth"], g["clock_hz"],
                    g["sm_count"], f"GPU-{i:08x}", g["chip"], i, g["major"], g["minor"], g["major"], g["minor"]))
        db.execute("INSERT INTO TARGET_INFO_CUDA_DEVICE VALUES (?, ?, 4242)", (i, i))


# --------------------------------------------------------------------------- Kineto writer

def kineto_dict(syn: Synthetic, *, pid: int = 4242, marker: bool = True) -> dict:
    """The chrome-trace dict the PyTorch profiler (Kineto) would write for ``syn`` (µs timestamps),
    plus the synthetic marker unless ``marker=False``."""
    base = int(min(syn.kernels["start"].min(), syn.runtime["start"].min() if len(syn.runtime) else 1 << 62,
                   syn.ranges["start"].min() if len(syn.ranges) else 1 << 62)) - 1_000
    us = lambda ns: round((int(ns) - base) / 1000.0, 3)
    ev: list[dict] = []
    for r in syn.kernels.itertuples(index=False):
        args = {"device": int(r.device), "stream": int(r.stream), "correlation": int(r.corr),
                "grid": [int(r.grid_x), int(r.grid_y), int(r.grid_z)],
                "block": [int(r.block_x), int(r.block_y), int(r.block_z)]}
        if not pd.isna(r.graph_node_id):
            args["graph node id"] = int(r.graph_node_id)
        ev.append({"ph": "X", "cat": "kernel", "name": r.name, "pid": int(r.device), "tid": int(r.stream),
                   "ts": us(r.start), "dur": round((r.end - r.start) / 1000.0, 3), "args": args})
    for r in syn.runtime.itertuples(index=False):
        cat = "cuda_driver" if r.api == "driver" else "cuda_runtime"
        ev.append({"ph": "X", "cat": cat, "name": r.name.split("_v")[0], "pid": pid, "tid": int(r.gtid) & 0xFFFFFF,
                   "ts": us(r.start), "dur": round((r.end - r.start) / 1000.0, 3),
                   "args": {"correlation": int(r.corr), "cbid": 211}})
    for r in syn.ranges.itertuples(index=False):
        ev.append({"ph": "X", "cat": "user_annotation", "name": r.text, "pid": pid, "tid": int(r.gtid) & 0xFFFFFF,
                   "ts": us(r.start), "dur": round((r.end - r.start) / 1000.0, 3), "args": {"External id": 1}})
    ev.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "python"}})
    ev.append({"ph": "i", "s": "t", "name": "Iteration Start: PyTorch Profiler", "pid": pid, "tid": 1,
               "ts": us(base + 1_000)})
    g = syn.gpus[0] if syn.gpus else None
    props = [] if g is None else [{
        "id": 0, "name": g["name"], "totalGlobalMem": g["total_memory"], "computeMajor": g["major"],
        "computeMinor": g["minor"], "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
        "regsPerBlock": 65536, "warpSize": 32, "sharedMemPerBlock": 49152, "numSms": g["sm_count"]}]
    out = {"schemaVersion": 1, "deviceProperties": props, "cuda_runtime_version": 13000,
           "cuda_driver_version": 13000, "baseTimeNanoseconds": base, "displayTimeUnit": "ms",
           "traceEvents": ev, "traceName": "synthetic"}
    if marker:
        out[SYNTHETIC_KEY] = dict(_marker_rows())
    return out


def write_kineto_json(path: str | Path, syn: Synthetic, *, gz: bool | None = None, marker: bool = True) -> Path:
    """Write a Kineto chrome trace (with the synthetic marker unless ``marker=False``); gzip it when
    ``gz`` (default: when the name ends in ``.gz``). An existing file at ``path`` is replaced."""
    path = Path(path)
    data = json.dumps(kineto_dict(syn, marker=marker)).encode()
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- the hand-made case

#: expected projection of :func:`handmade` per range text (ns), worked out by hand
HANDMADE_EXPECTED = {
    # text: (kernel_count, kernel_sum_ns, gpu_busy_ns, gpu_start_ns, gpu_end_ns, depth)
    "step": (6, 19_000, 16_000, 10_000, 60_000, 0),
    "layer": (3, 15_000, 12_000, 10_000, 23_000, 1),
    "graph": (3, 4_000, 4_000, 55_000, 60_000, 1),
    "other": (1, 1_000, 1_000, 90_000, 91_000, 0),
    "idle": (0, 0, 0, None, None, 2),
}


def handmade() -> Synthetic:
    """Two threads of process 4242 (times in ns; µs below).

    Thread 1: ``step`` [0, 100] holds ``layer`` [1, 40] (domain "gdnlab", registered string) with
    three launches — ``gdn_decode_kernel`` on stream 7 [10, 15], then two ``foo`` on streams 8 and 9
    that overlap ([16, 21] and [18, 23]: union 7) — and ``idle`` [20, 30] nested in ``layer`` (depth 2)
    that launches nothing; then ``graph`` [50, 65], whose one ``cudaGraphLaunch`` (at 51) runs k1
    [55, 56], k2 [56.5, 57.5] and gdn_k3 [58, 60]; a ``cudaStreamSynchronize`` launches nothing; a
    kernel launched at 150 lies outside every range.
    Thread 2: start/end range ``other`` [0, 100] (registered string) launches ``bar`` [90, 91].
    An orphan kernel ``lost`` [95, 95.1] has no API call. Expected numbers: ``HANDMADE_EXPECTED``.
    """
    b = Builder()
    b.range("step", 0, 100_000, tid=1)
    b.range("layer", 1_000, 40_000, tid=1, domain="gdnlab", registered=True)
    b.launch("void gdn_decode_kernel<128, float>(Params)", 2_000, 10_000, 5_000, tid=1, stream=7)
    b.launch("void ns::foo<4>(int, float*)", 3_000, 16_000, 5_000, tid=1, stream=8)
    b.launch("void ns::foo<4>(int, float*)", 4_000, 18_000, 5_000, tid=1, stream=9)
    b.range("idle", 20_000, 30_000, tid=1)        # nested in step and layer: depth 2, no launch
    b.range("graph", 50_000, 65_000, tid=1)
    b.graph_launch([("k1", 55_000, 1_000), ("k2", 56_500, 1_000), ("gdn_k3", 58_000, 2_000)], 51_000, tid=1)
    b.api_call("cudaStreamSynchronize_v3020", 66_000, 30_000, tid=1)
    b.launch("outside_kernel", 150_000, 151_000, 1_000, tid=1)
    b.range("other", 0, 100_000, tid=2, kind="startend", registered=True)
    b.launch("void bar(int)", 10_000, 90_000, 1_000, tid=2, stream=7)
    b.orphan_kernel("lost", 95_000, 100)
    return b.build()
