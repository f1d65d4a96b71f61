"""The NumPy backend: the CPU reference every other backend is checked against."""

from __future__ import annotations

from typing import Any

import numpy as np
from pcgraph.backends.namespace import array_namespace


class NumpyBackend:
    """Runs schedules with NumPy on the CPU."""

    name = "numpy"
    xp = array_namespace(np)  # NumPy itself on NumPy >= 2

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
