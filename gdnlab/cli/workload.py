"""``gdnlab workload``: the GDN part of a serving engine's decode loop; time per step and per token.

``gdnlab workload --backend flashinfer --preset qwen3.5-397b-a17b --tp 4 --batch 64 --osl 512
[--draft-tokens 4 --accept-len 3.17] [--state-dtype bfloat16] [--capture-steps 32] [--layers N]``
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
                        help="replay each step's decode/verify calls from one CUDA graph (commits stay eager)")
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


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..instrument import GraphCaptureError
    from ..shapes import parse_preset, preset
    from ..workload import DecodeWorkload

    if args.accept_len is not None and args.draft_tokens < 2:
        raise InputError("--accept-len needs --draft-tokens T >= 2")
    shape = parse_preset(args.preset) if "@" in args.preset else preset(args.preset, tp=args.tp)
    progress = None if args.no_progress else _Progress()
    if progress is not None:
        print(f"gdnlab workload: building {args.backend} {'decode' if args.draft_tokens == 1 else 'verify'} "
              f"workload (B={args.batch}, {args.layers or shape.num_gdn_layers} layers, random state pool)...",
              file=sys.stderr, flush=True)
    wl = DecodeWorkload(args.backend, shape, args.batch, layers=args.layers, draft_tokens=args.draft_tokens,
                        accept_len=args.accept_len, state_dtype=args.state_dtype, act_dtype=args.act_dtype,
                        device=args.device, seed=args.seed)
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
