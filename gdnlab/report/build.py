"""Build the report: execute ``notebooks/*.ipynb`` with papermill, export each to HTML with nbconvert,
write ``index.html`` (a jinja2 template) and ``report.json``.

* Parameters are checked before anything runs (:func:`check_parameters`): a name no selected
  notebook declares, a value of the wrong type, or one below the bound its declaration states
  (``max_kernels = 4000  # at least 1: ...``) is a :class:`~gdnlab.errors.InputError` naming it.
* Notebooks run in worker processes (``jobs``), each with its own kernel; a notebook that fails does
  not stop the others: its partial page is kept, the index marks it failed, and :class:`ReportError`
  is raised at the end.
* Output is staged: pages are written beside the report folder and moved in (``os.replace``) as each
  notebook finishes, ``index.html`` and ``report.json`` last, so nothing in the folder is lost until
  its replacement is complete. The folder must be new, empty or an earlier report.
* A page is replaced only by a notebook that ran: a failed (or stopped) re-run of a notebook whose
  earlier page was good writes ``NAME.failed.html`` beside it, and the index links both. The index
  merges the earlier build's entries whose pages are still there (``report -n 01`` keeps 02 and 03
  listed). One build per folder at a time (:func:`gdnlab.outputs.output_lock`).
* Ctrl-C or SIGTERM stops the running notebooks within seconds (their kernels shut down), keeps the
  pages already built, writes the index and raises :class:`~gdnlab.errors.Interrupted`.
* Pages open offline: figures are stored once in each executed notebook (the plotly mimetype) and
  drawn with one shared ``plotly.min.js`` (plotly's own bundle) copied next to ``index.html``.

Nothing here starts a sweep or a capture; importing this module is cheap (papermill, nbconvert,
jupyter_client and jinja2 are imported inside the functions that use them).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError, Interrupted
from ..outputs import Terminated, output_lock, replace_together, signal_name, stop_on_sigterm
from .catalog import (
    FAILED_SUFFIX,
    NOTEBOOKS,
    NotebookResult,
    Parameter,
    ReportError,
    check_parameters,
    declared_parameters,
    earlier_results,
    keeps_earlier_page,
    merge_results,
    notebook_parameters,
    notebook_path,
    notebooks_dir,
    resolve_notebooks,
)
from .html import PLOTLY_JS, _banner, _collect_sources, copy_plotlyjs, export_html, write_index
from .notebook import REPO_ROOT, short_path

__all__ = ["NOTEBOOKS", "PLOTLY_JS", "ReportError", "NotebookResult", "Parameter", "build_report", "execute_notebook",
           "export_html", "ensure_kernel", "notebook_path", "notebooks_dir", "resolve_notebooks", "notebook_parameters",
           "declared_parameters", "check_parameters", "copy_plotlyjs", "write_index"]

#: seconds the running notebooks get to stop after Ctrl-C before their workers are killed
_STOP_GRACE_S = 8.0

# ---------------------------------------------------------------------------------------------
# Kernel and execution
# ---------------------------------------------------------------------------------------------

def _same_python(exe: str) -> bool:
    aliases = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if exe in aliases:  # jupyter_client substitutes sys.executable for these
        return True
    try:
        return Path(exe).resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


def ensure_kernel(kernel_name: str | None = None) -> str:
    """A Jupyter kernel that runs *this* Python (where gdnlab is importable).

    With ``kernel_name`` it must exist (``InputError`` otherwise). Without, ``python3`` is used
    when it runs this interpreter (ipykernel's native spec or a ``python`` alias); else a kernel
    spec ``gdnlab-<hash>`` for ``sys.executable`` is installed for the user (ipykernel).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    if kernel_name:
        try:
            ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            raise InputError(f"kernel_name: no Jupyter kernel {kernel_name!r}; installed: "
                             f"{sorted(ksm.find_kernel_specs())}") from None
        return kernel_name
    try:
        spec = ksm.get_kernel_spec("python3")
        if spec.argv and _same_python(spec.argv[0]):
            return "python3"
    except NoSuchKernel:
        pass
    try:
        from ipykernel.kernelspec import install
    except ImportError as exc:
        raise RuntimeError("no Jupyter kernel for this Python and ipykernel is not installed: "
                           "pip install -e '.[notebooks]'") from exc
    name = "gdnlab-" + hashlib.sha1(sys.executable.encode()).hexdigest()[:8]
    try:
        ksm.get_kernel_spec(name)
    except NoSuchKernel:
        install(user=True, kernel_name=name, display_name=f"Python (gdnlab, {sys.executable})")
    return name


@contextmanager
def _kernel_env(extra_path: Path, allow_mixed: bool = False) -> Iterator[None]:
    """Kernels inherit os.environ: put the checkout on PYTHONPATH (gdnlab importable even when
    not installed) and silence tqdm (a live sweep's progress bar is noise in an HTML page); with
    ``allow_mixed``, :func:`gdnlab.results.load_sweep` in the notebooks loads mixed sweeps, labelled."""
    from ..results_io import ALLOW_MIXED_ENV

    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "TQDM_DISABLE", ALLOW_MIXED_ENV)}
    pp = os.environ.get("PYTHONPATH", "")
    if str(extra_path) not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(extra_path), pp) if x)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if allow_mixed:
        os.environ[ALLOW_MIXED_ENV] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(src: Path, out_ipynb: Path, parameters: Mapping[str, Any], kernel_name: str,
                     *, timeout: float | None = 600, start_timeout: float = 120) -> None:
    """Run ``src`` with papermill into ``out_ipynb`` (cwd: the notebook's folder, as in Jupyter).

    ``timeout`` is the limit per cell (s). The kernel logs errors only (no transport warnings) and is
    shut down at once when the run ends or is stopped. Raises papermill's errors; the output notebook
    is written even when a cell fails."""
    import papermill

    logging.getLogger("papermill").setLevel(logging.ERROR)
    papermill.execute_notebook(str(src), str(out_ipynb), parameters=dict(parameters),
                               kernel_name=kernel_name, language="python", cwd=str(src.parent), progress_bar=False,
                               execution_timeout=timeout, start_timeout=start_timeout,
                               request_save_on_cell_execute=False, shutdown_kernel="immediate",
                               extra_arguments=["--Application.log_level=ERROR"])


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------

def _build_meta(kernel: str, hide_code: bool, parameters: Mapping[str, Any]) -> dict[str, Any]:
    from .. import __version__
    from ..provenance import git_state, package_version

    commit, dirty = git_state()
    return {
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gdnlab": __version__,
        "git_commit": commit[:12] if commit else None,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "kernel": kernel,
        "hide_code": hide_code,
        "parameters": dict(parameters),
        "packages": {d: package_version(d) for d in ("torch", "triton", "flashinfer-python", "pandas",
                                                     "plotly", "papermill", "nbconvert")},
    }


def _json_safe(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def _jobs(jobs: int | None, n: int) -> int:
    """Notebooks run at once: ``jobs`` or, by default, one per CPU core (at most ``n``)."""
    if jobs is None:
        env = os.environ.get("GDNLAB_REPORT_JOBS")
        jobs = int(env) if env and env.isdigit() else (os.cpu_count() or 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be an integer >= 1, got {jobs!r}")
    return max(1, min(jobs, n))


def _error_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        evalue = str(exc)
    cell = getattr(exc, "exec_count", None)
    line = f"{ename}: {str(evalue).strip().splitlines()[0] if str(evalue).strip() else ''}".rstrip(": ")
    return f"{line} (cell [{cell}])" if cell is not None else line


def _check_out_dir(out: Path) -> None:
    """The report folder must be new, empty or an earlier report: nothing else in it gets overwritten."""
    if out.resolve() == notebooks_dir().resolve():
        raise InputError(f"report folder {out} is the notebooks folder: its executed copies would replace "
                         f"the notebooks")
    if out.exists() and not out.is_dir():
        raise InputError(f"report folder {out} is an existing file, not a folder: pass a folder (e.g. reports)")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").exists():
        raise InputError(f"report folder {out} holds files that are not a gdnlab report (no report.json): "
                         f"pass a new or empty folder")


def _run_one(src: str, staging: str, out: str, params: dict, kernel: str, timeout: float | None, hide_code: bool,
             meta: dict, keep_earlier: bool = False) -> NotebookResult:
    """Execute one notebook into ``staging``, export it, move both files into ``out``. Never raises for
    the notebook's own failure or a stop (Ctrl-C, SIGTERM): the result says what happened; what ran is
    kept. With ``keep_earlier`` (``out`` holds a good page of this notebook) a run that did not
    succeed writes ``NAME.failed.html`` / ``.ipynb`` and leaves the good page in place."""
    src_p, stage_p, out_p = Path(src), Path(staging), Path(out)
    name = src_p.stem
    nb_tmp, html_tmp = stage_p / f"{name}.ipynb", stage_p / f"{name}.html"
    t0 = time.perf_counter()
    error, stopped = None, False
    try:
        execute_notebook(src_p, nb_tmp, params, kernel, timeout=timeout)
    except KeyboardInterrupt as exc:
        error, stopped = f"interrupted ({signal_name(exc)})", True
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the others still run
        error = _error_line(exc)
    res = NotebookResult(name=name, source=short_path(src_p), ok=error is None, seconds=0.0, error=error,
                         interrupted=stopped, parameters=_json_safe(params), built=meta.get("built"))
    if nb_tmp.exists():
        res.sources = _collect_sources(nb_tmp)
        try:
            export_html(nb_tmp, html_tmp, hide_code=hide_code, banner=_banner(meta, res))
            copy_plotlyjs(out_p)
        except Exception as exc:  # noqa: BLE001 - a failed export marks this page failed; others go on
            res.ok = False
            res.error = (res.error + "; " if res.error else "") + "HTML export: " + _error_line(exc)
        _place(res, nb_tmp, html_tmp, out_p, aside=keep_earlier and not res.ok)
    res.seconds = round(time.perf_counter() - t0, 2)
    return res


def _place(res: NotebookResult, nb_tmp: Path, html_tmp: Path, out: Path, *, aside: bool) -> None:
    """Move a run's executed notebook and page into ``out``: as ``NAME.*``, or (``aside``) as
    ``NAME.failed.*``; a page written as ``NAME.*`` removes a stale ``NAME.failed.*``."""
    stem = f"{res.name}{FAILED_SUFFIX}" if aside else res.name
    moves: list[tuple[Path, Path | None]] = [(nb_tmp, out / f"{stem}.ipynb")]
    res.ipynb = f"{stem}.ipynb"
    if html_tmp.exists():
        moves.append((html_tmp, out / f"{stem}.html"))
        res.html = f"{stem}.html"
    if not aside:
        moves += [(out / f"{res.name}{FAILED_SUFFIX}.html", None), (out / f"{res.name}{FAILED_SUFFIX}.ipynb", None)]
    replace_together(moves)


def _stop_on_term(signum, frame) -> None:
    raise KeyboardInterrupt


def _worker(task: tuple, conn) -> None:
    """Worker process: run one notebook, send its :class:`NotebookResult` back. SIGINT is ignored here
    (the terminal's Ctrl-C goes to the parent, which decides); SIGTERM stops the notebook. The kernel's
    and papermill's own output goes to a log in the staging folder, not the terminal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_term)
    log = Path(task[1]) / f"{Path(task[0]).stem}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        res = _run_one(*task)
    except BaseException as exc:  # noqa: BLE001 - the parent gets a row whatever happened
        res = NotebookResult(name=Path(task[0]).stem, source=short_path(Path(task[0])), ok=False, seconds=0.0,
                             error=f"worker: {_error_line(exc)}", interrupted=isinstance(exc, KeyboardInterrupt))
    conn.send(res)
    conn.close()


def _not_run(task: tuple, why: str) -> NotebookResult:
    src = Path(task[0])
    return NotebookResult(name=src.stem, source=short_path(src), ok=False, seconds=0.0, error=why, interrupted=True)


def _run_workers(tasks: list[tuple], jobs: int, done: Callable[[NotebookResult], None]) -> str | None:
    """Run ``tasks`` in up to ``jobs`` worker processes, calling ``done`` with each result.

    Ctrl-C (SIGINT) and SIGTERM only set a flag here, so no result already sent is lost; the loop then
    stops the running workers (SIGTERM: each stops its notebook and exports what ran), waits a few seconds for
    their results, kills what is left and reports the tasks not started. Returns what stopped it
    (``"Ctrl-C"``, ``"SIGTERM"``) or ``None``.
    """
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    pending, running, finished = list(tasks), {}, []
    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    why = lambda: "SIGTERM" if stop and stop[0] == signal.SIGTERM else "Ctrl-C"
    try:
        while (pending or running) and not stop:
            while pending and len(running) < jobs and not stop:
                task = pending.pop(0)
                r, w = ctx.Pipe(duplex=False)
                own = signal.signal(signal.SIGINT, signal.SIG_IGN)   # the child starts with SIGINT ignored
                try:
                    proc = ctx.Process(target=_worker, args=(task, w), name=f"gdnlab-report-{Path(task[0]).stem}")
                    proc.start()
                finally:
                    signal.signal(signal.SIGINT, own)
                w.close()
                running[r] = (proc, task)
            for r in wait(list(running), timeout=0.5):
                proc, task = running.pop(r)
                try:
                    res = r.recv()
                except EOFError:
                    proc.join(5)
                    res = NotebookResult(name=Path(task[0]).stem, source=short_path(Path(task[0])), ok=False,
                                         seconds=0.0, error=f"worker died (exit code {proc.exitcode})")
                finished.append(proc)
                done(res)
        if stop:
            for proc, _ in running.values():
                proc.terminate()                               # SIGTERM: the worker stops its notebook
            deadline = time.monotonic() + _STOP_GRACE_S
            for r, (proc, task) in running.items():
                res = None
                if r.poll(max(0.0, deadline - time.monotonic())):
                    try:
                        res = r.recv()
                    except EOFError:
                        res = None
                finished.append(proc)
                done(res or _not_run(task, f"interrupted ({why()})"))
            for task in pending:
                done(_not_run(task, f"not run: interrupted ({why()})"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in finished + [p for p, _ in running.values()]:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
    return why() if stop else None


def build_report(out_dir: str | os.PathLike = "reports", notebooks: Iterable[str] | str | None = None,
                 hide_code: bool = False, parameters: Mapping[str, Any] | None = None,
                 kernel_name: str | None = None, *, timeout: float | None = 600, jobs: int | None = None,
                 raise_on_error: bool = True, log: Callable[[str], None] | None = None,
                 allow_mixed: bool = False) -> Path:
    """Execute the notebooks and write ``<out_dir>/index.html`` plus one HTML page per notebook.

    Args:
        out_dir: report folder: new, empty or an earlier report (``InputError`` otherwise). Per notebook
            it gets ``<name>.html`` and the executed ``<name>.ipynb``; plus ``index.html``,
            ``report.json`` (the index as data: status, seconds, errors, sources, provenance) and
            ``plotly.min.js`` (shared by the pages).
        notebooks: names (``01_kernel_sweep``, ``01``, ``traces``) or paths; all by default.
        hide_code: drop code from the HTML (outputs only).
        parameters: papermill parameters, checked first (:func:`check_parameters`).
        kernel_name: Jupyter kernel; default: one running this Python (:func:`ensure_kernel`).
        timeout: limit per cell (s); ``None`` for none.
        jobs: notebooks executed at once, each in its own worker process and kernel (default: one
            per CPU core, or ``$GDNLAB_REPORT_JOBS``); ``1`` runs them one after another here.
        raise_on_error: raise :class:`ReportError` (after writing everything) if any notebook failed.
        log: progress, one line per notebook (default: stderr).
        allow_mixed: the notebooks load sweeps that mix GPUs or commits (labelled as such) instead of
            refusing them (:func:`gdnlab.results.load_sweep`).

    Returns:
        Path of ``index.html``.

    Raises:
        InputError: bad parameters, notebooks, kernel or report folder (before anything runs).
        Interrupted: Ctrl-C or SIGTERM; the pages already built and the index are written.
        OutputBusyError: another build writes ``out_dir`` (:func:`gdnlab.outputs.output_lock`).
        ReportError: some notebooks failed (with ``raise_on_error``).
    """
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    paths = resolve_notebooks(notebooks)
    per_notebook = check_parameters(paths, parameters)
    out = Path(out_dir).expanduser().resolve()
    _check_out_dir(out)
    kernel = ensure_kernel(kernel_name)
    jobs = _jobs(jobs, len(paths))
    meta = _build_meta(kernel, hide_code, _json_safe(dict(parameters or {})))
    meta["jobs"] = jobs
    if allow_mixed:
        meta["allow_mixed"] = True
    with output_lock(out, command="gdnlab report"), stop_on_sigterm():
        earlier = earlier_results(out)
        out.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.building-{os.getpid()}"
        staging.mkdir(exist_ok=True)
        tasks = [(str(src), str(staging), str(out), per_notebook[src.stem], kernel, timeout, hide_code, meta,
                  keeps_earlier_page(out, earlier, src.stem)) for src in paths]
        results: list[NotebookResult] = []
        t_all = time.perf_counter()

        def done(res: NotebookResult) -> None:
            results.append(res)
            state = "ok" if res.ok else ("interrupted" if res.interrupted else "FAILED")
            say(f"gdnlab report: {res.name:<24} {state} ({res.seconds:.1f} s)"
                + (f" — {res.error}" if res.error and not res.interrupted else ""))

        stopped = None
        try:
            with _kernel_env(REPO_ROOT, allow_mixed):
                _execute(tasks, jobs, done)
        except KeyboardInterrupt as exc:
            stopped = signal_name(exc)
        finally:
            order = {p.stem: i for i, p in enumerate(paths)}
            results.sort(key=lambda r: order.get(r.name, len(order)))
            meta["seconds"] = round(time.perf_counter() - t_all, 2)
            meta["interrupted"] = stopped is not None
            index = write_index(out, merge_results(out, earlier, results), meta)
            shutil.rmtree(staging, ignore_errors=True)
    if stopped:
        n_ok = sum(r.ok for r in results)
        raise Interrupted(f"stopped by {stopped}: {n_ok} of {len(results)} notebooks built; partial report: {index}")
    failed = {r.name: r.error or "failed" for r in results if not r.ok}
    if failed and raise_on_error:
        raise ReportError(index, failed)
    return index


def _execute(tasks: list[tuple], jobs: int, done: Callable[[NotebookResult], None]) -> None:
    """Run ``tasks`` (here one after another, or in ``jobs`` workers), calling ``done`` with each
    result; a stop (Ctrl-C, SIGTERM) reports the rest as not run and is raised again."""
    if jobs != 1:
        why = _run_workers(tasks, jobs, done)
        if why:
            raise Terminated() if why == "SIGTERM" else KeyboardInterrupt()
        return
    for i, t in enumerate(tasks):
        try:
            res = _run_one(*t)
        except KeyboardInterrupt as exc:
            res = _not_run(t, f"interrupted ({signal_name(exc)})")
        done(res)
        if res.interrupted:
            why = "SIGTERM" if "SIGTERM" in (res.error or "") else "Ctrl-C"
            for rest in tasks[i + 1:]:
                done(_not_run(rest, f"not run: interrupted ({why})"))
            raise Terminated() if why == "SIGTERM" else KeyboardInterrupt()
