"""Instrumentation: NVTX ranges, a CUDA-event timer (eager or CUDA-graph replay), L2 flush, and the
profiler capture range that ``nsys --capture-range=cudaProfilerApi`` listens to.

Public API
----------
* :func:`nvtx_range` — ``with nvtx_range("gdn.decode"): ...`` or ``@nvtx_range("step")``. Domain
  ``"gdnlab"`` through the ``nvtx`` package, else ``torch.cuda.nvtx`` (no domain), else a no-op.
  On a machine without CUDA it is a no-op (set ``GDNLAB_NVTX=1`` to force the ``nvtx`` package).
* :func:`time_fn` -> :class:`Timing` (median / p10 / p90 in µs): warm-up, repeats, optional L2 flush
  between repeats, and ``graph=True`` to capture the call in a CUDA graph and time its replays.
  On CPU it times wall clock with :func:`time.perf_counter_ns` (method ``"cpu_wall"``).
* :class:`L2Flusher` — writes a buffer of at least 2x the L2 size.
* :func:`profiler_capture` — ``torch.cuda.profiler.start()/stop()`` (cudaProfilerStart/Stop) around a
  region, so ``nsys profile --capture-range=cudaProfilerApi`` records only that region.
* :func:`capture_graph` — warm up on a side stream and capture ``fn`` (optionally ``inner`` times).

Why a hand-written loop and not ``triton.testing.do_bench`` / ``do_bench_cudagraph``
-----------------------------------------------------------------------------------
Both were read (triton 3.6/3.8) and neither measures what the sweep needs:

* ``do_bench`` sizes warm-up and repeats by *milliseconds*, flushes L2 by zeroing a fixed 256 MB
  buffer before each call, and records per-call events — close to what we want for *eager*, but it
  does not synchronise before the start event, so for a host-bound call (FlashInfer's Python wrapper
  costs ~100 µs per call) the flush kernel still running on the GPU hides part of the host overhead:
  the result is neither "GPU time" nor "what an eager loop sees".
* ``do_bench_cudagraph`` never flushes L2, unrolls ``n`` calls into one graph and returns statistics
  over only 10 replay *averages*: its p10/p90 are not per-call quantiles and are not comparable with
  the eager numbers, and a decode at small batch (state of a few MiB) then reads its state from L2,
  which a serving engine never does (the other 44 GDN layers and the MoE run in between).

So :func:`time_fn` uses ``torch.cuda.Event`` / ``torch.cuda.CUDAGraph`` directly with one
definition of a sample for both modes:

* ``graph=True`` (the sweep's default): per repeat ``[flush L2] -> spin -> start event -> replay ->
  end event``. The short spin kernel (``torch.cuda._sleep``) keeps the GPU busy while the host
  enqueues the events and the replay, so the interval holds the kernel(s) and their on-GPU dispatch,
  not host latency. This is what a decode step inside a serving engine's CUDA graph costs.
* ``graph=False`` (eager): per repeat ``[flush L2] -> synchronize -> start event -> fn() -> end
  event``. The GPU is idle when the start event is recorded, so the interval holds the Python
  wrapper, the launch and the kernel: what a host-bound eager loop pays per call. ``eager - graph``
  is then the launch/host overhead that CUDA graphs remove.

``triton.testing.do_bench`` is still offered as :func:`triton_do_bench` for a cross-check (used by
``benchmarks/bench_harness_overhead.py``).

The L2 flush *writes* (``zero_``) a buffer of >= 2x L2 (as triton does with its 256 MB buffer), so
some dirty lines are written back while the timed kernel runs; a serving engine's GDN call follows
other kernels that also leave dirty lines, so this is the realistic cold-cache case.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["nvtx_range", "nvtx_backend", "NVTX_DOMAIN", "Timing", "time_fn", "L2Flusher", "capture_graph",
           "profiler_capture", "cuda_available", "triton_do_bench", "GraphCaptureError"]

NVTX_DOMAIN = "gdnlab"


def cuda_available() -> bool:
    """Whether a CUDA device can be used here."""
    try:
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver counts as no CUDA
        return False


# ----------------------------------------------------------------------------------------- NVTX


@functools.lru_cache(maxsize=1)
def nvtx_backend() -> str:
    """Which NVTX implementation :func:`nvtx_range` uses: ``"nvtx"`` (the nvtx package, domain
    ``gdnlab``), ``"torch"`` (``torch.cuda.nvtx``, default domain) or ``"noop"`` (no CUDA).

    ``GDNLAB_NVTX=0`` forces ``"noop"``; ``GDNLAB_NVTX=1`` uses the nvtx package even without CUDA.
    """
    env = os.environ.get("GDNLAB_NVTX", "").strip()
    if env == "0":
        return "noop"
    if not cuda_available() and env != "1":
        return "noop"
    try:
        import nvtx  # noqa: F401
        return "nvtx"
    except ImportError:
        pass
    if cuda_available():
        return "torch"
    return "noop"


@functools.lru_cache(maxsize=1)
def _nvtx_domain():
    import nvtx
    return nvtx.get_domain(NVTX_DOMAIN)


@functools.lru_cache(maxsize=512)
def _nvtx_attributes(message: str):
    # None when no tool is attached (then push_range(None) is a cheap no-op)
    return _nvtx_domain().get_event_attributes(message=message)


class nvtx_range(contextlib.ContextDecorator):  # noqa: N801 - reads like a function at call sites
    """An NVTX push/pop range; context manager or decorator.

    >>> with nvtx_range("gdn.decode"):
    ...     pass
    >>> @nvtx_range("step")
    ... def step(): ...

    The range is pushed on the calling thread in domain ``"gdnlab"`` (nvtx package) or the default
    domain (``torch.cuda.nvtx`` fallback). Costs ~0.2-0.3 µs of host time per range with the nvtx
    package; nothing on CPU-only machines.
    """

    def __init__(self, message: str) -> None:
        if not isinstance(message, str) or not message:
            raise ValueError(f"nvtx_range needs a non-empty message string, got {message!r}")
        self.message = message
        self._impl = nvtx_backend()

    def __enter__(self) -> nvtx_range:
        if self._impl == "nvtx":
            _nvtx_domain().push_range(_nvtx_attributes(self.message))
        elif self._impl == "torch":
            torch.cuda.nvtx.range_push(self.message)
        return self

    def __exit__(self, *exc: object) -> bool:
        if self._impl == "nvtx":
            _nvtx_domain().pop_range()
        elif self._impl == "torch":
            torch.cuda.nvtx.range_pop()
        return False


# ----------------------------------------------------------------------------------------- profiler


@contextlib.contextmanager
def profiler_capture(enabled: bool = True, *, synchronize: bool = True) -> Iterator[bool]:
    """``cudaProfilerStart()`` on entry and ``cudaProfilerStop()`` on exit (via ``torch.cuda.profiler``).

    Under ``nsys profile --capture-range=cudaProfilerApi`` only the work inside is recorded. The
    device is synchronised on entry and exit so no earlier kernel leaks in and every kernel of the
    region ends inside it. Yields whether a capture range was really opened (``False`` without
    CUDA or with ``enabled=False``).
    """
    if not enabled or not cuda_available():
        yield False
        return
    if synchronize:
        torch.cuda.synchronize()
    torch.cuda.profiler.start()
    try:
        yield True
    finally:
        if synchronize:
            torch.cuda.synchronize()
        torch.cuda.profiler.stop()


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


class GraphCaptureError(RuntimeError):
    """``fn`` could not be captured in a CUDA graph (host sync, allocation the graph pool cannot serve, ...)."""


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


@dataclass(frozen=True)
class Timing:
    """Per-call time statistics in microseconds (µs).

    ``method``: ``"graph"`` (CUDA-graph replay, GPU time incl. on-GPU dispatch), ``"eager"`` (CUDA
    events around a host call from an idle GPU: host overhead + launch + kernel) or ``"cpu_wall"``
    (``time.perf_counter_ns`` on CPU — CPU wall time, not GPU time). ``inner``: calls per sample
    (each sample is divided by it). ``note`` says why a requested graph fell back to eager, if it did.
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
    inner: int = 1
    note: str = ""
    samples_us: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self, samples: bool = False) -> dict:
        d = asdict(self)
        if not samples:
            d.pop("samples_us")
        else:
            d["samples_us"] = list(self.samples_us)
        return d


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default 'linear' method) of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    pos = q * (len(sorted_vals) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _summarize(samples: list[float], method: str, flush: bool, inner: int, note: str) -> Timing:
    s = sorted(samples)
    return Timing(median_us=_quantile(s, 0.5), p10_us=_quantile(s, 0.1), p90_us=_quantile(s, 0.9),
                  mean_us=statistics.fmean(s), min_us=s[0], max_us=s[-1], repeats=len(s), method=method,
                  l2_flush=flush, inner=inner, note=note, samples_us=tuple(samples))


def time_fn(fn: Callable[[], Any] | Sequence[Callable[[], Any]], *, warmup: int = 5, repeats: int = 50,
            flush_l2: bool = True, graph: bool = False, inner: int = 1, device: torch.device | str | None = None,
            spin_us: float = 20.0, fallback_to_eager: bool = True, nvtx_label: str | None = None) -> Timing:
    """Time ``fn`` and return per-call :class:`Timing` in µs.

    Args:
        fn: the call to time (no arguments). For ``graph=True`` it must be capturable (no host sync).
            A list of callables makes one pass = each called once, in order (e.g. the same kernel on
            different pool rows, as consecutive layers of a model would); times are per call.
        warmup: untimed passes (or replays) first; the first call also triggers any JIT compilation.
        repeats: timed samples.
        flush_l2: write a >= 2x-L2 buffer before each sample (outside the timed interval).
        graph: capture ``inner`` passes in a CUDA graph and time its replays (see module doc).
        inner: passes per sample (graph: unrolled inside the graph; eager/CPU: a Python loop).
        device: CUDA device (default: current), or ``"cpu"`` to force the CPU wall clock.
        spin_us: graph mode only: GPU spin before each sample so host latency stays out.
        fallback_to_eager: if graph capture fails, time eagerly and say why in ``Timing.note``;
            otherwise raise :class:`GraphCaptureError`.
        nvtx_label: if given, each timed sample is wrapped in ``nvtx_range(nvtx_label)`` (host side,
            around the event records) so that a trace can attribute kernels to samples.

    A sample's time is divided by the calls it holds (``inner x len(fn)``), reported in
    ``Timing.inner``. On a machine without CUDA (or ``device="cpu"``) the wall clock
    (``time.perf_counter_ns``) is used: CPU time of the call, ``method="cpu_wall"``;
    ``flush_l2``/``graph`` are ignored.
    """
    if repeats < 1 or warmup < 0 or inner < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, inner >= 1; got repeats={repeats}, "
                         f"warmup={warmup}, inner={inner}")
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
    dev = torch.device(device) if device is not None else (
        torch.device("cuda", torch.cuda.current_device()) if cuda_available() else torch.device("cpu"))
    rng = nvtx_range(nvtx_label) if nvtx_label else contextlib.nullcontext()
    if dev.type != "cuda":
        return _time_cpu(body, warmup, repeats, inner, calls, rng)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
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
                return _time_graph(g, warmup, repeats, calls, flusher, dev, spin_us, rng)
        return dataclasses.replace(_time_eager(body, warmup, repeats, inner, calls, flusher, rng), note=note)


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


def _time_eager(fn, warmup: int, repeats: int, inner: int, calls: int, flusher: L2Flusher | None, rng) -> Timing:
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
    return _summarize(samples, "eager", flusher is not None, calls, "")


def _time_graph(g, warmup: int, repeats: int, calls: int, flusher: L2Flusher | None, dev: torch.device,
                spin_us: float, rng) -> Timing:
    for _ in range(warmup):
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
    return _summarize(samples, "graph", flusher is not None, calls, "")


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
