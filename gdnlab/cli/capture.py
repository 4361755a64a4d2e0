"""``gdnlab capture``: run a command (or gdnlab's decode-loop workload) under nsys; export SQLite.

``gdnlab capture [--out PATH] [options] (--workload WORKLOAD-ARGS... | -- CMD ...)``

Everything after ``--workload`` goes to ``gdnlab workload`` (``--capture-steps 8`` is added unless
given), except this command's own options, which may appear anywhere.

``--strategies full_cache,replay_ring --workload ARGS --out traces/x`` captures one trace per verify
strategy (``traces/x_full_cache``, ``traces/x_replay_ring``), one after another; a strategy whose
capture fails is reported and the next one still runs (exit code: the first failure's).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from . import _registry as R
from ._args import list_option, option

__all__ = ["configure_parser", "run"]

#: this command's own options and their defaults (shown in --help; parsed again after --workload)
_DEFAULTS = {"out": "traces/capture", "nsys": None, "trace": "cuda,nvtx", "capture_range": "cudaProfilerApi",
             "cuda_graph_trace": "node", "nsys_arg": None, "no_export": False, "dry_run": False,
             "strategies": None}


def _own_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option given after --workload must not be overwritten by a default (see _split_args)
    d = _DEFAULTS
    option(parser, "--out", "-o", default=argparse.SUPPRESS, shown_default=d["out"],
           help="output base: writes OUT.nsys-rep and OUT.sqlite")
    option(parser, "--nsys", default=argparse.SUPPRESS, shown_default="$NSYS, then PATH, then the usual install "
           "folders", help="nsys executable")
    option(parser, "--trace", default=argparse.SUPPRESS, shown_default=d["trace"],
           help="what nsys traces (its -t value, comma-separated, e.g. cuda,nvtx,osrt)")
    option(parser, "--capture-range", default=argparse.SUPPRESS, shown_default=d["capture_range"],
           valid=("cudaProfilerApi", "nvtx", "none"),
           help="what nsys records: cudaProfilerApi (between cudaProfilerStart/Stop), nvtx (with "
                "--nsys-arg=--nvtx-capture=RANGE), none (everything)")
    option(parser, "--cuda-graph-trace", default=argparse.SUPPRESS, shown_default=d["cuda_graph_trace"],
           valid=("node", "graph"), help="one row per kernel of a CUDA graph (node), or per graph (graph)")
    option(parser, "--nsys-arg", action="append", default=argparse.SUPPRESS, shown_default="none",
           help="extra argument for nsys profile (repeatable), e.g. --nsys-arg=--gpu-metrics-devices=0")
    option(parser, "--no-export", action="store_true", default=argparse.SUPPRESS,
           help="skip nsys export (otherwise OUT.sqlite is written)")
    list_option(parser, "--strategies", metavar="NAME", default=argparse.SUPPRESS, valid=R.STRATEGIES,
                shown_default="one capture", help="with --workload: one capture per verify strategy, written to "
                "OUT_<strategy> (adds --strategy NAME, and --draft-tokens 4 unless given)")
    option(parser, "--dry-run", action="store_true", default=argparse.SUPPRESS,
           help="print the commands, run nothing")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    _own_options(parser)
    parser.add_argument("--workload", nargs=argparse.REMAINDER, default=None, metavar="ARGS",
                        help="capture gdnlab's decode loop: gdnlab workload ARGS --capture-steps 8 "
                             "(gdnlab workload --help lists ARGS)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="command to capture, after --")


def _split_args(args: argparse.Namespace) -> tuple[dict, list[str] | None, list[str]]:
    """(own options, workload args or None, command). Own options found after --workload are pulled out."""
    own = {k: getattr(args, k) for k in _DEFAULTS if hasattr(args, k)}
    workload = None
    cmd = list(getattr(args, "cmd", None) or [])
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if getattr(args, "workload", None) is not None:
        rest = list(args.workload)
        if "--" in rest:  # `--workload ... -- cmd` makes no sense; keep the part before
            i = rest.index("--")
            rest, cmd = rest[:i], cmd or rest[i + 1:]
        mini = argparse.ArgumentParser(prog="gdnlab capture", add_help=False, allow_abbrev=False)
        _own_options(mini)
        found, workload = mini.parse_known_args(rest)
        for k, v in vars(found).items():
            if k == "nsys_arg":
                own[k] = [*(own.get(k) or []), *v]
            else:
                own[k] = v
    return {**_DEFAULTS, **own}, workload, cmd


def _print_dry_run(cmd: list[str], out, opts: dict, extra: tuple) -> None:
    from ..capture import export_command, out_base, profile_command

    nsys = opts["nsys"] or "nsys"
    base = out_base(out)
    print(shlex.join(profile_command(cmd, base, nsys=nsys, capture_range=opts["capture_range"],
                                     trace=opts["trace"], cuda_graph_trace=opts["cuda_graph_trace"],
                                     extra_args=extra)))
    if not opts["no_export"]:
        print(shlex.join(export_command(base.with_name(base.name + ".nsys-rep"),
                                        base.with_name(base.name + ".sqlite"), nsys=nsys)))


def _capture_one(cmd: list[str], out, opts: dict, extra: tuple, nsys: str) -> int:
    from ..capture import capture

    res = capture(cmd, out, capture_range=opts["capture_range"], trace=opts["trace"],
                  cuda_graph_trace=opts["cuda_graph_trace"], extra_args=extra,
                  export_sqlite=not opts["no_export"], nsys=nsys)
    print(f"report: {res.rep_path}")
    if res.sqlite_path:
        print(f"sqlite: {res.sqlite_path}  (gdnlab.traces.load({str(res.sqlite_path)!r}))")
    if res.returncode:
        kept = "" if res.replaced else (f"; the earlier {res.rep_path.name.replace('.failed', '')} is kept, this "
                                        f"run's report is {res.rep_path.name}")
        print(f"gdnlab capture: the captured command exited with {res.returncode}{kept}", file=sys.stderr)
    return res.returncode


def run(args: argparse.Namespace) -> int:
    """Returns the profiled command's exit code (0 on success; with --strategies the first failure's)."""
    from ..capture import strategy_captures, workload_command
    from ..errors import GdnlabError, InputError, Interrupted

    opts, workload, cmd = _split_args(args)
    if workload is not None and cmd:
        raise InputError("give either --workload ARGS or -- CMD, not both")
    if opts["strategies"] is not None and workload is None:
        raise InputError("--strategies needs --workload (it captures gdnlab's decode loop once per strategy)")
    if workload is not None and opts["strategies"] is not None:
        jobs = [(f"strategy {name}: ", c, o) for name, c, o in strategy_captures(workload, opts["strategies"],
                                                                                  opts["out"])]
    else:
        if workload is not None:
            cmd = workload_command(workload)
        if not cmd:
            raise InputError("nothing to capture: use --workload [ARGS...] or -- CMD [ARGS...]")
        jobs = [("", cmd, opts["out"])]
    extra = tuple(opts["nsys_arg"] or ())
    if opts["dry_run"]:
        for _, c, o in jobs:
            _print_dry_run(c, o, opts, extra)
        return 0
    from .. import capture as capture_module

    nsys = capture_module.find_nsys(explicit=opts["nsys"]) if opts["nsys"] else capture_module.find_nsys()
    if len(jobs) == 1:
        return _capture_one(jobs[0][1], jobs[0][2], opts, extra, nsys)
    first_failure = 0
    for label, c, o in jobs:
        print(f"gdnlab capture: {label}{o}", flush=True)
        try:
            rc = _capture_one(c, o, opts, extra, nsys)
        except Interrupted:                 # Ctrl-C / SIGTERM stops them all
            raise
        except GdnlabError as exc:          # one strategy's failure must not stop the others
            print(f"gdnlab capture: {label}failed: {exc}", file=sys.stderr)
            rc = 1
        first_failure = first_failure or rc
    return first_failure
