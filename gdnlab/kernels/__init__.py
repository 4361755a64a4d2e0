"""GDN kernel backends behind one contract (see :mod:`gdnlab.kernels.base`) and their registry.

``get_backend(name)`` returns a ready backend; ``available_backends()`` says, for every known
backend, whether it can run here and why not (no CUDA device, package not installed, CuTe DSL
failed to import, ...). ``make_backend(name, engine="sglang")`` is the one factory measurements use
(sweep, workload, counters, capture): the backend made with the options that make it run what that
engine runs, so every tool times the same call. Importing this package never imports a GPU-only
package.
"""
from __future__ import annotations

from importlib import import_module

from .. import backends as _registry
from ..errors import BackendUnavailable
from .base import BackendStatus, GDNBackend, KernelPath

__all__ = ["get_backend", "make_backend", "ENGINE_OPTIONS", "available_backends", "backend_names", "GDNBackend",
           "BackendStatus", "KernelPath", "BackendUnavailable"]

#: name -> "module:Class", read from the backend registry (:mod:`gdnlab.backends`); modules are
#: imported only when asked about.
_REGISTRY: dict[str, str] = {b.name: b.kernels for b in _registry.BACKENDS if b.kernels}

#: engine -> backend -> constructor options that make the backend run what the engine runs, read
#: from the backend registry (:attr:`gdnlab.backends.Backend.engine_options`, which says why each);
#: an engine no backend takes options for (vLLM) has no entry. ``None``: gdnlab's contract, no options.
ENGINE_OPTIONS: dict[str | None, dict[str, dict]] = {
    **{e: _registry.options_for_engine(e) for e in _registry.engines_with_options()},
    None: {},
}


def backend_names() -> list[str]:
    """All registered backend names, available here or not."""
    return list(_REGISTRY)


def _load_class(name: str) -> type[GDNBackend]:
    mod, cls = _REGISTRY[name].split(":")
    return getattr(import_module(mod), cls)


def _status(name: str) -> BackendStatus:
    try:
        cls = _load_class(name)
    except Exception as exc:  # noqa: BLE001 - any failure to import the backend module is a reason
        return BackendStatus(name, False, f"backend module failed to import: {type(exc).__name__}: {exc}")
    try:
        ok, reason = cls.availability()
    except Exception as exc:  # noqa: BLE001 - any failing availability check is the reason it is unavailable
        ok, reason = False, f"availability check failed: {type(exc).__name__}: {exc}"
    return BackendStatus(name, bool(ok), reason)


def available_backends() -> dict[str, BackendStatus]:
    """Every registered backend with whether it runs here and the reason.

    >>> available_backends()["reference"].available
    True
    """
    return {name: _status(name) for name in _REGISTRY}


def get_backend(name: str, **kwargs) -> GDNBackend:
    """A backend instance by name; ``ValueError`` for an unknown name, :class:`BackendUnavailable`
    (with the reason) for one that cannot run here."""
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(_REGISTRY)}")
    st = _status(key)
    if not st.available:
        raise BackendUnavailable(f"backend {key!r} cannot run here: {st.reason}")
    return _load_class(key)(**kwargs)


def make_backend(name: str, engine: str | None = "sglang", **options) -> GDNBackend:
    """The backend ``name`` configured as ``engine`` runs it (:data:`ENGINE_OPTIONS`).

    Args:
        name: a registered backend (``reference``, ``triton``, ``flashinfer``).
        engine: ``"sglang"`` (default: what measurements compare against) or ``None`` (gdnlab's
            contract as written, e.g. padding rows' outputs zeroed).
        options: further constructor options; they override the engine's.

    The options used are recorded on the backend as ``backend.gdnlab_options`` (a dict; sweep rows
    store it as ``backend_options``). Raises ``ValueError`` for an unknown backend or engine,
    :class:`BackendUnavailable` when the backend cannot run here.
    """
    if engine not in ENGINE_OPTIONS:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(str(e) for e in ENGINE_OPTIONS)}")
    key = str(name).strip().lower()
    opts = {**ENGINE_OPTIONS[engine].get(key, {}), **options}
    be = get_backend(key, **opts)
    be.gdnlab_options = dict(opts)
    return be
