"""A decode-loop workload shaped like a serving engine's GDN part, for traces and time-per-token.

One :class:`StatePool` with a layer dimension (one layer per GDN layer of the preset; Qwen3.5-397B-A17B
has 45) holds the state of ``C`` concurrent requests. Each step runs, inside an NVTX range ``step``:

* plain decode: one ``gdn.decode`` call per layer (1 token per request per step);
* speculative decoding (``verify_tokens = T >= 2``): one ``gdn.verify`` of T tokens per layer (pool
  unchanged, state after every token kept in a per-layer batch-scoped intermediate buffer, as SGLang's
  ``intermediate_ssm``), then accepted lengths in 1..T are sampled per request (acceptance model,
  :func:`sample_accepted` or ``gdnlab.spec``'s sampler when importable), then one ``gdn.commit`` per
  layer. A step yields ``accepted`` tokens per request.

The loop runs until every request has generated ``osl`` tokens (a request that is done becomes a
padding row, index -1, so the batch keeps its shape as in a CUDA-graph batch), so the summary gives
time per generated token against OSL and concurrency.

Inputs are generated once per layer and reused every step: the kernels are memory-bound on the state
and their cost does not depend on the q/k/v values, so a fixed input measures the same thing as fresh
activations (and keeps host-side random generation out of the trace).

``python -m gdnlab.workload --backend flashinfer --preset qwen3.5-397b-a17b --tp 4 --concurrency 64
--osl 512 [--verify-tokens 4 --accept-rate 0.7] [--state-dtype bf16] [--capture-steps 32] [--layers N]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .inputs import GDNInputs, make_inputs
from .instrument import GraphCaptureError, capture_graph, cuda_available, nvtx_range, profiler_capture
from .kernels.base import GDNBackend
from .kernels.validation import GDNCallDims
from .shapes import GDNShape, dtype_from_name, dtype_name, preset
from .state import StatePool

__all__ = ["sample_accepted", "resolve_sampler", "rate_for_accept_len", "DecodeWorkload", "WorkloadResult", "estimate_memory_bytes",
           "configure_parser", "run", "main"]


# --------------------------------------------------------------------------------- acceptance model


def sample_accepted(batch: int, T: int, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Accepted lengths ``[batch]`` (int64, CPU) in ``1..T`` under a chain model.

    Verify runs ``T`` tokens: the last committed token plus ``T-1`` drafts. Each draft is accepted with
    probability ``rate`` independently, acceptance stops at the first rejection, and the verify's own
    next token (the "bonus") always counts: ``accepted = 1 + leading accepted drafts``, so
    ``E[accepted] = sum_{i<T} rate^i`` (T=4, rate=0.7: 2.53).
    """
    if batch < 0 or T < 1:
        raise ValueError(f"need batch >= 0 and T >= 1, got batch={batch}, T={T}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"accept rate must be in [0, 1], got {rate}")
    if T == 1 or batch == 0:
        return torch.ones(batch, dtype=torch.int64)
    ok = torch.rand(batch, T - 1, generator=generator) < rate
    leading = torch.cumprod(ok.to(torch.int64), dim=1).sum(dim=1)
    return 1 + leading


def _spec_sampler() -> Callable | None:
    """``gdnlab.spec``'s sampler adapted to ``(batch, T, rate, generator)`` (its signature is
    ``sample_accepted(batch, T, model, generator)`` with a float read as a *mean length*, so the
    per-draft rate is wrapped in ``spec.ChainAcceptance(rate)``, the same chain model)."""
    try:
        from . import spec  # written by another engineer; optional
        fn, chain = spec.sample_accepted, spec.ChainAcceptance
    except Exception:  # noqa: BLE001 - absent or broken: use the local chain model
        return None

    def sampler(batch: int, T: int, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
        return fn(batch, T, chain(float(rate)), generator)

    return sampler


def resolve_sampler(prefer_spec: bool = True) -> tuple[Callable, str]:
    """``(sampler, source)``: ``gdnlab.spec.sample_accepted`` with ``ChainAcceptance(rate)`` when
    importable, else the local chain model :func:`sample_accepted` (the same distribution).

    The sampler is called as ``sampler(batch, T, rate, generator)`` and returns ``batch`` ints in 1..T.
    """
    fn = _spec_sampler() if prefer_spec else None
    if fn is not None:
        return fn, "gdnlab.spec.sample_accepted(ChainAcceptance(rate))"
    return sample_accepted, "gdnlab.workload.sample_accepted (chain model)"


def rate_for_accept_len(accept_len: float, T: int) -> float:
    """Per-draft rate whose chain-model mean accept length at ``T`` positions is ``accept_len``
    (``gdnlab.spec.accept_len_to_rate`` when importable, else bisection here)."""
    try:
        from .spec import accept_len_to_rate
        return float(accept_len_to_rate(accept_len, T))
    except ImportError:
        pass
    a = float(accept_len)
    if not 1.0 <= a <= T:
        raise ValueError(f"accept_len must lie in [1, T={T}], got {accept_len!r}")
    mean = lambda p: float(T) if p >= 1.0 else (1.0 - p ** T) / (1.0 - p)
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(mid) < a else (lo, mid)
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------- workload


def estimate_memory_bytes(shape: GDNShape, concurrency: int, layers: int, verify_tokens: int = 1, *,
                          state_dtype: torch.dtype | str | None = None,
                          intermediate_dtype: torch.dtype | str = torch.float32) -> int:
    """Device bytes the workload allocates: the pool ``layers x (C+1)`` states plus, for verify,
    ``layers x C x T`` intermediate states (inputs are negligible)."""
    sd = shape.state_dtype if state_dtype is None else state_dtype
    pool = layers * (concurrency + 1) * shape.state_bytes(sd)
    inter = layers * concurrency * verify_tokens * shape.state_bytes(intermediate_dtype) if verify_tokens >= 2 else 0
    return pool + inter


@dataclass
class WorkloadResult:
    """Summary of one workload run. Times in µs/ms as named; ``tokens`` counts all requests.

    ``us_per_token`` = wall / tokens (throughput view: GDN time per generated token over the batch);
    ``tpot_us`` = wall / (tokens / concurrency) (the GDN part of one request's time per output token).
    """

    backend: str
    kernel: str
    shape: str
    layers: int
    concurrency: int
    osl: int
    mode: str
    verify_tokens: int
    accept_rate: float | None
    sampler: str
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
    us_per_step_median: float
    us_per_step_p10: float
    us_per_step_p90: float
    mean_accepted: float
    kernel_path: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        acc = f", mean accepted {self.mean_accepted:.2f} (T={self.verify_tokens}, rate={self.accept_rate})" \
            if self.mode == "verify" else ""
        return (f"gdnlab workload · {self.backend} ({self.kernel}) · {self.shape} · {self.layers} GDN layers · "
                f"C={self.concurrency} · OSL={self.osl} · {self.mode}{acc} · state {self.state_dtype} · "
                f"{self.device}{' · CUDA graph' if self.cuda_graph else ''}\n"
                f"  steps {self.steps} · tokens {self.tokens} · wall {self.wall_ms:.1f} ms · "
                f"{self.us_per_token:.2f} µs/token (batch) · {self.tpot_us:.1f} µs/token per request · "
                f"step median {self.us_per_step_median:.1f} µs (p10 {self.us_per_step_p10:.1f}, "
                f"p90 {self.us_per_step_p90:.1f})"
                + (" · profiler capture range: first %d measured steps" % self.capture_steps
                   if self.captured else ""))


class DecodeWorkload:
    """The GDN part of a serving engine's decode loop over ``layers`` GDN layers and ``concurrency`` requests.

    Args:
        backend: a :class:`GDNBackend` (or registry name).
        shape: per-GPU GDN shape (its ``num_gdn_layers`` is the default layer count).
        concurrency: C, requests decoded together (batch rows).
        layers: GDN layers to run (default: all of the shape's); caps memory.
        verify_tokens: 1 = plain decode; T >= 2 = verify T tokens + commit the accepted prefix.
        accept_rate: per-draft acceptance probability for the sampler.
        state_dtype: pool dtype (default: the shape's).
        act_dtype: q/k/v/a/b dtype.
        device: where everything lives (default: CUDA if available).
        seed: seeds the pool contents, the inputs and the acceptance draws.
        sampler: ``fn(batch, T, rate, generator) -> [batch]`` in 1..T (default :func:`resolve_sampler`).
    """

    def __init__(self, backend: GDNBackend | str, shape: GDNShape, concurrency: int, *, layers: int | None = None,
                 verify_tokens: int = 1, accept_rate: float = 0.7, state_dtype: torch.dtype | str | None = None,
                 act_dtype: torch.dtype | str = torch.bfloat16, device: torch.device | str | None = None,
                 seed: int = 0, sampler: Callable | None = None, sampler_name: str | None = None,
                 check_memory: bool = True) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not isinstance(verify_tokens, int) or verify_tokens < 1:
            raise ValueError(f"verify_tokens must be an integer >= 1 (1 = plain decode), got {verify_tokens!r}")
        if not 0.0 <= float(accept_rate) <= 1.0:
            raise ValueError(f"accept_rate must be in [0, 1], got {accept_rate!r}")
        n_layers = shape.num_gdn_layers if layers is None else layers
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        if layers is not None and layers > shape.num_gdn_layers:
            raise ValueError(f"layers={layers} exceeds the {shape.num_gdn_layers} GDN layers of {shape.name}")
        if isinstance(backend, str):
            from .kernels import BackendUnavailable
            from .sweep import SGLANG_LIKE_OPTIONS, make_backend
            try:
                self.backend = make_backend(backend, SGLANG_LIKE_OPTIONS.get(backend.strip().lower()))
            except BackendUnavailable as exc:
                raise ValueError(f"backend={backend!r}: {exc}") from None
        else:
            self.backend = backend
        self.shape = shape
        self.C = concurrency
        self.L = n_layers
        self.T = verify_tokens
        self.accept_rate = float(accept_rate)
        self.state_dtype = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
        self.device = torch.device(device) if device is not None else (
            torch.device("cuda") if cuda_available() else torch.device("cpu"))
        if self.device.type == "cuda" and not cuda_available():
            raise ValueError(f"device={device!r} asks for CUDA, but no CUDA device is available here")
        if sampler is None:
            self._sampler, self.sampler_name = resolve_sampler()
        else:
            self._sampler, self.sampler_name = sampler, sampler_name or getattr(sampler, "__qualname__", "custom")
        self._gen = torch.Generator().manual_seed(seed + 7919)

        op = "decode" if self.T == 1 else "verify"
        allowed = self.backend.decode_state_dtypes if op == "decode" else self.backend.verify_state_dtypes
        if self.state_dtype not in allowed:
            raise ValueError(f"state_dtype {dtype_name(self.state_dtype)} is not supported by "
                             f"{self.backend.name} {op}; supported: {[dtype_name(d) for d in allowed]}")

        P = concurrency + 1
        dims = GDNCallDims(concurrency, self.T, shape.H, shape.HV, shape.K, shape.V, P)
        if check_memory and self.device.type == "cuda":
            probe = self.backend.new_intermediate(
                GDNCallDims(1, self.T, shape.H, shape.HV, shape.K, shape.V, 1),
                torch.empty((1, *shape.state_shape), dtype=self.state_dtype, device=self.device)) \
                if self.T >= 2 else None
            inter_dt = probe.dtype if probe is not None else torch.float32
            need = estimate_memory_bytes(shape, concurrency, self.L, self.T, state_dtype=self.state_dtype,
                                         intermediate_dtype=inter_dt)
            free, _ = torch.cuda.mem_get_info(self.device)
            if need > 0.92 * free:
                per_layer = need / self.L
                raise ValueError(f"the workload needs {need / 1e9:.1f} GB on {self.device} but {free / 1e9:.1f} GB "
                                 f"are free: pass --layers N with N <= {max(1, int(0.9 * free // per_layer))} "
                                 f"(or lower --concurrency / --verify-tokens)")

        self.pool = StatePool(shape, capacity=concurrency, dtype=self.state_dtype, device=self.device, layers=self.L)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        self.pool.tensor.normal_(0.0, 0.1, generator=gen)        # on-device fill: fast for 10 GB pools
        self.slots = self.pool.alloc(concurrency)
        self.indices = self.slots.clone()                         # static tensor: rows go -1 when done
        self.inputs: list[GDNInputs] = [make_inputs(shape, concurrency, self.T, act_dtype=act_dtype,
                                                    device=self.device, seed=seed + 1000 * (i + 1))
                                        for i in range(self.L)]
        self.intermediate: list[torch.Tensor] = (
            [self.backend.new_intermediate(dims, self.pool.layer(i)) for i in range(self.L)] if self.T >= 2 else [])
        self._graph = None
        self.kernel_path: dict = {}

    # ------------------------------------------------------------------ one step
    @property
    def mode(self) -> str:
        return "decode" if self.T == 1 else "verify"

    def _forward(self) -> None:
        """All layers' decode (T=1) or verify (T>=2) calls, each in its NVTX range."""
        if self.T == 1:
            for i in range(self.L):
                with nvtx_range("gdn.decode"):
                    self.backend.decode(*self.inputs[i].args(), self.pool.layer(i), self.indices, validate=False)
        else:
            for i in range(self.L):
                with nvtx_range("gdn.verify"):
                    self.backend.verify(*self.inputs[i].args(), self.pool.layer(i), self.indices,
                                        intermediate=self.intermediate[i], validate=False)

    def enable_cuda_graph(self) -> None:
        """Capture the forward part of a step (all layers' decode or verify) in one CUDA graph; commits
        stay eager (they depend on the sampled accepted lengths). NVTX ranges then exist once, around
        the replay, not per layer."""
        if self.device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        self._graph = capture_graph(self._forward, warmup=1)

    def sample(self) -> torch.Tensor:
        """Accepted lengths ``[C]`` (int64, CPU) for one verify step, from the sampler (checked)."""
        try:
            acc = self._sampler(self.C, self.T, self.accept_rate, self._gen)
            acc = torch.as_tensor(acc, dtype=torch.int64).reshape(-1).cpu()
            if acc.numel() != self.C or int(acc.min()) < 1 or int(acc.max()) > self.T:
                raise ValueError(f"sampler returned {acc.tolist()[:8]}..., expected {self.C} values in 1..{self.T}")
        except Exception as exc:
            if self._sampler is sample_accepted:
                raise
            warnings.warn(f"{self.sampler_name} failed ({type(exc).__name__}: {exc}); using the chain model",
                          stacklevel=2)
            self._sampler, self.sampler_name = sample_accepted, "gdnlab.workload.sample_accepted (chain model)"
            acc = sample_accepted(self.C, self.T, self.accept_rate, self._gen)
        return acc

    def step(self, accepted: torch.Tensor | None = None) -> torch.Tensor:
        """Run one step for every layer and return the tokens each request produced (``[C]`` int64, CPU;
        0 for padding rows). ``accepted`` (verify only) overrides the sampler."""
        live = (self.indices >= 0).cpu()
        with nvtx_range("step"):
            if self._graph is not None:
                with nvtx_range(f"gdn.{self.mode}"):
                    self._graph.replay()
            else:
                self._forward()
            if not self.kernel_path:
                self.kernel_path = self.backend.last_path.as_dict()
            if self.T == 1:
                produced = live.to(torch.int64)
            else:
                acc = self.sample() if accepted is None else torch.as_tensor(accepted, dtype=torch.int64).cpu()
                if acc.shape != (self.C,):
                    raise ValueError(f"accepted must have shape [{self.C}], got {tuple(acc.shape)}")
                acc_dev = acc.to(device=self.device, dtype=torch.int32)
                for i in range(self.L):
                    with nvtx_range("gdn.commit"):
                        self.backend.commit(self.pool.layer(i), self.indices, self.intermediate[i], acc_dev,
                                            validate=False)
                produced = torch.where(live, acc, torch.zeros_like(acc))
        return produced

    def reset_requests(self) -> None:
        """All requests live again (indices back to their slots)."""
        self.indices.copy_(self.slots)

    # ------------------------------------------------------------------ the loop
    def run(self, osl: int, *, warmup_steps: int = 3, capture_steps: int = 0) -> WorkloadResult:
        """Decode until every request has ``osl`` tokens; time each step (wall clock, synchronised).

        ``warmup_steps`` run first and are not counted (JIT, caches); then the first ``capture_steps``
        measured steps run inside :func:`profiler_capture` (cudaProfilerStart/Stop) for nsys.
        """
        if not isinstance(osl, int) or osl < 1:
            raise ValueError(f"osl must be an integer >= 1, got {osl!r}")
        if warmup_steps < 0 or capture_steps < 0:
            raise ValueError(f"warmup_steps and capture_steps must be >= 0, got {warmup_steps}, {capture_steps}")
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        for _ in range(warmup_steps):
            self.step()
        self.reset_requests()
        sync()
        remaining = torch.full((self.C,), osl, dtype=torch.int64)
        step_us: list[float] = []
        tokens = 0
        acc_sum = acc_n = 0
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
        finally:
            capture.close()
        wall_us = (time.perf_counter_ns() - t_start) / 1e3
        self.reset_requests()
        s = sorted(step_us)
        q = lambda p: s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]
        from .provenance import collect
        return WorkloadResult(
            backend=self.backend.name, kernel=str(self.kernel_path.get("kernel", "")), shape=self.shape.name,
            layers=self.L, concurrency=self.C, osl=osl, mode=self.mode, verify_tokens=self.T,
            accept_rate=self.accept_rate if self.T >= 2 else None, sampler=self.sampler_name if self.T >= 2 else "",
            state_dtype=dtype_name(self.state_dtype), device=str(self.device), cuda_graph=self._graph is not None,
            warmup_steps=warmup_steps, capture_steps=capture_steps, captured=bool(captured), steps=len(step_us),
            tokens=tokens, wall_ms=wall_us / 1e3, us_per_token=wall_us / max(tokens, 1),
            tpot_us=wall_us / max(tokens / self.C, 1e-12), us_per_step_median=statistics.median(s),
            us_per_step_p10=q(0.1), us_per_step_p90=q(0.9),
            mean_accepted=(acc_sum / acc_n) if acc_n else 1.0,
            kernel_path={k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                         for k, v in self.kernel_path.items()},
            provenance=collect())


# --------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m gdnlab.workload`` (also mountable as a ``gdnlab`` subcommand)."""
    parser.add_argument("--backend", default="flashinfer", help="kernel backend (gdnlab backends lists them)")
    parser.add_argument("--preset", default="qwen3.5-397b-a17b", help="model preset (gdnlab.shapes)")
    parser.add_argument("--tp", type=int, default=4, help="tensor-parallel degree (heads are divided)")
    parser.add_argument("--concurrency", "-c", type=int, default=64, help="concurrent requests C (batch rows)")
    parser.add_argument("--osl", type=int, default=512, help="output length: tokens each request generates")
    parser.add_argument("--verify-tokens", type=int, default=1,
                        help="T >= 2: speculative decoding, verify T tokens per layer then commit (1 = plain decode)")
    parser.add_argument("--accept-rate", type=float, default=0.7, help="per-draft acceptance probability (chain model)")
    parser.add_argument("--accept-len", type=float, default=None,
                        help="mean accept length in 1..T instead of --accept-rate (e.g. 3.17 at T=4, the seed's)")
    parser.add_argument("--state-dtype", default=None, help="pool dtype fp32|bf16 (default: the preset's)")
    parser.add_argument("--act-dtype", default="bf16", help="q/k/v dtype")
    parser.add_argument("--layers", type=int, default=None, help="run only N GDN layers (caps memory)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (JIT, caches)")
    parser.add_argument("--capture-steps", type=int, default=0,
                        help="wrap the first N measured steps in cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="replay each step's decode/verify calls from one CUDA graph (commits stay eager)")
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary as JSON here")


def run(args: argparse.Namespace) -> int:
    shape = preset(args.preset, tp=args.tp)
    rate = args.accept_rate
    if args.accept_len is not None:
        if args.verify_tokens < 2:
            raise ValueError("--accept-len needs --verify-tokens T >= 2")
        rate = rate_for_accept_len(args.accept_len, args.verify_tokens)
    wl = DecodeWorkload(args.backend, shape, args.concurrency, layers=args.layers, verify_tokens=args.verify_tokens,
                        accept_rate=rate, state_dtype=args.state_dtype, act_dtype=args.act_dtype,
                        device=args.device, seed=args.seed)
    if args.cuda_graph:
        try:
            wl.enable_cuda_graph()
        except GraphCaptureError as exc:
            print(f"gdnlab workload: CUDA graph capture failed, running eagerly: {exc}", file=sys.stderr)
    res = wl.run(args.osl, warmup_steps=args.warmup_steps, capture_steps=args.capture_steps)
    print(res.summary())
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(res.as_dict(), indent=2, default=str))
        tmp.replace(path)
        print(f"summary written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdnlab.workload", description=__doc__.splitlines()[0])
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        print(f"gdnlab workload: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
