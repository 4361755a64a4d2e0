"""The child process that runs the profiled GDN calls: ``python -m gdnlab.counters.driver PLAN.json``.

Run under Nsight Compute by :func:`gdnlab.counters.profile_kernels` (engine ``ncu-csv``: ``ncu ... python -m
gdnlab.counters.driver PLAN``) or on its own (engine ``nsight-python``, which attaches ncu from inside).
For every configuration of the plan it builds inputs and a state pool, warms the backend up (JIT compile,
one validated call) *outside* the profiled region, then for each repeat::

    NVTX push "gdnlab_profile"; cudaProfilerStart
        marker kernel, grid (config+1, repeat+1)   # names the call in ncu's CSV
        backend.decode(...) / backend.verify(...)  # every kernel it launches is recorded
    synchronize; cudaProfilerStop; NVTX pop

so ncu records exactly the kernels of the profiled call, whatever they are called (FlashInfer's CuTe-DSL
kernels, gdnlab's Triton ``_gdn_fused_recurrent``, any helper kernel). It writes a JSON manifest after
every configuration (outcome, reason, kernel path, marker order), so a run stopped by the time budget
still leaves usable results. On a CPU device (tests) there is no marker and no profiler call.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

__all__ = ["main", "run_plan"]

_TAG = "[gdnlab.counters.driver]"


def _log(msg: str) -> None:
    print(f"{_TAG} {msg}", flush=True)


def _write_json(path: str | os.PathLike, obj: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


class _Gate:
    """NVTX range + cudaProfilerStart/Stop around one profiled call (no-ops on CPU)."""

    def __init__(self, device, use_profiler_api: bool) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self.use_profiler_api = use_profiler_api and self.cuda
        self.torch = torch

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.nvtx.range_push("gdnlab_profile")
            if self.use_profiler_api:
                self.torch.cuda.profiler.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self.cuda:
            try:
                self.torch.cuda.synchronize()
            finally:
                if self.use_profiler_api:
                    self.torch.cuda.profiler.stop()
                self.torch.cuda.nvtx.range_pop()
        return False


def _prepare(cfg: dict, device, seed: int, backends: dict):
    """Backend, inputs, pool, (intermediate) and the call for one configuration.

    Returns ``(call, info)`` or raises with a reason; ``info`` has kernel path details.
    """

    from gdnlab.inputs import make_inputs
    from gdnlab.kernels import make_backend
    from gdnlab.kernels.validation import check_gdn_inputs
    from gdnlab.shapes import GDNShape, dtype_from_name, dtype_name
    from gdnlab.state import StatePool

    name = cfg["backend"]
    if name not in backends:
        try:
            backends[name] = make_backend(name)     # the options an engine uses, as the sweep does
        except Exception as exc:  # noqa: BLE001 - unavailable backend: a reason, not a crash
            backends[name] = exc
    backend = backends[name]
    if isinstance(backend, Exception):
        raise _Skip(f"backend unavailable: {type(backend).__name__}: {backend}")
    sd = dtype_from_name(cfg["state_dtype"])
    mode = cfg["mode"]
    allowed = backend.decode_state_dtypes if mode == "decode" else backend.verify_state_dtypes
    if sd not in allowed:
        raise _Skip(f"{name} {mode} does not support {cfg['state_dtype']} state "
                    f"(supports {[str(d).removeprefix('torch.') for d in allowed]})")
    shape = GDNShape(cfg["preset"], cfg["H"], cfg["HV"], cfg["K"], cfg["V"], state_dtype=sd)
    B, T = int(cfg["batch"]), int(cfg["draft_tokens"])
    inp = make_inputs(shape, B, T, act_dtype=cfg.get("act_dtype", "bfloat16"), device=device, seed=seed)
    pool = StatePool(shape, capacity=B, dtype=sd, device=device).randomize_(seed)
    idx = pool.alloc(B)
    dims = check_gdn_inputs(*inp.args(), pool.tensor, idx, single_token=(mode == "decode"))
    inter = backend.new_intermediate(dims, pool.tensor) if mode == "verify" else None

    def call(validate: bool = False):
        if mode == "decode":
            return backend.decode(*inp.args(), pool.tensor, idx, validate=validate)
        return backend.verify(*inp.args(), pool.tensor, idx, intermediate=inter, validate=validate)

    info = {"intermediate_dtype": dtype_name(inter.dtype) if inter is not None else None,
            "backend_options": _backend_options(backend)}
    return call, backend, info


def _backend_options(backend) -> dict:
    """The options :func:`gdnlab.kernels.make_backend` built the backend with (``gdnlab_options``)."""
    opts = getattr(backend, "gdnlab_options", None)
    return dict(opts) if isinstance(opts, dict) else {}


# A private control-flow signal, not a gdnlab error kind (so not in gdnlab.errors): _prepare raises it,
# run_plan's configuration step (_PlanRun.config) catches it right away, records the configuration as
# skipped (not failed) and goes on with the next; it never leaves this module.
class _Skip(Exception):
    """A configuration that cannot run here (unsupported dtype, unavailable backend)."""


def run_plan(plan: dict) -> dict:
    """Run every configuration of ``plan``; returns (and keeps writing) the manifest."""
    engine = plan.get("engine", "ncu-csv")
    nspy = None
    if engine == "nsight-python":
        # nsight must be imported before CUDA is initialised and before any NVTX call (its docs).
        import nsight as nspy

    run = _PlanRun(plan, engine, nspy)
    manifest, manifest_path = run.manifest, plan["manifest_path"]
    deadline = plan.get("deadline_epoch")
    configs = plan["configs"]
    for n, cfg in enumerate(configs, 1):
        label = (f"{n}/{len(configs)} {cfg['backend']} {cfg['mode']} B={cfg['batch']} T={cfg['draft_tokens']} "
                 f"{cfg['state_dtype']}")
        if deadline is not None and time.time() > float(deadline):
            rec = dict(cfg, outcome="skipped", reason="time budget used up before this configuration")
            manifest["configs"].append(rec)
            _log(f"{label}: skipped (time budget)")
            continue
        manifest["configs"].append(run.config(cfg, label))
        _write_json(manifest_path, manifest)
        if run.nspy_rows and plan.get("nspy", {}).get("results_path"):
            _write_json(plan["nspy"]["results_path"], {"rows": run.nspy_rows})
    _write_json(manifest_path, manifest)
    ok = sum(c.get("outcome") == "ok" for c in manifest["configs"])
    _log(f"done: {ok}/{len(configs)} configurations profiled, {len(manifest['markers'])} profiled calls")
    return manifest


class _PlanRun:
    """The state of one :func:`run_plan`: the device, the manifest so far, the marker kernel and the
    gate around each profiled call, the backends built so far and the nsight-python rows."""

    def __init__(self, plan: dict, engine: str, nspy) -> None:
        import torch

        from gdnlab.provenance import collect

        device = torch.device(plan.get("device", "cuda"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("plan asks for a CUDA device but torch.cuda.is_available() is False")
        if device.type == "cuda":
            torch.cuda.init()
        self.torch, self.plan, self.engine, self.nspy, self.device = torch, plan, engine, nspy, device
        self.seed = int(plan.get("seed", 0))
        self.repeats = int(plan.get("repeats", 1))
        self.warmup = max(1, int(plan.get("warmup", 2)))
        self.manifest = {"gdnlab_metrics_manifest": 1, "engine": engine, "gate": plan.get("gate", "profiler-api"),
                         "device": str(device), "provenance": collect(), "configs": [], "markers": [],
                         "marker_kernel": None, "python": sys.version.split()[0], "pid": os.getpid()}
        self.mark = self._marker()
        self.gate = _Gate(device, use_profiler_api=(engine == "ncu-csv"
                                                    and plan.get("gate", "profiler-api") == "profiler-api"))
        self.backends: dict = {}
        self.nspy_rows: list[dict] = []

    def _marker(self):
        """``mark(config, repeat)`` launching the marker kernel that names a call in ncu's CSV (compiled
        here, outside the profiled region), or ``None`` (not CUDA, not ncu-csv, or it failed to build)."""
        torch, device, manifest = self.torch, self.device, self.manifest
        if not (device.type == "cuda" and self.engine == "ncu-csv" and self.plan.get("markers", True)):
            return None
        try:
            from ._marker import KERNEL_NAME, launch_marker
            marker_buf = torch.zeros(1, dtype=torch.int32, device=device)
            launch_marker(marker_buf, 0, 0)                     # compile outside the profiled region
            torch.cuda.synchronize()
            manifest["marker_kernel"] = KERNEL_NAME
        except Exception as exc:  # noqa: BLE001 - fall back to attributing kernels by count
            manifest["marker_error"] = f"{type(exc).__name__}: {exc}"
            _log(f"marker kernel unavailable ({manifest['marker_error']}); kernels will be attributed by count")
            return None
        return lambda idx, rep: launch_marker(marker_buf, idx, rep)

    def config(self, cfg: dict, label: str) -> dict:
        """Prepare, warm up and profile one configuration; its manifest record with ``outcome``
        (``ok`` / ``skipped`` / ``failed``) and ``reason``."""
        rec = dict(cfg)
        t0 = time.time()
        try:
            call, backend, info = _prepare(cfg, self.device, self.seed, self.backends)
            rec.update(info)
            call(validate=True)                                   # checked call: contract errors surface here
            for _ in range(self.warmup - 1):
                call()
            if self.device.type == "cuda":
                self.torch.cuda.synchronize()
            rec["kernel_path"] = backend.last_path.as_dict()
            self._profile(cfg, call)
            rec["repeats_done"] = self.repeats
            rec.update(outcome="ok", reason="")
            _log(f"{label}: ok in {time.time() - t0:.1f} s ({rec['kernel_path'].get('kernel', '?')})")
        except _Skip as exc:
            rec.update(outcome="skipped", reason=str(exc))
            _log(f"{label}: skipped ({exc})")
        except Exception as exc:  # noqa: BLE001 - record and go on with the next configuration
            rec.update(outcome="failed", reason=f"{type(exc).__name__}: {exc}")
            _log(f"{label}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=6, file=sys.stdout)
        return rec

    def _profile(self, cfg: dict, call) -> None:
        """The profiled calls of one configuration: nsight-python's, or ``repeats`` gated calls (each
        after its marker) whose ``[config, repeat]`` the manifest lists in launch order."""
        if self.engine == "nsight-python":
            self.nspy_rows += _profile_nspy(self.nspy, self.plan, cfg, call)
            return
        for rep in range(self.repeats):
            with self.gate:
                if self.mark is not None:
                    self.mark(cfg["idx"], rep)
                call()
            self.manifest["markers"].append([cfg["idx"], rep])


def _profile_nspy(nspy, plan: dict, cfg: dict, call) -> list[dict]:
    """Profile one configuration with ``nsight.analyze.kernel`` (nsight-python >= 1.1 and ncu >= 2026.2.1).

    One annotation (``gdn_call``) per configuration; when a call launches several kernels their values
    are summed (``combine_kernel_metrics``) and the kernel names joined with ``|``. Returns long rows
    ``{idx, metric, value, unit, kernel, runs}``.
    """
    opts = plan.get("nspy", {})
    metrics = list(opts.get("metrics") or [])

    def add(a, b):
        return a + b

    @nspy.analyze.kernel(runs=int(plan.get("repeats", 1)), metrics=metrics,
                         clock_control=opts.get("clock_control", "none"),
                         cache_control=opts.get("cache_control", "all"), replay_mode="kernel",
                         thermal_mode="off", combine_kernel_metrics=add,
                         output_prefix=opts.get("output_prefix"), verbosity=nspy.VerbosityLevel.SILENT)
    def gdn_call(cfg_idx):
        with nspy.annotate("gdn_call"):
            call()

    res = gdn_call(int(cfg["idx"]))
    df = res.to_dataframe()
    rows = []
    for _, r in df.iterrows():
        rows.append({"idx": int(cfg["idx"]), "metric": str(r["Metric"]), "value": float(r["AvgValue"]),
                     "unit": None if r.get("Unit") is None else str(r.get("Unit")),
                     "kernel": str(r.get("Kernel", "")), "runs": int(r.get("NumRuns", 1) or 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gdnlab.counters.driver PLAN.json", file=sys.stderr)
        return 2
    plan = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        run_plan(plan)
    except Exception as exc:  # noqa: BLE001 - the parent reads the reason from the log
        _log(f"FATAL {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stdout)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
