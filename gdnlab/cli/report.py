"""``gdnlab report``: execute the notebooks and export HTML pages that open offline.

The command parses options and calls :func:`gdnlab.report.build_report`; the work and its checks
(parameters, report folder, Ctrl-C) live there. Prints one line per finished notebook (stderr), a
progress line below them on a terminal (``--no-progress``: none), and the index path (stdout).
Exit 0 when every notebook ran, 1 when some failed (the partial report is kept), 2 for bad input,
130 after Ctrl-C (pages already built and the index are kept).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..report import NOTEBOOKS, ReportError, build_report, notebook_parameters, notebook_path, resolve_notebooks
from ._args import list_option, option, positive_float, positive_int
from ._progress import progress_bar, progress_on

__all__ = ["EXAMPLES", "configure_parser", "run", "parse_parameter", "parameters_of"]

#: Examples shown by ``gdnlab report --help`` (each one is checked by the tests against the notebooks).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("gdnlab report --out reports", "all notebooks on the shipped data"),
    ("gdnlab report --notebook 02 -p max_kernels=2000 --hide-code", "one notebook, a parameter, outputs only"),
    ("gdnlab report -p sweep_path=traces/h100/sweep.parquet", "every notebook that reads a sweep reads this one"),
    ("gdnlab report -p 02.max_kernels=1000", "a parameter for one notebook (NOTEBOOK.NAME=VALUE)"),
    ("gdnlab report --notebook 01 -p live=true -p batches=[1,4,16]", "measure a fresh sweep (GPU machine)"),
    ("gdnlab report --list", "the notebooks and their parameters"),
)


def parse_parameter(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` or ``NOTEBOOK.NAME=VALUE``; VALUE is JSON (``true``, ``3``, ``[1,4]``) or a plain string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"-p/--parameter wants NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    k = k.strip()
    name = k.rsplit(".", 1)[-1]
    if not name.isidentifier() or ("." in k and not k.split(".", 1)[0]):
        raise argparse.ArgumentTypeError(f"-p/--parameter: {k!r} is not a parameter name (NAME or NOTEBOOK.NAME)")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        words = {"true": True, "false": False, "none": None, "null": None}
        return k, words.get(v.strip().lower(), v)


def parameters_of(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """``-p`` pairs as :func:`build_report`'s ``parameters``: ``NOTEBOOK.NAME`` goes under that
    notebook's stem (``02`` -> ``02_nsight_traces``)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if "." in k:
            nb, name = k.rsplit(".", 1)
            out.setdefault(notebook_path(nb).stem, {})[name] = v
        else:
            out[k] = v
    return out or None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``gdnlab report [--out DIR] [--hide-code] [--notebook NAME ...] [-p [NOTEBOOK.]NAME=VALUE ...]``."""
    width = max(len(cmd) for cmd, _ in EXAMPLES)
    parser.epilog = "examples:\n" + "\n".join(f"  {cmd:<{width}}  # {why}" for cmd, why in EXAMPLES)
    parser.add_argument("--out", default="reports",
                        help="report folder: new, empty or an earlier report (reports/ is git-ignored)")
    parser.add_argument("--hide-code", action="store_true", help="HTML without code cells (outputs only)")
    list_option(parser, "--notebook", "-n", metavar="NAME", spaces=True, default=None, valid=NOTEBOOKS,
                shown_default="all", help="notebooks to run (stem, number or part of a name)")
    parser.add_argument("-p", "--parameter", action="append", type=parse_parameter, default=[],
                        metavar="[NOTEBOOK.]NAME=VALUE",
                        help="papermill parameter for every notebook that declares it (or for NOTEBOOK only); "
                             "VALUE is JSON (true, 3, [1,4], \"x\") or a plain string; checked against the "
                             "notebooks' declarations before anything runs (see --list)")
    option(parser, "--kernel", default=None, help="Jupyter kernel name", shown_default="one running this Python")
    parser.add_argument("--timeout", type=positive_float, default=600.0, help="limit per notebook cell, s")
    option(parser, "--jobs", "-j", type=positive_int, default=None, shown_default="one per CPU core",
           help="notebooks run at once, each in its own kernel")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="let the notebooks load sweeps that mix GPUs or git commits (labelled in the index) "
                             "instead of refusing them")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr (there is none when stderr is not a terminal); the line "
                             "per finished notebook stays")


def _build_with_progress(args: argparse.Namespace, kwargs: dict[str, Any]):
    """:func:`build_report` under a progress line of notebooks done; the line per finished notebook
    is written above it."""
    with progress_bar(args, total=len(resolve_notebooks(args.notebook)), desc="gdnlab report",
                      unit="notebooks") as bar:
        def log(line: str) -> None:          # build_report calls it once per finished notebook
            bar.write(line, file=sys.stderr)
            bar.update()

        return build_report(**kwargs, log=log)


def run(args: argparse.Namespace) -> int:
    """Build the report; 0 when every notebook ran, 1 when some failed (partial report kept)."""
    if getattr(args, "list", False):
        for p in resolve_notebooks(args.notebook):
            params = notebook_parameters(p)
            print(f"{p.stem}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    kwargs = dict(out_dir=args.out, notebooks=args.notebook, hide_code=args.hide_code,
                  parameters=parameters_of(args.parameter), kernel_name=args.kernel, timeout=args.timeout,
                  jobs=args.jobs, **({"allow_mixed": True} if args.allow_mixed else {}))
    try:
        index = _build_with_progress(args, kwargs) if progress_on(args) else build_report(**kwargs)
    except ReportError as exc:
        print(f"gdnlab report: failed: {', '.join(exc.failed)}; partial report: {exc.index}", file=sys.stderr)
        for k, v in exc.failed.items():
            print(f"  {k}: {v}", file=sys.stderr)
        return 1
    print(index)
    return 0
