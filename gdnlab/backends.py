"""The backend registry: one line per GDN backend, the one place its facts live.

A *backend* is one implementation of the GDN kernels: gdnlab's PyTorch ``reference`` (the oracle),
gdnlab's own ``triton`` kernels, FlashInfer's CuTe-DSL kernels (``flashinfer``), and, where their
packages are installed, a serving engine's own code paths. Each :class:`Backend` says where its
kernel-contract class and its verify-strategy module live (imported only when asked about), which
package versions its rows record (the provenance columns), how its kernels are named in a trace,
and its colour and label in figures. Everything else reads these facts from here:

* :mod:`gdnlab.kernels` and :mod:`gdnlab.strategies` find each backend's code (``kernels``,
  ``strategies``);
* :mod:`gdnlab.provenance` records one version column per ``version_column`` (:func:`version_columns`);
* :mod:`gdnlab.traces.names` recognises GDN and commit kernels by the union of the patterns
  (:func:`gdn_kernel_pattern`, :func:`commit_kernel_pattern`, :func:`multi_phase_kernel_pattern`);
* :mod:`gdnlab.plots.style` colours and labels each backend (:func:`backend_color`);
* :mod:`gdnlab.components.bench` hands contiguous q/k/v/a/b to the backends that copy them otherwise
  (:func:`needs_contiguous_inputs`);
* :mod:`gdnlab.analysis.engine_gap` compares an engine's own code path with the gdnlab backend in the
  same role (:func:`twin`).

Adding a backend is its module(s) plus one :class:`Backend` line in :data:`BACKENDS`. An unknown
name raises ``ValueError`` (:func:`get`); nothing falls through to a default. This module imports
nothing heavy (no torch), so the command line's help and the trace readers can read it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Backend", "BACKENDS", "DEFAULT_BACKEND", "get", "names", "kernel_backend_names", "strategy_backend_names",
           "oracle", "timed_names", "options_for_engine", "engines_with_options", "version_columns",
           "gdn_kernel_pattern", "commit_kernel_pattern", "multi_phase_kernel_pattern", "backend_color",
           "backend_label", "needs_contiguous_inputs", "twin", "engine_names"]


@dataclass(frozen=True)
class Backend:
    """The facts of one backend.

    Attributes:
        name: registry key, also the ``backend`` column of every row (``"flashinfer"``).
        label: name in figures and tables (``"FlashInfer"``).
        color: its colour in every figure (hex).
        kernels: ``"module:Class"`` of its kernel-contract class (:class:`gdnlab.kernels.base.GDNBackend`),
            or ``None`` when it implements verify strategies only.
        strategies: module of its verify strategies (``STRATEGIES`` dict + ``availability()``, see
            :mod:`gdnlab.strategies.base`), or ``None``.
        packages: distributions whose installed version its rows record, first found wins
            (``("flashinfer-python", "flashinfer")``); empty for gdnlab's own code on torch alone.
        version_column: provenance column holding that version (``"flashinfer"``), or ``None``.
        kernel_pattern: regular expression (case-insensitive) matching its GDN kernels' names in a trace.
        commit_pattern: its commit-only kernels (a verify strategy's scatter of the accepted state), or ``""``.
        multi_phase_pattern: its kernels that serve several phases of a step (one kernel for a
            strategy's verify, commit replay and fold), whose phase only the trace's markers can tell; or ``""``.
        engine: the serving engine whose own code this backend runs (``"sglang"``), ``None`` for a
            kernel library or gdnlab's own kernels.
        summary: one line for ``gdnlab backends``.
        module: a top-level module whose ``__version__`` gives the version where no distribution
            metadata does (a bundle unpacked onto ``PYTHONPATH``), or ``None``.
        default: the backend gdnlab's tools and models use when none is named (:data:`DEFAULT_BACKEND`).
        oracle: the backend every other one is checked against; a sweep times it only when no
            other backend runs here (:func:`oracle`, :func:`timed_names`).
        engine_options: engine -> constructor options that make the backend run what that engine
            runs (``{"sglang": {"contract_padding": False}}``; :func:`options_for_engine`,
            :data:`gdnlab.kernels.ENGINE_OPTIONS`); empty: gdnlab's contract under every engine.
        contiguous_inputs: its kernels take q/k/v/a/b contiguous and copy strided views first
            (FlashInfer's wrappers call ``.contiguous()``); a benchmark of a layer passes them
            contiguous, as an engine does, so the copy is not timed as the kernel's.
        twin: for an engine's own code path, the gdnlab backend (no ``engine``) whose kernels play the
            same role, the one its rows are compared with (``"sglang_flashinfer"`` -> ``"flashinfer"``:
            both run FlashInfer's CuTe-DSL kernels; an engine's Triton/fla or compiled CUDA kernels ->
            ``"triton"``, gdnlab's own Triton kernels with SGLang's semantics); ``None`` for gdnlab's
            own backends (:func:`twin`).
    """

    name: str
    label: str
    color: str
    kernels: str | None
    strategies: str | None
    packages: tuple[str, ...]
    version_column: str | None
    kernel_pattern: str
    commit_pattern: str = ""
    multi_phase_pattern: str = ""
    engine: str | None = None
    summary: str = ""
    module: str | None = None
    oracle: bool = False
    default: bool = False
    engine_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    contiguous_inputs: bool = False
    twin: str | None = None


#: Options as SGLang runs a backend. SGLang launches no kernel for padding rows' outputs (never read):
#: FlashInfer's backend, which zeroes them after a bf16-state call (one extra ``masked_fill_``) for
#: gdnlab's contract, takes ``zero_padding_output=False``; SGLang's own kernels run SGLang's launches
#: exactly with ``contract_padding=False`` (:mod:`gdnlab.kernels.sglang`). vLLM's packed decode does
#: no padding work of gdnlab's, so no backend has vLLM options.
_SGLANG_PADDING = {"sglang": {"contract_padding": False}}

#: every backend, in display order: one line each
BACKENDS: tuple[Backend, ...] = (
    Backend("reference", "reference", "#7f7f7f", "gdnlab.kernels.reference:ReferenceBackend",
            "gdnlab.strategies.reference", (), None, kernel_pattern=r"$^", oracle=True,
            summary="pure PyTorch, float32 arithmetic: the oracle every other backend is checked against"),
    Backend("triton", "gdnlab Triton", "#ff7f0e", "gdnlab.kernels.triton:TritonBackend",
            "gdnlab.strategies.triton", ("triton",), "triton",
            kernel_pattern=r"gdnlab_triton|strategy_recurrent",
            commit_pattern=r"scatter_commit", multi_phase_pattern=r"_strategy_recurrent", default=True,
            summary="gdnlab's own Triton kernels with SGLang's semantics (not SGLang's kernels)"),
    Backend("flashinfer", "FlashInfer", "#1f77b4", "gdnlab.kernels.flashinfer:FlashInferBackend",
            "gdnlab.strategies.flashinfer", ("flashinfer-python", "flashinfer"), "flashinfer", module="flashinfer",
            kernel_pattern=r"gdn|gated_delta", engine_options={"sglang": {"zero_padding_output": False}},
            contiguous_inputs=True,
            summary="FlashInfer's CuTe-DSL GDN decode and MTP kernels (flashinfer-python)"),
    # the serving engines' own code, imported from their installed packages (gdnlab.kernels._engine_import)
    Backend("sglang_triton", "SGLang Triton", "#8c564b", "gdnlab.kernels.sglang:SGLangTritonBackend",
            "gdnlab.strategies.sglang.triton", ("sglang",), "sglang", engine="sglang",
            engine_options=_SGLANG_PADDING, twin="triton",
            kernel_pattern=r"fused_recurrent_gated_delta_rule_packed_decode|fused_sigmoid_gating_delta_rule_update"
                           r"|gdn_replayssm_spec_circular",
            commit_pattern=r"mamba_state_scatter|replayssm_compact_commit|finish_gdn_replayssm|advance_gdn_spec",
            summary="SGLang 0.5.23's Triton GDN kernels: packed decode, full-cache verify + scatter commit, "
                    "ReplaySSM spec ring (sglang package)"),
    Backend("sglang_flashinfer", "SGLang FlashInfer", "#17becf", "gdnlab.kernels.sglang:SGLangFlashInferBackend",
            "gdnlab.strategies.sglang.flashinfer", ("sglang",), "sglang", engine="sglang",
            engine_options=_SGLANG_PADDING, twin="flashinfer", kernel_pattern=r"gdn|gated_delta",
            commit_pattern=r"mamba_state_scatter",
            summary="SGLang 0.5.23's FlashInferGDNKernel: SM90 gather/run/scatter decode and fp32 MTP verify, "
                    "SM100 pool decode and bf16 MTP verify; SGLang's scatter commit"),
    Backend("sglang_cutedsl", "SGLang CuTe DSL", "#bcbd22", "gdnlab.kernels.sglang:SGLangCuteDSLBackend",
            None, ("sglang",), "sglang", engine="sglang", engine_options=_SGLANG_PADDING, twin="flashinfer",
            kernel_pattern=r"gdn|gated_delta",
            summary="SGLang 0.5.23's CuTe-DSL GDN decode kernel (decode only; SGLang verifies with Triton)"),
    Backend("vllm_triton", "vLLM Triton", "#9467bd", "gdnlab.kernels.vllm:VLLMTritonBackend",
            "gdnlab.strategies.vllm.triton", ("vllm",), "vllm", engine="vllm", twin="triton",
            kernel_pattern=r"fused_recurrent_gated_delta_rule_packed_decode|fused_sigmoid_gating_delta_rule_update",
            summary="vLLM 0.33.0's Triton (fla) GDN kernels: packed decode, per-token-slot spec verify "
                    "(VLLM_GDN_DECODE_KERNEL=triton)"),
    Backend("vllm_cuda", "vLLM CUDA", "#e377c2", None, "gdnlab.strategies.vllm.cuda", ("vllm",), "vllm",
            engine="vllm", twin="triton", kernel_pattern=r"gdn_decode_post_conv_mtp",
            summary="vLLM 0.33.0's compiled fused_gdn_decode_post_conv_mtp (spec verify with per-token slots and "
                    "the gated RMSNorm; VLLM_GDN_DECODE_KERNEL=cuda, the default)"),
)

#: kernels of the engines' GDN code that no registered backend runs but traces of engines contain
#: (SGLang's and vLLM's Triton/fla kernels, SGLang's state scatter): recognised as GDN / commit kernels
_ENGINE_KERNELS = r"fused_recurrent|fused_sigmoid_gating"
_ENGINE_COMMITS = r"state_scatter"

_BY_NAME = {b.name: b for b in BACKENDS}

#: the backend gdnlab's tools and models use when none is named (:attr:`Backend.default`)
DEFAULT_BACKEND: str = next(b.name for b in BACKENDS if b.default)


def get(name: str) -> Backend:
    """The backend called ``name`` (case and surrounding blanks ignored); ``ValueError`` naming the
    known backends for any other name."""
    key = str(name).strip().lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[key]


def names() -> tuple[str, ...]:
    """Every backend name, in display order."""
    return tuple(_BY_NAME)


def kernel_backend_names() -> tuple[str, ...]:
    """Backends that implement the kernel contract (decode / verify / commit)."""
    return tuple(b.name for b in BACKENDS if b.kernels)


def strategy_backend_names() -> tuple[str, ...]:
    """Backends that implement verify strategies."""
    return tuple(b.name for b in BACKENDS if b.strategies)


def oracle() -> str:
    """The oracle backend (``reference``): every other backend is checked against it."""
    return next(b.name for b in BACKENDS if b.oracle)


def timed_names(candidates: Iterable[str]) -> list[str]:
    """``candidates`` (backend names, in their order) without the oracle, which a sweep times only
    when nothing else runs: ``[oracle()]`` when no other candidate is left."""
    return [n for n in candidates if not get(n).oracle] or [oracle()]


def options_for_engine(engine: str | None) -> dict[str, dict[str, Any]]:
    """backend -> constructor options that make it run what ``engine`` runs (backends with none left
    out; ``None``: gdnlab's contract, no options)."""
    return {b.name: dict(b.engine_options[engine]) for b in BACKENDS if engine in b.engine_options}


def engines_with_options() -> tuple[str, ...]:
    """Engines some backend takes options for (:attr:`Backend.engine_options`), in registry order."""
    return tuple(dict.fromkeys(e for b in BACKENDS for e in b.engine_options))


def version_columns() -> tuple[str, ...]:
    """Provenance columns of the backends' package versions (``triton``, ``flashinfer``, ...), once each."""
    return tuple(dict.fromkeys(b.version_column for b in BACKENDS if b.version_column))


def _union(parts) -> str:
    return "|".join(dict.fromkeys(p for p in parts if p))


def gdn_kernel_pattern() -> str:
    """A kernel whose name matches this (case-insensitive) is a GDN kernel of some backend or engine."""
    return _union([*(b.kernel_pattern for b in BACKENDS if b.kernel_pattern != r"$^"), _ENGINE_KERNELS])


def commit_kernel_pattern() -> str:
    """Kernels that only ever commit (a strategy's scatter of the accepted state)."""
    return _union([*(b.commit_pattern for b in BACKENDS), _ENGINE_COMMITS])


def multi_phase_kernel_pattern() -> str:
    """Kernels one backend launches in several phases of a step (only markers tell their phase)."""
    return _union(b.multi_phase_pattern for b in BACKENDS) or r"$^"


def backend_color(name: str) -> str | None:
    """The registered colour of a backend, ``None`` for a name that is not a backend."""
    b = _BY_NAME.get(str(name).strip().lower())
    return b.color if b else None


def backend_label(name: str) -> str:
    """The figure label of a backend (the name itself when it is not registered)."""
    b = _BY_NAME.get(str(name).strip().lower())
    return b.label if b else str(name)


def needs_contiguous_inputs(name: str) -> bool:
    """Whether backend ``name``'s kernels want contiguous q/k/v/a/b (:attr:`Backend.contiguous_inputs`);
    ``ValueError`` for a name that is not a backend."""
    return get(name).contiguous_inputs


def engine_names() -> tuple[str, ...]:
    """Backends that run a serving engine's own code (:attr:`Backend.engine` set), in registry order."""
    return tuple(b.name for b in BACKENDS if b.engine)


def twin(name: str) -> str | None:
    """The gdnlab backend an engine backend's rows are compared with (:attr:`Backend.twin`), ``None``
    for gdnlab's own backends; ``ValueError`` for a name that is not a backend."""
    return get(name).twin
