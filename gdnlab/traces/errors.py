"""Errors raised by the trace readers.

* :class:`TraceError` (a ``ValueError``): base class; the message names the file and what is wrong.
* :class:`TraceDataError` (also a :class:`gdnlab.errors.DataError`): the file exists but is not a
  readable trace — wrong kind, not a regular file, truncated, corrupt, a table a figure needs is
  missing, times that are NULL, negative, NaN or infinite.
* :class:`TraceNotFoundError` (also a ``FileNotFoundError``): there is no such file.

The command line maps a ``DataError`` to exit code 4 and a ``FileNotFoundError`` to 5
(:data:`gdnlab.errors.EXIT_CODES`).
"""
from __future__ import annotations

import errno
from pathlib import Path

from gdnlab.errors import DataError, GdnlabError

__all__ = ["TraceError", "TraceDataError", "TraceNotFoundError"]


class TraceError(GdnlabError, ValueError):
    """A file could not be read as a trace. The message always names the file and what is missing or
    wrong, e.g. ``"fi_c64.sqlite: no CUPTI_ACTIVITY_KIND_KERNEL table (was the capture run with
    -t cuda?)"``. ``path`` holds the offending file, ``problem`` the text after the file name."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class TraceDataError(TraceError, DataError):
    """The file exists but is not a readable trace (see the module docstring)."""


class TraceNotFoundError(TraceError, FileNotFoundError):
    """The trace file does not exist. Both a :class:`TraceError` and a :class:`FileNotFoundError`, so
    either ``except`` clause catches it; ``str()`` reads ``"<path>: no such file"``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "no such file")
        self.errno = errno.ENOENT
        self.strerror = "no such file"
        self.filename = str(path)
