"""The tidy counters frame: ncu's kernel rows attributed to the profiled calls, with the run's manifest.

:func:`attribute_kernels` gives each kernel row of :func:`~gdnlab.counters.ncu.parse_raw_csv` the call it
belongs to (the marker kernel's grid names it); :func:`assemble` turns attributed rows and the manifest
into one row per profiled kernel launch with the sweep's join keys (:data:`JOIN_KEYS`), the shape, the
counters in gdnlab units and the provenance columns; :func:`nspy_rows_to_kernels` brings nsight-python's
long rows to the same kernel table. Plain pandas: tested on CPU against real H100 captures.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from gdnlab.provenance import PROVENANCE_COLUMNS
from gdnlab.traces.names import GDN_KERNEL_PATTERN, short_kernel_name

from .ncu import MARKER_KERNEL, METRICS, to_base_unit

__all__ = ["JOIN_KEYS", "attribute_kernels", "assemble", "nspy_rows_to_kernels"]

#: the columns a counters row shares with a sweep row (one configuration of one backend)
JOIN_KEYS: tuple[str, ...] = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "preset")
#: configuration columns the manifest gives every row
_CONFIG_KEYS = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "preset", "H", "HV", "K", "V",
                "act_dtype", "intermediate_dtype", "backend_options")


def nspy_rows_to_kernels(rows: list[dict]) -> pd.DataFrame:
    """nsight-python long rows (``idx, metric, value, unit, kernel``) -> the kernel table
    :func:`assemble` takes (``cfg, rep, kernel_idx, kernel, n_kernels`` + metric columns in base units).
    Values of calls with several kernels were summed by nsight-python; percentages and per-launch values
    are divided by the kernel count (a mean), flagged by ``n_kernels > 1``."""
    recs: dict[int, dict] = {}
    for r in rows:
        rec = recs.setdefault(int(r["idx"]), {"cfg": int(r["idx"]), "rep": 0, "kernel_idx": 0,
                                              "kernel": r.get("kernel", ""),
                                              "n_kernels": str(r.get("kernel", "")).count("|") + 1})
        v, _ = to_base_unit(float(r["value"]), r.get("unit"))
        rec[r["metric"]] = v
    df = pd.DataFrame(list(recs.values()))
    if df.empty:
        return df
    additive = {"gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"}
    for col in df.columns:
        if "__" in col and col not in additive:
            df[col] = df[col] / df["n_kernels"]
    return df



def _grid_xy(s) -> tuple[int, int] | None:
    nums = re.findall(r"\d+", str(s)) if s is not None else []
    return (int(nums[0]), int(nums[1])) if len(nums) >= 2 else None


def attribute_kernels(kernels: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """Give each kernel row of :func:`~gdnlab.counters.ncu.parse_raw_csv` its ``cfg`` (configuration index),
    ``rep`` and ``kernel_idx`` (order within the call), and drop the marker rows.

    The marker's grid ``(cfg+1, rep+1, 1)`` names the call; if the grid column is missing, the k-th marker
    is the k-th entry of ``manifest["markers"]``. Without any marker, the kernels are split evenly over
    the manifest's calls (``ValueError`` if they do not divide). Kernels before the first marker of a
    block are dropped (counted in ``attrs["unattributed"]``).
    """
    k = kernels.copy()
    if k.empty:
        return k.assign(cfg=pd.Series(dtype="Int64"), rep=pd.Series(dtype="Int64"),
                        kernel_idx=pd.Series(dtype="Int64"))
    if "block" not in k:
        k["block"] = 0
    calls = [tuple(int(x) for x in c) for c in manifest.get("markers", [])]
    valid = {int(c["idx"]) for c in manifest.get("configs", [])}
    names = k["kernel"].astype(str)
    is_marker = names.str.contains(MARKER_KERNEL, regex=False)
    k["cfg"] = pd.array([pd.NA] * len(k), dtype="Int64")
    k["rep"] = pd.array([pd.NA] * len(k), dtype="Int64")
    if is_marker.any():
        ordinal = 0
        for i in k.index[is_marker]:
            xy = _grid_xy(k.at[i, "grid_size"]) if "grid_size" in k else None
            if xy is not None and (xy[0] - 1) in valid:
                cfg, rep = xy[0] - 1, xy[1] - 1
            elif ordinal < len(calls):
                cfg, rep = calls[ordinal]
            else:
                raise ValueError(f"marker kernel #{ordinal} has no grid and no manifest entry")
            k.at[i, "cfg"], k.at[i, "rep"] = cfg, rep
            ordinal += 1
        k[["cfg", "rep"]] = k.groupby("block")[["cfg", "rep"]].ffill()
        unattributed = int((k["cfg"].isna() & ~is_marker).sum())
        k = k[~is_marker & k["cfg"].notna()].copy()
    else:
        n, c = len(k), len(calls)
        if c == 0 or n % c:
            raise ValueError(f"no marker kernels and {n} kernels cannot be split evenly over {c} profiled calls")
        per = n // c
        k["cfg"] = pd.array([calls[i // per][0] for i in range(n)], dtype="Int64")
        k["rep"] = pd.array([calls[i // per][1] for i in range(n)], dtype="Int64")
        unattributed = 0
    k["kernel_idx"] = k.groupby(["cfg", "rep"]).cumcount().astype("Int64")
    k.attrs["unattributed"] = unattributed
    return k.reset_index(drop=True)


def assemble(kernels: pd.DataFrame, manifest: dict, *, attributed: bool = False) -> pd.DataFrame:
    """The tidy metrics frame from attributed kernel rows and the run manifest.

    ``kernels``: output of :func:`attribute_kernels` (``attributed=True``) or raw
    :func:`~gdnlab.counters.ncu.parse_raw_csv` output (attributed here). Every configuration of the manifest
    appears: profiled ones once per kernel launch (``outcome="ok"``), the others once with NaN counters and
    their ``outcome`` / ``reason``.
    """
    k = kernels if attributed or kernels.empty or "cfg" in kernels else attribute_kernels(kernels, manifest)
    k = k.copy()
    cfgs = {int(c["idx"]): c for c in manifest.get("configs", [])}
    out = pd.DataFrame(index=k.index)
    for spec in METRICS:
        if spec.name in k:
            out[spec.column] = pd.to_numeric(k[spec.name], errors="coerce") * spec.scale
        else:
            out[spec.column] = np.nan
    out["dram_bytes"] = out["dram_read_bytes"] + out["dram_write_bytes"]
    dur_ns = out["duration_us"] * 1e3
    out["dram_bw_gbps"] = out["dram_bytes"] / dur_ns.where(dur_ns > 0)     # bytes/ns == GB/s
    out["cfg"] = k["cfg"].astype("Int64") if "cfg" in k else pd.array([pd.NA] * len(k), dtype="Int64")
    out["rep"] = k["rep"].astype("Int64") if "rep" in k else 0
    out["kernel_idx"] = k["kernel_idx"].astype("Int64") if "kernel_idx" in k else 0
    out["kernel"] = k["kernel"].astype(str) if "kernel" in k else ""
    for col in ("block_size", "grid_size"):
        out[col] = k[col].astype(str) if col in k else None
    out = out[out["cfg"].isin(list(cfgs))]
    if "n_kernels" in k:
        out["n_kernels"] = k.loc[out.index, "n_kernels"].astype(int)
    else:
        out["n_kernels"] = out.groupby(["cfg", "rep"])["kernel"].transform("size").astype(int)
    out["n_kernels"] = out["n_kernels"].astype("Int64")
    out["outcome"] = "ok"
    out["reason"] = ""
    missing = [i for i in cfgs if i not in set(out["cfg"].dropna().astype(int))]
    if missing:
        extra = pd.DataFrame({"cfg": pd.array(missing, dtype="Int64")})
        extra["outcome"] = [cfgs[i].get("outcome", "failed") if cfgs[i].get("outcome") != "ok" else "not_profiled"
                            for i in missing]
        extra["reason"] = [cfgs[i].get("reason") or ("ran, but ncu recorded no kernel for it"
                                                     if cfgs[i].get("outcome") == "ok" else "")
                           for i in missing]
        out = pd.concat([out, extra], ignore_index=True)
        out["n_kernels"] = out["n_kernels"].astype("Int64")
    for key in _CONFIG_KEYS:
        out[key] = [cfgs[int(c)].get(key) for c in out["cfg"]]
    out["backend_options"] = [_options_text(v) for v in out["backend_options"]]
    out["backend_kernel"] = [(cfgs[int(c)].get("kernel_path") or {}).get("kernel") for c in out["cfg"]]
    for col in ("batch", "draft_tokens", "H", "HV", "K", "V"):
        out[col] = pd.to_numeric(out[col]).astype("int64")
    out["kernel_short"] = [short_kernel_name(n) if n and n != "nan" else None for n in out["kernel"].fillna("")]
    out["is_gdn"] = out["kernel"].fillna("").str.contains(GDN_KERNEL_PATTERN, case=False, regex=True)
    prov = manifest.get("provenance") or {}
    for col in PROVENANCE_COLUMNS:
        out[col] = prov.get(col)
    out["status"] = "measured"
    opts = manifest.get("options") or {}
    out["engine"] = manifest.get("engine")
    out["ncu_version"] = manifest.get("ncu_version")
    out["clock_control"] = opts.get("clock_control")
    out["cache_control"] = opts.get("cache_control")
    front = list(JOIN_KEYS) + ["rep", "kernel_idx", "kernel_short", "is_gdn", "n_kernels", "outcome"]
    metric_cols = [m.column for m in METRICS] + ["dram_bytes", "dram_bw_gbps"]
    rest = [c for c in out.columns if c not in front + metric_cols]
    out = out[front + metric_cols + rest]
    out = out.sort_values(["cfg", "rep", "kernel_idx"], na_position="last", kind="stable").reset_index(drop=True)
    return out




def _options_text(value) -> str | None:
    """Backend options as canonical JSON (``'{"zero_padding_output": false}'``), as the sweep stores them."""
    import json

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True)
