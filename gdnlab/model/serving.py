"""Serving simulation: a bench_serving run replayed through a step model (TPOT, throughput).

:func:`simulate_serving` replays a bench_serving run (:class:`ServingScenario`): requests arrive
all at t=0 (``--request-rate inf``) or closed-loop (``--max-concurrency``); at most ``max_running``
(``--max-running-requests``, **128 in the seed**) run at once and the rest wait in the engine's
queue — so the seed's 256-prompt OSL sweep runs at an effective concurrency <= 128 (and falling in
the tail), and its concurrency-256 TPOT row runs at 128; new requests are prefilled in
chunked-prefill passes that interrupt decoding; output lengths follow bench_serving's random
dataset, ``randint(max(1, int(OSL * range_ratio)), OSL + 1)`` with SGLang's default
``range_ratio = 0.0`` (the seed does not give the flag). The schedule does not depend on the step
cost, so every benchmark metric is linear in the fitted parameters (throughput through its
inverse): :class:`LinearRun` keeps that linear form, so a fit or a validation costs seconds.

Any step model whose event times are affine in its fitted numbers can be replayed
(:class:`LinearStep`): the component model (:class:`~gdnlab.model.composed.ComposedStep`) and the
roofline model (:class:`gdnlab.model.legacy.StepModel`).

(:class:`ServingScenario` is a serving benchmark's setting; the GPU decode loop that runs GDN
kernels is :mod:`gdnlab.workload`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from ..hardware import GPUSpec
from ..seed import SEED_BACKENDS
from .mtp import SEED_MTP, MTPConfig

__all__ = ["ServingScenario", "ServingTrace", "LinearRun", "LinearStep", "FittedNumbers", "simulate_serving",
           "project"]


class FittedNumbers(Protocol):
    """A step model's fitted numbers (µs or dimensionless, >= 0) as one vector."""

    def vector(self) -> np.ndarray:
        """float64 ``[F]`` in the order of the step model's feature vectors."""
        ...


class LinearStep(Protocol):
    """What :func:`simulate_serving` needs of a step model: every event's time is affine in the fitted
    numbers, ``fixed_us + features @ params.vector()`` (µs).

    ``iteration_cost(backend, batch, ctx_tokens, mtp)``: one decode / MTP iteration of ``batch``
    running requests whose contexts sum to ``ctx_tokens``; ``prefill_cost(backend, requests, tokens,
    mtp)``: one prefill pass of ``requests`` new requests with ``tokens`` prompt tokens. Both return
    ``(fixed_us, features [F])``. ``kv_knots``: context tokens per request at which iterations are
    evaluated (None: 0 and 1e6 tokens in all, a step linear in the context);
    ``chunked_prefill_tokens``: the engine's ``--chunked-prefill-size``.
    """

    params: FittedNumbers
    gpu: GPUSpec
    kv_knots: tuple[float, ...] | None
    chunked_prefill_tokens: int

    def check_backend(self, backend: str) -> None: ...

    def iteration_cost(self, backend: str, batch: float, ctx_tokens: float,
                       mtp: MTPConfig | None) -> tuple[float, np.ndarray]: ...

    def prefill_cost(self, backend: str, requests: float, tokens: float,
                     mtp: MTPConfig | None) -> tuple[float, np.ndarray]: ...

    def provenance(self, **extra: object) -> str: ...


@dataclass(frozen=True)
class ServingScenario:
    """A bench_serving run (random dataset).

    Attributes:
        isl, osl: ``--random-input-len`` / ``--random-output-len`` (tokens).
        num_prompts: requests in the run.
        concurrency: ``--max-concurrency`` (None: every request is sent at t=0,
            ``--request-rate inf`` without a cap, as in the seed's OSL sweep).
        max_running: the engine's ``--max-running-requests`` (seed: 128). Requests beyond it wait
            in the engine's queue, so at most this many decode at once.
        range_ratio: ``--random-range-ratio``; lengths are drawn like bench_serving,
            ``randint(max(1, int(L * range_ratio)), L + 1)``. SGLang's default is 0.0 (uniform in
            ``[1, L]``, mean ~L/2); the seed does not give the flag, so 0.0 is an assumption.
        seed: RNG seed of the length draw.
    """

    isl: int = 32
    osl: int = 1024
    num_prompts: int = 256
    concurrency: int | None = None
    max_running: int = 128
    range_ratio: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("isl", "osl", "num_prompts", "max_running"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"ServingScenario.{f} must be a positive integer, got {v!r}")
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1):
            raise ValueError(f"ServingScenario.concurrency must be a positive integer or None, got {c!r}")
        if not 0.0 <= float(self.range_ratio) <= 1.0:
            raise ValueError(f"ServingScenario.range_ratio must lie in [0, 1], got {self.range_ratio!r}")

    @property
    def effective_concurrency(self) -> int:
        """Most requests decoding at once: ``min(concurrency or num_prompts, num_prompts, max_running)``."""
        return min(self.concurrency or self.num_prompts, self.num_prompts, self.max_running)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(input lengths, output lengths) per request, drawn like bench_serving's random dataset."""
        rng = np.random.default_rng(self.seed)
        lo_i = max(int(self.isl * self.range_ratio), 1)
        lo_o = max(int(self.osl * self.range_ratio), 1)
        isl = rng.integers(lo_i, self.isl + 1, size=self.num_prompts)
        osl = rng.integers(lo_o, self.osl + 1, size=self.num_prompts)
        return isl, osl


@dataclass(frozen=True)
class ServingTrace:
    """The schedule of a simulated run (independent of any cost): one entry per forward event.

    ``kind`` 0 = decode / MTP iteration, 1 = prefill pass; ``n`` requests in it; ``ctx`` context
    tokens summed over its requests before the step; ``tokens`` prompt tokens (prefill passes);
    ``emitted`` output tokens it produced. ``first`` / ``done``: per request, index of the event
    that produced its first / last token; ``osl``: its output length.
    """

    kind: np.ndarray
    n: np.ndarray
    ctx: np.ndarray
    tokens: np.ndarray
    emitted: np.ndarray
    first: np.ndarray
    done: np.ndarray
    osl: np.ndarray


@lru_cache(maxsize=128)
def _trace(sc: ServingScenario, accept_len: float, chunk_tokens: int) -> ServingTrace:
    """Replay the scheduler: admit up to ``max_running`` requests (prefill passes of at most
    ``chunk_tokens`` prompt tokens, run before the next decode iteration, as SGLang's scheduler
    prioritises new requests), then one decode/MTP iteration of everything running, each request
    gaining ``accept_len`` tokens (capped at its length); finished requests free their slot and, with
    ``--max-concurrency``, let the client send the next request."""
    isl, osl = sc.lengths()
    P = sc.num_prompts
    cap = min(sc.concurrency or P, P)
    kind, nn, ctx, toks, emit = [], [], [], [], []
    first = np.full(P, -1, dtype=np.int64)
    done = np.full(P, -1, dtype=np.int64)
    produced = np.zeros(P)
    running = np.zeros(0, dtype=np.int64)
    waiting: list[int] = list(range(cap))
    next_req = cap
    while running.size or waiting:
        free = sc.max_running - running.size
        if waiting and free > 0:
            admit, waiting = waiting[:free], waiting[free:]
            chunk: list[int] = []
            tok = 0
            for r in admit + [-1]:
                if r >= 0 and (not chunk or tok + isl[r] <= chunk_tokens):
                    chunk.append(r)
                    tok += int(isl[r])
                    continue
                if chunk:
                    idx = len(kind)
                    for lst, val in ((kind, 1), (nn, len(chunk)), (ctx, 0.0), (toks, tok), (emit, len(chunk))):
                        lst.append(val)
                    c = np.asarray(chunk)
                    first[c] = idx
                    produced[c] = 1.0
                    one = c[osl[c] <= 1]
                    done[one] = idx
                    running = np.concatenate([running, c[osl[c] > 1]])
                    if one.size:
                        k = min(one.size, P - next_req)
                        waiting.extend(range(next_req, next_req + k))
                        next_req += k
                if r >= 0:
                    chunk, tok = [r], int(isl[r])
            continue
        idx = len(kind)
        cur = produced[running]
        new = np.minimum(cur + accept_len, osl[running])
        for lst, val in ((kind, 0), (nn, running.size), (ctx, float(np.sum(isl[running] + cur))), (toks, 0),
                         (emit, float(np.sum(new - cur)))):
            lst.append(val)
        produced[running] = new
        fin = new >= osl[running] - 1e-9
        if fin.any():
            done[running[fin]] = idx
            running = running[~fin]
            k = min(int(fin.sum()), P - next_req)
            waiting.extend(range(next_req, next_req + k))
            next_req += k
    return ServingTrace(np.asarray(kind), np.asarray(nn), np.asarray(ctx), np.asarray(toks, dtype=float),
                        np.asarray(emit, dtype=float), first, done, osl)


@dataclass
class LinearRun:
    """A simulated benchmark whose times are linear in the fitted parameters.

    ``duration`` and ``mean_tpot`` are ``(const_us, features)``: the value is
    ``const_us + features @ params.vector()`` µs.
    """

    scenario: ServingScenario
    backend: str
    mtp: MTPConfig | None
    output_tokens: float
    duration: tuple[float, np.ndarray]
    mean_tpot: tuple[float, np.ndarray]
    iterations: int
    prefill_passes: int
    mean_batch: float

    def duration_s(self, params: FittedNumbers) -> float:
        c, f = self.duration
        return (c + float(f @ params.vector())) / 1e6

    def throughput(self, params: FittedNumbers) -> float:
        """Output throughput (tok/s): generated tokens / duration (bench_serving's definition)."""
        return self.output_tokens / self.duration_s(params)

    def tpot_ms(self, params: FittedNumbers) -> float:
        """Mean TPOT (ms): mean over requests with > 1 output token of (e2e - ttft) / (tokens - 1)."""
        c, f = self.mean_tpot
        return (c + float(f @ params.vector())) / 1e3


def _interp_rows(x: np.ndarray, knots: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of ``vals[k, ...]`` given at ``knots[k]`` to ``x`` (end segments
    extrapolated); ``vals`` ``[K, ...]`` -> ``[len(x), ...]``."""
    idx = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    w = (x - knots[idx]) / (knots[idx + 1] - knots[idx])
    w = w.reshape((-1,) + (1,) * (vals.ndim - 1))
    return vals[idx] + (vals[idx + 1] - vals[idx]) * w


def _cost(sm: LinearStep, backend: str, mtp: MTPConfig | None, tr: ServingTrace) -> tuple[np.ndarray, np.ndarray]:
    """Per-event fixed time (µs) ``[E]`` and features ``[E, F]`` for a trace. Iterations are evaluated
    at a few context sizes per batch size (``sm.kv_knots`` tokens per request, else 0 and 1e6 tokens
    in all: a step linear in the context) and interpolated piecewise-linearly in the summed context."""
    E = tr.kind.size
    C = np.zeros(E)
    F = np.zeros((E, len(sm.params.vector())))
    it = tr.kind == 0
    kv_knots = sm.kv_knots
    for n in np.unique(tr.n[it]):
        sel = it & (tr.n == n)
        ctx_knots = np.array([0.0, 1e6]) if kv_knots is None else \
            np.unique(np.concatenate([[0.0], float(n) * np.asarray(kv_knots, float)]))
        if ctx_knots.size < 2:
            ctx_knots = np.array([0.0, float(n) * 1024.0])
        evals = [sm.iteration_cost(backend, float(n), float(c), mtp) for c in ctx_knots]
        x = tr.ctx[sel]
        C[sel] = _interp_rows(x, ctx_knots, np.array([c for c, _ in evals]))
        F[sel] = _interp_rows(x, ctx_knots, np.array([f for _, f in evals]))
    cache: dict[tuple[int, float], tuple[float, np.ndarray]] = {}
    for i in np.flatnonzero(tr.kind == 1):
        key = (int(tr.n[i]), float(tr.tokens[i]))
        if key not in cache:
            cache[key] = sm.prefill_cost(backend, *key, mtp)
        C[i], F[i] = cache[key]
    return C, F


def simulate_serving(sm: LinearStep, backend: str, scenario: ServingScenario,
                     mtp: MTPConfig | None = None) -> LinearRun:
    """Replay a bench_serving run through the step model ``sm`` (:class:`LinearStep`).

    The acceptance enters as its mean (``mtp.accept_len`` tokens per request per step, capped at
    each request's length). Returns a :class:`LinearRun`; evaluate it with
    ``run.throughput(params)`` (tok/s) and ``run.tpot_ms(params)`` (ms).
    """
    if not isinstance(scenario, ServingScenario):
        raise ValueError(f"scenario must be a ServingScenario, got {type(scenario).__name__}")
    if mtp is not None and not isinstance(mtp, MTPConfig):
        raise ValueError(f"mtp must be an MTPConfig or None, got {type(mtp).__name__}")
    sm.check_backend(backend)
    a = mtp.accept_len if mtp is not None else 1.0
    tr = _trace(scenario, float(a), int(sm.chunked_prefill_tokens))
    C, F = _cost(sm, backend, mtp, tr)
    cumC, cumF = np.cumsum(C), np.cumsum(F, axis=0)
    multi = tr.osl > 1
    if multi.any():
        fi, di = tr.first[multi], tr.done[multi]
        denom = (tr.osl[multi] - 1).astype(float)
        tpot = (float(np.mean((cumC[di] - cumC[fi]) / denom)),
                np.mean((cumF[di] - cumF[fi]) / denom[:, None], axis=0))
    else:
        tpot = (float("nan"), np.full(len(sm.params.vector()), np.nan))
    it = tr.kind == 0
    return LinearRun(scenario, backend, mtp, float(tr.osl.sum()), (float(cumC[-1]), cumF[-1].copy()), tpot,
                     int(it.sum()), int((~it).sum()), float(tr.n[it].mean()) if it.any() else 0.0)


def project(sm: LinearStep, *, backends=SEED_BACKENDS, concurrencies=(1, 4, 16, 32, 64, 128),
            osls=(512,), isl: int = 32, mtp_setups: dict | None = None, num_prompts: int | None = None,
            max_running: int = 128, range_ratio: float = 0.0) -> pd.DataFrame:
    """TPOT and output throughput from the model over backends x concurrency x OSL x MTP setups.

    ``mtp_setups`` maps a label (column ``setup``) to an :class:`MTPConfig` or None (default:
    ``{"no-MTP": None, "MTP": SEED_MTP}``).
    ``concurrency=None`` in ``concurrencies`` means all requests at t=0 (the seed's OSL sweep).
    ``num_prompts`` defaults to ``max(256, concurrency)`` (256: the seed's count). Rows are ``status = "projected"``;
    ``attrs["provenance"]`` holds the footnote text.
    """
    setups = {"no-MTP": None, "MTP": SEED_MTP} if mtp_setups is None else mtp_setups
    rows = []
    for b in backends:
        for label_, sp in setups.items():
            for osl in osls:
                for c in concurrencies:
                    npr = num_prompts or max(256, c or 0)
                    sc = ServingScenario(isl=isl, osl=int(osl), num_prompts=npr, concurrency=c,
                                         max_running=max_running, range_ratio=range_ratio)
                    run = simulate_serving(sm, b, sc, sp)
                    rows.append({"backend": b, "setup": label_, "mtp": sp is not None, "concurrency": c,
                                 "effective_concurrency": sc.effective_concurrency, "isl": isl, "osl": int(osl),
                                 "num_prompts": npr, "accept_len": sp.accept_len if sp else 1.0,
                                 "mean_tpot_ms": run.tpot_ms(sm.params),
                                 "output_throughput_tok_s": run.throughput(sm.params),
                                 "mean_batch": run.mean_batch, "status": "projected", "gpu": sm.gpu.name})
    out = pd.DataFrame(rows)
    out.attrs["provenance"] = sm.provenance(isl=isl, num_prompts=num_prompts, max_running=max_running)
    return out
