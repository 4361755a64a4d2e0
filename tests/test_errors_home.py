"""Every exception class of gdnlab is defined in :mod:`gdnlab.errors` under one of its kinds, the modules
that raise them keep their old names (re-exported), ``gdnlab.errors`` stays light, and every per-line
ruff suppression in the code carries its reason (``# noqa: BLE001 - <why>``)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gdnlab
from gdnlab import errors

REPO = Path(__file__).resolve().parents[1]

#: private control-flow signals that may live beside the code that raises and catches them
#: (qualified name -> why it is not a gdnlab error kind)
CONTROL_FLOW = {
    "gdnlab.counters.driver._Skip": "raised by _prepare and caught at once by run_plan, which records the "
                                    "configuration as skipped; it never leaves the module",
}
#: KeyboardInterrupt subclasses that are not errors.Interrupted (an Exception) on purpose
NOT_INTERRUPTED = {
    "Terminated": "SIGTERM must pass every `except Exception` (a failed sweep point is stored and the sweep "
                  "goes on) exactly as Ctrl-C does",
}
#: (old module, name): import paths that must keep working
OLD_PATHS = [
    ("gdnlab.components.sglang_kernels", "EngineUnavailable"),
    ("gdnlab.kernels._engine_import", "EngineUnavailable"),
    ("gdnlab.traces.errors", "TraceError"),
    ("gdnlab.traces.errors", "TraceDataError"),
    ("gdnlab.traces.errors", "TraceNotFoundError"),
    ("gdnlab.traces", "TraceError"),
    ("gdnlab.outputs", "OutputBusyError"),
    ("gdnlab.outputs", "Terminated"),
    ("gdnlab.counters.ncu", "NcuNotFoundError"),
    ("gdnlab.counters", "NcuNotFoundError"),
    ("gdnlab.report.notebook", "MissingData"),
    ("gdnlab.report", "MissingData"),
    ("gdnlab.report.catalog", "ReportError"),
    ("gdnlab.report", "ReportError"),
    ("gdnlab.strategies.host_sync", "HostSyncError"),
    ("gdnlab.sweep.runner", "SweepInterrupted"),
    ("gdnlab.sweep", "SweepInterrupted"),
    ("gdnlab.state", "PoolFullError"),
    ("gdnlab.instrument", "GraphCaptureError"),
    ("gdnlab.capture", "NsysNotFoundError"),
    ("gdnlab.capture", "CaptureError"),
    ("gdnlab.tools", "ToolNotFoundError"),
]


def _import_all() -> tuple[list, list[str]]:
    """Every gdnlab module that imports here, and the names of those that need what is absent (CUDA,
    FlashInfer, an engine)."""
    mods, skipped = [], []
    for info in pkgutil.walk_packages(gdnlab.__path__, "gdnlab.", onerror=skipped.append):
        if info.name.rpartition(".")[2] == "__main__":      # runs the command line when imported
            continue
        try:
            mods.append(importlib.import_module(info.name))
        except (ImportError, errors.UnavailableError):
            skipped.append(info.name)
    return mods, skipped


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


@pytest.fixture(scope="module")
def gdnlab_exceptions() -> dict[str, type]:
    """``{qualified name: class}`` of every BaseException subclass defined in a gdnlab module."""
    mods, _ = _import_all()
    found = {c for m in mods for c in vars(m).values() if inspect.isclass(c) and issubclass(c, BaseException)}
    found |= _subclasses(BaseException)                     # also classes bound nowhere at module level
    return {f"{c.__module__}.{c.__qualname__}": c for c in found if c.__module__.split(".")[0] == "gdnlab"}


def test_walk_imports_the_modules_that_define_exceptions():
    mods, _ = _import_all()
    names = {m.__name__ for m in mods}
    assert {"gdnlab.errors", "gdnlab.outputs", "gdnlab.capture", "gdnlab.counters.driver"} <= names
    assert len(names) > 50


def test_every_exception_is_defined_in_errors(gdnlab_exceptions):
    elsewhere = sorted(n for n, c in gdnlab_exceptions.items()
                       if c.__module__ != "gdnlab.errors" and n not in CONTROL_FLOW)
    assert not elsewhere, f"define these in gdnlab/errors.py (re-export them where they were): {elsewhere}"


def test_allow_list_is_private_and_current(gdnlab_exceptions):
    for name in CONTROL_FLOW:
        assert name in gdnlab_exceptions, f"{name} no longer exists: drop it from CONTROL_FLOW"
        assert name.rpartition(".")[2].startswith("_"), f"{name}: only private classes may stay outside errors"
    moved = {n.rpartition(".")[2] for n, c in gdnlab_exceptions.items() if c.__module__ == "gdnlab.errors"}
    assert set(NOT_INTERRUPTED) <= moved


def test_every_exception_has_a_kind(gdnlab_exceptions):
    for name, cls in gdnlab_exceptions.items():
        if name in CONTROL_FLOW:
            continue
        if issubclass(cls, KeyboardInterrupt):
            assert issubclass(cls, errors.Interrupted) or cls.__name__ in NOT_INTERRUPTED, name
        else:
            assert issubclass(cls, errors.GdnlabError), f"{name} is not a gdnlab.errors.GdnlabError"


def test_exported_and_named_in_the_docstring(gdnlab_exceptions):
    defined = {c.__name__ for c in gdnlab_exceptions.values() if c.__module__ == "gdnlab.errors"}
    assert defined == {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    undocumented = sorted(n for n in defined if f":class:`{n}`" not in errors.__doc__)
    assert not undocumented, f"list these under their kind in gdnlab.errors' docstring: {undocumented}"


@pytest.mark.parametrize(("module", "name"), OLD_PATHS, ids=lambda v: v)
def test_old_import_paths_give_the_one_class(module, name):
    mod = importlib.import_module(module)
    assert getattr(mod, name) is getattr(errors, name)
    if hasattr(mod, "__all__"):
        assert name in mod.__all__, f"{module}.__all__ lacks {name}"


def test_one_engine_unavailable():
    from gdnlab.components import sglang_kernels
    from gdnlab.kernels import _engine_import

    assert sglang_kernels.EngineUnavailable is _engine_import.EngineUnavailable
    with pytest.raises(_engine_import.EngineUnavailable):
        raise sglang_kernels.EngineUnavailable("sglang not installed")


@pytest.mark.parametrize(("exc", "code"), [
    (errors.EngineUnavailable("sglang not installed"), 3),
    (errors.OutputBusyError("busy"), 3),
    (errors.NsysNotFoundError("nsys not found"), 3),
    (errors.NcuNotFoundError("ncu not found"), 3),
    (errors.CaptureError("no report"), 3),
    (errors.MissingData("no sweep"), 3),
    (errors.PoolFullError("no slot"), 3),
    (errors.GraphCaptureError("no CUDA"), 3),
    (errors.TraceDataError("t.sqlite", "truncated"), 4),
    (errors.TraceNotFoundError("t.sqlite"), 5),
    (errors.SweepInterrupted("stopped"), 130),
    (errors.Terminated(), 130),
    (errors.ReportError(Path("index.html"), {"01": "boom"}), None),     # `gdnlab report` handles it: exit 1
    (errors.HostSyncError(".item(): a device sync"), None),              # a strategy's bug: the stack trace
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_kind_gives_the_exit_code(exc, code):
    got = errors.exit_code(exc)
    assert (got[0] if got else None) == code


@pytest.mark.parametrize(("cls", "builtin"), [
    (errors.TraceError, ValueError), (errors.TraceNotFoundError, FileNotFoundError),
    (errors.ToolNotFoundError, FileNotFoundError), (errors.MissingData, LookupError),
    (errors.ReportError, RuntimeError), (errors.HostSyncError, RuntimeError), (errors.PoolFullError, RuntimeError),
    (errors.GraphCaptureError, RuntimeError), (errors.Terminated, KeyboardInterrupt),
], ids=lambda v: v.__name__)
def test_builtin_bases_kept(cls, builtin):
    """Callers that catch these by their builtin base still do."""
    assert issubclass(cls, builtin)


def test_errors_imports_nothing_heavy():
    """The command line's fast path imports gdnlab.errors: only the standard library (fresh interpreter)."""
    code = ("import sys, gdnlab.errors; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'numpy', 'pandas', 'triton', 'plotly'} or (m.startswith('gdnlab.') and m != 'gdnlab.errors'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"import gdnlab.errors imported {res.stdout.strip()}"


# --------------------------------------------------------------------------------- suppressions

_WORD = "no" + "qa"                  # spelled apart so that this file's own text is not a hit
_DIRECTIVE = re.compile(rf"#\s*(?:ruff:\s*|flake8:\s*)?{_WORD}\b", re.IGNORECASE)
_WITH_REASON = re.compile(rf"#\s*(?:ruff:\s*|flake8:\s*)?{_WORD}: [A-Z]+[0-9]+(?:, ?[A-Z]+[0-9]+)* - \S.*")


def _unexplained(text: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
            if _DIRECTIVE.search(line) and not _WITH_REASON.search(line)]


def test_suppression_check_tells_bare_from_explained():
    bare, coded = "    x = 1  # " + _WORD, "import nvtx  # " + _WORD + ": F401"
    explained = "except Exception:  # " + _WORD + ": BLE001 - one failed point is stored as its row's error"
    assert [i for i, _ in _unexplained("\n".join([bare, coded, explained, "# ruff: " + _WORD]))] == [1, 2, 4]


def test_every_suppression_says_why():
    """``# noqa: BLE001 - <why>`` (any codes) in gdnlab/, scripts/, benchmarks/ and tests/."""
    hits = [f"{p.relative_to(REPO)}:{i}: {line}"
            for folder in ("gdnlab", "scripts", "benchmarks", "tests")
            for p in sorted((REPO / folder).rglob("*.py"))
            for i, line in _unexplained(p.read_text(encoding="utf-8"))]
    assert not hits, "a suppression without its reason (`# noqa: BLE001 - <why>`):\n" + "\n".join(hits)
