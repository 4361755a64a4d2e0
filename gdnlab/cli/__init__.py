"""Command line: ``gdnlab <command> ...`` (or ``python -m gdnlab <command> ...``).

One module per command in this package, each with ``configure_parser(parser)`` and
``run(args) -> int``. Building the parser imports the command modules but nothing heavy: they import
torch, pandas, numpy or plotly inside ``run``, and the help lists the registries' names from
:mod:`gdnlab.cli._registry`, so ``gdnlab --help`` and ``gdnlab COMMAND --help`` answer at once.
Library modules take arguments and return values; they hold no argparse code. :mod:`._args` holds
what the commands share: the one list parser, argument types, the help formatter, path checks.

Every expected failure (bad value, missing or wrong-kind file, unavailable device or backend, Ctrl-C)
ends as one line ``gdnlab COMMAND: KIND: MESSAGE`` on stderr with the exit code of
:data:`gdnlab.errors.EXIT_CODES`; ``--debug`` shows the stack trace instead. The boundary covers the
whole command, imports and parser building included: Ctrl-C at any moment is one line and exit 130.
"""
from __future__ import annotations

import argparse
import re
import sys
import traceback
from importlib import import_module

from ..errors import exit_code
from ._args import HelpFormatter

__all__ = ["COMMANDS", "ALIASES", "build_parser", "main", "error_line", "plain_text"]

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("gdnlab.cli.backends", "list kernel backends and verify strategies, and why any cannot run here"),
    "summary": ("gdnlab.cli.summary", "summarise a sweep or trace file; without one, run the reference kernel and "
                                      "check the contract's identities"),
    "sweep": ("gdnlab.cli.sweep", "time kernel calls and verify-strategy steps over B, T, accept length, state dtype"),
    "workload": ("gdnlab.cli.workload", "GDN decode-loop workload: time per step vs batch and output length"),
    "capture": ("gdnlab.cli.capture", "run a command (or gdnlab's decode-loop workload) under nsys; export SQLite"),
    "counters": ("gdnlab.cli.counters", "Nsight Compute counters of the GDN kernels (nsight-python or ncu CSV)"),
    "report": ("gdnlab.cli.report", "execute the notebooks and export self-contained HTML reports"),
    "plan": ("gdnlab.cli.plan", "one server per engine (T, strategy, state dtype, backend, flags), then per batch"),
    "predict": ("gdnlab.cli.predict", "TPOT, throughput per GPU and each part's share of a served step"),
}
#: other names of a command (kept so earlier scripts keep working)
ALIASES: dict[str, str] = {"metrics": "counters"}


def plain_text(text: str) -> str:
    """reStructuredText of a docstring as terminal text: ``:role:`x``` and ````x```` -> ``x``,
    ``Examples::`` -> ``Examples:``."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "").replace("::\n", ":\n")
    return text


def _describe(parser: argparse.ArgumentParser, module, help_: str) -> None:
    """The command's description: its one-line help plus the rest of its module docstring (the
    examples included), unless ``configure_parser`` set a description of its own; as plain text."""
    doc = (getattr(module, "__doc__", None) or "").strip()
    if parser.description == help_ and "\n\n" in doc:
        parser.description = help_ + "\n\n" + doc.split("\n\n", 1)[1]
    parser.description = plain_text(parser.description or "")
    parser.epilog = plain_text(parser.epilog) if parser.epilog else parser.epilog


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdnlab", description=plain_text(__doc__.splitlines()[0]),
                                     formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the stack trace of a failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, aliases=aliases.get(name, []),
                           formatter_class=HelpFormatter)
        p.set_defaults(_module=mod, _command=name)
        try:
            module = import_module(mod)
            module.configure_parser(p)
            _describe(p, module, help_)
        except ImportError as exc:  # a command whose optional dependency is missing still shows up
            p.set_defaults(_import_error=f"{type(exc).__name__}: {exc}")
    return parser


def _peek(argv: list[str]) -> tuple[str | None, bool]:
    """(command, --debug) read off ``argv`` before parsing, for a failure while the parser is built."""
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            name = ALIASES.get(a, a)
            return (name if name in COMMANDS else None), "--debug" in argv[:i]
    return None, "--debug" in argv


def main(argv: list[str] | None = None) -> int:
    """Run ``gdnlab ARGV``; returns the exit code (argparse's usage errors and ``--help`` exit itself)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command, debug = _peek(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command, debug = getattr(args, "_command", None), args.debug
        if not command:
            parser.print_help()
            return 2
        if getattr(args, "_import_error", None):
            return _missing_dependency(command, args._import_error)
        return int(import_module(args._module).run(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # the one error boundary of the command line
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "gdnlab" and not debug:
            return _missing_dependency(command, f"{type(exc).__name__}: {exc}")   # imported inside run()
        known = exit_code(exc)
        if known is None:
            raise
        if debug:
            traceback.print_exc()
        code, kind = known
        print(f"gdnlab{f' {command}' if command else ''}: {kind}: {error_line(exc)}", file=sys.stderr)
        return code


def _missing_dependency(command: str | None, what: str) -> int:
    """One line for a package the command needs that is not installed; exit code 3 (unavailable)."""
    print(f"gdnlab{f' {command}' if command else ''}: unavailable: a dependency is missing ({what}); install the "
          f"extras: pip install -e '.[notebooks,test]' (CPU) or '.[gpu]' (GPU machine)", file=sys.stderr)
    return 3


def error_line(exc: BaseException) -> str:
    """One line for an expected failure: the message's first line; an ``OSError`` raised by the system
    as ``PATH: REASON`` (not ``[Errno 2] ...``); Ctrl-C as what it is."""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C (what was complete is kept)"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{where}: {exc.strerror.lower()}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
