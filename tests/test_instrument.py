"""gdnlab.instrument on CPU (NVTX no-op, wall-clock timer, capture range) and the harness benchmark's
trace attribution on synthetic nsys exports; GPU checks are marked ``gpu``."""
from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import pytest
import torch

from gdnlab import instrument
from gdnlab.instrument import (
    GraphCaptureError,
    L2Flusher,
    Timing,
    capture_graph,
    nvtx_backend,
    nvtx_range,
    profiler_capture,
    time_calls,
    time_fn,
)

from helpers.ids import case_id

ROOT = Path(__file__).resolve().parents[1]
needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


@pytest.fixture
def fresh_nvtx(monkeypatch):
    nvtx_backend.cache_clear()
    yield monkeypatch
    nvtx_backend.cache_clear()


@needs_cpu_only
def test_nvtx_is_noop_on_cpu(fresh_nvtx):
    fresh_nvtx.delenv("GDNLAB_NVTX", raising=False)
    assert nvtx_backend() == "noop"
    calls = []

    @nvtx_range("step")
    def step(x):
        calls.append(x)
        return x + 1

    with nvtx_range("gdn.decode") as r:
        assert r.message == "gdn.decode"
    assert step(1) == 2 and step(2) == 3 and calls == [1, 2]


def test_nvtx_range_nests_and_survives_exceptions(fresh_nvtx):
    fresh_nvtx.setenv("GDNLAB_NVTX", "1")          # the real nvtx package, even without a GPU
    pytest.importorskip("nvtx")
    assert nvtx_backend() == "nvtx"
    with pytest.raises(RuntimeError, match="boom"):
        with nvtx_range("outer"), nvtx_range("inner"):
            raise RuntimeError("boom")
    with nvtx_range("after"):      # push/pop still balanced: a new range works
        pass


def test_nvtx_env_off_and_bad_message(fresh_nvtx):
    fresh_nvtx.setenv("GDNLAB_NVTX", "0")
    assert nvtx_backend() == "noop"
    with pytest.raises(ValueError, match="message"):
        nvtx_range("")


@needs_cpu_only
def test_timer_on_cpu_is_wall_clock():
    t = time_fn(lambda: time.sleep(0.002), warmup=1, repeats=7)
    assert isinstance(t, Timing)
    assert t.method == "cpu_wall" and "CPU" in t.note and t.repeats == 7 and len(t.samples_us) == 7
    assert t.min_us <= t.p10_us <= t.median_us <= t.p90_us <= t.max_us
    assert t.median_us == pytest.approx(statistics.median(t.samples_us))
    assert t.median_us >= 1900.0          # slept 2 ms: µs, not ms or ns
    assert "samples_us" not in t.as_dict()
    # graph/flush requests are ignored on CPU (nothing to capture, no L2 to flush)
    g = time_fn(lambda: None, warmup=0, repeats=3, graph=True, flush_l2=True)
    assert g.method == "cpu_wall" and g.l2_flush is False


def test_timer_inner_divides_and_counts_calls():
    n = {"calls": 0}

    def fn():
        n["calls"] += 1
        time.sleep(0.001)

    t = time_fn(fn, warmup=2, repeats=3, inner=4, device="cpu")
    assert n["calls"] == 2 + 3 * 4
    assert t.inner == 4 and 900.0 <= t.median_us < 4000.0    # per call, not per sample of 4 calls


def test_timer_list_of_calls_is_one_pass_per_sample():
    order = []
    fns = [lambda i=i: (order.append(i), time.sleep(0.001)) for i in range(3)]
    t = time_fn(fns, warmup=1, repeats=2, inner=2, device="cpu")
    assert order == [0, 1, 2] * (1 + 2 * 2)                 # warm-up pass, then 2 samples x 2 passes
    assert t.inner == 6 and 900.0 <= t.median_us < 4000.0   # per call
    with pytest.raises(ValueError, match="callable"):
        time_fn([], repeats=1)


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"warmup": -1}, {"inner": 0}], ids=case_id)
def test_timer_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        time_fn(lambda: None, **kw)


def test_time_calls_amortised_sizes_the_sample_on_cpu():
    made = []

    def make_calls(n):
        made.append(n)
        return [lambda: time.sleep(0.001)] * n

    t = time_calls(make_calls, min_sample_us=4500.0, warmup=0, repeats=3, device="cpu")
    assert made[0] == 1 and t.calls_per_sample == made[-1]
    assert 3 <= t.calls_per_sample <= 5                           # ceil(4500 µs / ~1000-1400 µs)
    assert t.method == "cpu_wall" and t.inner == t.calls_per_sample and t.repeats == 3
    assert 900.0 <= t.median_us < 4000.0                           # per call, not per sample
    assert "amortised" in t.note and t.as_dict()["calls_per_sample"] == t.calls_per_sample
    capped = time_calls(make_calls, min_sample_us=1e9, max_calls=2, warmup=0, repeats=1, device="cpu")
    assert capped.calls_per_sample == 2
    for mode in ("single", "eager"):
        assert time_calls(make_calls, timing=mode, warmup=0, repeats=2, device="cpu").calls_per_sample == 1


def test_time_calls_quantiles_are_numpy_linear():
    import numpy as np

    t = time_calls(lambda n: [lambda: time.sleep(0.0005)] * n, timing="single", warmup=0, repeats=9, device="cpu")
    s = np.asarray(t.samples_us)
    assert t.p10_us == pytest.approx(float(np.quantile(s, 0.1)))
    assert t.p90_us == pytest.approx(float(np.quantile(s, 0.9)))
    assert t.median_us == pytest.approx(float(np.median(s)))


@pytest.mark.parametrize("kw, match", [({"timing": "graph"}, "timing"), ({"min_sample_us": 0}, "min_sample_us"),
                                       ({"max_calls": 0}, "max_calls"), ({"repeats": 0}, "repeats"),
                                       ({"device": "tpu"}, "device")], ids=case_id)
def test_time_calls_rejects_bad_arguments(kw, match):
    from gdnlab.errors import InputError

    with pytest.raises(InputError, match=match):
        time_calls(lambda n: [lambda: None] * n, **kw)


def test_time_calls_checks_make_calls():
    with pytest.raises(ValueError, match="make_calls"):
        time_calls(lambda n: [lambda: None], timing="amortised", min_sample_us=1e9, warmup=0, repeats=1,
                   device="cpu")


@needs_cpu_only
def test_capture_range_graph_and_flush_on_cpu():
    with profiler_capture() as on:
        assert on is False
    with pytest.raises(GraphCaptureError, match="CUDA"):
        capture_graph(lambda: None)
    f = L2Flusher()
    assert f.nbytes == 0
    f.flush()
    with pytest.raises(ValueError, match="factor"):
        L2Flusher(factor=1.5)


# ------------------------------------------------------------------ harness benchmark: trace attribution

def _bench():
    spec = importlib.util.spec_from_file_location("bench_harness_overhead",
                                                  ROOT / "benchmarks" / "bench_harness_overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _synthetic_trace(tmp_path, schema="2025.3"):
    from gdnlab.traces import synthetic as tracegen

    b = tracegen.Builder()
    expect = {"harness:fi:decode:bfloat16:B16": [], "harness:fi:verify4:float32:B16": []}
    t = 1_000_000
    for rep in range(3):
        for label, durs in (("harness:fi:decode:bfloat16:B16", [8_000 + 100 * rep]),
                            ("harness:fi:verify4:float32:B16", [30_000, 2_000])):
            # flush + spin outside the range (must not be counted)
            b.launch("void at::native::vectorized_elementwise_kernel<FillFunctor>", t, t + 500, 40_000)
            b.launch("spin_kernel", t + 3_000, t + 40_600, 20_000)
            b.range(label, t + 5_000, t + 15_000, domain="gdnlab", registered=rep == 1)
            b.api_call("cudaEventRecord_v3020", t + 5_500, 500)
            ks, g0 = [], t + 61_000
            for i, d in enumerate(durs):
                ks.append((f"gdn_kernel_{i}", g0, d))
                g0 += d + 1_000
            b.graph_launch(ks, t + 6_000)
            expect[label].append(sum(durs))
            t += 200_000
    path = tracegen.write_nsys_sqlite(tmp_path / f"h_{schema}.sqlite", b.build(), schema=schema)
    return path, expect


@pytest.mark.parametrize("schema", ["2025.3", "2021"])
def test_harness_sql_attribution(tmp_path, schema):
    bench = _bench()
    path, expect = _synthetic_trace(tmp_path, schema)
    got = bench._sql_kernel_sums(path, bench.LABEL_PREFIX)
    assert got == expect


def test_harness_attribution_via_traces_matches_sql(tmp_path):
    bench = _bench()
    path, expect = _synthetic_trace(tmp_path)
    got, method = bench.kernel_sums(path)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expect.items()}
    assert method  # names which reader did it


# ------------------------------------------------------------------ GPU

@pytest.mark.gpu
def test_graph_and_eager_timing_on_gpu(cuda_device):
    x = torch.randn(64 * 1024 * 1024 // 4, device=cuda_device)   # 64 MB
    y = torch.empty_like(x)
    fn = lambda: y.copy_(x)
    g = time_fn(fn, warmup=3, repeats=20, graph=True)
    e = time_fn(fn, warmup=3, repeats=20, graph=False)
    assert g.method == "graph" and e.method == "eager" and g.note == ""
    assert 0 < g.p10_us <= g.median_us <= g.p90_us
    gbps = 2 * x.numel() * 4 / (g.median_us * 1e-6) / 1e9      # read + write
    assert 200 < gbps < 5000                                    # a real copy, in µs
    assert e.median_us >= 0.9 * g.median_us                     # eager adds host/launch time


@pytest.mark.gpu
def test_time_calls_on_gpu(cuda_device):
    srcs = [torch.randn(2 * 1024 * 1024 // 4, device=cuda_device) for _ in range(64)]     # 2 MB each
    dsts = [torch.empty_like(x) for x in srcs]

    def make_calls(n):
        return [lambda i=i: dsts[i].copy_(srcs[i]) for i in range(n)]

    a = time_calls(make_calls, device=cuda_device)
    s = time_calls(make_calls, timing="single", device=cuda_device)
    e = time_calls(make_calls, timing="eager", device=cuda_device)
    assert (a.method, s.method, e.method) == ("amortised", "single", "eager")
    assert a.l2_flush and a.calls_per_sample > 1 and s.calls_per_sample == 1
    assert a.calls_per_sample * a.median_us >= 0.5 * 50.0               # a sample lasts ~>= 50 µs
    assert 0 < a.p10_us <= a.median_us <= a.p90_us
    assert a.median_us <= s.median_us * 1.1                             # amortising removes per-replay cost
    assert e.median_us >= 0.9 * s.median_us                             # eager adds host/launch time


@pytest.mark.gpu
def test_l2_flusher_size_and_capture_fallback(cuda_device):
    f = L2Flusher(cuda_device)
    l2 = torch.cuda.get_device_properties(cuda_device).L2_cache_size
    assert f.nbytes >= 2 * l2
    def not_capturable():   # refuses to be captured (a Python error, so the CUDA context stays clean)
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("host sync needed")
        return torch.zeros(4, device=cuda_device)

    t = time_fn(not_capturable, warmup=1, repeats=3, graph=True)
    assert t.method == "eager" and "capture" in t.note and "host sync needed" in t.note
    with pytest.raises(GraphCaptureError):
        time_fn(not_capturable, warmup=1, repeats=3, graph=True, fallback_to_eager=False)
    assert instrument.cuda_available()


def test_harness_build_and_compare_on_cpu():
    from gdnlab.instrument import time_calls

    bench = _bench()
    pts = bench.plan(["reference"], [2], draft_tokens=2, state_dtypes=("float32",))
    assert [p["label"] for p in pts] == ["harness:reference:decode:float32:B2", "harness:reference:verify2:float32:B2"]
    cache: dict = {}
    for p in pts:
        make = bench.build(p, "qwen3.5-397b-a17b", 16, torch.device("cpu"), cache)
        assert len(make(2)) == 2                                         # disjoint rows, one closure each
        t = time_calls(make, warmup=0, repeats=1, device="cpu")
        p["harness"] = t.as_dict()
        p["nsys_kernel_us"] = {"median": t.median_us / 1.05}             # harness 5 % above "nsys"
    pts[0]["B"] = 16                                                     # judged like a B >= 16 point: 3 %
    pts[1]["B"] = 1                                                      # B = 1: 10 %
    rows, verdict = bench.compare(pts)
    assert rows[0]["within_target"] is False and rows[1]["within_target"] is True
    assert rows[0]["harness_vs_nsys_pct"] == pytest.approx(5.0)
    assert rows[0]["calls_per_sample"] >= 1 and rows[0]["timing_method"] == "cpu_wall"
    assert "1/2 points" in verdict and "decode" in verdict
    assert pts[0]["bytes"] == 2 * (2 * 128 * 128 * 4 * 4) + 2 * (2 * 128 + 4 * 128 + 8) * 2 + 2 * 4 * 4 + 2 * 4 \
        + 2 * 4 * 128 * 2   # state r+w + inputs + A_log/dt_bias + indices + output (H=1, HV=4, fp32 state)
    assert "harness:reference" not in bench.table(rows) and "reference:decode:float32:B2" in bench.table(rows)


def test_harness_targets_and_gpu_slug():
    bench = _bench()
    assert bench.target_pct(1) == 10.0 and bench.target_pct(16) == 3.0 and bench.target_pct(256) == 3.0
    assert bench.gpu_slug("NVIDIA H200") == "h200" and bench.gpu_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert bench.gpu_slug(None) == "cpu" and bench.gpu_slug("NVIDIA GB200") == "gb200"


def test_harness_parent_flow_without_gpu_or_nsys(tmp_path, monkeypatch, capsys):
    """The benchmark's in-process part, report and JSON, with the reference backend on CPU and no nsys."""
    bench = _bench()
    monkeypatch.setattr(bench, "_has_cuda", lambda: True)
    monkeypatch.setattr(bench, "_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(bench, "_find_nsys", lambda: None)
    rc = bench.main(["--backends", "reference", "--batch", "2", "--tp", "16", "--repeats", "1", "--warmup", "0",
                     "--draft-tokens", "2", "--out-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no nsys comparison" in out and "harness_us" in out
    import json as _json
    res = _json.loads((tmp_path / "harness_overhead_cpu.json").read_text())
    assert res["trace"]["skipped"].startswith("nsys not found")
    assert len(res["rows"]) == 4                                  # decode + verify x bfloat16 + float32 at B=2
    assert all(r["harness_us"] > 0 and r["single_us"] > 0 and r["calls_per_sample"] >= 1 for r in res["rows"])


# ------------------------------------------------------------------ calls on disjoint pool rows


def test_row_sets_are_disjoint_never_slot_0_and_rotate_when_asked():
    from gdnlab.harness_calls import RowSets, disjoint_calls

    rows = RowSets.scattered(10, 3, seed=5, device=torch.device("cpu"))
    assert len(rows) == 3                                             # 10 rows hold three sets of 3
    sets = [rows[j] for j in range(3)]
    flat = torch.cat(sets).tolist()
    assert len(set(flat)) == 9 and 0 not in flat and all(s.dtype == torch.int32 for s in sets)
    gen = torch.Generator().manual_seed(5)
    assert flat == (torch.randperm(10, generator=gen) + 1)[:9].tolist()   # the seeded permutation, in order
    seen = []
    make = disjoint_calls(lambda r, j: (lambda: seen.append((j, r.tolist()))), rows)
    for call in make(3):
        call()
    assert [r for _, r in seen] == [s.tolist() for s in sets]
    with pytest.raises(ValueError, match="the pool holds 3"):
        make(4)
    ring = RowSets.in_order(4, 2, torch.device("cpu"), count=2, rotate=True)
    calls = disjoint_calls(lambda r, j: (lambda: r.tolist()), ring)(5)
    assert [c() for c in calls] == [[1, 2], [3, 4], [1, 2], [3, 4], [1, 2]]


def test_kernel_calls_give_each_verify_its_own_buffer_of_the_scope():
    from gdnlab.errors import InputError
    from gdnlab.harness_calls import KernelCalls, RowSets, disjoint_calls
    from gdnlab.inputs import make_inputs
    from gdnlab.kernels import get_backend
    from gdnlab.shapes import GDNShape
    from gdnlab.state import StatePool

    tiny = GDNShape("tiny", num_q_heads=1, num_v_heads=2, head_k_dim=16, head_v_dim=16)
    pool = StatePool(tiny, 6, dtype=torch.float32).randomize_(0).tensor
    args = make_inputs(tiny, 2, 3, seed=1).args()
    be = get_backend("reference")
    rows = RowSets.in_order(6, 2, torch.device("cpu"))
    for scope, dim0 in (("batch", 2), ("pool", 7)):
        kc = KernelCalls(be, tiny, pool, args, draft_tokens=3, buffer_scope=scope)
        assert kc.description == f"reference.verify(intermediate={'batch' if scope == 'batch' else 'pool-sized'})"
        outs = [c() for c in disjoint_calls(kc, rows)(3)]
        bufs = [o[1] for o in outs]
        assert all(b.shape[:2] == (dim0, 3) for b in bufs) and len({b.data_ptr() for b in bufs}) == 3
        if scope == "pool":                        # rows of the pool-sized buffer beyond B stay untouched
            assert all(torch.isnan(b[2:]).all() and not torch.isnan(b[:2]).any() for b in bufs)
    with pytest.raises(InputError, match="buffer_scope"):
        KernelCalls(be, tiny, pool, args, draft_tokens=3, buffer_scope="none")
    dec = KernelCalls(be, tiny, pool, make_inputs(tiny, 2, 1, seed=1).args(), draft_tokens=1, buffer_scope="none")
    assert dec.buffer() is None and dec.description == "reference.decode"
