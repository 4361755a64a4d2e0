"""Size limits of the package's code: no module of gdnlab/ over 600 lines, no function (or method)
over 80 lines, counted from its ``def`` line to its last line, decorators excluded, as the AST gives
them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gdnlab"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _long_functions(source: str, name: str) -> list[str]:
    """``name:line function (n lines)`` for each function of ``source`` over the limit."""
    tree = ast.parse(source, filename=name)
    return [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_the_package_has_sources() -> None:
    assert len(_sources()) > 50 and (PACKAGE / "workload.py").exists()


def test_no_module_over_the_line_limit() -> None:
    long = [f"{p.relative_to(PACKAGE.parent)} ({n} lines)" for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {long}"


def test_no_function_over_the_line_limit() -> None:
    long = [f for p in _sources()
            for f in _long_functions(p.read_text(encoding="utf-8"), str(p.relative_to(PACKAGE.parent)))]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {long}"


@pytest.mark.parametrize("lines, too_long", [(MAX_FUNCTION_LINES, False), (MAX_FUNCTION_LINES + 1, True)])
def test_a_function_counts_from_its_def_to_its_last_line(lines: int, too_long: bool) -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(lines - 2))
    source = f"class C:\n    @staticmethod\n    def f():\n{body}        return 0\n"
    assert bool(_long_functions(source, "m.py")) is too_long
