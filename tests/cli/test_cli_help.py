"""The command line's help and startup: building the parser imports nothing heavy, Ctrl-C at any
moment is one line and exit 130, every list reads one way, defaults show once, choice-like options
list their values, and the names the help lists (``gdnlab.cli._registry``) are the registries' own.

Speed figures live in ``benchmarks/bench_cli_startup.py``; here only properties are checked.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gdnlab.cli import ALIASES, COMMANDS, build_parser, main
from gdnlab.cli import _registry as R
from gdnlab.cli._args import HelpFormatter, comma_list, parse_list, split_list
from gdnlab.errors import InputError

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "numpy", "plotly", "papermill", "triton", "flashinfer")


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GDNLAB_OUT", "TRITON_INTERPRET")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c: p for c, p in sub.choices.items() if c in COMMANDS}


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


# ------------------------------------------------------------------------------------------ imports

def test_building_the_parser_imports_no_heavy_package():
    """``import gdnlab.cli`` + ``build_parser()`` (what every ``--help`` does) leaves torch, pandas,
    numpy, plotly and the GPU packages unimported (checked in a fresh interpreter)."""
    code = ("import sys, gdnlab.cli as c; c.build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"building the parser imported {res.stdout.strip()}"


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in COMMANDS]], ids=" ".join)
def test_help_imports_no_heavy_package(argv):
    """``gdnlab [COMMAND] --help`` as a whole, through :func:`gdnlab.cli.main`, in a fresh interpreter."""
    code = ("import sys, gdnlab.cli as c\n"
            "try:\n    c.main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"sys.stderr.write(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    res = _python(code, *argv)
    assert res.returncode == 0, res.stderr
    assert "usage: gdnlab" in res.stdout
    assert res.stderr.strip() == "", f"gdnlab {' '.join(argv)} imported {res.stderr.strip()}"


# ------------------------------------------------------------------------------------------ Ctrl-C

#: a meta-path finder that raises KeyboardInterrupt when the module named in argv[1] is imported,
#: as Ctrl-C during that import would
_INTERRUPT_IMPORT = """
import sys
TARGET = sys.argv[1]
class Stop:
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Stop())
sys.argv = ["gdnlab", *sys.argv[2:]]
import runpy
runpy.run_module("gdnlab", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(("module", "argv", "command"), [
    pytest.param("torch", ["summary", "--device", "cpu"], "summary", id="torch-in-run"),
    pytest.param("pandas", ["plan"], "plan", id="pandas-in-run"),
    pytest.param("gdnlab.cli.sweep", ["sweep", "--help"], "sweep", id="command-module-while-parser-builds"),
    pytest.param("gdnlab.cli", ["backends"], None, id="cli-package-in-main"),
])
def test_ctrl_c_during_an_import_is_one_line(module, argv, command):
    res = _python(_INTERRUPT_IMPORT, module, *argv)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 130, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"gdnlab {command}: interrupted: " if command else "gdnlab: interrupted: "), lines[0]


def test_ctrl_c_with_debug_shows_the_trace():
    res = _python(_INTERRUPT_IMPORT, "torch", "--debug", "summary", "--device", "cpu")
    assert res.returncode == 130 and "Traceback" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("gdnlab summary: interrupted: ")


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="needs POSIX signals")
def test_real_sigint_in_the_first_second():
    """A real SIGINT while ``gdnlab summary`` is importing torch (``-X importtime`` tells the test when
    the first torch module is in): one line, exit 130."""
    env = {k: v for k, v in os.environ.items() if k not in ("GDNLAB_OUT",)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "gdnlab", "summary", "--device", "cpu"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if re.search(r"\| +torch\.", line):
                proc.send_signal(signal.SIGINT)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = [s for s in err.splitlines() if not s.startswith("import time:")]
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert lines == ["gdnlab summary: interrupted: stopped by Ctrl-C (what was complete is kept)"], lines


# ------------------------------------------------------------------------------------ help text

def _texts() -> dict[str, str]:
    texts = {"gdnlab": build_parser().format_help()}
    texts.update({f"gdnlab {c}": p.format_help() for c, p in _subparsers().items()})
    return texts


def test_lists_read_one_way():
    """Lists are ``1,4,16``: no Python reprs (``[1, 4]``), no ``{a,b}`` metavars; no option's help
    lists values as ``a | b`` or says "comma or space separated"; every list option reads
    ``--flag NAME,...``."""
    for name, text in _texts().items():
        flat = " ".join(text.split())
        assert not re.search(r"\[\d+, \d+|\('|\['|\{[\w-]+,[\w-]+", flat), f"{name}: {flat}"
    for c, p in _subparsers().items():
        for a in p._actions:
            text = " ".join(_option_help(p, a).split())
            assert " | " not in text and "comma or space" not in text, (c, a.option_strings, text)
            if a.nargs == argparse.REMAINDER or a.dest == "parameter":
                continue
            if a.nargs in ("+", "*") or getattr(a.type, "__name__", "").startswith("comma-separated"):
                assert str(a.metavar).endswith(",..."), (c, a.option_strings, a.metavar)


def test_defaults_show_once():
    for c, p in _subparsers().items():
        for a in p._actions:
            text = _option_help(p, a).lower()
            assert text.count("default") <= 1, (c, a.option_strings, text)
            if a.default not in (None, False, argparse.SUPPRESS, []) and a.option_strings and a.dest != "help":
                assert "(default: " in text, (c, a.option_strings, text)


def test_help_never_breaks_a_name():
    """Wrapped help breaks at spaces or after a list's commas, never inside a name (``qwen3.5-397b-a17b``,
    ``recompute_fused``)."""
    for name, text in _texts().items():
        for line in text.splitlines():
            assert not re.search(r"\w-$", line.rstrip()), f"{name}: {line!r}"
    text = re.sub(r"\s+", "", _subparsers()["plan"].format_help())
    assert "choices:" + ",".join(R.STRATEGIES) in text and "choices:" + ",".join(R.gpu_names()) in text


#: dest -> the values its help must list (read from the registries in the test below)
CHOICE_LIKE = {
    "preset": R.preset_choices(), "presets": R.preset_choices(), "backend": R.kernel_backends(),
    "backends": R.kernel_backends(), "strategy_backends": R.strategy_backends(), "strategy": R.STRATEGIES,
    "strategies": R.STRATEGIES, "state_dtype": R.STATE_DTYPES, "state_dtypes": R.STATE_DTYPES,
    "act_dtype": R.ACT_DTYPES, "gpu": None, "device": R.DEVICES, "modes": R.SWEEP_MODES,
    "timing": R.SWEEP_TIMINGS, "buffer_scopes": R.SWEEP_BUFFER_SCOPES, "notebook": None,
    "engine": None, "fitted": None, "gate": None, "clock_control": None, "cache_control": None,
    "capture_range": None, "cuda_graph_trace": None,
}


def test_choice_like_options_list_their_values():
    from gdnlab.hardware import GPU_SPECS
    from gdnlab.model.predict import SUPPORTED as PREDICT_SUPPORTED
    from gdnlab.report import NOTEBOOKS

    seen = set()
    for c, p in _subparsers().items():
        for a in p._actions:
            if a.dest not in CHOICE_LIKE:
                continue
            seen.add(a.dest)
            want = {"gpu": tuple(GPU_SPECS), "notebook": tuple(NOTEBOOKS)}.get(a.dest) or CHOICE_LIKE[a.dest] \
                or tuple(getattr(a, "valid", None) or a.choices or ())
            if (c, a.dest) == ("predict", "preset"):    # predict's op tables cover one served model
                want = PREDICT_SUPPORTED["preset"]
            flat = re.sub(r"\s+", "", _option_help(p, a))
            assert want and "(choices:" in flat, (c, a.dest, flat)
            listed = flat.split("(choices:", 1)[1].split(")", 1)[0].split(",")
            assert set(want) <= set(listed), (c, a.dest, listed)
    assert seen == set(CHOICE_LIKE), set(CHOICE_LIKE) - seen


def test_help_formatter_is_the_one_everywhere():
    assert isinstance(build_parser()._get_formatter(), HelpFormatter)
    for c, p in _subparsers().items():
        assert isinstance(p._get_formatter(), HelpFormatter), c


def test_every_alias_reaches_its_command():
    for alias, target in ALIASES.items():
        assert build_parser().parse_args([alias])._command == target


# --------------------------------------------------------------------- the registries' names

def test_registry_copies_are_the_registries_names():
    """Each name and default the help lists equals its registry's (they are copies so that --help need
    not import torch)."""
    from gdnlab import instrument, kernels, shapes, strategies
    from gdnlab.sweep import config

    assert set(R.PRESETS) == set(shapes.PRESETS)
    assert sorted(R.preset_choices()) == sorted(shapes.preset_names())
    assert R.DEFAULT_PRESET in shapes.PRESETS and shapes.parse_preset(R.SWEEP_DEFAULT_PRESET).name == \
        config.DEFAULT_PRESET
    assert tuple(R.kernel_backends()) == tuple(kernels.backend_names())
    assert tuple(R.strategy_backends()) == tuple(strategies.backend_names())
    assert tuple(R.STRATEGIES) == tuple(strategies.STRATEGY_NAMES)
    assert set(R.ACT_DTYPES) == {shapes.dtype_name(d) for d in shapes._DTYPES.values()}
    assert tuple(R.STATE_DTYPES) == tuple(config.SweepConfig.__dataclass_fields__["state_dtypes"].default)
    assert (R.SWEEP_MODES, R.SWEEP_BUFFER_SCOPES, R.SWEEP_TIMINGS) == \
        (config.MODES, config.VERIFY_BUFFER_SCOPES, config.TIMINGS)
    assert (R.SWEEP_DEFAULT_BATCHES, R.SWEEP_DEFAULT_STRATEGY_BATCHES, R.SWEEP_DEFAULT_ACCEPT_LEN,
            R.SWEEP_DEFAULT_PRESET) == (config.DEFAULT_BATCHES, config.DEFAULT_STRATEGY_BATCHES,
                                        config.DEFAULT_ACCEPT_LEN, config.DEFAULT_PRESET)
    assert (R.DEFAULT_MAX_CALLS, R.DEFAULT_MIN_SAMPLE_US) == (instrument.DEFAULT_MAX_CALLS,
                                                              instrument.DEFAULT_MIN_SAMPLE_US)
    from gdnlab.model.predict import SUPPORTED

    assert (R.PREDICT_TP, R.PREDICT_WEIGHTS, R.PREDICT_KV_DTYPES) == \
        (SUPPORTED["tp"], SUPPORTED["weights_dtype"], SUPPORTED["kv_dtype"])
    assert str(instrument.resolve_device("cpu")) == "cpu"
    with pytest.raises(InputError):
        instrument.resolve_device("tpu")


def test_sweep_parser_defaults_are_the_sweep_config_defaults():
    """``gdnlab sweep`` with no options is :class:`gdnlab.sweep.SweepConfig`'s defaults, field by field."""
    import dataclasses

    from gdnlab.cli.sweep import config_from_args
    from gdnlab.sweep import SweepConfig

    cfg = config_from_args(build_parser().parse_args(["sweep"]))
    ref = SweepConfig()
    for field in (f.name for f in dataclasses.fields(SweepConfig)):
        got, want = getattr(cfg, field), getattr(ref, field)
        if isinstance(want, (list, tuple)):
            got, want = list(got), list(want)
        assert got == want, field


# ------------------------------------------------------------------------------ the list parser

def test_parse_list():
    assert parse_list("1, 4,16", int) == [1, 4, 16]
    assert parse_list(["1", "4,16"], int) == [1, 4, 16]           # given as separate words
    assert parse_list((2.5, 3.17), float) == [2.5, 3.17]          # a default
    assert parse_list("a,,b ,", flag="--x") == ["a", "b"]
    assert split_list(None) == [] and split_list(" , ") == []
    for values, item, minimum, words in [("1,x", int, None, "'x' in '1,x'"), ("", int, None, "comma-separated list"),
                                         ("0,4", int, 1, ">= 1, got 0"), ("nan", float, 0, ">= 0"),
                                         ("1.5", int, None, "integers")]:
        with pytest.raises(InputError, match=re.escape(words)) as exc:
            parse_list(values, item, flag="--batches", minimum=minimum)
        assert str(exc.value).startswith("--batches: ")
    with pytest.raises(argparse.ArgumentTypeError, match="'x'"):
        comma_list(int)("1,x")


def test_every_list_option_parses_commas_and_the_sweep_also_words():
    from gdnlab.cli.sweep import config_from_args

    p = build_parser()
    assert p.parse_args(["plan", "--batches", "1,16,64"]).batches == [1, 16, 64]
    assert p.parse_args(["counters", "--state-dtypes", "bfloat16"]).state_dtypes == ["bfloat16"]
    assert p.parse_args(["summary", "--batch", "2"]).batches == [2]
    assert p.parse_args(["capture", "--strategies", "full_cache,replay_ring", "--", "true"]).strategies == [
        "full_cache", "replay_ring"]
    assert p.parse_args(["report", "-n", "01,02", "-n", "03"]).notebook == ["01", "02", "03"]
    cfg = config_from_args(p.parse_args(["sweep", "--batches", "1", "4,16", "--batches", "32"]))
    assert list(cfg.batches) == [1, 4, 16, 32]                    # words and repeats add up


def test_help_shows_lists_as_commas(capsys):
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "--batches B,..." in flat and "(default: 1,4,16,64,128,256)" in flat
