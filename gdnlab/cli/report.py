"""``gdnlab report``: execute the notebooks and export HTML pages that open offline.

The command parses options and calls :func:`gdnlab.report.build_report`; the work and its checks
(parameters, report folder, Ctrl-C) live there. Prints one progress line per notebook (stderr) and
the index path (stdout); exit 0 when every notebook ran, 1 when some failed (the partial report is
kept), 2 for bad input, 130 after Ctrl-C (pages already built and the index are kept).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..report import NOTEBOOKS, ReportError, build_report, notebook_parameters, notebook_path, resolve_notebooks

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


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return x


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``gdnlab report [--out DIR] [--hide-code] [--notebook NAME ...] [-p [NOTEBOOK.]NAME=VALUE ...]``."""
    width = max(len(cmd) for cmd, _ in EXAMPLES)
    parser.epilog = "examples:\n" + "\n".join(f"  {cmd:<{width}}  # {why}" for cmd, why in EXAMPLES)
    parser.add_argument("--out", default="reports",
                        help="report folder: new, empty or an earlier report (git-ignored reports/ by default)")
    parser.add_argument("--hide-code", action="store_true", help="HTML without code cells (outputs only)")
    parser.add_argument("--notebook", "-n", nargs="+", action="extend", metavar="NAME",
                        help="notebooks to run (stem, number or part of a name); default: all of "
                             + ", ".join(NOTEBOOKS))
    parser.add_argument("-p", "--parameter", action="append", type=parse_parameter, default=[],
                        metavar="[NOTEBOOK.]NAME=VALUE",
                        help="papermill parameter for every notebook that declares it (or for NOTEBOOK only); "
                             "VALUE is JSON (true, 3, [1,4], \"x\") or a plain string; checked against the "
                             "notebooks' declarations before anything runs (see --list)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: one running this Python)")
    parser.add_argument("--timeout", type=_positive_float, default=600.0, help="limit per notebook cell, s")
    parser.add_argument("--jobs", "-j", type=_positive_int, default=None,
                        help="notebooks run at once, each in its own kernel (default: one per CPU core)")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="let the notebooks load sweeps that mix GPUs or git commits (labelled in the index) "
                             "instead of refusing them")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")


def run(args: argparse.Namespace) -> int:
    """Build the report; 0 when every notebook ran, 1 when some failed (partial report kept)."""
    if getattr(args, "list", False):
        for p in resolve_notebooks(args.notebook):
            params = notebook_parameters(p)
            print(f"{p.stem}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    try:
        index = build_report(out_dir=args.out, notebooks=args.notebook, hide_code=args.hide_code,
                             parameters=parameters_of(args.parameter), kernel_name=args.kernel,
                             timeout=args.timeout, jobs=args.jobs,
                             **({"allow_mixed": True} if getattr(args, "allow_mixed", False) else {}))
    except ReportError as exc:
        print(f"gdnlab report: failed: {', '.join(exc.failed)}; partial report: {exc.index}", file=sys.stderr)
        for k, v in exc.failed.items():
            print(f"  {k}: {v}", file=sys.stderr)
        return 1
    print(index)
    return 0
