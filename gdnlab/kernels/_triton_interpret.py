"""Whether Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET``), without importing Triton.

Shared by :mod:`gdnlab.kernels.triton` (which must import on machines without Triton) and
:mod:`gdnlab.kernels._triton_gdn` (the kernel, which imports Triton), so imports flow one way:
``triton -> _triton_interpret`` and ``_triton_gdn -> _triton_interpret``.
"""
from __future__ import annotations

import os

__all__ = ["interpret_enabled"]

_TRUE = ("1", "true", "on", "yes")


def interpret_enabled() -> bool:
    """True when ``TRITON_INTERPRET`` is set to a true value *now* (parsed as Triton parses it).

    Triton decides between compiling and interpreting when a function is wrapped by ``triton.jit``
    (it reads ``triton.knobs.runtime.interpret``, which re-reads the environment on each access), so
    :func:`gdnlab.kernels._triton_gdn.get_kernel` wraps lazily, once per mode, and this is checked per call.
    """
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE
