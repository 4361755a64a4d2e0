"""Nsight Compute CLI (``ncu``): finding it, its version, the command lines gdnlab runs, the metric set,
and the parser for ``ncu --import REPORT --csv --page raw`` output.

Everything here is plain Python + pandas (no GPU, no ``nsight`` import), so the parser is tested on CPU
against real ncu CSV captured on the H100 (``tests/data/ncu_raw_h100.csv``).

CSV format (``--csv --page raw``, one row per profiled kernel launch; ncu 2022+ including 2025.3)::

    "ID","Process ID","Process Name","Host Name","Kernel Name",...,"Grid Size","Device","CC","dram__bytes_read.sum",...
    "","","","","","","","","","","","byte",...                 <- units row (empty under the fixed columns)
    "0","4242","python3.12","host","gdnlab_ncu_marker","1","7","(32, 1, 1)","(1, 1, 1)","0","9.0","0",...
    "1","4242","python3.12","host","_gdn_fused_recurrent","1","7","(32, 1, 1)","(64, 1, 1)","0","9.0","2,101,248",...

Every field is quoted; numbers may carry thousands separators (``"2,101,248"``); unavailable values
read ``n/a``. Lines ncu writes about itself start with ``==PROF==`` / ``==WARNING==`` / ``==ERROR==``
and are skipped. Older/other pages print one metric per row ("Metric Name", "Metric Unit",
"Metric Value"); :func:`parse_raw_csv` accepts that long form too and pivots it.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from gdnlab.errors import DataError, NcuNotFoundError, ToolNotFoundError
from gdnlab.tools import find_tool

__all__ = ["MetricSpec", "METRICS", "REQUIRED_METRICS", "metric_names", "NcuNotFoundError", "find_ncu",
           "ncu_version", "parse_version", "build_profile_command", "build_import_command",
           "parse_raw_csv", "to_base_unit", "metric_errors_in_log", "PROFILE_RANGE", "MARKER_KERNEL",
           "GATES"]

#: NVTX push/pop range (default domain) around every profiled call; ``--nvtx-include "gdnlab_profile/"``.
PROFILE_RANGE = "gdnlab_profile"
#: Triton kernel launched before every profiled call; its grid ``(config+1, repeat+1, 1)`` names the call.
MARKER_KERNEL = "gdnlab_ncu_marker"
#: How the driver tells ncu which launches to profile (see :func:`build_profile_command`).
GATES = ("profiler-api", "nvtx")


@dataclass(frozen=True)
class MetricSpec:
    """One Nsight Compute metric and the gdnlab column it becomes.

    ``scale`` converts the metric from ncu's base unit (``byte``, ``nsecond``, ``hz``, ``%``, counts)
    to the column's unit (e.g. ns -> µs is ``1e-3``).
    """

    name: str
    column: str
    scale: float
    required: bool
    description: str


#: The metric set for SM90 (H100/H200). Names are those NVIDIA's own section files use
#: (SpeedOfLight.section, LaunchStatistics.section, MemoryWorkloadAnalysis*.section of Nsight Compute
#: 2025.x); ``dram__throughput.avg.pct_of_peak_sustained_elapsed`` was checked on the lent H100.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("gpu__time_duration.sum", "duration_us", 1e-3, True, "kernel duration (ns -> µs)"),
    MetricSpec("dram__bytes_read.sum", "dram_read_bytes", 1.0, True, "bytes read from DRAM (HBM)"),
    MetricSpec("dram__bytes_write.sum", "dram_write_bytes", 1.0, True, "bytes written to DRAM (HBM)"),
    MetricSpec("dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram_throughput_pct", 1.0, True,
               "DRAM throughput, % of peak sustained over the kernel's elapsed time"),
    MetricSpec("sm__throughput.avg.pct_of_peak_sustained_elapsed", "sm_throughput_pct", 1.0, True,
               "Compute (SM) throughput, % of peak (SOL section)"),
    MetricSpec("sm__warps_active.avg.pct_of_peak_sustained_active", "achieved_occupancy_pct", 1.0, True,
               "achieved occupancy: active warps / max warps per SM, % (Occupancy section)"),
    MetricSpec("lts__t_sector_hit_rate.pct", "l2_hit_rate_pct", 1.0, True, "L2 sector hit rate, %"),
    MetricSpec("launch__registers_per_thread", "registers_per_thread", 1.0, True, "registers per thread"),
    MetricSpec("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed", "memory_throughput_pct",
               1.0, False, "Memory throughput (SOL: max of DRAM/L2/L1), % of peak"),
    MetricSpec("sm__maximum_warps_per_active_cycle_pct", "theoretical_occupancy_pct", 1.0, False,
               "theoretical occupancy, %"),
    MetricSpec("launch__waves_per_multiprocessor", "waves_per_sm", 1.0, False, "waves per SM"),
    MetricSpec("launch__grid_size", "grid_blocks", 1.0, False, "blocks in the grid"),
    MetricSpec("launch__block_size", "block_threads", 1.0, False, "threads per block"),
    MetricSpec("dram__cycles_elapsed.avg.per_second", "dram_clock_mhz", 1e-6, False,
               "DRAM clock during the kernel (Hz -> MHz)"),
    MetricSpec("gpc__cycles_elapsed.avg.per_second", "sm_clock_mhz", 1e-6, False,
               "SM (GPC) clock during the kernel (Hz -> MHz)"),
)
REQUIRED_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.required)
_BY_NAME = {m.name: m for m in METRICS}


def metric_names(required_only: bool = False) -> list[str]:
    """ncu metric names gdnlab collects (``--metrics`` argument order)."""
    return [m.name for m in METRICS if m.required or not required_only]


# ---------------------------------------------------------------------------------------- finding ncu
_CANDIDATE_GLOBS = ("/usr/local/cuda/bin/ncu", "/usr/local/cuda-*/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu",
                    "/usr/local/cuda/nsight-compute-*/ncu")


def find_ncu(explicit: str | os.PathLike | None = None) -> str:
    """Path of the ``ncu`` executable: :func:`gdnlab.tools.find_tool` with ``$NCU`` and the usual install
    places (``/usr/local/cuda/bin/ncu``, ``/usr/local/cuda-*/bin/ncu``, ``/opt/nvidia/nsight-compute/*/ncu``).

    Raises :class:`NcuNotFoundError` naming ``$NCU`` and the package to install.
    """
    try:
        return find_tool("ncu", env_var="NCU", globs=_CANDIDATE_GLOBS, explicit=explicit)
    except ToolNotFoundError as exc:
        raise NcuNotFoundError(
            f"{exc}. Nsight Compute CLI 'ncu' is part of NVIDIA Nsight Compute (the CUDA toolkit's "
            "nsight-compute component); set NCU=/path/to/ncu or add its directory to PATH. Hardware "
            "counters also need root or NVreg_RestrictProfilingToAdminUsers=0.") from None


_VERSION_RE = re.compile(r"Version\s+(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int, int] | None:
    """``"... Version 2025.3.1.0 (build 36398880)"`` -> ``(2025, 3, 1, 0)``; ``None`` if absent."""
    m = _VERSION_RE.search(text or "")
    if not m:
        return None
    return tuple(int(x) if x is not None else 0 for x in m.groups())  # type: ignore[return-value]


@lru_cache(maxsize=8)
def ncu_version(ncu: str) -> tuple[tuple[int, int, int, int] | None, str]:
    """``(version tuple or None, first line of ncu --version output or the error)``."""
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"'{ncu} --version' failed: {type(exc).__name__}: {exc}"
    text = (out.stdout or "") + (out.stderr or "")
    v = parse_version(text)
    line = next((ln.strip() for ln in text.splitlines() if "Version" in ln), text.strip()[:200])
    return v, line


# ---------------------------------------------------------------------------------------- commands
def check_options(gate: str, clock_control: str, cache_control: str) -> None:
    """``ValueError`` naming the option for a gate / clock-control / cache-control ncu does not take."""
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    if clock_control not in ("none", "base"):
        raise ValueError(f"clock_control must be 'none' or 'base', got {clock_control!r}")
    if cache_control not in ("all", "none"):
        raise ValueError(f"cache_control must be 'all' or 'none', got {cache_control!r}")


def build_profile_command(ncu: str, app_argv: list[str], *, report_base: str | os.PathLike,
                          metrics: list[str] | tuple[str, ...] | None = None, gate: str = "profiler-api",
                          clock_control: str = "none", cache_control: str = "all", replay_mode: str = "kernel",
                          launch_count: int | None = None, kernel_regex: str | None = None) -> list[str]:
    """The ``ncu`` command that profiles ``app_argv`` (gdnlab's driver) into ``report_base.ncu-rep``.

    * ``gate="profiler-api"``: ``--profile-from-start off``; the driver wraps each profiled call in
      ``cudaProfilerStart/Stop`` (``torch.cuda.profiler``), so only those launches are profiled — warm-up,
      JIT compilation and input set-up are not, whatever the kernels are called.
    * ``gate="nvtx"``: ``--nvtx --nvtx-include "gdnlab_profile/"``: only launches inside the driver's
      NVTX push/pop range ``gdnlab_profile`` (default domain) are profiled.
    * ``clock_control="none"``: ncu's default (``base``) locks SM and memory clocks to base frequency,
      which makes every kernel slower than in an ordinary run; with ``none`` the GPU runs at the clocks a
      sweep sees, so ``gpu__time_duration`` can be compared with the sweep's timings.
    * ``cache_control="all"`` (ncu's default): caches are flushed before every replay pass, so DRAM
      bytes are the cold-cache traffic the roofline byte formula assumes and passes agree.
    * ``kernel_regex``: optional ``--kernel-name regex:`` filter (the marker kernel is always let through).
    """
    check_options(gate, clock_control, cache_control)
    if replay_mode not in ("kernel", "application"):
        raise ValueError(f"replay_mode must be 'kernel' or 'application', got {replay_mode!r}")
    if not app_argv:
        raise ValueError("app_argv must name the program to profile")
    metrics = list(metrics or metric_names())
    cmd = [ncu, "--target-processes", "all", "--replay-mode", replay_mode,
           "--clock-control", clock_control, "--cache-control", cache_control,
           "--metrics", ",".join(metrics)]
    if gate == "profiler-api":
        cmd += ["--profile-from-start", "off"]
    else:
        cmd += ["--nvtx", "--nvtx-include", f"{PROFILE_RANGE}/"]
    if kernel_regex:
        cmd += ["--kernel-name", f"regex:{MARKER_KERNEL}|{kernel_regex}"]
    if launch_count:
        cmd += ["--launch-count", str(int(launch_count))]
    cmd += ["--force-overwrite", "--export", str(report_base)]
    return cmd + [str(a) for a in app_argv]


def build_import_command(ncu: str, report: str | os.PathLike, *, base_units: bool = True) -> list[str]:
    """``ncu --import REPORT --csv --page raw [--print-units base]`` (prints the CSV on stdout)."""
    cmd = [ncu, "--import", str(report), "--csv", "--page", "raw"]
    if base_units:
        cmd += ["--print-units", "base"]
    return cmd


_METRIC_LIKE = re.compile(r"[a-z0-9]+__[A-Za-z0-9_.]+")


def metric_errors_in_log(log_text: str, requested: list[str] | tuple[str, ...]) -> list[str]:
    """Requested metrics that an ``==ERROR==`` line of ncu's output names (e.g. an unknown metric)."""
    bad: list[str] = []
    for line in (log_text or "").splitlines():
        if "==ERROR==" not in line:
            continue
        for m in requested:
            base = m.split(".")[0]
            if (m in line or re.search(rf"\b{re.escape(base)}\b", line)) and m not in bad:
                bad.append(m)
    return bad


# ---------------------------------------------------------------------------------------- units
_SI = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_TIME_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
            "second": 1e9, "s": 1e9}
_BIN = {"KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40}


def _numerator(unit: str) -> tuple[float, str] | None:
    m = re.fullmatch(r"([KMGTP]?)(byte|B)", unit)
    if m:
        return _SI[m.group(1)], "byte"
    if unit in _BIN:
        return _BIN[unit], "byte"
    m = re.fullmatch(r"([KMGTP]?)(cycle|inst|sector|request|warp|thread|block)", unit)
    if m:
        return _SI[m.group(1)], m.group(2)
    return None


def to_base_unit(value: float, unit: str | None) -> tuple[float, str]:
    """Convert ``value`` in ncu's ``unit`` to gdnlab's base unit: bytes -> ``byte``, time -> ``nsecond``,
    frequency (``Mhz``, ``cycle/second``, ``cycle/nsecond``) -> ``hz``, ``X/usecond`` -> ``X/second``;
    ``%`` and counts stay. Unknown units are returned unchanged.

    >>> to_base_unit(2.5, "Kbyte")
    (2500.0, 'byte')
    >>> to_base_unit(3.0, "usecond")
    (3000.0, 'nsecond')
    """
    u = (unit or "").strip()
    if not u or math.isnan(value):
        return value, u
    if u in _TIME_NS:
        return value * _TIME_NS[u], "nsecond"
    m = re.fullmatch(r"([KMGT]?)hz", u, re.IGNORECASE)
    if m:
        return value * _SI[m.group(1).upper()], "hz"
    num = _numerator(u)
    if num is not None:
        return value * num[0], num[1]
    if "/" in u:
        top, _, bottom = u.partition("/")
        if bottom in _TIME_NS:
            per_s = 1e9 / _TIME_NS[bottom]              # X/usecond -> X/second
            n = _numerator(top)
            if n is not None:
                scale, base = n
                if base == "cycle":
                    return value * scale * per_s, "hz"
                return value * scale * per_s, f"{base}/second"
    return value, u


# ---------------------------------------------------------------------------------------- CSV parser
_FIXED = {"ID": "id", "Process ID": "process_id", "Process Name": "process_name", "Host Name": "host_name",
          "Kernel Name": "kernel", "Kernel Time": "kernel_time", "Context": "context", "Stream": "stream",
          "Block Size": "block_size", "Grid Size": "grid_size", "Device": "device", "CC": "cc",
          "Section Name": "section"}
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?([eE][-+]?\d+)?")
_NA = {"", "n/a", "N/A", "na", "NaN", "nan", "-"}


def _number(s: str) -> float:
    s = (s or "").strip()
    if s in _NA:
        return float("nan")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        return float("nan")


def _is_metric(col: str) -> bool:
    return bool(_METRIC_LIKE.fullmatch(col))


def _snake(col: str) -> str:
    return _FIXED.get(col) or re.sub(r"[^0-9a-zA-Z]+", "_", col).strip("_").lower() or "col"


def _blocks(text: str) -> list[list[str]]:
    """Split ncu output into CSV blocks, each starting at a ``"ID",...`` header line."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("=="):
            continue
        if s.startswith('"ID",') or s.startswith("ID,"):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    return blocks


def _parse_wide(rows: list[list[str]], block: int, units_out: dict[str, str]) -> list[dict]:
    header = rows[0]
    body = rows[1:]
    units: list[str] = [""] * len(header)
    if body and body[0] and body[0][0].strip() == "":            # the units row
        units = (body[0] + [""] * len(header))[:len(header)]
        body = body[1:]
    records = []
    for r in body:
        if len(r) != len(header):
            continue
        rec: dict = {"block": block}
        for col, unit, val in zip(header, units, r):
            if _is_metric(col):
                v, base = to_base_unit(_number(val), unit)
                if math.isnan(v) and val.strip() not in _NA:      # a text-valued metric
                    rec[col] = val
                    continue
                rec[col] = v
                if base:
                    units_out.setdefault(col, base)
            else:
                rec[_snake(col)] = val
        records.append(rec)
    return records


def _parse_long(rows: list[list[str]], block: int, units_out: dict[str, str]) -> list[dict]:
    header = rows[0]
    ix = {h: i for i, h in enumerate(header)}
    name_i, unit_i, val_i = ix["Metric Name"], ix.get("Metric Unit"), ix["Metric Value"]
    by_id: dict[str, dict] = {}
    for r in rows[1:]:
        if len(r) != len(header):
            continue
        rec = by_id.setdefault(r[ix["ID"]], {"block": block})
        for col, i in ix.items():
            if col in ("Metric Name", "Metric Unit", "Metric Value", "Section Name", "Rule Name",
                       "Rule Type", "Rule Description"):
                continue
            rec.setdefault(_snake(col), r[i])
        unit = r[unit_i] if unit_i is not None else ""
        v, base = to_base_unit(_number(r[val_i]), unit)
        rec[r[name_i]] = v
        if base:
            units_out.setdefault(r[name_i], base)
    return list(by_id.values())


def parse_raw_csv(source: str | os.PathLike) -> pd.DataFrame:
    """Parse ncu CSV (``--csv --page raw``; the long one-metric-per-row form is accepted too).

    ``source`` is a path or the CSV text itself. Returns one row per profiled kernel launch, in launch
    order, with ``block`` (which CSV block/run it came from), ``id`` (int), ``kernel``, ``block_size``,
    ``grid_size`` and the other fixed ncu columns snake-cased, plus one float column per metric (named
    as in ncu) in base units (``byte``, ``nsecond``, ``hz``, ``%``); ``df.attrs["units"]`` maps metric ->
    unit. Several concatenated runs (one header each) are read as consecutive blocks.

    Raises :class:`~gdnlab.errors.DataError` (naming the file) if no ncu CSV header (``"ID",...``) is found.
    """
    origin = "the ncu output"
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and len(source) < 4096 and os.path.exists(source)):
        origin = str(source)
        text = Path(source).read_text(encoding="utf-8", errors="replace")
    else:
        text = str(source)
    blocks = _blocks(text)
    if not blocks:
        head = text[:160].replace("\ufffd", "?")
        raise DataError(f"{origin}: no Nsight Compute CSV header ('\"ID\",\"Process ID\",...') found; expected the "
                        f"output of 'ncu --import REPORT --csv --page raw'; it starts with {head!r}")
    units: dict[str, str] = {}
    records: list[dict] = []
    for b, lines in enumerate(blocks):
        rows = list(csv.reader(io.StringIO("\n".join(lines))))
        rows = [r for r in rows if r]
        if not rows:
            continue
        if "Metric Name" in rows[0] and "Metric Value" in rows[0]:
            records += _parse_long(rows, b, units)
        else:
            records += _parse_wide(rows, b, units)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["block", "id", "kernel"])
    if "id" in df:
        df["id"] = pd.to_numeric(df["id"].astype(str).str.replace(",", ""), errors="coerce").astype("Int64")
        df = df.sort_values(["block", "id"], kind="stable").reset_index(drop=True)
    df.attrs["units"] = units
    return df
