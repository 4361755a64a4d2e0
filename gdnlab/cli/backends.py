"""``gdnlab backends``: which kernel backends and verify strategies run here, and why the others do not."""
from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from .. import backends as registry
    from ..kernels import available_backends
    from ..strategies import available_strategies

    st = available_backends()
    strat = available_strategies()
    # the serving engines' own paths: what each runs (kernel contract, strategies) and why not
    engine = {b.name: {"engine": b.engine, "paths": {
        **({"kernels": st[b.name]} if b.name in st else {}),
        **{n: v for (n, bn), v in strat.items() if bn == b.name and "not implemented" not in v.reason}}}
        for b in registry.BACKENDS if b.engine}
    if args.json:
        print(json.dumps({"backends": {k: {"available": v.available, "reason": v.reason} for k, v in st.items()},
                          "strategies": {f"{n}@{b}": {"available": v.available, "reason": v.reason}
                                         for (n, b), v in strat.items()},
                          "engine_paths": {k: {"engine": e["engine"], **{p: {"available": v.available,
                                                                              "reason": v.reason}
                                                                          for p, v in e["paths"].items()}}
                                           for k, e in engine.items()}}, indent=2))
        return 0
    print("kernel backends:")
    for s in st.values():
        print(f"  {s}")
    print("verify strategies (name @ backend):")
    for (name, backend), s in strat.items():
        print(f"  {name} @ {backend}: {'available' if s.available else 'unavailable'} — {s.reason}")
    print("engine paths (the engines' own code, imported from their installed packages):")
    for name, e in engine.items():
        for path, s in e["paths"].items():
            print(f"  {name} [{e['engine']}] {path}: {'available' if s.available else 'unavailable'} — {s.reason}")
    return 0
