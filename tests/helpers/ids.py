"""Readable test ids for parametrised cases: ``@pytest.mark.parametrize(..., ids=case_id)``.

pytest names a case by its values where they are plain (strings, numbers) and by ``argname<index>``
otherwise (``kw0``, ``<lambda>``, ``dtype1``, and ``name0`` for a long string). :func:`case_id` names
those others by what they hold: a dict as ``key=value`` pairs, a list of strings as its words (an
argv), another list or a tuple as its items, a lambda as the source of its body, a named function by
its name, a torch dtype by its short name, a long string cut to :data:`MAX_LEN`. Anything else keeps
pytest's own id (``None``)."""
from __future__ import annotations

import ast
import functools
import linecache
from collections.abc import Callable
from typing import Any

import torch

#: longest id, in characters (longer ones are cut, ending in "...")
MAX_LEN = 80


def case_id(value: Any) -> str | None:
    """The id of one parameter value, or ``None`` for pytest's default (see the module docstring)."""
    text = _text(value, top=True)
    if text is None:
        return None
    return text if len(text) <= MAX_LEN else text[: MAX_LEN - 3] + "..."


def _text(value: Any, top: bool = False) -> str | None:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, dict):
        return ",".join(f"{k}={_part(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, list):
        sep = " " if all(isinstance(v, str) for v in value) else ","
        return sep.join(_part(v) for v in value) or "[]"
    if isinstance(value, tuple):
        return ",".join(_part(v) for v in value) or "()"
    if callable(value) and hasattr(value, "__code__"):
        return _lambda_body(value) if value.__name__ == "<lambda>" else value.__name__
    if top:
        return value if isinstance(value, str) and len(value) > MAX_LEN else None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _part(value: Any) -> str:
    """One item inside a dict, list or tuple."""
    return _text(value) or repr(value)


def _lambda_body(fn: Callable) -> str | None:
    """The source of a lambda's body (``m.step_us('triton', 0, 100)``), found in its file's syntax tree
    at the position of its first instruction; ``None`` where the source is not at hand."""
    code = fn.__code__
    bodies = [n.body for n in _lambdas(code.co_filename)]
    if not hasattr(code, "co_positions"):                      # Python 3.10: the one lambda on its line
        on_line = [b for b in bodies if b.lineno == code.co_firstlineno]
        return ast.unparse(on_line[0]) if len(on_line) == 1 else None
    first = next(((ln, col) for ln, _, col, end in code.co_positions()
                  if ln is not None and col is not None and end is not None and end > col), None)
    around = [b for b in bodies if first and (b.lineno, b.col_offset) <= first <= (b.end_lineno, b.end_col_offset)]
    if not around:
        return None
    innermost = max(around, key=lambda b: (b.lineno, b.col_offset))
    return ast.unparse(innermost)


@functools.cache
def _lambdas(filename: str) -> tuple[ast.Lambda, ...]:
    source = "".join(linecache.getlines(filename))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    return tuple(n for n in ast.walk(tree) if isinstance(n, ast.Lambda))
