"""Acceptance models for speculative decoding (MTP / NEXTN / EAGLE, topk = 1) and the one sampler.

Glossary (the one SGLang's "accept length" and the seed's "acc len" use)
------------------------------------------------------------------------
* ``T`` = **draft tokens** = verify positions = ``--speculative-num-draft-tokens`` (=
  ``--speculative-num-steps`` + 1 for topk 1). The seed runs ``--speculative-num-steps 3
  --speculative-num-draft-tokens 4``: the draft model proposes d1, d2, d3 (3 draft steps) and the
  target verifies ``T = 4`` positions ``[last committed token, d1, d2, d3]`` in one forward.
* ``accepted`` (what :func:`sample_accepted` returns, 1..T) = **verify positions kept** = SGLang's
  ``accept_length`` = accepted drafts + 1 (the bonus token the target emits at the first rejected,
  or after the last, position). It is also the number of tokens emitted per step, and gdnlab's
  commit contract keeps ``pool[idx] = intermediate[i, accepted - 1]`` (SGLang:
  ``last_correct_step_indices = accept_lens - 1``).
* **accept length** = the mean of ``accepted``, in ``[1, T]``: a per-draft acceptance rate of 0
  gives 1 token per step (plain decode, paid at verify cost), a rate of 1 gives ``T`` tokens per
  step. The seed's "acc len: 3.13-3.22" with T = 4 means 2.13-2.22 of 3 drafts kept per step.

Models (all give ``pmf(T)`` = P(accepted = k) for k = 1..T, and ``mean(T)``):

* :class:`FixedMean` — only a mean accept length is known; sampled as the two-point distribution
  on ``floor(m), ceil(m)`` with that mean (the least-variance integer distribution).
* :class:`ChainAcceptance` — per-position conditional probabilities ``p_j`` = P(draft j accepted |
  drafts 1..j-1 accepted) (a draft after a rejection is never accepted: the chain).
  ``E[accepted] = 1 + sum_{j=1}^{T-1} prod_{i<=j} p_i``; with one rate ``p``,
  ``E = (1 - p^T) / (1 - p)`` (``= T`` at ``p = 1``).
* :class:`EmpiricalAcceptance` — a histogram of observed accept lengths (counts for 1..K); for
  ``T < K`` mass above ``T`` is clipped to ``T`` (the engine cannot keep more than T positions).

:func:`rate_to_accept_len` / :func:`accept_len_to_rate` convert between a per-draft rate and the
accept length (the inverse by bisection: the mean is strictly increasing in the rate).
:func:`sample_accepted` is the one sampler of accepted lengths (the decode-loop workload and the
models draw from it). The seed's setting (T = 4, accept length 3.13-3.22) lives in
:mod:`gdnlab.seed`; its end-to-end check in :mod:`gdnlab.model`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["AcceptanceModel", "FixedMean", "ChainAcceptance", "EmpiricalAcceptance", "as_model",
           "rate_to_accept_len", "accept_len_to_rate", "chain_pmf", "sample_accepted", "tokens_per_step"]


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or int(T) < 1:
        raise ValueError(f"T (draft tokens, verify positions) must be an integer >= 1, got {T!r}")
    return int(T)


def _float(name: str, v) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None


def _check_prob(name: str, p: float) -> float:
    p = _float(name, p)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return p


def chain_pmf(probs: Sequence[float], T: int) -> np.ndarray:
    """P(accepted = k), k = 1..T, for per-position conditional acceptance ``probs`` (p_1..p_{T-1};
    a shorter list repeats its last value, a longer one is cut; one number = one rate for every
    position). Returns float64 ``[T]`` summing to 1."""
    T = _check_T(T)
    if isinstance(probs, (int, float, np.integer, np.floating)) and not isinstance(probs, bool):
        probs = [probs]
    ps = [_check_prob("acceptance probability", p) for p in probs]
    if not ps:
        raise ValueError("probs must hold at least one probability")
    ps = (ps + [ps[-1]] * T)[: T - 1]
    surv = np.ones(T)  # surv[k-1] = P(accepted >= k)
    for j, p in enumerate(ps, start=1):
        surv[j] = surv[j - 1] * p
    pmf = surv - np.append(surv[1:], 0.0)
    return np.clip(pmf, 0.0, None)


class AcceptanceModel:
    """Base class: a distribution of ``accepted`` (1..T) for each T."""

    def pmf(self, T: int) -> np.ndarray:
        """P(accepted = k) for k = 1..T (float64 array of length T)."""
        raise NotImplementedError

    def mean(self, T: int) -> float:
        """Expected accepted length (= tokens emitted per verify step) for T verify positions."""
        p = self.pmf(T)
        return float(np.dot(np.arange(1, len(p) + 1), p))


@dataclass(frozen=True)
class FixedMean(AcceptanceModel):
    """A known mean accept length ``value`` (clipped to ``[1, T]``); sampled on floor/ceil."""

    value: float

    def __post_init__(self) -> None:
        v = _float("FixedMean.value (mean accept length)", self.value)
        if math.isnan(v) or v < 1.0:
            raise ValueError(f"FixedMean.value (mean accept length) must be >= 1, got {self.value!r}")

    def pmf(self, T: int) -> np.ndarray:
        T = _check_T(T)
        m = min(float(self.value), float(T))
        lo = int(math.floor(m))
        frac = m - lo
        p = np.zeros(T)
        p[lo - 1] = 1.0 - frac
        if frac > 0:
            p[lo] = frac
        return p


@dataclass(frozen=True)
class ChainAcceptance(AcceptanceModel):
    """Per-position conditional acceptance probabilities (float: one rate for every position)."""

    probs: float | tuple[float, ...]

    def __post_init__(self) -> None:
        ps = (self.probs,) if isinstance(self.probs, (int, float)) else tuple(self.probs)
        if not ps:
            raise ValueError("ChainAcceptance.probs must hold at least one probability")
        object.__setattr__(self, "probs", tuple(_check_prob("ChainAcceptance.probs", p) for p in ps))

    @classmethod
    def from_accept_len(cls, accept_len: float, T: int) -> ChainAcceptance:
        """The one-rate chain whose mean accept length at ``T`` positions is ``accept_len``."""
        return cls(accept_len_to_rate(accept_len, T))

    def pmf(self, T: int) -> np.ndarray:
        return chain_pmf(self.probs, T)


@dataclass(frozen=True)
class EmpiricalAcceptance(AcceptanceModel):
    """A histogram of accept lengths: ``counts[k-1]`` observations of ``accepted = k``."""

    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        c = np.asarray(self.counts, dtype=float)
        if c.ndim != 1 or c.size == 0 or (c < 0).any() or not np.isfinite(c).all() or c.sum() <= 0:
            raise ValueError(f"EmpiricalAcceptance.counts must be a non-empty 1-D list of finite counts >= 0 "
                             f"with a positive sum, got {self.counts!r}")
        object.__setattr__(self, "counts", tuple(float(x) for x in c))

    @classmethod
    def from_samples(cls, accepted: Sequence[int] | torch.Tensor) -> EmpiricalAcceptance:
        """Histogram of observed accept lengths (integers >= 1)."""
        a = np.asarray(accepted.cpu() if isinstance(accepted, torch.Tensor) else accepted).astype(int).ravel()
        if a.size == 0 or a.min() < 1:
            raise ValueError("accepted samples must be a non-empty list of integers >= 1")
        return cls(tuple(np.bincount(a - 1).astype(float)))

    def pmf(self, T: int) -> np.ndarray:
        T = _check_T(T)
        c = np.asarray(self.counts)
        p = np.zeros(T)
        k = min(T, c.size)
        p[:k] = c[:k]
        p[T - 1] += c[T:].sum()  # lengths beyond T are clipped to T
        return p / p.sum()


def as_model(model: AcceptanceModel | float) -> AcceptanceModel:
    """A model, or a number read as a fixed mean accept length (:class:`FixedMean`)."""
    if isinstance(model, AcceptanceModel):
        return model
    if isinstance(model, (int, float, np.floating, np.integer)) and not isinstance(model, bool):
        return FixedMean(float(model))
    raise ValueError(f"accept_len_or_model must be an AcceptanceModel or a mean accept length (number), "
                     f"got {model!r}")


def rate_to_accept_len(rate: float, T: int) -> float:
    """Mean accept length (SGLang convention, 1..T) for a per-draft acceptance rate under the chain
    model: ``(1 - rate^T) / (1 - rate)``; 0 -> 1, 1 -> T."""
    T = _check_T(T)
    p = _check_prob("rate", rate)
    if p == 1.0:
        return float(T)
    return float((1.0 - p**T) / (1.0 - p))


def accept_len_to_rate(accept_len: float, T: int, *, tol: float = 1e-12) -> float:
    """Inverse of :func:`rate_to_accept_len` by bisection; ``accept_len`` must lie in ``[1, T]``."""
    T = _check_T(T)
    a = _float("accept_len", accept_len)
    if math.isnan(a) or not 1.0 <= a <= T:
        raise ValueError(f"accept_len must lie in [1, T={T}] (1 = no draft accepted, T = all), got {accept_len!r}")
    if T == 1 or a == 1.0:
        return 0.0
    if a == T:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if rate_to_accept_len(mid, T) < a:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def tokens_per_step(model: AcceptanceModel | float, T: int) -> float:
    """Expected tokens emitted per verify step (= mean accepted length) for ``T`` positions."""
    return as_model(model).mean(_check_T(T))


def sample_accepted(batch: int, T: int, accept_len_or_model: AcceptanceModel | float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``accepted`` per request: ``int32[batch]`` with values in ``1..T``.

    Args:
        batch: requests (``B`` >= 0).
        T: draft tokens (verify positions, >= 1).
        accept_len_or_model: an :class:`AcceptanceModel`, or a number read as a mean accept length
            (:class:`FixedMean`; a per-draft rate ``p`` is ``ChainAcceptance(p)``).
        generator: a seeded ``torch.Generator`` makes the draw reproducible; the tensor lives on its
            device (CPU without one).

    ``accepted[i]`` is the number of verify positions kept (SGLang accept_length = accepted drafts
    + 1; int32 like SGLang's ``accept_length`` and gdnlab's pool indices); a decode-loop workload
    commits ``pool[idx] = intermediate[i, accepted[i] - 1]``. Draws by inverse CDF: one uniform per
    request, ``searchsorted`` into the model's cumulative ``pmf(T)``.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or int(batch) < 0:
        raise ValueError(f"batch must be an integer >= 0, got {batch!r}")
    T = _check_T(T)
    pmf = as_model(accept_len_or_model).pmf(T)
    device = generator.device if generator is not None else torch.device("cpu")
    if int(batch) == 0:
        return torch.empty(0, dtype=torch.int32, device=device)
    cdf = torch.as_tensor(np.cumsum(pmf), dtype=torch.float64, device=device)
    u = torch.rand(int(batch), generator=generator, dtype=torch.float64, device=device) * cdf[-1]
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=T - 1)
    return (idx + 1).to(torch.int32)
