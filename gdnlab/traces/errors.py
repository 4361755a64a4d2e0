"""Errors raised by the trace readers (defined in :mod:`gdnlab.errors`, with every gdnlab exception).

* :class:`TraceError` (a ``ValueError``): base class; the message names the file and what is wrong.
* :class:`TraceDataError` (also a :class:`gdnlab.errors.DataError`): the file exists but is not a
  readable trace — wrong kind, not a regular file, truncated, corrupt, a table a figure needs is
  missing, times that are NULL, negative, NaN or infinite.
* :class:`TraceNotFoundError` (also a ``FileNotFoundError``): there is no such file.

The command line maps a ``DataError`` to exit code 4 and a ``FileNotFoundError`` to 5
(:data:`gdnlab.errors.EXIT_CODES`).
"""
from __future__ import annotations

from gdnlab.errors import TraceDataError, TraceError, TraceNotFoundError

__all__ = ["TraceError", "TraceDataError", "TraceNotFoundError"]
