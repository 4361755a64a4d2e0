"""``profile_kernels``: Nsight Compute counters of the GDN decode/verify kernels as a tidy DataFrame.

Two engines behind one call:

* ``"ncu-csv"``: ``ncu --profile-from-start off --clock-control none --metrics ... -o REPORT python -m
  gdnlab.metrics.driver PLAN`` (one ncu run per backend), then ``ncu --import REPORT --csv --page raw
  --print-units base``, parsed by :func:`gdnlab.metrics.ncu.parse_raw_csv`. Works with any ncu >= 2022.
* ``"nsight-python"``: the driver profiles each configuration with ``nsight.analyze.kernel`` +
  ``nsight.annotate`` (needs nsight-python >= 1.0 *and* Nsight Compute >= 2026.2.1, see
  :mod:`gdnlab.metrics.nspy`).
* ``"auto"``: nsight-python when :func:`~gdnlab.metrics.nspy.nsight_python_support` says it can drive
  the installed ncu, else ncu-csv.

Rows (one per profiled kernel launch) carry the sweep's join keys (``backend, mode, batch, draft_tokens,
state_dtype, preset``), the shape, the kernel name, the counters in gdnlab units (``duration_us``,
``dram_read_bytes``, ``dram_throughput_pct``, ...), derived ``dram_bytes`` / ``dram_bw_gbps``, and the
provenance columns of :func:`gdnlab.provenance.collect` (taken in the process that ran the kernels) with
``status="measured"``. Configurations that did not run appear once with ``outcome`` = ``skipped`` /
``failed`` and the ``reason``. :func:`summarize_calls` reduces kernels to one row per configuration.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .ncu import (
    GDN_KERNEL_REGEX,
    MARKER_KERNEL,
    METRICS,
    build_import_command,
    build_profile_command,
    check_options,
    find_ncu,
    metric_errors_in_log,
    metric_names,
    ncu_version,
    parse_raw_csv,
    to_base_unit,
)

__all__ = ["profile_kernels", "assemble", "attribute_kernels", "summarize_calls", "format_table", "JOIN_KEYS",
           "DEFAULT_BACKENDS", "ENGINES", "resolve_shape", "save_frame"]

JOIN_KEYS: tuple[str, ...] = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "preset")
DEFAULT_BACKENDS: tuple[str, ...] = ("flashinfer", "triton")
ENGINES = ("auto", "nsight-python", "ncu-csv")
MODES = ("decode", "verify")
_PROV_COLS = ("gpu", "sm", "driver", "cuda", "torch", "triton", "flashinfer", "timestamp", "host")
_SUM_COLS = ("duration_us", "dram_read_bytes", "dram_write_bytes", "dram_bytes")
_WEIGHTED = ("dram_throughput_pct", "sm_throughput_pct", "achieved_occupancy_pct", "l2_hit_rate_pct",
             "memory_throughput_pct")
_REPO_ROOT = str(Path(__file__).resolve().parents[2])


# ---------------------------------------------------------------------------------------- arguments
def _as_list(value, name: str) -> list:
    if value is None:
        raise ValueError(f"{name} must not be None")
    if isinstance(value, (str, int)):
        value = [value]
    out = list(value)
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def resolve_shape(preset, tp: int = 1):
    """A :class:`~gdnlab.shapes.GDNShape` from a shape, a preset name (``"qwen3.5-397b-a17b"``) with
    ``tp``, or a sharded name (``"qwen3.5-397b-a17b@tp4"``)."""
    from gdnlab.shapes import GDNShape
    from gdnlab.shapes import preset as get_preset

    if isinstance(preset, GDNShape):
        return preset
    if not isinstance(preset, str) or not preset.strip():
        raise ValueError(f"preset must be a preset name or a GDNShape, got {preset!r}")
    m = re.fullmatch(r"(.+)@tp(\d+)", preset.strip())
    if m:
        if tp not in (1, int(m.group(2))):
            raise ValueError(f"preset {preset!r} already names tp={m.group(2)}, but tp={tp} was given")
        return get_preset(m.group(1), tp=int(m.group(2)))
    return get_preset(preset, tp=tp)


def _plan_configs(backends, modes, batches, state_dtypes, shape, draft_tokens: int, act_dtype: str) -> list[dict]:
    from gdnlab.kernels import backend_names
    from gdnlab.shapes import dtype_name

    known = backend_names()
    backends = [str(b).strip().lower() for b in _as_list(backends, "backends")]
    bad = [b for b in backends if b not in known]
    if bad:
        raise ValueError(f"backends: unknown {bad}; known backends: {known}")
    modes = [str(m).strip().lower() for m in _as_list(modes, "modes")]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"modes: unknown {bad}; expected 'decode' and/or 'verify'")
    batches = _as_list(batches, "batches")
    if any(not isinstance(b, (int, np.integer)) or isinstance(b, bool) or b < 1 for b in batches):
        raise ValueError(f"batches must be positive integers, got {batches!r}")
    try:
        sdts = [dtype_name(d) for d in _as_list(state_dtypes, "state_dtypes")]
    except ValueError as exc:
        raise ValueError(f"state_dtypes: {exc}") from None
    bad = [d for d in sdts if d not in ("float32", "bfloat16")]
    if bad:
        raise ValueError(f"state_dtypes must be float32 and/or bfloat16, got {bad}")
    if not isinstance(draft_tokens, (int, np.integer)) or draft_tokens < 2:
        raise ValueError(f"draft_tokens (T of verify) must be an integer >= 2, got {draft_tokens!r}")
    configs = []                      # batch-major per backend: under a time budget, the batches given first
    for be in dict.fromkeys(backends):  # are covered in every mode and dtype
        for b in dict.fromkeys(int(x) for x in batches):
            for mode in dict.fromkeys(modes):
                for sd in dict.fromkeys(sdts):
                    configs.append({"idx": len(configs), "backend": be, "mode": mode, "batch": b,
                                    "draft_tokens": 1 if mode == "decode" else int(draft_tokens),
                                    "state_dtype": sd, "act_dtype": dtype_name(act_dtype), "preset": shape.name,
                                    "H": shape.H, "HV": shape.HV, "K": shape.K, "V": shape.V})
    return configs


# ---------------------------------------------------------------------------------------- subprocess
def _child_env(extra_path: str | None = None) -> dict:
    env = os.environ.copy()
    env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra_path:
        env["PATH"] = extra_path + os.pathsep + env.get("PATH", "")
    return env


def _stream(cmd: list[str], env: dict, log_path: Path, timeout_s: float | None, verbose: bool) -> tuple[int, bool]:
    """Run ``cmd`` (own process group), tee its output to ``log_path`` (echo unless ``==PROF==``
    progress lines when ``verbose``); kill the group after ``timeout_s``. Returns ``(rc, timed_out)``."""
    profiled = [0]
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env, start_new_session=True, errors="replace")

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith("==PROF== Profiling"):
                    profiled[0] += 1
                    if verbose and profiled[0] % 25 == 0:
                        print(f"  [ncu] {profiled[0]} kernel launches profiled so far", flush=True)
                elif verbose:
                    print("  " + line.rstrip(), flush=True)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            # SIGINT first (like Ctrl-C: the driver stops, ncu still writes what it collected), then harder
            for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = proc.returncode if proc.returncode is not None else -9
        t.join(timeout=10)
        log.write(f"\n# exit code {rc}{' (timed out)' if timed_out else ''}; "
                  f"{profiled[0]} '==PROF== Profiling' lines\n")
    return rc, timed_out


def _tail(path: Path, n: int = 25, pattern: str | None = None) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    if pattern:
        lines = [ln for ln in lines if re.search(pattern, ln)]
    return "\n".join(lines[-n:])


def _first(path: Path, pattern: str) -> str:
    """The first line of ``path`` matching ``pattern`` ('' if none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return next((ln.strip() for ln in f if re.search(pattern, ln)), "")
    except OSError:
        return ""


def _fallback_manifest(plan: dict, reason: str) -> dict:
    return {"gdnlab_metrics_manifest": 1, "engine": plan["engine"], "gate": plan.get("gate"), "provenance": {},
            "markers": [], "configs": [dict(c, outcome="failed", reason=reason) for c in plan["configs"]]}


def _run_ncu_csv(ncu: str, plan: dict, workdir: Path, tag: str, metrics: list[str], timeout_s: float | None,
                 verbose: bool, gate: str, clock_control: str, cache_control: str,
                 kernel_regex: str | None) -> tuple[str | None, dict, list[str]]:
    """One ncu run over ``plan``; returns ``(raw CSV text or None, manifest, notes)``."""
    notes: list[str] = []
    plan_path = workdir / f"plan_{tag}.json"
    plan_path.write_text(json.dumps(plan, indent=1), encoding="utf-8")
    report_base = workdir / f"report_{tag}"
    report = Path(f"{report_base}.ncu-rep")
    app = [sys.executable, "-m", "gdnlab.metrics.driver", str(plan_path)]
    n_calls = len(plan["configs"]) * int(plan["repeats"])
    env = _child_env()
    for attempt in (1, 2):
        if report.exists():
            report.unlink()
        cmd = build_profile_command(ncu, app, report_base=report_base, metrics=metrics, gate=gate,
                                    clock_control=clock_control, cache_control=cache_control,
                                    launch_count=n_calls * 17, kernel_regex=kernel_regex)
        log_path = workdir / f"ncu_{tag}{'' if attempt == 1 else '_retry'}.log"
        if verbose:
            print(f"[gdnlab.metrics] {tag}: {' '.join(cmd[:3])} ... ({len(plan['configs'])} configurations, "
                  f"timeout {'none' if timeout_s is None else f'{timeout_s:.0f} s'}); log {log_path}", flush=True)
        t0 = time.time()
        rc, timed_out = _stream(cmd, env, log_path, timeout_s, verbose)
        notes.append(f"{tag}: ncu exit code {rc}{' (timed out)' if timed_out else ''} after {time.time() - t0:.0f} s")
        if report.exists():
            break
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        bad = metric_errors_in_log(log_text, metrics)
        if attempt == 1 and bad and len(bad) < len(metrics):
            metrics = [m for m in metrics if m not in bad]
            notes.append(f"{tag}: ncu rejected metrics {bad}; retrying without them")
            print(f"[gdnlab.metrics] {tag}: ncu rejected metrics {bad}; retrying without them", flush=True)
            continue
        errors = _tail(log_path, 8, r"==ERROR==|==WARNING==|FATAL|Error") or _tail(log_path, 8)
        notes.append(f"{tag}: no report written; last ncu/driver messages:\n{errors}")
        break
    manifest_path = Path(plan["manifest_path"])
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        done = {c["idx"] for c in manifest["configs"]}
        for c in plan["configs"]:                    # the driver was stopped before reaching these
            if c["idx"] not in done:
                manifest["configs"].append(dict(c, outcome="skipped", reason="driver stopped (ncu timeout) before "
                                                "this configuration"))
    else:
        why = next((t for t in (_first(log_path, pat) for pat in (r"FATAL", r"==ERROR==", r"Error:")) if t),
                   f"see {log_path}")
        manifest = _fallback_manifest(plan, f"driver wrote no manifest: {why.strip()}")
    manifest["metrics"] = metrics
    if not report.exists():
        return None, manifest, notes
    for base_units in (True, False):
        cmd = build_import_command(ncu, report, base_units=base_units)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode == 0 and '"ID"' in out.stdout:
            return out.stdout, manifest, notes
        notes.append(f"{tag}: '{' '.join(cmd[1:])}' failed (rc {out.returncode}): "
                     f"{(out.stderr or out.stdout).strip()[-300:]}")
    return None, manifest, notes


def _run_nspy(plan: dict, workdir: Path, tag: str, ncu: str, timeout_s: float | None,
              verbose: bool) -> tuple[pd.DataFrame | None, dict, list[str]]:
    """One driver run with engine nsight-python; returns ``(kernel rows or None, manifest, notes)``."""
    notes: list[str] = []
    plan_path = workdir / f"plan_{tag}.json"
    plan_path.write_text(json.dumps(plan, indent=1), encoding="utf-8")
    log_path = workdir / f"nspy_{tag}.log"
    rc, timed_out = _stream([sys.executable, "-m", "gdnlab.metrics.driver", str(plan_path)],
                            _child_env(os.path.dirname(ncu)), log_path, timeout_s, verbose)
    notes.append(f"{tag}: nsight-python driver exit code {rc}{' (timed out)' if timed_out else ''}")
    mp = Path(plan["manifest_path"])
    manifest = json.loads(mp.read_text()) if mp.exists() else _fallback_manifest(plan, "driver wrote no manifest")
    rp = Path(plan["nspy"]["results_path"])
    if not rp.exists():
        notes.append(f"{tag}: no nsight-python results; {_tail(log_path, 8)}")
        return None, manifest, notes
    rows = json.loads(rp.read_text())["rows"]
    return nspy_rows_to_kernels(rows), manifest, notes


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


# ---------------------------------------------------------------------------------------- public API
def profile_kernels(backends=DEFAULT_BACKENDS, modes=MODES, batches=(1, 16, 64, 256),
                    state_dtypes=("float32", "bfloat16"), preset="qwen3.5-397b-a17b", *, tp: int = 4,
                    draft_tokens: int = 4, repeats: int = 2, warmup: int = 2, act_dtype: str = "bfloat16",
                    engine: str = "auto", gate: str = "profiler-api", clock_control: str = "none",
                    cache_control: str = "all", metrics: list[str] | None = None, ncu: str | None = None,
                    kernel_regex: str | None = None, time_budget_s: float | None = None,
                    workdir: str | os.PathLike | None = None, raw_csv_out: str | os.PathLike | None = None,
                    manifest_out: str | os.PathLike | None = None, seed: int = 0, device: str = "cuda",
                    verbose: bool = True) -> pd.DataFrame:
    """Nsight Compute counters of each backend's decode/verify kernels, one row per profiled kernel launch.

    Args:
        backends: backend names (``gdnlab.kernels.backend_names()``; the reference is not profiled unless
            named).
        modes: ``"decode"`` (T=1, state written back) and/or ``"verify"`` (T=``draft_tokens``).
        batches: batch sizes B.
        state_dtypes: ``"float32"`` / ``"bfloat16"``; a combination the backend does not support
            (``backend.decode_state_dtypes`` / ``verify_state_dtypes``) appears as ``outcome="skipped"``.
        preset: model preset (``"qwen3.5-397b-a17b"`` with ``tp=4`` is H=4, HV=16, K=V=128), a
            ``"name@tpN"`` string or a :class:`~gdnlab.shapes.GDNShape`.
        repeats: profiled calls per configuration (each is one replayed launch per kernel; 1-3).
        warmup: unprofiled calls before them (the first is validated; JIT compilation happens here).
        engine: ``"auto"`` | ``"nsight-python"`` | ``"ncu-csv"`` (see module docstring).
        gate: ncu-csv only: ``"profiler-api"`` (cudaProfilerStart/Stop) or ``"nvtx"`` (``--nvtx-include``).
        clock_control: ``"none"`` (default: clocks as in a sweep, so durations compare) or ``"base"``.
        cache_control: ``"all"`` (default: caches flushed before each pass: cold-cache DRAM bytes) or ``"none"``.
        metrics: ncu metric names (default :data:`gdnlab.metrics.ncu.METRICS`).
        ncu: path of ncu (default ``$NCU``, PATH, /usr/local/cuda/bin/ncu).
        kernel_regex: optional extra ``--kernel-name regex:`` filter (default: every kernel of the call).
        time_budget_s: wall-clock budget for all ncu runs (seconds); configurations not reached are
            reported as skipped. Backends run in the given order, each with a share of what is left.
        workdir: where plans, logs and ``.ncu-rep`` reports go (default: a new temporary directory).
        raw_csv_out / manifest_out: copy the raw ncu CSV (all runs) / the merged manifest there.

    Returns:
        DataFrame (see module docstring); ``df.attrs`` holds ``engine``, ``engine_reason``, ``notes``,
        ``workdir``, ``manifest``.

    Raises:
        ValueError: a bad argument (named). :class:`~gdnlab.metrics.ncu.NcuNotFoundError`: no ncu.
        RuntimeError: ``engine="nsight-python"`` where it cannot drive the installed ncu (with the reasons).
    """
    from .nspy import nsight_python_support

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    check_options(gate, clock_control, cache_control)
    if not isinstance(repeats, int) or not 1 <= repeats <= 10:
        raise ValueError(f"repeats must be an integer in 1..10, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be an integer >= 1, got {warmup!r}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s!r}")
    shape = resolve_shape(preset, tp)
    configs = _plan_configs(backends, modes, batches, state_dtypes, shape, draft_tokens, act_dtype)
    metrics = list(metrics) if metrics else metric_names()
    ncu_path = find_ncu(ncu)

    reason = f"engine={engine} requested"
    if engine in ("auto", "nsight-python"):
        support = nsight_python_support(ncu_path)
        if engine == "nsight-python" and not support.ok:
            raise RuntimeError("engine='nsight-python' cannot run here:\n" + support.describe())
        engine = "nsight-python" if support.ok else "ncu-csv"
        reason = "nsight-python can drive this ncu" if support.ok else "; ".join(support.reasons)
    ver, ver_line = ncu_version(ncu_path)
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gdnlab_ncu_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"[gdnlab.metrics] engine {engine} ({reason}); ncu {ncu_path} ({ver_line}); workdir {workdir}",
              flush=True)

    t_start = time.time()
    order = list(dict.fromkeys(c["backend"] for c in configs))
    raws: list[str] = []
    kernels: list[pd.DataFrame] = []
    manifests: list[dict] = []
    notes: list[str] = []
    for i, be in enumerate(order):
        sub = [c for c in configs if c["backend"] == be]
        left_cfgs = sum(1 for c in configs if c["backend"] in order[i:])
        deadline = timeout = None
        if time_budget_s is not None:
            remaining = time_budget_s - (time.time() - t_start)
            share = max(remaining * len(sub) / left_cfgs, 5.0)
            deadline = time.time() + share * 0.7                  # a config started just before it must finish
            timeout = share + 20.0                                # ... and ncu must still write its report
        tag = re.sub(r"\W+", "_", be)
        plan = {"engine": engine, "device": device, "gate": gate, "repeats": repeats, "warmup": warmup, "seed": seed,
                "deadline_epoch": deadline, "manifest_path": str(workdir / f"manifest_{tag}.json"),
                "markers": True, "configs": sub,
                "nspy": {"metrics": metrics, "clock_control": clock_control, "cache_control": cache_control,
                         "results_path": str(workdir / f"nspy_{tag}.json"),
                         "output_prefix": str(workdir / f"nspy_{tag}_")}}
        if engine == "ncu-csv":
            raw, manifest, n = _run_ncu_csv(ncu_path, plan, workdir, tag, metrics, timeout, verbose, gate,
                                            clock_control, cache_control, kernel_regex)
            notes += n
            if raw is not None:
                raws.append(raw)
                (workdir / f"raw_{tag}.csv").write_text(raw, encoding="utf-8")
                try:
                    kernels.append(attribute_kernels(parse_raw_csv(raw), manifest))
                except ValueError as exc:
                    notes.append(f"{tag}: could not attribute kernels to calls: {exc}")
        else:
            k, manifest, n = _run_nspy(plan, workdir, tag, ncu_path, timeout, verbose)
            notes += n
            if k is not None:
                kernels.append(k)
        manifests.append(manifest)
    manifest = _merge_manifests(manifests, engine=engine, ncu=ncu_path, ncu_version=ver, options={
        "clock_control": clock_control, "cache_control": cache_control, "gate": gate, "repeats": repeats,
        "warmup": warmup, "seed": seed, "engine_reason": reason})
    if raw_csv_out and raws:
        Path(raw_csv_out).write_text("".join(r if r.endswith("\n") else r + "\n" for r in raws), encoding="utf-8")
    if manifest_out:
        Path(manifest_out).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    kdf = pd.concat(kernels, ignore_index=True) if kernels else pd.DataFrame()
    df = assemble(kdf, manifest, attributed=True)
    df.attrs.update(engine=engine, engine_reason=reason, notes=notes, workdir=str(workdir), manifest=manifest)
    if verbose:
        for n in notes:
            print(f"[gdnlab.metrics] {n}", flush=True)
    return df


def _merge_manifests(manifests: list[dict], **extra) -> dict:
    prov = next((m.get("provenance") for m in manifests if m.get("provenance")), {}) or {}
    merged = {"gdnlab_metrics_manifest": 1, "provenance": prov, "configs": [], "markers": [],
              "metrics": next((m.get("metrics") for m in manifests if m.get("metrics")), None),
              "marker_kernel": next((m.get("marker_kernel") for m in manifests if m.get("marker_kernel")), None)}
    for m in manifests:
        merged["configs"] += m.get("configs", [])
        merged["markers"] += m.get("markers", [])
    merged["configs"].sort(key=lambda c: c["idx"])
    merged.update({k: v for k, v in extra.items() if k != "options"})
    merged["options"] = extra.get("options", {})
    merged["ncu_version"] = ".".join(map(str, extra["ncu_version"])) if extra.get("ncu_version") else None
    return merged


# ---------------------------------------------------------------------------------------- assembly
def _grid_xy(s) -> tuple[int, int] | None:
    nums = re.findall(r"\d+", str(s)) if s is not None else []
    return (int(nums[0]), int(nums[1])) if len(nums) >= 2 else None


def attribute_kernels(kernels: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """Give each kernel row of :func:`~gdnlab.metrics.ncu.parse_raw_csv` its ``cfg`` (configuration index),
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
    :func:`~gdnlab.metrics.ncu.parse_raw_csv` output (attributed here). Every configuration of the manifest
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
    keys = ["backend", "mode", "batch", "draft_tokens", "state_dtype", "preset", "H", "HV", "K", "V", "act_dtype",
            "intermediate_dtype"]
    for key in keys:
        out[key] = [cfgs[int(c)].get(key) for c in out["cfg"]]
    out["backend_kernel"] = [(cfgs[int(c)].get("kernel_path") or {}).get("kernel") for c in out["cfg"]]
    for col in ("batch", "draft_tokens", "H", "HV", "K", "V"):
        out[col] = pd.to_numeric(out[col]).astype("int64")
    try:
        from gdnlab.traces.names import short_kernel_name
        out["kernel_short"] = [short_kernel_name(n) if n and n != "nan" else None for n in out["kernel"].fillna("")]
    except ImportError:  # pragma: no cover - traces is part of gdnlab
        out["kernel_short"] = out["kernel"]
    out["is_gdn"] = out["kernel"].fillna("").str.contains(GDN_KERNEL_REGEX, case=False, regex=True)
    prov = manifest.get("provenance") or {}
    for col in _PROV_COLS:
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


# ---------------------------------------------------------------------------------------- summaries
def summarize_calls(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: kernels of a call summed (time, bytes), percentages weighted by kernel
    duration, registers/occupancy of the call's longest kernel (``main_kernel``), then the median over
    repeats (``reps``). ``dram_bw_gbps`` = DRAM bytes / duration of the call (GB/s = bytes/ns)."""
    ok = df[df["outcome"] == "ok"].copy() if "outcome" in df else df.copy()
    if ok.empty:
        return pd.DataFrame(columns=list(JOIN_KEYS) + ["duration_us", "dram_bw_gbps"])
    group = [c for c in ("cfg",) + JOIN_KEYS + ("H", "HV", "K", "V", "act_dtype", "intermediate_dtype") if c in ok]
    for c in group:                                   # groupby keys without NaN (decode has no intermediate)
        if not pd.api.types.is_numeric_dtype(ok[c]):
            ok[c] = ok[c].astype(object).where(ok[c].notna(), "")
    ok["_w"] = ok["duration_us"].fillna(0.0)
    ok["_gdn_w"] = ok["_w"].where(ok["is_gdn"].astype(bool), 0.0) if "is_gdn" in ok else np.nan
    for c in _WEIGHTED:
        if c in ok:
            ok[f"_{c}"] = ok[c] * ok["_w"]
    ok = ok.reset_index(drop=True)
    g = ok.groupby(group + ["rep"], sort=False)
    calls = g[[c for c in _SUM_COLS if c in ok]].sum(min_count=1)
    w = g["_w"].sum()
    for c in _WEIGHTED:
        if c in ok:
            calls[c] = (g[f"_{c}"].sum() / w.where(w > 0)).fillna(g[c].mean())
    calls["n_kernels"] = g.size()
    calls["gdn_share"] = g["_gdn_w"].sum() / w.where(w > 0)
    main = ok.loc[g["_w"].idxmax().values]
    main.index = calls.index
    calls["main_kernel"] = main["kernel_short"].where(main["kernel_short"].notna(), main["kernel"]) \
        if "kernel_short" in main else main["kernel"]
    for c in ("registers_per_thread", "theoretical_occupancy_pct"):
        if c in main:
            calls[c] = main[c]
    calls = calls.reset_index()
    num = [c for c in calls.columns if c not in group + ["rep", "main_kernel"]]
    summary = calls.groupby(group, sort=False).agg(
        **{c: (c, "median") for c in num}, main_kernel=("main_kernel", "first"), reps=("rep", "nunique")
    ).reset_index()
    summary["dram_bw_gbps"] = summary["dram_bytes"] / (summary["duration_us"] * 1e3)
    summary["formula_bytes"] = [_formula_bytes(r) for _, r in summary.iterrows()]
    summary["bytes_ratio"] = summary["dram_bytes"] / summary["formula_bytes"]
    prov = [c for c in _PROV_COLS + ("status", "engine", "ncu_version", "clock_control", "cache_control") if c in ok]
    first = ok.groupby(group, sort=False)[prov].first().reset_index()
    summary = summary.merge(first, on=group, how="left")
    for c in ("intermediate_dtype", "act_dtype"):
        if c in summary:
            summary[c] = summary[c].where(summary[c] != "", None)
    return summary.drop(columns=["cfg"], errors="ignore").sort_values(list(JOIN_KEYS)).reset_index(drop=True)


def _formula_bytes(r) -> float:
    """``gdn_bytes(...).total`` for one summary row (NaN when the shape columns are missing)."""
    from gdnlab.roofline import gdn_bytes
    from gdnlab.shapes import GDNShape

    try:
        shape = GDNShape(str(r.get("preset") or "profiled"), int(r["H"]), int(r["HV"]), int(r["K"]), int(r["V"]))
        return float(gdn_bytes(shape, int(r["batch"]), int(r["draft_tokens"]), mode=str(r["mode"]),
                               state_dtype=str(r["state_dtype"]), act_dtype=r.get("act_dtype") or "bfloat16",
                               intermediate_dtype=r.get("intermediate_dtype") or "float32").total)
    except (KeyError, TypeError, ValueError):
        return float("nan")


def format_table(summary: pd.DataFrame, peak_gbps: float | None = None) -> str:
    """A fixed-width text table of :func:`summarize_calls` output (µs, GB/s, % of peak, counters)."""
    if summary.empty:
        return "(no profiled configuration)"
    if peak_gbps is None and "gpu" in summary and summary["gpu"].notna().any():
        try:
            from gdnlab.hardware import spec_for
            peak_gbps = spec_for(str(summary["gpu"].dropna().iloc[0])).peak_hbm_gbps
        except ValueError:
            peak_gbps = None
    cols = [("backend", "backend", "{}"), ("mode", "mode", "{}"), ("batch", "B", "{:d}"),
            ("draft_tokens", "T", "{:d}"), ("state_dtype", "state", "{}"), ("duration_us", "ncu µs", "{:.1f}"),
            ("dram_bw_gbps", "DRAM GB/s", "{:.0f}"), ("dram_throughput_pct", "DRAM %", "{:.1f}"),
            ("achieved_occupancy_pct", "occ %", "{:.1f}"), ("sm_throughput_pct", "SM %", "{:.1f}"),
            ("l2_hit_rate_pct", "L2 hit %", "{:.1f}"), ("registers_per_thread", "regs", "{:.0f}"),
            ("bytes_ratio", "bytes/formula", "{:.2f}"), ("n_kernels", "kern", "{:.0f}"),
            ("main_kernel", "main kernel", "{}")]
    rows = []
    for _, r in summary.iterrows():
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            try:
                cells.append("-" if v is None or (isinstance(v, float) and np.isnan(v)) else
                             fmt.format(int(v) if fmt == "{:d}" else v))
            except (ValueError, TypeError):
                cells.append(str(v))
        if peak_gbps:
            bw = r.get("dram_bw_gbps")
            cells.insert(7, "-" if bw is None or np.isnan(bw) else f"{100 * bw / peak_gbps:.0f}")
        rows.append([c if len(c) <= 40 else c[:37] + "..." for c in cells])
    header = [h for _, h, _ in cols]
    if peak_gbps:
        header.insert(7, "% peak")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def save_frame(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as parquet (``.parquet``; falls back to ``.csv`` without pyarrow) or CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = df.copy()
    clean.attrs = {}
    for c in clean.columns:
        if clean[c].dtype == object:
            clean[c] = clean[c].map(lambda v: v if v is None or isinstance(v, (str, bool, int, float)) else str(v))
    if path.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
            clean.to_parquet(path, index=False)
            return path
        except ImportError:
            path = path.with_suffix(".csv")
    clean.to_csv(path, index=False)
    return path
