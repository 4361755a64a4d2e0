"""Engine flags of the plan (gdnlab.model.server_config, read from the strategy registry): every GPU of
the hardware table answers from the shipped data; every emitted SGLang command line parses with SGLang
0.5.23's own argument parser (skipped, saying why, where sglang is not importable); every emitted vLLM
flag, value, --speculative-config key and environment variable lies in the flag table extracted from
vLLM 0.33.0's source (gdnlab/data/vllm-0.33.0-flags.json); the adaptive schedules mean what the engines'
own code makes of them."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from importlib import metadata, resources
from pathlib import Path

import pytest

from gdnlab.engines import ENGINE_VERSIONS, command_args, spec_args
from gdnlab.hardware import GPU_SPECS
from gdnlab.model import make_plan
from gdnlab.model.build import gpu_data, step_for_gpu
from gdnlab.model.server_config import engine_paths
from gdnlab.strategies.registry import STRATEGY_CLASSES

from helpers.plan import curve, step_with, strategy_sweep

REPO = Path(__file__).resolve().parents[2]
BATCHES = [1, 4, 16, 64, 128, 256]


def _sglang_parser() -> argparse.ArgumentParser:
    if importlib.util.find_spec("sglang") is None and "sglang" not in sys.modules:
        pytest.skip("sglang not installed: the SGLang flag check needs sglang==0.5.23 (pip install --no-deps "
                    "sglang==0.5.23 plus msgspec orjson pybase64 starlette einops pyzmq pydantic)")
    have = metadata.version("sglang")
    if have != ENGINE_VERSIONS["sglang"]:
        pytest.skip(f"sglang {have} installed; the flags were read from {ENGINE_VERSIONS['sglang']}")
    if "sglang" not in sys.modules:        # a bare package: sglang/__init__.py starts the whole client stack
        spec = importlib.util.find_spec("sglang")
        mod = types.ModuleType("sglang")
        mod.__path__, mod.__spec__ = list(spec.submodule_search_locations), spec
        sys.modules["sglang"] = mod
    try:
        server_args = importlib.import_module("sglang.srt.server_args")
    except ImportError as exc:
        pytest.skip(f"sglang.srt.server_args does not import here: {exc}")
    p = argparse.ArgumentParser()
    server_args.ServerArgs.add_cli_args(p)
    return p


def _vllm_table() -> dict:
    with resources.files("gdnlab").joinpath(f"data/vllm-{ENGINE_VERSIONS['vllm']}-flags.json").open() as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    if not (REPO / "traces" / "h200" / "components").is_dir():
        pytest.skip("no shipped H200 component run in this checkout")
    cache = tmp_path_factory.mktemp("fits")
    out = {}
    for name in GPU_SPECS:
        d = gpu_data(name, root=REPO / "traces")
        st, _ = step_for_gpu(d.gpu.name, d.components, sweep_path=d.sweep, cache_dir=cache)
        out[name] = make_plan(st, batches=BATCHES, curve=curve({2: 1.93, 4: 3.39, 6: 4.41, 8: 5.04}))
    return out


def test_every_gpu_answers(plans):
    assert set(plans) == set(GPU_SPECS)
    for name, p in plans.items():
        status = set(p.candidates["status"])
        assert status == ({"measured"} if name == "H200" else {"projected"}), name
        for eng in ENGINE_VERSIONS:
            sv = p.servers[eng]
            assert sv is not None and set(sv.option) == {"strategy", "draft_tokens", "state_dtype", "backend"}
            assert sv.path.args and sv.path.version == ENGINE_VERSIONS[eng]
        for r in p.per_batch.itertuples():
            assert isinstance(r.strategy, str) or r.verdict == "nothing fits", (name, r.batch)
            if isinstance(r.strategy, str):
                assert r.batch <= r.max_concurrency


def test_flags_come_from_the_registry(plans):
    p = plans["H200"]
    for r in p.candidates.drop_duplicates(["strategy", "draft_tokens", "state_dtype", "backend"]).itertuples():
        paths = engine_paths(r.strategy, r.draft_tokens, r.state_dtype, r.backend, "sm90")
        if r.strategy == "decode":
            assert {e: list(v.args) for e, v in paths.items()} == {e: spec_args(e, None, r.state_dtype)
                                                                   for e in ENGINE_VERSIONS}
            continue
        runs = [x for cls in STRATEGY_CLASSES if cls.name == r.strategy for x in cls.engine_runs
                if r.backend in x.backends
                and x.runs(state_dtype=r.state_dtype, sm="sm90", draft_tokens=r.draft_tokens)]
        assert {e: list(v.args) for e, v in paths.items()} == {x.engine: command_args(x, r.draft_tokens, r.state_dtype)
                                                               for x in runs[::-1]}
    # gdnlab's own Triton recompute, and FlashInfer's bf16 ucache ring, are no engine's
    assert not engine_paths("recompute", 4, "bfloat16", "triton", "sm90")
    assert not engine_paths("replay_ring", 4, "bfloat16", "flashinfer", "sm90")


def _emitted(plans) -> dict[str, list[tuple[tuple[str, ...], dict]]]:
    """Every (args, env) the plans print, and every registry path at T = 2..8 in both state dtypes."""
    out: dict[str, list] = {e: [] for e in ENGINE_VERSIONS}
    for p in plans.values():
        for eng, sv in p.servers.items():
            out[eng].append((sv.path.args, dict(sv.path.env)))
            if sv.adaptive is not None:
                out[eng].append((sv.adaptive.args, dict(sv.adaptive.env)))
        for eng, t in p.per_engine.items():
            out[eng] += [(tuple(a.split()), {}) for a in t[eng] if a]
    for cls in STRATEGY_CLASSES:
        for run in cls.engine_runs:
            for T in range(2, 9):
                for sd in run.state_dtypes:
                    if run.runs(draft_tokens=T):
                        out[run.engine].append((tuple(command_args(run, T, sd)), dict(run.env)))
    for eng in ENGINE_VERSIONS:
        out[eng] += [(tuple(spec_args(eng, None, sd)), {}) for sd in ("float32", "bfloat16")]
    return out


def test_every_sglang_line_parses_with_sglangs_own_parser(plans):
    parser = _sglang_parser()
    lines = _emitted(plans)["sglang"]
    assert len(lines) > 20
    for args, env in lines:
        ns = parser.parse_args(["--model-path", "Qwen/Qwen3.5-397B-A17B", "--tp", "4", *args])
        assert ns.mamba_ssm_dtype in ("float32", "bfloat16") and not env
        if "--speculative-num-draft-tokens" in args:
            T = int(args[args.index("--speculative-num-draft-tokens") + 1])
            assert ns.speculative_algorithm == "NEXTN" and ns.speculative_num_steps == T - 1
            assert ns.speculative_eagle_topk == 1


def _check_vllm(args: tuple[str, ...], env: dict, table: dict) -> None:
    flags = table["flags"]
    i = 0
    while i < len(args):
        f = args[i]
        assert f in flags, f"{f} is not a vLLM {table['version']} flag"
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        if "choices" in flags[f]:
            assert value in flags[f]["choices"], (f, value)
        if f in table["json_flags"]:
            spec = json.loads(value)
            keys = table["json_flags"][f]["keys"]
            assert set(spec) <= set(keys), set(spec) - set(keys)
            assert spec["method"] in keys["method"]["choices"]
            assert isinstance(spec["num_speculative_tokens"], int) and spec["num_speculative_tokens"] >= 1
        i += 1 if value is None else 2
    for k, v in env.items():
        assert k in table["env"] and (table["env"][k]["choices"] is None or v in table["env"][k]["choices"]), (k, v)


def test_every_vllm_line_is_in_the_flag_table_of_its_release(plans):
    table = _vllm_table()
    assert table["version"] == ENGINE_VERSIONS["vllm"] and "arg_utils.py" in table["source"]
    lines = _emitted(plans)["vllm"]
    assert len(lines) > 10
    for args, env in lines:
        _check_vllm(args, env, table)
    with pytest.raises(AssertionError):       # the check can fail: a flag vLLM does not have
        _check_vllm(("--gdn-mtp-cache-mode", "full"), {}, table)


def _steep_plan(backend: str, strategy: str, state_dtype: str):
    rows = strategy_sweep(Ts=(2, 4), coef={strategy: (4.0, 20.0, 0.0)}, backends=(backend,),
                          state_dtypes=(state_dtype,))
    return make_plan(step_with(rows), batches=[1, 4, 16], curve=curve({2: 1.95, 4: 3.0}), backends=[backend])


def test_sglang_adaptive_config_routes_batches_as_planned(tmp_path):
    plan = _steep_plan("flashinfer", "full_cache", "float32")
    ad = plan.servers["sglang"].adaptive
    assert ad is not None
    _sglang_parser().parse_args(["--model-path", "m", *ad.args])
    f = tmp_path / ad.config_file
    f.write_text(json.dumps(ad.config))
    params = importlib.import_module("sglang.srt.speculative.adaptive_spec_params")
    steps = int(ad.args[ad.args.index("--speculative-num-steps") + 1])
    routed = params.AdaptiveSpeculativeParams(steps, str(f))
    want = dict(zip(ad.schedule["batch"], ad.schedule["draft_tokens"]))
    for b, T in want.items():
        assert routed.get_steps_for_batch(int(b)) + 1 == T


def test_vllm_dynamic_schedule_follows_vllms_rules():
    plan = _steep_plan("vllm_triton", "token_slots", "bfloat16")
    sv = plan.servers["vllm"]
    assert sv.option["strategy"] == "token_slots" and ("VLLM_GDN_DECODE_KERNEL", "triton") in sv.path.env
    ad = sv.adaptive
    assert ad is not None and ad.config is None
    _check_vllm(ad.args, dict(ad.env), _vllm_table())
    spec = json.loads(ad.args[ad.args.index("--speculative-config") + 1])
    sched = spec["num_speculative_tokens_per_batch_size"]
    # vllm/v1/spec_decode/dynamic/utils.py: ranges from batch 1, inclusive, non-overlapping, K <= the maximum
    assert sched[0][0] == 1 and all(a <= b for a, b, _ in sched)
    assert all(sched[i][1] < sched[i + 1][0] for i in range(len(sched) - 1))
    assert all(0 <= k <= spec["num_speculative_tokens"] for *_, k in sched)
    want = dict(zip(ad.schedule["batch"], ad.schedule["draft_tokens"]))
    for b, T in want.items():
        k = next(k for a, z, k in sched if a <= b <= z)
        assert k + 1 == T
