"""Published, measured end-to-end runs of Qwen3.5-397B-A17B (and Qwen3-Next-80B-A3B) with and without
MTP, and reported MTP acceptance curves: the anchors gdnlab's end-to-end model is checked against.

Data (``status = reported``: copied from someone else's table, each row citing its source, URL and
date; only numbers read in the source, nothing estimated):

* ``gdnlab/data/published_runs.csv`` — one row per measured serving run: GPU and count, engine and
  version, TP/EP/DP, weights and KV dtype, nominal ISL/OSL and the measured mean input/output
  lengths where the source prints token totals, concurrency, MTP on/off (method, drafts per step,
  accept length if reported), TPOT (ms; ``tpot_stat`` says mean or median), TTFT (ms), throughputs
  (tok/s). The seed's GB200 rows (SGLang PR #23273) live in ``seed_results.csv``
  (:mod:`gdnlab.seed`) and are not repeated. Sources: the SGLang cookbook's Qwen3.5 (H200, MTP) and
  Qwen3-Next (B200, no MTP) speed benchmarks, and InferenceX PR #3290's baseline table (H100 FP8, MTP).
* ``gdnlab/data/acceptance_curves.csv`` — reported accept lengths per number of drafted tokens: the
  InferenceX golden curves (``golden_al_distribution/qwen3.5_mtp.yaml``: B300, vLLM MTP, SPEED-Bench
  coding, thinking on/off, 1..8 drafts) and the SGLang cookbook's H200 points.

Conventions (the ``convention`` column repeats them per curve): ``accept_len`` is the mean number of
tokens kept per verify step *including the bonus token* (vLLM/InferenceX "AL", SGLang "Accept
length", gdnlab's ``accept_len``, in ``[1, draft_tokens]``); ``num_speculative_tokens`` is the
drafts proposed per step (vLLM ``num_speculative_tokens``, SGLang ``--speculative-num-steps``);
``draft_tokens`` is gdnlab's T = verified positions = ``num_speculative_tokens + 1`` (SGLang
``--speculative-num-draft-tokens`` for top-k 1).

Throughput columns: ``output_tok_s_*`` count generated tokens only; ``total_tok_s_*`` count input +
output tokens (bench_serving's "Total token throughput", InferenceX's "Total tok/s/GPU"). Where a
source gives only the total or only the per-GPU figure, :func:`load_published_runs` derives the other
from ``gpu_count`` and lists it in ``derived``.
"""
from __future__ import annotations

import contextlib
import math
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import DataError

__all__ = ["RUN_COLUMNS", "CURVE_COLUMNS", "published_runs_path", "acceptance_curves_path",
           "load_published_runs", "load_acceptance_curves"]

#: required columns of published_runs.csv, in file order
RUN_COLUMNS = ("run_id", "model", "checkpoint", "gpu", "gpu_count", "engine", "engine_version", "tp", "ep", "dp",
               "weights_dtype", "kv_dtype", "mamba_ssm_dtype", "isl", "osl", "isl_mean", "osl_mean", "dataset",
               "concurrency", "num_prompts", "mtp", "mtp_method", "num_speculative_tokens", "draft_tokens",
               "accept_len", "tpot_ms", "tpot_stat", "tpot_median_ms", "ttft_ms", "output_tok_s_total",
               "output_tok_s_per_gpu", "total_tok_s", "total_tok_s_per_gpu", "source", "source_url",
               "source_date", "note", "status")
#: required columns of acceptance_curves.csv, in file order
CURVE_COLUMNS = ("curve_id", "model", "checkpoint", "engine", "engine_version", "gpu", "method", "dataset",
                 "thinking", "num_speculative_tokens", "draft_tokens", "accept_len", "convention", "source",
                 "source_url", "source_date", "note", "status")
_RUN_INT = ("gpu_count", "tp", "ep", "dp", "isl", "osl", "concurrency", "num_prompts", "num_speculative_tokens",
            "draft_tokens")
_RUN_FLOAT = ("isl_mean", "osl_mean", "accept_len", "tpot_ms", "tpot_median_ms", "ttft_ms", "output_tok_s_total",
              "output_tok_s_per_gpu", "total_tok_s", "total_tok_s_per_gpu")
_GPUS = {"H100", "H200", "H20", "B200", "GB200", "B300", "GB300"}
_ENGINES = {"sglang", "vllm", "trtllm"}
_WEIGHTS = {"bf16", "fp8_block", "fp8", "nvfp4"}
_KV = {"bf16", "fp8"}
#: (total column, per-GPU column) pairs derived from each other with gpu_count
_PAIRS = (("output_tok_s_total", "output_tok_s_per_gpu"), ("total_tok_s", "total_tok_s_per_gpu"))


def published_runs_path():
    """Packaged ``published_runs.csv`` (an ``importlib.resources`` Traversable)."""
    return resources.files("gdnlab.data").joinpath("published_runs.csv")


def acceptance_curves_path():
    """Packaged ``acceptance_curves.csv`` (an ``importlib.resources`` Traversable)."""
    return resources.files("gdnlab.data").joinpath("acceptance_curves.csv")


def _read(path, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    """Read a CSV as strings (empty = NA) and check its header names every required column."""
    ctx = contextlib.nullcontext(Path(path)) if isinstance(path, (str, Path)) else resources.as_file(path)
    with ctx as p:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{name}: {p} not found")
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}")
    if df.empty:
        raise DataError(f"{name}: no rows")
    return df.replace({"": pd.NA})


def _numeric(df: pd.DataFrame, cols: tuple[str, ...], kind: str, name: str) -> None:
    """Convert ``cols`` in place to nullable Int64/Float64; a value that does not parse, is not
    finite or is negative raises :class:`DataError` naming row and column."""
    for c in cols:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & (num.isna() | ~num.map(lambda v: math.isfinite(v) if pd.notna(v) else True) | (num < 0))
        if kind == "int":
            bad |= num.notna() & (num != num.round())
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{name}: row {df.iloc[i, 0]!r} column {c!r} = {df[c].iloc[i]!r}: "
                            f"expected a non-negative {'integer' if kind == 'int' else 'number'}")
        df[c] = num.astype("Int64" if kind == "int" else "Float64")


def _check_vocab(df: pd.DataFrame, col: str, allowed: set[str], name: str, required: bool = True) -> None:
    vals = df[col]
    if required and vals.isna().any():
        raise DataError(f"{name}: column {col!r} is empty in row {df.loc[vals.isna(), df.columns[0]].iloc[0]!r}")
    bad = sorted(set(vals.dropna()) - allowed)
    if bad:
        raise DataError(f"{name}: column {col!r} has {bad}; expected one of {sorted(allowed)}")


def _check_runs(df: pd.DataFrame, name: str) -> None:
    """Units and consistency of published runs (raises :class:`DataError`)."""
    if df["run_id"].duplicated().any():
        raise DataError(f"{name}: duplicate run_id {sorted(df.loc[df['run_id'].duplicated(), 'run_id'])}")
    for col, allowed in (("gpu", _GPUS), ("engine", _ENGINES), ("weights_dtype", _WEIGHTS), ("kv_dtype", _KV),
                         ("mtp", {"yes", "no"}), ("tpot_stat", {"mean", "median"}), ("status", {"reported"})):
        _check_vocab(df, col, allowed, name)
    for col in ("model", "source", "source_url", "source_date", "gpu_count", "tp", "concurrency", "tpot_ms"):
        if df[col].isna().any():
            raise DataError(f"{name}: column {col!r} is empty in row {df.loc[df[col].isna(), 'run_id'].iloc[0]!r}")
    if not pd.to_datetime(df["source_date"], format="%Y-%m-%d", errors="coerce").notna().all():
        raise DataError(f"{name}: source_date must be YYYY-MM-DD")
    mtp = df["mtp"] == "yes"
    if (mtp & (df["num_speculative_tokens"].isna() | df["draft_tokens"].isna())).any():
        raise DataError(f"{name}: an MTP run needs num_speculative_tokens and draft_tokens")
    if (mtp & (df["draft_tokens"] != df["num_speculative_tokens"] + 1)).any():
        raise DataError(f"{name}: draft_tokens must equal num_speculative_tokens + 1 (T counts the bonus position)")
    if (~mtp & (df["accept_len"].notna() | df["num_speculative_tokens"].notna())).any():
        raise DataError(f"{name}: a run with mtp = no cannot carry accept_len or num_speculative_tokens")
    al = df["accept_len"]
    if (al.notna() & ((al < 1) | (al > df["draft_tokens"]))).any():
        raise DataError(f"{name}: accept_len must lie in [1, draft_tokens] (tokens kept per step, bonus included)")
    if (df["tp"] * df["dp"].fillna(1) > df["gpu_count"]).any():
        raise DataError(f"{name}: tp * dp exceeds gpu_count")
    if (df[["output_tok_s_total", "output_tok_s_per_gpu"]].isna().all(axis=1)).any():
        raise DataError(f"{name}: every run needs an output throughput (total or per GPU)")


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    """Fill the per-GPU/total throughput the source did not print (``value = other * or / gpu_count``)
    and record which in ``derived`` (comma-separated column names, ``""`` when none)."""
    derived = [[] for _ in range(len(df))]
    for total, per in _PAIRS:
        fill_per = df[per].isna() & df[total].notna()
        fill_tot = df[total].isna() & df[per].notna()
        df.loc[fill_per, per] = df.loc[fill_per, total] / df.loc[fill_per, "gpu_count"]
        df.loc[fill_tot, total] = df.loc[fill_tot, per] * df.loc[fill_tot, "gpu_count"]
        for i in fill_per.to_numpy().nonzero()[0]:
            derived[i].append(per)
        for i in fill_tot.to_numpy().nonzero()[0]:
            derived[i].append(total)
    df["derived"] = pd.array([",".join(d) for d in derived], dtype="string")
    return df


def load_published_runs(path=None) -> pd.DataFrame:
    """Published runs, validated: one row per run, columns :data:`RUN_COLUMNS` (integers ``Int64``,
    numbers ``Float64``, ``mtp`` boolean) plus ``derived`` (see :func:`_derive`).

    Units: ``tpot_ms``/``tpot_median_ms``/``ttft_ms`` in ms per token / ms; ``isl``/``osl`` and the
    means in tokens; throughputs in tokens/s. ``path`` defaults to the packaged CSV. A missing
    column, unknown GPU/engine/dtype, a negative or non-numeric value, an accept length outside
    ``[1, draft_tokens]`` or a status other than ``reported`` raises :class:`~gdnlab.errors.DataError`
    naming the row and column.
    """
    name = "published_runs.csv"
    df = _read(published_runs_path() if path is None else path, RUN_COLUMNS, name)
    _numeric(df, _RUN_INT, "int", name)
    _numeric(df, _RUN_FLOAT, "float", name)
    _check_runs(df, name)
    df["mtp"] = df["mtp"].map({"yes": True, "no": False}).astype("boolean")
    return _derive(df).reset_index(drop=True)


def load_acceptance_curves(path=None) -> pd.DataFrame:
    """Reported accept lengths, validated: one row per (curve, drafts per step); columns
    :data:`CURVE_COLUMNS`. ``accept_len`` (tokens per verify step, bonus included) must lie in
    ``[1, draft_tokens]`` and ``draft_tokens = num_speculative_tokens + 1``; every row needs its
    ``convention`` and source. Raises :class:`~gdnlab.errors.DataError` otherwise."""
    name = "acceptance_curves.csv"
    df = _read(acceptance_curves_path() if path is None else path, CURVE_COLUMNS, name)
    _numeric(df, ("num_speculative_tokens", "draft_tokens"), "int", name)
    _numeric(df, ("accept_len",), "float", name)
    _check_vocab(df, "status", {"reported"}, name)
    for col in ("curve_id", "model", "num_speculative_tokens", "accept_len", "convention", "source",
                "source_url", "source_date"):
        if df[col].isna().any():
            raise DataError(f"{name}: column {col!r} is empty in curve {df.loc[df[col].isna(), 'curve_id'].iloc[0]!r}")
    if (df["draft_tokens"] != df["num_speculative_tokens"] + 1).any():
        raise DataError(f"{name}: draft_tokens must equal num_speculative_tokens + 1")
    if ((df["accept_len"] < 1) | (df["accept_len"] > df["draft_tokens"])).any():
        raise DataError(f"{name}: accept_len must lie in [1, draft_tokens]")
    if df.duplicated(["curve_id", "num_speculative_tokens"]).any():
        raise DataError(f"{name}: duplicate (curve_id, num_speculative_tokens)")
    return df.reset_index(drop=True)
