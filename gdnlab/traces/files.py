"""Checks on a trace path before anything opens it.

A FIFO would block ``open()`` forever and a device could be read without end, so the kind of file is
taken from ``os.stat`` (``stat.S_ISREG``) and anything but a regular file is refused unopened.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import TraceDataError, TraceNotFoundError

__all__ = ["regular_file"]

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path: str | Path) -> os.stat_result:
    """``os.stat(path)`` of a regular file (symbolic links followed). Raises
    :class:`~.errors.TraceNotFoundError` when it does not exist and :class:`~.errors.TraceDataError`
    for anything else (directory, FIFO, device, socket, unreadable), without opening it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceNotFoundError(path) from None
    except OSError as e:
        raise TraceDataError(path, f"cannot stat the file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
        raise TraceDataError(path, f"is {kind}, not a trace file (expected an nsys SQLite export or a "
                                   f"Kineto JSON trace)")
    return st
