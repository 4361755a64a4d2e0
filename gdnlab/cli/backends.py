"""``gdnlab backends``: which kernel backends run here, and why the others do not."""
from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from ..kernels import available_backends

    st = available_backends()
    if args.json:
        print(json.dumps({k: {"available": v.available, "reason": v.reason} for k, v in st.items()}, indent=2))
    else:
        for s in st.values():
            print(s)
    return 0
