"""SGLang's own Triton kernels for the engine-grade component benchmarks, loaded from the installed
``sglang`` package (0.5.23) without starting the engine.

Two ways, tried in order, and every caller is told which one ran (``how``):

* **import**: the kernel's module is imported through a *bare* ``sglang`` package (its ``__path__``
  points at the installed package, ``sglang/__init__.py`` is not run, so the server stack is not
  imported); a parent package whose ``__init__.py`` needs a dependency this machine lacks is made
  bare too, and the import retried. ``sglang.kernels.ops.attention.decode_attention`` and
  ``sglang.kernels.ops.quantization.fp8_kernel`` import this way on a CPU machine.
* **source**: modules whose imports reach the server (``sglang.kernels.ops.moe.fused_moe_triton_kernels``
  and ``sglang.kernels.ops.gemm.fp8_kernel`` import ``sglang.srt.configs``, which needs
  ``transformers``) are read from the installed file instead: the named ``@triton.jit`` functions and
  the ``@triton.jit`` functions they call are compiled from that file's text as written
  (:func:`jit_from_source`); nothing of SGLang is copied into gdnlab. The host-side launcher is then
  gdnlab's (:mod:`gdnlab.components.engine_ops`), with the arguments SGLang's own launcher passes.

Tile configurations come from SGLang's shipped tuning tables where they exist for the GPU and shape
(:func:`moe_config`, :func:`block_gemm_config`), else SGLang's own defaults; the choice is reported.
Importing this module imports neither torch kernels nor SGLang.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import linecache
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import EngineUnavailable

__all__ = ["SGLANG_VERSION", "EngineUnavailable", "sglang_version", "import_sglang", "jit_from_source",
           "kernel", "moe_config", "block_gemm_config", "MOE_KERNELS", "GEMM_KERNELS", "ATTENTION_MODULE",
           "QUANT_MODULE", "MOE_DEFAULT"]

#: the SGLang release these kernels were read against
SGLANG_VERSION = "0.5.23"
MOE_MODULE = "sglang.kernels.ops.moe.fused_moe_triton_kernels"
GEMM_MODULE = "sglang.kernels.ops.gemm.fp8_kernel"
ATTENTION_MODULE = "sglang.kernels.ops.attention.decode_attention"
QUANT_MODULE = "sglang.kernels.ops.quantization.fp8_kernel"
MOE_CONFIG_MODULE = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"
#: (module, kernel) pairs the MoE and GEMM components launch
MOE_KERNELS = (MOE_MODULE, "fused_moe_kernel")
GEMM_KERNELS = (GEMM_MODULE, "_w8a8_block_fp8_matmul")


def sglang_version() -> str | None:
    """The installed sglang version (``None`` when it is not installed)."""
    try:
        from importlib import metadata

        return metadata.version("sglang")
    except Exception:  # noqa: BLE001 - not installed, or no metadata: treated as absent
        return None


def _bare(name: str) -> ModuleType:
    """Register package ``name`` (and its parents) without running their ``__init__.py``."""
    if name in sys.modules:
        return sys.modules[name]
    parent, _, child = name.rpartition(".")
    if parent:
        _bare(parent)
        spec = importlib.util.find_spec(name)
    else:
        spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"{name} is not an installed package")
    mod = ModuleType(name, f"{name} (bare package: __init__.py not run)")
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__package__, mod.__spec__, mod.__file__ = name, spec, spec.origin
    sys.modules[name] = mod
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


def _check_version() -> None:
    have = sglang_version()
    if have is None:
        raise EngineUnavailable(f"sglang not installed (the engine-grade components need sglang=={SGLANG_VERSION}: "
                                f"bash scripts/install_engines_cpu.sh, or the GPU bundle's engines)")
    if have != SGLANG_VERSION:
        raise EngineUnavailable(f"sglang {have} installed; the engine-grade components were read against "
                                f"{SGLANG_VERSION}")


def _failing_init(exc: BaseException) -> str | None:
    """The sglang package whose ``__init__.py`` raised ``exc`` (innermost), if any."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        f = frame.filename.replace(os.sep, "/")
        if f.endswith("/__init__.py") and "/sglang/" in f:
            return "sglang." + f.split("/sglang/", 1)[1].rsplit("/__init__.py", 1)[0].replace("/", ".")
    return None


def import_sglang(module: str, tries: int = 8) -> ModuleType:
    """Import ``module`` of the installed sglang through bare packages (module docstring); raises
    :class:`EngineUnavailable` naming the missing dependency when it cannot."""
    _check_version()
    _bare("sglang")
    for _ in range(tries):
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            pkg = _failing_init(exc)
            if pkg is None or pkg == "sglang" or getattr(sys.modules.get(pkg), "__file__", "") is None:
                raise EngineUnavailable(f"importing {module} needs {getattr(exc, 'name', None) or exc} "
                                        f"({type(exc).__name__}: {str(exc)[:160]})") from exc
            for k in [k for k in sys.modules if k == pkg or k.startswith(pkg + ".")]:
                del sys.modules[k]
            _bare(pkg)
        except Exception as exc:
            raise EngineUnavailable(f"importing {module} failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
    raise EngineUnavailable(f"importing {module}: gave up after {tries} bare parent packages")


def _module_file(module: str) -> Path:
    _check_version()
    _bare(module.rpartition(".")[0])
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise EngineUnavailable(f"{module} is not in sglang {SGLANG_VERSION}")
    return Path(spec.origin)


def _is_jit(node: ast.FunctionDef) -> bool:
    return any(ast.unparse(d).startswith(("triton.jit", "jit")) for d in node.decorator_list)


def jit_from_source(module: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Compile the ``@triton.jit`` functions ``names`` of sglang's ``module`` (and the ``@triton.jit``
    functions of the same file they call) from the installed file's text; returns ``{name: JITFunction}``.
    The text is registered with :mod:`linecache` under the file's own path, so Triton (which reads a
    kernel's source) sees exactly the installed code."""
    import triton
    import triton.language as tl

    path = _module_file(module)
    text = path.read_text()
    tree = ast.parse(text)
    jits = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and _is_jit(n)}
    missing = [n for n in names if n not in jits]
    if missing:
        raise EngineUnavailable(f"sglang {SGLANG_VERSION} {module} has no @triton.jit {missing}")
    need, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in need:
            continue
        need.add(n)
        todo += [c.func.id for c in ast.walk(jits[n]) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                 and c.func.id in jits and c.func.id not in need]
    fname = f"{path}"
    linecache.cache[fname] = (len(text), None, text.splitlines(True), fname)
    ns: dict[str, Any] = {"triton": triton, "tl": tl, "__name__": module}
    order = [n for n in jits if n in need]                      # file order: callees defined before callers
    mod = ast.Module(body=[jits[n] for n in order], type_ignores=[])
    exec(compile(mod, fname, "exec"), ns)
    return {n: ns[n] for n in names}


def kernel(module: str, name: str) -> tuple[Any, str]:
    """``(function, how)``: ``name`` from sglang's ``module`` by import, else compiled from its source."""
    try:
        mod = import_sglang(module)
        return getattr(mod, name), f"sglang {SGLANG_VERSION} {module}.{name} (imported)"
    except EngineUnavailable as exc:
        fn = jit_from_source(module, (name,))[name]
        return fn, f"sglang {SGLANG_VERSION} {module}.{name} (compiled from the installed file: {exc})"


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name().replace(" ", "_") if torch.cuda.is_available() else "cpu"


#: SGLang's default tile configuration of its fused-MoE kernel for block-scaled FP8 weights
#: (``fused_moe_triton_config.get_default_config``, block-wise branch), used when no tuned table exists
MOE_DEFAULT = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 32, "num_warps": 4,
               "num_stages": 3}


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def moe_config(E: int, N: int, K: int, top_k: int, M: int, block: tuple[int, int] = (128, 128)) -> tuple[dict, str]:
    """``(config, how)``: SGLang's tile configuration of its fused-MoE kernel for ``E`` experts,
    intermediate ``N`` per partition and ``M`` tokens, FP8 W8A8 block-scaled: its tuned table
    ``configs/triton_<version>/E=..,N=..,device_name=..,dtype=fp8_w8a8,block_shape=[..].json`` for this
    GPU (the installed Triton's version first, then the newest other, as ``get_moe_configs`` searches),
    else its default (:data:`MOE_DEFAULT`). ``K`` and ``top_k`` are SGLang's lookup arguments too
    (unused by the block-wise default)."""
    import triton

    try:
        root = _module_file(MOE_CONFIG_MODULE).parent / "configs"
    except EngineUnavailable as exc:
        return dict(MOE_DEFAULT), f"sglang default MoE config ({exc})"
    name = f"E={E},N={N},device_name={_device_name()},dtype=fp8_w8a8,block_shape=[{block[0]}, {block[1]}].json"
    mine = f"triton_{triton.__version__.replace('.', '_')}"
    dirs = sorted((d for d in root.glob("triton_*") if d.is_dir()),
                  key=lambda d: (d.name != mine, tuple(-x for x in _version_key(d.name[7:].replace("_", ".")))))
    for d in dirs:
        f = d / name
        if f.is_file():
            table = {int(k): v for k, v in json.loads(f.read_text()).items()}
            c = dict(table[min(table, key=lambda x: abs(x - M))])
            return {**MOE_DEFAULT, **{k: v for k, v in c.items() if k in MOE_DEFAULT}}, \
                f"sglang tuned MoE config ({d.name}/{name})"
    return dict(MOE_DEFAULT), f"sglang default MoE config (no tuned table {name})"


def block_gemm_config(N: int, K: int, M: int, block: tuple[int, int] = (128, 128)) -> tuple[dict, str]:
    """``(config, how)``: SGLang's W8A8 block-FP8 GEMM tile configuration -- its tuned JSON
    (``kernels/ops/gemm/configs/N=..,K=..,device_name=..,dtype=fp8_w8a8,block_shape=[..].json``) for
    this GPU when shipped, else the default ``get_w8a8_block_fp8_configs`` falls back to."""
    default = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": block[0], "BLOCK_SIZE_K": block[1], "GROUP_SIZE_M": 32,
               "num_warps": 4, "num_stages": 3}
    try:
        path = _module_file(GEMM_MODULE).parent / "configs" / (
            f"N={N},K={K},device_name={_device_name()},dtype=fp8_w8a8,block_shape=[{block[0]}, {block[1]}].json")
    except EngineUnavailable as exc:
        return default, f"sglang default block-FP8 config ({exc})"
    if not path.is_file():
        return default, "sglang default block-FP8 config (no tuned table for this GPU/shape)"
    table = {int(k): v for k, v in json.loads(path.read_text()).items()}
    c = dict(table[min(table, key=lambda x: abs(x - M))])
    c = {k: v for k, v in c.items() if k in default}
    if c.get("BLOCK_SIZE_K", block[1]) < block[1] and block[1] % c["BLOCK_SIZE_K"]:
        c["BLOCK_SIZE_K"] = block[1]
    return {**default, **c}, f"sglang tuned block-FP8 config ({path.name})"
