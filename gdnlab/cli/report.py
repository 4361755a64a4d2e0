"""``gdnlab report`` (transitional: the options still live in :mod:`gdnlab.report`)."""
from ..report import configure_parser, run

__all__ = ["configure_parser", "run"]
