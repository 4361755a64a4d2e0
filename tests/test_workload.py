"""gdnlab.workload on CPU with the reference backend and reference strategies: token counts, the
acceptance draws, verify + commit == decoding the accepted tokens one by one (state-wise) for the
backend path and every strategy, the phase markers and the phase rules of gdnlab.analysis.phases, the
timed-call factory, and the ``gdnlab workload`` command; on a GPU, the whole step in one CUDA graph."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gdnlab import markers
from gdnlab.acceptance import ChainAcceptance, accept_len_to_rate
from gdnlab.analysis import phases
from gdnlab.cli import main as cli_main
from gdnlab.errors import InputError, UnavailableError
from gdnlab.harness_calls import kernel_calls
from gdnlab.instrument import time_calls
from gdnlab.kernels import get_backend
from gdnlab.shapes import GDNShape, preset
from gdnlab.strategies import STRATEGY_NAMES
from gdnlab.traces.synthetic import kernel_table
from gdnlab.workload import DecodeWorkload

from helpers.ids import case_id

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
                                       ({"layers": 9}, "layers"), ({"device": "tpu"}, "device")], ids=case_id)
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


def test_kernel_calls_time_through_the_harness():
    be = get_backend("reference")
    make = kernel_calls(be, TINY, batch=2, draft_tokens=3, device="cpu")
    calls = make(3)
    assert len(calls) == 3
    o, inter = calls[1]()
    assert o.shape[0] == 2 and inter.shape[:2] == (2, 3)
    t = time_calls(make, timing="amortised", min_sample_us=1e9, max_calls=3, warmup=0, repeats=2, device="cpu")
    assert t.calls_per_sample == 3 and t.method == "cpu_wall" and t.median_us > 0
    with pytest.raises(UnavailableError, match="state_dtype"):
        kernel_calls(get_backend("reference"), TINY, batch=1, state_dtype="float16", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_unrunnable_backend_or_device_is_unavailable(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UnavailableError, match="backend 'flashinfer' cannot run here"):
        DecodeWorkload("flashinfer", TINY, 1, device="cpu")
    with pytest.raises(UnavailableError, match="device='cuda'"):
        _wl(device="cuda")
    assert main(["--backend", "flashinfer", "--osl", "1", "--device", "cpu", "--layers", "1"]) == 3


# ------------------------------------------------------------------ verify strategies


def _sequential_reference(wl, before, seen, draws):
    """Each layer's states after decoding, token by token with the reference backend, the accepted
    prefix of every step (rows live in that step only) from the states ``before``."""
    ref = get_backend("reference")
    rows = torch.arange(1, wl.B + 1, dtype=torch.int32)
    out = []
    for layer in range(wl.L):
        pool = torch.zeros((wl.B + 1, *before[layer].shape[1:]), dtype=torch.float32)
        pool[1:] = before[layer]
        x = wl.inputs[layer]
        for live_idx, acc in zip(seen, draws):
            for t in range(wl.T):
                idx = torch.where((acc > t) & (live_idx >= 0), rows, torch.full_like(rows, -1))
                ref.decode(*x.token(t).args(), pool, idx)
        out.append(pool[1:])
    return out


@pytest.mark.parametrize("step_plan", [True, False], ids=["step-plan", "per-layer"])
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_workload_matches_sequential_decodes(name, step_plan):
    """Every reference strategy (replay_ring with a 4-entry ring, so it folds) in the eager loop,
    with the step's metadata computed once for all layers (a step plan) or per layer: the committed
    states after the run equal decoding each step's accepted tokens one by one; finished requests
    (padding rows) stop changing."""
    opts = {"ring_slots": 4} if name == "replay_ring" else None
    wl = _wl(batch=3, draft_tokens=3, layers=2, seed=1, strategy=name, strategy_options=opts, step_plan=step_plan)
    assert wl.pool.capacity == 3 * (4 if name == "token_slots" else 1)
    before = [wl.committed_state(i) for i in range(wl.L)]
    draws = [torch.tensor(x) for x in ([1, 3, 2], [3, 3, 1], [2, 1, 3])]
    it, seen = iter(draws), []

    def sampler(batch, T, accept_len, gen):
        seen.append(wl.indices.clone())
        return next(it)

    wl._sampler = sampler
    res = wl.run(6, warmup_steps=0)
    assert res.steps == 3 and res.tokens == 18 and res.strategy == name
    assert seen[2].tolist() == [1, -1, 3]                  # request 1 had its 6 tokens after step 2
    assert res.graph_scope == "" and res.gpu_busy_pct is None and res.phase_markers is False
    assert res.kernel_path["strategy"] == name and res.kernel_path["strategy_backend"] == "reference"
    expected = _sequential_reference(wl, before, seen, draws)
    for layer in range(wl.L):
        got = wl.committed_state(layer)
        assert float((got - expected[layer]).abs().max()) <= 1e-4, f"{name} layer {layer}"
        assert float((got - before[layer]).abs().max()) > 1e-3          # the run did change the states


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_step_plan_computes_bookkeeping_once_per_step(name, monkeypatch):
    """With a step plan the per-request bookkeeping (its index, cursor gathers and writes) runs once
    per step whatever the layer count; without one, once per layer. Counted at its source,
    gdnlab.strategies.base.bookkeeping_index, which every strategy's bookkeeping goes through."""
    import gdnlab.strategies.base as base
    import gdnlab.strategies.recompute as recompute
    import gdnlab.strategies.replay_ring as ring
    import gdnlab.strategies.token_slots as slots

    calls = []
    real = base.bookkeeping_index

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    for mod in (base, recompute, ring, slots):
        monkeypatch.setattr(mod, "bookkeeping_index", counted)

    def per_step(layers: int, step_plan: bool) -> int:
        wl = _wl(batch=3, draft_tokens=3, layers=layers, seed=2, strategy=name, step_plan=step_plan)
        wl.forward()
        calls.clear()
        wl.forward()
        wl.commit(torch.tensor([2, 1, 3]))
        return len(calls)

    assert per_step(1, True) == per_step(3, True)
    if per_step(1, False):                               # strategies with per-request bookkeeping
        assert per_step(3, False) == 3 * per_step(1, False) and per_step(3, True) < per_step(3, False)


def test_step_plan_refuses_layers_that_do_not_share_bookkeeping():
    from gdnlab.inputs import make_inputs
    from gdnlab.state import StatePool
    from gdnlab.strategies import get_strategy
    from gdnlab.strategies.base import StepPlan

    s = get_strategy("replay_ring")
    pool = StatePool(TINY, capacity=2, layers=2).randomize_(0)
    idx = pool.alloc(2)
    own = [s.allocate(pool.layer(i), 2, 3) for i in range(2)]
    x = make_inputs(TINY, 2, 3)
    plan = StepPlan()
    s.verify(*x.args(), pool.layer(0), idx, own[0], plan=plan)
    with pytest.raises(ValueError, match="share their bookkeeping"):
        s.verify(*x.args(), pool.layer(1), idx, own[1], plan=plan)
    with pytest.raises(ValueError, match="same T"):
        s.allocate(pool.layer(1), 2, 4, share=own[0])


def test_strategy_step_order_and_phase_markers(monkeypatch):
    """A step is: accepted lengths into the device buffer, marker, every layer's verify, marker,
    every layer's commit reading that buffer (what gdnlab.analysis.phases expects)."""
    wl = _wl(batch=2, draft_tokens=2, layers=3, strategy="recompute")
    log = []
    s = wl.strategy
    verify, commit = s.verify, s.commit
    monkeypatch.setattr(s, "verify", lambda *a, **k: (log.append("verify"), verify(*a, **k))[1])

    def logged_commit(pool, indices, scratch, accepted, validate=True, plan=None):
        log.append(("commit", accepted.tolist(), validate))
        return commit(pool, indices, scratch, accepted, validate=validate, plan=plan)

    monkeypatch.setattr(s, "commit", logged_commit)
    monkeypatch.setattr(markers, "launch_phase_marker", lambda phase, flag: log.append(f"marker:{phase}"))
    wl.phase_markers = True
    wl.step(accepted=torch.tensor([2, 1]))
    assert log == ["marker:verify", "verify", "verify", "verify", "marker:commit",
                   ("commit", [2, 1], False), ("commit", [2, 1], False), ("commit", [2, 1], False)]
    assert wl.accepted.dtype == torch.int32 and wl.accepted.tolist() == [2, 1]


def test_strategy_arguments_are_one_line_errors():
    with pytest.raises(InputError, match="draft_tokens >= 2"):
        _wl(strategy="full_cache")
    with pytest.raises(InputError, match="unknown strategy 'nope'"):
        _wl(draft_tokens=2, strategy="nope")
    with pytest.raises(InputError, match="ring_slots"):
        _wl(draft_tokens=2, strategy="replay_ring", strategy_options={"ring_slots": 0})
    with pytest.raises(UnavailableError, match="phase markers"):
        _wl(draft_tokens=2, strategy="full_cache", phase_markers=True)          # CPU: no marker kernels


def test_cli_strategy_flags(tmp_path, capsys):
    out = tmp_path / "wl.json"
    base = ["--backend", "reference", "--preset", "qwen3.5-397b-a17b@tp16", "--batch", "2", "--osl", "3",
            "--layers", "1", "--warmup-steps", "0", "--device", "cpu"]
    assert main([*base, "--draft-tokens", "2", "--strategy", "replay_ring", "--strategy-option", "ring_slots=2",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["strategy"] == "replay_ring" and d["tokens"] == 6 and d["graph_scope"] == ""
    assert "strategy replay_ring" in capsys.readouterr().out
    assert main([*base, "--draft-tokens", "2", "--json", str(out)]) == 0                # default: full_cache
    assert json.loads(out.read_text())["strategy"] == "full_cache"
    assert main([*base, "--draft-tokens", "2", "--strategy", "none", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["strategy"] == "" and d["kernel"] == "torch_reference"             # the backend's own verify
    assert main([*base, "--json", str(out)]) == 0                                  # decode: no strategy
    assert json.loads(out.read_text())["strategy"] == ""
    capsys.readouterr()
    assert main([*base, "--draft-tokens", "2", "--strategy-option", "ring_slots"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--strategy-option", "ring_slots=4"]) == 2                 # decode has no strategy
    assert "--strategy-option needs" in capsys.readouterr().err
    assert main([*base, "--draft-tokens", "2", "--strategy", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0]


# ------------------------------------------------------------------ gdnlab.analysis.phases


def _kernels(names, durations_ns, gaps_ns=100):
    return kernel_table(names, durations_ns, gap_ns=gaps_ns)


BK = "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<int>>(int)"


def test_assign_phases_markers_fold_split_and_name_fallback():
    names = ["phase_marker_verify", BK, "_strategy_recurrent", BK, "_strategy_recurrent",
             BK, "_strategy_recurrent", "_strategy_recurrent", "phase_marker_commit", BK]
    got = phases.assign_phases(names, "replay_ring")        # triton replay_ring: launches fold, verify
    assert got == ["marker", "fold", "fold", "verify", "verify", "fold", "fold", "verify", "marker", "commit"]
    # without a fold the same kernels are all verify; recompute's commit replay is split by its marker
    assert phases.assign_phases(names, "recompute")[1:8] == ["verify"] * 7
    assert phases.assign_phases(names, "recompute")[9] == "commit"
    # no markers: names alone where they can tell
    assert phases.assign_phases(["_strategy_recurrent", "_scatter_commit", BK], "full_cache") == \
        ["verify", "commit", "other"]
    assert phases.assign_phases(["_strategy_recurrent"], "recompute") == ["other"]
    assert phases.phase_of_kernel("void flashinfer::gdn::gated_delta_rule_mtp_kernel<128>(float*)") == "verify"
    assert phases.phase_of_kernel("phase_marker_commit") == "marker" and phases.is_bookkeeping_kernel(BK)
    with pytest.raises(ValueError, match="unknown phase"):
        markers.marker_name("sample")


def test_phase_breakdown_and_step_busy():
    names = ["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_scatter_commit"] * 2
    k = _kernels(names, [1000, 60_000, 1000, 20_000] * 2, gaps_ns=1000)
    b = phases.phase_breakdown(k, "full_cache").set_index("phase")
    assert list(b.index) == ["verify", "commit", "marker"]
    assert b.loc["verify", "time_us"] == pytest.approx(120.0) and b.loc["verify", "time_per_step_us"] == 60.0
    assert b.loc["commit", "kernels"] == 2 and b["share_pct"].sum() == pytest.approx(100.0)
    busy = phases.step_busy(k)
    assert list(busy["step"]) == [0, 1]
    assert busy.loc[0, "window_us"] == pytest.approx(86.0)          # 82 µs of kernels + 4 gaps of 1 µs
    assert busy.loc[0, "busy_pct"] == pytest.approx(100 * 82 / 86)
    assert phases.step_busy(_kernels(["_strategy_recurrent"], [5])).empty


# ------------------------------------------------------------------ GPU: the whole step in one CUDA graph


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "flashinfer"])
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_whole_step_cuda_graph_matches_eager_and_reports_busy(cuda_device, name, backend):
    """Each strategy of each GPU backend, real per-GPU shape, 3 layers: the whole step (verify +
    commit of every layer) replayed from one CUDA graph ends in the same committed states as the
    eager loop, and the result reports the GPU busy share."""
    if backend == "flashinfer":
        from gdnlab.strategies import available_strategies

        st = available_strategies("flashinfer").get((name, "flashinfer"))
        if st is None or not st.available:
            pytest.skip(f"{name} on flashinfer cannot run here: {st.reason if st else 'not implemented'}")
    shape = preset("qwen3.5-397b-a17b", tp=4)
    kw = dict(layers=3, draft_tokens=4, accept_len=3.17, state_dtype="bfloat16", device=cuda_device, seed=5,
              strategy=name)
    draws = [torch.randint(1, 5, (16,), generator=torch.Generator().manual_seed(i)) for i in range(64)]

    def fixed(wl):
        it = iter(draws)
        wl._sampler = lambda b, T, a, g: next(it)
        return wl

    eager = fixed(DecodeWorkload(backend, shape, 16, **kw))
    per_layer = fixed(DecodeWorkload(backend, shape, 16, step_plan=False, **kw))
    graph = fixed(DecodeWorkload(backend, shape, 16, **kw))
    graph.enable_cuda_graph()
    assert graph.graph_scope == "step" and graph.phase_markers
    eager._step_body()        # the graph capture's warm-up ran one step (accepted = 1): do the same eagerly
    per_layer._step_body()
    r_e = eager.run(24, warmup_steps=0)
    per_layer.run(24, warmup_steps=0)
    r_g = graph.run(24, warmup_steps=0)
    assert r_g.steps == r_e.steps and r_g.tokens == r_e.tokens == 16 * 24
    assert r_g.cuda_graph and r_g.graph_scope == "step" and r_g.strategy == name
    assert r_g.gpu_step_median_us is not None and r_g.gpu_step_median_us > 0
    assert 0 < r_g.gpu_busy_pct <= 100.0 + 1e-6
    assert r_e.gpu_busy_pct is None and r_e.graph_scope == ""
    for layer in range(3):
        diff = float((graph.committed_state(layer) - eager.committed_state(layer)).abs().max())
        assert diff <= 1e-6, f"{name} layer {layer}: graph vs eager differ by {diff}"
        diff = float((per_layer.committed_state(layer) - eager.committed_state(layer)).abs().max())
        assert diff <= 1e-6, f"{name} layer {layer}: step plan vs per-layer metadata differ by {diff}"
