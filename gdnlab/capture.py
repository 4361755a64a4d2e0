"""Capture a command under Nsight Systems and export the report to SQLite.

``gdnlab capture --workload --backend flashinfer --concurrency 64 --osl 512 --verify-tokens 4
--out traces/h100/fi_c64`` runs gdnlab's decode-loop workload (``python -m gdnlab.workload ...
--capture-steps 32``) under::

    nsys profile -t cuda,nvtx --sample=none --cpuctxsw=none --capture-range=cudaProfilerApi
         --capture-range-end=stop --cuda-graph-trace=node -o OUT --force-overwrite=true <cmd>
    nsys export --type sqlite -o OUT.sqlite --force-overwrite=true OUT.nsys-rep

and leaves ``OUT.nsys-rep`` and ``OUT.sqlite`` (open it with :func:`gdnlab.traces.load`).
``--sample=none --cpuctxsw=none`` keep the report small (without them a tiny script produced 2 GB);
``--capture-range=cudaProfilerApi`` records only what runs between cudaProfilerStart/Stop (the
workload wraps its first ``--capture-steps`` measured steps); ``--cuda-graph-trace=node`` shows each
kernel of a CUDA graph instead of one graph launch. Any other command: ``gdnlab capture --out X -- cmd ...``.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["find_nsys", "capture", "profile_command", "export_command", "workload_command", "CaptureResult",
           "NsysNotFoundError", "CaptureError", "configure_parser", "run", "NSYS_GLOBS",
           "DEFAULT_CAPTURE_STEPS"]

#: usual install locations, newest version first after sorting
NSYS_GLOBS: tuple[str, ...] = (
    "/opt/nvidia/nsight-systems*/*/bin/nsys",
    "/opt/nvidia/nsight-systems*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",
    "/usr/local/cuda*/nsight-systems*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
    "/usr/lib/nsight-systems/bin/nsys",
)
DEFAULT_CAPTURE_STEPS = 32


class NsysNotFoundError(FileNotFoundError):
    """No ``nsys`` executable was found; the message says how to install it or set ``$NSYS``."""


class CaptureError(RuntimeError):
    """``nsys`` ran but produced no report (or the export failed)."""


@dataclass(frozen=True)
class CaptureResult:
    """Outcome of :func:`capture`. ``returncode`` is the profiled command's (nsys passes it through);
    ``sqlite_path`` is ``None`` when the export was skipped. ``command`` is the ``nsys profile`` argv."""

    rep_path: Path
    sqlite_path: Path | None
    returncode: int
    command: list[str]
    export_command: list[str] | None = None


def _version_key(path: str) -> tuple:
    nums = [int(x) for x in re.findall(r"\d+", path)]
    return tuple(nums)


def _executable(path: str | os.PathLike | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        p = p / "nsys"
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


def find_nsys(*, env: dict[str, str] | None = None, globs: Sequence[str] = NSYS_GLOBS) -> str:
    """Path of the ``nsys`` executable: ``$NSYS`` (a file, or a folder holding ``nsys``), then ``PATH``,
    then the usual install folders (``NSYS_GLOBS``, newest version first).

    ``$NSYS`` comes first (the brief listed PATH first) because an explicit setting should win: on
    the GPU machine ``$NSYS`` points at nsys 2025.3.1 while an older CUDA toolkit's nsys may sit on
    PATH. Raises :class:`NsysNotFoundError` explaining how to install nsys or set ``$NSYS``.
    """
    env = os.environ if env is None else env
    tried = []
    if env.get("NSYS"):
        found = _executable(env["NSYS"])
        if found:
            return found
        tried.append(f"$NSYS={env['NSYS']} (not an executable)")
    else:
        tried.append("$NSYS (unset)")
    on_path = shutil.which("nsys", path=env.get("PATH"))
    if on_path:
        return on_path
    tried.append("PATH")
    for pattern in globs:
        hits = sorted((h for h in glob.glob(pattern) if _executable(h)), key=_version_key, reverse=True)
        if hits:
            return hits[0]
    tried.append("usual install folders (" + ", ".join(globs) + ")")
    raise NsysNotFoundError(
        "Nsight Systems (nsys) not found; looked in " + "; ".join(tried) + ". Install it "
        "(https://developer.nvidia.com/nsight-systems, or the CUDA toolkit's nsight-systems package: "
        "apt-get install nsight-systems-<version>) or point $NSYS at the nsys executable, e.g. "
        "export NSYS=/opt/nvidia/nsight-systems/2025.3.1/bin/nsys")


def _out_base(out: str | os.PathLike) -> Path:
    """``traces/x``, ``traces/x.nsys-rep`` and ``traces/x.sqlite`` all mean the base ``traces/x``."""
    p = Path(out)
    for suffix in (".nsys-rep", ".sqlite", ".qdrep"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def profile_command(cmd: Sequence[str], out: str | os.PathLike, *, nsys: str = "nsys",
                    capture_range: str | None = "cudaProfilerApi", trace: str = "cuda,nvtx",
                    cuda_graph_trace: str | None = "node", extra_args: Sequence[str] = ()) -> list[str]:
    """The ``nsys profile`` argv (``capture_range=None`` or ``"none"`` records the whole run)."""
    if not cmd:
        raise ValueError("nothing to capture: give a command (after --) or --workload")
    argv = [nsys, "profile", "-t", trace, "--sample=none", "--cpuctxsw=none"]
    if capture_range and capture_range != "none":
        argv += [f"--capture-range={capture_range}", "--capture-range-end=stop"]
    if cuda_graph_trace:
        argv.append(f"--cuda-graph-trace={cuda_graph_trace}")
    argv += ["-o", str(_out_base(out)), "--force-overwrite=true", *extra_args, *cmd]
    return argv


def export_command(rep: str | os.PathLike, sqlite: str | os.PathLike, *, nsys: str = "nsys") -> list[str]:
    """The ``nsys export --type sqlite`` argv."""
    return [nsys, "export", "--type", "sqlite", "-o", str(sqlite), "--force-overwrite=true", str(rep)]


def workload_command(workload_args: Sequence[str], *, python: str | None = None,
                     capture_steps: int = DEFAULT_CAPTURE_STEPS) -> list[str]:
    """``python -m gdnlab.workload ARGS`` with ``--capture-steps N`` appended unless given."""
    args = list(workload_args)
    if not any(a == "--capture-steps" or a.startswith("--capture-steps=") for a in args):
        args += ["--capture-steps", str(capture_steps)]
    return [python or sys.executable, "-m", "gdnlab.workload", *args]


def capture(cmd: list[str], out: str | Path, *, capture_range: str | None = "cudaProfilerApi",
            trace: str = "cuda,nvtx", cuda_graph_trace: str | None = "node", extra_args: Sequence[str] = (),
            export_sqlite: bool = True, nsys: str | None = None, check: bool = True) -> CaptureResult:
    """Run ``cmd`` under ``nsys profile`` writing ``OUT.nsys-rep`` (``out`` with or without suffix;
    its folder is created; an ``OUT.nsys-rep`` already there is replaced, as ``--force-overwrite=true``
    does), then ``nsys export`` it to ``OUT.sqlite`` when ``export_sqlite``.

    Raises :class:`NsysNotFoundError` without nsys, and :class:`CaptureError` (when ``check``) if no
    report was written (e.g. the command never called cudaProfilerStart under the default capture
    range) or the export failed. A non-zero exit of ``cmd`` itself is reported in ``returncode``.
    """
    exe = nsys or find_nsys()
    base = _out_base(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    argv = profile_command(cmd, base, nsys=exe, capture_range=capture_range, trace=trace,
                           cuda_graph_trace=cuda_graph_trace, extra_args=extra_args)
    rep = base.with_name(base.name + ".nsys-rep")
    rep.unlink(missing_ok=True)   # nsys overwrites it anyway; a stale one must not pass for this run's
    proc = subprocess.run(argv, check=False)
    if not rep.exists():
        if check:
            hint = (" With --capture-range=cudaProfilerApi only work between cudaProfilerStart/Stop is "
                    "recorded: did the command call them (the workload does with --capture-steps N > 0)?"
                    if capture_range and capture_range != "none" else "")
            raise CaptureError(f"nsys profile exited with {proc.returncode} and wrote no {rep}.{hint}")
        return CaptureResult(rep, None, proc.returncode, argv)
    sqlite = None
    exp = None
    if export_sqlite:
        sqlite = base.with_name(base.name + ".sqlite")
        exp = export_command(rep, sqlite, nsys=exe)
        done = subprocess.run(exp, check=False)
        if done.returncode != 0 or not sqlite.exists():
            if check:
                raise CaptureError(f"nsys export exited with {done.returncode}; no {sqlite} "
                                   f"(command: {shlex.join(exp)})")
            sqlite = None
    return CaptureResult(rep, sqlite, proc.returncode, argv, exp)


# --------------------------------------------------------------------------------- CLI

def _own_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", "-o", default=argparse.SUPPRESS,
                        help="output base: writes OUT.nsys-rep and OUT.sqlite (default: traces/capture)")
    parser.add_argument("--nsys", default=argparse.SUPPRESS, help="nsys executable (default: $NSYS, PATH, usual folders)")
    parser.add_argument("--trace", default=argparse.SUPPRESS, help="nsys -t value (default: cuda,nvtx)")
    parser.add_argument("--capture-range", default=argparse.SUPPRESS,
                        help="cudaProfilerApi (default) | nvtx (with --nsys-arg=--nvtx-capture=RANGE) | none (record everything)")
    parser.add_argument("--cuda-graph-trace", default=argparse.SUPPRESS, help="node (default) | graph")
    parser.add_argument("--nsys-arg", action="append", default=argparse.SUPPRESS,
                        help="extra argument for nsys profile (repeatable), e.g. --nsys-arg=--gpu-metrics-devices=0")
    parser.add_argument("--no-export", action="store_true", default=argparse.SUPPRESS, help="skip nsys export")
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                        help="print the commands, run nothing")


_DEFAULTS = {"out": "traces/capture", "nsys": None, "trace": "cuda,nvtx", "capture_range": "cudaProfilerApi",
             "cuda_graph_trace": "node", "nsys_arg": None, "no_export": False, "dry_run": False}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``gdnlab capture [--out PATH] [options] (--workload WORKLOAD-ARGS... | -- CMD ...)``.

    Everything after ``--workload`` goes to ``python -m gdnlab.workload`` (``--capture-steps 32`` is
    added unless given), except this command's own options, which may appear anywhere.
    """
    _own_options(parser)
    parser.add_argument("--workload", nargs=argparse.REMAINDER, default=None, metavar="ARGS",
                        help="capture gdnlab's decode loop: python -m gdnlab.workload ARGS --capture-steps 32")
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
        mini = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        _own_options(mini)
        found, workload = mini.parse_known_args(rest)
        for k, v in vars(found).items():
            if k == "nsys_arg":
                own[k] = [*(own.get(k) or []), *v]
            else:
                own[k] = v
    return {**_DEFAULTS, **own}, workload, cmd


def run(args: argparse.Namespace) -> int:
    """Entry point of ``gdnlab capture``. Returns the profiled command's exit code (0 on success)."""
    opts, workload, cmd = _split_args(args)
    if workload is not None and cmd:
        raise ValueError("give either --workload ARGS or -- CMD, not both")
    if workload is not None:
        cmd = workload_command(workload)
    if not cmd:
        raise ValueError("nothing to capture: use --workload [ARGS...] or -- CMD [ARGS...]")
    extra = tuple(opts["nsys_arg"] or ())
    if opts["dry_run"]:
        nsys = opts["nsys"] or "nsys"
        base = _out_base(opts["out"])
        print(shlex.join(profile_command(cmd, base, nsys=nsys, capture_range=opts["capture_range"],
                                         trace=opts["trace"], cuda_graph_trace=opts["cuda_graph_trace"],
                                         extra_args=extra)))
        if not opts["no_export"]:
            print(shlex.join(export_command(base.with_name(base.name + ".nsys-rep"),
                                            base.with_name(base.name + ".sqlite"), nsys=nsys)))
        return 0
    try:
        res = capture(cmd, opts["out"], capture_range=opts["capture_range"], trace=opts["trace"],
                      cuda_graph_trace=opts["cuda_graph_trace"], extra_args=extra,
                      export_sqlite=not opts["no_export"], nsys=opts["nsys"])
    except (NsysNotFoundError, CaptureError) as exc:
        print(f"gdnlab capture: {exc}", file=sys.stderr)
        return 2
    print(f"report: {res.rep_path}")
    if res.sqlite_path:
        print(f"sqlite: {res.sqlite_path}  (gdnlab.traces.load({str(res.sqlite_path)!r}))")
    if res.returncode:
        print(f"gdnlab capture: the captured command exited with {res.returncode}", file=sys.stderr)
    return res.returncode
