"""HTML of a report: notebook pages (nbconvert, ``templates/nbconvert/page.html.j2``), the index page
(jinja2, ``templates/index.html.j2``) and the one ``plotly.min.js`` the pages share.

Figures are stored in executed notebooks once, as the plotly mimetype; :func:`export_html` turns each into
a div and a ``Plotly.newPlot`` call that uses the ``plotly.min.js`` next to the page (plotly's own bundle,
copied by :func:`copy_plotlyjs`), so every page opens offline and no page carries its own plotly.js.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .notebook import SOURCE_MIME, figure_html

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import NotebookResult

__all__ = ["PLOTLY_JS", "TEMPLATES", "export_html", "copy_plotlyjs", "write_index"]

#: The shared plotly bundle's file name in a report folder (referenced by every page).
PLOTLY_JS = "plotly.min.js"

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _json_safe(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))



def _template_dirs() -> list[str]:
    """Folders holding nbconvert's own templates (``lab``, ``base``) that Jupyter's search path may
    miss: nbconvert installs them under its *installation* prefix (``share/jupyter/nbconvert/
    templates``), which is not on the path of a venv made with ``--system-site-packages`` or of a
    ``pip install --user``. Only folders that exist are returned."""
    import nbconvert

    pkg = Path(nbconvert.__file__).resolve().parent
    cands = [pkg.parents[2] / "share/jupyter/nbconvert/templates",   # <prefix>/lib/pythonX.Y/site-packages
             pkg.parents[3] / "share/jupyter/nbconvert/templates",
             Path(sys.prefix) / "share/jupyter/nbconvert/templates",
             Path(sys.base_prefix) / "share/jupyter/nbconvert/templates"]
    out: list[str] = []
    for c in cands:
        if (c / "lab").is_dir() and str(c) not in out:
            out.append(str(c))
    return out


def copy_plotlyjs(folder: Path) -> Path:
    """Put plotly's bundled ``plotly.min.js`` (from the installed plotly package) in ``folder`` once."""
    import plotly

    src = Path(plotly.__file__).resolve().parent / "package_data" / PLOTLY_JS
    dst = Path(folder) / PLOTLY_JS
    if not (dst.exists() and dst.stat().st_size == src.stat().st_size):
        tmp = dst.with_name(f".{PLOTLY_JS}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst


def _figures_to_html(nb) -> bool:
    """Turn each stored figure (plotly mimetype) into an HTML div + ``Plotly.newPlot`` call, in place;
    whether the notebook has a figure at all."""
    has_plot = False
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _PLOTLY_MIME in data:
                data["text/html"] = figure_html(dict(data.pop(_PLOTLY_MIME)))
                has_plot = True
            elif "plotly-graph-div" in str(data.get("text/html", "")):
                has_plot = True
    return has_plot


def export_html(ipynb: Path, html_path: Path, *, hide_code: bool = False, banner: str = "") -> Path:
    """Export an (executed) notebook to one HTML page that opens offline (images embedded, no CDN).

    ``hide_code`` drops code cells' inputs and prompts (nbconvert ``exclude_input``), keeping outputs.
    ``banner`` is trusted HTML shown above the notebook (the report's navigation line). A page with a
    figure loads ``plotly.min.js`` from its own folder (copied there by :func:`copy_plotlyjs`).
    """
    import nbformat
    from jinja2 import FileSystemLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    # A failed papermill run leaves its error banner cell; keep it (it says where it stopped).
    title = next((ln.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                  for ln in c.source.splitlines() if ln.startswith("# ")), ipynb.stem)
    nb.metadata["title"] = title
    has_plot = _figures_to_html(nb)
    roots = _template_dirs()
    exporter = HTMLExporter(template_name="lab", extra_template_basedirs=roots,
                            extra_loaders=[FileSystemLoader([str(TEMPLATES / "nbconvert"), *roots])],
                            template_file="page.html.j2", embed_images=True,
                            exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code)
    exporter.log.setLevel(logging.ERROR)
    resources = {"gdnlab_banner": banner, "gdnlab_plotlyjs": PLOTLY_JS if has_plot else ""}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    if has_plot:
        copy_plotlyjs(html_path.parent)
    tmp = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, html_path)
    return html_path


def _collect_sources(ipynb: Path) -> list[dict]:
    """The :data:`~gdnlab.report.notebook.SOURCE_MIME` records a notebook displayed."""
    import nbformat

    try:
        nb = nbformat.read(str(ipynb), as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable output notebook just has no sources
        return []
    recs = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            rec = out.get("data", {}).get(SOURCE_MIME)
            if isinstance(rec, Mapping) and rec not in recs:
                recs.append(dict(rec))
    return recs


def _jinja():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def _banner(meta: Mapping[str, Any], res: NotebookResult | None = None) -> str:
    return _jinja().get_template("banner.html.j2").render(meta=meta, res=res)


def write_index(out: Path, results: Sequence[NotebookResult], meta: Mapping[str, Any]) -> Path:
    """Write ``index.html`` (templates/index.html.j2) and ``report.json`` (the same as data) into ``out``."""
    from markupsafe import Markup

    from .notebook import inline_code

    env = _jinja()
    env.filters["code"] = lambda s: Markup(inline_code(str(s)))
    page = env.get_template("index.html.j2").render(results=[asdict(r) for r in results], meta=meta,
                                                    n_ok=sum(r.ok for r in results))
    index = out / "index.html"
    _write_text(index, page)
    manifest = {"meta": dict(meta), "notebooks": [asdict(r) for r in results]}
    _write_text(out / "report.json", json.dumps(_json_safe(manifest), indent=2))
    return index


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
