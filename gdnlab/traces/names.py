"""Kernel names: short names from demangled C++ signatures, and kernel *classes* for comparisons.

Kernel class rule (:func:`kernel_class`), applied to each distinct name:

1. Rules in ``rules`` (default :data:`DEFAULT_CLASS_RULES`) are tried in order; the first regular
   expression that matches anywhere in the name (case-insensitive) gives the class. By default every
   name containing ``gdn``, ``gated_delta``, ``fused_recurrent`` or ``fused_sigmoid_gating`` is ``"gdn"``
   (FlashInfer's CuTe-DSL decode/MTP kernels, gdnlab's Triton kernels and the Triton/fla kernels
   SGLang uses); a strategy's commit kernel (``scatter_commit``, ``state_scatter``) is ``"commit"``.
2. Otherwise the class is the short name (:func:`short_kernel_name`: no ``void``/return type, no
   namespace, no template arguments, no parameter list) with generated suffixes removed: trailing
   ``_<hex hash>`` (6+ hex digits with at least one digit) and trailing ``_<number>`` (Triton/Inductor
   ``triton_poi_fused_add_0``), repeatedly.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from .. import backends

__all__ = ["short_kernel_name", "kernel_class", "kernel_classes", "DEFAULT_CLASS_RULES", "GDN_KERNEL_PATTERN",
           "is_gdn_kernel"]

#: a kernel whose name matches this (case-insensitive) is a GDN kernel: the union of the patterns the
#: backends declare (:func:`gdnlab.backends.gdn_kernel_pattern`). The one pattern gdnlab uses.
GDN_KERNEL_PATTERN = backends.gdn_kernel_pattern()

#: a verify strategy's commit kernel (gdnlab's fused scatter, SGLang's ``fused_mamba_state_scatter_with_mask``)
COMMIT_KERNEL_PATTERN = backends.commit_kernel_pattern()

DEFAULT_CLASS_RULES: tuple[tuple[str, str], ...] = (
    ("commit", COMMIT_KERNEL_PATTERN),
    ("gdn", GDN_KERNEL_PATTERN),
)


def is_gdn_kernel(name: str) -> bool:
    """Whether a kernel name is a GDN kernel (:data:`GDN_KERNEL_PATTERN`)."""
    return re.search(GDN_KERNEL_PATTERN, str(name), re.IGNORECASE) is not None

_SUFFIX = re.compile(r"(_(?=[0-9a-f]*\d)[0-9a-f]{6,}|_\d+)$", re.IGNORECASE)


def _strip_brackets(s: str, open_: str, close: str) -> str:
    """Remove every ``open_ ... close`` group (nested) from ``s``."""
    out, depth = [], 0
    for ch in s:
        if ch == open_:
            depth += 1
        elif ch == close and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=65536)
def short_kernel_name(name: str) -> str:
    """``"void ns::foo_kernel<4, T>(int, float*)"`` -> ``"foo_kernel"``; plain names are kept.

    Operator names such as ``operator()`` are left intact (nothing is removed if the result is empty).
    """
    s = str(name).strip()
    if not s:
        return s
    # drop the parameter list: the first '(' at template depth 0
    depth = 0
    for i, ch in enumerate(s):
        if ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif ch == "(" and depth == 0 and i > 0:
            s = s[:i]
            break
    core = _strip_brackets(s, "<", ">").strip()
    core = core.split(" ")[-1] if " " in core else core   # return type / 'void'
    core = core.split("::")[-1]
    return core or str(name)


@lru_cache(maxsize=65536)
def _class_of(name: str, rules: tuple[tuple[str, str], ...]) -> str:
    for cls, pattern in rules:
        if re.search(pattern, name, re.IGNORECASE):
            return cls
    s = short_kernel_name(name)
    while True:
        t = _SUFFIX.sub("", s)
        if t == s or not t:
            return s
        s = t


def kernel_class(name: str, rules: Sequence[tuple[str, str]] = DEFAULT_CLASS_RULES) -> str:
    """Normalised kernel class of one kernel name (see the module docstring for the rule)."""
    return _class_of(str(name), tuple(tuple(r) for r in rules))


def kernel_classes(names: Iterable[str] | pd.Series,
                   rules: Sequence[tuple[str, str]] = DEFAULT_CLASS_RULES) -> pd.Series:
    """Vectorised :func:`kernel_class` (computed once per distinct name). Returns a categorical Series."""
    s = pd.Series(names)
    codes, uniques = pd.factorize(s.astype(object))
    classes = np.array([kernel_class(u, rules) for u in uniques], dtype=object)
    cat_codes, cats = pd.factorize(classes)
    mapped = np.where(codes >= 0, cat_codes[codes] if len(cat_codes) else codes, -1)
    return pd.Series(pd.Categorical.from_codes(mapped, categories=pd.Index(cats, dtype=object)),
                     index=s.index, name="kernel_class")
