"""The report's notebooks, their declared parameters and the result of running one.

* :data:`NOTEBOOKS`, :func:`notebooks_dir`, :func:`notebook_path`, :func:`resolve_notebooks`: which
  notebooks a build runs (stem, number or part of a name).
* :class:`Parameter`, :func:`declared_parameters`, :func:`check_parameters`: the parameters cell of
  each notebook, read with :mod:`ast`; a name no selected notebook declares, a value of the wrong type
  or one below a stated bound is an :class:`~gdnlab.errors.InputError` before anything runs.
* :class:`NotebookResult`, :class:`ReportError`: what a build returns.
"""
from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .notebook import REPO_ROOT

__all__ = ["NOTEBOOKS", "ReportError", "NotebookResult", "Parameter", "notebooks_dir", "notebook_path",
           "resolve_notebooks", "declared_parameters", "notebook_parameters", "check_parameters"]

#: The notebooks of the report, in order (file stems under ``notebooks/``).
NOTEBOOKS: tuple[str, ...] = ("01_kernel_sweep", "02_nsight_traces", "03_acceptance_length")



class ReportError(RuntimeError):
    """Some notebooks failed. The report was still written: ``index`` is its index page and
    ``failed`` maps each failed notebook to its error line."""

    def __init__(self, index: Path, failed: Mapping[str, str]) -> None:
        self.index = Path(index)
        self.failed = dict(failed)
        lines = "; ".join(f"{k}: {v}" for k, v in self.failed.items())
        super().__init__(f"{len(self.failed)} notebook(s) failed ({lines}); partial report at {self.index}")


@dataclass
class NotebookResult:
    """Outcome of one notebook: paths are relative to the report folder; ``seconds`` is the
    wall time of execution + export (s); ``interrupted``: stopped by Ctrl-C (or never started)."""

    name: str
    source: str
    ok: bool
    seconds: float
    ipynb: str | None = None
    html: str | None = None
    error: str | None = None
    interrupted: bool = False
    sources: list[dict] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Notebooks and their parameters
# ---------------------------------------------------------------------------------------------

def notebooks_dir() -> Path:
    """``notebooks/`` of the checkout (or of the current directory when gdnlab is installed)."""
    for cand in (REPO_ROOT / "notebooks", Path.cwd() / "notebooks"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"no notebooks/ folder under {REPO_ROOT} or {Path.cwd()}")


def notebook_path(name: str | os.PathLike) -> Path:
    """The ``.ipynb`` for a name: a path, a stem (``01_kernel_sweep``), a number (``01``/``1``) or
    a unique part of a stem (``traces``). Raises ``ValueError`` naming ``notebooks`` otherwise."""
    s = str(name)
    p = Path(s)
    if p.suffix == ".ipynb" and p.exists():
        return p.resolve()
    folder = notebooks_dir()
    known = sorted(q.stem for q in folder.glob("*.ipynb"))
    stem = p.stem if p.suffix == ".ipynb" else s
    if stem in known:
        return folder / f"{stem}.ipynb"
    if stem.isdigit():
        hits = [k for k in known if k.split("_", 1)[0].isdigit() and int(k.split("_", 1)[0]) == int(stem)]
    else:
        hits = [k for k in known if stem.lower() in k.lower()]
    if len(hits) == 1:
        return folder / f"{hits[0]}.ipynb"
    why = "matches several" if hits else "matches none"
    raise InputError(f"notebooks: {s!r} {why} of {known}")


def resolve_notebooks(names: Iterable[str | os.PathLike] | str | None) -> list[Path]:
    """Paths of the notebooks to run: all of :data:`NOTEBOOKS` (that exist) when ``names`` is None."""
    if names is None:
        folder = notebooks_dir()
        found = [folder / f"{n}.ipynb" for n in NOTEBOOKS if (folder / f"{n}.ipynb").exists()]
        if not found:
            raise FileNotFoundError(f"none of {NOTEBOOKS} in {folder}")
        return found
    if isinstance(names, (str, os.PathLike)):
        names = [names]
    out: list[Path] = []
    for n in names:
        p = notebook_path(n)
        if p not in out:
            out.append(p)
    if not out:
        raise InputError("notebooks: empty list")
    return out


@dataclass(frozen=True)
class Parameter:
    """One declaration of a notebook's ``parameters`` cell: name, default (source text), the comment,
    and the bound the comment states (``# at least 1: ...``; applied to every item of a list)."""

    name: str
    default: str
    help: str = ""

    @property
    def value(self) -> Any:
        try:
            return ast.literal_eval(self.default)
        except (ValueError, SyntaxError):
            return None

    @property
    def at_least(self) -> float | None:
        m = re.match(r"\s*at least (-?\d+(?:\.\d+)?)", self.help)
        return float(m.group(1)) if m else None

    def check(self, value: Any, where: str) -> None:
        """Raise :class:`InputError` when ``value`` does not fit this declaration."""
        default = self.value
        what = f"parameter {self.name}={value!r} ({where})"
        if value is None:
            if default is not None:
                raise InputError(f"{what}: a value is needed (default {self.default})")
            return
        if default is None:
            return
        items, kinds = [value], [default]
        if isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                raise InputError(f"{what}: expects a list like {self.default}")
            items, kinds = list(value), [default[0]] if default else []
        for item in items:
            for kind in kinds:
                _check_type(item, kind, what, self.default)
            bound = self.at_least
            if bound is not None and isinstance(item, (int, float)) and not isinstance(item, bool) and item < bound:
                raise InputError(f"{what}: must be at least {bound:g} ({self.help})")


def _check_type(item: Any, kind: Any, what: str, default: str) -> None:
    if isinstance(kind, bool):
        ok = isinstance(item, bool)
    elif isinstance(kind, int):
        ok = isinstance(item, int) and not isinstance(item, bool)
    elif isinstance(kind, float):
        ok = isinstance(item, (int, float)) and not isinstance(item, bool) and item == item
    elif isinstance(kind, str):
        ok = isinstance(item, str)
    else:
        ok = True
    if not ok:
        raise InputError(f"{what}: expects {type(kind).__name__} (like {default}), got {type(item).__name__}")


def declared_parameters(path: str | os.PathLike) -> dict[str, Parameter]:
    """The parameters a notebook declares in its ``parameters``-tagged cell, by name."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(path), as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    return {p.name: Parameter(p.name, p.default, p.help or "") for p in PythonTranslator.inspect(cell)}


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Parameters a notebook declares in its ``parameters`` cell: ``{name: default (source text)}``."""
    return {k: p.default for k, p in declared_parameters(path).items()}


def _split_parameters(parameters: Mapping[str, Any] | None, stems: Sequence[str]) -> tuple[dict, dict]:
    """``parameters`` may hold plain values (for every notebook that declares them) and, under a
    notebook stem, a dict for that notebook only."""
    common: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for k, v in (parameters or {}).items():
        if k in stems:
            if not isinstance(v, Mapping):
                raise InputError(f"parameters[{k!r}] must be a dict of that notebook's parameters")
            per[k] = dict(v)
        else:
            common[k] = v
    return common, per


def check_parameters(paths: Sequence[Path], parameters: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The parameters each notebook gets (``{stem: {name: value}}``), checked against the declarations.

    A plain key goes to every notebook that declares it; a key that is a notebook stem holds a dict for
    that notebook alone. Raises :class:`InputError` for a key no selected notebook declares, a value of
    the wrong type or one below its stated bound."""
    if parameters is not None and not isinstance(parameters, Mapping):
        raise InputError(f"parameters must be a dict, got {type(parameters).__name__}")
    stems = [p.stem for p in paths]
    common, per = _split_parameters(parameters, stems)
    declared = {p.stem: declared_parameters(p) for p in paths}
    unknown = [k for k in common if not any(k in d for d in declared.values())]
    unknown += [f"{s}.{k}" for s, d in per.items() for k in d if k not in declared[s]]
    if unknown:
        raise InputError(f"parameters: {unknown} not declared by any selected notebook; declared: "
                         f"{ {s: sorted(d) for s, d in declared.items()} }")
    out = {}
    for s in stems:
        mine = {k: v for k, v in common.items() if k in declared[s]} | per.get(s, {})
        for k, v in mine.items():
            declared[s][k].check(v, s)
        out[s] = mine
    return out
