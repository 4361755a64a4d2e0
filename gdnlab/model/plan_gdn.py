"""GDN kernel cost of one planner option at an accept length, and its measured spread.

A strategy's step (verify + commit + amortised fold) can depend on the accept length ``a``: the
commit replays ``a`` tokens (``recompute``), the ring folds every few steps (``replay_ring``).
:class:`GDNSource` keeps one :class:`~gdnlab.model.gdn_sweep.SweepGDN` per accept length the
sweep's strategy step rows (``measure == "step"``) were measured at, each on the planned GPU, and
prices an option at ``a``:

* at a measured accept length: that level; between two: linear in ``a``;
* beyond them: the nearest level, labelled (``held``), unless the strategy's byte formula
  (:func:`gdnlab.strategies.registry.strategy_bytes`) does not depend on ``a`` (``full_cache``,
  ``token_slots``): then the step is the same at every ``a`` and nothing is extrapolated.

The spread of a priced point is the p10 / p90 of its timing samples over their median
(``time_p10_us`` / ``time_p90_us`` over ``time_us`` of the same sweep row, nearest measured batch),
applied to the GDN part only: other components enter at their medians, alike for every option.
Times in µs per GDN layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..strategies.registry import BASELINE
from .composed import ComposedStep
from .gdn_sweep import SweepGDN, norm_keys

__all__ = ["GDNSource", "Priced"]

#: accept lengths closer than this (tokens per step) are the same level
_SAME = 0.01
#: how a step row names its accept level inside the tagged sweep (strategy@L<index>)
_TAG = "@L"
#: the sweep columns a per-level :class:`SweepGDN` reads
_COLUMNS = {"backend", "mode", "measure", "strategy", "draft_tokens", "batch", "concurrency", "state_dtype",
            "accept_len", "time_us", "step_us", "verify_us", "commit_us", "calls_per_sample", "status", "timing",
            "timing_method", "intermediate", "buffer_scope", "rotate", "correct", "H", "HV", "K", "V", "gpu",
            "copy_bw_gbps"}


@dataclass(frozen=True)
class Priced:
    """GDN kernel µs per layer at one batch, how the accept length entered, and the spread ratios."""

    kernel_us: float
    basis: str
    held: bool
    r10: float
    r90: float


def _norm(rows: pd.DataFrame) -> pd.DataFrame:
    s = rows.rename(columns={"concurrency": "batch"}) if "batch" not in rows and "concurrency" in rows else rows
    return norm_keys(s)


def _noise_table(rows: pd.DataFrame) -> pd.DataFrame:
    """``key, batch, r10, r90`` (median ratios) from rows with ``time_us`` and ``time_p10_us`` /
    ``time_p90_us``; key = (backend, strategy, T, state dtype), decode calls as strategy ``decode``."""
    if not {"time_p10_us", "time_p90_us", "time_us"} <= set(rows.columns):
        return pd.DataFrame(columns=["backend", "strategy", "draft_tokens", "state_dtype", "batch", "r10", "r90"])
    s = _norm(rows)
    if "status" in s:
        s = s[s["status"].astype(str).eq("ok")]
    for scope in ("buffer_scope", "intermediate"):      # pool-scoped intermediates are not priced
        if scope in s:
            s = s[~s[scope].astype(str).eq("pool")]
    mode = s["mode"].astype(str).str.lower() if "mode" in s else pd.Series("", index=s.index)
    strat = s["strategy"].astype("object") if "strategy" in s else pd.Series(None, index=s.index, dtype=object)
    strat = strat.where(~mode.eq("decode"), "decode").fillna(BASELINE).astype(str)
    med = pd.to_numeric(s["time_us"], errors="coerce")
    out = pd.DataFrame({"backend": s["backend"], "strategy": strat, "draft_tokens": s["draft_tokens"],
                        "state_dtype": s["state_dtype"], "batch": s["batch"],
                        "r10": pd.to_numeric(s["time_p10_us"], errors="coerce") / med,
                        "r90": pd.to_numeric(s["time_p90_us"], errors="coerce") / med}).dropna()
    out = out[(out["r10"] > 0) & (out["r10"] <= 1.0 + 1e-9) & (out["r90"] >= 1.0 - 1e-9)]
    return out.groupby(["backend", "strategy", "draft_tokens", "state_dtype", "batch"], as_index=False).median()


class GDNSource:
    """GDN costs of a :class:`ComposedStep`'s sweep per accept level, for the planner."""

    def __init__(self, step: ComposedStep) -> None:
        self.step = step
        self._variants: dict = {}
        self.levels: list[float] = []
        self.tagged: SweepGDN | None = None
        rows = getattr(step, "gdn_rows", None)
        self.noise = _noise_table(rows) if isinstance(rows, pd.DataFrame) else _noise_table(pd.DataFrame())
        self._noise_idx = {k: g for k, g in self.noise.groupby(["backend", "strategy", "draft_tokens", "state_dtype"])}
        self._have: dict[tuple, list[float]] = {}
        self._ok: dict[tuple, bool] = {}
        if step.gdn is None:
            return
        acc = self._step_accepts(rows)
        self.levels = acc or [math.nan]
        steps = step.gdn.steps
        if len(acc) > 1:            # one sweep whose step rows name their level: strategy@L<i>
            self.tagged = self._tag(rows, acc)
            steps = self.tagged.steps
        for key, grp in steps.groupby(["backend", "strategy", "draft_tokens", "state_dtype"]):
            name, _, i = str(key[1]).partition(_TAG)
            k = (key[0], name, int(key[2]), key[3])
            self._have.setdefault(k, []).append(self.levels[int(i)] if i else self.levels[0])
            self._ok[k] = self._ok.get(k, True) and bool(grp["checked"].all())

    def _tag(self, rows: pd.DataFrame, acc: list[float]) -> SweepGDN:
        rows = rows[[c for c in rows.columns if c in _COLUMNS]].copy()
        is_step = rows["measure"].astype(str).eq("step")
        a = pd.to_numeric(rows.loc[is_step, "accept_len"], errors="coerce").to_numpy(float)
        idx = np.abs(a[:, None] - np.asarray(acc)[None, :]).argmin(axis=1)
        rows["strategy"] = rows["strategy"].astype("object")
        rows.loc[is_step, "strategy"] = [f"{s}{_TAG}{i}" for s, i in zip(rows.loc[is_step, "strategy"], idx)]
        g = SweepGDN.from_sweep(rows, shape=self.step.model.gdn)
        return g.projected(self.step.gpu) if g.gpu.name != self.step.gpu.name else g

    @staticmethod
    def _step_accepts(rows) -> list[float]:
        if not isinstance(rows, pd.DataFrame) or "measure" not in rows or "accept_len" not in rows:
            return []
        a = pd.to_numeric(rows.loc[rows["measure"].astype(str).eq("step"), "accept_len"], errors="coerce").dropna()
        out: list[float] = []
        for v in sorted(a.unique()):
            if not out or v - out[-1] > _SAME:
                out.append(float(v))
        return out

    # ------------------------------------------------------------------ options
    def options(self) -> pd.DataFrame:
        """Distinct ``backend, mode, strategy, draft_tokens, state_dtype, has_step_us, checked``."""
        if self.step.gdn is None:
            return pd.DataFrame(columns=["backend", "mode", "strategy", "draft_tokens", "state_dtype", "has_step_us",
                                         "checked"])
        return self.step.gdn.options()

    def checked(self, backend: str, strategy: str, T: int, state_dtype: str) -> bool:
        """Whether every priced step row of the option passed its correctness check (calls: True)."""
        return self._ok.get((backend, strategy, int(T), state_dtype), True)

    def variant(self, state_dtype: str, tagged: bool = False) -> ComposedStep:
        """The step with ``state_dtype`` and the GDN kernels of the step (``tagged``: of the sweep whose
        step rows name their accept level)."""
        key = (state_dtype, tagged)
        if key not in self._variants:
            s = self.step
            gdn = self.tagged if tagged else s.gdn
            self._variants[key] = ComposedStep(s.times, s.model, s.params, gdn=gdn, state_dtype=state_dtype,
                                               gdn_scale=s.gdn_scale, allreduce_latency_us=s.allreduce_latency_us,
                                               busbw_gbps=s.busbw_gbps)
        return self._variants[key]

    # ------------------------------------------------------------------ pricing
    def _with_steps(self, backend: str, strategy: str, T: int, sd: str) -> list[float]:
        return sorted(self._have.get((backend, strategy, int(T), sd), []))

    def _independent(self, strategy: str, T: int, a: float, a0: float) -> bool:
        from ..strategies.registry import strategy_bytes

        try:
            shape = self.step.model.gdn
            return math.isclose(strategy_bytes(shape, strategy, 16, T, min(a, T)).total,
                                strategy_bytes(shape, strategy, 16, T, min(a0, T)).total, rel_tol=1e-9)
        except ValueError:
            return False

    def spread(self, backend: str, strategy: str, T: int, sd: str, batch: float) -> tuple[float, float]:
        """``(p10 / median, p90 / median)`` at the nearest measured batch; ``(1, 1)`` without samples."""
        g = self._noise_idx.get((backend, strategy, float(T), sd))
        if g is None:
            g = self._noise_idx.get((backend, strategy, int(T), sd))
        if g is None or g.empty:
            return 1.0, 1.0
        i = int(np.argmin(np.abs(np.log(g["batch"].to_numpy(float)) - math.log(batch))))
        return float(g["r10"].iloc[i]), float(g["r90"].iloc[i])

    def price(self, backend: str, strategy: str, T: int, sd: str, batch: float, accept_len: float) -> Priced:
        """GDN kernel µs per layer of one option at ``batch`` rows keeping ``accept_len`` per step."""
        r10, r90 = self.spread(backend, strategy, T, sd, batch)
        if strategy == "decode" or self.step.gdn is None:
            st = self.variant(sd)
            us = st.gdn_kernel_us(backend, batch, 1 if strategy == "decode" else T,
                                  BASELINE if strategy == "decode" else strategy)
            return Priced(us, "", False, r10, r90)
        lv = self._with_steps(backend, strategy, T, sd)
        if not lv:                               # verify calls + the components' commit: no accept dependence
            return Priced(self.variant(sd).gdn_kernel_us(backend, batch, T, strategy), "", False, r10, r90)
        if self.tagged is None:
            at = {v: self.variant(sd).gdn_kernel_us(backend, batch, T, strategy) for v in lv}
        else:
            at = {v: self.variant(sd, True).gdn_kernel_us(backend, batch, T, f"{strategy}{_TAG}{self.levels.index(v)}")
                  for v in lv}
        a = float(accept_len)
        known = [v for v in lv if not math.isnan(v)]
        if not known:
            return Priced(at[lv[0]], "accept length of the step rows not recorded", False, r10, r90)
        if known[0] - _SAME <= a <= known[-1] + _SAME:
            if len(known) == 1 or abs(a - known[0]) <= _SAME:
                return Priced(at[known[0]], f"step measured at accept {known[0]:.2f}", False, r10, r90)
            hi = next(v for v in known if v >= a - _SAME)
            lo = known[max(known.index(hi) - 1, 0)]
            if abs(a - hi) <= _SAME or lo == hi:
                return Priced(at[hi], f"step measured at accept {hi:.2f}", False, r10, r90)
            us = at[lo] + (at[hi] - at[lo]) * (a - lo) / (hi - lo)
            return Priced(us, f"step interpolated between accept {lo:.2f} and {hi:.2f}", False, r10, r90)
        near = known[0] if a < known[0] else known[-1]
        if self._independent(strategy, T, a, near):
            return Priced(at[near], f"step measured at accept {near:.2f}; its bytes do not depend on the accept "
                                    "length", False, r10, r90)
        return Priced(at[near], f"step held at accept {near:.2f} (measured); {a:.2f} is beyond the measured "
                                "accept lengths", True, r10, r90)

    def batch_range(self) -> tuple[float, float]:
        """Smallest and largest batch the GDN rows measured (``(nan, nan)`` without a sweep)."""
        g = self.step.gdn
        if g is None:
            return math.nan, math.nan
        b = pd.concat([g.table["batch"], g.steps["batch"]]).dropna()
        if b.empty:
            raise DataError("the GDN sweep has no batch")
        return float(b.min()), float(b.max())
