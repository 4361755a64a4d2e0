"""Provenance of a measurement: GPU, SM, driver, CUDA and library versions, time.

Every row gdnlab stores and every figure it shows carries these fields, plus ``status``:
``measured`` (captured on a GPU by gdnlab, as the data's own metadata says), ``projected`` (from a
model), ``reported`` (copied from someone else's table, e.g. the seed PR) or ``synthetic`` (generated
for tests and examples). Rows also carry the gdnlab version and the git commit of the checkout that
made them (``git_dirty`` when it had uncommitted changes), so rows from before and after a kernel
change can be told apart.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from . import backends

__all__ = ["collect", "package_version", "git_state", "label", "is_dirty", "STATUSES", "PROVENANCE_COLUMNS",
           "VERSION_COLUMNS", "IDENTITY_COLUMNS"]

STATUSES = ("measured", "projected", "reported", "synthetic")
#: software versions a row records: CUDA, torch, one column per backend package (:mod:`gdnlab.backends`), gdnlab
VERSION_COLUMNS: tuple[str, ...] = ("cuda", "torch", *backends.version_columns(), "gdnlab")
#: what identifies the machine and code a row came from (GPU, SM, driver, versions, commit)
IDENTITY_COLUMNS: tuple[str, ...] = ("gpu", "sm", "driver", *VERSION_COLUMNS, "git_commit")
#: every provenance column a measured row carries
PROVENANCE_COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, "git_dirty", "timestamp", "host")
_REPO = Path(__file__).resolve().parent.parent


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or ``None`` (no import is done)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _backend_version(b: backends.Backend, may_import: bool) -> str | None:
    """The installed version of a backend's package: its distribution metadata, else (``may_import``)
    its module's ``__version__`` (a bundle unpacked onto PYTHONPATH has no dist-info in some setups)."""
    for dist in b.packages:
        v = package_version(dist)
        if v is not None:
            return v
    if may_import and b.module:
        try:
            mod = __import__(b.module)
        except Exception:  # noqa: BLE001 - any import failure means "not installed"
            return None
        return getattr(mod, "__version__", None)
    return None


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout gdnlab runs from, or ``(None, None)`` outside git.

    A copy of a checkout without ``.git`` (e.g. a working tree sent to a GPU machine) can state them in
    ``$GDNLAB_GIT_COMMIT`` and ``$GDNLAB_GIT_DIRTY`` (``1``/``0``)."""
    env_commit = os.environ.get("GDNLAB_GIT_COMMIT")
    if env_commit:
        return env_commit, os.environ.get("GDNLAB_GIT_DIRTY", "0") not in ("0", "", "false")
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(_REPO), *a], capture_output=True, text=True, timeout=10)
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = run("status", "--porcelain", "--untracked-files=no")
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def collect(device: int | None = None) -> dict[str, str | None]:
    """Provenance of the current process: GPU name, SM (``sm90``), driver, CUDA, library versions,
    UTC timestamp (ISO 8601) and host name. Values are ``None`` where not applicable (no GPU)."""
    import torch

    commit, dirty = git_state()
    gpu = sm = None
    if torch.cuda.is_available():
        idx = torch.cuda.current_device() if device is None else device
        props = torch.cuda.get_device_properties(idx)
        gpu, sm = props.name, f"sm{props.major}{props.minor}"
    versions = {b.version_column: _backend_version(b, may_import=gpu is not None)
                for b in backends.BACKENDS if b.version_column}
    return {
        "gpu": gpu or "cpu",
        "sm": sm,
        "driver": _driver_version() if gpu else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        **versions,
        "gdnlab": _gdnlab_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _gdnlab_version() -> str:
    from . import __version__
    return __version__


def is_dirty(value: object) -> bool:
    """Whether a ``git_dirty`` value read from data says the checkout had uncommitted changes: ``True``,
    ``1`` and the strings ``"true"``/``"1"``/``"yes"`` (any case) do; ``False``, ``0``, ``None``, NA/NaN,
    ``""`` and ``"False"``/``"0"``/``"no"`` (a column written as text) do not."""
    if value is None or isinstance(value, float) and value != value:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "dirty")
    try:
        return bool(value)
    except (TypeError, ValueError):        # pandas.NA and other ambiguous values: not known to be dirty
        return False


def label(prov: dict, status: str, **extra: object) -> str:
    """One-line provenance text for a figure, e.g.
    ``measured · NVIDIA H100 80GB HBM3 (sm90) · torch 2.11.0 · CUDA 13.0 · flashinfer 0.7.2.post1``;
    ``(dirty)`` follows the commit only when ``git_dirty`` says so (:func:`is_dirty`)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    parts = [status]
    gpu = prov.get("gpu")
    if gpu:
        parts.append(f"{gpu} ({prov['sm']})" if prov.get("sm") else str(gpu))
    for key in ("driver", *VERSION_COLUMNS):
        if prov.get(key):
            parts.append(f"{key} {prov[key]}")
    if prov.get("git_commit"):
        parts.append(f"commit {str(prov['git_commit'])[:10]}{' (dirty)' if is_dirty(prov.get('git_dirty')) else ''}")
    parts += [f"{k} {v}" for k, v in extra.items() if v is not None]
    return " · ".join(parts)
