"""AIConfigurator's own end-to-end prediction for each of the seed's rows (SGLang PR #23273, GB200),
the baseline gdnlab's model is compared with on them.

For every distinct seed configuration -- GB200, TP 4, NVFP4 weights, bf16 KV cache, MTP off or
NEXTN with 3 drafts at the reported accept length's midpoint (3.175 tokens per step), and for each
table its mean input/output length and decode concurrency -- AIConfigurator 0.12.0 is asked through
its SDK entry point (:func:`gdnlab.anchors.aiconfigurator.predict_e2e`, aggregated serving, batch =
concurrency). The seed's bench_serving draws lengths uniformly in ``[1, L]`` (``--random-range-ratio``
0, SGLang's default), so the mean lengths are ``(L + 1) / 2``; the OSL sweep runs 256 prompts against
``--max-running-requests 128``, so its concurrency is 128, as is the TPOT table's row at 256.

Shipped as ``gdnlab/data/aiconfigurator_seed_predictions.csv`` (regenerate with
:func:`write_seed_predictions`, needs the ``aiconfigurator`` extra); :func:`load_seed_predictions`
reads it without AIConfigurator.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..anchors import aiconfigurator as aic
from ..anchors.aic_tables import data_path, write_csv_atomic
from ..errors import DataError, UnavailableError
from ..seed import MAX_RUNNING_REQUESTS, load_seed

__all__ = ["SEED_AIC_FILE", "SEED_AIC_COLUMNS", "seed_configs", "seed_predictions", "write_seed_predictions",
           "load_seed_predictions", "seed_key"]

SEED_AIC_FILE = "aiconfigurator_seed_predictions.csv"
SEED_AIC_COLUMNS = ("aic_key", "table", "mtp", "isl_used", "osl_used", "concurrency", "accept_len_used", "tpot_ms",
                    "output_tok_s_total", "output_tok_s_per_gpu", "engine_version", "aiconfigurator_version", "status")
#: the accept length the seed reports, midpoint of 3.13-3.22 (gdnlab convention, bonus included)
_SEED_ACCEPT = (3.13 + 3.22) / 2


def seed_key(table: str, mtp: bool, concurrency: int | None, osl: int) -> str:
    """The key of one seed row (:attr:`gdnlab.model.calibration.Case.aic_key`)."""
    x = f"c{int(concurrency)}" if table != "osl_sweep" else f"osl{int(osl)}"
    return f"seed/{table}/{'mtp' if mtp else 'nomtp'}/{x}"


def seed_configs() -> pd.DataFrame:
    """One row per distinct seed configuration to price (backends share one: AIConfigurator has no
    GDN backend switch)."""
    df = load_seed()
    df = df[df["table"].isin(["osl_sweep", "tpot_concurrency", "tpot_concurrency_fixed"])]
    rows = {}
    for _, r in df.iterrows():
        c = int(r["concurrency"]) if pd.notna(r["concurrency"]) else MAX_RUNNING_REQUESTS
        key = seed_key(str(r["table"]), bool(r["mtp"]), r["concurrency"] if pd.notna(r["concurrency"]) else None,
                       int(r["osl"]))
        rows[key] = {"aic_key": key, "table": r["table"], "mtp": bool(r["mtp"]), "isl_used": (int(r["isl"]) + 1) // 2,
                     "osl_used": (int(r["osl"]) + 1) // 2, "concurrency": min(c, MAX_RUNNING_REQUESTS)}
    return pd.DataFrame(list(rows.values()))


def seed_predictions() -> pd.DataFrame:
    """AIConfigurator's prediction for every :func:`seed_configs` row (columns :data:`SEED_AIC_COLUMNS`)."""
    reason = aic.availability()
    if reason:
        raise UnavailableError(reason)
    out = []
    for _, r in seed_configs().iterrows():
        p = aic.predict_e2e("gb200", tp=4, isl=int(r["isl_used"]), osl=int(r["osl_used"]),
                            concurrency=int(r["concurrency"]), engine="sglang", weights="nvfp4", kv_dtype="bf16",
                            nextn=3 if r["mtp"] else 0, accept_len=_SEED_ACCEPT if r["mtp"] else None)
        out.append({**r.to_dict(), "accept_len_used": _SEED_ACCEPT if r["mtp"] else None, "tpot_ms": p["tpot_ms"],
                    "output_tok_s_total": p["output_tok_s_total"], "output_tok_s_per_gpu": p["output_tok_s_per_gpu"],
                    "engine_version": p["engine_version"], "aiconfigurator_version": aic.AIC_VERSION,
                    "status": p["status"]})
    return pd.DataFrame(out, columns=list(SEED_AIC_COLUMNS))


def write_seed_predictions(path: Path | None = None) -> Path:
    """Regenerate ``gdnlab/data/aiconfigurator_seed_predictions.csv`` (or ``path``) atomically."""
    return write_csv_atomic(seed_predictions(), Path(path) if path is not None else data_path(SEED_AIC_FILE))


def load_seed_predictions(path: Path | None = None) -> pd.DataFrame:
    """The shipped predictions, validated (columns, finite positive TPOT and throughput, AIConfigurator
    0.12.0 status per row, one row per key). Raises :class:`~gdnlab.errors.DataError`."""
    p = Path(path) if path is not None else data_path(SEED_AIC_FILE)
    df = aic.read_extract(p, SEED_AIC_COLUMNS, {"engine_version": str})
    if not ((df["tpot_ms"] > 0) & (df["output_tok_s_total"] > 0)).all():
        raise DataError(f"{p.name}: tpot_ms and output_tok_s_total must be > 0")
    if list(df["status"]) != [aic.status_label("sglang", v) for v in df["engine_version"]]:
        raise DataError(f"{p.name}: status must be 'reported (AIConfigurator {aic.AIC_VERSION}, sglang <version>)'")
    if df["aic_key"].duplicated().any():
        raise DataError(f"{p.name}: duplicate aic_key")
    return df
