"""``gdnlab summary``: run the reference kernel on a preset shape and check the contract's identities.

Example: ``gdnlab summary --batches 1,4,16 --draft-tokens 4 --state-dtype bf16``
"""
from __future__ import annotations

import argparse

from ._args import int_list


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="qwen3.5-397b-a17b", help="model preset (gdnlab.shapes.preset_names())")
    parser.add_argument("--tp", type=int, default=4, help="tensor-parallel degree the shape is sharded for")
    parser.add_argument("--batches", "--batch", dest="batches", type=int_list, default=[1, 4, 16],
                        help="batch sizes B, comma-separated")
    parser.add_argument("--draft-tokens", type=int, default=4, help="draft tokens T per verify")
    parser.add_argument("--state-dtype", default="float32", help="state pool dtype: float32 or bfloat16")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..instrument import resolve_device
    from ..selfcheck import contract_identities

    if args.draft_tokens < 1:
        raise InputError(f"--draft-tokens must be an integer >= 1 (T, tokens per verify), got {args.draft_tokens}")
    device = str(resolve_device(args.device))       # unknown: bad input; no CUDA here: unavailable
    shape, df = contract_identities(args.preset, args.tp, args.batches, args.draft_tokens, args.state_dtype, device)
    print(f"gdnlab reference kernel on {device}: {shape.describe()} (measured wall time, PyTorch reference)")
    print(df.to_string(index=False))
    return 0
