"""Trace metadata shared by the readers: GPU descriptions in gdnlab's keys, the nsys version, and
whether nsys's capture settings say gdnlab ran the profiled command."""
from __future__ import annotations

import re

__all__ = ["normalise_gpu", "gpus_from_nsys", "find_nsys_version", "captured_by_gdnlab"]


_GDNLAB_WORD = re.compile(r"(^|[/\\\s])gdnlab([.\s]|$)")


def captured_by_gdnlab(capture: dict[str, object]) -> bool:
    """Whether nsys's ``META_DATA_CAPTURE`` rows say the profiled command was gdnlab's: a
    ``PROCESS_<i>:COMMAND`` or ``PROCESS_<i>:ARGUMENT_<j>`` value that is the word ``gdnlab`` or starts
    a module path with it (``python -m gdnlab workload``, ``python -m gdnlab.workload``,
    ``.../bin/gdnlab``)."""
    for k, v in capture.items():
        if str(k).startswith("PROCESS_") and (":COMMAND" in str(k) or ":ARGUMENT" in str(k)):
            for item in v if isinstance(v, list) else [v]:
                if _GDNLAB_WORD.search(str(item)):
                    return True
    return False


def find_nsys_version(*tables: dict[str, object]) -> str | None:
    """The nsys version from META_DATA_EXPORT / META_DATA_CAPTURE rows: EXPORT_PRODUCT_VERSION, else
    any key naming a product/nsys version (the key names vary between nsys releases)."""
    for key in ("EXPORT_PRODUCT_VERSION", "NSYS_VERSION", "PRODUCT_VERSION"):
        for t in tables:
            if t.get(key):
                return str(t[key])
    for t in tables:
        for k, v in t.items():
            if v and re.search(r"(PRODUCT|NSYS).*VERSION", k, re.IGNORECASE):
                return str(v[0] if isinstance(v, list) else v)
    return None


_CANDIDATES = {
    "name": ("name",),
    "cc_major": ("computeMajor", "computeCapabilityMajor", "major", "ccMajor"),
    "cc_minor": ("computeMinor", "computeCapabilityMinor", "minor", "ccMinor"),
    "sm_count": ("smCount", "numMultiprocessors", "multiProcessorCount", "numSms"),
    "memory_bytes": ("totalMemory", "globalMemorySize", "totalGlobalMem"),
    "memory_bandwidth_bytes_per_s": ("memoryBandwidth",),
    "clock_rate_hz": ("clockRate",),          # nsys TARGET_INFO_GPU.clockRate is in Hz (1980000000 on H100)
    "l2_cache_bytes": ("l2CacheSize",),
    "chip": ("chipName",),
    "uuid": ("uuid",),
    "bus": ("busLocation",),
}


def _pick(row: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return row[k]
    return None


def normalise_gpu(row: dict, extra: dict | None = None) -> dict:
    """One GPU description with gdnlab's keys (name, sm "sm90", compute_capability "9.0", sm_count,
    memory_bytes, memory_bandwidth_bytes_per_s, ...) from an nsys / Kineto row. When the compute
    capability is absent it is inferred from the name through :mod:`gdnlab.hardware`
    (``sm_inferred=True``)."""
    merged = {**(extra or {}), **{k: v for k, v in row.items() if v not in (None, "")}}
    g = {k: _pick(merged, c) for k, c in _CANDIDATES.items()}
    g["id"] = _pick(merged, ("id", "gpuId", "cudaId"))
    g["sm_inferred"] = False
    if g["cc_major"] is None and g["name"]:
        try:
            from gdnlab.hardware import spec_for
            spec = spec_for(str(g["name"]))
            g["cc_major"], g["cc_minor"], g["sm_inferred"] = spec.sm_major, spec.sm_minor, True
        except (ImportError, ValueError):
            pass
    if g["cc_major"] is not None:
        mj, mn = int(g["cc_major"]), int(g["cc_minor"] or 0)
        g["compute_capability"], g["sm"] = f"{mj}.{mn}", f"sm{mj}{mn}"
    else:
        g["compute_capability"] = g["sm"] = None
    del g["cc_major"], g["cc_minor"]
    return g


def gpus_from_nsys(gpu_rows: list[dict], cuda_rows: list[dict]) -> list[dict]:
    by_gpu = {}
    for r in cuda_rows:
        key = r.get("gpuId", r.get("id"))
        by_gpu.setdefault(key, r)
    if not gpu_rows:
        return [normalise_gpu(r) for r in by_gpu.values()]
    return [normalise_gpu(r, by_gpu.get(r.get("id"))) for r in gpu_rows]
