"""The ``flashinfer`` backend of the verify strategies: FlashInfer 0.7.4's GDN kernels behind gdnlab's
strategy contract (:mod:`gdnlab.strategies.base`).

Read against the flashinfer-python 0.7.4 wheel: ``flashinfer/gdn_decode.py`` = "gd",
``flashinfer/gdn_kernels/gdn_decode_bf16_state.py`` = "bf16",
``gdn_kernels/gdn_decode_bf16_wy_output_only.py`` = "wy", ``gdn_kernels/gdn_decode_bf16_wy_ucache_flush.py``
= "uf", ``gdn_kernels/gdn_decode_mtp.py`` = "mtp"; line numbers of that wheel.

================  ===========  ==================================================================
strategy          state dtype  FlashInfer calls (verify; commit)
================  ===========  ==================================================================
full_cache        fp32, bf16   :class:`gdnlab.kernels.flashinfer.FlashInferBackend` verify (gd L1331
                               ``gated_delta_rule_mtp`` / bf16 L3602, batch-scoped
                               ``intermediate_states_buffer``, ``disable_state_update=True``);
                               commit: the strategy ops' fused scatter (Triton when importable).
token_slots       fp32, bf16   gd L1331 / bf16 L3602 with ``ssm_state_indices [B, T]`` (gd L1405-L1420,
                               L1637-L1657: ``T >= 2``, ``disable_state_update=False``, no buffer; the
                               final write-back to ``initial_state_indices`` is skipped); commit moves
                               a cursor (no kernel).
recompute         bf16         verify: wy L2021 ``gated_delta_rule_mtp`` (frozen state, output only,
                               T <= 16); commit: bf16 L3602 with ``accepted_steps = accepted - 1``,
                               ``disable_output=True`` (ILP4 L478-L482 / wide_vec L1641: the loop stops
                               after the accepted token, then the state is written back once).
recompute         fp32         verify: gd L1331 with ``disable_state_update=True`` and no buffer;
                               commit: gd L1331 with ``disable_state_update=False`` over T tokens whose
                               rejected tail is *masked* (see below).
recompute_fused   bf16         bf16 L3602 per-request fused recovery (bf16 L949-L968, L1377-L1384,
                               L1604-L1653): Phase A replays ``accepted_steps + 1`` stashed tokens
                               without output and writes that state to the pool, Phase B runs the
                               rest with output; wide_vec only, ``B * HV >= 128`` (bf16 L3759-L3764).
replay_ring       bf16         uf L3280 ``gated_delta_rule_mtp_ucache_flush`` (32-slot ring, window
                               <= 16, ``T in {4, 8}``, HMMA on SM90; uf L3327-L3329: cursor commits
                               are the caller's), ``restart_hist_on_flush=False``; commit moves the
                               cursor (no kernel).
================  ===========  ==================================================================

Not on SM90: ``gated_delta_rule_mtp(cache_replayssm=True)`` and
``gated_delta_rule_replayssm_commit`` (fold every commit) need SM100/SM103 or SM120 (gd L1666-L1668,
gd L1836-L1838); :data:`SM90_UNAVAILABLE` lists them with that reason.

**Masked tokens.** FlashInfer's fixed-T kernels have no per-row token count except the bf16
``accepted_steps``. A token with ``a = b =`` :data:`MASK_LOGIT` leaves the state exactly unchanged:
``softplus(a + dt_bias)`` is ``log(1 + exp(-1e4)) = 0`` (``gdn_kernels/_softplus.py``), so the decay
is ``exp(0) = 1``, and ``beta = 1 / (1 + exp(1e4)) = 0`` (mtp L363), so ``u = 0``. Replays of
``count[i] < T`` tokens mask the tail; the fused verify masks rejected stashed tokens.

**Stashes** hold the raw inputs a FlashInfer replay takes (``k``, ``v``, ``a``, ``b`` in the
activation dtype, plus ``A_log``/``dt_bias`` for :meth:`VerifyStrategy.state`), not the reference's
``(u, k, g)``: FlashInfer's recovery recomputes ``S k`` per token. They are allocated at the first
verify (the q/k head count H is not known from the pool) and sized for bf16 activations in
:meth:`scratch_bytes`.

Padding rows: the bf16 kernels read (and the state-writing ones write) slot 0 for index -1 (bf16
L1028-L1029), which :class:`gdnlab.state.StatePool` reserves; every strategy here declares it with
:meth:`~VerifyStrategy.scratch_slots_for` (bf16 pools); the WY kernel is handed slot 0 explicitly;
outputs of padding rows are zeroed after each call. Bookkeeping never reads the device from the
host and never assigns a host scalar through an index (``index_fill_``), so ``verify``/``commit``
are CUDA-graph capturable. FlashInfer is imported lazily: importing this module needs neither
FlashInfer nor a GPU.
"""
from __future__ import annotations

# The private names below stay importable from here (tests read the FlashInfer module names). The
# seams (``_import_module``, ``_cuda_available``, ``_current_cc``, ``_tensor_cc``) deliberately do
# not: the code looks them up in :mod:`._common`, so that is the module a test patches.
from ..base import VerifyStrategy
from ._common import _BF16 as _BF16
from ._common import _GD as _GD
from ._common import _MTP as _MTP
from ._common import _UF as _UF
from ._common import _WY as _WY
from ._common import BACKEND, MASK_LOGIT, SM90_UNAVAILABLE, FlashInferOps, availability
from ._common import _as_cc as _as_cc
from ._common import _FlashInferStrategy as _FlashInferStrategy
from ._common import _sm_name as _sm_name
from .full_cache import FlashInferFullCache
from .recompute import FlashInferRecompute, FlashInferRecomputeFused, FusedRawStashScratch, RawStashScratch
from .recompute import _ensure_stash as _ensure_stash
from .recompute import _raw_entry_bytes as _raw_entry_bytes
from .replay_ring import _RING_SLOTS as _RING_SLOTS
from .replay_ring import _W_RING as _W_RING
from .replay_ring import FlashInferReplayRing, UCacheRingScratch
from .token_slots import FlashInferTokenSlots

__all__ = ["STRATEGIES", "availability", "BACKEND", "SM90_UNAVAILABLE", "MASK_LOGIT", "FlashInferOps",
           "FlashInferFullCache", "FlashInferTokenSlots", "FlashInferRecompute", "FlashInferRecomputeFused",
           "FlashInferReplayRing", "RawStashScratch", "FusedRawStashScratch", "UCacheRingScratch"]

STRATEGIES: dict[str, type[VerifyStrategy]] = {
    c.name: c for c in (FlashInferFullCache, FlashInferTokenSlots, FlashInferRecompute, FlashInferRecomputeFused,
                        FlashInferReplayRing)}
