"""Which GDN decode / verify / commit kernels SGLang 0.5.23 runs for a set of flags, mirrored.

SGLang picks its GDN kernels in three places, all read from the sglang 0.5.23 wheel (line numbers of
that wheel; ``python/`` prefix of the repository omitted):

* ``sglang/srt/arg_groups/attention_hook.py`` ``handle_linear_attn_backend`` L281-L380 and L450-L525:
  the SM100 default (decode ``flashinfer`` when unset and ``--mamba-ssm-dtype bfloat16``, L289-L307),
  the SM100+ bf16-state requirement of FlashInfer decode and verify (L334-L345, L366-L377), verify
  following a FlashInfer decode (L347-L349), the ReplaySSM guards (decode ring: Triton decode,
  L409-L415; spec ring: Triton or FlashInfer decode, not with the decode ring, state dtype defaulting
  to float32 and any other dtype only warned about, L450-L525).
* ``sglang/srt/layers/attention/linear/utils.py`` ``resolve_linear_attn_backends`` L83-L111 (an unset
  verify backend is the decode backend when that is ``flashinfer``, else ``triton``) and
  ``gdn_backend.py`` ``flashinfer_gdn_prefill_default`` L191-L236 (prefill defaults to FlashInfer on
  SM90 with a float32 state and on SM100 with a bf16 state and CUDA >= 13, K = V = 128, chunked
  prefill within 32768 / 8192 tokens).
* ``gdn_backend.py`` ``GDNKernelDispatcher.__init__`` L254-L362: an explicit ``triton`` verify wins;
  otherwise the FlashInfer kernel verifies when decode *or prefill* is FlashInfer and
  ``FlashInferGDNKernel.supports_target_verify`` (SM90 or SM100, ``gdn_flashinfer.py`` L218), else
  Triton — so ``--linear-attn-verify-backend flashinfer`` with a Triton decode verifies with Triton
  unless prefill is FlashInfer. A ReplaySSM spec ring replaces the verify kernel altogether
  (``gdn_backend.py`` L1108-L1135).

:func:`sglang_gdn_kernels` applies these rules (importing nothing of SGLang) and names the kernels and
the gdnlab backend that runs each phase. It raises ``ValueError`` with SGLang's own reason for the
flag sets SGLang refuses at startup, and for the one it accepts but cannot run: FlashInfer verify on
SM90 with a bf16 state (the SM90 MTP kernel, ``flashinfer.gdn_decode.gated_delta_rule_mtp``,
asserts a float32 state; SGLang's own comment at ``gdn_backend.py`` L349-L352).

The strings compared here (``triton``, ``flashinfer``, ``cutedsl``) are SGLang's own values of
``--linear-attn-decode-backend`` / ``--linear-attn-verify-backend``, not gdnlab backend names; the
gdnlab backend of each kernel is read from :data:`KERNELS`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SGLangGDNKernels", "sglang_gdn_kernels", "KERNELS"]

_BACKENDS = ("triton", "flashinfer", "cutedsl")
_DTYPES = ("float32", "bfloat16")

#: kernel (function) SGLang calls per (phase, choice); the gdnlab backend that runs it
KERNELS: dict[tuple[str, str], tuple[str, str]] = {
    ("decode", "triton"): ("fused_recurrent_gated_delta_rule_packed_decode", "sglang_triton"),
    ("decode", "triton+replayssm"): ("fused_recurrent_gdn_replayssm_decode", "sglang_triton"),
    ("decode", "flashinfer_sm90"): ("gated_delta_rule_decode_pretranspose (gather, run, scatter)",
                                    "sglang_flashinfer"),
    ("decode", "flashinfer_sm100"): ("gated_delta_rule_decode_pretranspose (pool API)", "sglang_flashinfer"),
    ("decode", "cutedsl"): ("cutedsl_fused_sigmoid_gating_delta_rule_update", "sglang_cutedsl"),
    ("verify", "triton"): ("fused_sigmoid_gating_delta_rule_update (disable_state_update, intermediate buffer)",
                           "sglang_triton"),
    ("verify", "flashinfer_sm90"): ("flashinfer.gdn_decode.gated_delta_rule_mtp (float32 state)", "sglang_flashinfer"),
    ("verify", "flashinfer_sm100"): ("flashinfer gdn_decode_bf16_state.gated_delta_rule_mtp", "sglang_flashinfer"),
    ("verify", "replayssm_spec"): ("gdn_replayssm_spec_decode(launch_mode='verify')", "sglang_triton"),
    ("commit", "full_cache"): ("fused_mamba_state_scatter_with_mask", "sglang_triton"),
    ("commit", "replay_ring"): ("commit_gdn_replayssm_spec + commit_gdn_replayssm_circular", "sglang_triton"),
}


@dataclass(frozen=True)
class SGLangGDNKernels:
    """What SGLang runs per phase: the resolved flag values, the kernel names and the gdnlab backend
    of each phase, the verify strategy, the state dtype and notes (warnings SGLang logs)."""

    decode: str
    prefill: str
    verify: str
    state_dtype: str
    strategy: str
    decode_kernel: str
    verify_kernel: str
    commit_kernel: str
    decode_backend: str
    verify_backend: str
    notes: tuple[str, ...] = ()


def _cc(sm: int | str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(sm, tuple):
        return int(sm[0]), int(sm[1])
    s = str(sm).lower().removeprefix("sm").rstrip("a")
    if not s.isdigit() or len(s) < 2:
        raise ValueError(f"sm must look like 90, 'sm90', 'sm100a' or (9, 0), got {sm!r}")
    return int(s[:-1]), int(s[-1])


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} for a GDN model, got {value!r}")
    return value


def _prefill_default(base: str, prefill: str | None, major: int, dtype: str, cuda_major: int, K: int, V: int,
                     chunked_prefill_size: int | None, flashinfer_available: bool) -> str | None:
    """``gdn_backend.py`` L191-L236 (deterministic inference and dynamic chunking: off)."""
    if prefill is not None or base != "triton" or major not in (9, 10):
        return None
    if major == 10:
        if cuda_major < 13:
            return None
        max_chunk, want = 8192, "bfloat16"
    else:
        max_chunk, want = 32768, "float32"
    if chunked_prefill_size is None or not 1 <= chunked_prefill_size <= max_chunk:
        return None
    if (K, V) != (128, 128) or dtype != want or not flashinfer_available:
        return None
    return "flashinfer"


def _startup_rule(major: int, base: str, dec: str | None, ver: str | None, dtype: str | None, replayssm: bool,
                  replayssm_spec: bool, notes: list[str]) -> tuple[str, str | None, str]:
    """``handle_linear_attn_backend`` (attention_hook.py L281-L380, L409-L525): the resolved decode
    backend, verify flag and state dtype; ``ValueError`` where SGLang refuses to start."""
    if replayssm_spec and replayssm:
        raise ValueError("--enable-linear-replayssm-spec and --enable-linear-replayssm are mutually exclusive")
    if dtype is None:
        if not replayssm_spec:
            raise ValueError("state_dtype=None: SGLang reads mamba_ssm_dtype from the model config; pass it")
        dtype = "float32"                                   # attention_hook.py L506-L516
    elif replayssm_spec and dtype != "float32":
        notes.append("SGLang warns: --enable-linear-replayssm-spec with a non-float32 state folds the ring "
                     "into the checkpoint after every accepted window (attention_hook.py L517-L525)")
    if dec is None and base != "helion" and major == 10 and dtype == "bfloat16":
        dec = "flashinfer"                                  # attention_hook.py L289-L307
    dec = dec or base
    if dec == "flashinfer" and dtype != "bfloat16" and major >= 10:
        raise ValueError(f"--linear-attn-decode-backend flashinfer on SM100+ requires --mamba-ssm-dtype bfloat16, "
                         f"got {dtype!r}")
    if ver is None and dec == "flashinfer":
        ver = "flashinfer"
    if ver == "flashinfer" and dtype != "bfloat16" and major >= 10:
        raise ValueError(f"--linear-attn-verify-backend flashinfer on SM100+ requires --mamba-ssm-dtype bfloat16, "
                         f"got {dtype!r}")
    if replayssm and dec != "triton":
        raise ValueError(f"--enable-linear-replayssm requires Triton as the linear-attn decode backend; "
                         f"got --linear-attn-decode-backend={dec!r}")
    if replayssm_spec and dec not in ("triton", "flashinfer"):
        raise ValueError(f"--enable-linear-replayssm-spec requires the triton or flashinfer linear-attn decode "
                         f"backend, got --linear-attn-decode-backend={dec!r}")
    return dec, ver, dtype


def sglang_gdn_kernels(*, sm: int | str | tuple[int, int], state_dtype: str | None,
                       decode_backend: str | None = None, verify_backend: str | None = None,
                       prefill_backend: str | None = None, linear_attn_backend: str = "triton",
                       replayssm_spec: bool = False, replayssm: bool = False, cuda_major: int = 13,
                       head_k_dim: int = 128, head_v_dim: int = 128, chunked_prefill_size: int | None = 8192,
                       flashinfer_available: bool = True) -> SGLangGDNKernels:
    """The GDN kernels SGLang 0.5.23 runs for these flags on a GPU of compute capability ``sm``.

    Args:
        sm: ``90``, ``"sm100"`` or ``(10, 0)``.
        state_dtype: ``--mamba-ssm-dtype`` (``"float32"`` / ``"bfloat16"``); ``None`` = unset, which
            only ``replayssm_spec`` resolves (to float32); otherwise SGLang reads the model config.
        decode_backend, verify_backend, prefill_backend: ``--linear-attn-{decode,verify,prefill}-backend``
            (``None`` = unset).
        linear_attn_backend: ``--linear-attn-backend`` (default ``"triton"``).
        replayssm_spec: ``--enable-linear-replayssm-spec``; replayssm: ``--enable-linear-replayssm``.
        cuda_major: the CUDA major version torch was built with (``torch.version.cuda``).
        head_k_dim, head_v_dim, chunked_prefill_size: model and server facts the prefill default reads.
        flashinfer_available: FlashInfer's GDN kernels import.

    Raises ``ValueError`` for a flag set SGLang refuses (its message) or cannot run.
    """
    major, _ = _cc(sm)
    base = _choice("--linear-attn-backend", linear_attn_backend, _BACKENDS)
    dec = _choice("--linear-attn-decode-backend", decode_backend, _BACKENDS)
    ver = _choice("--linear-attn-verify-backend", verify_backend, ("triton", "flashinfer"))
    pre = _choice("--linear-attn-prefill-backend", prefill_backend, ("triton", "flashinfer"))
    dtype = _choice("--mamba-ssm-dtype", state_dtype, _DTYPES)
    notes: list[str] = []
    dec, ver, dtype = _startup_rule(major, base, dec, ver, dtype, replayssm, replayssm_spec, notes)
    prefill = pre or _prefill_default(base, pre, major, dtype, cuda_major, head_k_dim, head_v_dim,
                                      chunked_prefill_size, flashinfer_available) or base
    ver = ver or ("flashinfer" if dec == "flashinfer" else "triton")      # utils.py L101-L104
    if dec in ("flashinfer", "cutedsl") and major < 9:
        raise ValueError(f"--linear-attn-decode-backend {dec} needs SM90+ (FlashInferGDNKernel / CuTe DSL)")
    fi_verifies = (ver != "triton" and "flashinfer" in (dec, prefill) and major in (9, 10))
    if ver == "flashinfer" and not fi_verifies:
        notes.append("--linear-attn-verify-backend flashinfer falls back to Triton: neither decode nor prefill "
                     "is FlashInfer, or the GPU is not SM90/SM100 (gdn_backend.py L348-L362)")
    arch = "sm100" if major >= 10 else "sm90"
    if replayssm_spec:
        strategy, vkey, ckey = "replay_ring", ("verify", "replayssm_spec"), ("commit", "replay_ring")
    elif fi_verifies:
        if arch == "sm90" and dtype != "float32":
            raise ValueError("FlashInfer verify on SM90 needs --mamba-ssm-dtype float32 (its MTP kernel asserts a "
                             "float32 state); pass --linear-attn-verify-backend triton for a bf16 state")
        strategy, vkey, ckey = "full_cache", ("verify", f"flashinfer_{arch}"), ("commit", "full_cache")
    else:
        strategy, vkey, ckey = "full_cache", ("verify", "triton"), ("commit", "full_cache")
    if dec == "flashinfer" and arch == "sm90" and dtype != "float32":
        raise ValueError("SGLang's FlashInfer GDN decode on SM90 runs a float32 state (gdn_flashinfer.py L3-L5)")
    dkey = ("decode", {"triton": "triton+replayssm" if replayssm else "triton", "cutedsl": "cutedsl",
                       "flashinfer": f"flashinfer_{arch}"}[dec])
    verify = "flashinfer" if fi_verifies and not replayssm_spec else "triton"     # the ring's kernel is Triton
    return SGLangGDNKernels(dec, prefill, verify, dtype, strategy,
                            KERNELS[dkey][0], KERNELS[vkey][0], KERNELS[ckey][0], KERNELS[dkey][1],
                            KERNELS[vkey][1], tuple(notes))
