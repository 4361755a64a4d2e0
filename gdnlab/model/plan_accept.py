"""The planner's acceptance: one :class:`~gdnlab.acceptance_curves.AcceptanceCurve` (accept length
per T) from exactly one source, refusing contradictory input.

Sources (:func:`resolve_acceptance`):

* a curve shipped with gdnlab, by name (:func:`gdnlab.acceptance_curves.reported_curves`, status
  ``reported``), or a user's file (``draft_tokens, accept_len``; optional ``curve``,
  ``context_bucket``, ``status``, ``source``);
* an engine's own log or metrics: vLLM's ``SpecDecoding metrics`` lines or ``/metrics`` counters
  (per-position rates: a whole curve), SGLang's ``accept len`` lines (one point at the server's T,
  which the log does not state: it must be given);
* one or more points ``accept_len`` at ``draft_tokens`` (a single point is the constant-rate chain);
* none of these: :data:`DEFAULT_CURVE` when shipped, else the seed's reported accept length at T = 4.

Several curves (one per context-length bucket) are narrowed to the one whose bucket holds the
context per request (:func:`select_bucket`). Accept lengths are tokens kept per verify step (the
bonus token included), T tokens verified per step.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..acceptance_curves import (
    AcceptanceCurve,
    parse_sglang_log,
    parse_vllm_log,
    parse_vllm_prometheus,
    read_curve_file,
    reported_curves,
)
from ..errors import DataError, InputError

__all__ = ["DEFAULT_CURVE", "ENGINES", "point_curve", "select_bucket", "curve_from_log", "resolve_acceptance",
           "as_curve"]

#: the shipped reported curve the planner uses when given no acceptance (Qwen3.5-397B-A17B MTP)
DEFAULT_CURVE = "inferencex-golden-thinking-on"
ENGINES = ("sglang", "vllm")


def point_curve(accept_len: Sequence[float] | float, draft_tokens: Sequence[int] | int, *,
                source: str = "--accept-len", status: str = "measured") -> AcceptanceCurve:
    """A curve from points ``accept_len[i]`` at T = ``draft_tokens[i]``. Refused: different list
    lengths, a T given twice, T < 2 (T = 1 verifies no draft), an accept length outside [1, T]."""
    a = [accept_len] if isinstance(accept_len, (int, float)) else list(accept_len)
    t = [draft_tokens] if isinstance(draft_tokens, int) else list(draft_tokens)
    if len(a) != len(t):
        raise InputError(f"{len(a)} accept lengths for {len(t)} draft-token counts: give one accept length per T")
    pts: dict[int, float] = {}
    for ai, ti in zip(a, t):
        ti = int(ti)
        if ti in pts:
            raise InputError(f"T={ti} is given twice (accept lengths {pts[ti]:g} and {float(ai):g}); give one per T")
        if ti < 2:
            raise InputError(f"an accept length at T={ti}: a verify step of T=1 keeps its one token (nothing to "
                             "accept); give the accept length at the T it was measured, T >= 2")
        if not (math.isfinite(float(ai)) and 1.0 <= float(ai) <= ti):
            raise InputError(f"accept length {float(ai):g} at T={ti} is outside [1, {ti}] (tokens kept per verify "
                             "step, the bonus token included)")
        pts[ti] = float(ai)
    return AcceptanceCurve(pts, name="point" if len(pts) == 1 else "points", source=source, status=status)


def as_curve(accept: AcceptanceCurve | Mapping[int, float] | float, accept_T: int = 4) -> AcceptanceCurve:
    """A curve from a curve, a ``{T: accept length}`` table or one accept length at ``accept_T``."""
    if isinstance(accept, AcceptanceCurve):
        return accept
    if isinstance(accept, Mapping):
        return point_curve(list(accept.values()), [int(t) for t in accept], source="accept-length table")
    return point_curve(float(accept), int(accept_T), source=f"accept length at T={int(accept_T)}")


_BUCKET = re.compile(r"@ctx(<=|>)?(\d+(?:\.\d+)?)$")


def _interval(name: str) -> tuple[float, float] | None:
    """``(lo, hi]`` context tokens of a bucketed curve's name, ``None`` without a bucket."""
    m = _BUCKET.search(name)
    if not m:
        return None
    edge = float(m.group(2))
    return (edge, math.inf) if m.group(1) == ">" else (-math.inf, edge)


def select_bucket(curves: Mapping[str, AcceptanceCurve], ctx_tokens: float, name: str | None = None
                  ) -> AcceptanceCurve:
    """The curve named ``name`` (its buckets narrowed by ``ctx_tokens``), or the only curve. Bucketed
    names end in ``@ctx<=E`` / ``@ctx>E`` (engine logs) or ``@ctxE`` (a file's ``context_bucket`` E,
    read as the bucket's upper edge in tokens): the smallest bucket holding ``ctx_tokens`` wins."""
    pool = {k: v for k, v in curves.items() if name is None or k == name or k.split("@ctx")[0] == name}
    if not pool:
        raise InputError(f"no acceptance curve named {name!r}; have {', '.join(sorted(curves))}")
    bases = sorted({k.split("@ctx")[0] for k in pool})
    if len(bases) > 1:
        raise InputError(f"several acceptance curves ({', '.join(bases)}): name one (--accept-curve-name)")
    if len(pool) == 1:
        return next(iter(pool.values()))
    spans = {k: _interval(k) for k in pool}
    if any(v is None for v in spans.values()):
        raise InputError(f"curves {', '.join(sorted(pool))} mix bucketed and unbucketed names; name one")
    holding = [(hi - (lo if lo > -math.inf else 0), k) for k, (lo, hi) in spans.items() if lo < ctx_tokens <= hi]
    if not holding:                          # a file's upper edges: the smallest edge >= ctx
        edges = sorted((hi, k) for k, (lo, hi) in spans.items() if hi >= ctx_tokens)
        if not edges:
            raise InputError(f"no context bucket of {bases[0]} holds {ctx_tokens:g} tokens per request "
                             f"(buckets: {', '.join(sorted(pool))})")
        return pool[edges[0][1]]
    return pool[min(holding)[1]]


def curve_from_log(path: str | Path, engine: str, *, draft_tokens: int | None = None,
                   context_buckets: Iterable[int] | None = None, ctx_tokens: float = 1024.0) -> AcceptanceCurve:
    """A curve from ``engine``'s own log or metrics file. SGLang logs one accept length per interval
    at the server's T: ``draft_tokens`` (its ``--speculative-num-draft-tokens``) is required. vLLM
    logs per-position rates (T = drafts + 1); a ``draft_tokens`` that disagrees with them is refused."""
    eng = str(engine).strip().lower()
    if eng not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if eng == "sglang":
        if draft_tokens is None:
            raise InputError("SGLang's log states the accept length, not the T it was measured at: give the "
                             "server's --speculative-num-draft-tokens (--accept-log-draft-tokens T)")
        curves = parse_sglang_log(Path(path), int(draft_tokens), context_buckets=context_buckets)
        return select_bucket(curves, ctx_tokens)
    if context_buckets:
        raise InputError("vLLM's spec-decoding metrics carry no context length: context buckets apply to SGLang logs")
    try:
        curve = parse_vllm_log(Path(path))
    except DataError:
        curve = parse_vllm_prometheus(Path(path))
    if draft_tokens is not None and int(draft_tokens) != curve.max_measured:
        raise InputError(f"the vLLM log has per-position rates for T = 2..{curve.max_measured} "
                         f"(num_speculative_tokens {curve.max_measured - 1}), not T={int(draft_tokens)}")
    return curve


def _default() -> tuple[AcceptanceCurve, str]:
    from ..seed import SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS, SEED_SOURCE

    try:
        shipped = reported_curves()
    except (OSError, DataError) as exc:
        shipped, why = {}, f"no shipped curve table ({type(exc).__name__})"
    else:
        why = f"no shipped curve named {DEFAULT_CURVE}"
    if DEFAULT_CURVE in shipped:
        return shipped[DEFAULT_CURVE], f"default: the shipped curve {DEFAULT_CURVE}"
    a = sum(SEED_ACCEPT_LEN) / 2
    c = AcceptanceCurve({SEED_DRAFT_TOKENS: a}, name="seed", status="reported",
                        source=f"{SEED_SOURCE}: accept length {SEED_ACCEPT_LEN[0]}-{SEED_ACCEPT_LEN[1]} at T=4")
    return c, (f"default: the seed's reported accept length {a:.3f} at T={SEED_DRAFT_TOKENS} ({why}); other T "
               "follow one constant rate (a chain), which overstates long drafts: give a curve")


def resolve_acceptance(*, accept_len: Sequence[float] | None = None, accept_T: Sequence[int] | None = None,
                       curve: str | None = None, curve_name: str | None = None, log: str | None = None,
                       engine: str | None = None, log_T: int | None = None,
                       context_buckets: Iterable[int] | None = None, ctx_tokens: float = 1024.0
                       ) -> tuple[AcceptanceCurve, str]:
    """``(curve, how)`` from exactly one source (see the module docstring); ``how`` says which."""
    given = [n for n, v in (("--accept-len", accept_len), ("--accept-curve", curve), ("--accept-from-log", log))
             if v is not None]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)} both give the acceptance: give one")
    if accept_T is not None and accept_len is None:
        raise InputError("--accept-len-draft-tokens says at which T --accept-len was measured: give --accept-len")
    if (engine is not None or log_T is not None or context_buckets) and log is None:
        raise InputError("--engine, --accept-log-draft-tokens and --context-buckets describe --accept-from-log: "
                         "give the log")
    if curve_name is not None and curve is None:
        curve = curve_name
    if accept_len is not None:
        c = point_curve(accept_len, accept_T if accept_T is not None else [4] * len(accept_len))
        return c, f"given: {', '.join(f'{a:g} at T={t}' for t, a in c.points.items())}"
    if log is not None:
        if engine is None:
            raise InputError("--accept-from-log needs --engine sglang|vllm (the log's format)")
        return curve_from_log(log, engine, draft_tokens=log_T, context_buckets=context_buckets,
                              ctx_tokens=ctx_tokens), f"from the {engine} log {log}"
    if curve is not None:
        p = Path(curve)
        if p.exists() or p.suffix in (".csv", ".parquet"):
            return select_bucket(read_curve_file(p), ctx_tokens, curve_name), f"from the file {p}"
        try:
            shipped = reported_curves()
        except (OSError, DataError) as exc:
            raise InputError(f"--accept-curve {curve}: no such file, and no shipped curve table to name it from "
                             f"({exc})") from None
        return select_bucket(shipped, ctx_tokens, curve_name or curve), f"the shipped curve {curve}"
    return _default()
