"""``gdnlab sweep`` (transitional: the options still live in :mod:`gdnlab.sweep`)."""
from ..sweep import configure_parser, run

__all__ = ["configure_parser", "run"]
