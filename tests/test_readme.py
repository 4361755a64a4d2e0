"""The README's Python examples run as written (on CPU, with the reference backend)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2, "the README lost its Python examples"
    ns: dict = {}
    exec(compile("\n".join(blocks), str(README), "exec"), ns)
    assert tuple(ns["state"].shape) == (8, 16, 128, 128)     # each row's committed state, materialised
    assert ns["o"].shape[:2] == (8, 4)


def test_readme_commands_are_the_ci_commands():
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = [ln for ln in README.read_text(encoding="utf-8").splitlines() if "python -m pytest" in ln][0]
    assert test_cmd.strip() in ci
