"""gdnlab.capture with nsys mocked: finding nsys, command lines, export step, and the ``gdnlab capture``
command (gdnlab.cli.capture)."""
from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import pytest

from gdnlab import capture as cap
from gdnlab.cli import capture as cli_cap
from gdnlab.cli import main as cli_main
from gdnlab.errors import InputError, UnavailableError


def _fake_exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ------------------------------------------------------------------ find_nsys

def test_find_nsys_prefers_env_then_path(tmp_path):
    env_exe = _fake_exe(tmp_path / "env" / "nsys")
    path_exe = _fake_exe(tmp_path / "bin" / "nsys")
    assert cap.find_nsys(env={"NSYS": str(env_exe), "PATH": str(path_exe.parent)}, globs=()) == str(env_exe)
    assert cap.find_nsys(env={"NSYS": str(env_exe.parent), "PATH": ""}, globs=()) == str(env_exe)   # a folder
    assert cap.find_nsys(env={"PATH": str(path_exe.parent)}, globs=()) == str(path_exe)
    # a broken $NSYS is an error naming it (gdnlab.tools' rule: a path the user set is never skipped)
    with pytest.raises(cap.NsysNotFoundError, match="NSYS"):
        cap.find_nsys(env={"NSYS": str(tmp_path / "missing"), "PATH": str(path_exe.parent)}, globs=())
    # an explicit path (--nsys) wins over $NSYS and PATH
    assert cap.find_nsys(env={"NSYS": str(env_exe), "PATH": str(path_exe.parent)}, globs=(),
                         explicit=str(path_exe)) == str(path_exe)


def test_find_nsys_searches_install_folders_newest_first(tmp_path):
    old = _fake_exe(tmp_path / "opt" / "nsight-systems-2023.4.1" / "bin" / "nsys")
    new = _fake_exe(tmp_path / "opt" / "nsight-systems-2025.3.1" / "bin" / "nsys")
    _fake_exe(tmp_path / "opt" / "nsight-systems-2024.1.1" / "bin" / "nsys")
    found = cap.find_nsys(env={"PATH": ""}, globs=(str(tmp_path / "opt" / "nsight-systems*" / "bin" / "nsys"),))
    assert found == str(new) and found != str(old)


def test_find_nsys_not_found_explains(tmp_path):
    with pytest.raises(cap.NsysNotFoundError) as e:
        cap.find_nsys(env={"PATH": str(tmp_path)}, globs=(str(tmp_path / "nothing" / "nsys"),))
    msg = str(e.value)
    assert "NSYS" in msg and "install" in msg.lower() and "nsight-systems" in msg.lower()
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, UnavailableError)


def test_default_globs_cover_usual_places():
    joined = " ".join(cap.NSYS_GLOBS)
    for place in ("/opt/nvidia/nsight-systems", "/usr/local/cuda",
                  "/opt/nvidia/nsight-compute/*/host/target-linux-x64"):
        assert place in joined


# ------------------------------------------------------------------ command lines

def test_profile_command_defaults():
    argv = cap.profile_command(["python", "x.py"], "traces/h100/fi_c64.nsys-rep", nsys="/x/nsys")
    assert argv == ["/x/nsys", "profile", "-t", "cuda,nvtx", "--sample=none", "--cpuctxsw=none",
                    "--capture-range=cudaProfilerApi", "--capture-range-end=stop", "--cuda-graph-trace=node",
                    "-o", "traces/h100/fi_c64", "--force-overwrite=true", "python", "x.py"]


def test_profile_command_options():
    argv = cap.profile_command(["a"], "o", capture_range=None, cuda_graph_trace=None, trace="cuda",
                               extra_args=["--stats=false"])
    assert "--capture-range=cudaProfilerApi" not in argv and not any("cuda-graph" in a for a in argv)
    assert argv[argv.index("-t") + 1] == "cuda" and argv[-2:] == ["--stats=false", "a"]
    with pytest.raises(ValueError):
        cap.profile_command([], "o")


def test_workload_command_adds_capture_steps():
    argv = cap.workload_command(["--backend", "flashinfer", "--concurrency", "64", "--osl", "512",
                                 "--verify-tokens", "4"], python="python3")
    assert argv == ["python3", "-m", "gdnlab", "workload", "--no-progress", "--backend", "flashinfer",
                    "--concurrency", "64", "--osl", "512", "--verify-tokens", "4", "--capture-steps", "8"]
    assert cap.workload_command(["--capture-steps=8"], python="p")[-1] == "--capture-steps=8"


# ------------------------------------------------------------------ capture() with run_child mocked

class FakeRun:
    """Stands in for gdnlab.outputs.run_child: records argv, writes what nsys would write, returns the
    exit code."""

    def __init__(self, *, write_rep=True, write_sqlite=True, rc=0, export_rc=0):
        self.calls: list[list[str]] = []
        self.write_rep, self.write_sqlite, self.rc, self.export_rc = write_rep, write_sqlite, rc, export_rc

    def __call__(self, argv, **kw):
        self.calls.append(list(argv))
        if argv[1] == "profile":
            out = argv[argv.index("-o") + 1]
            if self.write_rep:
                Path(out + ".nsys-rep").write_bytes(b"rep")
            return self.rc
        if argv[1] == "export":
            if self.write_sqlite:
                Path(argv[argv.index("-o") + 1]).write_bytes(b"db")
            return self.export_rc
        raise AssertionError(argv)


def test_capture_profiles_then_exports(tmp_path, monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(cap, "run_child", fake)
    out = tmp_path / "traces" / "h100" / "fi_c64"
    res = cap.capture(["python", "x.py"], out, nsys="/opt/nsys")
    assert res.rep_path == out.with_name("fi_c64.nsys-rep") and res.rep_path.exists()
    assert res.sqlite_path == out.with_name("fi_c64.sqlite") and res.sqlite_path.exists()
    assert res.returncode == 0 and res.command == fake.calls[0]
    exp = fake.calls[1]
    assert exp[:5] == ["/opt/nsys", "export", "--type", "sqlite", "-o"] and exp[6] == "--force-overwrite=true"
    assert Path(exp[5]).parent == out.parent and exp[5].endswith(".sqlite")     # temporary names, then renamed
    assert exp[7] == fake.calls[0][fake.calls[0].index("-o") + 1] + ".nsys-rep" and "-partial-" in exp[7]
    assert sorted(p.name for p in out.parent.iterdir()) == ["fi_c64.nsys-rep", "fi_c64.sqlite"]   # no leftovers


def test_capture_uses_find_nsys(tmp_path, monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(cap, "run_child", fake)
    monkeypatch.setattr(cap, "find_nsys", lambda: "/found/nsys")
    cap.capture(["x"], tmp_path / "o", export_sqlite=False)
    assert [c[0] for c in fake.calls] == ["/found/nsys"]        # no export call


def test_capture_without_nsys_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("NSYS", raising=False)
    monkeypatch.setattr(cap, "NSYS_GLOBS", ())
    real = cap.find_nsys
    monkeypatch.setattr(cap, "find_nsys", lambda: real(globs=()))
    calls = FakeRun()
    monkeypatch.setattr(cap, "run_child", calls)
    with pytest.raises(cap.NsysNotFoundError, match="NSYS"):
        cap.capture(["x"], tmp_path / "o")
    assert calls.calls == []


def test_capture_no_report_explains_capture_range(tmp_path, monkeypatch):
    monkeypatch.setattr(cap, "run_child", FakeRun(write_rep=False, rc=1))
    with pytest.raises(cap.CaptureError, match="cudaProfilerStart"):
        cap.capture(["x"], tmp_path / "o", nsys="nsys")


def test_capture_stale_report_is_not_taken_for_a_new_one(tmp_path, monkeypatch):
    (tmp_path / "o.nsys-rep").write_bytes(b"old report")
    (tmp_path / "o.sqlite").write_bytes(b"old db")
    monkeypatch.setattr(cap, "run_child", FakeRun(write_rep=False, rc=1))
    with pytest.raises(cap.CaptureError, match="wrote no"):
        cap.capture(["x"], tmp_path / "o", nsys="nsys")
    # a failed capture loses nothing: the earlier report and export are still there
    assert (tmp_path / "o.nsys-rep").read_bytes() == b"old report"
    assert (tmp_path / "o.sqlite").read_bytes() == b"old db"


def test_capture_failed_export_keeps_earlier_sqlite(tmp_path, monkeypatch):
    (tmp_path / "o.sqlite").write_bytes(b"old db")
    monkeypatch.setattr(cap, "run_child", FakeRun(write_sqlite=False, export_rc=1))
    with pytest.raises(cap.CaptureError, match="nsys export exited with 1.*o.failed.nsys-rep"):
        cap.capture(["x"], tmp_path / "o", nsys="nsys")
    assert (tmp_path / "o.sqlite").read_bytes() == b"old db"
    assert not (tmp_path / "o.nsys-rep").exists()                    # no new report beside the old export
    assert (tmp_path / "o.failed.nsys-rep").read_bytes() == b"rep"   # the new report is kept aside


def test_capture_failed_export(tmp_path, monkeypatch):
    monkeypatch.setattr(cap, "run_child", FakeRun(write_sqlite=False, export_rc=1))
    with pytest.raises(cap.CaptureError, match="nsys export"):
        cap.capture(["x"], tmp_path / "o", nsys="nsys")
    res = cap.capture(["x"], tmp_path / "o", nsys="nsys", check=False)
    assert res.sqlite_path is None and res.rep_path.exists()


def test_capture_passes_command_returncode(tmp_path, monkeypatch):
    monkeypatch.setattr(cap, "run_child", FakeRun(rc=3))
    res = cap.capture(["x"], tmp_path / "o", nsys="nsys")
    assert res.returncode == 3 and not res.replaced and res.rep_path == tmp_path / "o.failed.nsys-rep"
    assert not (tmp_path / "o.nsys-rep").exists()


def test_capture_without_export_drops_the_earlier_export_of_the_replaced_report(tmp_path, monkeypatch):
    (tmp_path / "o.nsys-rep").write_bytes(b"old report")
    (tmp_path / "o.sqlite").write_bytes(b"old db")
    monkeypatch.setattr(cap, "run_child", FakeRun())
    res = cap.capture(["x"], tmp_path / "o", nsys="nsys", export_sqlite=False)
    assert res.replaced and res.sqlite_path is None
    assert (tmp_path / "o.nsys-rep").read_bytes() == b"rep" and not (tmp_path / "o.sqlite").exists()


# ------------------------------------------------------------------ CLI

def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gdnlab capture")
    cli_cap.configure_parser(p)
    return p.parse_args(argv)


def test_cli_workload_one_command(tmp_path, monkeypatch, capsys):
    fake = FakeRun()
    monkeypatch.setattr(cap, "run_child", fake)
    monkeypatch.setattr(cap, "find_nsys", lambda: "/n/nsys")
    out = tmp_path / "traces" / "h100" / "fi_c64"
    args = _parse(["--workload", "--backend", "flashinfer", "--concurrency", "64", "--osl", "512",
                   "--verify-tokens", "4", "--out", str(out)])
    assert cli_cap.run(args) == 0
    prof = fake.calls[0]
    i = prof.index("-m")
    assert prof[i - 1] == sys.executable
    assert prof[i:] == ["-m", "gdnlab", "workload", "--no-progress", "--backend", "flashinfer", "--concurrency",
                        "64", "--osl", "512", "--verify-tokens", "4", "--capture-steps", "8"]
    assert prof[prof.index("-o") + 1].startswith(str(out) + "-partial-")     # renamed to OUT.nsys-rep on success
    assert (out.parent / "fi_c64.nsys-rep").exists()
    assert "--capture-range=cudaProfilerApi" in prof and "--cuda-graph-trace=node" in prof
    assert fake.calls[1][:4] == ["/n/nsys", "export", "--type", "sqlite"]
    assert str(out) + ".sqlite" in capsys.readouterr().out


def test_cli_dash_dash_command_and_own_options(capsys):
    args = _parse(["--out", "t/x", "--dry-run", "--capture-range", "none", "--nsys", "/q/nsys",
                   "--", "python3", "bench.py", "--flag"])
    assert cli_cap.run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("/q/nsys profile") and lines[0].endswith("python3 bench.py --flag")
    assert "capture-range" not in lines[0]
    assert lines[1] == "/q/nsys export --type sqlite -o t/x.sqlite --force-overwrite=true t/x.nsys-rep"


def test_cli_own_options_inside_workload_args(capsys):
    args = _parse(["--workload", "-c", "8", "--dry-run", "--nsys-arg=--stats=false", "--no-export"])
    assert cli_cap.run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "--stats=false" in lines[0]
    assert lines[0].endswith("-m gdnlab workload --no-progress -c 8 --capture-steps 8")


def test_strategy_captures_one_command_per_strategy():
    jobs = cap.strategy_captures(["--backend", "triton", "-c", "64", "--cuda-graph"], "full_cache, replay_ring",
                                 "traces/h200/triton_c64.sqlite", python="py")
    assert [j[0] for j in jobs] == ["full_cache", "replay_ring"]
    assert [str(j[2]) for j in jobs] == ["traces/h200/triton_c64_full_cache", "traces/h200/triton_c64_replay_ring"]
    assert jobs[1][1] == ["py", "-m", "gdnlab", "workload", "--no-progress", "--backend", "triton", "-c", "64",
                          "--cuda-graph", "--draft-tokens", "4", "--strategy", "replay_ring", "--capture-steps", "8"]
    # a given T is kept; duplicates are dropped; bad lists are one-line input errors
    jobs = cap.strategy_captures(["--verify-tokens=3"], ["recompute", "recompute"], "o", python="py")
    assert len(jobs) == 1 and "--draft-tokens" not in jobs[0][1] and "--verify-tokens=3" in jobs[0][1]
    with pytest.raises(InputError, match="unknown strategy 'nope'.*full_cache"):
        cap.strategy_captures([], "full_cache,nope", "o")
    with pytest.raises(InputError, match="at least one"):
        cap.strategy_captures([], " , ", "o")
    with pytest.raises(InputError, match="not both"):
        cap.strategy_captures(["--strategy", "recompute"], "full_cache", "o")


def test_cli_strategies_dry_run_and_placement(capsys):
    args = _parse(["--strategies", "token_slots,recompute_fused", "--dry-run", "--nsys", "/n/nsys", "--out", "t/x",
                   "--workload", "--backend", "triton", "--cuda-graph"])
    assert cli_cap.run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4                                   # profile + export per strategy
    assert lines[0].endswith("--cuda-graph --draft-tokens 4 --strategy token_slots --capture-steps 8")
    assert "-o t/x_token_slots " in lines[0] and lines[1].endswith("t/x_token_slots.nsys-rep")
    assert "--strategy recompute_fused" in lines[2] and "-o t/x_recompute_fused " in lines[2]
    # --strategies may also follow --workload (an own option anywhere); it needs --workload
    args = _parse(["--workload", "--backend", "triton", "--strategies=full_cache", "--dry-run", "--no-export"])
    assert cli_cap.run(args) == 0
    assert capsys.readouterr().out.count("--strategy full_cache") == 1
    with pytest.raises(InputError, match="--strategies needs --workload"):
        cli_cap.run(_parse(["--strategies", "full_cache", "--", "true"]))


def test_cli_strategies_continue_after_a_failure(tmp_path, monkeypatch, capsys):
    class FailFirst(FakeRun):
        def __call__(self, argv, **kw):
            if argv[1] == "profile" and "full_cache" in argv[-3]:
                self.calls.append(list(argv))
                return 1                                             # no report written
            return super().__call__(argv, **kw)

    fake = FailFirst()
    monkeypatch.setattr(cap, "run_child", fake)
    monkeypatch.setattr(cap, "find_nsys", lambda: "/n/nsys")
    out = tmp_path / "tr"
    rc = cli_cap.run(_parse(["--strategies", "full_cache,replay_ring", "--out", str(out), "--workload", "-c", "4"]))
    assert rc == 1
    assert (tmp_path / "tr_replay_ring.sqlite").exists() and not (tmp_path / "tr_full_cache.sqlite").exists()
    assert "strategy full_cache: failed" in capsys.readouterr().err


def test_cli_needs_something_to_capture():
    with pytest.raises(ValueError, match="nothing to capture"):
        cli_cap.run(_parse(["--out", "x"]))


def test_cli_without_nsys_is_one_line_unavailable(tmp_path, monkeypatch, capsys):
    def missing():
        raise cap.NsysNotFoundError("nsys not found; set $NSYS")
    monkeypatch.setattr(cap, "find_nsys", missing)
    assert cli_main(["capture", "--out", str(tmp_path / "o"), "--", "true"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NSYS" in err[0] and "unavailable" in err[0]


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli_main(["capture", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: traces/capture)" in text and "(default: cudaProfilerApi)" in text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_capture_with_fake_nsys_script(tmp_path, monkeypatch):
    """End to end through a real subprocess: a shell script plays nsys."""
    script = tmp_path / "nsys"
    script.write_text('#!/bin/sh\n'
                      'if [ "$1" = profile ]; then while [ "$1" != -o ]; do shift; done; '
                      ': > "$2.nsys-rep"; exit 0; fi\n'
                      'if [ "$1" = export ]; then while [ "$1" != -o ]; do shift; done; : > "$2"; exit 0; fi\n'
                      'exit 9\n')
    script.chmod(0o755)
    monkeypatch.setenv("NSYS", str(script))
    res = cap.capture(["true"], tmp_path / "out" / "run1")
    assert res.rep_path.exists() and res.sqlite_path.exists() and res.returncode == 0
