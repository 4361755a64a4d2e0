"""``gdnlab counters`` (transitional: the options still live in :mod:`gdnlab.metrics.cli`)."""
from ..metrics.cli import configure_parser, run

__all__ = ["configure_parser", "run"]
