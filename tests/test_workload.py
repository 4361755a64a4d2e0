"""gdnlab.workload on CPU with the reference backend: token counts, the acceptance draws, verify +
commit == decoding the accepted tokens one by one (state-wise), the timed-call factory, and the
``gdnlab workload`` command."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gdnlab.acceptance import ChainAcceptance, accept_len_to_rate
from gdnlab.cli import main as cli_main
from gdnlab.errors import InputError, UnavailableError
from gdnlab.instrument import time_calls
from gdnlab.kernels import get_backend
from gdnlab.shapes import GDNShape
from gdnlab.workload import DecodeWorkload, disjoint_calls

TINY = GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=8, num_gdn_layers=3)


def _wl(**kw):
    kw.setdefault("device", "cpu")
    return DecodeWorkload(get_backend("reference"), TINY, kw.pop("batch", 2), **kw)


def main(argv):
    return cli_main(["workload", "--no-progress", *argv])


def test_decode_token_counts():
    wl = _wl(batch=2)
    assert wl.L == 3 and wl.pool.tensor.shape == (3, 3, 2, 8, 16)     # layers x (C+1) x [HV, V, K]
    res = wl.run(4, warmup_steps=1)
    assert res.mode == "decode" and res.steps == 4 and res.tokens == 2 * 4
    assert res.us_per_token == pytest.approx(res.wall_ms * 1e3 / res.tokens)
    assert res.tpot_us == pytest.approx(res.wall_ms * 1e3 / 4)
    assert res.kernel == "torch_reference" and res.layers == 3


def test_verify_commit_token_counts():
    wl = _wl(batch=2, draft_tokens=3, accept_len=ChainAcceptance(0.6), layers=2, seed=3)
    res = wl.run(4, warmup_steps=1)
    assert res.mode == "verify" and res.tokens == 2 * 4                    # every request gets exactly OSL
    assert math.ceil(4 / 3) <= res.steps <= 4                              # 1..T tokens per step
    assert 1.0 <= res.mean_accepted <= 3.0
    assert res.layers == 2 and res.kernel_path["op"] == "verify"
    # after the run every request is live again (padding was only for finished requests)
    assert torch.equal(wl.indices, wl.slots)


def test_finished_requests_become_padding_and_stop_counting():
    wl = _wl(batch=3, draft_tokens=3, layers=1)
    draws = iter([torch.tensor([3, 1, 3]), torch.tensor([2, 2, 2])])
    seen = []

    def sampler(batch, T, accept_len, gen):
        seen.append(wl.indices.clone())
        return next(draws)

    wl._sampler = sampler
    res = wl.run(3, warmup_steps=0)
    assert res.tokens == 9 and res.steps == 2          # rows 0, 2: 3 tokens in step 1; row 1: 1 + 2 (of 2)
    assert (seen[0] >= 0).all()
    assert seen[1].tolist() == [-1, int(wl.slots[1]), -1]   # finished rows are padding in step 2


def test_verify_commit_equals_sequential_decodes():
    wl = _wl(batch=3, draft_tokens=3, layers=2, seed=1)
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


def test_workload_draws_from_the_one_sampler():
    """The chain model at rate 0.7 (T=4): mean 1 + p + p^2 + p^3 = 2.533, values in 1..T."""
    wl = _wl(batch=4, draft_tokens=4, layers=1, accept_len=ChainAcceptance(0.7))
    draws = torch.cat([wl.sample() for _ in range(4000)])
    assert draws.dtype == torch.int64 and int(draws.min()) >= 1 and int(draws.max()) <= 4
    expected = (1 - 0.7 ** 4) / (1 - 0.7)
    assert float(draws.float().mean()) == pytest.approx(expected, abs=0.05)
    assert wl.accept_len == pytest.approx(expected)
    assert accept_len_to_rate(expected, 4) == pytest.approx(0.7, abs=1e-3)
    # a float accept length: that mean; the extremes keep every draw at 1 or at T
    wl = _wl(batch=4, draft_tokens=4, layers=1, accept_len=3.17)
    assert float(torch.cat([wl.sample() for _ in range(2000)]).float().mean()) == pytest.approx(3.17, abs=0.05)
    assert torch.all(_wl(batch=50, draft_tokens=4, layers=1, accept_len=1.0).sample() == 1)
    assert torch.all(_wl(batch=50, draft_tokens=4, layers=1, accept_len=4.0).sample() == 4)
    # the default: the seed's acceptance (mean 3.13-3.22 at T=4)
    assert 3.13 <= _wl(draft_tokens=4, layers=1).accept_len <= 3.22


@pytest.mark.parametrize("kw, match", [({"batch": 0}, "batch"), ({"draft_tokens": 0}, "draft_tokens"),
                                       ({"draft_tokens": 4, "accept_len": 4.5}, "accept_len"),
                                       ({"draft_tokens": 4, "accept_len": 0.5}, "accept_len"),
                                       ({"layers": 9}, "layers"), ({"device": "tpu"}, "device")])
def test_bad_arguments_name_the_argument(kw, match):
    with pytest.raises(InputError, match=match):
        _wl(**kw)


def test_cli_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "wl.json"
    rc = main(["--backend", "reference", "--preset", "qwen3.5-397b-a17b", "--tp", "16", "--batch", "1",
               "--osl", "2", "--layers", "1", "--draft-tokens", "2", "--warmup-steps", "0", "--capture-steps", "1",
               "--device", "cpu", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "tokens 2" in text and "µs/token" in text
    d = json.loads(out.read_text())
    assert d["tokens"] == 2 and d["layers"] == 1 and d["shape"] == "qwen3.5-397b-a17b@tp16"
    assert d["captured"] is False          # no CUDA: no capture range opened
    assert main(["--backend", "reference", "--osl", "0", "--device", "cpu", "--layers", "1"]) == 2
    err = capsys.readouterr().err
    assert "osl" in err and len(err.strip().splitlines()) == 1                  # one line, no traceback


def test_cli_aliases_progress_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "wl.json"
    rc = cli_main(["workload", "--backend", "reference", "--preset", "qwen3.5-397b-a17b@tp16", "--concurrency", "2",
                   "--osl", "3", "--layers", "1", "--verify-tokens", "3", "--accept-len", "2", "--warmup-steps", "1",
                   "--device", "cpu", "--state-dtype", "bfloat16", "--json", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "tokens 6/6" in err and "building" in err                           # the last progress line
    d = json.loads(out.read_text())
    assert d["batch"] == 2 and d["draft_tokens"] == 3 and d["accept_len"] == 2.0 and d["state_dtype"] == "bfloat16"
    assert main(["--backend", "reference", "--device", "tpu", "--layers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device='tpu'" in err[0] and "cpu" in err[0]
    assert main(["--backend", "reference", "--device", "cpu", "--accept-len", "2"]) == 2      # needs T >= 2
    assert "--draft-tokens" in capsys.readouterr().err


def test_cli_help_shows_every_option_with_help(capsys):
    with pytest.raises(SystemExit):
        cli_main(["workload", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--batch", "--concurrency", "--draft-tokens", "--verify-tokens", "--accept-len", "--state-dtype"):
        assert flag in text
    assert "(default: 64)" in text and "(default: 512)" in text


def test_disjoint_calls_time_through_the_harness():
    be = get_backend("reference")
    make = disjoint_calls(be, TINY, batch=2, draft_tokens=3, device="cpu")
    calls = make(3)
    assert len(calls) == 3
    o, inter = calls[1]()
    assert o.shape[0] == 2 and inter.shape[:2] == (2, 3)
    t = time_calls(make, timing="amortised", min_sample_us=1e9, max_calls=3, warmup=0, repeats=2, device="cpu")
    assert t.calls_per_sample == 3 and t.method == "cpu_wall" and t.median_us > 0
    with pytest.raises(UnavailableError, match="state_dtype"):
        disjoint_calls(get_backend("reference"), TINY, batch=1, state_dtype="float16", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_unrunnable_backend_or_device_is_unavailable(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UnavailableError, match="backend='flashinfer'.*cannot run here"):
        DecodeWorkload("flashinfer", TINY, 1, device="cpu")
    with pytest.raises(UnavailableError, match="device='cuda'"):
        _wl(device="cuda")
    assert main(["--backend", "flashinfer", "--osl", "1", "--device", "cpu", "--layers", "1"]) == 3
