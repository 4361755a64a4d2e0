"""Can nsight-python drive the installed Nsight Compute? A static check that never imports ``nsight``.

``import nsight`` activates Nsight Compute's injection at import time (unless
``NSPY_NCU_INIT_AT_IMPORT=0``), so this module only *reads* the installed package's source and metadata
and asks ``ncu --version``. What nsight-python 1.1.0 requires (read from its wheel,
``nsight/collection/ncu.py``):

* ``MIN_NCU_VERSION = (2026, 2, 1, 0)`` (L32); ``init_injection`` (L177-249) raises
  ``ProfilerException("NVIDIA Nsight Compute 2026.2.1.0 or later is required, but found ...")`` via
  ``check_ncu_version`` (L87-96, called at L204) when ``ncu --version`` is older.
* ``ncu`` must be on ``PATH``: ``shutil.which("ncu")`` (L189, L299); ``$NCU`` is not consulted.
* It then runs ``ncu --list-injection-path-64`` (L146-162) and loads ``libcuda-injection.so`` for the
  in-process symbols ``nvInjBeginProfiling`` / ``nvInjEndProfiling`` (L30-31, L233-241), and attaches with
  ``ncu --mode attach --process-id PID`` (L304-326). All three arrived in Nsight Compute 2026.2.1
  (its release notes: "in-process profiling ... extras/Api/nvComputeInj.h", "--process-id for
  --mode attach", "--list-injection-path-64"), so patching the version check would not help.
* ``ncu-report >= 2026.2.0`` (METADATA ``Requires-Dist``); ``check_ncu_report_version`` (L119-134) wants
  the ncu-report major.minor >= ncu's; ``nsight/extraction.py`` L32 does ``import ncu_report`` at import.
* Import-time modules: ``ncu_report``, ``nvtx``, ``matplotlib`` (analyze.py L12), ``numpy``, ``pandas``,
  ``cuda.bindings`` + ``cuda.pathfinder`` (collection/cupti.py L20-25), ``cuda.core`` (thermovision.py L8).
* ``import nsight`` swallows an injection failure (``nsight/__init__.py`` L17-25) and re-raises it at the
  first profiled call (``NCUCollector.collect``, ncu.py L458-459).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gdnlab.provenance import package_version

from .ncu import NcuNotFoundError, find_ncu, ncu_version

__all__ = ["NsightPythonSupport", "nsight_python_support", "NSPY_1_1_MIN_NCU", "IMPORT_MODULES"]

#: nsight-python 1.1.0, nsight/collection/ncu.py L32 (used when the installed source cannot be read).
NSPY_1_1_MIN_NCU = (2026, 2, 1, 0)
#: modules ``import nsight`` (1.1.0) imports at module level.
IMPORT_MODULES = ("ncu_report", "nvtx", "matplotlib", "numpy", "pandas", "cuda.bindings", "cuda.pathfinder",
                  "cuda.core")


@dataclass
class NsightPythonSupport:
    """Result of :func:`nsight_python_support`: ``ok`` and, when not, every reason."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        head = "nsight-python CAN drive the installed ncu" if self.ok else \
            "nsight-python can NOT drive the installed ncu"
        lines = [head]
        for k in ("nsight_python", "min_ncu", "min_ncu_source", "ncu", "ncu_version", "ncu_on_path",
                  "ncu_report", "list_injection_path", "missing_modules"):
            if k in self.details:
                lines.append(f"  {k}: {self.details[k]}")
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None


def _min_ncu_from_source(pkg_dir: Path | None) -> tuple[tuple[int, ...] | None, str]:
    if pkg_dir is None:
        return None, "nsight package not found"
    src = pkg_dir / "collection" / "ncu.py"
    try:
        text = src.read_text(encoding="utf-8")
    except OSError:
        return None, f"{src} not readable"
    m = re.search(r"^MIN_NCU_VERSION\s*=\s*\(([\d,\s]+)\)", text, re.MULTILINE)
    if not m:
        return None, f"{src}: no MIN_NCU_VERSION (nsight-python < 1.0 launches the script under ncu itself)"
    line = text[:m.start()].count("\n") + 1
    return tuple(int(x) for x in m.group(1).replace(" ", "").split(",") if x), f"{src}:L{line}"


def _vstr(v: tuple[int, ...] | None) -> str:
    return ".".join(str(x) for x in v) if v else "unknown"


def nsight_python_support(ncu: str | os.PathLike | None = None, *, probe_injection: bool = True
                          ) -> NsightPythonSupport:
    """Whether ``nsight.analyze.kernel`` can profile with the Nsight Compute found by
    :func:`gdnlab.counters.ncu.find_ncu` — decided without importing ``nsight``.

    Checks: nsight-python installed; its ``MIN_NCU_VERSION`` (read from the installed
    ``nsight/collection/ncu.py``, else 1.1.0's ``(2026, 2, 1, 0)``) against ``ncu --version``; ``ncu`` on
    ``PATH`` (nsight-python ignores ``$NCU``); the ``ncu-report`` version; the modules ``import nsight``
    needs; and (``probe_injection``) whether ``ncu --list-injection-path-64`` is understood.
    """
    reasons: list[str] = []
    details: dict = {}
    nspy_v = package_version("nsight-python")
    spec = _find_spec("nsight")
    pkg_dir = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations \
        else None
    details["nsight_python"] = nspy_v or ("importable, no metadata" if pkg_dir else "not installed")
    if nspy_v is None and pkg_dir is None:
        reasons.append("nsight-python is not installed (pip install 'nsight-python>=1.1'; gdnlab's [gpu] extra)")
    min_ncu, where = _min_ncu_from_source(pkg_dir)
    if min_ncu is None:
        min_ncu, where = NSPY_1_1_MIN_NCU, f"nsight-python 1.1.0 nsight/collection/ncu.py:L32 ({where})"
    details["min_ncu"] = _vstr(min_ncu)
    details["min_ncu_source"] = where

    try:
        ncu_path = find_ncu(ncu)
    except NcuNotFoundError as exc:
        ncu_path = None
        reasons.append(str(exc))
    details["ncu"] = ncu_path or "not found"
    if ncu_path:
        v, line = ncu_version(ncu_path)
        details["ncu_version"] = f"{_vstr(v)} ({line})"
        if v is None:
            reasons.append(f"could not read the ncu version from '{ncu_path} --version': {line}")
        elif tuple(v) < tuple(min_ncu):
            reasons.append(
                f"ncu {_vstr(v)} is older than nsight-python's MIN_NCU_VERSION {_vstr(min_ncu)} ({where}); "
                "init_injection() raises ProfilerException at the first profiled call. nsight-python >= 1.0 "
                "profiles in-process through Nsight Compute 2026.2.1's injection API (nvInjBeginProfiling/"
                "nvInjEndProfiling, 'ncu --mode attach --process-id', '--list-injection-path-64'), which "
                f"ncu {_vstr(v)} does not have: install Nsight Compute >= {_vstr(min_ncu)} "
                "(CUDA Toolkit 13.3 Update 1) or use engine='ncu-csv'")
        on_path = shutil.which("ncu")
        details["ncu_on_path"] = on_path or "no"
        if not on_path:   # not a blocker: gdnlab's driver gets the directory prepended to PATH
            details["ncu_on_path"] = (f"no (nsight-python calls shutil.which('ncu'); gdnlab prepends "
                                      f"{os.path.dirname(ncu_path)} to the driver's PATH)")
        if probe_injection:
            try:
                out = subprocess.run([ncu_path, "--list-injection-path-64"], capture_output=True, text=True,
                                     timeout=60)
                first = ((out.stdout or "") + (out.stderr or "")).strip().splitlines()[:1]
                ok_path = out.returncode == 0 and first and os.path.isdir(first[0].strip())
                details["list_injection_path"] = (f"ok: {first[0].strip()}" if ok_path else
                                                  f"rc={out.returncode}: {first[0] if first else ''}")
                if not ok_path:
                    reasons.append("'ncu --list-injection-path-64' is not supported by this ncu "
                                   "(added in Nsight Compute 2026.2.1; nsight-python ncu.py L146-162 needs it)")
            except (OSError, subprocess.SubprocessError) as exc:
                details["list_injection_path"] = f"{type(exc).__name__}: {exc}"
    rep_v = package_version("ncu-report")
    details["ncu_report"] = rep_v or ("module importable (no metadata)" if _find_spec("ncu_report") else "missing")
    if rep_v is None and _find_spec("ncu_report") is None:
        reasons.append("ncu-report is not installed (nsight-python imports ncu_report at import time; "
                       "pip install 'ncu-report>=2026.2')")
    missing = [m for m in IMPORT_MODULES if m != "ncu_report" and _find_spec(m) is None]
    details["missing_modules"] = ", ".join(missing) or "none"
    if missing and (nspy_v or pkg_dir):
        reasons.append(f"modules 'import nsight' needs are missing: {', '.join(missing)}")
    return NsightPythonSupport(ok=not reasons, reasons=reasons, details=details)
