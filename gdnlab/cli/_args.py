"""What every command's options share: the one list parser, argument types, the one help formatter
and the path checks.

Lists are comma-separated everywhere (``--batches 1,4,16``); :func:`parse_list` is the one parser of
them, used as an argparse type (:func:`comma_list`: a bad item is a usage error) or on the parsed
strings (a bad item is an :class:`~gdnlab.errors.InputError`, one line). :class:`HelpFormatter`
ends each option's help with ``(choices: a,b,c) (default: x)``: the valid values (from the
registries, :mod:`gdnlab.cli._registry`) and the default, once, lists written ``1,4,16``. A file
named on the command line is checked to be a regular file before anything reads it (a FIFO or a
folder would otherwise block or fail with an unclear message), and an output file not to be a folder.
This module imports nothing heavy: building the parser must stay fast.
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DataError, InputError

__all__ = ["split_list", "parse_list", "comma_list", "str_list", "int_list", "positive_int", "positive_float",
           "option", "list_option", "show", "HelpFormatter", "input_file", "output_file"]

T = TypeVar("T")

_KIND = {int: "integers", float: "numbers"}
_EXAMPLE = {int: "1,4,16", float: "2.5,3.17"}


def split_list(values: str | Iterable[Any] | None) -> list[str]:
    """``"1,4,16"``, ``["1", "4,16"]`` (an option given with spaces) or ``(1, 4, 16)`` ->
    ``["1", "4", "16"]``; blank items are dropped, ``None`` is an empty list."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) or not isinstance(values, Iterable) else values
    return [s.strip() for v in items for s in str(v).split(",") if s.strip()]


def parse_list(values: str | Iterable[Any] | None, item: Callable[[str], T] = str, *, flag: str = "",
               minimum: float | None = None) -> list[T]:
    """The items of a comma-separated list, each converted by ``item`` (``str``, ``int``, ``float``, ...).

    Raises :class:`~gdnlab.errors.InputError` naming ``flag`` for an empty list, an item ``item``
    refuses, or one below ``minimum``.
    """
    texts = split_list(values)
    what = _KIND.get(item, "names")
    example = _EXAMPLE.get(item, "a,b")
    given = ",".join(texts)
    head = f"{flag}: " if flag else ""
    if not texts:
        raise InputError(f"{head}expected a comma-separated list (e.g. {example}), got {str(values or '')!r}")
    out = []
    for t in texts:
        try:
            x = item(t)
        except (TypeError, ValueError):
            raise InputError(f"{head}expected comma-separated {what} (e.g. {example}), got {t!r} in {given!r}") \
                from None
        if minimum is not None and not x >= minimum:      # also refuses nan
            raise InputError(f"{head}expected {what} >= {minimum:g}, got {t} in {given!r}")
        out.append(x)
    return out


def comma_list(item: Callable[[str], T] = str, *, minimum: float | None = None) -> Callable[[str], list[T]]:
    """An argparse ``type``: :func:`parse_list` of the option's text; a bad item is a usage error."""
    def parse(text: str) -> list[T]:
        try:
            return parse_list(text, item, minimum=minimum)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"comma-separated {_KIND.get(item, 'names')}"
    return parse


#: ``"a,b"`` -> ``["a", "b"]``
str_list = comma_list(str)
#: ``"1,4,16"`` -> ``[1, 4, 16]``, every item an integer >= 1
int_list = comma_list(int, minimum=1)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def positive_float(text: str) -> float:
    """An argparse ``type``: a number > 0 (not nan, not inf)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return x


class _SpacedList(argparse.Action):
    """A list option whose items may also come as separate words (``--batches 1 4,16``, as earlier
    scripts give them) and whose flag may repeat (the items add up); stores the item strings, for
    the command to convert (:func:`parse_list`)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        current = getattr(namespace, self.dest, None)
        earlier = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, earlier + split_list(values))


def option(group: argparse._ActionsContainer, *flags: str, valid: Sequence[str] | None = None,
           shown_default: Any = None, **kwargs: Any) -> argparse.Action:
    """``group.add_argument(*flags, **kwargs)``; ``valid`` lists the accepted values in the help
    without enforcing them (the command checks them and says what is wrong in one line);
    ``shown_default`` is the default the help shows where the parsed default is ``SUPPRESS``/``None``."""
    action = group.add_argument(*flags, **kwargs)
    action.valid = tuple(valid) if valid else None
    action.shown_default = shown_default
    return action


def list_option(group: argparse._ActionsContainer, *flags: str, metavar: str, item: Callable[[str], Any] = str,
                minimum: float | None = None, spaces: bool = False, **kwargs: Any) -> argparse.Action:
    """A comma-separated list option shown as ``--flag METAVAR,...``. Parsed here into a list
    (``item``, ``minimum``: a bad item is a usage error), or with ``spaces`` kept as strings for the
    command to convert (items may also be separate words, the flag may repeat; a bad item is then a
    one-line input error)."""
    if spaces:
        return option(group, *flags, nargs="+", action=_SpacedList, metavar=f"{metavar},...", **kwargs)
    return option(group, *flags, type=comma_list(item, minimum=minimum), metavar=f"{metavar},...", **kwargs)


def show(value: Any) -> str:
    """A value as the help writes it: lists ``1,4,16``, floats ``3.17``, the rest ``str``."""
    if isinstance(value, (list, tuple)):
        return ",".join(show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _ListWrapper(textwrap.TextWrapper):
    """Wraps at spaces; a list too long for a line (``a,b,c``) also after its commas; never inside a name."""

    def _split(self, text: str) -> list[str]:
        out = []
        for chunk in super()._split(text):
            out += [p for p in re.split(r"(?<=,)", chunk) if p] if len(chunk) > self.width else [chunk]
        return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The one help formatter: each option's help ends with ``(choices: a,b,c) (default: x)`` (valid
    values from :func:`option` or argparse ``choices``; the default once, not for flags, ``None`` or
    help that already says its default); list options read ``--flag B,...``; choice options show their
    name (``--engine ENGINE``), not ``{a,b}``; descriptions keep their line breaks (examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if text == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            return text
        notes = []
        valid = getattr(action, "valid", None) or action.choices
        if valid:
            notes.append(f"choices: {show(list(valid))}")
        default = action.default
        if default in (None, argparse.SUPPRESS):
            default = getattr(action, "shown_default", None)
        empty = default is None or default is False or (isinstance(default, (list, tuple)) and not default)
        if not empty and "default" not in text.lower():
            notes.append(f"default: {show(default)}")
        return text + "".join(f" ({n})" for n in notes).replace("%", "%%")

    def _split_lines(self, text: str, width: int) -> list[str]:
        text = " ".join(text.split())
        return _ListWrapper(width, break_long_words=False, break_on_hyphens=False).wrap(text)

    def _metavar_formatter(self, action: argparse.Action, default_metavar: str):
        if action.metavar is None and action.choices is not None \
                and not isinstance(action, argparse._SubParsersAction):
            return lambda size: (default_metavar,) * size
        return super()._metavar_formatter(action, default_metavar)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if isinstance(action, _SpacedList):
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)


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
