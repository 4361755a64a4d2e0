"""What a profiler sees of a run: NVTX ranges and the capture range ``nsys`` listens to.

* :func:`nvtx_range` — ``with nvtx_range("gdn.decode"): ...`` or ``@nvtx_range("step")``. Domain
  ``"gdnlab"`` through the ``nvtx`` package, else ``torch.cuda.nvtx`` (no domain), else a no-op.
  On a machine without CUDA it is a no-op (set ``GDNLAB_NVTX=1`` to force the ``nvtx`` package).
* :func:`nvtx_backend` — which of those :func:`nvtx_range` uses.
* :func:`profiler_capture` — ``torch.cuda.profiler.start()/stop()`` (cudaProfilerStart/Stop) around a
  region, so ``nsys profile --capture-range=cudaProfilerApi`` records only that region.

:mod:`gdnlab.instrument` re-exports all of them.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

from .device import cuda_available

__all__ = ["NVTX_DOMAIN", "nvtx_backend", "nvtx_range", "profiler_capture"]

NVTX_DOMAIN = "gdnlab"


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
        import nvtx  # noqa: F401 - imported only to learn whether nvtx is installed
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
