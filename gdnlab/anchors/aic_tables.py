"""Shipped extract of AIConfigurator 0.12.0's per-op latencies, so a machine without AIConfigurator
(CPU CI) reads and validates the same numbers.

``gdnlab/data/aiconfigurator_ops.csv`` holds :func:`gdnlab.anchors.aiconfigurator.op_latencies` rows
for the ops, shapes and GPUs gdnlab's model needs: Qwen3.5-397B-A17B decode-step ops on H100, H200,
B200 and GB200 (SGLang 0.5.14 tables), TP 4 and 8, batches 1..256, generation attention at 4096
cached tokens (bf16 and fp8 KV), MoE with EP 1 and EP = TP, GEMMs in fp8_block and bf16 (plus nvfp4
on Blackwell), custom all-reduce at TP 4/8 and the GDN T=1 decode kernels. Every row records the
AIConfigurator version, engine version, the table file it reads (``data_file``, relative to the
``aiconfigurator_core`` package) and AIConfigurator's source tag (``silicon`` = collected data,
``empirical``/``sol`` = its formula fallback). One caveat the tests pin: GB200's custom all-reduce
table has 2- and 4-GPU rows only, so its TP 8 rows are the 4-GPU value scaled by the ring factor
(1.75 / 1.5), still tagged ``silicon``.

Regenerate (needs the ``aiconfigurator`` extra): ``python -c "from gdnlab.anchors import aic_tables;
aic_tables.write_ops_table()"``; the tests check the shipped file equals a fresh extract.
"""
from __future__ import annotations

import math
import os
import tempfile
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import DataError
from . import aiconfigurator as aic

__all__ = ["OPS_FILE", "EXTRACT_GPUS", "EXTRACT_TPS", "EXTRACT_BATCHES", "EXTRACT_KV_LEN", "extract_ops",
           "write_ops_table", "load_ops_table", "data_path", "write_csv_atomic"]

OPS_FILE = "aiconfigurator_ops.csv"
EXTRACT_GPUS = ("h100", "h200", "b200", "gb200")
EXTRACT_TPS = (4, 8)
EXTRACT_BATCHES = (1, 8, 32, 64, 128, 256)
EXTRACT_KV_LEN = 4096
_BLACKWELL = {"b200", "gb200", "b300", "gb300"}


def data_path(name: str) -> Path:
    """Filesystem path of ``gdnlab/data/<name>`` in this checkout or installation."""
    return Path(str(resources.files("gdnlab.data").joinpath(name)))


def write_csv_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` to a temporary file next to ``path`` and replace ``path`` with it (a failed write
    never leaves a half-written table)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            df.to_csv(f, index=False, float_format="%.9g")
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _one_gpu(gpu: str, tp: int, engine: str) -> pd.DataFrame:
    """All extract rows for one GPU and TP: every op with EP 1 and bf16 KV, plus MoE at EP = TP and
    attention with fp8 KV."""
    gemms = ("fp8_block", "bfloat16", "nvfp4") if gpu in _BLACKWELL else ("fp8_block", "bfloat16")
    base = aic.op_latencies(gpu, engine, tp=tp, ep=1, batches=EXTRACT_BATCHES, kv_len=EXTRACT_KV_LEN,
                            kv_dtype="bf16", gemm_dtypes=gemms, moe_dtype="fp8_block", allreduce_tps=(tp,))
    more = aic.op_latencies(gpu, engine, tp=tp, ep=tp, batches=EXTRACT_BATCHES, kv_len=EXTRACT_KV_LEN,
                            kv_dtype="fp8", gemm_dtypes=(), moe_dtype="fp8_block", allreduce_tps=())
    more = more[more["op"].isin(["moe", "generation_attention"])]
    parts = [base, more]
    if gpu in _BLACKWELL:
        fp4 = aic.op_latencies(gpu, engine, tp=tp, ep=1, batches=EXTRACT_BATCHES, kv_len=EXTRACT_KV_LEN,
                               gemm_dtypes=(), moe_dtype="nvfp4", allreduce_tps=())
        parts.append(fp4[fp4["op"] == "moe"])
    return pd.concat(parts, ignore_index=True)


def extract_ops(gpus=EXTRACT_GPUS, tps=EXTRACT_TPS, engine: str = "sglang") -> pd.DataFrame:
    """The shipped extract, computed from the installed AIConfigurator (columns
    :data:`~gdnlab.anchors.aiconfigurator.OP_COLUMNS`), sorted deterministically."""
    df = pd.concat([_one_gpu(g, tp, engine) for g in gpus for tp in tps], ignore_index=True)
    keys = ["gpu", "op", "dtype", "tp", "ep", "batch", "kv_len", "message_elems"]
    df = df.drop_duplicates(subset=keys + ["kernel"]).sort_values(keys, na_position="first")
    return df.reset_index(drop=True)


def write_ops_table(path: Path | None = None) -> Path:
    """Regenerate ``gdnlab/data/aiconfigurator_ops.csv`` (or ``path``) from the installed
    AIConfigurator, atomically. Returns the path written."""
    return write_csv_atomic(extract_ops(), Path(path) if path is not None else data_path(OPS_FILE))


def load_ops_table(path: Path | None = None) -> pd.DataFrame:
    """The shipped per-op extract, validated: every column of ``OP_COLUMNS``, latencies finite and
    positive (ms), ``aiconfigurator_version`` = 0.12.0, ``status`` = ``reported (AIConfigurator
    0.12.0, <engine> <engine_version>)`` per row, a ``data_file`` under ``systems/data/<system>/``,
    all-reduce ``message_elems = tokens * 4096``. Raises :class:`~gdnlab.errors.DataError`."""
    p = Path(path) if path is not None else data_path(OPS_FILE)
    df = aic.read_extract(p, aic.OP_COLUMNS, {"engine_version": str, "data_file": str})
    lat = df["latency_ms"]
    if not (lat.map(lambda v: isinstance(v, float) and math.isfinite(v)).all() and (lat > 0).all()):
        raise DataError(f"{p.name}: latency_ms must be finite and > 0 (ms)")
    aic.check_reported_rows(df, p.name)
    if not all(str(f).startswith(f"systems/data/{s}/") for f, s in zip(df["data_file"], df["system"])):
        raise DataError(f"{p.name}: data_file must name a table under systems/data/<system>/")
    ar = df[df["op"] == "allreduce"]
    if not (ar["message_elems"] == ar["tokens"] * aic.QWEN35_397B["hidden"]).all():
        raise DataError(f"{p.name}: all-reduce message_elems must equal tokens * hidden (an element count)")
    for c in ("tp", "ep", "batch", "tokens", "m", "n", "k", "kv_len", "message_elems"):
        df[c] = pd.array(df[c], dtype="Int64")
    return df
