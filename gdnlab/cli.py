"""Command line: ``gdnlab <command> ...``.

Each command lives in its own module, which exposes ``configure_parser(parser)`` and
``run(args) -> int``; modules are imported only when their command runs (so ``gdnlab backends``
never imports plotly or papermill, and no command imports a GPU package it does not use).
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

#: command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("gdnlab.cli_backends", "list kernel backends and why any cannot run here"),
    "summary": ("gdnlab.cli_summary", "run the reference kernel on CPU/GPU and print a small summary table"),
    "sweep": ("gdnlab.sweep", "time backends over concurrency x mode x state dtype; append rows to parquet"),
    "workload": ("gdnlab.workload", "GDN decode-loop workload: time per generated token vs OSL and concurrency"),
    "capture": ("gdnlab.capture", "run a command (or gdnlab's decode-loop workload) under nsys; export SQLite"),
    "metrics": ("gdnlab.metrics", "Nsight Compute counters of the GDN kernels (nsight-python or ncu CSV)"),
    "report": ("gdnlab.report", "execute the notebooks and export self-contained HTML reports"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdnlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=mod)
        try:
            import_module(mod).configure_parser(p)
        except ImportError as exc:  # a command whose optional dependency is missing still shows up
            p.set_defaults(_import_error=f"{type(exc).__name__}: {exc}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_import_error", None):
        print(f"gdnlab {args.command}: cannot run, a dependency is missing ({args._import_error}).\n"
              f"Install the extras: pip install -e '.[notebooks,test]' (CPU) or '.[gpu]' (GPU machine).",
              file=sys.stderr)
        return 2
    try:
        return int(import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"gdnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gdnlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
