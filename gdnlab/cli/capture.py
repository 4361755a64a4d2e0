"""``gdnlab capture`` (transitional: the options still live in :mod:`gdnlab.capture`)."""
from ..capture import configure_parser, run

__all__ = ["configure_parser", "run"]
