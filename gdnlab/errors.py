"""gdnlab's exceptions, every one of them, and the exit code the command line gives each kind of
expected failure.

Library code raises these (or plain ``ValueError`` / ``FileNotFoundError`` for bad arguments and
missing files); the command line (:mod:`gdnlab.cli`) turns each into one line naming the input and
what was expected, with a distinct exit code (:data:`EXIT_CODES`). Anything else is a bug and shows
its stack trace. The kinds, and the classes of each:

* :class:`GdnlabError`: base class of all (no exit code of its own): :class:`ReportError` (some
  notebooks of a build failed; ``gdnlab report`` exits 1), :class:`HostSyncError` (a strategy's code
  cannot be captured in a CUDA graph).
* :class:`InputError` (a ``ValueError``, exit code 2): a value the user gave is out of its domain.
* :class:`DataError` (a ``ValueError``, exit code 4): a file is not what was expected;
  :class:`TraceDataError`.
* :class:`TraceError` (a ``ValueError``): a file could not be read as a trace; base of
  :class:`TraceDataError` and :class:`TraceNotFoundError` (a ``FileNotFoundError``, exit code 5).
* :class:`UnavailableError` (a ``RuntimeError``, exit code 3): what the command needs is not here:
  :class:`BackendUnavailable`, :class:`StrategyUnavailable`, :class:`EngineUnavailable`,
  :class:`ToolNotFoundError` (also a ``FileNotFoundError``; :class:`NsysNotFoundError`,
  :class:`NcuNotFoundError`), :class:`CaptureError`, :class:`OutputBusyError`,
  :class:`GraphCaptureError`, :class:`PoolFullError`, :class:`MissingData` (also a ``LookupError``).
* :class:`Interrupted` (exit code 130): a run stopped early; :class:`SweepInterrupted`.
* :class:`Terminated` (a ``KeyboardInterrupt``, exit code 130): SIGTERM raised where Ctrl-C would be.
  Not a :class:`GdnlabError` on purpose: a ``KeyboardInterrupt`` is not an ``Exception``, so the
  ``except Exception`` that stores one failed point and goes on never swallows a stop.

Only the standard library is imported here: the command line's fast path imports this module.
"""
from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path

__all__ = ["GdnlabError", "InputError", "DataError", "UnavailableError", "BackendUnavailable",
           "StrategyUnavailable", "Interrupted", "EngineUnavailable", "TraceError", "TraceDataError",
           "TraceNotFoundError", "ToolNotFoundError", "NsysNotFoundError", "NcuNotFoundError", "CaptureError",
           "OutputBusyError", "Terminated", "MissingData", "ReportError", "HostSyncError", "SweepInterrupted",
           "PoolFullError", "GraphCaptureError", "EXIT_CODES", "exit_code"]


class GdnlabError(Exception):
    """Base class of gdnlab's expected failures."""


class InputError(GdnlabError, ValueError):
    """A value the user gave is out of its domain (a negative batch, an unknown preset)."""


class DataError(GdnlabError, ValueError):
    """A file exists but is not what was expected (wrong kind, corrupt, another GPU's sweep, a trace
    without a table a figure needs)."""


class UnavailableError(GdnlabError, RuntimeError):
    """What the command needs is not here: a CUDA device, a backend, a strategy, nsys or ncu, a free
    state slot, the data a notebook reads."""


class BackendUnavailable(UnavailableError):
    """A known backend that cannot run here (:func:`gdnlab.kernels.get_backend`); the message says why."""


class StrategyUnavailable(UnavailableError):
    """A known verify strategy that cannot run on a backend here (:func:`gdnlab.strategies.get_strategy`);
    the message says why."""


class Interrupted(GdnlabError):
    """A run stopped early (Ctrl-C); what was complete is kept."""


# ------------------------------------------------------------------------------------- engines

class EngineUnavailable(UnavailableError):
    """A serving engine's module or kernel cannot be used here (:mod:`gdnlab.kernels._engine_import`,
    :mod:`gdnlab.components.sglang_kernels`); ``str(exc)`` is the one-line reason."""


# -------------------------------------------------------------------------------------- traces

class TraceError(GdnlabError, ValueError):
    """A file could not be read as a trace (:mod:`gdnlab.traces`). The message always names the file and
    what is missing or wrong, e.g. ``"fi_c64.sqlite: no CUPTI_ACTIVITY_KIND_KERNEL table (was the capture
    run with -t cuda?)"``. ``path`` holds the offending file, ``problem`` the text after the file name."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class TraceDataError(TraceError, DataError):
    """The file exists but is not a readable trace: wrong kind, not a regular file, truncated, corrupt,
    a table a figure needs is missing, times that are NULL, negative, NaN or infinite."""


class TraceNotFoundError(TraceError, FileNotFoundError):
    """The trace file does not exist. Both a :class:`TraceError` and a :class:`FileNotFoundError`, so
    either ``except`` clause catches it; ``str()`` reads ``"<path>: no such file"``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "no such file")
        self.errno = errno.ENOENT
        self.strerror = "no such file"
        self.filename = str(path)


# ------------------------------------------------------------------------- tools and captures

class ToolNotFoundError(FileNotFoundError, UnavailableError):
    """An external tool (nsys, ncu) is not installed where gdnlab looks (:func:`gdnlab.tools.find_tool`;
    the command line reports it as unavailable, exit code 3)."""

    def __str__(self) -> str:  # FileNotFoundError's default reads "[Errno None] None: ..."
        return str(self.args[0]) if self.args else "tool not found"


class NsysNotFoundError(ToolNotFoundError):
    """No ``nsys`` executable was found (:func:`gdnlab.capture.find_nsys`); the message says how to
    install it or set ``$NSYS``."""


class NcuNotFoundError(ToolNotFoundError):
    """No usable Nsight Compute CLI (:func:`gdnlab.counters.ncu.find_ncu`): the message says where gdnlab
    looked and what to set/install."""


class CaptureError(UnavailableError):
    """``nsys`` ran but produced no report, or the export failed (:func:`gdnlab.capture.capture`)."""


# ------------------------------------------------------------------------------------- outputs

class OutputBusyError(UnavailableError):
    """Another process is writing the same output (:func:`gdnlab.outputs.output_lock`; the message
    names it)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be (:func:`gdnlab.outputs.stop_on_sigterm`). A
    ``KeyboardInterrupt``, not an :class:`Interrupted`: see the module docstring."""


# -------------------------------------------------------------------------------------- report

class MissingData(UnavailableError, LookupError):
    """Raised by :func:`gdnlab.report.notebook.load` (``strict=True``) when the data a notebook needs is
    not there."""


class ReportError(GdnlabError, RuntimeError):
    """Some notebooks failed (:func:`gdnlab.report.build_report`). The report was still written:
    ``index`` is its index page and ``failed`` maps each failed notebook to its error line."""

    def __init__(self, index: Path, failed: Mapping[str, str]) -> None:
        self.index = Path(index)
        self.failed = dict(failed)
        lines = "; ".join(f"{k}: {v}" for k, v in self.failed.items())
        super().__init__(f"{len(self.failed)} notebook(s) failed ({lines}); partial report at {self.index}")


# ------------------------------------------------------------------------ measuring and running

class HostSyncError(GdnlabError, RuntimeError):
    """An operation that cannot run inside a CUDA graph capture
    (:func:`gdnlab.strategies.host_sync.forbid_host_sync`; the message names it)."""


class GraphCaptureError(UnavailableError):
    """``fn`` could not be captured in a CUDA graph (:func:`gdnlab.instrument.capture_graph`: no CUDA
    device, a host sync, an allocation the graph pool cannot serve, ...)."""


class PoolFullError(UnavailableError):
    """No free slot is left for a new request (:meth:`gdnlab.state.StatePool.alloc`)."""


class SweepInterrupted(Interrupted):
    """The sweep stopped early (SIGTERM or a sticky CUDA error; :func:`gdnlab.sweep.run_sweep`); the
    completed points are stored, ``--resume`` continues in a fresh process."""


#: exit codes of the command line, by failure kind (first match in this order wins)
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnavailableError, 3, "unavailable"),
    (DataError, 4, "bad data"),
    (FileNotFoundError, 5, "file not found"),
    (IsADirectoryError, 5, "file not found"),
    (NotADirectoryError, 5, "file not found"),
    (PermissionError, 6, "permission denied"),
    (ValueError, 2, "bad input"),
    (KeyboardInterrupt, 130, "interrupted"),
    (OSError, 7, "I/O error"),
    (Interrupted, 130, "interrupted"),
)


def exit_code(exc: BaseException) -> tuple[int, str] | None:
    """``(code, kind)`` for an expected failure, ``None`` for anything else (a bug)."""
    for cls, code, kind in EXIT_CODES:
        if isinstance(exc, cls):
            return code, kind
    return None
