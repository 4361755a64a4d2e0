"""Instrumentation: the timing harness, NVTX ranges, L2 flush, CUDA-graph capture, and the profiler
capture range that ``nsys --capture-range=cudaProfilerApi`` listens to.

Public API
----------
* :func:`time_calls` -> :class:`Timing` — **the** timing harness. Its default (``timing="amortised"``)
  is what a serving engine sees: ``n`` calls on disjoint pool rows captured in one CUDA graph, L2
  flushed before each replay, per-call time = replay time / ``n``, with ``n`` chosen so one sample
  lasts at least ``min_sample_us`` (well past the ~0.5 µs resolution of CUDA events and the fixed cost
  of a graph launch). ``"single"`` replays a graph of one call; ``"eager"`` calls from the host (host
  overhead + launch + kernel). On CPU it times wall clock (method ``"cpu_wall"``).
* :func:`time_fn` — the earlier entry point (one callable or a list, ``graph=True/False``), kept for
  existing callers; it shares the loops below.
* :class:`L2Flusher` — writes a buffer of at least 2x the L2 size.
* :func:`capture_graph` — warm up on a side stream and capture ``fn`` (optionally ``inner`` times).
* re-exported: :func:`nvtx_range`, :func:`nvtx_backend`, :func:`profiler_capture` (NVTX ranges and
  the cudaProfilerStart/Stop capture range, :mod:`gdnlab.profiler_ranges`); :func:`cuda_available`,
  :func:`resolve_device` (:mod:`gdnlab.device`).

One sample, in every mode
-------------------------
* graph modes (``amortised``, ``single``): ``[flush L2] -> spin -> start event -> replay -> end
  event``. The short spin kernel (``torch.cuda._sleep``) keeps the GPU busy while the host enqueues
  the events and the replay, so the interval holds the kernels and their on-GPU dispatch, not host
  latency.
* ``eager``: ``[flush L2] -> synchronize -> start event -> call -> end event``. The GPU is idle when
  the start event is recorded, so the interval holds the Python wrapper, the launch and the kernel.
  ``eager - single`` is the launch/host overhead that CUDA graphs remove.

Quantiles come from :func:`gdnlab.stats.summarize` (numpy's linear rule), as everywhere in gdnlab.

Why not ``flashinfer.testing.bench_gpu_time`` or ``triton.testing.do_bench_cudagraph``
-----------------------------------------------------------------------------------------
Both were read (flashinfer ``flashinfer/testing/utils.py``, triton ``python/triton/testing.py``):

* flashinfer's ``bench_gpu_time_with_cudagraph`` makes L2 cold by cloning the tensors passed as
  ``input_args`` into enough rotating copies; gdnlab's calls are closures over one state pool that
  the kernel updates in place through an index list (as in an engine), so cloning the arguments
  would copy the whole pool per copy and time other buffers than the engine's. It also captures a
  fixed ``num_iters_within_graph`` (10) instead of sizing the sample by time, and flashinfer is an
  optional dependency (the harness must run where only Triton or the reference backend is).
* triton's ``do_bench_cudagraph`` never flushes L2 and returns statistics over ~10 replay averages,
  so a decode at small batch reads its state from L2, which a serving engine never does (the other
  GDN layers and the MoE run in between). ``do_bench`` (eager) does not synchronise before its start
  event, so for a host-bound call the flush still running hides part of the host overhead.

``triton.testing.do_bench`` stays available as :func:`triton_do_bench` for a cross-check.

The L2 flush *writes* (``zero_``) a buffer of >= 2x L2 (as triton does with its 256 MB buffer), so
some dirty lines are written back while the timed kernels run; a serving engine's GDN call follows
other kernels that also leave dirty lines, so this is the realistic cold-cache case.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .device import cuda_available, resolve_device
from .errors import GraphCaptureError
from .profiler_ranges import NVTX_DOMAIN, nvtx_backend, nvtx_range, profiler_capture

__all__ = ["nvtx_range", "nvtx_backend", "NVTX_DOMAIN", "Timing", "time_calls", "TIMING_METHODS", "resolve_device",
           "DEFAULT_MIN_SAMPLE_US", "DEFAULT_MAX_CALLS",
           "time_fn", "L2Flusher", "capture_graph", "profiler_capture", "cuda_available", "triton_do_bench",
           "GraphCaptureError"]

#: shortest amortised sample (µs). A graph replay carries a fixed ~3-4 µs between its start event and
#: its first kernel (H200 with the nsys comparison of ``benchmarks/bench_harness_overhead.py``: +3.4 µs
#: on a 55 µs call at one call per replay); 500 µs of calls amortise it to < 1 % of a sample.
DEFAULT_MIN_SAMPLE_US = 500.0
#: most calls in one amortised sample (each call has its own pool rows and buffers)
DEFAULT_MAX_CALLS = 64


# ----------------------------------------------------------------------------------------- L2 flush


def _l2_bytes(device: torch.device) -> int:
    props = torch.cuda.get_device_properties(device)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    if l2 <= 0:
        from .hardware import detect
        spec = detect(device.index)
        l2 = int((spec.l2_mb if spec else 50.0) * 2**20)
    return l2


class L2Flusher:
    """Evicts the L2 cache by writing a buffer of ``factor`` x L2 bytes (>= 2x; H100: 50 MB L2 -> 100 MB).

    ``flush()`` enqueues one ``zero_`` on the current stream (not synchronised). On CPU it does nothing.
    """

    def __init__(self, device: torch.device | str | None = None, factor: float = 2.0) -> None:
        if factor < 2.0:
            raise ValueError(f"factor must be >= 2 (a buffer at least twice the L2 size), got {factor}")
        dev = torch.device(device) if device is not None else (
            torch.device("cuda", torch.cuda.current_device()) if cuda_available() else torch.device("cpu"))
        self.device = dev
        self.nbytes = 0
        self._buf: torch.Tensor | None = None
        if dev.type == "cuda":
            self.nbytes = int(factor * _l2_bytes(dev))
            self._buf = torch.empty(self.nbytes // 4, dtype=torch.int32, device=dev)

    def flush(self) -> None:
        if self._buf is not None:
            self._buf.zero_()


@functools.lru_cache(maxsize=8)
def _flusher(device_index: int) -> L2Flusher:
    return L2Flusher(torch.device("cuda", device_index))


# ----------------------------------------------------------------------------------------- spin


@functools.lru_cache(maxsize=8)
def _cycles_per_us(device_index: int) -> float:
    """Clock cycles per µs of ``torch.cuda._sleep`` on this device (measured once)."""
    with torch.cuda.device(device_index):
        torch.cuda._sleep(1000)  # load the module
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        cycles = 2_000_000
        s.record()
        torch.cuda._sleep(cycles)
        e.record()
        e.synchronize()
        us = s.elapsed_time(e) * 1e3
    return cycles / us if us > 0 else 1500.0


def _spin(device: torch.device, us: float) -> None:
    if us > 0 and hasattr(torch.cuda, "_sleep"):
        torch.cuda._sleep(int(us * _cycles_per_us(device.index if device.index is not None else
                                                   torch.cuda.current_device())))


# ----------------------------------------------------------------------------------------- graphs


def capture_graph(fn: Callable[[], Any], *, inner: int = 1, warmup: int = 2,
                  pool: Any = None) -> torch.cuda.CUDAGraph:
    """Capture ``inner`` back-to-back calls of ``fn`` into one CUDA graph (after ``warmup`` calls on
    a side stream, as torch recommends). Raises :class:`GraphCaptureError` saying why on failure.

    ``fn`` must not synchronise with the host (pass ``validate=False`` to backend calls).
    """
    if not cuda_available():
        raise GraphCaptureError("CUDA graphs need a CUDA device")
    if inner < 1:
        raise ValueError(f"inner must be >= 1, got {inner}")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 1)):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            for _ in range(inner):
                fn()
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()
        raise GraphCaptureError(f"CUDA graph capture failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return g


# ----------------------------------------------------------------------------------------- timer

#: ``time_calls`` modes: one graph of n calls / one graph of one call / host calls, no graph
TIMING_METHODS: tuple[str, ...] = ("amortised", "single", "eager")


@dataclass(frozen=True)
class Timing:
    """Per-call time statistics in microseconds (µs).

    ``method``: ``"amortised"`` (one CUDA graph of ``calls_per_sample`` calls on disjoint rows, replay
    time / calls), ``"single"`` (a graph of one call), ``"eager"`` (CUDA events around host calls from
    an idle GPU: host overhead + launch + kernel), ``"graph"`` (:func:`time_fn`'s graph replay) or
    ``"cpu_wall"`` (``time.perf_counter_ns`` on CPU: CPU wall time, not GPU time).
    ``calls_per_sample``: calls in one timed sample (each sample is divided by it). ``note`` says why
    a requested graph fell back to eager, or how ``calls_per_sample`` was chosen.
    """

    median_us: float
    p10_us: float
    p90_us: float
    mean_us: float
    min_us: float
    max_us: float
    repeats: int
    method: str
    l2_flush: bool
    calls_per_sample: int = 1
    note: str = ""
    samples_us: tuple[float, ...] = field(default=(), repr=False)

    @property
    def inner(self) -> int:
        """Former name of :attr:`calls_per_sample`."""
        return self.calls_per_sample

    def as_dict(self, samples: bool = False) -> dict:
        d = asdict(self)
        if not samples:
            d.pop("samples_us")
        else:
            d["samples_us"] = list(self.samples_us)
        return d


def _summarize(samples: list[float], method: str, flush: bool, calls: int, note: str) -> Timing:
    from .stats import summarize

    s = summarize(samples, "us")
    return Timing(median_us=s["median_us"], p10_us=s["p10_us"], p90_us=s["p90_us"], mean_us=s["mean_us"],
                  min_us=s["min_us"], max_us=s["max_us"], repeats=s["n"], method=method, l2_flush=flush,
                  calls_per_sample=calls, note=note, samples_us=tuple(samples))



def _run_all(fns: Sequence[Callable[[], Any]]) -> Callable[[], None]:
    fns = tuple(fns)
    if len(fns) == 1:
        return fns[0]

    def body() -> None:
        for f in fns:
            f()
    return body


def _get_calls(make_calls: Callable[[int], Sequence[Callable[[], Any]]], n: int) -> list[Callable[[], Any]]:
    calls = list(make_calls(n))
    if len(calls) != n or not all(callable(c) for c in calls):
        raise ValueError(f"make_calls({n}) must return {n} zero-argument callables, got {len(calls)} items")
    return calls


def _n_for(t1_us: float, min_sample_us: float, max_calls: int) -> int:
    """Calls per sample: ``clamp(ceil(min_sample_us / t1), 1, max_calls)``."""
    if not t1_us > 0 or math.isinf(t1_us):
        return max_calls
    return max(1, min(max_calls, math.ceil(min_sample_us / t1_us)))


def time_calls(make_calls: Callable[[int], Sequence[Callable[[], Any]]], *, timing: str = "amortised",
               min_sample_us: float = DEFAULT_MIN_SAMPLE_US, max_calls: int = DEFAULT_MAX_CALLS,
               warmup: int = 5, repeats: int = 40,
               l2_flush: bool = True, device: torch.device | str | None = None,
               nvtx_label: str | None = None) -> Timing:
    """Time a GPU call the way a serving engine runs it; µs per call.

    Args:
        make_calls: ``make_calls(n)`` returns ``n`` zero-argument callables, each the same call on its
            own (disjoint) pool rows and buffers, so no call of a sample reads what another left in
            L2. They must not synchronise with the host (backend calls: ``validate=False``).
        timing: ``"amortised"`` (default): time one call (a graph of one call, L2 flushed, 3 replays),
            pick ``n = clamp(ceil(min_sample_us / t1), 1, max_calls)``, capture ``make_calls(n)`` in
            one CUDA graph, flush L2 before each replay, per-call = replay / n. ``"single"``: a graph
            of one call per replay. ``"eager"``: one host call per sample, no graph.
        min_sample_us: shortest sample ``"amortised"`` aims for (µs).
        max_calls: most calls in one sample (bounds memory: each call has its own rows).
        warmup: untimed replays (or calls) first.
        repeats: timed samples.
        l2_flush: write a >= 2x L2 buffer before each sample (GPU only).
        device: the CUDA device (default: the current one; CPU when there is no CUDA).
        nvtx_label: wrap each timed sample (not the flush, not the spin) in this NVTX range, so a
            trace can sum the kernels of each sample.

    Returns:
        :class:`Timing` with median/p10/p90/mean/min/max per call (µs), ``calls_per_sample``,
        ``method`` (the mode that ran, ``"eager"`` when graph capture failed, ``"cpu_wall"`` on
        CPU), ``l2_flush`` and a ``note``.

    Raises:
        InputError: an argument out of its domain (``timing`` not in :data:`TIMING_METHODS`, ...).
        UnavailableError: ``device`` asks for CUDA on a machine without it.
    """
    _check_timing_args(make_calls, timing, min_sample_us, max_calls, warmup, repeats)
    dev = resolve_device(device)
    rng = nvtx_range(nvtx_label) if nvtx_label else contextlib.nullcontext()
    if dev.type != "cuda":
        return _time_calls_cpu(make_calls, timing, min_sample_us, max_calls, warmup, repeats, rng)
    with torch.cuda.device(dev):
        flusher = _flusher(dev.index) if l2_flush else None
        if timing == "eager":
            body = _get_calls(make_calls, 1)[0]
            return _time_eager(body, warmup, repeats, 1, 1, flusher, rng, "eager")
        return _time_calls_graph(make_calls, timing, min_sample_us, max_calls, warmup, repeats, flusher, dev, rng)


def _check_timing_args(make_calls, timing: str, min_sample_us: float, max_calls: int, warmup: int,
                       repeats: int) -> None:
    """:func:`time_calls`' arguments in their domains, else one-line :class:`~gdnlab.errors.InputError`."""
    from .errors import InputError

    if timing not in TIMING_METHODS:
        raise InputError(f"timing={timing!r}: expected one of {', '.join(TIMING_METHODS)}")
    if not min_sample_us > 0:
        raise InputError(f"min_sample_us must be > 0 µs, got {min_sample_us!r}")
    if not isinstance(max_calls, int) or max_calls < 1:
        raise InputError(f"max_calls must be an integer >= 1, got {max_calls!r}")
    if warmup < 0 or repeats < 1:
        raise InputError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if not callable(make_calls):
        raise InputError(f"make_calls must be a callable n -> n calls, got {type(make_calls).__name__}")


def _time_calls_graph(make_calls, timing: str, min_sample_us: float, max_calls: int, warmup: int, repeats: int,
                      flusher: L2Flusher | None, dev: torch.device, rng) -> Timing:
    """CUDA, graph modes of :func:`time_calls`: ``"single"`` replays a graph of one call; ``"amortised"``
    probes that graph (3 replays), then captures ``n`` calls in one graph. A failed capture times the
    first call eagerly, saying why in ``note``."""
    first = _get_calls(make_calls, 1)
    try:
        g1 = capture_graph(first[0], warmup=max(warmup, 1))
    except GraphCaptureError as exc:
        t = _time_eager(first[0], warmup, repeats, 1, 1, flusher, rng, "eager")
        return dataclasses.replace(t, note=f"{exc}; timed eagerly")
    if timing == "single":
        return _time_graph(g1, warmup, repeats, 1, flusher, dev, 20.0, rng, "single")
    probe = _time_graph(g1, 1, 3, 1, flusher, dev, 20.0, contextlib.nullcontext(), "single")
    n = _n_for(probe.median_us, min_sample_us, max_calls)
    note = (f"{n} calls per replay: one call {probe.median_us:.2f} µs, sample >= {min_sample_us:g} µs "
            f"(at most {max_calls})")
    if n == 1:
        g = g1
    else:
        del g1
        calls = _get_calls(make_calls, n)
        try:
            g = capture_graph(_run_all(calls), warmup=max(warmup, 1))
        except GraphCaptureError as exc:
            t = _time_eager(first[0], warmup, repeats, 1, 1, flusher, rng, "eager")
            return dataclasses.replace(t, note=f"{exc}; timed eagerly")
    t = _time_graph(g, warmup, repeats, n, flusher, dev, 20.0, rng, "amortised")
    return dataclasses.replace(t, note=note)


def _time_calls_cpu(make_calls, timing: str, min_sample_us: float, max_calls: int, warmup: int, repeats: int,
                    rng) -> Timing:
    """CPU: the same choice of ``n`` by wall clock (no graph, no L2 flush)."""
    first = _get_calls(make_calls, 1)[0]
    n = 1
    if timing == "amortised":
        first()
        t0 = time.perf_counter_ns()
        first()
        n = _n_for((time.perf_counter_ns() - t0) / 1e3, min_sample_us, max_calls)
    body = first if n == 1 else _run_all(_get_calls(make_calls, n))
    t = _time_cpu(body, warmup, repeats, 1, n, rng)
    return dataclasses.replace(t, note=f"{t.note}; {timing} requested, {n} call(s) per sample")


def time_fn(fn: Callable[[], Any] | Sequence[Callable[[], Any]], *, warmup: int = 5, repeats: int = 50,
            flush_l2: bool = True, graph: bool = False, inner: int = 1, device: torch.device | str | None = None,
            spin_us: float = 20.0, fallback_to_eager: bool = True, nvtx_label: str | None = None) -> Timing:
    """Time ``fn`` (or one pass over a list of callables) per call, in µs. Prefer :func:`time_calls`.

    ``graph=True``: capture ``inner`` passes in one CUDA graph and time its replays (method
    ``"graph"``; a capture failure falls back to eager with the reason in ``note`` unless
    ``fallback_to_eager=False``). ``graph=False``: eager calls from an idle GPU (method ``"eager"``).
    ``flush_l2`` writes a >= 2x L2 buffer before each sample. Each sample covers ``inner`` passes and
    is divided by the number of calls in them (``Timing.calls_per_sample``). On CPU: wall clock.
    """
    if repeats < 1 or warmup < 0 or inner < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, inner >= 1; got {repeats}, {warmup}, {inner}")
    if isinstance(fn, (list, tuple)):
        if not fn or not all(callable(f) for f in fn):
            raise ValueError("fn must be a callable or a non-empty list of callables")
        fns = tuple(fn)

        def one_pass() -> None:
            for f in fns:
                f()
        body, calls = one_pass, inner * len(fns)
    elif callable(fn):
        body, calls = fn, inner
    else:
        raise ValueError(f"fn must be a callable or a list of callables, got {type(fn).__name__}")
    dev = resolve_device(device)
    rng = nvtx_range(nvtx_label) if nvtx_label else contextlib.nullcontext()
    if dev.type != "cuda":
        return _time_cpu(body, warmup, repeats, inner, calls, rng)
    with torch.cuda.device(dev):
        flusher = _flusher(dev.index) if flush_l2 else None
        note = ""
        if graph:
            try:
                g = capture_graph(body, inner=inner, warmup=max(warmup, 1))
            except GraphCaptureError as exc:
                if not fallback_to_eager:
                    raise
                note = str(exc)
            else:
                return _time_graph(g, warmup, repeats, calls, flusher, dev, spin_us, rng, "graph")
        return dataclasses.replace(_time_eager(body, warmup, repeats, inner, calls, flusher, rng, "eager"),
                                   note=note)


def _time_cpu(fn, warmup: int, repeats: int, inner: int, calls: int, rng) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        with rng:
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            t1 = time.perf_counter_ns()
        samples.append((t1 - t0) / 1e3 / calls)
    return _summarize(samples, "cpu_wall", False, calls, "CPU wall clock (perf_counter_ns), not GPU time")


def _time_eager(fn, warmup: int, repeats: int, inner: int, calls: int, flusher: L2Flusher | None, rng,
                method: str) -> Timing:
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        if flusher is not None:
            flusher.flush()
        torch.cuda.synchronize()            # GPU idle: host overhead of fn() is inside the interval
        with rng:
            starts[i].record()
            for _ in range(inner):
                fn()
            ends[i].record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) * 1e3 / calls for s, e in zip(starts, ends)]
    return _summarize(samples, method, flusher is not None, calls, "")


def _time_graph(g, warmup: int, repeats: int, calls: int, flusher: L2Flusher | None, dev: torch.device,
                spin_us: float, rng, method: str) -> Timing:
    for _ in range(warmup):
        if flusher is not None:
            flusher.flush()
        g.replay()
    torch.cuda.synchronize()
    _cycles_per_us(dev.index)               # calibrate outside the timed loop
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        if flusher is not None:
            flusher.flush()
        _spin(dev, spin_us)                  # GPU busy while the host enqueues events + replay
        with rng:
            starts[i].record()
            g.replay()
            ends[i].record()
        if i % 16 == 15:                     # keep the queue short (the spin covers the host)
            ends[i].synchronize()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) * 1e3 / calls for s, e in zip(starts, ends)]
    return _summarize(samples, method, flusher is not None, calls, "")


def triton_do_bench(fn: Callable[[], Any], *, graph: bool = False, warmup_ms: int = 25,
                    rep_ms: int = 100) -> Timing:
    """``triton.testing.do_bench`` (eager, L2 flushed by triton) or ``do_bench_cudagraph`` (no flush,
    10 replay averages) as a cross-check, in the same :class:`Timing` (µs). Needs CUDA and triton."""
    import triton.testing as tt

    if graph:
        vals = tt.do_bench_cudagraph(fn, rep=rep_ms, return_mode="all")
    else:
        vals = tt.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")
    return _summarize([v * 1e3 for v in vals], "triton_cudagraph" if graph else "triton_do_bench",
                      not graph, 1, "triton.testing")
