"""The array namespace a backend hands the op rules: array-API names on any NumPy-like module.

The op rules use array-API names (``permute_dims``, ``concat``, ``astype``, ``isdtype``, ...).
NumPy >= 2 and CuPy >= 14 have them all in their main namespace; NumPy 1.26 and CuPy 13 lack the
ones NumPy 2.0 introduced.  ``array_namespace`` fills exactly those from the module's older
equivalents, and hands the module itself over untouched when nothing is missing (no overhead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# NumPy 2.0 names of the array API and the older NumPy/CuPy function each one renames.
_RENAMED = {
    "concat": "concatenate",
    "permute_dims": "transpose",
    "pow": "power",
    "acos": "arccos",
    "acosh": "arccosh",
    "asin": "arcsin",
    "asinh": "arcsinh",
    "atan": "arctan",
    "atan2": "arctan2",
    "atanh": "arctanh",
    "bitwise_invert": "invert",
    "bitwise_left_shift": "left_shift",
    "bitwise_right_shift": "right_shift",
}

# Array-API dtype kinds as NumPy dtype ``kind`` letters (CuPy dtypes are NumPy dtypes).
_KINDS = {
    "bool": "b",
    "signed integer": "i",
    "unsigned integer": "u",
    "integral": "iu",
    "real floating": "f",
    "complex floating": "c",
    "numeric": "iufc",
}


def _isdtype(dtype: Any, kind: Any) -> bool:
    """``isdtype`` of the array API for NumPy-style dtypes (``numpy.isdtype`` is NumPy >= 2)."""
    if isinstance(kind, tuple):
        return any(_isdtype(dtype, k) for k in kind)
    if isinstance(kind, str):
        if kind not in _KINDS:
            raise ValueError(f"unknown dtype kind {kind!r}; known: {', '.join(_KINDS)}")
        return np.dtype(dtype).kind in _KINDS[kind]
    return np.dtype(dtype) == np.dtype(kind)


def _fills(module: Any) -> dict[str, Any]:
    """The array-API names ``module`` lacks, each built from what it has."""
    out: dict[str, Any] = {
        new: getattr(module, old)
        for new, old in _RENAMED.items()
        if not hasattr(module, new) and hasattr(module, old)
    }
    extra: dict[str, Callable[..., Any] | type] = {
        "matrix_transpose": lambda x, /: module.swapaxes(x, -1, -2),
        "astype": lambda x, dtype, /, *, copy=True, device=None: x.astype(dtype, copy=copy),
        "vecdot": lambda x1, x2, /, *, axis=-1: module.sum(x1 * x2, axis=axis),  # real dtypes
        "isdtype": _isdtype,
        "bool": np.bool_,
    }
    out.update({name: fn for name, fn in extra.items() if not hasattr(module, name)})
    return out


class FilledNamespace:
    """``module`` with a few missing array-API names added; every other name is the module's."""

    def __init__(self, module: Any, fills: dict[str, Any]) -> None:
        self.__dict__.update(fills)
        self._module = module
        self.__name__ = getattr(module, "__name__", "namespace")
        self.filled = tuple(sorted(fills))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set yet; cache them so later look-ups are plain attributes.
        value = getattr(self._module, name)
        setattr(self, name, value)
        return value

    def __repr__(self) -> str:
        return f"<{self.__name__} with array-API names filled in: {', '.join(self.filled)}>"


def _count(x: Any, axis: Any) -> int:
    if axis is None:
        return x.size
    axes = (axis,) if isinstance(axis, int) else axis
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


def fast_reductions(module: Any) -> dict[str, Any]:
    """Array-API reductions and reshapes of a NumPy-like module that skip its Python-level
    wrappers: ``numpy.max`` and ``numpy.sum`` are Python functions that reach the ufunc's
    ``reduce`` after 2-3 us of argument handling, ``numpy.mean`` after 6 (a (64, 10) maximum
    takes 5 us through ``numpy.max`` and 1.7 through ``maximum.reduce``).  Same results: the
    wrappers end in these very calls.  Only for modules whose ufuncs have ``reduce``."""
    maximum, minimum, add = module.maximum.reduce, module.minimum.reduce, module.add.reduce
    return {
        "max": lambda x, /, *, axis=None, keepdims=False: maximum(x, axis=axis, keepdims=keepdims),
        "min": lambda x, /, *, axis=None, keepdims=False: minimum(x, axis=axis, keepdims=keepdims),
        "sum": lambda x, /, *, axis=None, dtype=None, keepdims=False: add(
            x, axis=axis, dtype=dtype, keepdims=keepdims
        ),
        "mean": lambda x, /, *, axis=None, keepdims=False: (
            add(x, axis=axis, keepdims=keepdims) / _count(x, axis)
        ),
        "reshape": lambda x, /, shape, *, copy=None: x.reshape(shape),
        "permute_dims": lambda x, /, axes: x.transpose(axes),
    }


def array_namespace(module: Any, fast: bool = False) -> Any:
    """``module`` itself when it has every array-API name pcgraph may use, else a filled copy;
    ``fast`` adds ``fast_reductions`` (the NumPy backend)."""
    fills = _fills(module)
    if fast:
        fills.update(fast_reductions(module))
    return FilledNamespace(module, fills) if fills else module
