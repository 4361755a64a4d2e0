"""A decode-loop workload shaped like a serving engine's GDN part, for traces and time per token.

One :class:`~gdnlab.state.StatePool` with a layer dimension (one layer per GDN layer of the preset;
Qwen3.5-397B-A17B has 45) holds the state of ``B`` concurrent requests (the batch). Each step runs,
inside an NVTX range ``step``:

* plain decode (``draft_tokens = 1``): one ``gdn.decode`` call per layer (1 token per request);
* speculative decoding (``draft_tokens = T >= 2``): one ``gdn.verify`` of T tokens per layer (pool
  unchanged, the state after every token kept in a per-layer batch-scoped intermediate buffer, as
  SGLang's ``intermediate_ssm``), then accepted lengths in 1..T per request from
  :func:`gdnlab.acceptance.sample_accepted`, then one ``gdn.commit`` per layer. A step yields
  ``accepted`` tokens per request.

A step is :meth:`DecodeWorkload.forward` (every layer's :meth:`~DecodeWorkload.layer_forward`), the
acceptance draw, then :meth:`DecodeWorkload.commit` (every layer's
:meth:`~DecodeWorkload.layer_commit`): another verify strategy replaces those two per-layer methods.

The loop runs until every request has generated ``osl`` tokens (a request that is done becomes a
padding row, index -1, so the batch keeps its shape as in a CUDA-graph batch), so the summary gives
time per generated token against OSL and batch.

Inputs are generated once per layer and reused every step: the kernels are memory-bound on the state
and their cost does not depend on the q/k/v values, so a fixed input measures the same thing as fresh
activations (and keeps host-side random generation out of the trace).

:func:`disjoint_calls` builds the ``make_calls(n)`` factory that :func:`gdnlab.instrument.time_calls`
times: ``n`` copies of one decode or verify call, each on its own pool rows and buffers.

Command line: ``gdnlab workload`` (:mod:`gdnlab.cli.workload`).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .acceptance import AcceptanceModel, ChainAcceptance, sample_accepted
from .errors import InputError, UnavailableError
from .inputs import GDNInputs, make_inputs
from .instrument import capture_graph, nvtx_range, profiler_capture, resolve_device
from .kernels.base import GDNBackend
from .seed import SEED_ACCEPT_LEN, SEED_DRAFT_TOKENS
from .shapes import GDNShape, dtype_from_name, dtype_name
from .state import StatePool

__all__ = ["DecodeWorkload", "WorkloadResult", "WorkloadProgress", "estimate_memory_bytes", "disjoint_calls",
           "default_acceptance", "make_workload_backend"]

#: per-draft chain rate of the seed's mean accept length (3.175 at T=4), used for any T by default
_SEED_MEAN = sum(SEED_ACCEPT_LEN) / 2


def default_acceptance() -> ChainAcceptance:
    """The default acceptance model: one per-draft rate (chain model) whose mean accept length at the
    seed's T=4 is the middle of the seed's reported 3.13-3.22."""
    return ChainAcceptance.from_accept_len(_SEED_MEAN, SEED_DRAFT_TOKENS)


def make_workload_backend(backend: GDNBackend | str) -> GDNBackend:
    """A backend instance; a name gets the options SGLang runs with (FlashInfer without gdnlab's
    padding fixup). Raises :class:`UnavailableError` when it cannot run here."""
    if not isinstance(backend, str):
        return backend
    from .kernels import BackendUnavailable, make_backend
    try:
        return make_backend(backend, "sglang")
    except BackendUnavailable as exc:
        raise UnavailableError(f"backend={backend!r}: {exc}") from None


def estimate_memory_bytes(shape: GDNShape, batch: int, layers: int, draft_tokens: int = 1, *,
                          state_dtype: torch.dtype | str | None = None,
                          intermediate_dtype: torch.dtype | str = torch.float32) -> int:
    """Device bytes the workload allocates: the pool ``layers x (B+1)`` states plus, for verify,
    ``layers x B x T`` intermediate states (inputs are negligible)."""
    sd = shape.state_dtype if state_dtype is None else state_dtype
    pool = layers * (batch + 1) * shape.state_bytes(sd)
    inter = layers * batch * draft_tokens * shape.state_bytes(intermediate_dtype) if draft_tokens >= 2 else 0
    return pool + inter


# --------------------------------------------------------------------------------- timed calls


def disjoint_calls(backend: GDNBackend, shape: GDNShape, *, batch: int, draft_tokens: int = 1,
                   state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                   device: torch.device | str | None = None, seed: int = 0,
                   intermediate_dtype: torch.dtype | str | None = None,
                   check: bool = True) -> Callable[[int], list[Callable[[], object]]]:
    """``make_calls(n)`` for :func:`gdnlab.instrument.time_calls`: ``n`` closures of one decode
    (``draft_tokens = 1``) or verify call of ``batch`` rows, call ``j`` on pool rows
    ``1 + j*batch .. (j+1)*batch`` (a pool of ``n*batch + 1`` rows, slot 0 reserved) and, for verify,
    its own ``[B, T, HV, V, K]`` intermediate buffer (dtype: ``intermediate_dtype``, default the
    backend's ``new_intermediate``). The pool is filled by :meth:`StatePool.randomize_`.

    The closures run with ``validate=False`` (capturable); with ``check`` the factory runs one call
    with ``validate=True`` the first time it is used (this is where a JIT compile happens). ``make_calls``
    keeps its last pool alive only while its closures are referenced.
    """
    if not isinstance(batch, int) or batch < 1 or not isinstance(draft_tokens, int) or draft_tokens < 1:
        raise InputError(f"need batch >= 1 and draft_tokens >= 1, got batch={batch!r}, draft_tokens={draft_tokens!r}")
    dev = resolve_device(device)
    sd = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
    op = "decode" if draft_tokens == 1 else "verify"
    allowed = backend.decode_state_dtypes if op == "decode" else backend.verify_state_dtypes
    if sd not in allowed:
        raise UnavailableError(f"state_dtype {dtype_name(sd)} is not supported by {backend.name} {op}; "
                               f"supported: {[dtype_name(d) for d in allowed]}")
    args = make_inputs(shape, batch, draft_tokens, act_dtype=act_dtype, device=dev, seed=seed).args()
    checked = {"done": not check}

    def make_calls(n: int) -> list[Callable[[], object]]:
        if not isinstance(n, int) or n < 1:
            raise InputError(f"make_calls needs n >= 1 calls, got {n!r}")
        pool = StatePool(shape, n * batch, dtype=sd, device=dev).randomize_(seed)
        rows = [torch.arange(1 + j * batch, 1 + (j + 1) * batch, dtype=torch.int32, device=dev) for j in range(n)]
        if op == "decode":
            if not checked["done"]:
                backend.decode(*args, pool.tensor, rows[0], validate=True)
            calls = [lambda ix=ix: backend.decode(*args, pool.tensor, ix, validate=False) for ix in rows]
        else:
            dims = shape.call_dims(batch, draft_tokens, pool.num_slots)
            bufs = [backend.new_intermediate(dims, pool.tensor) if intermediate_dtype is None else
                    torch.zeros((batch, draft_tokens, *shape.state_shape), dtype=dtype_from_name(intermediate_dtype),
                                device=dev) for _ in range(n)]
            if not checked["done"]:
                backend.verify(*args, pool.tensor, rows[0], intermediate=bufs[0], validate=True)
            calls = [lambda ix=ix, bf=bf: backend.verify(*args, pool.tensor, ix, intermediate=bf, validate=False)
                     for ix, bf in zip(rows, bufs)]
        if not checked["done"] and dev.type == "cuda":
            torch.cuda.synchronize(dev)
        checked["done"] = True
        return calls

    return make_calls


# --------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class WorkloadProgress:
    """State of a running :meth:`DecodeWorkload.run`, passed to its ``progress`` callback."""

    phase: str          # "warmup" or "measure"
    steps: int          # steps done in this phase
    tokens: int         # tokens generated so far (measure phase)
    tokens_total: int   # B x OSL
    elapsed_s: float    # wall time of this phase so far


@dataclass
class WorkloadResult:
    """Summary of one workload run. Times in µs/ms as named; ``tokens`` counts all requests.

    ``us_per_token`` = wall / tokens (throughput view: GDN time per generated token over the batch);
    ``tpot_us`` = wall / (tokens / batch) (the GDN part of one request's time per output token).
    """

    backend: str
    kernel: str
    shape: str
    layers: int
    batch: int
    osl: int
    mode: str
    draft_tokens: int
    accept_len: float | None
    acceptance: str
    state_dtype: str
    device: str
    cuda_graph: bool
    warmup_steps: int
    capture_steps: int
    captured: bool
    steps: int
    tokens: int
    wall_ms: float
    us_per_token: float
    tpot_us: float
    step_median_us: float
    step_p10_us: float
    step_p90_us: float
    mean_accepted: float
    kernel_path: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        acc = (f", mean accepted {self.mean_accepted:.2f} (T={self.draft_tokens}, accept_len "
               f"{self.accept_len:.2f}, {self.acceptance})") if self.mode == "verify" else ""
        return (f"gdnlab workload · {self.backend} ({self.kernel}) · {self.shape} · {self.layers} GDN layers · "
                f"B={self.batch} · OSL={self.osl} · {self.mode}{acc} · state {self.state_dtype} · "
                f"{self.device}{' · CUDA graph' if self.cuda_graph else ''}\n"
                f"  steps {self.steps} · tokens {self.tokens} · wall {self.wall_ms:.1f} ms · "
                f"{self.us_per_token:.2f} µs/token (batch) · {self.tpot_us:.1f} µs/token per request · "
                f"step median {self.step_median_us:.1f} µs (p10 {self.step_p10_us:.1f}, "
                f"p90 {self.step_p90_us:.1f})"
                + (f" · profiler capture range: first {self.capture_steps} measured steps" if self.captured else ""))


# --------------------------------------------------------------------------------- workload


class DecodeWorkload:
    """The GDN part of a serving engine's decode loop over ``layers`` GDN layers and ``batch`` requests.

    Args:
        backend: a :class:`GDNBackend` (or registry name).
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
            :func:`gdnlab.acceptance.sample_accepted`).
        check_memory: refuse (with the largest ``layers`` that fits) when the pool would not fit.
    """

    def __init__(self, backend: GDNBackend | str, shape: GDNShape, batch: int, *, layers: int | None = None,
                 draft_tokens: int = 1, accept_len: float | AcceptanceModel | None = None,
                 state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                 device: torch.device | str | None = None, seed: int = 0, sampler: Callable | None = None,
                 check_memory: bool = True) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch must be an integer >= 1, got {batch!r}")
        if isinstance(draft_tokens, bool) or not isinstance(draft_tokens, int) or draft_tokens < 1:
            raise InputError(f"draft_tokens must be an integer >= 1 (1 = plain decode), got {draft_tokens!r}")
        self.acceptance = self._acceptance(accept_len, draft_tokens)
        n_layers = shape.num_gdn_layers if layers is None else layers
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise InputError(f"layers must be an integer >= 1, got {layers!r}")
        if layers is not None and layers > shape.num_gdn_layers:
            raise InputError(f"layers={layers} exceeds the {shape.num_gdn_layers} GDN layers of {shape.name}")
        self.device = resolve_device(device)
        self.backend = make_workload_backend(backend)
        self.shape = shape
        self.B = batch
        self.L = n_layers
        self.T = draft_tokens
        self.state_dtype = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
        self._sampler = sample_accepted if sampler is None else sampler
        self._gen = torch.Generator().manual_seed(seed + 7919)

        allowed = self.backend.decode_state_dtypes if self.mode == "decode" else self.backend.verify_state_dtypes
        if self.state_dtype not in allowed:
            raise UnavailableError(f"state_dtype {dtype_name(self.state_dtype)} is not supported by "
                                   f"{self.backend.name} {self.mode}; supported: {[dtype_name(d) for d in allowed]}")

        P = batch + 1
        dims = shape.call_dims(batch, self.T, P)
        if check_memory and self.device.type == "cuda":
            self._check_memory()

        self.pool = StatePool(shape, capacity=batch, dtype=self.state_dtype, device=self.device,
                              layers=self.L).randomize_(seed)
        self.slots = self.pool.alloc(batch)
        self.indices = self.slots.clone()                         # static tensor: rows go -1 when done
        self.inputs: list[GDNInputs] = [make_inputs(shape, batch, self.T, act_dtype=act_dtype,
                                                    device=self.device, seed=seed + 1000 * (i + 1))
                                        for i in range(self.L)]
        self.intermediate: list[torch.Tensor] = (
            [self.backend.new_intermediate(dims, self.pool.layer(i)) for i in range(self.L)] if self.T >= 2 else [])
        self._graph = None
        self.kernel_path: dict = {}

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

    def _check_memory(self) -> None:
        shape = self.shape
        probe = self.backend.new_intermediate(
            shape.call_dims(1, self.T, 1),
            torch.empty((1, *shape.state_shape), dtype=self.state_dtype, device=self.device)) if self.T >= 2 else None
        inter_dt = probe.dtype if probe is not None else torch.float32
        need = estimate_memory_bytes(shape, self.B, self.L, self.T, state_dtype=self.state_dtype,
                                     intermediate_dtype=inter_dt)
        free, _ = torch.cuda.mem_get_info(self.device)
        if need > 0.92 * free:
            per_layer = need / self.L
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
    def layer_forward(self, i: int) -> None:
        """Layer ``i``'s decode (T=1) or verify (T>=2) call, in its NVTX range."""
        if self.T == 1:
            with nvtx_range("gdn.decode"):
                self.backend.decode(*self.inputs[i].args(), self.pool.layer(i), self.indices, validate=False)
        else:
            with nvtx_range("gdn.verify"):
                self.backend.verify(*self.inputs[i].args(), self.pool.layer(i), self.indices,
                                    intermediate=self.intermediate[i], validate=False)

    def layer_commit(self, i: int, accepted: torch.Tensor) -> None:
        """Layer ``i``'s commit of the accepted prefix (``accepted``: int32 [B] on the device)."""
        with nvtx_range("gdn.commit"):
            self.backend.commit(self.pool.layer(i), self.indices, self.intermediate[i], accepted, validate=False)

    def forward(self) -> None:
        """Every layer's :meth:`layer_forward` (from the CUDA graph when one was captured)."""
        if self._graph is not None:
            with nvtx_range(f"gdn.{self.mode}"):
                self._graph.replay()
            return
        for i in range(self.L):
            self.layer_forward(i)

    def commit(self, accepted: torch.Tensor) -> None:
        """Every layer's :meth:`layer_commit`."""
        acc_dev = accepted.to(device=self.device, dtype=torch.int32)
        for i in range(self.L):
            self.layer_commit(i, acc_dev)

    def enable_cuda_graph(self) -> None:
        """Capture the forward part of a step (all layers' decode or verify) in one CUDA graph; commits
        stay eager (they depend on the sampled accepted lengths). NVTX ranges then exist once, around
        the replay, not per layer. Raises :class:`~gdnlab.instrument.GraphCaptureError` on failure."""
        if self.device.type != "cuda":
            raise UnavailableError("a CUDA graph needs a CUDA device")
        self._graph = None
        layers = lambda: [self.layer_forward(i) for i in range(self.L)]
        self._graph = capture_graph(layers, warmup=1)

    def sample(self) -> torch.Tensor:
        """Accepted lengths ``[B]`` (int64, CPU) for one verify step, from the sampler (checked)."""
        acc = self._sampler(self.B, self.T, self.acceptance, self._gen)
        acc = torch.as_tensor(acc).reshape(-1).to(device="cpu", dtype=torch.int64)
        if acc.numel() != self.B or int(acc.min()) < 1 or int(acc.max()) > self.T:
            raise ValueError(f"the acceptance sampler returned {acc.tolist()[:8]}..., expected {self.B} values "
                             f"in 1..{self.T}")
        return acc

    def step(self, accepted: torch.Tensor | None = None) -> torch.Tensor:
        """Run one step for every layer and return the tokens each request produced (``[B]`` int64, CPU;
        0 for padding rows). ``accepted`` (verify only) overrides the sampler."""
        live = (self.indices >= 0).cpu()
        with nvtx_range("step"):
            self.forward()
            if not self.kernel_path:
                self.kernel_path = self.backend.last_path.as_dict()
            if self.T == 1:
                return live.to(torch.int64)
            acc = self.sample() if accepted is None else torch.as_tensor(accepted, dtype=torch.int64).cpu()
            if acc.shape != (self.B,):
                raise InputError(f"accepted must have shape [{self.B}], got {tuple(acc.shape)}")
            self.commit(acc)
        return torch.where(live, acc, torch.zeros_like(acc))

    def reset_requests(self) -> None:
        """All requests live again (indices back to their slots)."""
        self.indices.copy_(self.slots)

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
        remaining = torch.full((self.B,), osl, dtype=torch.int64)
        step_us: list[float] = []
        tokens = acc_sum = acc_n = 0
        captured = False
        capture = contextlib.ExitStack()
        t_start = time.perf_counter_ns()
        try:
            if capture_steps:
                captured = capture.enter_context(profiler_capture())
            while int(remaining.max()) > 0:
                t0 = time.perf_counter_ns()
                produced = self.step()
                sync()
                step_us.append((time.perf_counter_ns() - t0) / 1e3)
                live = remaining > 0
                if self.T >= 2:
                    acc_sum += int(produced[live].sum())
                    acc_n += int(live.sum())
                got = torch.minimum(produced, remaining)
                tokens += int(got.sum())
                remaining -= got
                done = (remaining <= 0) & live
                if bool(done.any()):
                    self.indices[done.to(self.indices.device)] = -1
                if len(step_us) == capture_steps:
                    capture.close()                      # cudaProfilerStop after N measured steps
                if progress is not None:
                    progress(WorkloadProgress("measure", len(step_us), tokens, total,
                                              (time.perf_counter_ns() - t_start) / 1e9))
        finally:
            capture.close()
        wall_us = (time.perf_counter_ns() - t_start) / 1e3
        self.reset_requests()
        from .provenance import collect
        from .stats import quantiles
        p10, med, p90 = quantiles(step_us, (0.1, 0.5, 0.9))
        a = self.acceptance
        return WorkloadResult(
            backend=self.backend.name, kernel=str(self.kernel_path.get("kernel", "")), shape=self.shape.name,
            layers=self.L, batch=self.B, osl=osl, mode=self.mode, draft_tokens=self.T, accept_len=self.accept_len,
            acceptance=(repr(a) if isinstance(a, AcceptanceModel) else f"FixedMean({a:g})") if self.T >= 2 else "",
            state_dtype=dtype_name(self.state_dtype), device=str(self.device), cuda_graph=self._graph is not None,
            warmup_steps=warmup_steps, capture_steps=capture_steps, captured=bool(captured), steps=len(step_us),
            tokens=tokens, wall_ms=wall_us / 1e3, us_per_token=wall_us / max(tokens, 1),
            tpot_us=wall_us / max(tokens / self.B, 1e-12), step_median_us=med, step_p10_us=p10, step_p90_us=p90,
            mean_accepted=(acc_sum / acc_n) if acc_n else 1.0,
            kernel_path={k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                         for k, v in self.kernel_path.items()},
            provenance=collect())
