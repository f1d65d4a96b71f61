"""A CPU backend on ``array_api_strict``: it rejects any call outside the array API standard.

It exists to prove, on machines without a GPU, that the op table uses only the namespace it is
handed (a NumPy-only call in an op rule fails here just as it would on CuPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pcgraph.backends.kernels import Kernels

from pcgraph.errors import BackendError


class StrictBackend:
    """Runs schedules with ``array_api_strict`` (slow; for portability checks only)."""

    name = "array_api_strict"

    def __init__(self) -> None:
        try:
            import array_api_strict
        except ImportError:
            raise BackendError(
                "backend 'array_api_strict': the package is not installed; "
                "`pip install array-api-strict` (it is in the dev extra)"
            ) from None
        self.xp = array_api_strict
        self.kernels = Kernels(array_api_strict)

    def asarray(self, x: Any, dtype: str) -> Any:
        if self.is_native(x):
            return self.xp.astype(x, getattr(self.xp, dtype))
        return self.xp.asarray(np.asarray(x, dtype=dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        # DLPack, not np.asarray: the explicit transfer a device array would need.
        return np.array(np.from_dlpack(x) if self.is_native(x) else x, copy=True)

    def is_native(self, x: Any) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    def synchronize(self) -> None:
        pass

    @staticmethod
    def availability() -> str | None:
        """None when ``array_api_strict`` is installed, else how to install it."""
        try:
            StrictBackend()
        except BackendError as e:
            return str(e)
        return None
