"""The NumPy backend: the CPU reference every other backend is checked against."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

import numpy as np
from pcgraph.backends.kernels import InPlaceKernels
from pcgraph.backends.namespace import array_namespace

KEEP_HEAP_ENV = "PCGRAPH_KEEP_HEAP"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_MMAP_THRESHOLD = 32 * 2**20  # the largest value every glibc accepts
_TRIM_THRESHOLD = 256 * 2**20
_heap_kept: bool | None = None


def keep_heap() -> bool:
    """Ask glibc to serve arrays up to 32 MiB from its heap and keep up to 256 MiB of freed heap.

    Why: a training step allocates the same large arrays every step.  By default glibc maps
    each array over 128 KiB afresh and unmaps it when freed, so every step page-faults its
    activations in again; on a 2-core VM that was 25% of an MLP step.  Done once per process,
    on glibc only, unless ``$PCGRAPH_KEEP_HEAP=0``; returns whether the setting is in force.
    """
    global _heap_kept
    if _heap_kept is None:
        _heap_kept = False
        wanted = os.environ.get(KEEP_HEAP_ENV, "1").strip() not in ("0", "false", "no")
        if wanted and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):
                return False
            _heap_kept = bool(
                mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
            )
    return _heap_kept


class NumpyBackend:
    """Runs schedules with NumPy on the CPU."""

    name = "numpy"
    xp = array_namespace(np, fast=True)  # NumPy, reductions straight to the ufuncs
    kernels = InPlaceKernels(xp)

    def __init__(self) -> None:
        keep_heap()

    def asarray(self, x: Any, dtype: str) -> np.ndarray:
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def is_native(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def synchronize(self) -> None:
        pass

    @staticmethod
    def availability() -> str | None:
        """None when usable here, else why not."""
        return None
