"""A decode-loop workload shaped like a serving engine's GDN part, for traces and time per token.

One :class:`~gdnlab.state.StatePool` with a layer dimension (one layer per GDN layer of the preset;
Qwen3.5-397B-A17B has 45) holds the state of ``B`` concurrent requests (the batch). Each step runs,
inside an NVTX range ``step``:

* plain decode (``draft_tokens = 1``): one ``gdn.decode`` call per layer (1 token per request);
* speculative decoding (``draft_tokens = T >= 2``) with a **verify strategy**
  (``strategy="full_cache" | "token_slots" | "recompute" | "recompute_fused" | "replay_ring"``,
  :mod:`gdnlab.strategies`, on the backend named by ``backend``): the accepted lengths of the step
  (1..T per request, :func:`gdnlab.acceptance.sample_accepted`, drawn on the host *before* the step
  and copied to a static device buffer without a sync), then every layer's ``strategy.verify``
  (NVTX ``gdn.verify``), then every layer's ``strategy.commit`` reading the accepted lengths from
  that buffer (NVTX ``gdn.commit``) — as an engine verifies the whole forward pass, samples, then
  commits. Per-layer scratch comes from ``strategy.allocate(pool_layer, max_batch=B, T=T)``; a
  strategy's fold (``replay_ring``) runs inside its verify. Nothing in a step reads a device value
  back to the host (``validate=False``), so with :meth:`DecodeWorkload.enable_cuda_graph` the
  **whole step** (every layer's verify and commit) is one CUDA graph, replayed inside ``step``;
* ``strategy=None``: the backend's own ``gdn.verify`` into a per-layer intermediate buffer and its
  ``gdn.commit`` (torch gather + ``index_copy_`` with a ``torch.nonzero``); its CUDA graph holds the
  verifies only and the commits stay eager.

On CUDA, a strategy step launches two marker kernels (``phase_marker_verify`` before the first
verify, ``phase_marker_commit`` before the first commit; :mod:`gdnlab.markers`): NVTX ranges pushed
while a graph is captured are not recorded at replay, and the markers let
:func:`gdnlab.analysis.phases.phase_breakdown` split a trace of graph replays into verify / commit / fold.

The loop runs until every request has generated ``osl`` tokens (a request that is done becomes a
padding row, index -1, so the batch keeps its shape as in a CUDA-graph batch), so the summary gives
time per generated token against OSL and batch. With a whole-step graph the summary also gives the
GPU busy share of a step: CUDA-event time around each graph replay / the step's wall time (the
events enclose the replay's kernels and the gaps between them, so this is an upper bound on kernel
time / wall time; an nsys trace and :func:`gdnlab.analysis.phases.step_busy` give the kernel sum).

Inputs are generated once per layer and reused every step: the kernels are memory-bound on the state
and their cost does not depend on the q/k/v values, so a fixed input measures the same thing as fresh
activations (and keeps host-side random generation out of the trace).

Command line: ``gdnlab workload`` (:mod:`gdnlab.cli.workload`).

What a workload is built from lives in :mod:`gdnlab.workload_setup`, what a run reports in
:mod:`gdnlab.workload_result`; this module re-exports the builders, :class:`WorkloadResult` and
:class:`WorkloadProgress`.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch

from .acceptance import AcceptanceModel, sample_accepted
from .errors import InputError, UnavailableError
from .inputs import GDNInputs, make_inputs
from .instrument import capture_graph, nvtx_range, profiler_capture, resolve_device
from .kernels.base import GDNBackend
from .shapes import GDNShape, dtype_from_name, dtype_name
from .state import StatePool
from .strategies.base import StepPlan
from .workload_result import StepTally, WorkloadProgress, WorkloadResult
from .workload_setup import default_acceptance, estimate_memory_bytes, make_strategy, make_workload_backend

__all__ = ["DecodeWorkload", "WorkloadResult", "WorkloadProgress", "estimate_memory_bytes",
           "default_acceptance", "make_workload_backend", "make_strategy"]

class DecodeWorkload:
    """The GDN part of a serving engine's decode loop over ``layers`` GDN layers and ``batch`` requests.

    Args:
        backend: a :class:`GDNBackend` (or registry name); with ``strategy`` its name picks the
            strategy backend (``reference``, ``triton``, ``flashinfer``).
        shape: per-GPU GDN shape (its ``num_gdn_layers`` is the default layer count).
        batch: B, requests decoded together (batch rows).
        layers: GDN layers to run (default: all of the shape's); caps memory.
        draft_tokens: 1 = plain decode; T >= 2 = verify T tokens + commit the accepted prefix.
        accept_len: mean tokens kept per verify step (1..T; a float is sampled as a fixed mean by
            :func:`gdnlab.acceptance.sample_accepted`) or an :class:`~gdnlab.acceptance.AcceptanceModel`;
            default :func:`default_acceptance` (the seed's, as a chain model).
        state_dtype: pool dtype (default: the shape's).
        act_dtype: q/k/v/a/b dtype.
        device: ``cpu`` or ``cuda[:N]`` (default: CUDA if available).
        seed: seeds the pool contents, the inputs and the acceptance draws.
        sampler: ``fn(batch, T, accept_len_or_model, generator) -> [batch]`` in 1..T (default
            :func:`gdnlab.acceptance.sample_accepted`; called on the host once per step, before it).
        check_memory: refuse (with the largest ``layers`` that fits) when the pool would not fit.
        strategy: a verify strategy name or :class:`~gdnlab.strategies.VerifyStrategy` (needs
            ``draft_tokens >= 2``); ``None``: the backend's own verify + commit.
        strategy_options: options for :func:`gdnlab.strategies.get_strategy` (e.g. ``ring_slots``).
        phase_markers: launch the phase marker kernels (:mod:`gdnlab.markers`); default: on CUDA with
            a strategy when Triton is importable.
        step_plan: as an engine, compute each step's per-request metadata once for all layers (one
            :class:`~gdnlab.strategies.base.StepPlan` per step; the layers' scratches share their
            bookkeeping); ``False``: every layer computes its own (a step of single layers).
    """

    def __init__(self, backend: GDNBackend | str, shape: GDNShape, batch: int, *, layers: int | None = None,
                 draft_tokens: int = 1, accept_len: float | AcceptanceModel | None = None,
                 state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                 device: torch.device | str | None = None, seed: int = 0, sampler: Callable | None = None,
                 check_memory: bool = True, strategy=None, strategy_options: dict | None = None,
                 phase_markers: bool | None = None, step_plan: bool = True) -> None:
        self._check_counts(batch, draft_tokens, strategy)
        self.acceptance = self._acceptance(accept_len, draft_tokens)
        n_layers = self._layer_count(shape, layers)
        self.device = resolve_device(device)
        self.shape = shape
        self.B = batch
        self.L = n_layers
        self.T = draft_tokens
        self.state_dtype = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
        self.act_dtype = dtype_from_name(act_dtype)
        self._sampler = sample_accepted if sampler is None else sampler
        self._gen = torch.Generator().manual_seed(seed + 7919)

        slots_per_request = self._bind(backend, strategy, strategy_options)
        capacity = batch * slots_per_request
        if check_memory and self.device.type == "cuda":
            self._check_memory(capacity + 1)
        self._allocate(capacity, seed, act_dtype, step_plan)
        self.step_plan = bool(step_plan and self.strategy is not None)
        self._plan: StepPlan | None = None
        #: accepted lengths of the current step on the device (int32 [B]), filled before the step runs
        self.accepted = torch.ones(batch, dtype=torch.int32, device=self.device)
        self.phase_markers = self._use_phase_markers(phase_markers)
        self._marker_flag = torch.zeros(1, dtype=torch.int32, device=self.device)
        self._graph = None
        self.graph_scope = ""
        self.kernel_path: dict = {}

    @staticmethod
    def _check_counts(batch, draft_tokens, strategy) -> None:
        """B >= 1 and T >= 1 as integers, T >= 2 with a strategy; one-line :class:`InputError` else."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch must be an integer >= 1, got {batch!r}")
        if isinstance(draft_tokens, bool) or not isinstance(draft_tokens, int) or draft_tokens < 1:
            raise InputError(f"draft_tokens must be an integer >= 1 (1 = plain decode), got {draft_tokens!r}")
        if strategy is not None and draft_tokens < 2:
            raise InputError(f"strategy={strategy!r} needs draft_tokens >= 2 (a verify strategy); got "
                             f"draft_tokens={draft_tokens}")

    @staticmethod
    def _layer_count(shape: GDNShape, layers: int | None) -> int:
        """GDN layers to run: ``layers``, default all of the shape's (at most that many)."""
        n_layers = shape.num_gdn_layers if layers is None else layers
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise InputError(f"layers must be an integer >= 1, got {layers!r}")
        if layers is not None and layers > shape.num_gdn_layers:
            raise InputError(f"layers={layers} exceeds the {shape.num_gdn_layers} GDN layers of {shape.name}")
        return n_layers

    def _bind(self, backend, strategy, strategy_options: dict | None) -> int:
        """Set :attr:`strategy` (or ``None``), :attr:`backend` (``None`` with a strategy) and
        :attr:`backend_name`; return the pool slots one request owns. :class:`UnavailableError` when
        the strategy or the backend cannot run this workload here."""
        self.strategy = None
        self.backend: GDNBackend | None = None
        if strategy is not None:
            self.strategy = make_strategy(strategy, backend, **(strategy_options or {}))
            self.backend_name = self.strategy.backend
            self._check_strategy_supports()
            return int(self.strategy.slots_per_request(self.T))
        self.backend = make_workload_backend(backend)
        self.backend_name = self.backend.name
        allowed = (self.backend.decode_state_dtypes if self.mode == "decode"
                   else self.backend.verify_state_dtypes)
        if self.state_dtype not in allowed:
            raise UnavailableError(f"state_dtype {dtype_name(self.state_dtype)} is not supported by "
                                   f"{self.backend.name} {self.mode}; supported: "
                                   f"{[dtype_name(d) for d in allowed]}")
        return 1

    def _allocate(self, capacity: int, seed: int, act_dtype: torch.dtype | str, step_plan: bool) -> None:
        """The pool (``capacity`` slots besides the reserved slot 0, one layer per GDN layer), the
        requests' slots and indices, every layer's inputs, and every layer's strategy scratch (shared
        bookkeeping with ``step_plan``) or, for the backend's verify, its intermediate buffer."""
        shape, batch = self.shape, self.B
        self.pool = StatePool(shape, capacity=capacity, dtype=self.state_dtype, device=self.device,
                              layers=self.L).randomize_(seed)
        self.slots = self.pool.alloc(batch)                       # base slots 1..B
        self.indices = self.slots.clone()                         # static tensor: rows go -1 when done
        self._indices_host = self.slots.detach().cpu().clone()   # host mirror: no read-back in a step
        self.inputs: list[GDNInputs] = [make_inputs(shape, batch, self.T, act_dtype=act_dtype,
                                                    device=self.device, seed=seed + 1000 * (i + 1))
                                        for i in range(self.L)]
        self.intermediate: list[torch.Tensor] = []
        self.scratch: list = []
        if self.strategy is not None:
            for i in range(self.L):
                share = self.scratch[0] if (step_plan and i) else None
                self.scratch.append(self.strategy.allocate(self.pool.layer(i), max_batch=batch, T=self.T, share=share))
        elif self.T >= 2:
            dims = shape.call_dims(batch, self.T, self.pool.num_slots)
            self.intermediate = [self.backend.new_intermediate(dims, self.pool.layer(i)) for i in range(self.L)]

    def _use_phase_markers(self, phase_markers: bool | None) -> bool:
        """Whether steps launch the phase marker kernels: by default on CUDA with a strategy when they
        can run; ``True`` where they cannot is :class:`UnavailableError`."""
        if phase_markers is None:
            from .markers import markers_available
            phase_markers = self.strategy is not None and markers_available(self.device)[0]
        elif phase_markers:
            from .markers import markers_available
            ok, why = markers_available(self.device)
            if not ok:
                raise UnavailableError(f"phase markers: {why}")
        return bool(phase_markers)

    @staticmethod
    def _acceptance(accept_len, T: int) -> AcceptanceModel | float:
        if accept_len is None:
            return default_acceptance()
        if isinstance(accept_len, AcceptanceModel):
            return accept_len
        if isinstance(accept_len, bool) or not isinstance(accept_len, (int, float)):
            raise InputError(f"accept_len must be a number in [1, T] or an acceptance model, got {accept_len!r}")
        a = float(accept_len)
        if not 1.0 <= a <= T:
            raise InputError(f"accept_len={accept_len!r} must lie in [1, T={T}] (mean tokens kept per verify step)")
        return a

    def _check_strategy_supports(self) -> None:
        """A strategy backend's own conditions (FlashInfer: dtypes, T, K/V, batch) as one-line errors."""
        supports = getattr(type(self.strategy), "supports", None)
        if supports is None:
            return
        sm = None
        if self.device.type == "cuda":
            cap = torch.cuda.get_device_capability(self.device)
            sm = (int(cap[0]), int(cap[1]))
        HV, V, K = self.shape.state_shape
        ok, why = supports(self.state_dtype, self.T, self.B, sm, HV=HV, K=K, V=V, act_dtype=self.act_dtype)
        if not ok:
            raise UnavailableError(f"strategy {self.strategy.name} on {self.strategy.backend}: {why}")

    def _check_memory(self, pool_slots: int) -> None:
        shape = self.shape
        per_layer = pool_slots * shape.state_bytes(self.state_dtype)
        if self.strategy is not None:
            try:
                per_layer += int(self.strategy.scratch_bytes(shape, batch=self.B, T=self.T, pool_slots=pool_slots,
                                                             state_dtype=self.state_dtype))
            except Exception:  # noqa: BLE001 - an estimate only; the allocation itself still fails loudly
                pass
        elif self.T >= 2:
            probe = self.backend.new_intermediate(
                shape.call_dims(1, self.T, 1),
                torch.empty((1, *shape.state_shape), dtype=self.state_dtype, device=self.device))
            per_layer += self.B * self.T * shape.state_bytes(probe.dtype)
        need = per_layer * self.L
        free, _ = torch.cuda.mem_get_info(self.device)
        if need > 0.92 * free:
            raise InputError(f"the workload needs {need / 1e9:.1f} GB on {self.device} but {free / 1e9:.1f} GB "
                             f"are free: pass --layers N with N <= {max(1, int(0.9 * free // per_layer))} "
                             f"(or lower --batch / --draft-tokens)")

    @property
    def mode(self) -> str:
        return "decode" if self.T == 1 else "verify"

    @property
    def accept_len(self) -> float | None:
        """Mean tokens kept per verify step under the acceptance model (``None`` for decode)."""
        if self.T == 1:
            return None
        a = self.acceptance
        return float(a.mean(self.T)) if isinstance(a, AcceptanceModel) else float(a)

    # ------------------------------------------------------------------ one step
    def _marker(self, phase: str) -> None:
        if self.phase_markers:
            from .markers import launch_phase_marker
            launch_phase_marker(phase, self._marker_flag)

    def layer_forward(self, i: int) -> None:
        """Layer ``i``'s decode (T=1) or verify (T>=2) call, in its NVTX range."""
        if self.strategy is not None:
            with nvtx_range("gdn.verify"):
                self.strategy.verify(*self.inputs[i].args(), self.pool.layer(i), self.indices, self.scratch[i],
                                     validate=False, plan=self._plan)
        elif self.T == 1:
            with nvtx_range("gdn.decode"):
                self.backend.decode(*self.inputs[i].args(), self.pool.layer(i), self.indices, validate=False)
        else:
            with nvtx_range("gdn.verify"):
                self.backend.verify(*self.inputs[i].args(), self.pool.layer(i), self.indices,
                                    intermediate=self.intermediate[i], validate=False)

    def layer_commit(self, i: int, accepted: torch.Tensor | None = None) -> None:
        """Layer ``i``'s commit of the accepted prefix (``accepted``: int32 [B] on the device; default
        the workload's :attr:`accepted` buffer)."""
        acc = self.accepted if accepted is None else accepted
        with nvtx_range("gdn.commit"):
            if self.strategy is not None:
                self.strategy.commit(self.pool.layer(i), self.indices, self.scratch[i], acc, validate=False,
                                     plan=self._plan)
            else:
                self.backend.commit(self.pool.layer(i), self.indices, self.intermediate[i], acc, validate=False)

    def _forward_layers(self) -> None:
        if self.strategy is not None:
            self._plan = StepPlan() if self.step_plan else None      # a new step: its metadata, once
            self._marker("verify")
        for i in range(self.L):
            self.layer_forward(i)
        self._record_path()                      # host only: which kernel the verify/decode ran

    def _commit_layers(self, accepted: torch.Tensor | None = None) -> None:
        if self.strategy is not None:
            self._marker("commit")
        for i in range(self.L):
            self.layer_commit(i, accepted)

    def _step_body(self) -> None:
        """Every layer's verify then every layer's commit (reads :attr:`accepted`): what one
        whole-step CUDA graph holds."""
        self._forward_layers()
        self._commit_layers()

    def forward(self) -> None:
        """Every layer's :meth:`layer_forward` (from the CUDA graph when one of the forward was captured)."""
        if self._graph is not None and self.graph_scope == "forward":
            with nvtx_range(f"gdn.{self.mode}"):
                self._graph.replay()
            return
        self._forward_layers()

    def commit(self, accepted: torch.Tensor | None = None) -> None:
        """Every layer's :meth:`layer_commit` (``accepted``: default the :attr:`accepted` buffer;
        a host tensor is copied into it first)."""
        if accepted is not None:
            self.set_accepted(accepted)
        self._commit_layers()

    def set_accepted(self, accepted: torch.Tensor) -> None:
        """Copy accepted lengths ``[B]`` into the device buffer :attr:`accepted` without a host sync
        (from pinned memory on CUDA)."""
        acc = torch.as_tensor(accepted).reshape(-1).to(dtype=torch.int32)
        if acc.device.type == "cpu" and self.device.type == "cuda":
            acc = acc.pin_memory()
        self.accepted.copy_(acc, non_blocking=True)

    def enable_cuda_graph(self) -> None:
        """Capture a step in one CUDA graph. With a strategy: the **whole step**, every layer's verify
        and commit (the commit reads :attr:`accepted`, filled before each replay); without one: the
        decodes or verifies only, the commits stay eager. NVTX ranges then exist once per step, around
        the replay (``gdn.step_graph`` / ``gdn.verify``), not per layer. Raises
        :class:`~gdnlab.instrument.GraphCaptureError` on failure."""
        if self.device.type != "cuda":
            raise UnavailableError("a CUDA graph needs a CUDA device")
        self._graph, self.graph_scope = None, ""
        if self.strategy is not None:
            self._graph = capture_graph(self._step_body, warmup=1)
            self.graph_scope = "step"
        else:
            self._graph = capture_graph(self._forward_layers, warmup=1)
            self.graph_scope = "forward"

    def sample(self) -> torch.Tensor:
        """Accepted lengths ``[B]`` (int64, CPU) for one verify step, from the sampler (checked)."""
        acc = self._sampler(self.B, self.T, self.acceptance, self._gen)
        acc = torch.as_tensor(acc).reshape(-1).to(device="cpu", dtype=torch.int64)
        if acc.numel() != self.B or int(acc.min()) < 1 or int(acc.max()) > self.T:
            raise ValueError(f"the acceptance sampler returned {acc.tolist()[:8]}..., expected {self.B} values "
                             f"in 1..{self.T}")
        return acc

    def _record_path(self) -> None:
        if self.kernel_path:
            return
        if self.strategy is None:
            self.kernel_path = self.backend.last_path.as_dict()
            return
        path = getattr(self.strategy, "last_path", None)
        d = path.as_dict() if hasattr(path, "as_dict") else {}
        launch = getattr(self.strategy.ops, "last_launch", None)
        if not d.get("kernel") and isinstance(launch, dict) and launch:
            d = {**d, **launch}
        d.setdefault("kernel", f"{self.strategy.ops.name}")
        self.kernel_path = {"strategy": self.strategy.name, "strategy_backend": self.strategy.backend, **d}

    def step(self, accepted: torch.Tensor | None = None, *, _events: list | None = None) -> torch.Tensor:
        """Run one step for every layer and return the tokens each request produced (``[B]`` int64, CPU;
        0 for padding rows). ``accepted`` (verify only) overrides the sampler. Nothing inside reads a
        device value back to the host."""
        live = self._indices_host >= 0
        with nvtx_range("step"):
            if self.T == 1:
                self.forward()
                return live.to(torch.int64)
            acc = self.sample() if accepted is None else torch.as_tensor(accepted, dtype=torch.int64).cpu()
            if acc.shape != (self.B,):
                raise InputError(f"accepted must have shape [{self.B}], got {tuple(acc.shape)}")
            self.set_accepted(acc)
            if self.graph_scope == "step":
                ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) \
                    if _events is not None else None
                with nvtx_range("gdn.step_graph"):
                    if ev is not None:
                        ev[0].record()
                    self._graph.replay()
                    if ev is not None:
                        ev[1].record()
                        _events.append(ev)
            else:
                self.forward()
                self._commit_layers()
        return torch.where(live, acc, torch.zeros_like(acc))

    def reset_requests(self) -> None:
        """All requests live again (indices back to their slots)."""
        self.indices.copy_(self.slots)
        self._indices_host.copy_(self.slots.detach().cpu())

    def _finish_rows(self, done: torch.Tensor) -> None:
        """Rows ``done`` (bool [B], host) become padding rows (index -1) from the next step on."""
        self._indices_host[done] = -1
        self.indices.copy_(self._indices_host.to(self.indices.dtype))

    def committed_state(self, layer: int) -> torch.Tensor:
        """Layer ``layer``'s committed state of every request, float32 ``[B, HV, V, K]`` (in slot order,
        whether a row is live or not)."""
        pool = self.pool.layer(layer)
        if self.strategy is not None:
            return self.strategy.state(pool, self.slots, self.scratch[layer])
        return pool[self.slots.long()].float()

    # ------------------------------------------------------------------ the loop
    def run(self, osl: int, *, warmup_steps: int = 3, capture_steps: int = 0,
            progress: Callable[[WorkloadProgress], None] | None = None) -> WorkloadResult:
        """Decode until every request has ``osl`` tokens; time each step (wall clock, synchronised).

        ``warmup_steps`` run first and are not counted (JIT, caches); then the first ``capture_steps``
        measured steps run inside :func:`profiler_capture` (cudaProfilerStart/Stop) for nsys.
        ``progress`` is called after every step with a :class:`WorkloadProgress`.
        """
        if isinstance(osl, bool) or not isinstance(osl, int) or osl < 1:
            raise InputError(f"osl must be an integer >= 1, got {osl!r}")
        if warmup_steps < 0 or capture_steps < 0:
            raise InputError(f"warmup_steps and capture_steps must be >= 0, got {warmup_steps}, {capture_steps}")
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        total = self.B * osl
        t_w = time.perf_counter()
        for k in range(warmup_steps):
            self.step()
            if progress is not None:
                sync()
                progress(WorkloadProgress("warmup", k + 1, 0, total, time.perf_counter() - t_w))
        self.reset_requests()
        sync()
        tally = self._measure(osl, capture_steps, sync, progress)
        self.reset_requests()
        if tally.events:
            sync()                                       # the events' times are read next
        return self._result(osl, warmup_steps, capture_steps, tally)

    def _measure(self, osl: int, capture_steps: int, sync: Callable[[], None],
                 progress: Callable[[WorkloadProgress], None] | None) -> StepTally:
        """The measured steps: until every request has ``osl`` tokens, each step timed on the wall
        clock (synchronised); the first ``capture_steps`` inside :func:`profiler_capture`."""
        total = self.B * osl
        remaining = torch.full((self.B,), osl, dtype=torch.int64)
        tally = StepTally(events=[] if self.graph_scope == "step" else None)
        capture = contextlib.ExitStack()
        t_start = time.perf_counter_ns()
        try:
            if capture_steps:
                tally.captured = capture.enter_context(profiler_capture())
            while int(remaining.max()) > 0:
                t0 = time.perf_counter_ns()
                produced = self.step(_events=tally.events)
                sync()
                tally.step_us.append((time.perf_counter_ns() - t0) / 1e3)
                self._count_tokens(produced, remaining, tally)
                if len(tally.step_us) == capture_steps:
                    capture.close()                      # cudaProfilerStop after N measured steps
                if progress is not None:
                    progress(WorkloadProgress("measure", len(tally.step_us), tally.tokens, total,
                                              (time.perf_counter_ns() - t_start) / 1e9))
        finally:
            capture.close()
        tally.wall_us = (time.perf_counter_ns() - t_start) / 1e3
        return tally

    def _count_tokens(self, produced: torch.Tensor, remaining: torch.Tensor, tally: StepTally) -> None:
        """Add one step's tokens (``produced`` [B], host) to ``tally``, take them off ``remaining``
        (in place, [B]) and turn the rows that are done into padding rows."""
        live = remaining > 0
        if self.T >= 2:
            tally.acc_sum += int(produced[live].sum())
            tally.acc_n += int(live.sum())
        got = torch.minimum(produced, remaining)
        tally.tokens += int(got.sum())
        remaining -= got
        done = (remaining <= 0) & live
        if bool(done.any()):
            self._finish_rows(done)

    def _result(self, osl: int, warmup_steps: int, capture_steps: int, tally: StepTally) -> WorkloadResult:
        """The run's :class:`WorkloadResult` from its tally (device synchronised) and the workload's facts."""
        from .provenance import collect

        p10, med, p90 = tally.step_quantiles()
        gpu_med, busy = tally.gpu_busy(med)
        wall_us, tokens = tally.wall_us, tally.tokens
        a = self.acceptance
        return WorkloadResult(
            backend=self.backend_name, kernel=str(self.kernel_path.get("kernel", "")), shape=self.shape.name,
            layers=self.L, batch=self.B, osl=osl, mode=self.mode, draft_tokens=self.T, accept_len=self.accept_len,
            acceptance=(repr(a) if isinstance(a, AcceptanceModel) else f"FixedMean({a:g})") if self.T >= 2 else "",
            state_dtype=dtype_name(self.state_dtype), device=str(self.device), cuda_graph=self._graph is not None,
            warmup_steps=warmup_steps, capture_steps=capture_steps, captured=bool(tally.captured),
            steps=len(tally.step_us), tokens=tokens, wall_ms=wall_us / 1e3, us_per_token=wall_us / max(tokens, 1),
            tpot_us=wall_us / max(tokens / self.B, 1e-12), step_median_us=med, step_p10_us=p10, step_p90_us=p90,
            mean_accepted=tally.mean_accepted,
            strategy=self.strategy.name if self.strategy is not None else "", graph_scope=self.graph_scope,
            phase_markers=self.phase_markers, step_plan=self.step_plan, gpu_step_median_us=gpu_med, gpu_busy_pct=busy,
            kernel_path={k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                         for k, v in self.kernel_path.items()},
            provenance=collect())
