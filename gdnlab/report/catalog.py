"""The report's notebooks, their declared parameters and the result of running one.

* :data:`NOTEBOOKS`, :func:`notebooks_dir`, :func:`notebook_path`, :func:`resolve_notebooks`: which
  notebooks a build runs (stem, number or part of a name).
* :class:`Parameter`, :func:`declared_parameters`, :func:`check_parameters`: the parameters cell of
  each notebook, read with :mod:`ast`; a name no selected notebook declares, a value of the wrong type
  or one below a stated bound is an :class:`~gdnlab.errors.InputError` before anything runs.
* :class:`NotebookResult`, :class:`ReportError`: what a build returns; :func:`earlier_results` and
  :func:`merge_results`: a build's index lists the notebooks of earlier builds into the same folder
  whose pages are still there, and names the earlier good page that a failed re-run left in place.
"""
from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError, ReportError
from .notebook import REPO_ROOT

__all__ = ["NOTEBOOKS", "ReportError", "NotebookResult", "Parameter", "notebooks_dir", "notebook_path",
           "resolve_notebooks", "declared_parameters", "notebook_parameters", "check_parameters", "earlier_results",
           "merge_results", "keeps_earlier_page", "FAILED_SUFFIX"]

#: The notebooks of the report, in order (file stems under ``notebooks/``).
NOTEBOOKS: tuple[str, ...] = ("01_kernel_sweep", "02_nsight_traces", "03_acceptance_length")

#: a failed re-run's page goes to ``NAME.failed.html`` while the earlier good ``NAME.html`` stays
FAILED_SUFFIX = ".failed"


@dataclass
class NotebookResult:
    """Outcome of one notebook: paths are relative to the report folder; ``seconds`` is the
    wall time of execution + export (s); ``interrupted``: stopped by Ctrl-C or SIGTERM (or never
    started). ``built``: when the build that made it started (UTC, ISO 8601); ``carried``: listed
    from an earlier build (this build did not run it); ``earlier``: for a failed run, the earlier
    good page kept in place (``{"html", "ipynb", "built", "ok"}``)."""

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
    built: str | None = None
    carried: bool = False
    earlier: dict[str, Any] | None = None


def earlier_results(folder: Path) -> list[NotebookResult]:
    """The notebooks ``folder/report.json`` lists (an earlier build), as results; ``[]`` when there is
    none or it cannot be read (a damaged manifest only loses the earlier index entries, no page)."""
    try:
        data = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
        entries, built = data["notebooks"], data.get("meta", {}).get("built")
        names = {f.name for f in fields(NotebookResult)}
        out = []
        for e in entries:
            kw = {k: v for k, v in e.items() if k in names}
            kw.setdefault("built", built)
            out.append(NotebookResult(**{"source": "", "seconds": 0.0, **kw}))
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _page_exists(folder: Path, name: str | None) -> bool:
    return bool(name) and (folder / str(name)).is_file()


def merge_results(folder: Path, earlier: Sequence[NotebookResult],
                  results: Sequence[NotebookResult]) -> list[NotebookResult]:
    """This build's ``results`` merged into the ``earlier`` build's list (its order kept, new notebooks
    appended): an earlier notebook this build did not run stays listed while its page exists; a
    notebook that failed now, where the earlier build had a good page, names that page (``earlier``)."""
    now = {r.name: r for r in results}
    merged: list[NotebookResult] = []
    for e in earlier:
        if e.name in now:
            r = now.pop(e.name)
            if not r.ok and e.ok and e.html == f"{e.name}.html" and _page_exists(folder, e.html):
                r.earlier = {"html": e.html, "ipynb": e.ipynb, "built": e.built, "ok": True}
            elif not r.ok and e.earlier and _page_exists(folder, e.earlier.get("html")):
                r.earlier = e.earlier
            merged.append(r)
        elif _page_exists(folder, e.html):
            e.carried = True
            merged.append(e)
    return merged + [r for r in results if r.name in now]


def keeps_earlier_page(folder: Path, earlier: Sequence[NotebookResult], name: str) -> bool:
    """Whether ``folder`` holds a good page of notebook ``name`` from an earlier build (a failed re-run
    then writes its page beside it, as ``NAME.failed.html``)."""
    return any(e.name == name and (e.ok or e.earlier) and _page_exists(folder, f"{name}.html") for e in earlier)


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
