"""The strategy and backend registries: every fact a strategy or a backend declares is there and
consistent, every reader takes it from there, and an unknown name raises everywhere."""
from __future__ import annotations

import re

import pytest
import torch

from gdnlab import backends, engines, provenance
from gdnlab.analysis import phases
from gdnlab.kernels import backend_names as kernel_backend_names
from gdnlab.plots import style
from gdnlab.roofline import STEP_PHASES, RowBytes
from gdnlab.shapes import GDNShape
from gdnlab.strategies import backend_names as strategy_backend_names
from gdnlab.strategies import get_strategy, registry, strategy_backend_class
from gdnlab.strategies import reference as reference_strategies
from gdnlab.strategies import triton as triton_strategies
from gdnlab.strategies.base import ByteUnits
from gdnlab.traces import names

SHAPE = GDNShape("registry-test", num_q_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=16)
STRATEGIES = registry.STRATEGY_NAMES


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_states_its_facts(name: str) -> None:
    cls = registry.strategy_class(name)
    assert cls.name == name and cls.summary and re.fullmatch(r"#[0-9a-f]{6}", cls.color)
    assert cls.main_kernel_phases and set(cls.main_kernel_phases) <= set(STEP_PHASES)
    assert set(cls.launches) <= set(STEP_PHASES)
    assert cls.folds == ("fold" in cls.main_kernel_phases)
    rows = cls.row_bytes(ByteUnits.of(SHAPE, "float32"), 4, 2.5)
    assert rows and set(rows) <= set(STEP_PHASES) and all(isinstance(r, RowBytes) for r in rows.values())
    assert all(r.total >= 0 for r in rows.values()) and sum(r.total for r in rows.values()) > 0
    assert cls.scratch_formula(SHAPE, 4, 4, 17, state_dtype="float32") > 0
    assert cls.slots_per_request(4) >= 1
    for run in cls.engine_runs:
        assert run.engine in engines.ENGINE_VERSIONS and run.version == engines.ENGINE_VERSIONS[run.engine]
        assert run.source and set(run.state_dtypes) <= {"float32", "bfloat16"}
        assert all(b.split("_")[0] in engines.ENGINE_VERSIONS or b in backends.names() for b in run.backends)


def test_strategy_colours_and_backend_colours_are_distinct() -> None:
    s_cols = [registry.strategy_color(n) for n in STRATEGIES]
    b_cols = [backends.get(n).color for n in backends.names()]
    assert len(set(s_cols)) == len(s_cols) and len(set(b_cols)) == len(b_cols)
    assert [style.strategy_color(n) for n in STRATEGIES] == s_cols
    assert [style.backend_color(n) for n in backends.names()] == b_cols


def test_backends_bind_every_registered_strategy() -> None:
    """Reference and Triton take their strategies from the registry: a new entry is bound to both."""
    assert list(reference_strategies.STRATEGIES) == list(STRATEGIES)
    assert list(triton_strategies.STRATEGIES) == list(STRATEGIES)
    for name in STRATEGIES:
        assert issubclass(reference_strategies.STRATEGIES[name], registry.strategy_class(name))


def test_backend_registry_feeds_kernels_strategies_provenance_and_traces() -> None:
    assert kernel_backend_names() == list(backends.kernel_backend_names())
    assert strategy_backend_names() == list(backends.strategy_backend_names())
    for col in backends.version_columns():
        assert col in provenance.PROVENANCE_COLUMNS and col in provenance.collect()
    for b in backends.BACKENDS:
        if b.kernel_pattern != r"$^":
            assert re.search(names.GDN_KERNEL_PATTERN, re.sub(r"[\\|^$]", "", b.kernel_pattern.split("|")[0]),
                             re.IGNORECASE)
    assert names.is_gdn_kernel("gdnlab_triton_strategy_recurrent") and not names.is_gdn_kernel("elementwise_kernel")


def test_byte_formulas_match_the_closed_forms() -> None:
    """(T+3) S for full_cache, (T+1) S for token_slots at equal dtypes: an independent restatement."""
    B, T, a = 3, 4, 2.0
    S = SHAPE.HV * SHAPE.V * SHAPE.K * 4
    fc = registry.strategy_bytes(SHAPE, "full_cache", B, T, a, state_dtype="float32")
    ts = registry.strategy_bytes(SHAPE, "token_slots", B, T, a, state_dtype="float32")
    assert fc.state_and_scratch == B * (T + 3) * S and ts.state_and_scratch == B * (T + 1) * S
    assert registry.strategy_memory_bytes(SHAPE, "token_slots", 10, 4, T, state_dtype="float32") == \
        (1 + 10 * (T + 1)) * S + registry.strategy_scratch_bytes(SHAPE, "token_slots", 4, T, 1 + 10 * (T + 1),
                                                                 state_dtype="float32")


@pytest.mark.parametrize("call", [
    lambda: registry.strategy_class("fast_path"),
    lambda: registry.strategy_bytes(SHAPE, "fast_path", 1, 2, 1.0),
    lambda: get_strategy("fast_path"),
    lambda: strategy_backend_class("fast_path", "triton"),
    lambda: phases.phase_of_kernel("gdn_kernel", "fast_path"),
    lambda: phases.assign_phases(["gdn_kernel"], "fast_path"),
], ids=["class", "bytes", "get_strategy", "backend_class", "phase_of_kernel", "assign_phases"])
def test_unknown_strategy_raises_everywhere(call) -> None:
    with pytest.raises(ValueError, match="unknown strategy 'fast_path'"):
        call()


@pytest.mark.parametrize("call", [
    lambda: backends.get("cuda_graphs"),
    lambda: get_strategy("full_cache", backend="cuda_graphs"),
    lambda: strategy_backend_class("full_cache", "cuda_graphs"),
    lambda: backends.needs_contiguous_inputs("cuda_graphs"),
    lambda: backends.twin("cuda_graphs"),
], ids=["registry", "get_strategy", "backend_class", "contiguous_inputs", "twin"])
def test_unknown_backend_raises_everywhere(call) -> None:
    with pytest.raises(ValueError, match="unknown .*backend 'cuda_graphs'"):
        call()


def test_contiguous_inputs_is_a_registry_fact_of_flashinfer_only() -> None:
    """The component bench hands contiguous q/k/v/a/b to FlashInfer (its wrappers copy strided views)."""
    assert [b.name for b in backends.BACKENDS if b.contiguous_inputs] == ["flashinfer"]
    assert backends.needs_contiguous_inputs(" FlashInfer ") and not backends.needs_contiguous_inputs("triton")


def test_every_engine_backend_has_a_gdnlab_twin_and_only_they_do() -> None:
    """An engine's own code path is compared with a gdnlab backend in the same role (gdnlab.analysis.engine_gap):
    a registered backend without an engine, that times strategies; gdnlab's own backends have none."""
    assert backends.engine_names() == ("sglang_triton", "sglang_flashinfer", "sglang_cutedsl", "vllm_triton",
                                       "vllm_cuda")
    assert {n: backends.twin(n) for n in backends.engine_names()} == {
        "sglang_triton": "triton", "sglang_flashinfer": "flashinfer", "sglang_cutedsl": "flashinfer",
        "vllm_triton": "triton", "vllm_cuda": "triton"}
    for b in backends.BACKENDS:
        if b.engine:
            tw = backends.get(b.twin)
            assert tw.engine is None and not tw.oracle and tw.name in backends.strategy_backend_names(), b.name
        else:
            assert b.twin is None and backends.twin(f" {b.name.upper()} ") is None, b.name


def test_engine_runs_give_command_lines() -> None:
    run = registry.strategy_class("replay_ring").engine_runs[0]
    args = engines.command_args(run, 4, "float32")
    assert args[:8] == ["--speculative-algorithm", "NEXTN", "--speculative-num-steps", "3", "--speculative-eagle-topk",
                        "1", "--speculative-num-draft-tokens", "4"]
    assert "--enable-linear-replayssm-spec" in args and run.runs(state_dtype="bfloat16")   # allowed, with a warning
    assert not registry.strategy_class("full_cache").engine_runs[2].runs(state_dtype="float32")  # SM100 FI: bf16
    assert engines.spec_args("vllm", None, "bfloat16") == ["--mamba-ssm-cache-dtype", "bfloat16"]
    with pytest.raises(ValueError, match="T >= 2"):
        engines.spec_args("sglang", 1, "float32")
    with pytest.raises(ValueError, match="unknown engine"):
        engines.spec_args("trtllm", 4, "float32")


def test_flashinfer_ring_has_the_ring_facts() -> None:
    """FlashInfer's own ring class carries the registry strategy's facts (it is that strategy)."""
    from gdnlab.strategies.flashinfer import FlashInferReplayRing

    assert issubclass(FlashInferReplayRing, registry.strategy_class("replay_ring"))
    assert torch.bfloat16 in FlashInferReplayRing.state_dtypes

