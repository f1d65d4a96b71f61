"""The CuPy backend: the same schedules on an NVIDIA GPU.  CuPy is imported only when chosen."""

from __future__ import annotations

from typing import Any

import numpy as np

from pcgraph.errors import BackendError

_INSTALL = (
    'install it with `pip install "pcgraph[gpu]"` (CUDA 12, cupy-cuda12x) or '
    "`pip install cupy-cuda13x` for CUDA 13"
)


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as e:
        raise BackendError(f"backend 'cupy': CuPy is not installed ({e}); {_INSTALL}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA raises its own runtime error types when no driver is present
        count, why = 0, f": {e}"
    else:
        why = ""
    if count == 0:
        raise BackendError(
            f"backend 'cupy': CuPy is installed but no CUDA GPU is visible{why}; run on a machine "
            "with an NVIDIA GPU and driver, or use PCGRAPH_BACKEND=numpy"
        )
    return cupy


class CupyBackend:
    """Runs schedules with CuPy on the current CUDA device."""

    name = "cupy"

    def __init__(self) -> None:
        self.xp = _import_cupy()

    def asarray(self, x: Any, dtype: str) -> Any:
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x) if isinstance(x, self.xp.ndarray) else np.asarray(x)

    def is_native(self, x: Any) -> bool:
        return isinstance(x, self.xp.ndarray)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    @staticmethod
    def availability() -> str | None:
        try:
            _import_cupy()
        except BackendError as e:
            return str(e)
        return None
