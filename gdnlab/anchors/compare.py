"""AIConfigurator's own prediction beside every published measured run: the baseline gdnlab's
end-to-end model has to beat.

For each row of ``published_runs.csv`` (:mod:`gdnlab.anchors.published`) AIConfigurator 0.12.0 is
asked for the same configuration (:func:`gdnlab.anchors.aiconfigurator.predict_e2e`: GPU, engine, TP,
EP, DP, weights and KV dtype, ISL/OSL, concurrency, MTP drafts and accept length). The input/output
lengths are the run's measured means where the source prints token totals (bench_serving random
prompts average well below the nominal length), else the nominal ISL/OSL. AIConfigurator uses its
own database version of the engine (SGLang 0.5.14 in 0.12.0), which may differ from the run's. An
fp8 KV cache is priced with fp8 context attention (``fmha_dtype = fp8``): AIConfigurator's H100/H200
SGLang tables have no bf16-compute/fp8-KV rows at head dim 256 and refuse the default.

Runs AIConfigurator cannot price say why (``supported = False``, ``reason``): Qwen3-Next has no
shipped model config (the SDK would fetch one from Hugging Face). An MTP run that does not report its
accept length is priced at an *assumed* one — by default the SGLang cookbook's measured accept
length for the same number of drafts on random prompts (``acceptance_curves.csv``, curve
``sglcookbook-h200-random-c100``) — and ``accept_len_source`` says so.

The predictions ship as ``gdnlab/data/aiconfigurator_predictions.csv`` (regenerate with
:func:`write_predictions`, needs the ``aiconfigurator`` extra) so :func:`aiconfigurator_vs_published`
works without AIConfigurator.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, GdnlabError, UnavailableError
from . import aiconfigurator as aic
from .aic_tables import data_path, write_csv_atomic
from .published import load_acceptance_curves, load_published_runs

__all__ = ["PREDICTIONS_FILE", "ASSUMED_CURVE", "PREDICTION_COLUMNS", "aic_config", "predict_published",
           "write_predictions", "load_predictions", "aiconfigurator_vs_published"]

PREDICTIONS_FILE = "aiconfigurator_predictions.csv"
#: acceptance curve used for MTP runs that report no accept length
ASSUMED_CURVE = "sglcookbook-h200-random-c100"
_AIC_MODELS = {"Qwen3.5-397B-A17B"}
PREDICTION_COLUMNS = ("run_id", "supported", "reason", "accept_len_used", "accept_len_source", "isl_used",
                      "osl_used", "tpot_ms", "ttft_ms", "output_tok_s_per_gpu", "output_tok_s_total",
                      "tok_s_per_user", "memory_gb", "kv_cache_warning", "system", "engine", "engine_version",
                      "model_path", "weights", "kv_dtype", "fmha_dtype", "tp", "ep", "dp", "concurrency", "nextn",
                      "aiconfigurator_version", "status")


def _assumed_accept_len(k: int, curve: str | None) -> tuple[float | None, str]:
    if curve is None:
        return None, "not reported"
    c = load_acceptance_curves()
    pt = c[(c["curve_id"] == curve) & (c["num_speculative_tokens"] == k)]
    if pt.empty:
        return None, f"not reported (curve {curve!r} has no point for {k} drafts)"
    return float(pt["accept_len"].iloc[0]), f"assumed: acceptance_curves.csv {curve} ({k} drafts)"


def aic_config(run: Mapping[str, Any], assumed_curve: str | None = ASSUMED_CURVE) -> dict[str, Any]:
    """Translate one published run (a row of :func:`load_published_runs`) into
    :func:`~gdnlab.anchors.aiconfigurator.predict_e2e` arguments.

    Returns ``{"supported": True, "kwargs": {...}, "accept_len_source": str, "isl_used", "osl_used"}``
    or ``{"supported": False, "reason": str}`` (a model without an AIConfigurator config, a GPU or
    engine it lacks, dtypes it cannot express, an MTP run without any accept length)."""
    if run["model"] not in _AIC_MODELS:
        return {"supported": False, "reason": f"AIConfigurator {aic.AIC_VERSION} ships no model config for "
                                              f"{run['model']} (its SDK would download one from Hugging Face)"}
    gpu = str(run["gpu"]).lower()
    if gpu not in aic.GPU_SYSTEMS:
        return {"supported": False, "reason": f"AIConfigurator has no system for GPU {run['gpu']}"}
    if run["weights_dtype"] not in aic.WEIGHT_DTYPES or run["kv_dtype"] not in aic.KV_DTYPES:
        return {"supported": False, "reason": f"dtypes {run['weights_dtype']}/{run['kv_dtype']} not mapped"}
    isl = run["isl_mean"] if pd.notna(run["isl_mean"]) else run["isl"]
    osl = run["osl_mean"] if pd.notna(run["osl_mean"]) else run["osl"]
    if pd.isna(isl) or pd.isna(osl):
        return {"supported": False, "reason": "run states neither nominal nor mean ISL/OSL"}
    nextn, accept_len, src = 0, None, "MTP off"
    if bool(run["mtp"]):
        nextn = int(run["num_speculative_tokens"])
        if pd.notna(run["accept_len"]):
            accept_len, src = float(run["accept_len"]), "reported by the run's source"
        else:
            accept_len, src = _assumed_accept_len(nextn, assumed_curve)
            if accept_len is None:
                return {"supported": False, "reason": f"MTP accept length {src}"}
    kwargs = {"gpu": gpu, "engine": run["engine"], "tp": int(run["tp"]),
              "ep": int(run["ep"]) if pd.notna(run["ep"]) else 1,
              "dp": int(run["dp"]) if pd.notna(run["dp"]) else 1, "weights": run["weights_dtype"],
              "kv_dtype": run["kv_dtype"], "isl": max(1, round(float(isl))), "osl": max(1, round(float(osl))),
              "concurrency": int(run["concurrency"]), "nextn": nextn, "accept_len": accept_len,
              "fmha_dtype": "fp8" if run["kv_dtype"] == "fp8" else None}
    return {"supported": True, "kwargs": kwargs, "accept_len_source": src,
            "isl_used": kwargs["isl"], "osl_used": kwargs["osl"]}


def _prediction_row(run: Mapping[str, Any], assumed_curve: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PREDICTION_COLUMNS)
    row["run_id"] = run["run_id"]
    cfg = aic_config(run, assumed_curve)
    if not cfg["supported"]:
        return {**row, "supported": False, "reason": cfg["reason"], "aiconfigurator_version": aic.AIC_VERSION}
    try:
        p = aic.predict_e2e(**cfg["kwargs"])
    except (GdnlabError, ValueError, RuntimeError) as e:   # AIConfigurator's own refusals (OOM, no data)
        msg = re.sub(r"\s+at\s+/\S+", "", str(e).splitlines()[0])   # no machine paths in shipped data
        return {**row, "supported": False, "reason": f"AIConfigurator: {msg}",
                "aiconfigurator_version": aic.AIC_VERSION}
    row.update({k: p[k] for k in PREDICTION_COLUMNS if k in p})
    row.update(supported=True, reason="", accept_len_used=p["accept_len"], accept_len_source=cfg["accept_len_source"],
               isl_used=cfg["isl_used"], osl_used=cfg["osl_used"])
    return row


def predict_published(runs: pd.DataFrame | None = None, assumed_curve: str | None = ASSUMED_CURVE) -> pd.DataFrame:
    """AIConfigurator's prediction for every published run, computed now (needs the extra); one row
    per run, columns :data:`PREDICTION_COLUMNS`."""
    reason = aic.availability()
    if reason:
        raise UnavailableError(reason)
    runs = load_published_runs() if runs is None else runs
    rows = [_prediction_row(r, assumed_curve) for _, r in runs.iterrows()]
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def write_predictions(path: Path | None = None) -> Path:
    """Regenerate ``gdnlab/data/aiconfigurator_predictions.csv`` (or ``path``) atomically."""
    return write_csv_atomic(predict_published(), Path(path) if path is not None else data_path(PREDICTIONS_FILE))


def load_predictions(path: Path | None = None) -> pd.DataFrame:
    """The shipped predictions, validated: columns :data:`PREDICTION_COLUMNS`; every supported row has
    a finite positive ``tpot_ms`` and ``output_tok_s_per_gpu`` and the AIConfigurator status label,
    every unsupported row a ``reason``. Raises :class:`~gdnlab.errors.DataError`."""
    p = Path(path) if path is not None else data_path(PREDICTIONS_FILE)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found")
    df = pd.read_csv(p, dtype={"engine_version": str, "reason": str, "kv_cache_warning": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{p.name}: missing column(s) {missing}")
    df["supported"] = df["supported"].astype(bool)
    sup = df[df["supported"]]
    if not ((sup["tpot_ms"] > 0) & (sup["output_tok_s_per_gpu"] > 0)).all():
        raise DataError(f"{p.name}: supported rows need tpot_ms > 0 and output_tok_s_per_gpu > 0")
    if list(sup["status"]) != [aic.status_label(e, v) for e, v in zip(sup["engine"], sup["engine_version"])]:
        raise DataError(f"{p.name}: status must be 'reported (AIConfigurator {aic.AIC_VERSION}, <engine> <version>)'")
    if df.loc[~df["supported"], "reason"].isna().any():
        raise DataError(f"{p.name}: an unsupported row needs a reason")
    return df


def _err_pct(pred: pd.Series, meas: pd.Series) -> pd.Series:
    return (pred.astype("Float64") - meas.astype("Float64")) / meas.astype("Float64") * 100.0


def aiconfigurator_vs_published(predictions: pd.DataFrame | None = None, runs: pd.DataFrame | None = None,
                                live: bool = False) -> pd.DataFrame:
    """Measured TPOT and output throughput per GPU of each published run beside AIConfigurator's
    prediction, with the signed error ``(AIConfigurator - measured) / measured * 100`` (%).

    ``predictions`` default: the shipped CSV, or a fresh :func:`predict_published` when ``live``.
    Columns: run identity (``run_id, model, gpu, engine, engine_version, tp, ep, concurrency, mtp,
    accept_len``), ``measured_tpot_ms, aic_tpot_ms, tpot_err_pct, measured_output_tok_s_per_gpu,
    aic_output_tok_s_per_gpu, output_tok_s_per_gpu_err_pct``, ``accept_len_used/_source``,
    ``aic_engine_version``, ``supported``, ``reason``, ``source`` and both statuses.
    """
    runs = load_published_runs() if runs is None else runs
    if predictions is None:
        predictions = predict_published(runs) if live else load_predictions()
    unknown = set(predictions["run_id"]) - set(runs["run_id"])
    if unknown:
        raise DataError(f"predictions for runs not in published_runs.csv: {sorted(unknown)}")
    m = runs.merge(predictions, on="run_id", how="left", suffixes=("", "_aic"), validate="one_to_one")
    out = pd.DataFrame({
        "run_id": m["run_id"], "model": m["model"], "gpu": m["gpu"], "engine": m["engine"],
        "engine_version": m["engine_version"], "tp": m["tp"], "ep": m["ep"], "concurrency": m["concurrency"],
        "mtp": m["mtp"], "accept_len": m["accept_len"], "accept_len_used": m["accept_len_used"],
        "accept_len_source": m["accept_len_source"], "measured_tpot_ms": m["tpot_ms"], "tpot_stat": m["tpot_stat"],
        "aic_tpot_ms": m["tpot_ms_aic"], "tpot_err_pct": _err_pct(m["tpot_ms_aic"], m["tpot_ms"]),
        "measured_output_tok_s_per_gpu": m["output_tok_s_per_gpu"],
        "aic_output_tok_s_per_gpu": m["output_tok_s_per_gpu_aic"],
        "output_tok_s_per_gpu_err_pct": _err_pct(m["output_tok_s_per_gpu_aic"], m["output_tok_s_per_gpu"]),
        "aic_engine_version": m["engine_version_aic"], "supported": m["supported"].fillna(False).astype(bool),
        "reason": m["reason"], "source": m["source"], "status_measured": m["status"], "status_aic": m["status_aic"]})
    return out.reset_index(drop=True)
