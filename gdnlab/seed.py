"""The seed's reported numbers (SGLang PR #23273) as tidy DataFrames, for plotting beside our own.

Origin of the data: ``gdnlab/data/seed_results.csv`` (sha256 :data:`SEED_CSV_SHA256`) transcribes
the tables in the text of SGLang PR #23273, "[NVIDIA] [GDN] Enable FlashInfer MTP verify on SM100+
(Blackwell)" (sgl-project/sglang, merged 2026-06-02 as 0574d2b), one row per reported number. It
ships inside the package, so an installed gdnlab reads it without a checkout.

What the PR measured (its own words, summarised):

* ``osl_sweep`` — GB200, Qwen3.5-397B-A17B-NVFP4, TP=4, ``--max-running-requests 128``,
  ``--mamba-ssm-dtype bfloat16``, ``--attention-backend trtllm_mha``, NEXTN (MTP) with
  ``--speculative-num-steps 3 --speculative-num-draft-tokens 4`` (topk 1), bench_serving random
  dataset ISL 32, OSL 1024/2048/4096, ``--num-prompts 256 --request-rate inf``; acceptance length
  3.13-3.22; metric output throughput (tok/s). **256 prompts against 128 running slots**: the
  engine never runs more than 128 requests, the rest wait in its queue, so the effective decode
  concurrency is <= 128 (``effective_concurrency`` column).
* ``tpot_concurrency`` — mean TPOT (ms per output token) vs client concurrency, ISL 32, OSL 512,
  MTP on, *before* flashinfer#3147 and the ``intermediate_states_buffer[:batch_size]`` slice.
  Concurrency 256 exceeds ``--max-running-requests 128``: the extra requests queue (TPOT excludes
  queueing, TTFT includes it), so its effective concurrency is 128.
* ``tpot_concurrency_fixed`` — the same *with* flashinfer#3147 and the slice (concurrency 1-128).
* ``accuracy_gsm8k`` / ``accuracy_gpqa`` — B200, scores (fraction) per backend, MTP on.

Every row has ``status = "reported"`` (gdnlab's provenance vocabulary: copied from someone else's
table, not measured here). Units are in the ``unit`` column; the helpers also add a ``value`` column
named after the unit (``output_throughput_tok_s``, ``mean_tpot_ms``, ``score``).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["SEED_SOURCE", "SEED_CSV_SHA256", "SEED_FLASHINFER", "SEED_TRITON", "SEED_BACKENDS",
           "MAX_RUNNING_REQUESTS", "SEED_DRAFT_TOKENS", "SEED_NUM_STEPS",
           "SEED_ACCEPT_LEN", "TABLES", "seed_csv_path", "load_seed", "osl_sweep", "tpot_vs_concurrency", "accuracy",
           "mtp_speedups", "backend_ratios"]

SEED_SOURCE = "SGLang PR #23273 (sgl-project/sglang, merged 2026-06-02, 0574d2b)"
#: the ``backend`` column's labels of the seed's and the published runs' tables: the PR names its two
#: runs by SGLang's GDN kernels, FlashInfer's and SGLang's Triton ones. They are labels of reported
#: runs, not :mod:`gdnlab.backends` names (the one module that spells them; compare against these).
SEED_FLASHINFER: str = "flashinfer"
SEED_TRITON: str = "triton"
SEED_BACKENDS: tuple[str, ...] = (SEED_FLASHINFER, SEED_TRITON)
#: sha256 of ``gdnlab/data/seed_results.csv`` as transcribed from the PR text (a changed copy fails
#: ``tests/test_seed.py``)
SEED_CSV_SHA256 = "620ae45ed32e1346085f85a4f22cef066c0d316b314716905ccf11a3c9e2f1d8"
#: ``--max-running-requests`` of every seed server command (PR text, "Server settings").
MAX_RUNNING_REQUESTS = 128
#: draft tokens T (verify positions) of every MTP run: ``--speculative-num-draft-tokens 4``.
SEED_DRAFT_TOKENS = 4
#: draft forwards per step: ``--speculative-num-steps 3`` (topk 1).
SEED_NUM_STEPS = 3
#: the reported accept length range ("acc len: 3.13-3.22"; SGLang convention, 1..T, see
#: :mod:`gdnlab.acceptance`).
SEED_ACCEPT_LEN = (3.13, 3.22)

#: table name -> (metric, unit, description)
TABLES: dict[str, tuple[str, str, str]] = {
    "osl_sweep": ("output_throughput", "tok/s",
                  "output throughput vs OSL, ISL 32, 256 prompts, request rate inf, MTP on/off"),
    "tpot_concurrency": ("mean_tpot", "ms",
                         "mean TPOT vs concurrency, ISL 32, OSL 512, MTP on, before flashinfer#3147 + slice fix"),
    "tpot_concurrency_fixed": ("mean_tpot", "ms",
                               "mean TPOT vs concurrency, ISL 32, OSL 512, MTP on, with flashinfer#3147 + slice fix"),
    "accuracy_gsm8k": ("score", "fraction", "gsm8k 5-shot, 200 examples, temperature 0.6, MTP on"),
    "accuracy_gpqa": ("score", "fraction", "GPQA Diamond, repeat 8, temperature 0.6, MTP on"),
}

_INT_COLS = ("tp", "isl", "osl", "concurrency", "num_prompts")
_FLOAT_COLS = ("accept_len_lo", "accept_len_hi", "value")


def seed_csv_path():
    """Path (a ``importlib.resources`` Traversable) of the packaged copy of the seed CSV."""
    return resources.files("gdnlab.data").joinpath("seed_results.csv")


def load_seed() -> pd.DataFrame:
    """All seed rows, one per reported number, with typed columns.

    Columns: the CSV's (``table, gpu, model, tp, backend, mtp, isl, osl, concurrency, num_prompts,
    accept_len_lo, accept_len_hi, metric, value, unit, note``; ``mtp`` as bool, integers as nullable
    ``Int64``) plus ``status`` (always ``"reported"``), ``source`` (the PR), ``max_running_requests``
    (128), ``effective_concurrency`` (decode requests the engine can run at once:
    ``min(concurrency or num_prompts, 128)``; NA for accuracy rows), ``accept_len_mid`` (midpoint of
    the reported range) and ``kernel_state``: ``"before_fix"`` / ``"fixed"`` for the TPOT tables,
    ``"unstated"`` for the OSL sweep (the PR does not say which kernels it ran; :mod:`gdnlab.model`
    assumes the state before flashinfer#3147), NA for accuracy rows.
    """
    with resources.as_file(seed_csv_path()) as p:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df = df.replace({"": pd.NA})
    for c in _INT_COLS:
        df[c] = pd.to_numeric(df[c]).astype("Int64")
    for c in _FLOAT_COLS:
        df[c] = pd.to_numeric(df[c]).astype("Float64")
    bad = set(df["mtp"].dropna()) - {"yes", "no"}
    if bad:
        raise ValueError(f"seed CSV: column 'mtp' has values {sorted(bad)}; expected 'yes'/'no'")
    df["mtp"] = df["mtp"].map({"yes": True, "no": False}).astype("boolean")
    df["status"] = "reported"
    df["source"] = SEED_SOURCE
    df["max_running_requests"] = pd.array([MAX_RUNNING_REQUESTS] * len(df), dtype="Int64")
    perf = df["table"].isin(["osl_sweep", "tpot_concurrency", "tpot_concurrency_fixed"])
    offered = df["concurrency"].fillna(df["num_prompts"])
    eff = offered.clip(upper=MAX_RUNNING_REQUESTS)
    df["effective_concurrency"] = eff.where(perf, pd.NA).astype("Int64")
    df["accept_len_mid"] = (df["accept_len_lo"] + df["accept_len_hi"]) / 2
    df["kernel_state"] = df["table"].map({"tpot_concurrency": "before_fix", "tpot_concurrency_fixed": "fixed",
                                          "osl_sweep": "unstated"}).astype("string")
    return df


def osl_sweep() -> pd.DataFrame:
    """Output throughput vs OSL (GB200, TP4, ISL 32, 256 prompts): columns ``backend, mtp, osl,
    output_throughput_tok_s, effective_concurrency, accept_len_lo, accept_len_hi, ...``; 9 rows."""
    df = load_seed()
    df = df[df["table"] == "osl_sweep"].copy()
    df["output_throughput_tok_s"] = df["value"]
    return df.sort_values(["mtp", "backend", "osl"]).reset_index(drop=True)


def tpot_vs_concurrency(fixed: bool = True) -> pd.DataFrame:
    """Mean TPOT (ms/token) vs concurrency, MTP on, ISL 32, OSL 512, both backends.

    ``fixed=True``: with flashinfer#3147 and the ``[:batch_size]`` slice (12 rows, concurrency 1-128);
    ``fixed=False``: before them (14 rows, concurrency 1-256; 256 runs at effective concurrency 128).
    """
    if not isinstance(fixed, bool):
        raise ValueError(f"fixed must be a bool, got {fixed!r}")
    df = load_seed()
    df = df[df["table"] == ("tpot_concurrency_fixed" if fixed else "tpot_concurrency")].copy()
    df["mean_tpot_ms"] = df["value"]
    return df.sort_values(["concurrency", "backend"]).reset_index(drop=True)


def accuracy() -> pd.DataFrame:
    """Accuracy scores (B200, MTP on): ``benchmark`` (gsm8k / gpqa), ``backend``, ``score`` (fraction)."""
    df = load_seed()
    df = df[df["table"].str.startswith("accuracy_")].copy()
    df["benchmark"] = df["table"].str.removeprefix("accuracy_")
    df["score"] = df["value"]
    return df.sort_values(["benchmark", "backend"]).reset_index(drop=True)


def mtp_speedups() -> pd.DataFrame:
    """MTP / no-MTP output-throughput ratio per OSL (FlashInfer, the only backend with no-MTP rows).

    Derived from reported numbers (``status = "reported"``, ``derived = True``); the PR prints them
    rounded (1.35x / 1.47x / 1.66x). Columns ``osl, no_mtp_tok_s, mtp_tok_s, speedup``.
    """
    s = osl_sweep()
    fi = s[s["backend"] == SEED_FLASHINFER]
    no = fi[~fi["mtp"]].set_index("osl")["value"]
    yes = fi[fi["mtp"]].set_index("osl")["value"]
    out = pd.DataFrame({"no_mtp_tok_s": no, "mtp_tok_s": yes}).dropna()
    out["speedup"] = out["mtp_tok_s"] / out["no_mtp_tok_s"]
    out = out.reset_index().rename(columns={"index": "osl"})
    out["status"], out["derived"], out["gpu"] = "reported", True, "GB200"
    return out


def backend_ratios() -> pd.DataFrame:
    """Triton / FlashInfer ratios from the seed: TPOT ratio per concurrency for both TPOT tables
    (``>1`` means FlashInfer is faster) and FlashInfer / Triton throughput ratio per OSL (MTP on).

    Columns ``table, x_name, x, ratio, kernel_state`` (``"unstated"`` for the OSL sweep, see
    :func:`load_seed`); derived from reported numbers.
    """
    rows = []
    for fixed in (False, True):
        t = tpot_vs_concurrency(fixed).pivot_table(index="concurrency", columns="backend", values="value")
        for c, r in t.iterrows():
            rows.append({"table": "tpot_concurrency_fixed" if fixed else "tpot_concurrency",
                         "x_name": "concurrency", "x": int(c), "ratio": r[SEED_TRITON] / r[SEED_FLASHINFER],
                         "kernel_state": "fixed" if fixed else "before_fix"})
    s = osl_sweep()
    s = s[s["mtp"]].pivot_table(index="osl", columns="backend", values="value")
    for o, r in s.iterrows():
        rows.append({"table": "osl_sweep", "x_name": "osl", "x": int(o),
                     "ratio": r[SEED_FLASHINFER] / r[SEED_TRITON], "kernel_state": "unstated"})
    out = pd.DataFrame(rows)
    out["status"], out["derived"], out["gpu"] = "reported", True, "GB200"
    return out
