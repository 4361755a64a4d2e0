"""``gdnlab backends``: which kernel backends and verify strategies run here, and why the others do not."""
from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from ..kernels import available_backends
    from ..strategies import available_strategies

    st = available_backends()
    strat = available_strategies()
    if args.json:
        print(json.dumps({"backends": {k: {"available": v.available, "reason": v.reason} for k, v in st.items()},
                          "strategies": {f"{n}@{b}": {"available": v.available, "reason": v.reason}
                                         for (n, b), v in strat.items()}}, indent=2))
        return 0
    print("kernel backends:")
    for s in st.values():
        print(f"  {s}")
    print("verify strategies (name @ backend):")
    for (name, backend), s in strat.items():
        print(f"  {name} @ {backend}: {'available' if s.available else 'unavailable'} — {s.reason}")
    return 0
