"""Pick the verify setup per batch size: strategy, draft tokens T, state dtype and GDN backend.

:func:`plan_candidates` evaluates every option a :class:`~gdnlab.model.composed.ComposedStep` can
price (plain decode, and each measured verify strategy x T x state dtype x backend) at each batch
size: step time, tokens per step (the accept length at that T), TPOT, throughput and the GDN share,
each with its provenance. :func:`best_plan` keeps the fastest (lowest TPOT) per batch and adds the
engine settings that select it (:func:`engine_settings`, each option with its source).

Accept length per T: a measured table ``{T: accept_len}``, or one accept length at ``T0`` carried
to other T through the one-rate chain model (:func:`gdnlab.acceptance.accept_len_to_rate`,
:func:`~gdnlab.acceptance.rate_to_accept_len`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..acceptance import accept_len_to_rate, rate_to_accept_len
from ..errors import InputError
from ..shapes import dtype_name
from .composed import ComposedStep
from .mtp import MTPConfig

__all__ = ["accept_lengths", "plan_candidates", "best_plan", "engine_settings", "ENGINE_SOURCES", "read_accept_table",
           "tokens_per_step_table", "speedup_table", "breakdown_by_batch"]

#: where each engine option is defined (public sources)
ENGINE_SOURCES = {
    "sglang_spec": "SGLang docs, advanced_features/speculative_decoding (speculative_num_steps, "
                   "speculative_eagle_topk, speculative_num_draft_tokens); sgl-project/sglang "
                   "python/sglang/srt/server_args.py",
    "sglang_ssm_dtype": "sgl-project/sglang python/sglang/srt/server_args.py --mamba-ssm-dtype (the seed, "
                        "SGLang PR #23273, runs --mamba-ssm-dtype bfloat16)",
    "sglang_verify_backend": "sgl-project/sglang python/sglang/srt/server_args.py --linear-attn-verify-backend "
                             "(SGLang #36611: H200 bf16 recipes pin triton)",
    "sglang_cache_mode": "sgl-project/sglang python/sglang/srt/server_args.py --gdn-mtp-cache-mode "
                         "(full: PR #23273/#26830; none = recompute: #26520, #29451, #30967)",
    "sglang_replayssm": "sgl-project/sglang PR #28695 (--enable-linear-replayssm-spec)",
    "vllm_spec": "vllm-project/vllm vllm/config/speculative.py SpeculativeConfig.num_speculative_tokens "
                 "(method 'mtp' / 'qwen3_next_mtp')",
    "vllm_ssm_dtype": "vllm-project/vllm vllm/config/cache.py CacheConfig.mamba_ssm_cache_dtype "
                      "(--mamba-ssm-cache-dtype)",
}


def accept_lengths(accept: float | Mapping[int, float], draft_tokens: Iterable[int], *, accept_T: int = 4
                   ) -> dict[int, float]:
    """``{T: accept length}``: from a measured table (only its T are kept, each in ``[1, T]``) or from
    one accept length measured at ``accept_T`` (chain model)."""
    Ts = sorted({int(t) for t in draft_tokens})
    if any(t < 2 for t in Ts):
        raise InputError(f"draft tokens must be >= 2 for speculation, got {Ts}")
    if isinstance(accept, Mapping):
        out = {}
        for t, a in accept.items():
            t, a = int(t), float(a)
            if not 1.0 <= a <= t:
                raise InputError(f"accept length {a} at T={t} is outside [1, {t}]")
            if t >= 2:
                out[t] = a
        if not out:
            raise InputError("the accept-length table has no row with T >= 2")
        return out
    try:
        rate = accept_len_to_rate(float(accept), int(accept_T))
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    return {t: rate_to_accept_len(rate, t) for t in Ts}


def _variant(step: ComposedStep, state_dtype) -> ComposedStep:
    """``step`` with another GDN state dtype (GDN kernels from its sweep)."""
    return ComposedStep(step.times, step.model, step.params, gdn=step.gdn, state_dtype=state_dtype,
                        gdn_scale=step.gdn_scale, allreduce_latency_us=step.allreduce_latency_us,
                        busbw_gbps=step.busbw_gbps)


def _options(step: ComposedStep, Ts: list[int], strategies, backends, state_dtypes
             ) -> tuple[list[tuple], list[str]]:
    """``(backend, strategy, T, state_dtype)`` options and a note on where GDN times come from, which
    T the sweep measured, and which strategy rows were left out (and why)."""
    opts: list[tuple] = []
    if step.gdn is None:
        be = "triton"
        strat = step.times.strategies() or ["full_cache"]
        sd = dtype_name(step.times.rows.get("state_dtype", pd.Series(["bfloat16"])).iloc[0])
        opts = [(be, "decode", 1, sd)] + [(be, s, t, sd) for s in strat for t in Ts]
        return opts, ["GDN kernels from the components (one backend, one state dtype); no sweep given"]
    o = step.gdn.options()
    for _, r in o.iterrows():
        if backends and r["backend"] not in backends or state_dtypes and r["state_dtype"] not in state_dtypes:
            continue
        if r["mode"] == "decode":
            opts.append((r["backend"], "decode", 1, r["state_dtype"]))
        elif int(r["draft_tokens"]) in Ts and (not strategies or r["strategy"] in strategies):
            opts.append((r["backend"], r["strategy"], int(r["draft_tokens"]), r["state_dtype"]))
    has_step = o[o["has_step_us"]]
    parts = ["GDN verify + commit from the sweep's strategy step rows (step_us)" if not has_step.empty else
             "the sweep has no strategy step rows: full_cache verify calls from the sweep plus the components' "
             "commit; other strategies are not priced"]
    step_T = sorted({int(t) for t in has_step["draft_tokens"]})
    call_T = sorted({int(t) for t in o.loc[(o["mode"] == "verify") & ~o["has_step_us"], "draft_tokens"]})
    measured = sorted(set(step_T) | set(call_T))
    skipped = [t for t in Ts if t not in measured]
    parts.append(f"T considered only where the sweep measured it: strategy step rows at T={_tlist(step_T)}"
                 + (f", full_cache verify calls at T={_tlist(call_T)}" if call_T else "")
                 + (f"; T={_tlist(skipped)} not priced (not measured)" if skipped else ""))
    ex = step.gdn.excluded
    if not ex.empty:
        why = ex["reason"].map(lambda r: "not run (unsupported)" if str(r).startswith("not run") else str(r))
        g = ex.assign(why=why).groupby("why")[["backend", "strategy", "state_dtype"]].apply(
            lambda d: ", ".join(sorted({f"{b}/{s}/{dtype_name(sd)}" for b, s, sd in d.itertuples(index=False)})))
        parts.append("strategy rows left out of the choice: " + "; ".join(f"{k}: {v}" for k, v in g.items()))
    unchecked = o[~o["checked"]]
    if not unchecked.empty:
        parts.append("unchecked (correctness check could not run; priced, flagged): " + ", ".join(
            f"{r.backend}/{r.strategy}/{r.state_dtype}" for r in unchecked.itertuples()))
    return opts, parts


def _tlist(ts) -> str:
    return ",".join(str(t) for t in ts) or "none"


def plan_candidates(step: ComposedStep, *, batches: Iterable[int], accept: float | Mapping[int, float],
                    accept_T: int = 4, draft_tokens: Iterable[int] = (2, 4, 8), ctx_per_request: float = 1024.0,
                    strategies: Iterable[str] | None = None, backends: Iterable[str] | None = None,
                    state_dtypes: Iterable[str] | None = None) -> pd.DataFrame:
    """Every priced option at every batch: ``batch, strategy, draft_tokens, state_dtype, backend,
    accept_len, step_us, tpot_ms, throughput_tok_s, gdn_share, speedup`` (over plain decode with the
    same backend and state dtype), ``check`` (``checked`` / ``unchecked``: whether the GDN rows priced
    passed their correctness check), ``provenance``. ``attrs["note"]`` says where GDN times come from,
    which T were priced and which sweep rows were left out (``attrs["notes"]``: the same as a list).
    Only T the sweep measured are priced."""
    Bs = sorted({int(b) for b in batches})
    if not Bs or Bs[0] < 1:
        raise InputError(f"batches must be positive integers, got {Bs}")
    al = accept_lengths(accept, draft_tokens, accept_T=accept_T)
    opts, note = _options(step, sorted(al), set(strategies or ()), set(backends or ()),
                          {dtype_name(s) for s in state_dtypes or ()})
    if not opts:
        raise InputError("no option to price: the filters leave no (backend, strategy, T, state dtype)")
    variants: dict = {}
    rows = []
    status = step.times.status
    for be, strat, T, sd in opts:
        st = variants.setdefault(sd, step if step.gdn is None else _variant(step, sd))
        for B in Bs:
            mtp = None if strat == "decode" else MTPConfig(draft_tokens=T, acceptance=al[T])
            try:
                t = st.step_us(be, B, ctx_per_request, mtp, strategy=strat if mtp else "full_cache")
                share = st.gdn_share(be, B, ctx_per_request, mtp, strategy=strat if mtp else "full_cache")
            except InputError as exc:
                rows.append({"batch": B, "strategy": strat, "draft_tokens": T, "state_dtype": sd, "backend": be,
                             "accept_len": np.nan, "step_us": np.nan, "note": str(exc)})
                continue
            a = mtp.accept_len if mtp else 1.0
            ok = step.gdn is None or strat == "decode" or step.gdn.checked(be, strat, T, sd)
            rows.append({"batch": B, "strategy": strat, "draft_tokens": T, "state_dtype": sd, "backend": be,
                         "accept_len": a, "step_us": t, "tpot_ms": t / a / 1e3, "throughput_tok_s": B * a / t * 1e6,
                         "gdn_share": share, "check": "checked" if ok else "unchecked", "note": ""})
    df = pd.DataFrame(rows)
    dec = df[df["strategy"] == "decode"].set_index(["batch", "backend", "state_dtype"])["tpot_ms"]
    df["speedup"] = [dec.get((r.batch, r.backend, r.state_dtype), np.nan) / r.tpot_ms
                     if r.strategy != "decode" else 1.0 for r in df.itertuples()]
    df["provenance"] = (f"{status} components ({step.gpu.name}) + projected all-reduce + fitted "
                        f"({step.params.short()})")
    Tm = step.times.draft_tokens
    if any(T not in (1, Tm) for _, _, T, _ in opts):
        note.append(f"non-GDN ops at T != {Tm} (the measured MTP T) are interpolated linearly in T between the "
                    f"decode and the T={Tm} rows (extrapolated beyond)")
    df.attrs["note"] = "; ".join(note)
    df.attrs["notes"] = note
    df.attrs["provenance"] = step.provenance(ctx_per_request=ctx_per_request)
    df.attrs["accept_lengths"] = al
    return df


def engine_settings(strategy: str, T: int, state_dtype: str, backend: str) -> dict[str, str]:
    """SGLang and vLLM options that select this setup (``"no switch"`` where an engine has none) and
    the sources of those options (:data:`ENGINE_SOURCES`)."""
    sd = dtype_name(state_dtype)
    sg = [f"--mamba-ssm-dtype {sd}"]
    vl = [f"--mamba-ssm-cache-dtype {sd}"]
    src = ["sglang_ssm_dtype", "vllm_ssm_dtype"]
    if strategy != "decode":
        sg.insert(0, f"--speculative-algorithm NEXTN --speculative-num-steps {T - 1} --speculative-eagle-topk 1 "
                     f"--speculative-num-draft-tokens {T}")
        vl.insert(0, f"--speculative-config '{{\"method\": \"mtp\", \"num_speculative_tokens\": {T - 1}}}'")
        src += ["sglang_spec", "vllm_spec"]
        sg.append(f"--linear-attn-verify-backend {backend}")
        src.append("sglang_verify_backend")
        if strategy == "full_cache":
            sg.append("--gdn-mtp-cache-mode full")
            vl.append("(no switch: vLLM's GDN spec path keeps per-token states, i.e. token_slots)")
            src.append("sglang_cache_mode")
        elif strategy in ("recompute", "recompute_fused"):
            sg.append("--gdn-mtp-cache-mode none")
            vl.append("(no documented switch)")
            src.append("sglang_cache_mode")
        elif strategy == "replay_ring":
            sg.append("--enable-linear-replayssm-spec")
            vl.append("(no documented switch)")
            src.append("sglang_replayssm")
        elif strategy == "token_slots":
            sg.append("(no switch: SGLang has no per-token-slot verify)")
            vl.append("(default GDN spec decoding)")
        else:
            sg.append(f"(no switch known for strategy {strategy!r})")
            vl.append(f"(no switch known for strategy {strategy!r})")
    return {"sglang": " ".join(sg), "vllm": " ".join(vl),
            "sources": "; ".join(ENGINE_SOURCES[k] for k in dict.fromkeys(src))}


def best_plan(candidates: pd.DataFrame, *, checked_only: bool = False) -> pd.DataFrame:
    """The lowest-TPOT option per batch with its engine settings (``sglang``, ``vllm``, ``sources``).
    ``checked_only``: choose among options whose GDN rows passed their correctness check only."""
    ok = candidates.dropna(subset=["tpot_ms"])
    if checked_only and "check" in ok:
        ok = ok[ok["check"] == "checked"]
    if ok.empty:
        raise InputError("no priced option" + (" that passed its correctness check" if checked_only else ""))
    best = ok.loc[ok.groupby("batch")["tpot_ms"].idxmin()].reset_index(drop=True)
    eng = [engine_settings(r.strategy, int(r.draft_tokens), r.state_dtype, r.backend) for r in best.itertuples()]
    best = pd.concat([best, pd.DataFrame(eng)], axis=1)
    best.attrs.update(candidates.attrs)
    return best


def read_accept_table(path) -> dict[int, float]:
    """A measured accept-length-vs-T table (CSV or parquet with columns ``draft_tokens``, ``accept_len``)."""
    from pathlib import Path

    from ..errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"accept-length table {p} is not a file")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable table is one DataError
        raise DataError(f"cannot read accept-length table {p}: {type(exc).__name__}: {exc}") from None
    if not {"draft_tokens", "accept_len"} <= set(df.columns):
        raise DataError(f"accept-length table {p} needs columns draft_tokens, accept_len; has {list(df.columns)}")
    return {int(t): float(a) for t, a in df.groupby("draft_tokens")["accept_len"].mean().items()}


def tokens_per_step_table(draft_tokens: Iterable[int] = (2, 3, 4, 6, 8), rates: Iterable[float] | None = None
                          ) -> pd.DataFrame:
    """Tokens per step (mean accept length) vs per-draft accept rate and T (chain model):
    ``draft_tokens, rate, accept_len``."""
    rs = np.linspace(0.0, 1.0, 21) if rates is None else np.asarray(list(rates), float)
    return pd.DataFrame([{"draft_tokens": int(t), "rate": float(r), "accept_len": rate_to_accept_len(float(r), int(t))}
                         for t in draft_tokens for r in rs])


def speedup_table(step: ComposedStep, *, batches: Iterable[int] = (1, 16, 64, 256),
                  draft_tokens: Iterable[int] = (2, 4, 8), strategies: Iterable[str] | None = None,
                  backend: str = "triton", ctx_per_request: float = 1024.0, points: int = 13) -> pd.DataFrame:
    """Speedup of speculation over plain decode vs accept length, per verify strategy, T and batch,
    and the break-even accept length: ``strategy, draft_tokens, batch, accept_len, speedup,
    break_even_accept_len, gdn_share`` (at that accept length)."""
    strategies = list(strategies or (step.gdn.options().query("mode == 'verify'")["strategy"].unique()
                                     if step.gdn is not None else step.times.strategies() or ["full_cache"]))
    rows = []
    for s in strategies:
        for T in draft_tokens:
            for B in batches:
                try:
                    be = step.break_even_accept_len(backend, B, ctx_per_request, int(T), strategy=s)
                except InputError:
                    continue
                for a in np.linspace(1.0, float(T), points):
                    mtp = MTPConfig(draft_tokens=int(T), acceptance=float(a))
                    rows.append({"strategy": s, "draft_tokens": int(T), "batch": int(B), "accept_len": float(a),
                                 "speedup": step.speedup(backend, B, ctx_per_request, float(a), int(T), strategy=s),
                                 "break_even_accept_len": be,
                                 "gdn_share": step.gdn_share(backend, B, ctx_per_request, mtp, strategy=s)})
    df = pd.DataFrame(rows)
    df["backend"] = backend
    df.attrs["provenance"] = step.provenance(backend=backend, ctx_per_request=ctx_per_request)
    return df


def breakdown_by_batch(step: ComposedStep, *, batches: Iterable[int] = (1, 4, 16, 64, 128, 256),
                       backend: str = "triton", ctx_per_request: float = 1024.0, mtp: MTPConfig | None = None,
                       strategy: str = "full_cache") -> pd.DataFrame:
    """:meth:`ComposedStep.breakdown` stacked over batches (``part, time_us, share, provenance, batch``)."""
    df = pd.concat([step.breakdown(backend, int(b), ctx_per_request, mtp, strategy) for b in batches],
                   ignore_index=True)
    df.attrs["provenance"] = step.provenance(backend=backend, ctx_per_request=ctx_per_request,
                                             mtp=f"T={mtp.draft_tokens}, accept {mtp.accept_len:.2f}" if mtp else "off")
    return df
