"""``gdnlab workload``: the GDN part of a serving engine's decode loop; time per step and per token.

``gdnlab workload --backend triton --preset qwen3.5-397b-a17b --tp 4 --batch 64 --osl 512
[--draft-tokens 4 --accept-len 3.17 --strategy replay_ring] [--state-dtype bfloat16] [--cuda-graph]
[--capture-steps 8] [--layers N]``

With ``--draft-tokens T >= 2`` each step verifies and commits through a verify strategy
(:mod:`gdnlab.strategies`, default ``full_cache``; ``--strategy none`` runs the backend's own verify
and torch commit); ``--cuda-graph`` then replays the whole step (every layer's verify and commit)
from one CUDA graph.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="flashinfer", help="kernel backend (gdnlab backends lists them)")
    parser.add_argument("--preset", default="qwen3.5-397b-a17b",
                        help="model preset, NAME or NAME@tpN (gdnlab.shapes)")
    parser.add_argument("--tp", type=int, default=4, help="tensor-parallel degree (heads are divided)")
    parser.add_argument("--batch", "--concurrency", "-c", dest="batch", type=int, default=64,
                        help="B: concurrent requests decoded together (batch rows)")
    parser.add_argument("--osl", type=int, default=512, help="output length: tokens each request generates")
    parser.add_argument("--draft-tokens", "--verify-tokens", dest="draft_tokens", type=int, default=1,
                        help="T: 1 = plain decode; T >= 2 = speculative decoding, verify T tokens per layer "
                             "then commit the accepted prefix")
    parser.add_argument("--accept-len", type=float, default=None,
                        help="mean tokens kept per verify step, in 1..T (e.g. 3.17 at T=4, the seed's); "
                             "default: the seed's acceptance as a per-draft chain model")
    parser.add_argument("--strategy", default="full_cache",
                        help="verify strategy for --draft-tokens >= 2: full_cache | token_slots | recompute | "
                             "recompute_fused | replay_ring (gdnlab.strategies, on the --backend's kernels), or "
                             "none for the backend's own verify + torch commit; ignored for plain decode")
    parser.add_argument("--strategy-option", action="append", default=[], metavar="KEY=VALUE",
                        help="option of the strategy (repeatable), e.g. ring_slots=32, intermediate_dtype=float32")
    parser.add_argument("--state-dtype", default=None,
                        help="state pool dtype float32 | bfloat16 (default: the preset's)")
    parser.add_argument("--act-dtype", default="bfloat16", help="q/k/v/a/b dtype")
    parser.add_argument("--layers", type=int, default=None,
                        help="run only N GDN layers (caps memory; default: all of the preset's)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (JIT, caches)")
    parser.add_argument("--capture-steps", type=int, default=0,
                        help="wrap the first N measured steps in cudaProfilerStart/Stop "
                             "(nsys --capture-range=cudaProfilerApi)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="replay each step from one CUDA graph: with a strategy the whole step (every "
                             "layer's verify and commit); with --strategy none or decode the verifies/decodes only")
    parser.add_argument("--no-phase-markers", action="store_true",
                        help="do not launch the two phase marker kernels per step (gdnlab.markers: they split a "
                             "trace of whole-step CUDA graph replays into verify / commit / fold)")
    parser.add_argument("--no-step-plan", action="store_true",
                        help="every layer computes its own per-request metadata (cursors, slot lists) instead of "
                             "once per step for all layers as an engine does")
    parser.add_argument("--device", default=None, help="cpu | cuda[:N] (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the pool, the inputs and the acceptance draws")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the summary as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


class _Progress:
    """A progress line on stderr: rewritten in place on a terminal, one line every few seconds otherwise."""

    def __init__(self, stream=None, every_s: float | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (0.2 if self.tty else 5.0)
        self._last = 0.0
        self._shown = False

    def __call__(self, p) -> None:
        now = time.monotonic()
        last_step = p.phase == "measure" and p.tokens >= p.tokens_total
        if now - self._last < self.every_s and not last_step:
            return
        self._last = now
        if p.phase == "warmup":
            text = f"gdnlab workload: warm-up step {p.steps} ({p.elapsed_s:.1f} s)"
        else:
            pct = 100.0 * p.tokens / max(p.tokens_total, 1)
            text = (f"gdnlab workload: step {p.steps} · tokens {p.tokens}/{p.tokens_total} ({pct:.0f} %) · "
                    f"{p.elapsed_s:.1f} s")
        if self.tty:
            self.stream.write("\r" + text.ljust(78))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _strategy_options(items: list[str]) -> dict:
    """``["ring_slots=32", "intermediate_dtype=float32"]`` -> ``{"ring_slots": 32, ...}`` (ints parsed)."""
    from ..errors import InputError

    out: dict = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--strategy-option {item!r}: expected KEY=VALUE, e.g. ring_slots=32")
        value = value.strip()
        try:
            out[key.strip()] = int(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _strategy(args: argparse.Namespace) -> str | None:
    name = (args.strategy or "none").strip().lower()
    if args.draft_tokens < 2 or name in ("none", ""):
        return None
    return name


def _checked_parts(args: argparse.Namespace, shape, strategy: str | None, options: dict):
    """The quick checks of the values, device, backend and strategy, done before the progress line so
    that a bad value is the only line on stderr. Returns the backend (an instance when no strategy)
    and the strategy (an instance or ``None``) for :class:`gdnlab.workload.DecodeWorkload`."""
    from ..errors import InputError
    from ..instrument import resolve_device
    from ..shapes import dtype_from_name
    from ..workload import make_strategy, make_workload_backend

    for flag, n in (("--batch", args.batch), ("--osl", args.osl), ("--draft-tokens", args.draft_tokens),
                    ("--layers", 1 if args.layers is None else args.layers)):
        if n < 1:
            raise InputError(f"{flag} must be an integer >= 1, got {n}")
    if args.layers is not None and args.layers > shape.num_gdn_layers:
        raise InputError(f"--layers {args.layers} exceeds the {shape.num_gdn_layers} GDN layers of {shape.name}")
    if args.accept_len is not None and not 1.0 <= args.accept_len <= args.draft_tokens:
        raise InputError(f"--accept-len {args.accept_len:g} must lie in [1, T={args.draft_tokens}] (mean tokens "
                         "kept per verify step)")
    resolve_device(args.device)
    for d in (args.state_dtype, args.act_dtype):
        if d is not None:
            dtype_from_name(d)
    if strategy is not None:
        return args.backend, make_strategy(strategy, args.backend, **options)
    return make_workload_backend(args.backend), None


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..instrument import GraphCaptureError
    from ..shapes import parse_preset, preset
    from ..workload import DecodeWorkload

    if args.accept_len is not None and args.draft_tokens < 2:
        raise InputError("--accept-len needs --draft-tokens T >= 2")
    shape = parse_preset(args.preset) if "@" in args.preset else preset(args.preset, tp=args.tp)
    strategy = _strategy(args)
    options = _strategy_options(args.strategy_option)
    if options and strategy is None:
        raise InputError("--strategy-option needs a verify strategy (--strategy NAME with --draft-tokens >= 2)")
    backend, strategy_obj = _checked_parts(args, shape, strategy, options)
    progress = None if args.no_progress else _Progress()
    if progress is not None:
        what = "decode" if args.draft_tokens == 1 else f"verify ({strategy or 'backend verify + commit'})"
        print(f"gdnlab workload: building {args.backend} {what} "
              f"workload (B={args.batch}, {args.layers or shape.num_gdn_layers} layers, random state pool)...",
              file=sys.stderr, flush=True)
    wl = DecodeWorkload(backend, shape, args.batch, layers=args.layers, draft_tokens=args.draft_tokens,
                        accept_len=args.accept_len, state_dtype=args.state_dtype, act_dtype=args.act_dtype,
                        device=args.device, seed=args.seed, strategy=strategy_obj,
                        phase_markers=False if args.no_phase_markers else None, step_plan=not args.no_step_plan)
    if args.cuda_graph:
        try:
            wl.enable_cuda_graph()
        except GraphCaptureError as exc:
            print(f"gdnlab workload: CUDA graph capture failed, running eagerly: {exc}", file=sys.stderr)
    try:
        res = wl.run(args.osl, warmup_steps=args.warmup_steps, capture_steps=args.capture_steps, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    print(res.summary())
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(res.as_dict(), indent=2, default=str))
        tmp.replace(path)
        print(f"summary written to {path}")
    return 0
