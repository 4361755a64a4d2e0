"""Argument types shared by the commands: lists are comma-separated (``--batches 1,4,16``)."""
from __future__ import annotations

import argparse

__all__ = ["int_list", "str_list"]


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
