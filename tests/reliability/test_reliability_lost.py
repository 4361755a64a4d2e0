"""Reliability corpus, part 1: nothing the user had is lost.

Two writers on one output, re-runs that fail, kills (SIGTERM) and Ctrl-C (SIGINT) at awkward moments,
outputs reached through a symbolic link. Every case says what must hold afterwards: the earlier result
or a complete new one, one clear line for a refused second writer, no stray temporary files or folders,
no stray child processes. Commands run as ``python -m gdnlab`` in a child process where the case is
about processes and signals, in-process otherwise; ``nsys`` is a small fake (a Python script) that runs
the profiled command as its child, as the real one does.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gdnlab import capture as cap
from gdnlab.results import KEY_COLUMNS, load_sweep, point_key

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}

#: 16 points on the CPU reference backend (2 state dtypes x 2 timings x 4 batches), a few seconds
SWEEP16 = ["sweep", "--backends", "reference", "--device", "cpu", "--strategies", "none", "--modes", "decode",
           "--batches", "1,2,4,8", "--timing", "amortised,single", "--state-dtypes", "float32,bfloat16",
           "--presets", "qwen3.5-397b-a17b@tp16", "--repeats", "5", "--warmup", "1", "--no-check",
           "--copy-mib", "1", "--no-progress"]
#: 2 points, for cases about the output rather than the measurement
SWEEP2 = [*SWEEP16[:SWEEP16.index("--batches")], "--batches", "1,2", "--timing", "single", "--state-dtypes", "float32",
          *SWEEP16[SWEEP16.index("--presets"):]]


# ------------------------------------------------------------------------------------------ helpers

def _gdnlab(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gdnlab", *args], cwd=str(cwd), env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdnlab", *args], cwd=str(cwd), env=ENV, text=True,
                          capture_output=True, timeout=timeout)


def _wait_for(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _pid_from(pidfile: Path, timeout: float, what: str, proc: subprocess.Popen) -> int:
    """The pid a child writes to ``pidfile``, once the file holds it whole (the file exists from the
    moment the child opens it, before the number is written)."""
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), timeout, what, proc)
    return int(pidfile.read_text())


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                    # a zombie waiting for its parent is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _gone_soon(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _strays(folder: Path) -> list[str]:
    """Temporary files, lock files and staging folders left anywhere under ``folder``."""
    out = []
    for p in folder.rglob("*"):
        n = p.name
        if n.endswith((".tmp", ".lock")) or "-partial-" in n or ".building-" in n:
            out.append(str(p.relative_to(folder)))
    return sorted(out)


def _parts_ok(folder: Path) -> bool:
    """A kept staging folder of a sweep holds only complete parts and its manifest."""
    return all(re.fullmatch(r"part-\d{6}\.parquet|run\.json", p.name) for d in folder.glob(".*.parts")
               for p in d.iterdir())


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def _keys(df) -> list[tuple]:
    return [point_key(r) for r in df[list(KEY_COLUMNS)].to_dict("records")]


# ------------------------------------------------------------------------------------------ sweep cases

def _second_writer(tmp_path: Path, second: list[str]) -> None:
    """A first ``--resume`` run is frozen (SIGSTOP) after its first stored point; a second run on the
    same --out must be refused with one line naming the first; the first then completes all 16 points."""
    out = tmp_path / "sweep.parquet"
    first = _gdnlab([*SWEEP16, "--out", str(out), "--resume"], tmp_path)
    try:
        _wait_for(lambda: any(tmp_path.glob(".sweep.parquet.parts/part-*.parquet")), 120, "the first point", first)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            other = _run([*SWEEP16, "--out", str(out), *second], tmp_path)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        _, err_first = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err_first
    assert other.returncode == 3, (other.returncode, other.stderr)
    line = _one_line(other.stderr)
    assert line.startswith("gdnlab sweep: unavailable: ") and f"pid {first.pid}" in line, line
    df = load_sweep(out)
    assert len(df) == 16 and len(set(_keys(df))) == 16
    assert _strays(tmp_path) == []


def case_sweep_second_resume_writer_refused(tmp_path: Path) -> None:
    _second_writer(tmp_path, ["--resume"])


def case_sweep_second_overwrite_writer_refused(tmp_path: Path) -> None:
    _second_writer(tmp_path, ["--overwrite"])


def case_sweep_stale_lock_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "sweep.parquet"
    dead = _dead_pid()
    lock = tmp_path / ".sweep.parquet.lock"
    lock.write_text(json.dumps({"pid": dead, "host": os.uname().nodename, "command": "gdnlab sweep"}))
    done = _run([*SWEEP2, "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stale lock" in done.stderr and str(dead) in done.stderr, done.stderr
    assert len(load_sweep(out)) == 2 and not lock.exists() and _strays(tmp_path) == []


def case_sweep_live_lock_of_another_process_refused(tmp_path: Path) -> None:
    """A lock held by a live process (here: a holder started with the lock module) refuses the run."""
    out = tmp_path / "sweep.parquet"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom gdnlab.outputs import output_lock\n"
        f"with output_lock({str(out)!r}, command='gdnlab sweep'):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = _run([*SWEEP2, "--out", str(out)], tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 3 and f"pid {holder.pid}" in _one_line(refused.stderr), refused.stderr
    assert not out.exists()


def case_sweep_no_lock_left_after_refused_resume(tmp_path: Path) -> None:
    """A resume refused for the data (another GPU's file) leaves the file as it was and no lock."""
    out = tmp_path / "sweep.parquet"
    import shutil

    shutil.copy(REPO / "traces/h100/sweep.parquet", out)
    before = _sha(out)
    done = _run([*SWEEP2, "--out", str(out), "--resume"], tmp_path)
    assert done.returncode == 4 and "H100" in _one_line(done.stderr), done.stderr
    assert _sha(out) == before and _strays(tmp_path) == []


def _symlinked(tmp_path: Path) -> tuple[Path, Path]:
    real_dir = tmp_path / "data"
    real_dir.mkdir()
    real = real_dir / "sweep.parquet"
    done = _run([*SWEEP2, "--out", str(real)], tmp_path)
    assert done.returncode == 0, done.stderr
    link = tmp_path / "latest.parquet"
    link.symlink_to(real)
    return link, real


def case_sweep_resume_through_symlink_keeps_link(tmp_path: Path) -> None:
    link, real = _symlinked(tmp_path)
    wider = [*SWEEP2[:SWEEP2.index("--batches")], "--batches", "1,2,4", *SWEEP2[SWEEP2.index("--batches") + 2:]]
    done = _run([*wider, "--out", str(link), "--resume"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert len(load_sweep(real)) == 3 and _strays(tmp_path) == []


def case_sweep_overwrite_through_symlink_keeps_link(tmp_path: Path) -> None:
    link, real = _symlinked(tmp_path)
    done = _run([*SWEEP2, "--out", str(link), "--overwrite"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert len(load_sweep(real)) == 2 and _strays(tmp_path) == []


def _killed_overwrite(tmp_path: Path, sig: int) -> Path:
    """An --overwrite run over an earlier file, stopped by ``sig`` after its first point: the earlier file
    is byte-identical, the exit is one line with code 130, nothing stray is left."""
    out = tmp_path / "sweep.parquet"
    done = _run([*SWEEP2, "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    before = _sha(out)
    proc = _gdnlab([*SWEEP16, "--out", str(out), "--overwrite"], tmp_path)
    try:
        _wait_for(lambda: any(tmp_path.glob(".sweep.parquet.parts/part-*.parquet")), 120, "the first point", proc)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert _one_line(err).startswith("gdnlab sweep: interrupted: ")
    assert _sha(out) == before
    assert _strays(tmp_path) == [] and _parts_ok(tmp_path)
    return out


def case_sweep_sigterm_keeps_earlier_file(tmp_path: Path) -> None:
    _killed_overwrite(tmp_path, signal.SIGTERM)


def case_sweep_sigint_keeps_earlier_file(tmp_path: Path) -> None:
    _killed_overwrite(tmp_path, signal.SIGINT)


def case_sweep_sigterm_then_resume_completes(tmp_path: Path) -> None:
    out = _killed_overwrite(tmp_path, signal.SIGTERM)
    done = _run([*SWEEP16, "--out", str(out), "--resume"], tmp_path)
    assert done.returncode == 0, done.stderr
    df = load_sweep(out)
    assert len(df) == 16 and len(set(_keys(df))) == 16
    assert _strays(tmp_path) == [] and not list(tmp_path.glob(".*.parts"))


# ------------------------------------------------------------------------------------------ report cases

nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")


def _notebook(path: Path, *code: str, params: str = 'tag = "first"\nfail = False\nnap = 0.0') -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy"), p, *(nbformat.v4.new_code_cell(c) for c in code)]
    nbformat.write(nb, str(path))
    return str(path)


def _toy(folder: Path, name: str = "toy") -> str:
    return _notebook(folder / f"{name}.ipynb", "print('page of', tag)", "assert not fail, 'asked to fail'")


def _manifest(out: Path) -> dict[str, dict]:
    return {n["name"]: n for n in json.loads((out / "report.json").read_text())["notebooks"]}


def _build(out: Path, notebooks: list[str], **params):
    from gdnlab import report

    return report.build_report(out, notebooks=notebooks, parameters=params or None, jobs=1, log=lambda s: None)


def case_report_failed_rerun_keeps_good_page(tmp_path: Path) -> None:
    from gdnlab import report

    nb, out = _toy(tmp_path), tmp_path / "rep"
    _build(out, [nb], tag="good")
    page = out / "toy.html"
    before = _sha(page)
    with pytest.raises(report.ReportError):
        _build(out, [nb], tag="broken", fail=True)
    assert _sha(page) == before and "page of good" in page.read_text()
    assert _strays(tmp_path) == []


def case_report_failed_rerun_page_kept_aside_and_listed(tmp_path: Path) -> None:
    from gdnlab import report

    nb, out = _toy(tmp_path), tmp_path / "rep"
    _build(out, [nb], tag="good")
    with pytest.raises(report.ReportError):
        _build(out, [nb], tag="broken", fail=True)
    entry = _manifest(out)["toy"]
    assert not entry["ok"] and entry["html"] == "toy.failed.html"
    assert "page of broken" in (out / "toy.failed.html").read_text()
    assert entry["earlier"]["html"] == "toy.html" and entry["earlier"]["ok"]
    index = (out / "index.html").read_text()
    assert 'href="toy.html"' in index and 'href="toy.failed.html"' in index and "FAILED" in index


def case_report_partial_rerun_merges_index(tmp_path: Path) -> None:
    a, b, out = _toy(tmp_path, "a"), _toy(tmp_path, "b"), tmp_path / "rep"
    _build(out, [a, b], tag="both")
    _build(out, [a], tag="again")
    by = _manifest(out)
    assert set(by) == {"a", "b"} and by["a"]["ok"] and by["b"]["ok"]
    assert "page of again" in (out / "a.html").read_text() and "page of both" in (out / "b.html").read_text()
    index = (out / "index.html").read_text()
    assert 'href="a.html"' in index and 'href="b.html"' in index


def case_report_partial_rerun_keeps_entry_of_removed_page_out(tmp_path: Path) -> None:
    """An earlier entry whose page is gone is not listed (the index links only pages that exist)."""
    a, b, out = _toy(tmp_path, "a"), _toy(tmp_path, "b"), tmp_path / "rep"
    _build(out, [a, b], tag="both")
    (out / "b.html").unlink()
    _build(out, [a], tag="again")
    assert set(_manifest(out)) == {"a"} and 'href="b.html"' not in (out / "index.html").read_text()


def case_report_success_after_failure_replaces_page_and_clears_aside(tmp_path: Path) -> None:
    from gdnlab import report

    nb, out = _toy(tmp_path), tmp_path / "rep"
    _build(out, [nb], tag="good")
    with pytest.raises(report.ReportError):
        _build(out, [nb], tag="broken", fail=True)
    _build(out, [nb], tag="fixed")
    assert "page of fixed" in (out / "toy.html").read_text()
    assert not (out / "toy.failed.html").exists() and not (out / "toy.failed.ipynb").exists()
    entry = _manifest(out)["toy"]
    assert entry["ok"] and entry["html"] == "toy.html" and not entry.get("earlier")


def _killed_report(tmp_path: Path, sig: int, jobs: str) -> None:
    """A report re-run stopped by ``sig`` (sent to gdnlab's pid only) while its notebook sleeps: exits
    within seconds, the notebook's kernel is gone, the earlier good page stays, no staging folder."""
    pidfile = tmp_path / "kernel.pid"
    nb = _notebook(tmp_path / "slow.ipynb", "import os, time, pathlib\n"
                   f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
                   "time.sleep(nap)\nprint('page of', tag)")
    out = tmp_path / "rep"
    _build(out, [nb], tag="good")
    page_before = _sha(out / "slow.html")
    pidfile.unlink()
    proc = _gdnlab(["report", "--out", str(out), "-j", jobs, "-n", nb, "-p", "nap=120", "-p", "tag=late"], REPO)
    try:
        kernel = _pid_from(pidfile, 90, "the notebook's kernel", proc)
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=40)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and took < 20
    assert _gone_soon(kernel), "the notebook's kernel outlived the report"
    assert _sha(out / "slow.html") == page_before
    assert _strays(tmp_path) == []
    assert "slow" in _manifest(out)


def case_report_sigterm_one_job(tmp_path: Path) -> None:
    _killed_report(tmp_path, signal.SIGTERM, "1")


def case_report_sigterm_workers(tmp_path: Path) -> None:
    _killed_report(tmp_path, signal.SIGTERM, "2")


def case_report_sigint_to_pid_only(tmp_path: Path) -> None:
    _killed_report(tmp_path, signal.SIGINT, "2")


def case_report_second_build_same_folder_refused(tmp_path: Path) -> None:
    from gdnlab.errors import UnavailableError
    from gdnlab.outputs import output_lock

    nb, out = _toy(tmp_path), tmp_path / "rep"
    with output_lock(out, command="gdnlab report"):
        with pytest.raises(UnavailableError, match=rf"pid {os.getpid()}"):
            _build(out, [nb])
    assert not out.exists() and _strays(tmp_path) == []


# ------------------------------------------------------------------------------------------ capture cases

FAKE_NSYS = r'''#!{python}
"""A stand-in for nsys: `profile ... -o OUT ... CMD` runs CMD as its child and writes OUT.nsys-rep
(exit code: CMD's; stopped by Ctrl-C: no report, exit 130); `export ... -o DB ... REP` copies REP into
DB unless $FAKE_EXPORT_RC is set."""
import os, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
if args[0] == "profile":
    out = args[args.index("-o") + 1]
    cmd = args[args.index("--force-overwrite=true") + 1:]
    try:
        rc = subprocess.call(cmd)
    except KeyboardInterrupt:               # stopped (as nsys is on Ctrl-C): no report
        sys.exit(130)
    Path(out + ".nsys-rep").write_text(f"report of {{cmd[-1]}} rc={{rc}}")
    sys.exit(rc)
if args[0] == "export":
    if os.environ.get("FAKE_EXPORT_RC"):
        sys.exit(int(os.environ["FAKE_EXPORT_RC"]))
    Path(args[args.index("-o") + 1]).write_text("db of " + Path(args[-1]).read_text())
    sys.exit(0)
sys.exit(2)
'''


def _fake_nsys(folder: Path) -> str:
    exe = folder / "bin" / "nsys"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(FAKE_NSYS.format(python=sys.executable))
    exe.chmod(0o755)
    return str(exe)


def _earlier_pair(folder: Path) -> tuple[Path, Path, dict[str, str]]:
    rep, db = folder / "o.nsys-rep", folder / "o.sqlite"
    rep.write_text("earlier report")
    db.write_text("earlier db")
    return rep, db, {"rep": _sha(rep), "db": _sha(db)}


def case_capture_failed_command_keeps_earlier_pair(tmp_path: Path) -> None:
    nsys = _fake_nsys(tmp_path)
    rep, db, before = _earlier_pair(tmp_path)
    res = cap.capture([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "o", nsys=nsys)
    assert res.returncode == 3
    assert {"rep": _sha(rep), "db": _sha(db)} == before
    assert _strays(tmp_path) == []


def case_capture_failed_command_report_kept_aside(tmp_path: Path) -> None:
    nsys = _fake_nsys(tmp_path)
    _earlier_pair(tmp_path)
    res = cap.capture([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "o", nsys=nsys)
    assert res.rep_path == tmp_path / "o.failed.nsys-rep" and "rc=3" in res.rep_path.read_text()


def case_capture_failed_export_keeps_earlier_pair(tmp_path: Path, monkeypatch) -> None:
    nsys = _fake_nsys(tmp_path)
    rep, db, before = _earlier_pair(tmp_path)
    monkeypatch.setenv("FAKE_EXPORT_RC", "1")
    with pytest.raises(cap.CaptureError, match="nsys export"):
        cap.capture([sys.executable, "-c", "pass"], tmp_path / "o", nsys=nsys)
    assert {"rep": _sha(rep), "db": _sha(db)} == before          # no new report beside the old export
    assert _strays(tmp_path) == []


def case_capture_success_replaces_both(tmp_path: Path) -> None:
    nsys = _fake_nsys(tmp_path)
    rep, db, before = _earlier_pair(tmp_path)
    res = cap.capture([sys.executable, "-c", "pass"], tmp_path / "o", nsys=nsys)
    assert res.returncode == 0 and res.rep_path == rep and res.sqlite_path == db
    assert db.read_text() == "db of " + rep.read_text() and "rc=0" in rep.read_text()
    assert _strays(tmp_path) == [] and not list(tmp_path.glob("o.failed.*"))


def _killed_capture(tmp_path: Path, sig: int) -> None:
    """``gdnlab capture`` stopped by ``sig`` sent to its own pid while the profiled command runs: exits
    within seconds with code 130, the profiled command (nsys's child) is gone, the earlier pair stays."""
    nsys = _fake_nsys(tmp_path)
    rep, db, before = _earlier_pair(tmp_path)
    pidfile = tmp_path / "child.pid"
    child = (f"import os, time, pathlib\npathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
             "try:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n    raise SystemExit(130)\n")
    proc = _gdnlab(["capture", "--nsys", nsys, "--out", str(tmp_path / "o"), "--", sys.executable, "-c", child],
                   tmp_path)
    try:
        kid = _pid_from(pidfile, 60, "the profiled command", proc)
        time.sleep(0.2)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert _one_line(err).startswith("gdnlab capture: interrupted: ")
    assert _gone_soon(kid), "the profiled command outlived gdnlab capture"
    assert {"rep": _sha(rep), "db": _sha(db)} == before
    assert _strays(tmp_path) == []


def case_capture_sigint_stops_the_profiled_command(tmp_path: Path) -> None:
    _killed_capture(tmp_path, signal.SIGINT)


def case_capture_sigterm_stops_the_profiled_command(tmp_path: Path) -> None:
    _killed_capture(tmp_path, signal.SIGTERM)


def case_capture_second_writer_same_out_refused(tmp_path: Path) -> None:
    from gdnlab.errors import UnavailableError
    from gdnlab.outputs import output_lock

    nsys = _fake_nsys(tmp_path)
    rep, db, before = _earlier_pair(tmp_path)
    with output_lock(tmp_path / "o", command="gdnlab capture"):
        with pytest.raises(UnavailableError, match=rf"pid {os.getpid()}"):
            cap.capture([sys.executable, "-c", "pass"], tmp_path / "o", nsys=nsys)
    assert {"rep": _sha(rep), "db": _sha(db)} == before and _strays(tmp_path) == []


# ------------------------------------------------------------------------------------------ the corpus

CASES: dict[str, Callable] = {name[len("case_"):].replace("_", "-"): fn for name, fn in dict(globals()).items()
                              if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_nothing_is_lost(case, tmp_path, monkeypatch):
    fn = CASES[case]
    if "monkeypatch" in fn.__code__.co_varnames[:fn.__code__.co_argcount]:
        fn(tmp_path, monkeypatch)
    else:
        fn(tmp_path)
