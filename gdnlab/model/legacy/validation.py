"""The roofline step model against the seed: fit on part of the seed's rows, predict the rest.

:func:`validate_against_seed` compares every predicted number with the reported one (fit and
held-out rows marked); :func:`sensitivity` re-fits under alternative readings of what the seed
does not state. Results are ``"projected vs reported"``.
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from ...seed import SEED_FLASHINFER as FI
from ...seed import SEED_TRITON as TR
from ...seed import load_seed
from ..seed_runs import SeedAssumptions, check_seed_df, seed_roles, seed_run, seed_variants
from .fit import fit_to_seed, kernel_for
from .iteration import StepModel

__all__ = ["validate_against_seed", "sensitivity"]


def validate_against_seed(seed_df: pd.DataFrame | None = None, assumptions: SeedAssumptions | None = None,
                          sm: StepModel | None = None) -> pd.DataFrame:
    """Fit on part of the seed, predict the rest; one row per compared number.

    Columns: ``metric, predicted, reported, rel_error`` (``(predicted - reported) / reported``),
    ``role`` (``"fit"`` / ``"heldout"``), ``table, backend, mtp, x_name, x, kernel_state, unit,
    status`` (``"projected vs reported (seed, GB200)"``). ``df.attrs["params"]`` holds the fitted
    parameters of both software states and ``df.attrs["assumptions"]`` the assumptions.

    Fit rows (never the held-out ones; see :func:`seed_roles`): no-MTP output throughput at OSL
    1024/2048/4096, FlashInfer mean TPOT vs concurrency in both TPOT tables. Held out: MTP output
    throughput (both backends), the MTP speedup per OSL (FlashInfer MTP / no-MTP), FlashInfer/Triton
    throughput ratios, Triton TPOT and Triton/FlashInfer TPOT ratios per concurrency.

    Result with the default :class:`SeedAssumptions` (GB200): the 10 fit rows of the first software
    state within 3.1 %, the 6 of the fixed TPOT table within 3.4 %; held out: MTP speedup +9.1 % /
    +2.9 % / -5.6 % at OSL 1024 / 2048 / 4096 (1.47 / 1.52 / 1.56 vs 1.35 / 1.47 / 1.66), MTP
    throughput within 11 %, Triton TPOT within 7.5 %, Triton/FlashInfer TPOT ratios within 5.5 %.

    Where the model misses, and why:

    * **The MTP speedup's growth with OSL is too flat** (model 1.47 -> 1.56, seed 1.35 -> 1.66). In
      the model the speedup grows with OSL because per-request prefill passes are amortised and
      because an MTP step reads the growing KV cache once per ~3.2 tokens (the fitted attention cost
      is what flattens the no-MTP throughput from OSL 2048 to 4096). The seed's MTP rows gain more
      (+31 % from 1024 to 4096) than these mechanisms give. Candidates the seed cannot separate: an
      acceptance length that rises with output length (the PR gives one range, 3.13-3.22, for all
      runs), one-off costs in the first (shortest) run (JIT compilation of CuTe-DSL kernels,
      CUDA-graph capture), run-to-run noise (single runs).
    * **Triton vs FlashInfer**: the model's ratios are 1.000 before the fix (the pre-#3147 FlashInfer
      verify kernel and the Triton kernel are modelled at about the same efficiency, 0.68 of HBM peak)
      and 1.000-1.007 after it, because GDN is a few % of a step. The seed's 1.01-1.06 TPOT ratios
      (and 1.01-1.04 throughput ratios) before the fix are larger than GDN kernel time can produce,
      which points at costs outside the GDN kernels that differ between the two code paths, or at
      noise; after the fix the seed's ratios (0.997-1.005) agree with the model within 0.6 %.
    * **The fit is not unique.** The split between per-pass, per-request and per-token costs and the
      prefill cost are identified only through unstated benchmark settings: :func:`sensitivity`
      re-fits under alternatives. With ``max(4 * concurrency, 32)`` prompts per TPOT run instead of
      256 the predicted speedups rise to 1.96-2.30 (+39-46 %); with fixed output lengths
      (``range_ratio=1``) they fall to 1.25-1.26 (-7 to -24 %); acceptance 3.22 instead of 3.175 gives
      -13 % at OSL 4096. The 10 % agreement holds for the default assumptions, not for every
      reading of the PR.
    * The concurrency-256 TPOT rows run at 128 (the cap), and the model gives them the c=128 value;
      the seed's are 5 % (FlashInfer) and 8 % (Triton) lower than its c=128 rows.
    """
    a = assumptions or SeedAssumptions()
    df = load_seed() if seed_df is None else seed_df
    check_seed_df(df)
    fit = fit_to_seed(df, a, sm)
    sm = fit.model
    roles = seed_roles(df)
    rows = []
    pred_val: dict = {}
    for i, row in df[roles != "unused"].iterrows():
        params = fit.fixed if row["table"] == "tpot_concurrency_fixed" else fit.before
        run = fit.runs.get(i) or seed_run(sm, row, a, kernel_for(row, a))
        if row["metric"] == "output_throughput":
            pred, x_name, x, unit = run.throughput(params), "osl", int(row["osl"]), "tok/s"
        else:
            pred, x_name, x, unit = run.tpot_ms(params), "concurrency", int(row["concurrency"]), "ms"
        pred_val[(row["table"], row["backend"], bool(row["mtp"]), x)] = (pred, float(row["value"]))
        rows.append({"metric": str(row["metric"]), "predicted": pred, "reported": float(row["value"]),
                     "role": roles[i], "table": row["table"], "backend": row["backend"], "mtp": bool(row["mtp"]),
                     "x_name": x_name, "x": x, "kernel_state": row["kernel_state"], "unit": unit})
    rows += _derived_rows(pred_val)
    out = pd.DataFrame(rows)
    out["rel_error"] = (out["predicted"] - out["reported"]) / out["reported"]
    out["status"] = "projected vs reported (seed, GB200)"
    out = out[["metric", "predicted", "reported", "rel_error", "role", "table", "backend", "mtp", "x_name", "x",
               "kernel_state", "unit", "status"]]
    out.attrs["params"] = {"before_fix": fit.before.as_dict(), "fixed": fit.fixed.as_dict()}
    out.attrs["assumptions"] = asdict(a)
    out.attrs["gpu"] = sm.gpu.as_dict()
    return out


def _derived_rows(pred_val: dict) -> list[dict]:
    """Held-out rows derived from predicted and reported pairs ``{(table, backend, mtp, x): (p, r)}``:
    the MTP speedup per OSL, FlashInfer/Triton throughput and Triton/FlashInfer TPOT ratios."""
    rows = []
    for (tab, be, mtp, x), (p, r) in list(pred_val.items()):
        if tab == "osl_sweep" and be == FI and mtp and (tab, be, False, x) in pred_val:
            p0, r0 = pred_val[(tab, be, False, x)]
            rows.append({"metric": "mtp_speedup", "predicted": p / p0, "reported": r / r0, "role": "heldout",
                         "table": tab, "backend": be, "mtp": True, "x_name": "osl", "x": x, "kernel_state": "unstated",
                         "unit": "ratio (MTP / no-MTP throughput)"})
        if tab == "osl_sweep" and be == FI and mtp and (tab, TR, True, x) in pred_val:
            p1, r1 = pred_val[(tab, TR, True, x)]
            rows.append({"metric": "throughput_ratio_flashinfer_over_triton", "predicted": p / p1, "reported": r / r1,
                         "role": "heldout", "table": tab, "backend": f"{FI}/{TR}", "mtp": True, "x_name": "osl",
                         "x": x, "kernel_state": "unstated", "unit": "ratio"})
        if tab.startswith("tpot") and be == TR and (tab, FI, mtp, x) in pred_val:
            p1, r1 = pred_val[(tab, FI, mtp, x)]
            rows.append({"metric": "tpot_ratio_triton_over_flashinfer", "predicted": p / p1, "reported": r / r1,
                         "role": "heldout", "table": tab, "backend": f"{TR}/{FI}", "mtp": mtp,
                         "x_name": "concurrency", "x": x,
                         "kernel_state": "fixed" if tab.endswith("fixed") else "before_fix", "unit": "ratio"})
    return rows


def sensitivity(variants: dict[str, SeedAssumptions] | None = None) -> pd.DataFrame:
    """Held-out MTP-speedup errors under alternative assumptions (each variant re-fits the model).

    Returns one row per variant and OSL: ``variant, osl, predicted, reported, rel_error``.
    """
    variants = variants or seed_variants()
    rows = []
    for name, a in variants.items():
        v = validate_against_seed(assumptions=a)
        s = v[v["metric"] == "mtp_speedup"]
        for _, r in s.iterrows():
            rows.append({"variant": name, "osl": r["x"], "predicted": r["predicted"], "reported": r["reported"],
                         "rel_error": r["rel_error"]})
    return pd.DataFrame(rows)
