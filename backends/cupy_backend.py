"""The CuPy backend: the same schedules on an NVIDIA GPU.  CuPy is imported only when chosen.

CuPy 14 mirrors NumPy 2 and has every array-API name the op rules use; on CuPy 13 the few that
NumPy 2.0 introduced are filled in by ``array_namespace``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import numpy as np
from pcgraph.backends.kernels import FusedKernels
from pcgraph.backends.namespace import array_namespace

from pcgraph.errors import BackendError

_INSTALL = (
    'install it with `pip install "pcgraph[gpu]"` (CuPy for CUDA 12, cupy-cuda12x), or '
    "`pip install cupy-cuda13x` for CUDA 13 (the CUDA version `nvidia-smi` reports)"
)
_NO_GPU = (
    "run on a machine with an NVIDIA GPU and driver (check `nvidia-smi` and that "
    "CUDA_VISIBLE_DEVICES does not hide it), or choose the CPU with PCGRAPH_BACKEND=numpy"
)


def _installed() -> bool:
    """Whether a ``cupy`` package can be found, without importing it."""
    if "cupy" in sys.modules:  # None there means an import was blocked: treat as not installed
        return sys.modules["cupy"] is not None
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        return False


def _import_cupy() -> Any:
    """CuPy, with a GPU visible; a ``BackendError`` saying which of the two is missing, otherwise."""
    if not _installed():
        raise BackendError(f"backend 'cupy': CuPy is not installed; {_INSTALL}")
    try:
        cupy = importlib.import_module("cupy")
    except Exception as e:  # CuPy raises several types when its CUDA libraries fail to load
        raise BackendError(
            f"backend 'cupy': CuPy is installed but cannot be imported ({type(e).__name__}: {e}); "
            f"usually the CuPy wheel does not match the CUDA version; {_INSTALL}"
        ) from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError when there is no driver or no device
        raise BackendError(
            f"backend 'cupy': CuPy is installed but no CUDA GPU is visible "
            f"({type(e).__name__}: {e}); {_NO_GPU}"
        ) from None
    if count < 1:
        raise BackendError(
            f"backend 'cupy': CuPy is installed but no CUDA GPU is visible (0 devices); {_NO_GPU}"
        )
    return cupy


class CupyBackend:
    """Runs schedules with CuPy on the current CUDA device."""

    name = "cupy"

    def __init__(self) -> None:
        self.cupy = _import_cupy()
        self.xp = array_namespace(self.cupy)
        self.kernels = FusedKernels(self.xp, self.cupy)

    def asarray(self, x: Any, dtype: str) -> Any:
        """``x`` on the GPU as ``dtype``: one host-to-device copy for host data, none when it is
        already a CuPy array of that dtype."""
        return self.cupy.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A device-to-host copy (it waits for the work that computes ``x``)."""
        return self.cupy.asnumpy(x)

    def is_native(self, x: Any) -> bool:
        return isinstance(x, self.cupy.ndarray)

    def synchronize(self) -> None:
        """Wait for every stream on the current device, so a timer sees finished work."""
        self.cupy.cuda.Device().synchronize()

    @staticmethod
    def availability() -> str | None:
        """None when usable here, else why not (and how to fix it)."""
        try:
            _import_cupy()
        except BackendError as e:
            return str(e)
        return None
