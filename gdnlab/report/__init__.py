"""Notebooks → HTML reports that open offline, and the helpers the notebooks call.

* :mod:`.notebook`: what a notebook cell calls — :func:`setup`, :func:`load`, :func:`note`,
  :func:`show`, :func:`table`, :func:`record`, :func:`call`, :func:`missing`, :func:`cuda_ready`; tables
  go through :mod:`.tables` (units in headers, readable numbers); missing data becomes a message in
  the page, and each data source's status comes from its own metadata.
* :mod:`.build`: :func:`build_report` (the ``gdnlab report`` command, :mod:`gdnlab.cli.report`)
  checks parameters and the report folder, executes the notebooks with papermill (Ctrl-C keeps
  what was built) and collects the results;
* :mod:`.html`: pages exported with nbconvert, ``index.html`` from ``templates/index.html.j2``, one
  shared ``plotly.min.js`` per report folder.

The report never measures anything: a notebook that measures (``live=True``) calls the sweep API itself.
Importing this package is cheap (the heavy imports happen inside the functions).
"""
from .build import (
    NOTEBOOKS,
    PLOTLY_JS,
    NotebookResult,
    Parameter,
    ReportError,
    build_report,
    check_parameters,
    declared_parameters,
    ensure_kernel,
    execute_notebook,
    export_html,
    notebook_parameters,
    notebook_path,
    notebooks_dir,
    resolve_notebooks,
    write_index,
)
from .notebook import (
    RENDERER,
    REPO_ROOT,
    SOURCE_MIME,
    Missing,
    MissingData,
    call,
    concat_available,
    cuda_ready,
    data_status,
    describe,
    load,
    missing,
    note,
    record,
    resolve_path,
    setup,
    show,
    table,
)

__all__ = [
    # building
    "NOTEBOOKS", "PLOTLY_JS", "REPO_ROOT", "ReportError", "NotebookResult", "Parameter", "build_report",
    "check_parameters", "declared_parameters", "execute_notebook", "export_html", "ensure_kernel", "notebook_path",
    "notebooks_dir", "resolve_notebooks", "notebook_parameters", "write_index",
    # notebook side
    "Missing", "MissingData", "setup", "resolve_path", "missing", "load", "call", "show", "table", "note", "record",
    "cuda_ready",
    "concat_available", "data_status", "describe", "SOURCE_MIME", "RENDERER",
]
