"""The registries' names and defaults that ``--help`` lists, importable without torch, pandas or numpy.

``gdnlab --help`` must answer in well under a second, and most registries that own these names import
torch at module level (:mod:`gdnlab.shapes` holds presets as shapes with torch dtypes;
:mod:`gdnlab.strategies.registry`, :mod:`gdnlab.sweep.config` (with :mod:`gdnlab.harness_calls`) and
:mod:`gdnlab.instrument` import torch). So the help reads copies of their names from here; each copy
is checked against its registry by ``tests/cli/test_cli_help.py``, so a name added to a registry and not
here fails the tests. Backend names come from :mod:`gdnlab.backends` and GPU names from
:mod:`gdnlab.hardware` themselves (neither imports anything heavy). The commands validate values
through the registries at run time, never through these copies.
"""
from __future__ import annotations

__all__ = ["PRESETS", "PRESET_ALIASES", "DEFAULT_PRESET", "STATE_DTYPES", "ACT_DTYPES", "kernel_backends",
           "strategy_backends", "STRATEGIES", "SWEEP_MODES", "SWEEP_BUFFER_SCOPES", "SWEEP_TIMINGS",
           "SWEEP_DEFAULT_BATCHES", "SWEEP_DEFAULT_STRATEGY_BATCHES", "SWEEP_DEFAULT_ACCEPT_LEN",
           "SWEEP_DEFAULT_PRESET", "PREDICT_TP", "PREDICT_WEIGHTS", "PREDICT_KV_DTYPES",
           "DEFAULT_MAX_CALLS", "DEFAULT_MIN_SAMPLE_US", "DEVICES", "gpu_names",
           "preset_choices"]

#: :data:`gdnlab.shapes.PRESETS` (canonical names) and the aliases :func:`gdnlab.shapes.preset` accepts
PRESETS: tuple[str, ...] = ("qwen3-next-80b-a3b", "qwen3.5-397b-a17b", "qwen3.5-35b-a3b")
PRESET_ALIASES: tuple[str, ...] = ("qwen3-next", "qwen3.5-397b", "qwen3.5-35b")
#: the served model of the shipped data (the seed, SGLang PR #23273)
DEFAULT_PRESET = "qwen3.5-397b-a17b"
#: state pool dtypes every backend and the sweep take (:func:`gdnlab.shapes.dtype_name` names)
STATE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
#: activation dtypes :func:`gdnlab.shapes.dtype_from_name` knows
ACT_DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
#: :data:`gdnlab.strategies.STRATEGY_NAMES` (:mod:`gdnlab.strategies.registry`)
STRATEGIES: tuple[str, ...] = ("full_cache", "token_slots", "recompute", "recompute_fused", "replay_ring")
#: :mod:`gdnlab.sweep.config`: MODES, VERIFY_BUFFER_SCOPES, TIMINGS and the grid's defaults
SWEEP_MODES: tuple[str, ...] = ("decode", "verify")
SWEEP_BUFFER_SCOPES: tuple[str, ...] = ("batch", "pool")
SWEEP_TIMINGS: tuple[str, ...] = ("amortised", "single", "eager")
SWEEP_DEFAULT_BATCHES: tuple[int, ...] = (1, 4, 16, 32, 64, 128, 256)
SWEEP_DEFAULT_STRATEGY_BATCHES: tuple[int, ...] = (1, 4, 16, 64, 128, 256)
SWEEP_DEFAULT_ACCEPT_LEN = 3.17
SWEEP_DEFAULT_PRESET = "qwen3.5-397b-a17b@tp4"
#: :mod:`gdnlab.instrument`: DEFAULT_MAX_CALLS (calls per amortised sample), DEFAULT_MIN_SAMPLE_US (µs)
DEFAULT_MAX_CALLS = 64
DEFAULT_MIN_SAMPLE_US = 500.0
#: :data:`gdnlab.model.predict.SUPPORTED`: what ``gdnlab predict``'s shipped op tables cover
PREDICT_TP: tuple[int, ...] = (4, 8)
PREDICT_WEIGHTS: tuple[str, ...] = ("fp8_block", "bf16", "nvfp4")
PREDICT_KV_DTYPES: tuple[str, ...] = ("bf16", "fp8")
#: what :func:`gdnlab.instrument.resolve_device` accepts
DEVICES: tuple[str, ...] = ("cpu", "cuda", "cuda:N")


def kernel_backends() -> tuple[str, ...]:
    """Backends with the kernel contract (:func:`gdnlab.backends.kernel_backend_names`)."""
    from ..backends import kernel_backend_names

    return kernel_backend_names()


def strategy_backends() -> tuple[str, ...]:
    """Backends with verify strategies (:func:`gdnlab.backends.strategy_backend_names`)."""
    from ..backends import strategy_backend_names

    return strategy_backend_names()


def gpu_names() -> tuple[str, ...]:
    """The GPUs :func:`gdnlab.hardware.spec_for` knows (``H100-SXM``, ..., ``GB200``)."""
    from ..hardware import GPU_SPECS

    return tuple(GPU_SPECS)


def preset_choices() -> tuple[str, ...]:
    """Preset names, then their aliases, as the help lists them."""
    return PRESETS + PRESET_ALIASES
