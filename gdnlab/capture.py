"""Capture a command under Nsight Systems and export the report to SQLite.

``gdnlab capture --workload --backend triton --batch 64 --osl 512 --draft-tokens 4 --accept-len 3.17
--strategy replay_ring --cuda-graph --out traces/h200/triton_replay_ring`` runs gdnlab's decode-loop
workload (``python -m gdnlab workload ... --capture-steps 8``) under::

    nsys profile -t cuda,nvtx --sample=none --cpuctxsw=none --capture-range=cudaProfilerApi
         --capture-range-end=stop --cuda-graph-trace=node -o OUT --force-overwrite=true <cmd>
    nsys export --type sqlite -o OUT.sqlite --force-overwrite=true OUT.nsys-rep

and leaves ``OUT.nsys-rep`` and ``OUT.sqlite`` (open it with :func:`gdnlab.traces.load`). nsys writes
to temporary names next to them; an earlier ``OUT.nsys-rep`` / ``OUT.sqlite`` pair is replaced, both
together, only when the profiled command succeeded and the export was written, so a failed capture
loses nothing (its report is kept aside as ``OUT.failed.nsys-rep``). One capture per ``OUT`` at a
time; Ctrl-C and SIGTERM stop nsys and the command it profiles, and leave no temporary files.
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

import glob
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CaptureError, Interrupted, NsysNotFoundError, ToolNotFoundError
from .outputs import output_lock, real_path, replace_together, run_child, signal_name, stop_on_sigterm
from .tools import find_tool

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


@dataclass(frozen=True)
class CaptureResult:
    """Outcome of :func:`capture`. ``returncode`` is the profiled command's (nsys passes it through);
    ``sqlite_path`` is ``None`` when the export was skipped or failed. ``command`` is the ``nsys profile``
    argv. ``replaced``: the files went to ``OUT.nsys-rep`` / ``OUT.sqlite``; when False (the command
    failed) they are ``OUT.failed.*`` and the earlier ``OUT.*`` are as they were."""

    rep_path: Path
    sqlite_path: Path | None
    returncode: int
    command: list[str]
    export_command: list[str] | None = None
    replaced: bool = True


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

    nsys writes to temporary names in the same folder. ``OUT.nsys-rep`` and ``OUT.sqlite`` are replaced
    together, and only when the profiled command exited with 0 and the export succeeded (without
    ``export_sqlite`` an earlier ``OUT.sqlite``, which described the replaced report, is removed).
    Otherwise the earlier pair stays as it was and this run's report (and export) is kept aside as
    ``OUT.failed.nsys-rep`` (``OUT.failed.sqlite``), named by the result and the error. One capture at a
    time per ``OUT`` (:func:`gdnlab.outputs.output_lock`). Ctrl-C or SIGTERM stops nsys and the command
    it profiles (:func:`gdnlab.outputs.run_child`), removes the temporary files and raises
    :class:`~gdnlab.errors.Interrupted`.

    Raises :class:`NsysNotFoundError` without nsys, :class:`~gdnlab.outputs.OutputBusyError` when
    another capture writes ``OUT``, and :class:`CaptureError` (when ``check``) if no report was written
    (e.g. the command never called cudaProfilerStart under the default capture range) or the export
    failed. A non-zero exit of ``cmd`` itself is reported in ``returncode`` (``replaced`` is then False).
    """
    exe = nsys or find_nsys()
    base = out_base(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    argv = profile_command(cmd, _partial(base), nsys=exe, capture_range=capture_range, trace=trace,
                           cuda_graph_trace=cuda_graph_trace, extra_args=extra_args)
    with output_lock(base, command="gdnlab capture"), stop_on_sigterm():
        try:
            return _capture(argv, base, exe, export_sqlite=export_sqlite, check=check,
                            ranged=bool(capture_range and capture_range != "none"))
        except KeyboardInterrupt as exc:
            raise Interrupted(f"stopped by {signal_name(exc)}: nsys and the profiled command were stopped; "
                              f"{_suffixed(base, '.nsys-rep').name} and {_suffixed(base, '.sqlite').name} are as "
                              f"they were") from None
        finally:
            for leftover in base.parent.glob(glob.escape(_partial(base).name) + ".*"):
                leftover.unlink(missing_ok=True)


def _suffixed(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def _partial(base: Path) -> Path:
    """The base nsys writes to before the files are moved into place."""
    return base.with_name(f"{base.name}-partial-{os.getpid()}")


def _capture(argv: list[str], base: Path, exe: str, *, export_sqlite: bool, check: bool,
             ranged: bool) -> CaptureResult:
    """Profile, export and move the files into place (see :func:`capture`)."""
    out_rep, out_sqlite = _suffixed(base, ".nsys-rep"), _suffixed(base, ".sqlite")
    rep, sqlite = real_path(out_rep), real_path(out_sqlite)        # a link stays a link
    failed_rep, failed_sqlite = _suffixed(base, ".failed.nsys-rep"), _suffixed(base, ".failed.sqlite")
    new_rep, new_sqlite = _suffixed(_partial(base), ".nsys-rep"), _suffixed(_partial(base), ".sqlite")
    rc = run_child(argv)
    if not new_rep.exists():
        if check:
            hint = (" With --capture-range=cudaProfilerApi only work between cudaProfilerStart/Stop is "
                    "recorded: did the command call them (the workload does with --capture-steps N > 0)?"
                    if ranged else "")
            kept = f" The earlier {rep.name} is kept." if rep.exists() else ""
            raise CaptureError(f"nsys profile exited with {rc} and wrote no {out_rep}.{hint}{kept}")
        return CaptureResult(out_rep, None, rc, argv, replaced=False)
    exp, exp_rc = None, None
    if export_sqlite:
        exp = export_command(new_rep, new_sqlite, nsys=exe)
        exp_rc = run_child(exp)
    exported = exp_rc == 0 and new_sqlite.exists()
    if rc == 0 and (exported or not export_sqlite):
        replace_together([(new_rep, rep), (new_sqlite, sqlite) if exported else (sqlite, None),
                          (failed_rep, None), (failed_sqlite, None)])
        return CaptureResult(out_rep, out_sqlite if exported else None, rc, argv, exp)
    replace_together([(new_rep, failed_rep), (new_sqlite, failed_sqlite) if exported else (failed_sqlite, None)])
    if export_sqlite and not exported and check:
        raise CaptureError(f"nsys export exited with {exp_rc}; no {out_sqlite}: the earlier files are kept, this "
                           f"run's report is {failed_rep} (command: {shlex.join(exp or [])})")
    return CaptureResult(failed_rep, failed_sqlite if exported else None, rc, argv, exp, replaced=False)
