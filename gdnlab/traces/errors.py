"""Errors raised by the trace readers."""
from __future__ import annotations

from pathlib import Path

__all__ = ["TraceError", "TraceNotFoundError"]


class TraceError(ValueError):
    """A file could not be read as a trace (not a trace, truncated, empty, missing a table, ...).

    The message always names the file and what is missing or wrong, e.g.
    ``"fi_c64.sqlite: no CUPTI_ACTIVITY_KIND_KERNEL table (was the capture run with -t cuda?)"``.
    ``path`` holds the offending file.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TraceNotFoundError(TraceError, FileNotFoundError):
    """The trace file does not exist. Both a :class:`TraceError` and a :class:`FileNotFoundError`,
    so either ``except`` clause catches it."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "no such file")
        self.errno = 2  # ENOENT
        self.filename = str(path)
