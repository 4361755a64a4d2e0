"""The progress line of the commands that work for a while (``plan``, ``report``): a tqdm bar on
stderr, drawn only when stderr is a terminal and ``--no-progress`` was not given. Its clock ticks
once a second during a long stage, and it clears itself when done, so what the command prints
(stdout) and its one-line errors (stderr) stay as they are."""
from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

__all__ = ["progress_bar", "progress_on"]


def progress_on(args: argparse.Namespace) -> bool:
    """Whether to draw the line: stderr is a terminal and ``--no-progress`` was not given."""
    isatty = getattr(sys.stderr, "isatty", None)
    return not getattr(args, "no_progress", False) and bool(isatty and isatty())


class _Ticking:
    """Context manager around a tqdm bar: refreshes it every ``every_s`` seconds (elapsed time moves
    while a stage takes long), closes it on exit (also on an error or Ctrl-C)."""

    def __init__(self, bar: Any, every_s: float = 1.0) -> None:
        self.bar, self.every_s = bar, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self.bar.refresh()

    def __enter__(self) -> Any:
        if not self.bar.disable:
            self._thread = threading.Thread(target=self._tick, name="gdnlab-progress", daemon=True)
            self._thread.start()
        return self.bar

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()


def progress_bar(args: argparse.Namespace, total: int, desc: str, unit: str) -> _Ticking:
    """A ``tqdm`` bar of ``total`` ``unit`` on stderr (disabled, but usable, when :func:`progress_on`
    is false), as a context manager that yields the bar."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress_on(args), leave=False,
               dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} " + unit + " [{elapsed}]{postfix}")
    return _Ticking(bar)
