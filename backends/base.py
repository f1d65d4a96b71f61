"""The ``Backend`` protocol: what an array library must provide to run pcgraph's schedules.

Backends know no graph: they hand the executor an array namespace and move arrays in and out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Protocol, runtime_checkable

FLOAT_DTYPES = ("float32", "float64")


@runtime_checkable
class Backend(Protocol):
    """An array library pcgraph can execute on."""

    name: str
    xp: Any  # the array namespace the op rules are written against
    kernels: Any  # array-level kernels (``backends/kernels.py``): fused where the backend can
    # Optional: ``lowerings``, step kind -> lowering, to replace the executor's own lowering of
    # a step kind (``pcgraph.execute.LOWERINGS``) on this backend.

    def asarray(self, x: Any, dtype: str) -> Any:
        """``x`` (NumPy, list, scalar or native array) as a native array of ``dtype`` name."""
        ...

    def to_numpy(self, x: Any) -> np.ndarray:
        """A native array copied to host memory as a NumPy array."""
        ...

    def is_native(self, x: Any) -> bool:
        """Whether ``x`` is already this backend's array type (no transfer needed)."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); benchmarks call it before timing."""
        ...

    @staticmethod
    def availability() -> str | None:
        """None when the backend can run here, else a sentence saying why not and how to fix it.
        Called on the class, before any instance exists (``pcgraph.backends.available``)."""
        ...
