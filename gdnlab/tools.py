"""Finding external command-line tools (nsys, ncu): one rule for all of them.

Precedence, first hit wins: an explicit path the caller passes, the tool's environment variable
(``$NSYS``, ``$NCU``), ``PATH`` (``shutil.which``), then well-known install folders (newest version
first). A path that is given but is not an executable file is an error, never silently skipped.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ToolNotFoundError

__all__ = ["ToolNotFoundError", "find_tool"]


def _version_key(path: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def _executable(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_file() and os.access(p, os.X_OK)


def find_tool(name: str, *, env_var: str, globs: Sequence[str] = (), explicit: str | os.PathLike | None = None,
              env: Mapping[str, str] | None = None) -> str:
    """Absolute path of tool ``name`` (see the module docstring for the order).

    Args:
        name: executable name on PATH (``"nsys"``).
        env_var: environment variable that may name it (``"NSYS"``).
        globs: install locations to try last (shell globs of the executable itself).
        explicit: a path the user gave (``--nsys PATH``); must exist and be executable.
        env: environment to read (default ``os.environ``).
    """
    env = os.environ if env is None else env
    for origin, given in (("given", explicit), (f"${env_var}", env.get(env_var))):
        if given:
            if _executable(given):
                return str(Path(given).resolve())
            hit = shutil.which(str(given), path=env.get("PATH"))
            if hit:
                return hit
            raise ToolNotFoundError(f"{name}: {origin} path {given!s} is not an executable file")
    hit = shutil.which(name, path=env.get("PATH"))
    if hit:
        return hit
    found = sorted((p for g in globs for p in glob.glob(g) if _executable(p)), key=_version_key, reverse=True)
    if found:
        return found[0]
    where = ", ".join(globs) if globs else "no other folders"
    raise ToolNotFoundError(f"{name} not found: set ${env_var}, put {name} on PATH, or install it ({where})")
