"""The progress line of ``gdnlab plan`` and ``gdnlab report``: on stderr when it is a terminal, none
with ``--no-progress`` or when stderr is not a terminal; what the command prints is the same either
way. The terminal is a text buffer that says it is one."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from gdnlab.cli import main
from gdnlab.cli import report as cli_report

REPO = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def fake_build(monkeypatch, tmp_path):
    """``build_report`` stand-in: reports two notebooks through ``log`` (or stderr, as the real one does
    without ``log``) and returns an index path; records its keyword arguments."""
    seen: dict = {}

    def build(**kw):
        seen.update(kw)
        say = kw.get("log") or (lambda s: print(s, file=sys.stderr))
        for name in ("01_kernel_sweep", "02_nsight_traces"):
            say(f"gdnlab report: {name:<24} ok (0.1 s)")
        return tmp_path / "index.html"

    monkeypatch.setattr(cli_report, "build_report", build)
    return seen


def _run(argv: list[str], monkeypatch, capsys, terminal: bool) -> tuple[int, str, str]:
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    rc = main(argv)
    return rc, capsys.readouterr().out, err.getvalue()


def test_report_progress_on_a_terminal(fake_build, monkeypatch, capsys, tmp_path):
    rc, out, err = _run(["report", "-n", "01,02", "--out", str(tmp_path / "r")], monkeypatch, capsys, True)
    assert rc == 0 and out.strip() == str(tmp_path / "index.html")
    assert "log" in fake_build
    assert "gdnlab report: 0/2 notebooks" in err and "gdnlab report: 1/2 notebooks" in err
    lines = [s.strip() for s in err.replace("\r", "\n").splitlines() if "ok (0.1 s)" in s]
    assert lines == ["gdnlab report: 01_kernel_sweep          ok (0.1 s)",
                     "gdnlab report: 02_nsight_traces         ok (0.1 s)"]


@pytest.mark.parametrize("argv, terminal", [(["--no-progress"], True), ([], False)],
                         ids=["no-progress", "not-a-terminal"])
def test_report_without_progress_line(argv, terminal, fake_build, monkeypatch, capsys, tmp_path):
    rc, out, err = _run(["report", "--out", str(tmp_path / "r"), *argv], monkeypatch, capsys, terminal)
    assert rc == 0 and out.strip() == str(tmp_path / "index.html")
    assert "log" not in fake_build and "notebooks" not in err and "\r" not in err
    assert err.splitlines() == ["gdnlab report: 01_kernel_sweep          ok (0.1 s)",
                                "gdnlab report: 02_nsight_traces         ok (0.1 s)"]


def test_plan_progress_on_a_terminal_only(monkeypatch, capsys):
    """The shipped-data plan, once on a terminal and once with --no-progress: the same table on stdout,
    the progress line only on the terminal, cleared at the end."""
    monkeypatch.chdir(REPO)
    argv = ["plan", "--batches", "1,64", "--fitted", "none"]
    rc, out_tty, err_tty = _run(argv, monkeypatch, capsys, True)
    assert rc == 0 and "gdnlab plan: 0/4 stages" in err_tty and "stages" in err_tty
    assert err_tty.endswith("\r") and "Traceback" not in err_tty          # the line clears itself
    rc, out, err = _run([*argv, "--no-progress"], monkeypatch, capsys, True)
    assert rc == 0 and err == "" and out == out_tty and out.startswith("gdnlab plan · H200")
