"""Phases of a speculative decode step (``verify`` / ``commit`` / ``fold``) in a kernel trace.

The decode-loop workload (:class:`gdnlab.workload.DecodeWorkload` with a verify strategy) runs one
step as::

    phase_marker_verify                 one tiny kernel (1 program, does nothing)
    layer 0..L-1: strategy.verify(...)  (replay_ring's fold is the first launch of each layer's verify)
    phase_marker_commit
    layer 0..L-1: strategy.commit(...)

With ``--cuda-graph`` that whole step is one CUDA graph, and NVTX ranges pushed while a graph is
*captured* are not recorded when it is *replayed*, so a trace of graph replays cannot be split by
NVTX. Nor can kernel names alone always do it: ``recompute`` launches the same Triton kernel in its
verify and its commit, and ``replay_ring`` in its fold and its verify. The marker kernels fix this:
their names (``phase_marker_<phase>``) survive ``nsys --cuda-graph-trace=node`` and every kernel
after a marker, up to the next one, belongs to that phase. The two markers cost about 2 µs of a
step of several milliseconds.

Rules (:func:`assign_phases`, applied to one stream's kernels in start order):

1. A marker kernel gets phase ``"marker"`` and sets the current phase.
2. Other kernels get the current phase; before the first marker (or in a trace without markers)
   :func:`phase_of_kernel` decides from the name alone, and ``"other"`` where it cannot.
3. Within a ``verify`` run, when the strategy launches a fold first (its ``launches`` dict lists
   ``"fold"`` before ``"verify"``, as :attr:`gdnlab.strategies.base.VerifyStrategy.launches` of
   ``replay_ring`` on the Triton and reference backends does), the *main* kernels (not torch
   bookkeeping, :func:`is_bookkeeping_kernel`) cycle ``fold x n_fold, verify x n_verify``; a torch
   bookkeeping kernel belongs to the phase of the next main kernel of its run (it prepares that
   launch), or to the run's phase when none follows.

:func:`phase_breakdown` sums kernel time per phase; :func:`step_busy` gives each step's GPU busy
fraction two ways: kernel time over the time from one step's verify marker to the next one's
(``busy_pct``: includes the host's share of the step, i.e. sampling, the graph launch, the
synchronisation; the last step of a trace has no next marker and no value), and over the step's
span on the device, from its verify marker to the end of its last kernel (``span_busy_pct``: only
the gaps between the step's own kernels).

>>> assign_phases(["phase_marker_verify", "_strategy_recurrent", "phase_marker_commit", "_strategy_recurrent"])
['marker', 'verify', 'marker', 'commit']
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd

from .. import backends
from ..markers import MARKER_PREFIX
from ..roofline import STEP_PHASES as PHASES
from ..strategies import strategy_backend_class
from ..strategies.registry import strategy_class
from ..traces.names import is_gdn_kernel, short_kernel_name

__all__ = ["PHASES", "is_marker_kernel", "marker_phase", "is_bookkeeping_kernel", "phase_of_kernel",
           "assign_phases", "with_phases", "phase_breakdown", "phase_kernels", "step_busy"]

#: torch / CUB kernels: the strategies' small bookkeeping ops on ``[B]`` int tensors, copies, fills
_BOOKKEEPING = re.compile(
    r"at::native|at_cuda_detail|\bcub::|thrust::|elementwise_kernel|index_elementwise|indexSelect|"
    r"reduce_kernel|CatArrayBatchedCopy|Device(Reduce|Select|Compact|Scan)|fill_kernel|scatter_gather|"
    r"index_put|masked_fill", re.IGNORECASE)

#: kernels that only ever commit (a strategy's scatter of the accepted state; declared by the backends)
_COMMIT_ONLY = re.compile(backends.commit_kernel_pattern(), re.IGNORECASE)
#: kernels a backend launches in several phases (gdnlab's Triton strategy kernel: verify, commit replay, fold)
_SHARED = re.compile(backends.multi_phase_kernel_pattern(), re.IGNORECASE)


def _short(name: str) -> str:
    return short_kernel_name(str(name))


def marker_phase(name: str) -> str | None:
    """The phase a marker kernel opens, ``None`` for any other kernel."""
    s = _short(name)
    if s.startswith(MARKER_PREFIX) and s[len(MARKER_PREFIX):] in PHASES:
        return s[len(MARKER_PREFIX):]
    return None


def is_marker_kernel(name: str) -> bool:
    return marker_phase(name) is not None


def is_bookkeeping_kernel(name: str) -> bool:
    """Torch/CUB kernels (elementwise, index, copy, reduce): a strategy's bookkeeping, not its GDN work."""
    return bool(_BOOKKEEPING.search(str(name))) and not _COMMIT_ONLY.search(_short(name))


def phase_of_kernel(name: str, strategy: str | None = None) -> str | None:
    """The phase of a kernel from its name alone, or ``None`` when the name cannot tell.

    ``"marker"`` for marker kernels; ``"commit"`` for commit-only kernels (``_scatter_commit``);
    the main kernel of a strategy that launches it in one phase only (its class's
    ``main_kernel_phases``, e.g. ``full_cache``: ``"verify"``); GDN kernels of other engines
    (:func:`gdnlab.traces.names.is_gdn_kernel`) when no strategy is named: ``"verify"``.
    ``None`` for torch bookkeeping and for kernels a strategy launches in several phases
    (``recompute``: verify and commit; ``replay_ring``: fold and verify) — use
    :func:`assign_phases` on a trace with markers for those. An unknown strategy raises ``ValueError``.
    """
    if is_marker_kernel(name):
        return "marker"
    short = _short(name)
    if _COMMIT_ONLY.search(short):
        return "commit"
    if is_bookkeeping_kernel(name):
        return None
    if strategy is not None:
        main = strategy_class(strategy).main_kernel_phases
        return main[0] if len(main) == 1 else None
    if _SHARED.search(short):
        return None
    return "verify" if is_gdn_kernel(name) else None


def _fold_first(launches: Mapping[str, int] | None) -> tuple[int, int] | None:
    """``(n_fold, n_verify)`` when ``launches`` lists a fold before the verify launches."""
    if not launches:
        return None
    keys = [k for k, n in launches.items() if n]
    if "fold" in keys and "verify" in keys and keys.index("fold") < keys.index("verify"):
        return int(launches["fold"]), int(launches["verify"])
    return None


def _strategy_launches(strategy: str | None, backend: str | None) -> Mapping[str, int] | None:
    """The launches per phase of ``strategy`` as ``backend`` (default ``triton``) implements it;
    ``None`` when no strategy is named. Unknown names raise ``ValueError``."""
    if strategy is None:
        return None
    return dict(strategy_backend_class(strategy, backend or "triton").launches)


def assign_phases(names: Sequence[str], strategy: str | None = None, *, backend: str | None = None,
                  launches: Mapping[str, int] | None = None) -> list[str]:
    """One phase per kernel (``names`` in start order, one stream): ``"marker"``, ``"fold"``,
    ``"verify"``, ``"commit"`` or ``"other"`` (module docstring). ``launches`` (default: the
    strategy class's on ``backend``, Triton when not given) decides the fold/verify split."""
    if launches is None:
        launches = _strategy_launches(strategy, backend)
    split = _fold_first(launches)
    out: list[str] = []
    current: str | None = None
    run: list[int] = []                          # indices of the current verify run

    def close_run() -> None:
        if split is not None and run:
            cycle = ["fold"] * split[0] + ["verify"] * split[1]
            mains = [i for i in run if not is_bookkeeping_kernel(names[i])]
            for j, i in enumerate(mains):
                out[i] = cycle[j % len(cycle)]
            main_set, nxt = set(mains), "verify"
            for i in reversed(run):              # bookkeeping: the phase of the next main kernel
                if i in main_set:
                    nxt = out[i]
                else:
                    out[i] = nxt
        run.clear()

    for i, name in enumerate(names):
        m = marker_phase(name)
        if m is not None:
            close_run()
            current = m
            out.append("marker")
            continue
        if current is None:
            out.append(phase_of_kernel(name, strategy) or "other")
            continue
        out.append(current)
        if current == "verify":
            run.append(i)
    close_run()
    return out


def _ordered(kernels: pd.DataFrame) -> pd.DataFrame:
    need = {"name", "start_ns", "end_ns"}
    if not need <= set(kernels.columns):
        raise ValueError(f"the kernel table needs columns {sorted(need)}, got {sorted(kernels.columns)}")
    k = kernels.sort_values(["start_ns", "end_ns"], kind="stable").reset_index(drop=True)
    if "duration_ns" not in k.columns:
        k = k.assign(duration_ns=k["end_ns"] - k["start_ns"])
    return k


def with_phases(kernels: pd.DataFrame, strategy: str | None = None, *, backend: str | None = None,
                launches: Mapping[str, int] | None = None) -> pd.DataFrame:
    """``kernels`` (a :class:`gdnlab.traces.Trace`'s ``kernels`` table, one stream) in start order with
    columns ``phase`` (:func:`assign_phases`), ``bookkeeping`` (bool) and ``step`` (0, 1, ... counted
    at each verify marker; -1 before the first)."""
    k = _ordered(kernels)
    names = k["name"].astype(str).tolist()
    phases = assign_phases(names, strategy, backend=backend, launches=launches)
    step = (pd.Series([marker_phase(n) == "verify" for n in names], dtype=int).cumsum() - 1).to_numpy()
    return k.assign(phase=phases, bookkeeping=[is_bookkeeping_kernel(n) for n in names], step=step)


def phase_breakdown(kernels: pd.DataFrame, strategy: str | None = None, *, backend: str | None = None,
                    launches: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Kernel time per phase: one row per phase present with ``kernels`` (count), ``time_us`` (sum),
    ``time_per_step_us`` (sum / steps, steps = verify markers, 1 without markers),
    ``bookkeeping_us`` (torch ops' share) and ``share_pct`` (of all kernel time)."""
    k = with_phases(kernels, strategy, backend=backend, launches=launches)
    steps = max(int((k["step"] >= 0).any() and k["step"].max() + 1), 1)
    k = k.assign(time_us=k["duration_ns"] / 1e3)
    k = k.assign(bookkeeping_us=k["time_us"].where(k["bookkeeping"], 0.0))
    g = k.groupby("phase", sort=False).agg(kernels=("time_us", "size"), time_us=("time_us", "sum"),
                                           bookkeeping_us=("bookkeeping_us", "sum"))
    order = [p for p in (*PHASES, "marker", "other") if p in g.index]
    g = g.loc[order]
    g["time_per_step_us"] = g["time_us"] / steps
    total = float(g["time_us"].sum())
    g["share_pct"] = 100.0 * g["time_us"] / total if total > 0 else 0.0
    return g.reset_index()


def phase_kernels(kernels: pd.DataFrame, strategy: str | None = None, *, backend: str | None = None,
                  launches: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Which kernels landed in which phase: one row per (phase, short kernel name) with
    ``bookkeeping`` (torch op), ``kernels`` (count), ``per_step`` (count / steps) and
    ``time_per_step_us``, phases in step order. A check that the markers and the fold split
    assigned the real kernel names as intended (e.g. ``_strategy_recurrent`` in both ``fold`` and
    ``verify`` for ``replay_ring``)."""
    k = with_phases(kernels, strategy, backend=backend, launches=launches)
    steps = max(int((k["step"] >= 0).any() and k["step"].max() + 1), 1)
    k = k.assign(kernel=k["name"].astype(str).map(_short), time_us=k["duration_ns"] / 1e3)
    g = k.groupby(["phase", "kernel"], sort=False).agg(bookkeeping=("bookkeeping", "first"),
                                                       kernels=("time_us", "size"), time_us=("time_us", "sum"))
    g = g.reset_index()
    order = {p: i for i, p in enumerate(("marker", *PHASES, "other"))}
    g = g.assign(_o=g["phase"].map(order).fillna(len(order)), per_step=g["kernels"] / steps,
                 time_per_step_us=g["time_us"] / steps)
    g = g.sort_values(["_o", "time_per_step_us"], ascending=[True, False], kind="stable")
    return g[["phase", "kernel", "bookkeeping", "kernels", "per_step", "time_per_step_us"]].reset_index(drop=True)


def step_busy(kernels: pd.DataFrame) -> pd.DataFrame:
    """GPU busy share of each step (steps start at their verify marker kernel), two ways.

    Columns: ``step``; ``kernel_us`` (sum of the step's kernel durations, markers included);
    ``span_us`` (from the step's verify marker to the end of its last kernel: the device's part of
    the step) and ``span_busy_pct`` (``kernel_us / span_us``: the gaps between the step's own
    kernels); ``window_us`` (from the step's verify marker to the next one's: the host's part too,
    i.e. drawing the accepted lengths, the launch, the synchronisation) and ``busy_pct``
    (``kernel_us / window_us``); ``complete`` (False for the last step: no next marker closes its
    window, so its ``window_us`` and ``busy_pct`` are NaN). Empty when the trace has no verify
    markers.
    """
    k = _ordered(kernels)
    is_start = k["name"].astype(str).map(lambda n: marker_phase(n) == "verify").to_numpy()
    starts = k.loc[is_start, "start_ns"].to_numpy()
    rows = []
    for j, t0 in enumerate(starts):
        last = j + 1 == len(starts)
        inside = k[(k["start_ns"] >= t0) & (True if last else (k["start_ns"] < starts[j + 1]))]
        busy = float(inside["duration_ns"].sum())
        span = float(inside["end_ns"].max() - t0)
        window = float("nan") if last else float(starts[j + 1] - t0)
        rows.append({"step": j, "kernel_us": busy / 1e3, "span_us": span / 1e3,
                     "span_busy_pct": 100.0 * busy / span if span > 0 else float("nan"),
                     "window_us": window / 1e3,
                     "busy_pct": 100.0 * busy / window if window > 0 else float("nan"), "complete": not last})
    return pd.DataFrame(rows, columns=["step", "kernel_us", "span_us", "span_busy_pct", "window_us", "busy_pct",
                                       "complete"])
