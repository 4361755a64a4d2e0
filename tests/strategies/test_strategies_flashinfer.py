"""The ``flashinfer`` verify strategies (:mod:`gdnlab.strategies.flashinfer`).

CPU tests: the module imports without FlashInfer or CUDA; availability and ``supports`` reasons;
argument checks; and the strategies' bookkeeping end to end against the reference strategies, with
FlashInfer replaced by fakes that have FlashInfer 0.7.4's exact signatures (so a misspelt keyword
fails here) and compute its documented semantics in PyTorch. GPU tests: the real kernels against the
reference strategies at the Qwen3.5-397B TP4 shape.
"""
from __future__ import annotations

import types

import pytest
import torch

import gdnlab.kernels.flashinfer as kfi
import gdnlab.strategies.flashinfer as sfi
from gdnlab.inputs import make_inputs
from gdnlab.kernels.reference import gdn_gates, l2norm
from gdnlab.kernels.tolerances import assert_close, output_tol, state_tol
from gdnlab.shapes import GDNShape, preset
from gdnlab.state import StatePool
from gdnlab.strategies import get_strategy
from gdnlab.strategies.check import check_strategy
from gdnlab.strategies.host_sync import check_capturable, opaque

from helpers.ids import case_id

NAMES = ("full_cache", "token_slots", "recompute", "recompute_fused", "replay_ring")


# ---------------------------------------------------------------------------------------------- fakes
def _step(S, q, k, v, g, beta):
    """One delta-rule token for every row/head (float32): returns (S, o, u, kn)."""
    S = S * torch.exp(g)[..., None, None]
    u = beta[..., None] * (v - torch.einsum("nhvk,nhk->nhv", S, k))
    S = S + u[..., :, None] * k[..., None, :]
    return S, torch.einsum("nhvk,nhk->nhv", S, q), u


def _prep(q, k, v, a, b, A_log, dt_bias, scale):
    B, T, H, K = q.shape
    r = v.shape[2] // H
    scale = K ** -0.5 if scale is None else scale
    qn = l2norm(q.float()).repeat_interleave(r, 2) * scale
    kn = l2norm(k.float()).repeat_interleave(r, 2)
    g, beta = gdn_gates(a, b, A_log.float(), dt_bias.float(), torch.float32)
    return qn, kn, v.float(), g, beta


def fake_mtp_fp32(q, k, v, initial_state, initial_state_indices, A_log, a, dt_bias, b, scale=None, output=None,
                  intermediate_states_buffer=None, ssm_state_indices=None, disable_state_update=None,
                  use_qk_l2norm=True, output_state_indices=None, cache_replayssm=False, replayssm_rawv=None,
                  replayssm_rawk=None, replayssm_g=None, replayssm_beta=None):
    """flashinfer.gdn_decode.gated_delta_rule_mtp (0.7.4): padding rows skipped, per-token scatter."""
    assert initial_state.dtype == torch.float32 and A_log.dtype == torch.float32
    assert not cache_replayssm
    if ssm_state_indices is not None:
        assert intermediate_states_buffer is None and not disable_state_update
        assert ssm_state_indices.dtype == torch.int32
    B, T = q.shape[:2]
    out = torch.zeros((B, T, *v.shape[2:]), dtype=torch.bfloat16) if output is None else output
    qn, kn, vf, g, beta = _prep(q, k, v, a, b, A_log, dt_bias, scale)
    for i in range(B):
        s = int(initial_state_indices[i])
        if s < 0:
            continue
        S = initial_state[s].float()[None]
        for t in range(T):
            S, o, _ = _step(S, qn[i:i + 1, t], kn[i:i + 1, t], vf[i:i + 1, t], g[i:i + 1, t], beta[i:i + 1, t])
            out[i, t] = o[0].to(out.dtype)
            if intermediate_states_buffer is not None:
                intermediate_states_buffer[i, t] = S[0]
            if ssm_state_indices is not None:
                initial_state[int(ssm_state_indices[i, t])] = S[0]
        if not disable_state_update and ssm_state_indices is None:
            initial_state[s] = S[0]
    return out, initial_state


def fake_mtp_bf16(A_log, a, dt_bias, softplus_beta=1.0, softplus_threshold=20.0, q=None, k=None, v=None, b=None,
                  initial_state_source=None, initial_state_indices=None, output_state_indices=None,
                  intermediate_states_buffer=None, accepted_steps=None, ssm_state_indices=None,
                  disable_state_update=False, use_qk_l2norm_in_kernel=True, scale=None, output=None,
                  disable_output=False, recovery_steps=0):
    """gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp (0.7.4): -1 -> slot 0, accepted_steps,
    per-request fused recovery (wide_vec only), per-token scatter; state in fp32 between tokens."""
    pool = initial_state_source
    assert pool.dtype == torch.bfloat16 and A_log.dtype == torch.float32 and initial_state_indices is not None
    B, T, _, K = q.shape
    HV = v.shape[2]
    fused = accepted_steps is not None and not disable_output and not disable_state_update and ssm_state_indices is None
    if fused:
        assert B * HV >= 128, "fused recovery needs the wide_vec path"
    if accepted_steps is not None:
        assert accepted_steps.dtype == torch.int32 and tuple(accepted_steps.shape) == (B,)
    out = torch.empty((B, T, HV, v.shape[3]), dtype=torch.bfloat16) if output is None else output
    qn, kn, vf, g, beta = _prep(q, k, v, a, b, A_log, dt_bias, scale)
    for i in range(B):
        s = max(int(initial_state_indices[i]), 0)
        S = pool[s].float()[None]
        acc = int(accepted_steps[i]) if accepted_steps is not None else T - 1
        n = T if (fused or accepted_steps is None) else acc + 1
        for t in range(n):
            S, o, _ = _step(S, qn[i:i + 1, t], kn[i:i + 1, t], vf[i:i + 1, t], g[i:i + 1, t], beta[i:i + 1, t])
            if not disable_output and (not fused or t > acc):
                out[i, t] = o[0].to(out.dtype)
            if intermediate_states_buffer is not None:
                intermediate_states_buffer[i, t] = S[0].to(torch.bfloat16)
            if ssm_state_indices is not None:
                pool[int(ssm_state_indices[i, t])] = S[0].to(pool.dtype)
            if fused and t == acc:
                pool[s] = S[0].to(pool.dtype)
        writes_steps = intermediate_states_buffer is not None or ssm_state_indices is not None
        if not (disable_state_update or fused or writes_steps):
            pool[s] = S[0].to(pool.dtype)
    return out


def fake_wy(A_log, a, dt_bias, softplus_beta=1.0, softplus_threshold=20.0, q=None, k=None, v=None, b=None,
            initial_state_source=None, initial_state_indices=None, output_state_indices=None,
            intermediate_states_buffer=None, accepted_steps=None, ssm_state_indices=None, disable_state_update=False,
            use_qk_l2norm_in_kernel=True, scale=None, output=None, disable_output=False, recovery_steps=0):
    """gdn_kernels.gated_delta_rule_mtp_wy_output_only (0.7.4): frozen state, A_log/dt_bias in bf16."""
    assert bool((initial_state_indices >= 0).all()), "the WY kernel is handed slot 0 for padding rows"
    pool = initial_state_source.clone()
    out = fake_mtp_bf16(A_log.to(torch.bfloat16).float(), a, dt_bias.to(torch.bfloat16).float(), q=q, k=k, v=v, b=b,
                        initial_state_source=pool, initial_state_indices=initial_state_indices,
                        disable_state_update=True, scale=scale)
    if output is None:
        return out
    output.copy_(out)
    return output


def fake_ucache_flush(A_log, a, dt_bias, softplus_beta=1.0, softplus_threshold=20.0, q=None, k=None, v=None, b=None,
                      initial_state_source=None, initial_state_indices=None, output_state_indices=None,
                      intermediate_states_buffer=None, accepted_steps=None, ssm_state_indices=None,
                      disable_state_update=False, use_qk_l2norm_in_kernel=True, scale=None, output=None,
                      disable_output=False, recovery_steps=0, k_cache=None, u_cache=None, g_cache=None,
                      hist_len=None, cache_base=None, flush_min=None, restart_hist_on_flush=True, pdl_trigger=False,
                      backend="auto", stochastic_rounding=None, rand_seed=None, philox_rounds=0):
    """gdn_kernels.gated_delta_rule_mtp_ucache_flush (0.7.4 docstring semantics): window [base, base+P)
    mod 32; P >= flush_min folds into the pool; T new (k, u, G) appended at base+P+s."""
    assert not restart_hist_on_flush and hist_len.dtype == torch.int32 and cache_base.dtype == torch.int32
    B, T, H, K = q.shape
    HV = v.shape[2]
    assert T in (4, 8) and 1 <= flush_min <= 16 - T + 1
    pool = initial_state_source
    out = torch.empty((B, T, HV, v.shape[3]), dtype=torch.bfloat16) if output is None else output
    qn, kn, vf, g, beta = _prep(q, k, v, a, b, A_log.to(torch.bfloat16), dt_bias.to(torch.bfloat16), scale)
    r = HV // H
    for i in range(B):
        s = int(initial_state_indices[i])
        if s < 0:
            continue
        P, base = int(hist_len[i]), int(cache_base[i])
        assert 0 <= P <= 16 and 0 <= base < 32
        rows = [(base + j) & 31 for j in range(P)]
        G = g_cache[s][:, rows]                                                  # [HV, P]
        Gp = G[:, -1] if P else torch.zeros(HV)
        S = pool[s].float() * torch.exp(Gp)[:, None, None]
        for jj, row in enumerate(rows):
            w = torch.exp(Gp - G[:, jj])
            kk = k_cache[s][:, row].float().repeat_interleave(r, 0)
            S = S + w[:, None, None] * u_cache[s][:, row].float()[:, :, None] * kk[:, None, :]
        flushed = P >= flush_min
        if flushed:
            pool[s] = S.to(pool.dtype)
        Gacc = torch.zeros(HV) if flushed else Gp.clone()
        S = S[None]
        for t in range(T):
            S, o, u = _step(S, qn[i:i + 1, t], kn[i:i + 1, t], vf[i:i + 1, t], g[i:i + 1, t], beta[i:i + 1, t])
            out[i, t] = o[0].to(out.dtype)
            row = (base + P + t) & 31
            Gacc = Gacc + g[i, t]
            u_cache[s][:, row] = u[0].to(u_cache.dtype)
            k_cache[s][:, row] = l2norm(k[i, t].float()).to(k_cache.dtype)
            g_cache[s][:, row] = Gacc
    return out


def _fake_modules(fail: str | None = None) -> dict[str, types.SimpleNamespace]:
    mods = {
        "cutlass": types.SimpleNamespace(), "cutlass.cute": types.SimpleNamespace(),
        "flashinfer": types.SimpleNamespace(__version__="0.7.4"),
        sfi._GD: types.SimpleNamespace(gated_delta_rule_mtp=fake_mtp_fp32, gated_delta_rule_decode_pretranspose=None),
        sfi._MTP: types.SimpleNamespace(),
        sfi._BF16: types.SimpleNamespace(
            gated_delta_rule_mtp=fake_mtp_bf16,
            _select_wide_vec_tile_v=lambda B, HV: 128 if B * HV >= 1024 else 64 if B * HV >= 512
            else 32 if B * HV >= 128 else None),
        sfi._WY: types.SimpleNamespace(gated_delta_rule_mtp=fake_wy),
        sfi._UF: types.SimpleNamespace(gated_delta_rule_mtp_ucache_flush=fake_ucache_flush, RING_SLOTS=32,
                                       W_RING=16),
    }
    return {k: v for k, v in mods.items() if k != fail}


def _importer(mods):
    def imp(name):
        if name not in mods:
            raise ImportError(f"No module named {name!r}")
        return mods[name]
    return imp


@pytest.fixture
def fake_flashinfer(monkeypatch):
    """CPU tensors pass as an SM90 GPU's, and FlashInfer's modules are the fakes above."""
    imp = _importer(_fake_modules())
    monkeypatch.setattr(sfi._common, "_import_module", imp)
    monkeypatch.setattr(kfi, "_import_module", imp)
    monkeypatch.setattr(sfi._common, "_tensor_cc", lambda t: (9, 0))
    monkeypatch.setattr(kfi, "device_capability", lambda d: (9, 0))
    return imp


@pytest.fixture
def opaque_flashinfer(monkeypatch, fake_flashinfer):
    """As ``fake_flashinfer``, with every fake kernel exempt from the host-sync guard (it stands in
    for a launch; the fakes read indices on the host)."""
    mods = {k: types.SimpleNamespace(**{a: opaque(f) if callable(f) else f for a, f in vars(m).items()})
            for k, m in _fake_modules().items()}
    imp = _importer(mods)
    monkeypatch.setattr(sfi._common, "_import_module", imp)
    monkeypatch.setattr(kfi, "_import_module", imp)
    return imp


# ---------------------------------------------------------------------------------------------- shared driver
def _bf16_exact_gates(inp, gates=None):
    """FlashInfer's WY kernels read A_log/dt_bias in bf16: give every side bf16-representable values.
    ``gates``: an earlier call's inputs whose A_log/dt_bias to reuse (a layer's constants)."""
    src = inp if gates is None else gates
    inp.A_log = src.A_log.to(torch.bfloat16).float()
    inp.dt_bias = src.dt_bias.to(torch.bfloat16).float()
    return inp


def run_against_reference(name: str, shape: GDNShape, state_dtype: torch.dtype, B: int, T: int, steps: int,
                          device, seed: int = 0) -> sfi.VerifyStrategy:
    """Run ``steps`` verify+commit steps of FlashInfer's and the reference's ``name`` on the same
    inputs (random row order, padding rows, accepted lengths); compare outputs and committed states
    after every step. Returns the FlashInfer strategy (for ``last_path``)."""
    fi = sfi.STRATEGIES[name]()
    ref = get_strategy(name, backend="reference")
    per = fi.slots_per_request(T)
    pool = StatePool(shape, capacity=per * B, dtype=state_dtype, device=device).randomize_(seed).tensor
    pool_ref = pool.clone()
    sc, rc = fi.allocate(pool, B, T), ref.allocate(pool_ref, B, T)
    gen = torch.Generator().manual_seed(seed)
    out_tol = output_tol(torch.bfloat16, state_dtype)
    st_tol = state_tol(state_dtype)
    gates = make_inputs(shape, 1, 1, seed=seed, device=device)   # A_log, dt_bias: constants of the layer
    for step in range(steps):
        slots = (torch.randperm(B, generator=gen) + 1).to(torch.int32)
        n_pad = int(torch.randint(0, max(1, B // 4) + 1, (1,), generator=gen)) if B > 1 else 0
        idx = slots.clone()
        idx[torch.randperm(B, generator=gen)[:n_pad]] = -1
        idx = idx.to(device)
        inp = _bf16_exact_gates(make_inputs(shape, B, T, seed=seed * 1000 + step).to(device), gates)
        o = fi.verify(*inp.args(), pool, idx, sc)
        o_ref = ref.verify(*inp.args(), pool_ref, idx, rc)
        live = (idx >= 0).cpu()
        assert_close(o.cpu()[live], o_ref.cpu()[live], out_tol, f"{name} step {step} outputs")
        assert bool((o.cpu()[~live] == 0).all()), f"{name} step {step}: padding rows' outputs are not zero"
        acc = torch.randint(1, T + 1, (B,), generator=gen).to(device)
        fi.commit(pool, idx, sc, acc)
        ref.commit(pool_ref, idx, rc, acc)
        all_slots = torch.arange(1, B + 1, dtype=torch.int32, device=device)
        assert_close(fi.state(pool, all_slots, sc).cpu(), ref.state(pool_ref, all_slots, rc).cpu(), st_tol,
                     f"{name} step {step} committed states")
    return fi


# ---------------------------------------------------------------------------------------------- CPU tests
def test_module_imports_without_flashinfer_or_cuda():
    assert set(sfi.STRATEGIES) == set(NAMES)
    for name, cls in sfi.STRATEGIES.items():
        assert cls.name == name and cls.backend == "flashinfer"
    assert set(sfi.SM90_UNAVAILABLE) == {"cache_replayssm", "gated_delta_rule_replayssm_commit"}
    assert all("SM100" in why for why in sfi.SM90_UNAVAILABLE.values())


def test_availability_reasons(monkeypatch):
    monkeypatch.setattr(sfi._common, "_current_cc", lambda: None)
    assert sfi.availability() == (False, "no CUDA device")
    assert sfi.STRATEGIES["recompute"].availability() == (False, "no CUDA device")
    monkeypatch.setattr(sfi._common, "_current_cc", lambda: (9, 0))
    monkeypatch.setattr(sfi._common, "_import_module", _importer(_fake_modules(fail=sfi._BF16)))
    ok, why = sfi.availability()
    assert not ok and why.startswith("flashinfer not importable: ") and sfi._BF16 in why
    monkeypatch.setattr(sfi._common, "_import_module", _importer(_fake_modules(fail=sfi._UF)))
    ok, why = sfi.STRATEGIES["replay_ring"].availability()
    assert not ok and sfi._UF in why
    assert sfi.STRATEGIES["full_cache"].availability()[0]
    monkeypatch.setattr(sfi._common, "_import_module", _importer(_fake_modules()))
    monkeypatch.setattr(sfi._common, "_current_cc", lambda: (8, 0))
    assert sfi.availability() == (False, "needs SM90+, found sm80")
    assert sfi.STRATEGIES["full_cache"].availability() == (False, "FlashInfer's GDN MTP kernels need SM90+, found sm80")


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("replay_ring", dict(state_dtype="float32"), "bfloat16 state pool"),
    ("replay_ring", dict(state_dtype="bfloat16", T=3), "T in {4, 8}"),
    ("recompute_fused", dict(state_dtype="float32"), "bfloat16 state pool"),
    ("recompute_fused", dict(state_dtype="bfloat16", T=4, batch=4, HV=16), "B * HV >= 128"),
    ("recompute", dict(state_dtype="bfloat16", T=17), "T <= 16"),
    ("full_cache", dict(T=1), "T >= 2"),
    ("token_slots", dict(sm=80), "SM90+"),
    ("full_cache", dict(state_dtype="bfloat16", K=64, V=128), "K = V = 128"),
    ("token_slots", dict(act_dtype="float32"), "bfloat16 or float16"),
], ids=case_id)
def test_supports_reasons(name, kwargs, fragment):
    ok, why = sfi.STRATEGIES[name].supports(**kwargs)
    assert not ok and fragment in why


@pytest.mark.parametrize("name", NAMES)
def test_supports_real_shape_sm90(name):
    shape = preset("qwen3.5-397b-a17b", tp=4)
    ok, why = sfi.STRATEGIES[name].supports("bfloat16", 4, 64, (9, 0), HV=shape.HV, K=shape.K, V=shape.V,
                                            act_dtype="bfloat16")
    assert ok, why


def test_allocate_and_verify_argument_checks():
    pool32 = torch.zeros(3, 2, 128, 128)
    with pytest.raises(ValueError, match="bfloat16 state pool"):
        sfi.STRATEGIES["replay_ring"]().allocate(pool32, 2, 4)
    with pytest.raises(ValueError, match="T >= 2"):
        sfi.STRATEGIES["full_cache"]().allocate(pool32, 2, 1)
    with pytest.raises(ValueError, match="flush_min"):
        sfi.STRATEGIES["replay_ring"](flush_min=20).allocate(pool32.bfloat16(), 2, 4)
    with pytest.raises(ValueError, match="ring_backend"):
        sfi.STRATEGIES["replay_ring"](ring_backend="tcgen05")
    s = sfi.STRATEGIES["recompute"]()
    sc = s.allocate(pool32, 2, 4)
    inp = make_inputs(GDNShape("t", 1, 2), 2, 4)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        s.verify(*inp.args(), pool32, torch.tensor([1, 2], dtype=torch.int32), sc)


def test_scratch_bytes_match_allocations(fake_flashinfer):
    shape = GDNShape("t", 2, 8, state_dtype=torch.bfloat16)
    B, T = 16, 4
    for name in ("recompute", "recompute_fused", "replay_ring"):
        s = sfi.STRATEGIES[name]()
        pool = StatePool(shape, capacity=B, device="cpu").tensor
        sc = s.allocate(pool, B, T)
        inp = _bf16_exact_gates(make_inputs(shape, B, T))
        s.verify(*inp.args(), pool, torch.arange(1, B + 1, dtype=torch.int32), sc)
        assert s.scratch_bytes(shape, B, T, pool.shape[0]) == sc.nbytes(), name


@pytest.mark.parametrize("name, state_dtype", [
    ("full_cache", torch.float32), ("full_cache", torch.bfloat16),
    ("token_slots", torch.float32), ("token_slots", torch.bfloat16),
    ("recompute", torch.float32), ("recompute", torch.bfloat16),
    ("recompute_fused", torch.bfloat16), ("replay_ring", torch.bfloat16)], ids=case_id)
def test_bookkeeping_against_reference_with_fake_kernels(fake_flashinfer, name, state_dtype):
    """Row permutations, padding rows, accepted lengths, ring folds, pending replays: the strategy
    logic around the (faked) kernels matches the reference strategies step by step."""
    shape = GDNShape("t", 2, 8, state_dtype=state_dtype)  # H=2, HV=8, K=V=128; B*HV=128 for recompute_fused
    fi = run_against_reference(name, shape, state_dtype, B=16, T=4, steps=6, device="cpu", seed=1)
    assert fi.last_path.op in ("verify", "commit") and fi.last_path.arch == "sm90"


CAPTURE_CASES = [(n, dt) for n in NAMES for dt in (torch.float32, torch.bfloat16)
                 if sfi.STRATEGIES[n].supports(dt)[0]]


@pytest.mark.parametrize("name, state_dtype", CAPTURE_CASES,
                         ids=[f"{n}-{str(d).removeprefix('torch.')}" for n, d in CAPTURE_CASES])
def test_verify_commit_fold_are_graph_capturable(opaque_flashinfer, name, state_dtype):
    """Everything around FlashInfer's kernels (bookkeeping, packing, stash copies, folds) builds no
    host tensor, reads nothing back and sizes nothing by data: a step can be captured in a CUDA graph."""
    shape = GDNShape("t", 2, 8, state_dtype=state_dtype)
    s = sfi.STRATEGIES[name]()
    s.ops.scatter_commit = opaque(s.ops.scatter_commit)      # PyTorch stand-in for the fused scatter kernel
    check_capturable(s, shape, batch=16 if name == "recompute_fused" else 4, T=4, state_dtype=state_dtype)


@pytest.mark.parametrize("name", ["token_slots", "recompute_fused", "replay_ring"])
def test_check_strategy_with_fake_kernels_bf16(fake_flashinfer, name):
    """:func:`check_strategy` as a sweep runs it: folds over every request (one more than the batch),
    the bf16 kernels' writes of padding rows into slot 0, which the strategies declare as scratch, and
    (recompute_fused) gates held for ``GATE_EPOCH`` steps with a forced fold before they change."""
    shape = GDNShape("t", 2, 8, state_dtype=torch.bfloat16)
    s = sfi.STRATEGIES[name]()
    assert s.scratch_slots_for(torch.bfloat16) == (0,) and s.scratch_slots_for("float32") == ()
    assert s.constant_gates is (name == "recompute_fused")
    res = check_strategy(s, shape, batch=16 if name == "recompute_fused" else 3, T=4, steps=5,
                         state_dtype=torch.bfloat16, seed=3, drop_every=2)
    assert res.ok, res.summary()


def test_check_still_catches_an_undeclared_slot0_write(fake_flashinfer):
    """token_slots on a bf16 pool does write slot 0 for padding rows: without the declaration the check fails."""
    class Undeclared(sfi.FlashInferTokenSlots):
        scratch_slots = ()

    res = check_strategy(Undeclared(), GDNShape("t", 2, 8, state_dtype=torch.bfloat16), batch=3, T=4, steps=2,
                         state_dtype=torch.bfloat16, seed=3)
    assert not res.ok and "the reserved pool slot 0 was written" in res.summary(), res.summary()
    assert "state drift max" in res.summary()


def test_replay_ring_folds_and_force_fold(fake_flashinfer):
    shape = GDNShape("t", 1, 2, state_dtype=torch.bfloat16)
    s = sfi.STRATEGIES["replay_ring"](flush_min=5)
    pool = StatePool(shape, capacity=2).randomize_(3).tensor
    sc = s.allocate(pool, 2, 4)
    idx = torch.tensor([1, 2], dtype=torch.int32)
    inp = _bf16_exact_gates(make_inputs(shape, 2, 4))
    before = pool.clone()
    for _ in range(2):
        s.verify(*inp.args(), pool, idx, sc)
        s.commit(pool, idx, sc, torch.tensor([4, 2]))
    assert sc.hist[1:3].tolist() == [8, 4] and torch.equal(pool, before)   # no fold yet
    st = s.state(pool, idx, sc)
    s.verify(*inp.args(), pool, idx, sc)            # row 0 (hist 8 >= 5) folds; row 1 (4) does not
    assert sc.hist[1:3].tolist() == [0, 4] and sc.base[1:3].tolist() == [8, 0]
    assert not torch.equal(pool[1], before[1]) and torch.equal(pool[2], before[2])
    assert_close(s.state(pool, idx, sc), st, state_tol(torch.bfloat16), "fold keeps the committed state")
    s.fold(pool, idx, sc, force=True)
    assert sc.hist[1:3].tolist() == [0, 0]
    assert_close(pool.float(), torch.cat([pool[:1].float(), st]), state_tol(torch.bfloat16), "forced fold")


# ---------------------------------------------------------------------------------------------- GPU tests
def _need_flashinfer():
    ok, why = sfi.availability()
    if not ok:
        pytest.skip(f"flashinfer strategies unavailable: {why}")


GPU_CASES = [(n, dt, B) for n in NAMES for dt in (torch.float32, torch.bfloat16) for B in (1, 64, 256)
             if sfi.STRATEGIES[n].supports(dt, 4, B, None, HV=16)[0]]


@pytest.mark.gpu
@pytest.mark.parametrize("name, state_dtype, B", GPU_CASES,
                         ids=[f"{n}-{str(d).removeprefix('torch.')}-B{b}" for n, d, b in GPU_CASES])
def test_flashinfer_strategy_matches_reference(cuda_device, name, state_dtype, B):
    _need_flashinfer()
    ok, why = sfi.STRATEGIES[name].availability()
    if not ok:
        pytest.skip(f"{name} unavailable here: {why}")
    shape = preset("qwen3.5-397b-a17b", tp=4).with_state_dtype(state_dtype)
    fi = run_against_reference(name, shape, state_dtype, B=B, T=4, steps=16, device=cuda_device, seed=7)
    assert fi.last_path.arch.startswith("sm")


@pytest.mark.gpu
def test_replay_ring_t8_and_recompute_fused_small_batch_error(cuda_device):
    _need_flashinfer()
    shape = preset("qwen3.5-397b-a17b", tp=4).with_state_dtype(torch.bfloat16)
    run_against_reference("replay_ring", shape, torch.bfloat16, B=64, T=8, steps=16, device=cuda_device, seed=11)
    s = sfi.STRATEGIES["recompute_fused"]()
    pool = StatePool(shape, capacity=4, device=cuda_device).tensor
    sc = s.allocate(pool, 4, 4)
    inp = make_inputs(shape, 4, 4, device=cuda_device)
    with pytest.raises(ValueError, match="B \\* HV >= 128"):
        s.verify(*inp.args(), pool, torch.arange(1, 5, dtype=torch.int32, device=cuda_device), sc)
