"""Backends, found lazily by name: importing pcgraph never imports cupy.

Installed as ``pcgraph.backends``.  The backend of a ``compile()`` that names none is, in order:
the one given to ``pcgraph.set_default_backend``, else ``$PCGRAPH_BACKEND``, else ``"numpy"``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from pcgraph.backends.base import FLOAT_DTYPES, Backend

from pcgraph.errors import BackendError

# name -> (module, class); modules are imported only when their backend is asked for.
REGISTRY: dict[str, tuple[str, str]] = {
    "numpy": ("pcgraph.backends.numpy_backend", "NumpyBackend"),
    "cupy": ("pcgraph.backends.cupy_backend", "CupyBackend"),
    "array_api_strict": ("pcgraph.backends.strict_backend", "StrictBackend"),
}
ENV_VAR = "PCGRAPH_BACKEND"
_default: str | None = None
_instances: dict[str, Any] = {}


def names() -> list[str]:
    """Every backend pcgraph knows, whether or not it can run here."""
    return list(REGISTRY)


def _class(name: str) -> Any:
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def available() -> list[str]:
    """The backends that can run on this machine now."""
    return [n for n in REGISTRY if _class(n).availability() is None]


def set_default_backend(name: str | None) -> None:
    """Use ``name`` for every ``compile()`` that names no backend (``None`` restores the env var)."""
    global _default
    if name is not None:
        _check_name(name, "set_default_backend")
    _default = name


def _check_name(name: Any, source: str) -> None:
    if name not in REGISTRY:
        raise BackendError(
            f"unknown backend {name!r} (from {source}); available here: "
            f"{', '.join(available())}; known: {', '.join(REGISTRY)}"
        )


def resolve_name(name: str | None = None) -> str:
    """The backend name a ``compile(backend=name)`` uses, following the override order."""
    if name is not None:
        _check_name(name, "compile(backend=...)")
        return name
    if _default is not None:
        return _default
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env:
        _check_name(env, f"${ENV_VAR}")
        return env
    return "numpy"


def get(name: str | None = None) -> Backend:
    """The backend instance for ``name`` (see ``resolve_name``); one instance per name."""
    resolved = resolve_name(name)
    if resolved not in _instances:
        _instances[resolved] = _class(resolved)()
    return _instances[resolved]


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "__array_namespace__")


def to_numpy(x: Any) -> Any:
    """Host NumPy copies of backend arrays: one array, or a dict / list / tuple of them (nested).

    No backend is imported: a CuPy array comes back with ``.get()`` (one device-to-host copy),
    other array-API arrays (``array_api_strict``) through DLPack.  Inside containers, values that
    are not arrays (a step count, a name) are kept as they are.
    """
    if isinstance(x, Mapping):
        return {k: _leaf(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_leaf(v) for v in x)
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    if hasattr(x, "__dlpack__") and not isinstance(x, (np.ndarray, np.generic)):
        x = np.from_dlpack(x)  # a view of the producer's host buffer, copied below
    # Always a copy, as from a GPU: a later in-place update of the parameters must not show in it.
    return np.array(x, copy=True)


def _leaf(x: Any) -> Any:
    if isinstance(x, (Mapping, list, tuple)) or _is_array(x) or hasattr(x, "__dlpack__"):
        return to_numpy(x)
    return x


__all__ = [
    "Backend",
    "FLOAT_DTYPES",
    "available",
    "get",
    "names",
    "resolve_name",
    "set_default_backend",
    "to_numpy",
    "ENV_VAR",
]
