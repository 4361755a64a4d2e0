"""``gdnlab workload`` (transitional: the options still live in :mod:`gdnlab.workload`)."""
from ..workload import configure_parser, run

__all__ = ["configure_parser", "run"]
