"""The engine's cost beyond its kernels (:class:`~gdnlab.model.engine_step.EngineParams`), fitted on
named rows and never on the rows it is checked against.

Every end-to-end row gdnlab checks is a :class:`Case`: a served configuration (GPU, TP, EP, weights,
KV and state dtype, GDN backend and strategy), a bench_serving scenario
(:class:`~gdnlab.model.serving.ServingScenario`), the MTP setup, one reported number (mean TPOT in
ms or output throughput in tok/s) and the **source** it was published in:

* ``seed-fixed`` -- SGLang PR #23273, GB200, TPOT by concurrency *with* flashinfer#3147 and the
  ``[:batch_size]`` slice (12 rows);
* ``seed-before_fix-tpot`` -- the same PR's TPOT table *before* them (14 rows), and ``seed-osl`` its
  OSL sweep (9 rows: its MTP throughput at ~128 running requests matches that table's concurrency-128
  TPOT, 34.8 vs 32.9 ms, and is 2.5x the fixed table's, so the sweep ran the same software);
* ``sglcookbook-h200`` and ``inferencex-h100`` -- the published Hopper runs with MTP
  (``gdnlab/data/published_runs.csv``), TPOT and output throughput per GPU.

Software states: ``current`` (seed-fixed and the published runs) and ``before_fix`` (the before-fix
TPOT table and the OSL sweep). Each state has its own two numbers; ``before_fix``'s are fitted on the
before-fix TPOT table only, which is therefore a fit table and not checked, and checked on the OSL
sweep. In the ``current`` state each source is
checked with numbers fitted on the *other* current sources' TPOT rows (leave one source out), so no
row is ever predicted with a number fitted on it or on its own source. :func:`fit_params` fits
(non-negative least squares on relative errors of simulated runs, :mod:`gdnlab.model.serving`) and
refuses a result outside :data:`~gdnlab.model.engine_step.PARAM_BOUNDS`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from ..anchors.published import load_published_runs
from ..errors import DataError
from ..seed import MAX_RUNNING_REQUESTS, SEED_NUM_STEPS, SEED_SOURCE, SEED_TRITON, load_seed
from ..strategies.registry import BASELINE
from .engine_build import engine_step_for, gpu_key
from .engine_step import EngineParams, EngineStep
from .mtp import MTPConfig
from .numeric import nnls
from .seed_runs import SeedAssumptions
from .serving import LinearRun, ServingScenario, simulate_serving

__all__ = ["Case", "seed_cases", "published_cases", "all_cases", "simulate_case", "fit_params", "fold_params",
           "deployment_params", "CURRENT_SOURCES", "INFERENCEX_PROMPTS_PER_CONCURRENCY"]

#: sources of the current software state (each checked with numbers fitted on the others)
CURRENT_SOURCES = ("seed-fixed", "sglcookbook-h200", "inferencex-h100")
#: InferenceX's benchmark sends ``10 x concurrency`` prompts (assumed: the PR's table does not say)
INFERENCEX_PROMPTS_PER_CONCURRENCY = 10


@dataclass(frozen=True)
class Case:
    """One reported end-to-end number and everything needed to simulate it.

    ``metric``: ``mean_tpot`` (ms) or ``output_throughput`` (tok/s, all GPUs); ``per_gpu``: GPUs the
    throughput is divided by for the per-GPU figure; ``role``: ``fit`` (a fit table, not checked) or
    ``check``; ``aic_key``: how AIConfigurator's prediction of the same row is looked up."""

    case_id: str
    source: str
    state: str
    gpu: str
    tp: int
    ep: int
    weights: str
    kv_dtype: str
    state_dtype: str
    backend: str
    strategy: str
    scenario: ServingScenario
    mtp: MTPConfig | None
    metric: str
    observed: float
    gpus: int
    chunked_prefill: int
    citation: str
    role: str = "check"
    accept_len_source: str = ""
    aic_key: str = ""

    def value(self, run: LinearRun, params: EngineParams) -> float:
        return run.throughput(params) if self.metric == "output_throughput" else run.tpot_ms(params)

    def equation(self, run: LinearRun) -> tuple[np.ndarray, float]:
        """``A @ [pass_us, request_us] = b`` for a relative error of zero (see
        :func:`gdnlab.model.seed_runs.seed_equation`)."""
        if self.metric == "output_throughput":
            target = run.output_tokens / self.observed * 1e6
            c, f = run.duration
        else:
            target = self.observed * 1e3
            c, f = run.mean_tpot
        return f / target, 1.0 - c / target


def seed_cases(a: SeedAssumptions | None = None) -> list[Case]:
    """The seed's performance rows (GB200, TP4, NVFP4 weights, bf16 KV, bf16 state
    ``--mamba-ssm-dtype bfloat16``, ``--chunked-prefill-size 2048``, ``--max-running-requests 128``,
    NEXTN 3 steps / 4 draft tokens at the reported accept length's midpoint)."""
    a = a or SeedAssumptions()
    df = load_seed()
    out = []
    for _, r in df[df["table"].isin(["osl_sweep", "tpot_concurrency", "tpot_concurrency_fixed"])].iterrows():
        mtp = MTPConfig(draft_tokens=4, acceptance=a.accept_len, num_steps=SEED_NUM_STEPS) if bool(r["mtp"]) else None
        tpot = r["table"] != "osl_sweep"
        c = int(r["concurrency"]) if tpot else None
        prompts = max(int(a.tpot_num_prompts or 4 * c), c) if tpot else int(r["num_prompts"])
        sc = ServingScenario(isl=int(r["isl"]), osl=int(r["osl"]), num_prompts=prompts, concurrency=c,
                             max_running=MAX_RUNNING_REQUESTS, range_ratio=a.range_ratio, seed=a.length_seed)
        state = "current" if r["table"] == "tpot_concurrency_fixed" else "before_fix"
        source = {"tpot_concurrency_fixed": "seed-fixed", "tpot_concurrency": "seed-before_fix-tpot"}.get(
            str(r["table"]), "seed-osl")
        role = "fit" if r["table"] == "tpot_concurrency" else "check"
        x = f"c{c}" if tpot else f"osl{int(r['osl'])}"
        out.append(Case(f"seed/{r['table']}/{r['backend']}/{'mtp' if mtp else 'nomtp'}/{x}", source, state, "gb200", 4,
                        1, "nvfp4", "bf16", "bfloat16", str(r["backend"]), BASELINE, sc, mtp,
                        "mean_tpot" if tpot else "output_throughput", float(r["value"]), 4, 2048,
                        f"{SEED_SOURCE}, table {r['table']}", role,
                        "reported range 3.13-3.22, midpoint" if mtp else "MTP off",
                        f"seed/{r['table']}/{'mtp' if mtp else 'nomtp'}/{x}"))
    return out


def _published_scenario(r) -> ServingScenario:
    """bench_serving's random lengths: with ``--random-range-ratio`` 0 (SGLang's default) the mean is
    about half the nominal length, so a run whose source prints measured means is replayed at a
    nominal length of twice its mean; InferenceX states range ratio 0.8."""
    inferencex = str(r["run_id"]).startswith("inferencex")
    ratio = 0.8 if inferencex else 0.0
    isl = int(r["isl"]) if pd.isna(r["isl_mean"]) else int(round(2 * float(r["isl_mean"])))
    osl = int(r["osl"]) if pd.isna(r["osl_mean"]) else int(round(2 * float(r["osl_mean"])))
    c = int(r["concurrency"])
    n = int(r["num_prompts"]) if pd.notna(r["num_prompts"]) else INFERENCEX_PROMPTS_PER_CONCURRENCY * c
    return ServingScenario(isl=isl, osl=osl, num_prompts=n, concurrency=c, max_running=max(n, c), range_ratio=ratio)


def published_cases(assumed_accept_len: float = 3.31) -> list[Case]:
    """Every published Qwen3.5-397B run with MTP on Hopper/Blackwell (``published_runs.csv``): TPOT
    and output throughput. A run that reports no accept length is simulated at
    ``assumed_accept_len`` (the SGLang cookbook's H200 random-prompt point for 3 drafts, as
    AIConfigurator's shipped prediction assumes)."""
    out = []
    for _, r in load_published_runs().iterrows():
        if not bool(r["mtp"]) or r["model"] != "Qwen3.5-397B-A17B":
            continue
        gpu = gpu_key(str(r["gpu"]))
        acc = float(r["accept_len"]) if pd.notna(r["accept_len"]) else assumed_accept_len
        src = "reported by the run's source" if pd.notna(r["accept_len"]) else \
            f"assumed {assumed_accept_len} (acceptance_curves.csv sglcookbook-h200-random-c100, 3 drafts)"
        mtp = MTPConfig(draft_tokens=int(r["draft_tokens"]), acceptance=acc, num_steps=int(r["num_speculative_tokens"]))
        source = "inferencex-h100" if str(r["run_id"]).startswith("inferencex") else f"sglcookbook-{gpu}"
        sd = "bfloat16" if str(r["mamba_ssm_dtype"]) == "bfloat16" else "float32"
        # SGLang's default GDN kernels (Triton) and full-cache verify: labelled as the seed labels its Triton run
        base = dict(source=source, state="current", gpu=gpu, tp=int(r["tp"]),
                    ep=int(r["ep"]) if pd.notna(r["ep"]) else 1,
                    weights=str(r["weights_dtype"]), kv_dtype=str(r["kv_dtype"]), state_dtype=sd, backend=SEED_TRITON,
                    strategy=BASELINE, scenario=_published_scenario(r), mtp=mtp, gpus=int(r["gpu_count"]),
                    chunked_prefill={"h100": 8192, "h200": 8192}.get(gpu, 16384),
                    citation=f"{r['source']} ({r['source_url']})", accept_len_source=src, aic_key=str(r["run_id"]))
        out.append(Case(f"{r['run_id']}/tpot", metric="mean_tpot", observed=float(r["tpot_ms"]), **base))
        out.append(Case(f"{r['run_id']}/throughput", metric="output_throughput",
                        observed=float(r["output_tok_s_total"]), **base))
    return out


def all_cases() -> list[Case]:
    return seed_cases() + published_cases()


@lru_cache(maxsize=16)
def _step(gpu, tp, ep, weights, kv, sd, strategy, chunk) -> EngineStep:
    return engine_step_for(gpu, tp, ep, weights, kv, state_dtype=sd, strategy=strategy, chunked_prefill_tokens=chunk)


@lru_cache(maxsize=256)
def simulate_case(case: Case) -> LinearRun:
    """The simulated bench_serving run behind one case (linear in the engine's two numbers)."""
    s = _step(case.gpu, case.tp, case.ep, case.weights, case.kv_dtype, case.state_dtype, case.strategy,
              case.chunked_prefill)
    return simulate_serving(s, case.backend, case.scenario, case.mtp)


def fit_params(cases: Iterable[Case], what: str) -> EngineParams:
    """The two host numbers fitted on ``cases`` (non-negative least squares on the relative errors of
    their simulated runs), bounded: a fit outside :data:`~gdnlab.model.engine_step.PARAM_BOUNDS`
    raises :class:`~gdnlab.errors.DataError`. ``what`` names the rows in the result's ``source``."""
    cs = list(cases)
    if not cs:
        raise DataError(f"no rows to fit the engine's numbers on ({what})")
    A, b = zip(*(c.equation(simulate_case(c)) for c in cs))
    th = nnls(np.vstack(A), np.asarray(b))
    return EngineParams(float(th[0]), float(th[1]), source=f"fitted on {what} ({len(cs)} rows)").check()


def _names(sources: Sequence[str]) -> str:
    return " + ".join(sources) + " TPOT rows"


def fold_params(case: Case, cases: Sequence[Case] | None = None) -> EngineParams:
    """The numbers a case is predicted with: fitted on the other current sources' TPOT rows (current
    state) or on the before-fix TPOT table (before-fix state, whose OSL sweep is checked)."""
    cases = list(cases) if cases is not None else all_cases()
    if case.state == "before_fix":
        fit = [c for c in cases if c.state == "before_fix" and c.role == "fit"]
        return fit_params(fit, "seed-before_fix-tpot rows (the PR's TPOT table before the fix)")
    others = tuple(s for s in CURRENT_SOURCES if s != case.source)
    fit = [c for c in cases if c.source in others and c.metric == "mean_tpot" and c.role == "check"]
    return fit_params(fit, _names(others))


def deployment_params(cases: Sequence[Case] | None = None) -> EngineParams:
    """The numbers :func:`gdnlab.model.predict.predict` uses: fitted on every current source's TPOT
    rows (``seed-fixed``, ``sglcookbook-h200``, ``inferencex-h100``)."""
    cases = list(cases) if cases is not None else all_cases()
    fit = [c for c in cases if c.source in CURRENT_SOURCES and c.metric == "mean_tpot"]
    return fit_params(fit, _names(CURRENT_SOURCES))


def with_accept(case: Case, accept_len: float) -> Case:
    """``case`` at another accept length (sensitivity)."""
    if case.mtp is None:
        return case
    return replace(case, mtp=replace(case.mtp, acceptance=accept_len))
