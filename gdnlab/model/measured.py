"""Measured decoder components (``gdnlab.components`` runs) as a lookup of op times, and their
projection to another GPU by hardware ratios.

:func:`load_components` reads one component run (a folder with ``components.parquet``,
``recipes.parquet`` and, when present, ``slice.parquet``, ``allreduce.parquet``, ``run.json``) and
returns :class:`ComponentTimes`. :meth:`ComponentTimes.net_us` gives one op's time (µs, the graph
replay's fixed cost ``overhead_us`` removed) at any mode, batch ``B``, draft tokens ``T`` and KV
length:

* between measured batches: log(B)-log(time) interpolation; beyond them the end segment's slope;
* between measured KV lengths (``attn.attention``, ``mtp_draft``): linear in KV length;
* an MTP step at a ``T`` other than the measured one: linear in ``T`` between the decode row
  (``T = 1``) and the measured MTP row at the same ``B`` (labelled *interpolated*).

:meth:`ComponentTimes.projected` scales every op to another GPU (``status = "projected"``):

* memory / latency ops (norms, conv, GDN kernels, attention, elementwise): the part above the op's
  smallest-batch time (its latency floor, which does not scale) times the HBM bandwidth ratio;
* weight-streaming GEMMs (projections, router, experts, lm_head): the whole time times the bandwidth
  ratio times the weight-byte ratio (``weight_bytes``: e.g. NVFP4 0.5625 B/param vs the measured
  bf16 2 B/param for the routed and shared experts).

Bandwidths are datasheet peaks (:mod:`gdnlab.hardware`). Nothing here reads a file except
:func:`load_components`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, InputError
from ..hardware import GPUSpec, spec_for
from ..provenance import IDENTITY_COLUMNS
from .numeric import linear_interp, loglog_interp

__all__ = ["ComponentTimes", "load_components", "GEMM_COMPONENTS", "MEMORY_COMPONENTS", "GDN_COMPONENTS",
           "KV_COMPONENTS", "NVFP4_BYTES_PER_PARAM", "component_class"]

#: weight-streaming GEMM ops: time scales with weight bytes / bandwidth
GEMM_COMPONENTS = frozenset({"gdn.in_proj", "gdn.out_proj", "attn.qkv_proj", "attn.o_proj", "moe.router",
                             "moe.experts", "moe.shared_expert", "lm_head.gemm", "mtp.fc", "mtp_draft"})
#: GDN kernels (decode / verify and the commit of an MTP step)
GDN_COMPONENTS = frozenset({"gdn.recurrent", "gdn.commit"})
#: ops whose time depends on the KV length
KV_COMPONENTS = frozenset({"attn.attention", "mtp_draft"})
#: everything else is memory / latency bound
MEMORY_COMPONENTS = frozenset({"gdn.norm", "gdn.conv1d", "gdn.gated_norm", "moe.norm", "attn.norm",
                               "attn.qk_norm_rope", "attn.kv_write", "attn.attention", "attn.out_gate",
                               "lm_head.norm", "mtp.norm"}) | GDN_COMPONENTS
#: NVIDIA ModelOpt NVFP4: 4-bit values + one FP8 scale per 16 values
NVFP4_BYTES_PER_PARAM = 0.5625


def component_class(name: str) -> str:
    """``"gemm"`` (weight streaming) or ``"memory"`` (bandwidth / latency bound)."""
    return "gemm" if name in GEMM_COMPONENTS else "memory"


@dataclass
class ComponentTimes:
    """Op times of one component run, on the GPU they were measured on or projected to another.

    Attributes:
        rows: ``ok`` component rows (``component, mode, batch, tokens, kv_len, strategy, net_us``;
            ``net_us`` = median minus ``overhead_us``, >= 0).
        recipes: ``mode, component, count`` of the measured slice step (3 GDN + 1 attention layers).
        overhead_us: fixed cost of one CUDA-graph replay (``launch.graph``).
        gpu: the GPU the times stand for.
        draft_tokens: ``T`` of the measured MTP rows.
        status: ``"measured"`` or ``"projected"``.
        source: one line for footnotes.
        slices: measured slice steps (``mode, batch, kv_len, median_us, outcome``) or None.
        allreduce: projected TP all-reduce rows or None.
        meta: the run's ``run.json`` (may be empty).
    """

    rows: pd.DataFrame
    recipes: pd.DataFrame
    overhead_us: float
    gpu: GPUSpec
    draft_tokens: int
    status: str = "measured"
    source: str = ""
    slices: pd.DataFrame | None = None
    allreduce: pd.DataFrame | None = None
    meta: dict = field(default_factory=dict)

    REQUIRED = ("component", "mode", "batch", "kv_len", "strategy", "median_us")
    #: run-wide provenance columns copied from the component rows into :attr:`provenance`
    PROVENANCE_KEYS = IDENTITY_COLUMNS

    @property
    def provenance(self) -> dict[str, str]:
        """Where the times come from, as a flat dict: ``status`` (``measured`` / ``projected``),
        ``gpu`` (the GPU the times stand for), ``detail`` (:attr:`source`) and the run's provenance
        columns (``sm``, ``torch``, ``triton``, ``git_commit``, ...) where the rows carry them; a
        projection keeps the measured run's columns under ``measured_<key>``. Read by
        :func:`gdnlab.report.describe` for a notebook's source record."""
        out: dict[str, str] = {"status": self.status, "gpu": self.gpu.name, "detail": self.source}
        for k in self.PROVENANCE_KEYS:
            if k == "gpu" or k not in self.rows:
                continue
            vals = sorted({str(v) for v in self.rows[k].dropna().unique()})
            if vals:
                out[k if self.status == "measured" else f"measured_{k}"] = ", ".join(vals)
        return out

    @classmethod
    def from_frames(cls, components: pd.DataFrame, recipes: pd.DataFrame, *, gpu: GPUSpec | str | None = None,
                    slices: pd.DataFrame | None = None, allreduce: pd.DataFrame | None = None,
                    meta: dict | None = None, source: str = "") -> ComponentTimes:
        """Build from the frames :func:`gdnlab.components.run_grid` returns (or files it wrote).

        ``gpu`` defaults to the rows' ``gpu`` column. Raises :class:`~gdnlab.errors.DataError` when
        columns or the graph overhead row (``launch.graph``) are missing or no ``ok`` row is left."""
        if not isinstance(components, pd.DataFrame) or components.empty:
            raise DataError("components must be a non-empty DataFrame of component timings")
        missing = [c for c in cls.REQUIRED if c not in components.columns]
        if missing:
            raise DataError(f"component rows miss columns {missing}")
        if not {"mode", "component", "count"} <= set(recipes.columns):
            raise DataError("recipes need columns mode, component, count")
        c = components
        if "outcome" in c:
            c = c[c["outcome"].astype(str) == "ok"]
        launch = c[c["component"] == "launch.graph"]
        if launch.empty:
            raise DataError("component rows have no 'launch.graph' row (the graph replay overhead)")
        overhead = float(launch["median_us"].iloc[0])
        r = c[c["component"] != "launch.graph"].copy()
        if r.empty:
            raise DataError("component rows have no ok timing besides launch.graph")
        r["batch"] = pd.to_numeric(r["batch"], errors="coerce")
        r["kv_len"] = pd.to_numeric(r["kv_len"], errors="coerce")
        r["net_us"] = (pd.to_numeric(r["median_us"], errors="coerce") - overhead).clip(lower=0.0)
        r = r.dropna(subset=["batch", "net_us"])
        if gpu is None:
            names = sorted({str(g) for g in components.get("gpu", pd.Series(dtype=str)).dropna().unique()})
            if not names:
                raise DataError("component rows have no 'gpu' column; pass gpu=")
            gpu = names[0]
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        T = int(pd.to_numeric(components.get("draft_tokens", pd.Series([4]))).dropna().iloc[0]) \
            if "draft_tokens" in components and components["draft_tokens"].notna().any() else 4
        status = "measured" if (components.get("status", pd.Series(["measured"])) == "measured").all() else \
            str(components["status"].iloc[0])
        src = source or f"{status} components on {spec.name} ({len(r)} rows, graph overhead {overhead:.2f} µs)"
        return cls(r.reset_index(drop=True), recipes.copy(), overhead, spec, T, status, src, slices, allreduce,
                   dict(meta or {}))

    # ------------------------------------------------------------------ lookups
    def summary(self) -> pd.DataFrame:
        """Median op time (µs, graph overhead removed) per component x (mode, batch); KV-dependent
        components at their smallest measured KV length."""
        r = self.rows
        kv0 = r["kv_len"].min()
        r = r[r["kv_len"].isna() | (r["kv_len"] == kv0)]
        t = r.pivot_table(index="component", columns=["mode", "batch"], values="net_us", aggfunc="median")
        t.attrs["provenance"] = self.source
        return t

    def components(self) -> list[str]:
        return sorted(self.rows["component"].unique())

    def strategies(self) -> list[str]:
        s = self.rows.loc[(self.rows["component"] == "gdn.recurrent") & (self.rows["mode"] == "mtp"),
                          "strategy"].dropna().unique()
        return sorted(str(x) for x in s)

    def recipe(self, mode: str) -> dict[str, int]:
        """``{component: count}`` of the measured slice step in ``mode`` (a copy of a per-mode memo)."""
        memo = self.__dict__.setdefault("_recipes", {})
        if mode not in memo:
            r = self.recipes[self.recipes["mode"] == mode]
            if r.empty:
                raise DataError(f"no recipe for mode {mode!r}; have {sorted(self.recipes['mode'].unique())}")
            memo[mode] = {str(c): int(n) for c, n in zip(r["component"], r["count"])}
        return dict(memo[mode])

    def _table(self, component: str, mode: str, strategy: str | None):
        """Cached numpy arrays for one (component, mode, strategy): ``[(kv or None, batches, net_us)]``."""
        cache = self.__dict__.setdefault("_cache", {})
        key = (component, mode, strategy)
        if key in cache:
            return cache[key]
        groups = cache.get("_by_component_mode")
        if groups is None:                   # one split of the rows serves every later lookup
            groups = cache["_by_component_mode"] = {k: g for k, g in self.rows.groupby(["component", "mode"])}
        r = groups.get((component, mode), self.rows.iloc[:0])
        if component in GDN_COMPONENTS and mode == "mtp" and strategy is not None and not r.empty:
            s = r[r["strategy"] == strategy]
            if s.empty:
                raise InputError(f"no measured {component} rows for strategy {strategy!r}; measured: "
                                 f"{sorted(r['strategy'].dropna().unique())}")
            r = s
        out = []
        if component in KV_COMPONENTS:
            for k, g in r.dropna(subset=["kv_len"]).groupby("kv_len"):
                b = g.groupby("batch")["net_us"].median()
                out.append((float(k), b.index.to_numpy(float), b.to_numpy(float)))
        elif not r.empty:
            b = r.groupby("batch")["net_us"].median()
            out.append((None, b.index.to_numpy(float), b.to_numpy(float)))
        cache[key] = out
        return out

    def has(self, component: str, mode: str) -> bool:
        """Whether ``component`` has measured rows in ``mode``."""
        return bool(self._table(component, mode, None))

    def _at(self, component: str, mode: str, batch: float, kv_len: float | None, strategy: str | None) -> float:
        tab = self._table(component, mode, strategy)
        if not tab:
            raise InputError(f"no measured rows for component {component!r} in mode {mode!r}")
        if component in KV_COMPONENTS:
            if kv_len is None:
                raise InputError(f"{component!r} depends on the KV length: pass kv_len")
            xs = np.array([k for k, _, _ in tab])
            ys = np.array([loglog_interp(b, t, batch) for _, b, t in tab])
            return linear_interp(xs, ys, float(kv_len))
        _, b, t = tab[0]
        return loglog_interp(b, t, batch)

    def net_us(self, component: str, mode: str, batch: float, *, T: int | None = None, kv_len: float | None = None,
               strategy: str | None = None) -> float:
        """One op's time (µs, graph overhead removed) at ``mode`` (``"decode"`` / ``"mtp"``), ``batch``
        requests (> 0), ``T`` draft tokens (MTP; default: the measured T) and ``kv_len`` tokens."""
        if not batch > 0:
            raise InputError(f"batch must be > 0, got {batch!r}")
        if mode == "decode" or T is None or T == self.draft_tokens:
            return self._at(component, mode, batch, kv_len, strategy)
        if mode != "mtp":
            raise InputError(f"mode must be 'decode' or 'mtp', got {mode!r}")
        if T < 1:
            raise InputError(f"T (draft tokens) must be >= 1, got {T!r}")
        hi = self._at(component, "mtp", batch, kv_len, strategy)
        if component == "gdn.commit":            # one state per request, whatever T
            return hi
        if not self.has(component, "decode"):
            return hi
        lo = self._at(component, "decode", batch, kv_len, None)
        return max(lo + (hi - lo) * (T - 1) / (self.draft_tokens - 1), 0.0)

    # ------------------------------------------------------------------ projection
    def projected(self, gpu: GPUSpec | str, *, weight_bytes: dict[str, float] | None = None) -> ComponentTimes:
        """The same ops on ``gpu`` by hardware ratios (see the module docstring).

        ``weight_bytes`` maps a GEMM component to (target bytes/param) / (measured bytes/param), e.g.
        ``{"moe.experts": 0.5625 / 2}`` for NVFP4 experts measured in bf16."""
        spec = spec_for(gpu) if isinstance(gpu, str) else gpu
        r_bw = self.gpu.peak_hbm_gbps / spec.peak_hbm_gbps
        wb = dict(weight_bytes or {})
        rows = self.rows.copy()
        floor = rows.groupby(["component", "mode", "kv_len", "strategy"], dropna=False)["net_us"].transform(
            lambda s: s.iloc[int(np.argmin(rows.loc[s.index, "batch"].to_numpy()))])
        gemm = rows["component"].isin(GEMM_COMPONENTS)
        scale = rows["component"].map(lambda c: wb.get(c, 1.0)) * r_bw
        rows.loc[gemm, "net_us"] = rows.loc[gemm, "net_us"] * scale[gemm]
        mem = ~gemm
        rows.loc[mem, "net_us"] = floor[mem] + (rows.loc[mem, "net_us"] - floor[mem]).clip(lower=0) * r_bw
        wtxt = ", ".join(f"{k} x{v:.3g}" for k, v in sorted(wb.items())) or "none"
        src = (f"projected {self.gpu.name} -> {spec.name}: bandwidth ratio {r_bw:.3f} "
               f"({self.gpu.peak_hbm_gbps:g} / {spec.peak_hbm_gbps:g} GB/s datasheet); memory ops keep their "
               f"smallest-batch floor; weight-byte ratios: {wtxt}; from {self.source}")
        new = replace(self, rows=rows, gpu=spec, status="projected", source=src, slices=None)
        new.__dict__.pop("_cache", None)
        return new


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{what}: {path} is not a file")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is one DataError
        raise DataError(f"{what}: cannot read {path}: {type(exc).__name__}: {exc}") from None


def load_components(folder: str | Path) -> ComponentTimes:
    """Read a component run folder (``components.parquet``, ``recipes.parquet``; optional
    ``slice.parquet``, ``allreduce.parquet``, ``run.json``). Raises :class:`~gdnlab.errors.DataError`
    naming what is missing."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"component run folder {p} does not exist")
    comp = _read_parquet(p / "components.parquet", "components")
    rec = _read_parquet(p / "recipes.parquet", "recipes")
    slices = _read_parquet(p / "slice.parquet", "slice") if (p / "slice.parquet").is_file() else None
    ar = _read_parquet(p / "allreduce.parquet", "allreduce") if (p / "allreduce.parquet").is_file() else None
    meta = {}
    if (p / "run.json").is_file():
        try:
            meta = json.loads((p / "run.json").read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"run.json in {p}: {exc}") from None
    gpu = None
    if "gpu" in comp and comp["gpu"].notna().any():
        gpu = str(comp["gpu"].dropna().iloc[0])
    return ComponentTimes.from_frames(comp, rec, gpu=gpu, slices=slices, allreduce=ar, meta=meta,
                                      source=f"measured on {gpu or 'unknown GPU'} ({p.name})")
