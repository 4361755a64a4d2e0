"""Broken inputs and faults against every ``gdnlab`` command, as a new user would try them.

Each case asserts: a non-zero exit code from :data:`gdnlab.errors.EXIT_CODES` (the expected one), stderr
is one line ``gdnlab COMMAND: KIND: ...`` (argparse usage errors: usage + ``... error: ...``, exit 2),
no stack trace, and every file that was in the working folder before is byte-identical after. The
files are made here (random bytes, empty files, folders, FIFOs, copies of the shipped sweep, counters
table, trace and raw ncu CSV); ``traces/`` links to the shipped data for ``plan``'s defaults. Most
cases run in-process (``gdnlab.cli.main``); FIFOs and the real exit codes run ``python -m gdnlab``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdnlab.cli import ALIASES, COMMANDS, build_parser, main
from gdnlab.errors import EXIT_CODES

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
CODES = {code for _, code, _ in EXIT_CODES}
NO_CUDA = not torch.cuda.is_available()
FALSE = shutil.which("false")

# ---------------------------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A working folder with broken and wrong-kind inputs, outputs the user already had, and ``traces/``."""
    ws = tmp_path_factory.mktemp("cli_errors")
    rng = __import__("random").Random(0)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    (ws / "rand.bin").write_bytes(noise)
    (ws / "rand.parquet").write_bytes(noise)
    (ws / "empty.parquet").write_bytes(b"")
    (ws / "adir").mkdir()
    shutil.copy(REPO / "traces/h100/sweep.parquet", ws / "sweep.parquet")
    shutil.copy(REPO / "traces/h100/ncu_metrics.parquet", ws / "counters.parquet")
    shutil.copy(REPO / "traces/h100/flashinfer_c64_osl512_decode.sqlite", ws / "trace.sqlite")
    shutil.copy(DATA / "ncu_raw_h100.csv", ws / "raw.csv")
    shutil.copy(DATA / "ncu_manifest_h100.json", ws / "manifest.json")
    # what the user already had, which no failure may touch
    shutil.copy(REPO / "traces/h100/sweep.parquet", ws / "existing.parquet")
    (ws / "README.md").write_text("# my notes\n")
    (ws / "old.nsys-rep").write_bytes(b"an earlier capture\n")
    (ws / "wl.json").write_text('{"earlier": true}\n')
    (ws / "outc").mkdir()
    (ws / "outc/ncu_metrics.parquet").write_bytes((ws / "counters.parquet").read_bytes())
    (ws / "outc/ncu_vs_sweep.csv").write_text("earlier,comparison\n")
    if hasattr(os, "mkfifo"):
        os.mkfifo(ws / "fifo")
        os.mkfifo(ws / "fifo.parquet")
    (ws / "traces").symlink_to(REPO / "traces", target_is_directory=True)
    return ws


def _snapshot(ws: Path) -> dict[str, str]:
    """Path -> content hash of every regular file in ``ws`` (``traces/`` -> size and mtime only)."""
    out = {}
    for root, _, files in os.walk(ws, followlinks=True):
        for f in files:
            p = Path(root) / f
            rel = str(p.relative_to(ws))
            if not p.is_file():
                out[rel] = "special"
            elif rel.startswith("traces"):
                st = p.stat()
                out[rel] = f"{st.st_size}:{st.st_mtime_ns}"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _assert_kept(before: dict[str, str], ws: Path) -> None:
    after = _snapshot(ws)
    lost = {k for k in before if k not in after}
    changed = {k for k in before if k in after and after[k] != before[k]}
    assert not lost and not changed, f"pre-existing files lost {sorted(lost)} or changed {sorted(changed)}"


def _assert_error(code: int, err: str, command: str, expected: int, usage: bool = False) -> None:
    """One line ``gdnlab COMMAND: KIND: ...`` (or argparse's usage + error), no traceback, ``expected``."""
    assert "Traceback" not in err, err
    assert code != 0 and code in CODES, (code, err)
    assert code == expected, (code, err)
    lines = err.strip().splitlines()
    if usage:        # argparse: "usage: ..." (maybe wrapped) then "gdnlab [COMMAND]: error: ..."
        assert lines[0].startswith("usage: gdnlab") and re.match(r"gdnlab( \w+)?: error: ", lines[-1]), err
        return
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    name = ALIASES.get(command, command)
    kinds = "|".join(re.escape(kind) for _, _, kind in EXIT_CODES)
    assert re.match(rf"gdnlab {name}: ({kinds}): \S", lines[0]), lines[0]


# ---------------------------------------------------------------------------------------------- cases

SWEEP = ["sweep", "--backends", "reference", "--device", "cpu", "--strategies", "none", "--modes", "decode",
         "--batches", "1", "--state-dtypes", "float32", "--no-progress", "--out", "new.parquet"]
STEP = ["sweep", "--backends", "reference", "--strategy-backends", "reference", "--device", "cpu", "--modes",
        "none", "--strategies", "full_cache", "--no-progress", "--out", "new.parquet"]
WL = ["workload", "--backend", "reference", "--device", "cpu", "--layers", "1", "--osl", "2", "--batch", "1",
      "--preset", "qwen3.5-397b-a17b@tp16"]          # progress on: a bad value must still be the only line
CT = ["counters", "--ncu", "/nonexistent/ncu"]
RAW = ["--from-raw", "raw.csv", "--manifest", "manifest.json"]

#: (id, argv, exit code, argparse usage error?)
CASES: list[tuple[str, list[str], int, bool]] = [
    # backends
    ("backends-unknown-flag", ["backends", "--nosuch"], 2, True),
    # summary
    ("summary-batch-0", ["summary", "--batch", "0"], 2, True),
    ("summary-batch-negative", ["summary", "--batches", "-4"], 2, True),
    ("summary-batch-text", ["summary", "--batches", "1,x"], 2, True),
    ("summary-preset", ["summary", "--device", "cpu", "--preset", "nosuch"], 2, False),
    ("summary-dtype", ["summary", "--device", "cpu", "--state-dtype", "fp8"], 2, False),
    ("summary-device-tpu", ["summary", "--device", "tpu"], 2, False),
    ("summary-draft-tokens-0", ["summary", "--device", "cpu", "--draft-tokens", "0"], 2, False),
    ("summary-tp-not-dividing", ["summary", "--device", "cpu", "--tp", "3"], 2, False),
    ("summary-file-missing", ["summary", "nosuch.parquet"], 5, False),
    ("summary-file-random-bytes", ["summary", "rand.bin"], 4, False),
    ("summary-file-empty", ["summary", "empty.parquet"], 4, False),
    ("summary-file-counters-table", ["summary", "counters.parquet"], 4, False),
    ("summary-file-raw-ncu-csv", ["summary", "raw.csv"], 4, False),
    ("summary-file-folder-without-sweep", ["summary", "adir"], 5, False),
    ("summary-file-top-0", ["summary", "trace.sqlite", "--top", "0"], 2, False),
    ("summary-two-files", ["summary", "sweep.parquet", "trace.sqlite"], 2, True),
    # sweep: bad values
    ("sweep-device-tpu", [*SWEEP, "--device", "tpu"], 2, False),
    ("sweep-batch-0", [*SWEEP, "--batches", "0"], 2, False),
    ("sweep-batch-negative", [*SWEEP, "--batches", "-4"], 2, False),
    ("sweep-batch-text", [*SWEEP, "--batches", "x"], 2, False),
    ("sweep-preset", [*SWEEP, "--presets", "nosuch"], 2, False),
    ("sweep-state-dtype", [*SWEEP, "--state-dtypes", "fp8"], 2, False),
    ("sweep-act-dtype", [*SWEEP, "--act-dtype", "fp8"], 2, False),
    ("sweep-backend-unknown", [*SWEEP, "--backends", "nosuch"], 2, False),
    ("sweep-strategy-unknown", [*STEP, "--strategies", "nosuch"], 2, False),
    ("sweep-accept-len-0", [*STEP, "--accept-len", "0"], 2, False),
    ("sweep-timing-unknown", [*SWEEP, "--timing", "nosuch"], 2, False),
    ("sweep-call-strategy-unknown", [*SWEEP, "--modes", "verify", "--draft-tokens", "2", "--call-strategies",
                                     "nosuch"], 2, False),
    ("sweep-verify-T-1", [*SWEEP, "--modes", "verify", "--draft-tokens", "1"], 2, False),
    ("sweep-repeats-0", [*SWEEP, "--repeats", "0"], 2, False),
    ("sweep-min-sample-nan", [*SWEEP, "--min-sample-us", "nan"], 2, False),
    ("sweep-engine-unknown", [*SWEEP, "--engine", "vllm"], 2, True),
    ("sweep-resume-and-overwrite", [*SWEEP, "--resume", "--overwrite"], 2, False),
    ("sweep-retry-without-resume", [*SWEEP, "--retry-failed"], 2, False),
    ("sweep-backend-flashinfer-unavailable", [*SWEEP, "--backends", "flashinfer"], 3, False),
    ("sweep-backend-triton-unavailable", [*SWEEP, "--backends", "triton"], 3, False),
    # sweep: files
    ("sweep-out-trace", [*SWEEP, "--out", "trace.sqlite"], 2, False),
    ("sweep-out-exists", [*SWEEP, "--out", "existing.parquet"], 2, False),
    ("sweep-resume-random-bytes", [*SWEEP, "--out", "rand.parquet", "--resume"], 4, False),
    ("sweep-resume-empty", [*SWEEP, "--out", "empty.parquet", "--resume"], 4, False),
    ("sweep-resume-counters-table", [*SWEEP, "--out", "counters.parquet", "--resume"], 4, False),
    ("sweep-overwrite-unavailable-backend", [*SWEEP, "--out", "existing.parquet", "--overwrite", "--backends",
                                             "flashinfer"], 3, False),
    # workload
    ("workload-device-tpu", [*WL, "--device", "tpu"], 2, False),
    ("workload-backend-unknown", [*WL, "--backend", "nosuch"], 2, False),
    ("workload-default-backend-unavailable", [*WL, "--backend", "flashinfer"], 3, False),
    ("workload-batch-0", [*WL, "--batch", "0"], 2, False),
    ("workload-batch-negative", [*WL, "--concurrency", "-2"], 2, False),
    ("workload-batch-text", [*WL, "--batch", "x"], 2, True),
    ("workload-osl-0", [*WL, "--osl", "0"], 2, False),
    ("workload-layers-0", [*WL, "--layers", "0"], 2, False),
    ("workload-layers-too-many", [*WL, "--layers", "999"], 2, False),
    ("workload-preset", [*WL, "--preset", "nosuch"], 2, False),
    ("workload-state-dtype", [*WL, "--state-dtype", "fp8"], 2, False),
    ("workload-strategy-unknown", [*WL, "--draft-tokens", "4", "--strategy", "nosuch"], 2, False),
    ("workload-strategy-option", [*WL, "--draft-tokens", "4", "--strategy", "replay_ring", "--strategy-option",
                                  "ring_slots"], 2, False),
    ("workload-accept-len-above-T", [*WL, "--draft-tokens", "4", "--accept-len", "9"], 2, False),
    ("workload-accept-len-without-T", [*WL, "--accept-len", "2"], 2, False),
    ("workload-json-kept", [*WL, "--backend", "flashinfer", "--json", "wl.json"], 3, False),
    # capture
    ("capture-nothing", ["capture"], 2, False),
    ("capture-strategies-without-workload", ["capture", "--strategies", "a,b", "--", "true"], 2, False),
    ("capture-workload-and-command", ["capture", "--workload", "--backend", "reference", "--", "true"], 2, False),
    ("capture-strategy-unknown", ["capture", "--dry-run", "--strategies", "nosuch", "--workload"], 2, False),
    ("capture-nsys-missing", ["capture", "--nsys", "/nonexistent/nsys", "--", "true"], 3, False),
    ("capture-nsys-folder", ["capture", "--nsys", "adir", "--", "true"], 3, False),
    # counters / metrics
    ("counters-input-missing", [*CT, "--input", "nosuch.parquet"], 5, False),
    ("counters-input-folder", [*CT, "--input", "adir"], 4, False),
    ("counters-input-random-bytes", [*CT, "--input", "rand.bin"], 4, False),
    ("metrics-input-sweep", ["metrics", "--input", "sweep.parquet"], 4, False),
    ("counters-input-trace", [*CT, "--input", "trace.sqlite"], 4, False),
    ("counters-sweep-random-bytes", [*CT, "--input", "counters.parquet", "--sweep", "rand.bin"], 4, False),
    ("counters-sweep-counters-table", [*CT, "--input", "counters.parquet", "--sweep", "counters.parquet"], 4, False),
    ("counters-sweep-trace", [*CT, "--input", "counters.parquet", "--sweep", "trace.sqlite"], 4, False),
    ("counters-sweep-missing", [*CT, "--input", "counters.parquet", "--sweep", "nosuch.parquet"], 5, False),
    ("counters-raw-without-manifest", [*CT, "--from-raw", "raw.csv"], 2, False),
    ("counters-manifest-random-bytes", [*CT, "--from-raw", "raw.csv", "--manifest", "rand.bin"], 4, False),
    ("counters-manifest-missing", [*CT, "--from-raw", "raw.csv", "--manifest", "nosuch.json"], 5, False),
    ("counters-manifest-folder", [*CT, "--from-raw", "raw.csv", "--manifest", "adir"], 4, False),
    ("counters-raw-missing", [*CT, "--from-raw", "nosuch.csv", "--manifest", "manifest.json"], 5, False),
    ("counters-raw-is-a-sweep", [*CT, "--from-raw", "sweep.parquet", "--manifest", "manifest.json"], 4, False),
    ("counters-outputs-kept-bad-sweep", [*CT, *RAW, "--sweep", "rand.bin", "--out", "outc"], 4, False),
    ("counters-html-folder", [*CT, "--input", "counters.parquet", "--html", "adir"], 2, False),
    ("counters-tolerance", [*CT, "--input", "counters.parquet", "--tolerance", "2"], 2, False),
    ("counters-batch-0", [*CT, "--batches", "0", "--out", "outc"], 2, False),
    ("counters-backend-unknown", [*CT, "--backends", "nosuch", "--out", "outc"], 2, False),
    ("counters-mode-unknown", [*CT, "--modes", "nosuch", "--out", "outc"], 2, False),
    ("counters-state-dtype", [*CT, "--state-dtypes", "fp8", "--out", "outc"], 2, False),
    ("counters-ncu-missing-outputs-kept", [*CT, "--out", "outc"], 3, False),
    ("counters-engine-unknown", [*CT, "--engine", "nosuch"], 2, True),
    # report (nothing here executes a notebook)
    ("report-out-existing-file", ["report", "--out", "README.md"], 2, False),
    ("report-notebook-unknown", ["report", "--notebook", "nosuch"], 2, False),
    ("report-parameter-unknown", ["report", "-p", "nosuch=3"], 2, False),
    ("report-parameter-negative", ["report", "--notebook", "02", "-p", "max_kernels=-5"], 2, False),
    ("report-parameter-type", ["report", "-p", "02.max_kernels=abc"], 2, False),
    ("report-parameter-no-name", ["report", "-p", "=3"], 2, True),
    ("report-parameter-no-value", ["report", "-p", "max_kernels"], 2, True),
    ("report-timeout-0", ["report", "--timeout", "0"], 2, True),
    ("report-jobs-0", ["report", "--jobs", "0"], 2, True),
    # plan
    ("plan-gpu-unknown", ["plan", "--gpu", "tpu"], 2, False),
    ("plan-batch-0", ["plan", "--batches", "0"], 2, True),
    ("plan-strategy-unknown", ["plan", "--strategies", "nosuch,full_cache"], 2, False),
    ("plan-state-dtype", ["plan", "--state-dtypes", "fp8"], 2, False),
    ("plan-accept-len-0", ["plan", "--accept-len", "0"], 2, False),
    ("plan-accept-len-nan", ["plan", "--accept-len", "nan"], 2, False),
    ("plan-draft-tokens-1", ["plan", "--draft-tokens", "1"], 2, False),
    ("plan-ctx-negative", ["plan", "--ctx", "-1"], 2, False),
    ("plan-tp-0", ["plan", "--tp", "0"], 2, False),
    ("plan-fitted-unknown", ["plan", "--fitted", "x"], 2, True),
    ("plan-accept-table-missing", ["plan", "--accept-table", "nosuch.csv"], 5, False),
    ("plan-accept-table-folder", ["plan", "--accept-table", "adir"], 4, False),
    ("plan-accept-table-random-bytes", ["plan", "--accept-table", "rand.bin"], 4, False),
    ("plan-accept-table-is-a-sweep", ["plan", "--accept-table", "sweep.parquet"], 4, False),
    ("plan-sweep-random-bytes", ["plan", "--sweep", "rand.bin"], 4, False),
    ("plan-sweep-trace", ["plan", "--sweep", "trace.sqlite"], 4, False),
    ("plan-reference-sweep-counters", ["plan", "--reference-sweep", "counters.parquet"], 4, False),
    ("plan-sweep-mistyped", ["plan", "--sweep", "nosuch.parquet"], 5, False),     # never a fallback to other data
    ("plan-batches-beyond-measured", ["plan", "--batches", "1,100000000"], 2, False),
    ("plan-accept-two-sources", ["plan", "--accept-len", "3", "--accept-curve", "nosuch-curve"], 2, False),
    ("plan-accept-len-at-T1", ["plan", "--accept-len", "1", "--accept-len-draft-tokens", "1"], 2, False),
    ("plan-components-missing", ["plan", "--components", "nosuch"], 4, False),     # gdnlab.model: DataError
    ("plan-components-folder-without-run", ["plan", "--components", "adir"], 4, False),
]

_NEEDS_NO_CUDA = {"sweep-backend-flashinfer-unavailable", "sweep-backend-triton-unavailable",
                  "sweep-overwrite-unavailable-backend", "workload-default-backend-unavailable", "workload-json-kept"}
_NEEDS_FALSE = set()


@pytest.mark.parametrize(("argv", "code", "usage"), [pytest.param(a, c, u, id=i) for i, a, c, u in CASES])
def test_broken_input(argv, code, usage, request, workspace, monkeypatch, capsys):
    if request.node.callspec.id in _NEEDS_NO_CUDA and not NO_CUDA:
        pytest.skip("checks the answer on a machine without CUDA")
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)      # Triton's CPU interpreter would make it runnable
    monkeypatch.delenv("GDNLAB_OUT", raising=False)
    before = _snapshot(workspace)
    if usage:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        rc = exc.value.code
    else:
        rc = main(argv)
    err = capsys.readouterr().err
    _assert_error(rc, err, argv[0], code, usage)
    _assert_kept(before, workspace)
    assert not (workspace / "new.parquet").exists()
    if code in (4, 5):          # a missing or wrong file: the message names it
        files = [a for a in argv if a in before or (workspace / a).is_dir() or a.startswith("nosuch")]
        assert any(f in err for f in files), (files, err)


@pytest.mark.skipif(FALSE is None, reason="needs a 'false' executable")
def test_failed_nsys_keeps_the_earlier_report(workspace, monkeypatch, capsys):
    """An nsys that fails (here: ``false``) leaves the earlier OUT.nsys-rep as it was."""
    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    rc = main(["capture", "--out", "old", "--nsys", FALSE, "--", "true"])
    err = capsys.readouterr().err
    _assert_error(rc, err, "capture", 3)
    assert "old.nsys-rep" in err
    _assert_kept(before, workspace)


@pytest.mark.parametrize("command", ["backends", "report"])
def test_ctrl_c_is_one_line_and_exit_130(command, workspace, monkeypatch, capsys):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    if command == "backends":
        monkeypatch.setattr("gdnlab.kernels.available_backends", interrupted)
    else:
        monkeypatch.setattr("gdnlab.cli.report.build_report", interrupted)
    rc = main([command] + (["--out", "rep"] if command == "report" else []))
    err = capsys.readouterr().err
    _assert_error(rc, err, command, 130)
    assert "Ctrl-C" in err
    _assert_kept(before, workspace)


def test_debug_shows_the_traceback(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    rc = main(["--debug", "summary", "--device", "tpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("gdnlab summary: bad input: ")


def test_unexpected_errors_are_not_hidden(monkeypatch):
    """A bug (not an expected failure) keeps its stack trace: the boundary does not swallow it."""
    def bug(_args):
        raise AssertionError("a bug")

    monkeypatch.setattr("gdnlab.cli.backends.run", bug)
    with pytest.raises(AssertionError, match="a bug"):
        main(["backends"])


def test_a_missing_package_is_unavailable_not_a_trace(monkeypatch, capsys):
    """A package a command imports inside run() that is not installed: one line, exit 3; a missing
    gdnlab module is a bug and keeps its trace."""
    def needs(name):
        def run(_args):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return run

    monkeypatch.setattr("gdnlab.cli.backends.run", needs("plotly"))
    rc = main(["backends"])
    err = capsys.readouterr().err
    _assert_error(rc, err, "backends", 3)
    assert "plotly" in err and "pip install" in err
    monkeypatch.setattr("gdnlab.cli.backends.run", needs("gdnlab.nosuch"))
    with pytest.raises(ModuleNotFoundError):
        main(["backends"])


def test_system_errors_name_the_path_not_errno(workspace, monkeypatch, capsys):
    """An OSError from the system reads ``PATH: reason``, not ``[Errno N] ...``."""
    def denied(_args):
        raise PermissionError(13, "Permission denied", "locked.parquet")

    monkeypatch.setattr("gdnlab.cli.backends.run", denied)
    rc = main(["backends"])
    err = capsys.readouterr().err
    _assert_error(rc, err, "backends", 6)
    assert "locked.parquet: permission denied" in err and "Errno" not in err


def _os_errors() -> list:
    from gdnlab.tools import ToolNotFoundError
    from gdnlab.traces.errors import TraceNotFoundError

    return [
        pytest.param(TraceNotFoundError("t.sqlite"), "t.sqlite: no such file", id="trace-not-found"),
        pytest.param(FileNotFoundError(2, "No such file or directory", "s.parquet"),
                     "s.parquet: no such file or directory", id="errno"),
        pytest.param(IsADirectoryError(21, "Is a directory", ".x.tmp", None, "x"), ".x.tmp -> x: is a directory",
                     id="errno-two-paths"),
        pytest.param(ToolNotFoundError("ncu not found: set $NCU"), "ncu not found: set $NCU", id="tool"),
        pytest.param(FileNotFoundError("m.json: no such manifest file"), "m.json: no such manifest file",
                     id="message-only"),
        pytest.param(ValueError("first line\nsecond line"), "first line", id="multi-line"),
        pytest.param(KeyboardInterrupt(), "stopped by Ctrl-C (what was complete is kept)", id="ctrl-c"),
    ]


@pytest.mark.parametrize(("exc", "line"), _os_errors())
def test_error_line(exc, line):
    from gdnlab.cli import error_line

    assert error_line(exc) == line
    assert "Errno" not in error_line(exc) and "None" not in error_line(exc)


def test_exit_codes_are_distinct_per_kind():
    kinds: dict[str, set[int]] = {}
    codes: dict[int, set[str]] = {}
    for _, code, kind in EXIT_CODES:
        kinds.setdefault(kind, set()).add(code)
        codes.setdefault(code, set()).add(kind)
    assert all(len(v) == 1 for v in kinds.values()) and all(len(v) == 1 for v in codes.values()), EXIT_CODES
    assert 0 not in codes and 1 not in codes       # 1: a run that completed with failed parts (report, capture)


# ---------------------------------------------------------------------------- real processes, FIFOs


def _gdnlab(ws: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GDNLAB_OUT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "gdnlab", *argv], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize(("argv", "code"), [
    pytest.param([*SWEEP, "--out", "fifo.parquet", "--resume"], 2, id="sweep-out-fifo-resume"),
    pytest.param([*CT, "--input", "fifo"], 4, id="counters-input-fifo"),
    pytest.param(["plan", "--accept-table", "fifo"], 4, id="plan-accept-table-fifo"),
    pytest.param(["summary", "--batch", "0"], 2, id="summary-batch-0-usage"),
    pytest.param(["summary", "fifo"], 4, id="summary-file-fifo"),
])
def test_real_process(argv, code, workspace):
    """Run as a user does (``python -m gdnlab``): real exit codes; a FIFO given as a file is refused,
    not read (which would block)."""
    before = _snapshot(workspace)
    res = _gdnlab(workspace, *argv)
    _assert_error(res.returncode, res.stderr, argv[0], code, usage=argv[:2] == ["summary", "--batch"])
    _assert_kept(before, workspace)


@pytest.mark.skipif(not NO_CUDA, reason="checks the answer on a machine without CUDA")
def test_real_process_overwrite_with_unavailable_backend_keeps_the_sweep(workspace):
    before = _snapshot(workspace)
    res = _gdnlab(workspace, "sweep", "--out", "existing.parquet", "--overwrite", "--backends", "flashinfer")
    _assert_error(res.returncode, res.stderr, "sweep", 3)
    _assert_kept(before, workspace)


# ---------------------------------------------------------------------------------------- help text


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_alias_is_listed():
    assert set(_subparsers()) == set(COMMANDS) | set(ALIASES)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_help(command):
    p = _subparsers()[command]
    missing = [a.option_strings or a.dest for a in p._actions if not (a.help or "").strip() or a.help == "==SUPPRESS=="]
    assert not missing, f"gdnlab {command}: options without help text: {missing}"


def test_help_shows_no_restructuredtext(capsys):
    texts = {"gdnlab": build_parser().format_help()}
    texts.update({f"gdnlab {c}": p.format_help() for c, p in _subparsers().items()})
    for name, text in texts.items():
        assert "`" not in text and ":func:" not in text and "::\n" not in text, f"{name} --help:\n{text}"


def _examples(text: str) -> list[str]:
    """Command lines shown as examples: ``Example: gdnlab ...`` and the indented ``gdnlab ...`` lines of
    an ``Examples:`` block (which ends at the next line that is not indented)."""
    out, block = [], False
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"examples?:\s*(gdnlab .*)?$", s, re.IGNORECASE)
        if m:
            block = m.group(1) is None
            if m.group(1):
                out.append(m.group(1))
            continue
        if block and s and not line[:1].isspace():
            block = False
        elif block and s.startswith("gdnlab "):
            out.append(s)
    return [re.split(r"\s+#", e)[0].strip() for e in out]


def _all_examples() -> list[tuple[str, str]]:
    return [(c, e) for c, p in _subparsers().items() if c in COMMANDS for e in _examples(p.format_help())]


def test_help_has_examples():
    """Every command but backends shows at least one example in its --help."""
    shown = {c for c, _ in _all_examples()}
    assert set(COMMANDS) - {"backends", "workload", "capture"} <= shown, shown


@pytest.mark.parametrize(("command", "example"), [pytest.param(c, e, id=e) for c, e in _all_examples()])
def test_help_examples_parse(command, example):
    """Each example of ``gdnlab COMMAND --help`` is a valid command line (parsed, not run); sweep's
    examples also make a valid sweep configuration."""
    argv = shlex.split(example)
    assert argv[0] == "gdnlab" and argv[1] in {command, *[a for a, t in ALIASES.items() if t == command]}, example
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"example {example!r} is rejected by the parser (exit {exc.code})")
    if command == "sweep":
        from gdnlab.cli.sweep import config_from_args

        config_from_args(args).validate()


def test_backends_lists_backends_and_strategies_with_reasons(capsys):
    import json

    from gdnlab.cli import main
    from gdnlab.kernels import available_backends
    from gdnlab.strategies import available_strategies

    assert main(["backends", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["backends"]) == set(available_backends())
    assert set(out["strategies"]) == {f"{n}@{b}" for n, b in available_strategies()}
    assert all(v["reason"] for v in [*out["backends"].values(), *out["strategies"].values()])
