"""The seed's reported rows (SGLang PR #23273, :mod:`gdnlab.seed`) as targets a step model is fitted
on and scored against — shared by the component model (:mod:`gdnlab.model.validation`) and the
roofline model (:mod:`gdnlab.model.legacy`).

* :func:`seed_roles` — each row is **fit**, **heldout** or unused (accuracy rows);
* :class:`SeedAssumptions` — what the seed does not state; :func:`seed_variants` other readings;
* :func:`seed_run` — the simulated bench_serving run behind a row
  (:func:`gdnlab.model.serving.simulate_serving`);
* :func:`seed_equation` — one row's relative-error equation, linear in the fitted numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..results import require_columns
from ..seed import MAX_RUNNING_REQUESTS, SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS, SEED_FLASHINFER, SEED_NUM_STEPS
from .mtp import MTPConfig
from .serving import LinearRun, LinearStep, ServingScenario, simulate_serving

__all__ = ["SeedAssumptions", "seed_variants", "check_seed_df", "seed_roles", "seed_run", "seed_equation",
           "SEED_COLUMNS"]


@dataclass(frozen=True)
class SeedAssumptions:
    """What the seed does not state and its comparison with a step model assumes (each can be
    varied: :func:`seed_variants`, :func:`gdnlab.model.sensitivity`).

    Attributes:
        gpu: the seed's GPU (GB200; the roofline model runs on it, the component model projects to GB200).
        accept_len: tokens per MTP step: the midpoint of the reported 3.13-3.22.
        range_ratio: bench_serving ``--random-range-ratio`` (SGLang default 0.0).
        tpot_num_prompts: prompts per TPOT-table run (not stated; 256, the only count the PR gives;
            None = ``max(4 * concurrency, 32)``).
        length_seed: RNG seed of the simulated length draw.
        before_kernel: roofline model only (:mod:`gdnlab.model.legacy`): FlashInfer kernel model for
            the runs before flashinfer#3147 (the OSL sweep and the first TPOT table):
            ``"flashinfer_pre3147"``.
        fixed_free: roofline model only: parameters re-fitted for the "fixed" TPOT table (a later
            software state whose TPOT is 2.4x lower at concurrency 128 — not explained by GDN
            kernels); the others are carried over from the first fit.
    """

    gpu: str = "GB200"
    accept_len: float = sum(SEED_ACCEPT_LEN) / 2
    range_ratio: float = 0.0
    tpot_num_prompts: int | None = 256
    length_seed: int = 0
    before_kernel: str = "flashinfer_pre3147"
    fixed_free: tuple[str, ...] = ("pass_us", "request_us", "token_us", "prefill_pass_us")


def seed_variants() -> dict[str, SeedAssumptions]:
    """The other readings of the seed a sensitivity table re-fits under: the default, the two ends
    of the reported accept length, another length draw, the other TPOT prompt count, fixed lengths."""
    base = SeedAssumptions()
    return {
        "default": base,
        "accept_len 3.13": replace(base, accept_len=3.13),
        "accept_len 3.22": replace(base, accept_len=3.22),
        "length draw seed 1": replace(base, length_seed=1),
        "TPOT runs: max(4 x concurrency, 32) prompts": replace(base, tpot_num_prompts=None),
        "fixed output lengths (range_ratio 1)": replace(base, range_ratio=1.0),
    }


#: columns a seed frame needs (:func:`gdnlab.seed.load_seed`)
SEED_COLUMNS = ("table", "backend", "mtp", "isl", "osl", "concurrency", "num_prompts", "metric", "value",
                "kernel_state")


def check_seed_df(df) -> None:
    """``ValueError`` unless ``df`` is a seed frame (:func:`gdnlab.seed.load_seed` or a modified copy)."""
    require_columns(df, SEED_COLUMNS, what="seed rows", hint="pass gdnlab.seed.load_seed(), or a modified copy")


def seed_roles(df: pd.DataFrame) -> pd.Series:
    """``"fit"`` / ``"heldout"`` / ``"unused"`` for each seed row.

    fit: the no-MTP OSL-sweep rows (FlashInfer) and the FlashInfer rows of both TPOT tables;
    heldout: every MTP OSL-sweep row (hence the MTP speedups) and every Triton TPOT row (hence the
    Triton/FlashInfer ratios); unused: accuracy rows.
    """
    t, b, mtp = df["table"], df["backend"], df["mtp"].fillna(False).astype(bool)
    role = pd.Series("unused", index=df.index, dtype=object)
    perf = t.isin(["osl_sweep", "tpot_concurrency", "tpot_concurrency_fixed"])
    tpot = t.isin(["tpot_concurrency", "tpot_concurrency_fixed"])
    fit = ((t == "osl_sweep") & ~mtp) | (tpot & (b == SEED_FLASHINFER))
    role[perf & fit] = "fit"
    role[perf & ~fit] = "heldout"
    return role


def seed_run(sm: LinearStep, row, a: SeedAssumptions, backend: str) -> LinearRun:
    """The simulated bench_serving run behind one seed row (``row``: a row of
    :func:`gdnlab.seed.load_seed`) on step model ``sm`` with GDN backend (or kernel model) ``backend``."""
    mtp = MTPConfig(draft_tokens=SEED_DRAFT_TOKENS, acceptance=a.accept_len, num_steps=SEED_NUM_STEPS) \
        if bool(row["mtp"]) else None
    if row["table"] == "osl_sweep":
        prompts, concurrency = int(row["num_prompts"]), None
    else:
        prompts, concurrency = _tpot_prompts(a, int(row["concurrency"])), int(row["concurrency"])
    sc = ServingScenario(isl=int(row["isl"]), osl=int(row["osl"]), num_prompts=prompts, concurrency=concurrency,
                         max_running=MAX_RUNNING_REQUESTS, range_ratio=a.range_ratio, seed=a.length_seed)
    return simulate_serving(sm, backend, sc, mtp)


def _tpot_prompts(a: SeedAssumptions, concurrency: int) -> int:
    if a.tpot_num_prompts is None:
        return max(4 * concurrency, 32)
    return max(int(a.tpot_num_prompts), concurrency)


def seed_equation(run: LinearRun, row) -> tuple[np.ndarray, float]:
    """One relative-error equation ``A @ theta = b`` for a seed row (throughput via duration): ``A``
    ``[F]`` (the run's features over the reported value), ``b`` (1 - fixed part over the reported
    value); ``theta`` = the step model's fitted numbers. Rows of several runs stacked go to
    :func:`gdnlab.model.numeric.nnls`."""
    if row["metric"] == "output_throughput":
        target = run.output_tokens / float(row["value"]) * 1e6  # duration µs
        c, f = run.duration
    else:
        target = float(row["value"]) * 1e3  # TPOT µs
        c, f = run.mean_tpot
    return f / target, 1.0 - c / target
