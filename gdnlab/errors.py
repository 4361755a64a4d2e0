"""gdnlab's exceptions, and the exit code the command line gives each kind of expected failure.

Library code raises these (or plain ``ValueError`` / ``FileNotFoundError`` for bad arguments and
missing files); the command line (:mod:`gdnlab.cli`) turns each into one line naming the input and
what was expected, with a distinct exit code. Anything else is a bug and shows its stack trace.
"""
from __future__ import annotations

__all__ = ["GdnlabError", "InputError", "DataError", "UnavailableError", "BackendUnavailable",
           "StrategyUnavailable", "Interrupted", "EXIT_CODES", "exit_code"]


class GdnlabError(Exception):
    """Base class of gdnlab's expected failures."""


class InputError(GdnlabError, ValueError):
    """A value the user gave is out of its domain (a negative batch, an unknown preset)."""


class DataError(GdnlabError, ValueError):
    """A file exists but is not what was expected (wrong kind, corrupt, another GPU's sweep, a trace
    without a table a figure needs)."""


class UnavailableError(GdnlabError, RuntimeError):
    """What the command needs is not here: a CUDA device, a backend, a strategy, nsys or ncu."""


class BackendUnavailable(UnavailableError):
    """A known backend that cannot run here (:func:`gdnlab.kernels.get_backend`); the message says why."""


class StrategyUnavailable(UnavailableError):
    """A known verify strategy that cannot run on a backend here (:func:`gdnlab.strategies.get_strategy`);
    the message says why."""


class Interrupted(GdnlabError):
    """A run stopped early (Ctrl-C); what was complete is kept."""


#: exit codes of the command line, by failure kind (first match in this order wins)
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnavailableError, 3, "unavailable"),
    (DataError, 4, "bad data"),
    (FileNotFoundError, 5, "file not found"),
    (IsADirectoryError, 5, "file not found"),
    (NotADirectoryError, 5, "file not found"),
    (PermissionError, 6, "permission denied"),
    (ValueError, 2, "bad input"),
    (KeyboardInterrupt, 130, "interrupted"),
    (OSError, 7, "I/O error"),
    (Interrupted, 130, "interrupted"),
)


def exit_code(exc: BaseException) -> tuple[int, str] | None:
    """``(code, kind)`` for an expected failure, ``None`` for anything else (a bug)."""
    for cls, code, kind in EXIT_CODES:
        if isinstance(exc, cls):
            return code, kind
    return None
