"""Import a serving engine's own GDN modules from its installed package, without starting the engine.

SGLang's and vLLM's GDN kernels live deep inside their packages (``sglang.kernels.ops...``,
``vllm.third_party.flash_linear_attention.ops...``). Importing them the usual way runs the top-level
``sglang/__init__.py`` / ``vllm/__init__.py`` first, which pulls in the whole server (tokenizers, HTTP
stack, model registry). :func:`load` instead registers a *bare* package module for the engine (its
``__path__`` pointing at the installed package directory, nothing executed) and imports only the
requested submodule and what that submodule itself imports. The engine's code is used as installed:
nothing of it is copied into gdnlab. A process that later imports the full engine gets the bare
package object (its submodules import normally; ``sglang.__version__`` and friends are absent).

:func:`check` says whether an engine is installed at the version gdnlab's engine backends were read
against (:data:`gdnlab.engines.ENGINE_VERSIONS`), and :func:`load_symbols` turns every failure into
one line: the package missing, a different version, a dependency the module needs (``pip install
msgspec``), a symbol that moved. Nothing here imports torch-free callers into trouble: importing this
module imports neither engine.

Triton's CPU interpreter (``TRITON_INTERPRET=1``) patches ``tl.*`` only where a kernel reaches it as
an attribute of ``triton.language``; a module-level alias such as fla's ``exp = tl.exp``
(``sglang/kernels/ops/attention/fla/op.py``) stays the compiled builtin and fails there.
:func:`interpreter_aliases` rebinds such aliases, in the interpreter only, to a call of the same
``tl`` function by name (the same maths; on a GPU nothing is touched). Triton 3.8's interpreter also
multiplies ``tl.dot`` operands of dtype bfloat16 as their raw 16-bit patterns (it widens only fp8
operands, ``triton/runtime/interpreter.py`` ``InterpreterBuilder.create_dot``), which SGLang's ReplaySSM
kernels hit; :func:`interpreter_bf16_dot` widens bf16 operands to float32 first (exact: a bf16 value
is a float32 with a zero low half; the GPU's tensor cores accumulate bf16 products in float32 too).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib import metadata
from types import ModuleType

from ..engines import ENGINE_VERSIONS
from ..errors import EngineUnavailable

__all__ = ["EngineUnavailable", "installed_version", "check", "load", "load_symbols", "interpreter_aliases",
           "INSTALL_HINT", "interpreter_bf16_dot"]

#: how to install an engine's pinned version for gdnlab (see README "Engine backends")
INSTALL_HINT: dict[str, str] = {
    "sglang": "bash scripts/install_engines_cpu.sh (or pip install --no-deps sglang==0.5.23 plus its light deps)",
    "vllm": "pip install --no-deps vllm==0.33.0 (or GPU_ENGINES=1 bash scripts/build_gpu_bundle.sh)",
}


def _spec(engine: str):
    try:
        return importlib.util.find_spec(engine)
    except (ImportError, ValueError):
        return None


def installed_version(engine: str) -> str | None:
    """The installed version of ``engine`` (distribution metadata, else its ``_version.py``), or
    ``None`` when the package is not importable."""
    if _spec(engine) is None and engine not in sys.modules:
        return None
    try:
        return metadata.version(engine)
    except metadata.PackageNotFoundError:
        pass
    try:
        _bare(engine)
        return str(importlib.import_module(f"{engine}._version").__version__)
    except Exception:  # noqa: BLE001 - an unreadable version file is "version unknown"
        return "unknown"


def check(engine: str) -> tuple[bool, str]:
    """``(True, "sglang 0.5.23")`` when ``engine`` is installed at the pinned version, else
    ``(False, reason)``."""
    want = ENGINE_VERSIONS[engine]
    have = installed_version(engine)
    if have is None:
        return False, f"{engine} not installed (gdnlab's engine backends need {engine}=={want}: {INSTALL_HINT[engine]})"
    if have != want:
        return False, (f"{engine} {have} installed, but gdnlab's {engine} backends were read against {engine} "
                       f"{want} (kernel signatures differ between releases): install {engine}=={want}")
    return True, f"{engine} {have}"


def _bare(engine: str) -> ModuleType:
    """The engine's top-level package, registered without running its ``__init__.py``."""
    mod = sys.modules.get(engine)
    if mod is not None:
        return mod
    spec = _spec(engine)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"{engine} not installed")
    mod = ModuleType(engine, f"{engine} (bare package registered by gdnlab: __init__.py not run)")
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__package__ = engine
    mod.__spec__ = spec
    mod.__file__ = spec.origin
    sys.modules[engine] = mod
    return mod


def load(engine: str, module: str) -> ModuleType:
    """Import ``module`` (a submodule of ``engine``) through the bare package; raises
    :class:`EngineUnavailable` with the reason (missing dependency named) on any failure."""
    ok, why = check(engine)
    if not ok:
        raise EngineUnavailable(why)
    _bare(engine)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        name = exc.name or str(exc)
        missing = name.split(".")[0]
        if missing == engine and name != module and not module.startswith(f"{name}."):
            hint = (" (vLLM's CUDA platform imports its compiled library; the GPU bundle carries it with "
                    "GPU_VLLM_C=1)" if name.startswith("vllm._C") else "")
            raise EngineUnavailable(f"importing {module} needs {name}, absent from this {engine} install"
                                    f"{hint}") from exc
        if missing == engine:
            raise EngineUnavailable(f"{module} is not in {engine} {ENGINE_VERSIONS[engine]} ({exc})") from exc
        raise EngineUnavailable(f"importing {module} needs the package {missing!r}, not installed here "
                                f"({INSTALL_HINT[engine]})") from exc
    except Exception as exc:  # any import-time failure of engine code is the reason (re-raised)
        raise EngineUnavailable(f"importing {module} failed: {type(exc).__name__}: {exc}") from exc


def load_symbols(engine: str, module: str, *names: str) -> tuple:
    """``getattr(load(engine, module), name)`` for each name; :class:`EngineUnavailable` naming the
    first missing one."""
    mod = load(engine, module)
    out = []
    for name in names:
        if not hasattr(mod, name):
            raise EngineUnavailable(f"{engine} {ENGINE_VERSIONS[engine]}: {module} has no {name!r}")
        out.append(getattr(mod, name))
    return tuple(out)


def interpreter_aliases(module: ModuleType) -> list[str]:
    """In Triton's interpreter, rebind ``module``'s globals that are aliases of ``triton.language``
    builtins (``exp = tl.exp``) to a by-name call of the same function, which the interpreter
    patches; returns the names rebound (idempotent). Call only when ``TRITON_INTERPRET=1``."""
    import triton.language as tl

    done = getattr(module, "__gdnlab_interpreter_aliases__", None)
    if done is not None:
        return list(done)
    rebound = []
    for name, value in list(vars(module).items()):
        if not tl.core.is_builtin(value):
            continue
        for ns in (tl, tl.math):
            hits = [n for n, m in inspect.getmembers(ns) if m is value]
            if hits:
                setattr(module, name, _by_name(ns, hits[0]))
                rebound.append(name)
                break
    module.__gdnlab_interpreter_aliases__ = tuple(rebound)
    return rebound


def _by_name(ns: ModuleType, name: str):
    def call(*args, **kwargs):
        return getattr(ns, name)(*args, **kwargs)

    call.__name__ = name
    return call


def interpreter_bf16_dot() -> bool:
    """Patch Triton's interpreter (only) so ``tl.dot`` widens bfloat16 operands to float32 (module
    docstring); idempotent. Returns whether the patch is in place."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter as interp

    builder = interp.InterpreterBuilder
    if getattr(builder.create_dot, "__gdnlab_bf16__", False):
        return True
    original = builder.create_dot

    def widen(h):
        if h.dtype == tl.bfloat16:
            return interp.TensorHandle((h.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    create_dot.__gdnlab_bf16__ = True
    builder.create_dot = create_dot
    return True
