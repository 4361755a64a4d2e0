"""No module of gdnlab compares a verify-strategy or backend name outside the registries.

A strategy's or a backend's facts live on its registry entry (:mod:`gdnlab.strategies.registry`,
:mod:`gdnlab.backends`, :mod:`gdnlab.engines`); code elsewhere asks for a fact (``BASELINE``,
``Backend.oracle``, ``Backend.engine_options``, ...) and never tests a name. This test parses every
module of ``gdnlab/`` and fails on a comparison (``==``, ``!=``, ``in``, ``not in``), a membership
test against a literal tuple / list / set, or a pandas ``.isin`` / ``.eq`` / ``.ne`` whose literal
operand is a registered name. The names are read from the registries, so a new strategy or backend is
covered as soon as it is registered.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gdnlab import backends
from gdnlab.strategies.registry import STRATEGY_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gdnlab"

#: modules (paths relative to the repository) that may compare the names, and why
ALLOWED: dict[str, str] = {
    "gdnlab/backends.py": "the backend registry",
    "gdnlab/engines.py": "the engine registry",
    "gdnlab/strategies/registry.py": "the strategy registry",
    "gdnlab/cli/": "the command line validates and lists the registries' names",
    "gdnlab/kernels/sglang_rule.py": "SGLang's own --linear-attn-*-backend flag values, not gdnlab backend names",
    "gdnlab/seed.py": "declares the seed's and published runs' backend labels (SEED_FLASHINFER, SEED_TRITON)",
}

_METHODS = {"isin", "eq", "ne"}


def registered_names() -> frozenset[str]:
    """Every strategy and backend name the registries hold."""
    return frozenset(STRATEGY_NAMES) | frozenset(backends.names())


def _named(node: ast.AST, names: frozenset[str]) -> list[str]:
    """Registered names among a literal operand: a string constant or a tuple / list / set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in names else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for e in node.elts for n in _named(e, names)]
    return []


def name_comparisons(source: str, names: frozenset[str]) -> list[tuple[int, str]]:
    """``(line, name)`` of every comparison, membership test or ``.isin`` / ``.eq`` / ``.ne`` call in
    ``source`` with a registered name as a literal operand."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                hits += [(node.lineno, n) for n in _named(operand, names)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _METHODS:
            for arg in (*node.args, *(k.value for k in node.keywords)):
                hits += [(node.lineno, n) for n in _named(arg, names)]
    return sorted(hits)


def _allowed(rel: str) -> bool:
    return any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in ALLOWED)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_registries_hold_the_names_the_check_looks_for() -> None:
    names = registered_names()
    assert {"full_cache", "replay_ring", "reference", "flashinfer", "sglang_triton", "vllm_cuda"} <= names
    assert len(_modules()) > 50
    for allowed in ALLOWED:
        assert (ROOT / allowed).exists(), f"allow-list entry {allowed} names no module"


@pytest.mark.parametrize("source, expected", [
    ('if strategy == "replay_ring":\n    pass\n', [(1, "replay_ring")]),
    ('ok = "triton" != backend\n', [(1, "triton")]),
    ('ok = b in ("sglang_triton", "sglang_flashinfer", "other")\n', [(1, "sglang_flashinfer"), (1, "sglang_triton")]),
    ('ok = "full_cache" in piv.index\n', [(1, "full_cache")]),
    ('sel = df[df["strategy"].isin(["recompute", "x"])]\n', [(1, "recompute")]),
    ('sel = df["strategy"].eq("token_slots")\n', [(1, "token_slots")]),
    ('ok = x == BASELINE or mode == "decode"\n', []),
    ('d = {"flashinfer": 1}\nv = d["flashinfer"]\n', []),
])
def test_the_check_finds_comparisons_with_names(source: str, expected: list) -> None:
    assert name_comparisons(source, registered_names()) == expected


def test_no_module_compares_a_strategy_or_backend_name() -> None:
    names = registered_names()
    found = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if _allowed(rel):
            continue
        hits = name_comparisons(path.read_text(encoding="utf-8"), names)
        found += [f"{rel}:{line}: compares {name!r}" for line, name in hits]
    assert not found, ("ask the registry for a fact instead of comparing a name "
                       "(gdnlab/strategies/registry.py, gdnlab/backends.py):\n" + "\n".join(found))


def test_the_facts_that_replace_names_are_declared_once() -> None:
    from gdnlab.kernels import ENGINE_OPTIONS
    from gdnlab.strategies.registry import BASELINE, strategy_class

    assert [b.name for b in backends.BACKENDS if b.oracle] == [backends.oracle()] == ["reference"]
    assert [b.name for b in backends.BACKENDS if b.default] == [backends.DEFAULT_BACKEND] == ["triton"]
    assert backends.timed_names(["reference", "flashinfer", "triton"]) == ["flashinfer", "triton"]
    assert backends.timed_names(["reference"]) == ["reference"]
    # SGLang runs its own kernels without gdnlab's contract padding, FlashInfer's without zeroed padding rows
    sglang_own = ("sglang_triton", "sglang_flashinfer", "sglang_cutedsl")
    no_padding = dict.fromkeys(sglang_own, {"contract_padding": False})
    assert ENGINE_OPTIONS == {"sglang": {"flashinfer": {"zero_padding_output": False}, **no_padding}, None: {}}
    ENGINE_OPTIONS["sglang"]["flashinfer"]["extra"] = 1      # a copy: the registry's entry is unchanged
    try:
        assert backends.options_for_engine("sglang")["flashinfer"] == {"zero_padding_output": False}
    finally:
        del ENGINE_OPTIONS["sglang"]["flashinfer"]["extra"]
    assert strategy_class(BASELINE).name == "full_cache"
