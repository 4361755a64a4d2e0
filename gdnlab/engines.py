"""Serving engines: which released version runs a verify strategy, with which command-line flags.

The facts of *one strategy in one engine* are an :class:`EngineRun`, declared on the strategy class
(:attr:`gdnlab.strategies.base.VerifyStrategy.engine_runs`); the flags every speculative run of an
engine needs (draft length, state dtype) are :func:`spec_args`. Together they are the command line
that selects a measured option: :func:`command_args`. Nothing here imports an engine: the facts were
read from the released sources named in each ``source`` (SGLang 0.5.23, vLLM 0.33.0).

T is gdnlab's draft tokens per verify step *including* the bonus token (a verify step keeps 1..T
tokens); an engine's "number of speculative tokens" is ``T - 1``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["EngineRun", "ENGINE_VERSIONS", "ENGINE_LABELS", "spec_args", "command_args", "engine_names"]

#: the released versions whose flags gdnlab states, per engine
ENGINE_VERSIONS: dict[str, str] = {"sglang": "0.5.23", "vllm": "0.33.0"}
ENGINE_LABELS: dict[str, str] = {"sglang": "SGLang", "vllm": "vLLM"}

#: where the engine-level flags are defined, per engine
SPEC_SOURCES: dict[str, str] = {
    "sglang": "sgl-project/sglang v0.5.23 python/sglang/srt/server_args.py (--speculative-algorithm, "
              "--speculative-num-steps, --speculative-eagle-topk, --speculative-num-draft-tokens, --mamba-ssm-dtype)",
    "vllm": "vllm-project/vllm v0.33.0 vllm/config/speculative.py SpeculativeConfig.num_speculative_tokens, "
            "vllm/config/cache.py CacheConfig.mamba_ssm_cache_dtype (--mamba-ssm-cache-dtype)",
}


@dataclass(frozen=True)
class EngineRun:
    """One way a released serving engine runs a verify strategy.

    Attributes:
        engine: ``"sglang"`` or ``"vllm"`` (:data:`ENGINE_VERSIONS`).
        version: the release these flags were read from.
        args: the command-line tokens that select this strategy, besides :func:`spec_args`.
        env: environment variables that select it (``(("VLLM_GDN_DECODE_KERNEL", "cuda"),)``).
        state_dtypes: state dtypes the engine allows on this path (its SSM-dtype flag values).
        backends: gdnlab backends whose measurements are this path's own kernels (an engine backend
            running the engine's code, or the kernel library the engine calls unchanged); empty when
            no registered backend runs exactly what the engine runs.
        sms: GPU architectures (``"sm90"``, ``"sm100"``) where the engine takes this path; ``()`` = any.
        max_draft_tokens: the largest T the path takes (``None``: no limit stated).
        source: file (and PR) in the engine's repository where this was read.
        note: what differs from gdnlab's own version of the strategy, in one line.
    """

    engine: str
    version: str
    args: tuple[str, ...]
    state_dtypes: tuple[str, ...] = ("float32", "bfloat16")
    backends: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    sms: tuple[str, ...] = ()
    max_draft_tokens: int | None = None
    source: str = ""
    note: str = ""

    def runs(self, *, state_dtype: str | None = None, sm: str | None = None, draft_tokens: int | None = None
             ) -> bool:
        """Whether this path exists for that state dtype, GPU architecture and T (``None``: any)."""
        if state_dtype is not None and state_dtype not in self.state_dtypes:
            return False
        if sm is not None and self.sms and sm not in self.sms:
            return False
        return not (draft_tokens is not None and self.max_draft_tokens is not None
                    and draft_tokens > self.max_draft_tokens)


def engine_names() -> tuple[str, ...]:
    return tuple(ENGINE_VERSIONS)


def _engine(engine: str) -> str:
    key = str(engine).strip().lower()
    if key not in ENGINE_VERSIONS:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_VERSIONS)}")
    return key


def spec_args(engine: str, draft_tokens: int | None, state_dtype: str) -> list[str]:
    """The flags every run of ``engine`` needs: MTP with ``draft_tokens`` = T tokens verified per step
    (``None``: no speculation) and the SSM state dtype. Raises ``ValueError`` for an unknown engine or
    ``draft_tokens < 2`` (one token per step is plain decode: pass ``None``)."""
    key = _engine(engine)
    if draft_tokens is not None and int(draft_tokens) < 2:
        raise ValueError(f"draft_tokens={draft_tokens}: a speculative step verifies T >= 2 tokens "
                         "(the bonus token and T - 1 drafts); pass None for no speculation")
    if key == "sglang":
        out = [] if draft_tokens is None else [
            "--speculative-algorithm", "NEXTN", "--speculative-num-steps", str(draft_tokens - 1),
            "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", str(draft_tokens)]
        return [*out, "--mamba-ssm-dtype", state_dtype]
    out = [] if draft_tokens is None else [
        "--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": int(draft_tokens) - 1})]
    return [*out, "--mamba-ssm-cache-dtype", state_dtype]


def command_args(run: EngineRun, draft_tokens: int | None, state_dtype: str) -> list[str]:
    """Every command-line token that selects ``run`` at T = ``draft_tokens`` and ``state_dtype``."""
    return [*spec_args(run.engine, draft_tokens, state_dtype), *run.args]
