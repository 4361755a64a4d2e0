"""gdnlab.workload on CPU with the reference backend: token counts, the acceptance sampler, and
verify + commit == decoding the accepted tokens one by one (state-wise)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gdnlab.kernels import get_backend
from gdnlab.shapes import GDNShape
from gdnlab.workload import DecodeWorkload, main, rate_for_accept_len, resolve_sampler, sample_accepted

TINY = GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=8, num_gdn_layers=3)


def _wl(**kw):
    kw.setdefault("device", "cpu")
    return DecodeWorkload(get_backend("reference"), TINY, kw.pop("concurrency", 2), **kw)


def test_decode_token_counts():
    wl = _wl(concurrency=2)
    assert wl.L == 3 and wl.pool.tensor.shape == (3, 3, 2, 8, 16)     # layers x (C+1) x [HV, V, K]
    res = wl.run(4, warmup_steps=1)
    assert res.mode == "decode" and res.steps == 4 and res.tokens == 2 * 4
    assert res.us_per_token == pytest.approx(res.wall_ms * 1e3 / res.tokens)
    assert res.tpot_us == pytest.approx(res.wall_ms * 1e3 / 4)
    assert res.kernel == "torch_reference" and res.layers == 3


def test_verify_commit_token_counts():
    wl = _wl(concurrency=2, verify_tokens=3, accept_rate=0.6, layers=2, seed=3)
    res = wl.run(4, warmup_steps=1)
    assert res.mode == "verify" and res.tokens == 2 * 4                    # every request gets exactly OSL
    assert math.ceil(4 / 3) <= res.steps <= 4                              # 1..T tokens per step
    assert 1.0 <= res.mean_accepted <= 3.0
    assert res.layers == 2 and res.kernel_path["op"] == "verify"
    # after the run every request is live again (padding was only for finished requests)
    assert torch.equal(wl.indices, wl.slots)


def test_finished_requests_become_padding_and_stop_counting():
    wl = _wl(concurrency=3, verify_tokens=3, layers=1)
    draws = iter([torch.tensor([3, 1, 3]), torch.tensor([2, 2, 2])])
    seen = []

    def sampler(batch, T, rate, gen):
        seen.append(wl.indices.clone())
        return next(draws)

    wl._sampler = sampler
    res = wl.run(3, warmup_steps=0)
    assert res.tokens == 9 and res.steps == 2          # rows 0, 2: 3 tokens in step 1; row 1: 1 + 2 (of 2)
    assert (seen[0] >= 0).all()
    assert seen[1].tolist() == [-1, int(wl.slots[1]), -1]   # finished rows are padding in step 2


def test_verify_commit_equals_sequential_decodes():
    wl = _wl(concurrency=3, verify_tokens=3, layers=2, seed=1)
    before = wl.pool.tensor.clone()
    acc = torch.tensor([1, 3, 2])
    produced = wl.step(accepted=acc)
    assert produced.tolist() == acc.tolist()
    ref = get_backend("reference")
    for layer in range(wl.L):
        pool = before[layer].clone()
        x = wl.inputs[layer]
        for t in range(wl.T):
            idx = torch.where(acc > t, wl.slots, torch.full_like(wl.slots, -1))   # rows still accepting
            ref.decode(*x.token(t).args(), pool, idx)
        assert float((wl.pool.tensor[layer] - pool).abs().max()) <= 1e-6, f"layer {layer}"
    # slot 0 (padding) and unrelated rows untouched
    assert torch.equal(wl.pool.tensor[:, 0], before[:, 0])


def test_sample_accepted_chain_model():
    g = torch.Generator().manual_seed(0)
    a = sample_accepted(20000, 4, 0.7, g)
    assert a.dtype == torch.int64 and a.shape == (20000,) and int(a.min()) >= 1 and int(a.max()) <= 4
    expected = (1 - 0.7 ** 4) / (1 - 0.7)                                      # 1 + p + p^2 + p^3 = 2.533
    assert float(a.float().mean()) == pytest.approx(expected, abs=0.03)
    assert torch.all(sample_accepted(50, 4, 0.0, g) == 1)
    assert torch.all(sample_accepted(50, 4, 1.0, g) == 4)
    with pytest.raises(ValueError):
        sample_accepted(3, 4, 1.5, g)


def test_resolved_sampler_matches_contract():
    fn, name = resolve_sampler()
    a = fn(1000, 4, 0.7, torch.Generator().manual_seed(1))
    a = torch.as_tensor(a)
    assert a.shape == (1000,) and int(a.min()) >= 1 and int(a.max()) <= 4 and name
    assert float(a.float().mean()) == pytest.approx(2.533, abs=0.12)
    assert rate_for_accept_len(2.533, 4) == pytest.approx(0.7, abs=1e-3)


@pytest.mark.parametrize("kw, match", [({"concurrency": 0}, "concurrency"), ({"verify_tokens": 0}, "verify_tokens"),
                                       ({"accept_rate": 1.2}, "accept_rate"), ({"layers": 9}, "layers")])
def test_bad_arguments_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        _wl(**kw)


def test_cli_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "wl.json"
    rc = main(["--backend", "reference", "--preset", "qwen3.5-397b-a17b", "--tp", "16", "--concurrency", "1",
               "--osl", "2", "--layers", "1", "--verify-tokens", "2", "--warmup-steps", "0", "--capture-steps", "1",
               "--device", "cpu", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "tokens 2" in text and "µs/token" in text
    d = json.loads(out.read_text())
    assert d["tokens"] == 2 and d["layers"] == 1 and d["shape"] == "qwen3.5-397b-a17b@tp16"
    assert d["captured"] is False          # no CUDA: no capture range opened
    assert main(["--backend", "reference", "--osl", "0", "--device", "cpu", "--layers", "1"]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_unrunnable_backend_or_device_is_a_value_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend='flashinfer'.*cannot run here"):
        DecodeWorkload("flashinfer", TINY, 1, device="cpu")
    with pytest.raises(ValueError, match="device='cuda'"):
        _wl(device="cuda")
    assert main(["--backend", "flashinfer", "--osl", "1", "--device", "cpu", "--layers", "1"]) == 2
