"""Reader for PyTorch profiler (Kineto) chrome traces: ``.json`` or gzipped ``.json.gz``.

Mapping onto the nsys-shaped frames (times converted from µs floats to integer ns):

* kernels: complete events (``"ph": "X"``) with ``cat == "kernel"``; ``args.device``/``args.stream``
  (falling back to ``pid``/``tid``), ``args.correlation``, ``args.grid``/``args.block``;
* API calls: ``cat`` ``cuda_runtime`` (api "runtime") and ``cuda_driver`` (api "driver");
* ranges: ``cat == "user_annotation"`` (``torch.profiler.record_function`` and NVTX-like
  annotations on the CPU, domain "user_annotation"); other categories can be added with
  ``range_categories``.

Kineto correlation ids are unique within a trace, so kernels are linked to their launch by
correlation id alone (``pid`` -1 on both sides of the join).
"""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TraceError
from .names import short_kernel_name
from .nsys import API_COLUMNS, KERNEL_COLUMNS, normalise_gpu

__all__ = ["KinetoSource", "GZIP_MAGIC"]

GZIP_MAGIC = b"\x1f\x8b"


def _ns(us: pd.Series) -> np.ndarray:
    return np.rint(pd.to_numeric(us, errors="coerce").fillna(0).to_numpy(np.float64) * 1000.0).astype(np.int64)


def _int(s: pd.Series | None, n: int, default: int = -1) -> np.ndarray:
    if s is None:
        return np.full(n, default, np.int64)
    return pd.to_numeric(s, errors="coerce").fillna(default).to_numpy(np.int64)


class KinetoSource:
    """One Kineto chrome trace, parsed at construction (raising :class:`TraceError`)."""

    kind = "kineto"

    def __init__(self, path: str | Path, *, range_categories: tuple[str, ...] = ("user_annotation",)) -> None:
        self.path = Path(path)
        self.range_categories = tuple(c.lower() for c in range_categories)
        raw = self.path.read_bytes()
        if not raw:
            raise TraceError(self.path, "empty file (0 bytes), not a Kineto JSON trace")
        if raw.startswith(GZIP_MAGIC):
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise TraceError(self.path, f"truncated or corrupt gzip data: {e}") from e
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TraceError(self.path, f"not valid JSON (truncated Kineto trace?): {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
            raise TraceError(self.path, "no 'traceEvents' list: not a chrome/Kineto trace")
        self.data = data
        ev = pd.DataFrame([e for e in data["traceEvents"] if isinstance(e, dict) and e.get("ph") == "X"])
        for c in ("cat", "name", "ts", "dur", "pid", "tid", "args"):
            if c not in ev:
                ev[c] = pd.Series([None] * len(ev), dtype=object)
        ev["cat"] = ev["cat"].fillna("").astype(str).str.lower()
        self._events = ev

    def _select(self, cats: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
        ev = self._events[self._events["cat"].isin(cats)].reset_index(drop=True)
        args = pd.DataFrame([a if isinstance(a, dict) else {} for a in ev["args"]], index=ev.index)
        return ev, args

    def read_kernels(self) -> pd.DataFrame:
        ev, args = self._select(("kernel",))
        n = len(ev)
        start = _ns(ev["ts"])
        dur = _ns(ev["dur"])
        name = pd.Categorical(ev["name"].fillna("").astype(str).to_numpy(dtype=object))
        short_cats = [short_kernel_name(c) for c in name.categories]
        codes, uniq = pd.factorize(pd.Index(short_cats, dtype=object))
        short = pd.Categorical.from_codes(codes[name.codes] if len(codes) else name.codes,
                                          categories=pd.Index(uniq, dtype=object))
        grid = args["grid"] if "grid" in args else pd.Series([None] * n)
        block = args["block"] if "block" in args else pd.Series([None] * n)

        def dims(s: pd.Series, i: int) -> np.ndarray:
            return np.array([v[i] if isinstance(v, (list, tuple)) and len(v) > i else -1 for v in s], np.int64)

        graph = args.get("graph node id")
        df = pd.DataFrame({
            "name": name, "short_name": short, "start_ns": start, "end_ns": start + dur,
            "device": _int(args.get("device", ev["pid"]), n), "stream": _int(args.get("stream", ev["tid"]), n),
            "correlation_id": _int(args.get("correlation"), n), "global_pid": np.full(n, -1, np.int64),
            "grid_x": dims(grid, 0), "grid_y": dims(grid, 1), "grid_z": dims(grid, 2),
            "block_x": dims(block, 0), "block_y": dims(block, 1), "block_z": dims(block, 2),
            "graph_node_id": pd.array(pd.to_numeric(graph, errors="coerce") if graph is not None
                                      else [pd.NA] * n, dtype="Int64"),
        })
        df["duration_ns"] = dur
        df["pid"] = -1
        return df[KERNEL_COLUMNS]

    def read_api_calls(self) -> pd.DataFrame:
        ev, args = self._select(("cuda_runtime", "cuda_driver"))
        n = len(ev)
        start = _ns(ev["ts"])
        df = pd.DataFrame({
            "name": pd.Categorical(ev["name"].fillna("").astype(str).to_numpy(dtype=object)),
            "start_ns": start, "end_ns": start + _ns(ev["dur"]),
            "correlation_id": _int(args.get("correlation"), n), "global_tid": np.full(n, -1, np.int64),
            "api": pd.Categorical(np.where(ev["cat"] == "cuda_driver", "driver", "runtime")),
        })
        df["duration_ns"] = df["end_ns"] - df["start_ns"]
        df["pid"] = _int(ev["pid"], n)
        df["tid"] = _int(ev["tid"], n)
        # runtime rows first, as for nsys (a driver call sharing a correlation id loses the link)
        df = df.sort_values("api", key=lambda s: s != "runtime", kind="stable", ignore_index=True)
        return df[API_COLUMNS]

    def read_nvtx(self) -> tuple[pd.DataFrame, int]:
        ev, _ = self._select(self.range_categories)
        n = len(ev)
        start = _ns(ev["ts"])
        df = pd.DataFrame({"text": ev["name"].fillna("").astype(str).to_numpy(dtype=object),
                           "start_ns": start, "end_ns": start + _ns(ev["dur"]),
                           "kind": "pushpop", "domain": ev["cat"].to_numpy(dtype=object),
                           "global_tid": np.full(n, -1, np.int64),
                           "pid": _int(ev["pid"], n), "tid": _int(ev["tid"], n)})
        df = df.sort_values(["start_ns", "end_ns"], ascending=[True, False], kind="stable", ignore_index=True)
        return df, 0

    def read_metadata(self) -> dict:
        d = self.data
        ev = self._events
        span = None
        if len(ev):
            ts = _ns(ev["ts"])
            span = (int(ts.min()), int((ts + _ns(ev["dur"])).max()))
        gpus = [normalise_gpu(p) for p in d.get("deviceProperties") or [] if isinstance(p, dict)]
        return {
            "source": "kineto",
            "gpus": gpus,
            "schema_version": d.get("schemaVersion"),
            "trace_span_ns": span,
            "base_time_ns": d.get("baseTimeNanoseconds"),
            "cuda_runtime_version": d.get("cuda_runtime_version"),
            "cuda_driver_version": d.get("cuda_driver_version"),
            "distributed_info": d.get("distributedInfo"),
            "trace_events": len(d["traceEvents"]),
        }
