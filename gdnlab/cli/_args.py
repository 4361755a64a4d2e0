"""Argument types and path checks shared by the commands: lists are comma-separated (``--batches 1,4,16``);
a file named on the command line is checked to be a regular file before anything reads it (a FIFO or a
folder would otherwise block or fail with an unclear message), and an output file not to be a folder."""
from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from ..errors import DataError, InputError

__all__ = ["int_list", "str_list", "input_file", "output_file"]


def str_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (empty items dropped); an empty list is an error."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def int_list(text: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]``; every item must be an integer >= 1."""
    out = []
    for t in str_list(text):
        try:
            n = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {t!r} in {text!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"expected integers >= 1, got {n} in {text!r}")
        out.append(n)
    return out


def input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path` once it is an existing regular file (symlinks followed).

    ``what`` names the expected content, with its article (``"a counters table (ncu_metrics.parquet)"``).
    Raises ``FileNotFoundError`` when nothing is there and :class:`~gdnlab.errors.DataError` for a
    folder, FIFO, socket or device.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such file; expected {what}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{p} is a folder; expected {what}")
    if not stat.S_ISREG(mode):
        raise DataError(f"{p} is not a regular file (a pipe, socket or device); expected {what}")
    return p


def output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a :class:`Path` when a file may be written there: nothing there yet or a regular
    file (replaced atomically by the writer). Raises :class:`~gdnlab.errors.InputError` for a folder
    or a special file, before any work is done."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder; expected a file name (e.g. {p / 'out.html'})")
    if p.exists() and not p.is_file():
        raise InputError(f"{flag} {p} is not a regular file (a pipe, socket or device)")
    return p
