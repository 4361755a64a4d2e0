"""Phase marker kernels: one tiny kernel before each phase of a speculative step in a trace.

NVTX ranges pushed while a CUDA graph is *captured* are not recorded when it is *replayed*, so a
decode-loop workload launches ``phase_marker_<phase>`` (one program, no work) before the first
kernel of each phase; its name survives ``nsys --cuda-graph-trace=node``, and
:mod:`gdnlab.analysis.phases` splits a trace's kernels by them. Launching needs CUDA and Triton
(imported only when a marker is launched).
"""
from __future__ import annotations

from .roofline import STEP_PHASES

__all__ = ["MARKER_PREFIX", "marker_name", "markers_available", "launch_phase_marker"]

#: every marker kernel's name starts with this; the phase follows
MARKER_PREFIX = "phase_marker_"


def marker_name(phase: str) -> str:
    """The marker kernel's name for ``phase`` (``"phase_marker_verify"``)."""
    if phase not in STEP_PHASES:
        raise ValueError(f"unknown phase {phase!r}; known: {', '.join(STEP_PHASES)}")
    return MARKER_PREFIX + phase

# Module-level so triton.jit can read their source; the body does nothing. Each is one program.

def phase_marker_fold(flag_ptr):
    pass


def phase_marker_verify(flag_ptr):
    pass


def phase_marker_commit(flag_ptr):
    pass


_MARKERS: dict[str, object] = {}
_MARKER_ERROR: list[str] = []


def markers_available(device=None) -> tuple[bool, str]:
    """Whether marker kernels can be launched on ``device`` (a CUDA device and Triton), and why not."""
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type != "cuda":
        return False, f"markers are launched on CUDA devices only, got {dev}"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    if _MARKER_ERROR:
        return False, _MARKER_ERROR[0]
    try:
        import triton  # noqa: F401 - imported only to learn whether it imports
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason
        return False, f"triton not importable: {type(exc).__name__}: {exc}"
    return True, "ok"


def launch_phase_marker(phase: str, flag) -> None:
    """Launch the marker kernel of ``phase`` (one program, no work) on the current stream;
    ``flag`` is any CUDA tensor (passed as the kernel's only pointer, never touched).
    Capturable in a CUDA graph."""
    kern = _MARKERS.get(phase)
    if kern is None:
        import triton
        fn = {"fold": phase_marker_fold, "verify": phase_marker_verify, "commit": phase_marker_commit}[phase]
        kern = _MARKERS[phase] = triton.jit(fn)
    kern[(1,)](flag, num_warps=1)
