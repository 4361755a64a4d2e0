"""Write gdnlab's table of vLLM command-line flags from vLLM's own source (no vLLM import).

Reads, from a vLLM source tree or wheel of one release:

* every option string ``--flag`` / ``-x`` passed to ``add_argument`` in ``vllm/engine/arg_utils.py``
  (``EngineArgs.add_cli_args`` and ``AsyncEngineArgs.add_cli_args``; a ``BooleanOptionalAction``
  flag also gets its ``--no-`` form), each with its line;
* the choices of the flags gdnlab emits, from the ``Literal`` type of the config field behind them
  (``--mamba-ssm-cache-dtype``: ``MambaDType`` in ``vllm/config/cache.py``);
* the keys of ``--speculative-config`` (the fields of ``SpeculativeConfig`` in
  ``vllm/config/speculative.py``) and the choices of its ``method`` (``SpeculativeMethod``, its
  nested ``Literal`` aliases expanded);
* the environment variables gdnlab sets, with their choices, from ``vllm/envs.py``.

Usage::

    python scripts/extract_vllm_flags.py vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl \
        --out gdnlab/data/vllm-0.33.0-flags.json
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

FILES = ("vllm/engine/arg_utils.py", "vllm/config/cache.py", "vllm/config/speculative.py", "vllm/envs.py")
#: flag -> (file, Literal alias that gives its choices)
CHOICES = {"--mamba-ssm-cache-dtype": ("vllm/config/cache.py", "MambaDType"),
           "--mamba-cache-dtype": ("vllm/config/cache.py", "MambaDType")}
ENV = ("VLLM_GDN_DECODE_KERNEL", "VLLM_USE_V2_MODEL_RUNNER")


def _read(src: Path) -> tuple[dict[str, str], str]:
    """``({path: text}, version)`` from a wheel or a source folder."""
    if src.is_file():
        with zipfile.ZipFile(src) as z:
            texts = {f: z.read(f).decode() for f in FILES}
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            version = re.search(r"^Version: (.+)$", z.read(meta).decode(), re.M).group(1).strip()
        return texts, version
    texts = {f: (src / f).read_text() for f in FILES}
    return texts, os.environ.get("VLLM_VERSION", "unknown")


def _literals(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``Name = Literal[...]`` aliases, nested aliases expanded."""
    raw: dict[str, list] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Subscript) and getattr(node.value.value, "id", "") == "Literal"):
            sl = node.value.slice
            items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
            raw[node.targets[0].id] = items
    out: dict[str, list[str]] = {}

    def expand(name: str) -> list[str]:
        if name in out:
            return out[name]
        vals: list[str] = []
        for it in raw[name]:
            if isinstance(it, ast.Constant):
                vals.append(str(it.value))
            elif isinstance(it, ast.Name) and it.id in raw:
                vals.extend(expand(it.id))
        out[name] = vals
        return vals

    for name in raw:
        expand(name)
    return out


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise SystemExit(f"{needle!r} not found")


def _flags(text: str) -> dict[str, dict]:
    """Every option string of an ``add_argument`` call in arg_utils.py, with its line."""
    tree = ast.parse(text)
    out: dict[str, dict] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
        boolean = any(isinstance(k.value, ast.Attribute) and k.value.attr == "BooleanOptionalAction"
                      for k in node.keywords if k.arg == "action")
        field = next((k.value.slice.value for k in node.keywords if k.arg is None
                      and isinstance(k.value, ast.Subscript) and isinstance(k.value.slice, ast.Constant)), None)
        for n in names:
            out[n] = {"line": node.lineno, "field": field}
            if boolean and n.startswith("--"):
                out["--no-" + n[2:]] = {"line": node.lineno, "field": field}
    return out


def _spec_fields(text: str) -> dict[str, int]:
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SpeculativeConfig")
    return {n.target.id: n.lineno for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _env(text: str, name: str) -> dict:
    line = _line_of(text, f'"{name}": ')
    block = "\n".join(text.splitlines()[line - 1: line + 8])
    m = re.search(r"\[([^\]]*)\]", block) if "env_with_choices" in block else None
    choices = [c.strip().strip('"\'') for c in m.group(1).split(",")] if m else None
    return {"file": "vllm/envs.py", "line": line, "choices": choices}


def extract(src: Path) -> dict:
    texts, version = _read(src)
    arg = texts["vllm/engine/arg_utils.py"]
    flags = _flags(arg)
    for flag, (f, alias) in CHOICES.items():
        lit = _literals(ast.parse(texts[f]))
        flags[flag]["choices"] = lit[alias]
        flags[flag]["choices_from"] = f"{f} L{_line_of(texts[f], alias + ' = Literal')} {alias}"
    spec = texts["vllm/config/speculative.py"]
    lit = _literals(ast.parse(spec))
    fields = _spec_fields(spec)
    keys = {k: {"line": v} for k, v in fields.items()}
    keys["method"]["choices"] = lit["SpeculativeMethod"]
    return {
        "engine": "vllm", "version": version,
        "source": f"vllm-project/vllm v{version}: vllm/engine/arg_utils.py (EngineArgs.add_cli_args, "
                  "AsyncEngineArgs.add_cli_args), vllm/config/cache.py, vllm/config/speculative.py, vllm/envs.py; "
                  "written by scripts/extract_vllm_flags.py",
        "flags": {k: {"file": "vllm/engine/arg_utils.py", **v} for k, v in sorted(flags.items())},
        "note": "--no- forms are listed where add_argument names argparse.BooleanOptionalAction; config fields "
                "typed bool get theirs from get_kwargs (vllm/engine/arg_utils.py) and are not listed",
        "json_flags": {"--speculative-config": {"file": "vllm/config/speculative.py", "class": "SpeculativeConfig",
                                                "keys": keys}},
        "env": {n: _env(texts["vllm/envs.py"], n) for n in ENV},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a vLLM wheel or source folder")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write (replaced atomically)")
    a = p.parse_args(argv)
    table = extract(a.source)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=a.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(table, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, a.out)
    print(f"{a.out}: vLLM {table['version']}, {len(table['flags'])} flags, "
          f"{len(table['json_flags']['--speculative-config']['keys'])} speculative-config keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
