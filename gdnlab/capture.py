"""Capture a command under Nsight Systems and export the report to SQLite.

``gdnlab capture --workload --backend triton --batch 64 --osl 512 --draft-tokens 4 --accept-len 3.17
--strategy replay_ring --cuda-graph --out traces/h200/triton_replay_ring`` runs gdnlab's decode-loop
workload (``python -m gdnlab workload ... --capture-steps 8``) under::

    nsys profile -t cuda,nvtx --sample=none --cpuctxsw=none --capture-range=cudaProfilerApi
         --capture-range-end=stop --cuda-graph-trace=node -o OUT --force-overwrite=true <cmd>
    nsys export --type sqlite -o OUT.sqlite --force-overwrite=true OUT.nsys-rep

and leaves ``OUT.nsys-rep`` and ``OUT.sqlite`` (open it with :func:`gdnlab.traces.load`). nsys writes
to temporary names next to them; an earlier ``OUT.nsys-rep`` / ``OUT.sqlite`` is replaced only when
the new one was written, so a failed capture loses nothing.
``--sample=none --cpuctxsw=none`` keep the report small (without them a tiny script produced 2 GB);
``--capture-range=cudaProfilerApi`` records only what runs between cudaProfilerStart/Stop (the
workload wraps its first ``--capture-steps`` measured steps); ``--cuda-graph-trace=node`` shows each
kernel of a CUDA graph instead of one graph launch (with the workload's phase marker kernels,
:mod:`gdnlab.analysis.phases` splits such a trace into verify / commit / fold).

:func:`strategy_captures` builds one workload capture per verify strategy (``OUT_<strategy>``), what
``gdnlab capture --strategies a,b,c --workload ...`` runs. Command line: ``gdnlab capture``
(:mod:`gdnlab.cli.capture`).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UnavailableError
from .tools import ToolNotFoundError, find_tool

__all__ = ["find_nsys", "capture", "profile_command", "export_command", "workload_command", "CaptureResult",
           "NsysNotFoundError", "CaptureError", "NSYS_GLOBS", "DEFAULT_CAPTURE_STEPS", "out_base",
           "strategy_captures", "parse_strategies"]

#: usual install locations, newest version first after sorting
NSYS_GLOBS: tuple[str, ...] = (
    "/opt/nvidia/nsight-systems*/*/bin/nsys",
    "/opt/nvidia/nsight-systems*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",
    "/usr/local/cuda*/nsight-systems*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
    "/usr/lib/nsight-systems/bin/nsys",
)
#: measured steps inside the capture range: a few steps are enough (every step runs the same kernels)
#: and keep a 45-layer capture small and quick
DEFAULT_CAPTURE_STEPS = 8


class NsysNotFoundError(ToolNotFoundError):
    """No ``nsys`` executable was found; the message says how to install it or set ``$NSYS``."""


class CaptureError(UnavailableError):
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


_INSTALL_HINT = ("Install Nsight Systems (https://developer.nvidia.com/nsight-systems, or the CUDA toolkit's "
                 "nsight-systems package: apt-get install nsight-systems-<version>) or point $NSYS at the nsys "
                 "executable, e.g. export NSYS=/opt/nvidia/nsight-systems/2025.3.1/bin/nsys")


def find_nsys(*, env: Mapping[str, str] | None = None, globs: Sequence[str] = NSYS_GLOBS,
              explicit: str | os.PathLike | None = None) -> str:
    """Path of the ``nsys`` executable by :func:`gdnlab.tools.find_tool`'s rule: ``explicit`` (``--nsys``),
    then ``$NSYS`` (a file, or a folder holding ``nsys``), then ``PATH``, then the usual install
    folders (``NSYS_GLOBS``, newest version first).

    Raises :class:`NsysNotFoundError` (also when ``explicit`` or ``$NSYS`` names no executable: a path
    the user set is never skipped silently), saying how to install nsys or set ``$NSYS``.
    """
    env = dict(os.environ if env is None else env)
    for key, value in (("NSYS", env.get("NSYS")), ("explicit", explicit)):
        if value and Path(value).is_dir():          # a folder: the nsys inside it
            if key == "NSYS":
                env["NSYS"] = str(Path(value) / "nsys")
            else:
                explicit = Path(value) / "nsys"
    try:
        return find_tool("nsys", env_var="NSYS", globs=globs, explicit=explicit, env=env)
    except ToolNotFoundError as exc:
        raise NsysNotFoundError(f"{exc}. {_INSTALL_HINT}") from None


def out_base(out: str | os.PathLike) -> Path:
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
    argv += ["-o", str(out_base(out)), "--force-overwrite=true", *extra_args, *cmd]
    return argv


def export_command(rep: str | os.PathLike, sqlite: str | os.PathLike, *, nsys: str = "nsys") -> list[str]:
    """The ``nsys export --type sqlite`` argv."""
    return [nsys, "export", "--type", "sqlite", "-o", str(sqlite), "--force-overwrite=true", str(rep)]


def workload_command(workload_args: Sequence[str], *, python: str | None = None,
                     capture_steps: int = DEFAULT_CAPTURE_STEPS) -> list[str]:
    """``python -m gdnlab workload --no-progress ARGS`` with ``--capture-steps N`` appended unless given."""
    args = list(workload_args)
    if not _has_option(args, "--capture-steps"):
        args += ["--capture-steps", str(capture_steps)]
    if "--no-progress" not in args:
        args = ["--no-progress", *args]
    return [python or sys.executable, "-m", "gdnlab", "workload", *args]


def _has_option(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def parse_strategies(text: str | Sequence[str]) -> list[str]:
    """``"full_cache,replay_ring"`` (or a list) -> names, stripped, without duplicates; an empty
    list or an unknown name is an :class:`~gdnlab.errors.InputError` naming the known ones."""
    from .errors import InputError
    from .strategies import STRATEGY_NAMES

    items = text.split(",") if isinstance(text, str) else [str(x) for x in text]
    names = list(dict.fromkeys(x.strip().lower() for x in items if x.strip()))
    if not names:
        raise InputError(f"--strategies needs at least one strategy name; known: {', '.join(STRATEGY_NAMES)}")
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise InputError(f"unknown strategy {unknown[0]!r} in --strategies; known: {', '.join(STRATEGY_NAMES)}")
    return names


def strategy_captures(workload_args: Sequence[str], strategies: str | Sequence[str], out: str | os.PathLike, *,
                      python: str | None = None,
                      capture_steps: int = DEFAULT_CAPTURE_STEPS) -> list[tuple[str, list[str], Path]]:
    """One ``(strategy, workload command, output base)`` per strategy: ``workload_args`` plus
    ``--strategy NAME`` (and ``--draft-tokens 4`` unless given: a strategy verifies T >= 2 tokens),
    written to ``OUT_<strategy>``. ``workload_args`` must not name a ``--strategy`` themselves."""
    from .errors import InputError

    args = list(workload_args)
    if _has_option(args, "--strategy"):
        raise InputError("give either --strategies a,b,c or --strategy NAME in the workload arguments, not both")
    if not (_has_option(args, "--draft-tokens") or _has_option(args, "--verify-tokens")):
        args += ["--draft-tokens", "4"]
    base = out_base(out)
    return [(name, workload_command([*args, "--strategy", name], python=python, capture_steps=capture_steps),
             base.with_name(f"{base.name}_{name}")) for name in parse_strategies(strategies)]


def capture(cmd: list[str], out: str | Path, *, capture_range: str | None = "cudaProfilerApi",
            trace: str = "cuda,nvtx", cuda_graph_trace: str | None = "node", extra_args: Sequence[str] = (),
            export_sqlite: bool = True, nsys: str | None = None, check: bool = True) -> CaptureResult:
    """Run ``cmd`` under ``nsys profile`` writing ``OUT.nsys-rep`` (``out`` with or without suffix;
    its folder is created), then ``nsys export`` it to ``OUT.sqlite`` when ``export_sqlite``.

    nsys writes to temporary names in the same folder; ``OUT.nsys-rep`` and ``OUT.sqlite`` are
    replaced only by a report (export) that was written, so a failed run keeps the earlier files.

    Raises :class:`NsysNotFoundError` without nsys, and :class:`CaptureError` (when ``check``) if no
    report was written (e.g. the command never called cudaProfilerStart under the default capture
    range) or the export failed. A non-zero exit of ``cmd`` itself is reported in ``returncode``.
    """
    exe = nsys or find_nsys()
    base = out_base(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    partial = base.with_name(f"{base.name}-partial-{os.getpid()}")
    argv = profile_command(cmd, partial, nsys=exe, capture_range=capture_range, trace=trace,
                           cuda_graph_trace=cuda_graph_trace, extra_args=extra_args)
    rep = base.with_name(base.name + ".nsys-rep")
    partial_rep = partial.with_name(partial.name + ".nsys-rep")
    partial_rep.unlink(missing_ok=True)
    try:
        proc = subprocess.run(argv, check=False)
        if not partial_rep.exists():
            if check:
                hint = (" With --capture-range=cudaProfilerApi only work between cudaProfilerStart/Stop is "
                        "recorded: did the command call them (the workload does with --capture-steps N > 0)?"
                        if capture_range and capture_range != "none" else "")
                kept = f" The earlier {rep.name} is kept." if rep.exists() else ""
                raise CaptureError(f"nsys profile exited with {proc.returncode} and wrote no {rep}.{hint}{kept}")
            return CaptureResult(rep, None, proc.returncode, argv)
        partial_rep.replace(rep)
    finally:
        partial_rep.unlink(missing_ok=True)
    sqlite = None
    exp = None
    if export_sqlite:
        sqlite = base.with_name(base.name + ".sqlite")
        partial_sqlite = partial.with_name(partial.name + ".sqlite")
        exp = export_command(rep, partial_sqlite, nsys=exe)
        try:
            done = subprocess.run(exp, check=False)
            if done.returncode == 0 and partial_sqlite.exists():
                partial_sqlite.replace(sqlite)
            else:
                if check:
                    raise CaptureError(f"nsys export exited with {done.returncode}; no {sqlite} "
                                       f"(command: {shlex.join(exp)})")
                sqlite = None
        finally:
            partial_sqlite.unlink(missing_ok=True)
    return CaptureResult(rep, sqlite, proc.returncode, argv, exp)
