"""``profile_kernels``: Nsight Compute counters of the GDN decode/verify kernels as a tidy DataFrame.

Two engines behind one call:

* ``"ncu-csv"``: ``ncu --profile-from-start off --clock-control none --metrics ... -o REPORT python -m
  gdnlab.counters.driver PLAN`` (one ncu run per backend), then ``ncu --import REPORT --csv --page raw
  --print-units base``, parsed by :func:`gdnlab.counters.ncu.parse_raw_csv`. Works with any ncu >= 2022.
* ``"nsight-python"``: the driver profiles each configuration with ``nsight.analyze.kernel`` +
  ``nsight.annotate`` (needs nsight-python >= 1.0 *and* Nsight Compute >= 2026.2.1, see
  :mod:`gdnlab.counters.nspy`).
* ``"auto"``: nsight-python when :func:`~gdnlab.counters.nspy.nsight_python_support` says it can drive
  the installed ncu, else ncu-csv.

Rows (one per profiled kernel launch) carry the sweep's join keys (``backend, mode, batch, draft_tokens,
state_dtype, preset``), the shape, the kernel name, the counters in gdnlab units (``duration_us``,
``dram_read_bytes``, ``dram_throughput_pct``, ...), derived ``dram_bytes`` / ``dram_bw_gbps``, and the
provenance columns of :func:`gdnlab.provenance.collect` (taken in the process that ran the kernels) with
``status="measured"``. Configurations that did not run appear once with ``outcome`` = ``skipped`` /
``failed`` and the ``reason``. :func:`~gdnlab.counters.summary.summarize_calls` reduces kernels to one row
per configuration. The driver builds each backend with :func:`gdnlab.kernels.make_backend`, the options an
engine uses, so the profiled call is the call the sweep times.
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

from .files import write_text_atomic
from .frame import assemble, attribute_kernels, nspy_rows_to_kernels
from .ncu import (
    build_import_command,
    build_profile_command,
    check_options,
    find_ncu,
    metric_errors_in_log,
    metric_names,
    ncu_version,
    parse_raw_csv,
)

__all__ = ["profile_kernels", "DEFAULT_BACKENDS", "ENGINES", "MODES", "resolve_shape"]

DEFAULT_BACKENDS: tuple[str, ...] = ("flashinfer", "triton")
ENGINES = ("auto", "nsight-python", "ncu-csv")
MODES = ("decode", "verify")
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
    ``tp``, or a sharded name (``"qwen3.5-397b-a17b@tp4"``, read by :func:`gdnlab.shapes.parse_preset`)."""
    from gdnlab.shapes import GDNShape, parse_preset

    if isinstance(preset, GDNShape):
        return preset
    if not isinstance(preset, str) or not preset.strip():
        raise ValueError(f"preset must be a preset name or a GDNShape, got {preset!r}")
    if "@" in preset:
        shape = parse_preset(preset)
        if tp not in (1, shape.tp):
            raise ValueError(f"preset {preset!r} already names tp={shape.tp}, but tp={tp} was given")
        return shape
    return parse_preset(f"{preset.strip()}@tp{int(tp)}")


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
    app = [sys.executable, "-m", "gdnlab.counters.driver", str(plan_path)]
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
            print(f"[gdnlab.counters] {tag}: {' '.join(cmd[:3])} ... ({len(plan['configs'])} configurations, "
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
            print(f"[gdnlab.counters] {tag}: ncu rejected metrics {bad}; retrying without them", flush=True)
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
    rc, timed_out = _stream([sys.executable, "-m", "gdnlab.counters.driver", str(plan_path)],
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
        metrics: ncu metric names (default :data:`gdnlab.counters.ncu.METRICS`).
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
        ValueError: a bad argument (named). :class:`~gdnlab.counters.ncu.NcuNotFoundError`: no ncu.
        RuntimeError: ``engine="nsight-python"`` where it cannot drive the installed ncu (with the reasons).
    """
    _check_profile_options(engine, gate, clock_control, cache_control, repeats, warmup, time_budget_s)
    shape = resolve_shape(preset, tp)
    configs = _plan_configs(backends, modes, batches, state_dtypes, shape, draft_tokens, act_dtype)
    metrics = list(metrics) if metrics else metric_names()
    ncu_path = find_ncu(ncu)
    engine, reason = _choose_engine(engine, ncu_path)
    ver, ver_line = ncu_version(ncu_path)
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gdnlab_ncu_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"[gdnlab.counters] engine {engine} ({reason}); ncu {ncu_path} ({ver_line}); workdir {workdir}",
              flush=True)

    run = {"engine": engine, "device": device, "gate": gate, "repeats": repeats, "warmup": warmup, "seed": seed,
           "metrics": metrics, "clock_control": clock_control, "cache_control": cache_control,
           "kernel_regex": kernel_regex}
    raws, kernels, manifests, notes = _profile_backends(configs, run, ncu_path, workdir, time_budget_s, verbose)
    manifest = _merge_manifests(manifests, engine=engine, ncu=ncu_path, ncu_version=ver, options={
        "clock_control": clock_control, "cache_control": cache_control, "gate": gate, "repeats": repeats,
        "warmup": warmup, "seed": seed, "engine_reason": reason})
    _write_outputs(raws, manifest, raw_csv_out, manifest_out)
    kdf = pd.concat(kernels, ignore_index=True) if kernels else pd.DataFrame()
    df = assemble(kdf, manifest, attributed=True)
    df.attrs.update(engine=engine, engine_reason=reason, notes=notes, workdir=str(workdir), manifest=manifest)
    if verbose:
        for n in notes:
            print(f"[gdnlab.counters] {n}", flush=True)
    return df


def _write_outputs(raws: list[str], manifest: dict, raw_csv_out: str | os.PathLike | None,
                   manifest_out: str | os.PathLike | None) -> None:
    """The raw ncu CSV of every run (one file) and the merged manifest where asked, each written atomically."""
    if raw_csv_out and raws:
        write_text_atomic(raw_csv_out, "".join(r if r.endswith("\n") else r + "\n" for r in raws))
    if manifest_out:
        write_text_atomic(manifest_out, json.dumps(manifest, indent=1, default=str))


def _check_profile_options(engine: str, gate: str, clock_control: str, cache_control: str, repeats: int,
                           warmup: int, time_budget_s: float | None) -> None:
    """:func:`profile_kernels`' run options in their domains, else ``ValueError`` naming the option."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    check_options(gate, clock_control, cache_control)
    if not isinstance(repeats, int) or not 1 <= repeats <= 10:
        raise ValueError(f"repeats must be an integer in 1..10, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be an integer >= 1, got {warmup!r}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s!r}")


def _choose_engine(engine: str, ncu_path: str) -> tuple[str, str]:
    """``(engine that runs, why)``: ``"auto"`` takes nsight-python where it can drive ``ncu_path``;
    ``RuntimeError`` with the reasons when ``"nsight-python"`` was asked for and cannot."""
    from .nspy import nsight_python_support

    reason = f"engine={engine} requested"
    if engine in ("auto", "nsight-python"):
        support = nsight_python_support(ncu_path)
        if engine == "nsight-python" and not support.ok:
            raise RuntimeError("engine='nsight-python' cannot run here:\n" + support.describe())
        engine = "nsight-python" if support.ok else "ncu-csv"
        reason = "nsight-python can drive this ncu" if support.ok else "; ".join(support.reasons)
    return engine, reason


def _backend_budget(time_budget_s: float | None, t_start: float, n_configs: int,
                    n_left: int) -> tuple[float | None, float | None]:
    """``(deadline epoch, ncu timeout s)`` of one backend's ``n_configs`` configurations: their share
    of what is left of the budget over the ``n_left`` configurations not yet run; ``(None, None)``
    without a budget."""
    if time_budget_s is None:
        return None, None
    remaining = time_budget_s - (time.time() - t_start)
    share = max(remaining * n_configs / n_left, 5.0)
    deadline = time.time() + share * 0.7                  # a config started just before it must finish
    timeout = share + 20.0                                # ... and ncu must still write its report
    return deadline, timeout


def _profile_backends(configs: list[dict], run: dict, ncu_path: str, workdir: Path, time_budget_s: float | None,
                      verbose: bool) -> tuple[list[str], list[pd.DataFrame], list[dict], list[str]]:
    """One driver run per backend (in the given order, each with its share of the budget); returns
    ``(raw ncu CSV texts, kernel frames, manifests, notes)``."""
    engine = run["engine"]
    t_start = time.time()
    order = list(dict.fromkeys(c["backend"] for c in configs))
    raws: list[str] = []
    kernels: list[pd.DataFrame] = []
    manifests: list[dict] = []
    notes: list[str] = []
    for i, be in enumerate(order):
        sub = [c for c in configs if c["backend"] == be]
        left_cfgs = sum(1 for c in configs if c["backend"] in order[i:])
        deadline, timeout = _backend_budget(time_budget_s, t_start, len(sub), left_cfgs)
        tag = re.sub(r"\W+", "_", be)
        plan = {"engine": engine, "device": run["device"], "gate": run["gate"], "repeats": run["repeats"],
                "warmup": run["warmup"], "seed": run["seed"],
                "deadline_epoch": deadline, "manifest_path": str(workdir / f"manifest_{tag}.json"),
                "markers": True, "configs": sub,
                "nspy": {"metrics": run["metrics"], "clock_control": run["clock_control"],
                         "cache_control": run["cache_control"],
                         "results_path": str(workdir / f"nspy_{tag}.json"),
                         "output_prefix": str(workdir / f"nspy_{tag}_")}}
        if engine == "ncu-csv":
            raw, manifest, n = _run_ncu_csv(ncu_path, plan, workdir, tag, run["metrics"], timeout, verbose,
                                            run["gate"], run["clock_control"], run["cache_control"],
                                            run["kernel_regex"])
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
    return raws, kernels, manifests, notes


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
