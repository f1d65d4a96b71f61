"""Array-level kernels: the elementwise work of predictive-coding steps and of optimisers.

The executor's lowerings and the optimisers call these instead of writing the arithmetic
themselves, so that a backend can replace them with fused versions: ``Kernels`` uses array-API
names only and returns fresh arrays (it runs everywhere, ``array_api_strict`` included);
``InPlaceKernels`` (NumPy, CuPy) writes into buffers it is given with ``out=`` and saves the
temporaries; a GPU backend can go further with one fused kernel per call.  Kernels know no
graph: they see arrays and numbers only.
"""

from __future__ import annotations

from typing import Any


class Kernels:
    """Fresh-array kernels written against the array namespace ``xp``."""

    inplace = False  # whether ``out=`` buffers are honoured (else they are ignored)

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    # ------------------------------------------------------------------ predictive coding
    def relax(self, x: Any, s: Any | None, e: Any | None, rate: float, out: Any = None) -> Any:
        """``x + rate * (s - e)``, with a missing ``s`` or ``e`` read as zero (one inference
        step of a value node: ``s`` its children's error sum, ``e`` its own error)."""
        if s is None:
            return x - rate * e
        if e is None:
            return x + rate * s
        return x + rate * (s - e)

    def difference(self, a: Any, b: Any, out: Any = None) -> Any:
        """``a - b`` (an error: value minus prediction)."""
        return a - b

    def scaled(self, a: Any, factor: float, out: Any = None) -> Any:
        """``a * factor``."""
        return a * factor

    def sum_squares(self, a: Any) -> Any:
        """``sum(a * a)`` as a 0-d array (NaN or inf when any entry is): a finiteness probe."""
        flat = self.xp.reshape(a, (-1,))
        return self.xp.vecdot(flat, flat)

    # ------------------------------------------------------------------ optimisers
    def sgd_velocity(self, v: Any, g: Any, momentum: float, out: Any = None) -> Any:
        """``momentum * v + g``."""
        return momentum * v + g

    def axpy(self, a: float, x: Any, y: Any, out: Any = None) -> Any:
        """``a * x + y``."""
        return a * x + y

    def adam_moments(
        self, m: Any, v: Any, g: Any, b1: float, b2: float, out: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any]:
        """``(b1 m + (1 - b1) g, b2 v + (1 - b2) g^2)``."""
        return b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * (g * g)

    def adam_delta(
        self, m: Any, v: Any, lr_m: float, root_c2: float, eps: float, out: Any = None
    ) -> Any:
        """``-lr_m * m / (sqrt(v) / root_c2 + eps)``: Adam's step with its bias corrections
        folded in as PyTorch does (``lr_m = lr / (1 - b1^t)``, ``root_c2 = sqrt(1 - b2^t)``)."""
        return (m / (self.xp.sqrt(v) / root_c2 + eps)) * -lr_m

    def add_into(self, dst: Any, delta: Any) -> Any:
        """``dst += delta``, in place; returns ``dst``."""
        dst[...] = dst + delta
        return dst

    def flush_tiny(self, a: Any, below: float) -> Any:
        """``a`` with entries of magnitude below ``below`` set to zero (on the CPU, arithmetic
        on subnormal floats is 10-100x slower than on normal ones)."""
        return self.xp.where(self.xp.abs(a) < below, self.xp.zeros_like(a), a)


class InPlaceKernels(Kernels):
    """The same kernels into ``out=`` buffers with ufuncs (NumPy and CuPy both take ``out=``):
    no temporaries beyond what one ufunc call needs."""

    inplace = True

    def relax(self, x: Any, s: Any | None, e: Any | None, rate: float, out: Any = None) -> Any:
        xp = self.xp
        if out is None:
            if s is None or e is None:
                return super().relax(x, s, e, rate)
            out = s - e  # the one fresh array; the rest in place
            out *= rate
            out += x
            return out
        if s is None:
            xp.multiply(e, -rate, out=out)
        elif e is None:
            xp.multiply(s, rate, out=out)
        else:
            xp.subtract(s, e, out=out)
            xp.multiply(out, rate, out=out)
        xp.add(out, x, out=out)
        return out

    def difference(self, a: Any, b: Any, out: Any = None) -> Any:
        return a - b if out is None else self.xp.subtract(a, b, out=out)

    def sum_squares(self, a: Any) -> Any:
        return self.xp.vdot(a, a)  # BLAS dot of the flattened array, no reshape

    def scaled(self, a: Any, factor: float, out: Any = None) -> Any:
        return a * factor if out is None else self.xp.multiply(a, factor, out=out)

    def sgd_velocity(self, v: Any, g: Any, momentum: float, out: Any = None) -> Any:
        if out is None:
            return super().sgd_velocity(v, g, momentum)
        self.xp.multiply(v, momentum, out=out)
        return self.xp.add(out, g, out=out)

    def axpy(self, a: float, x: Any, y: Any, out: Any = None) -> Any:
        if out is None:
            return super().axpy(a, x, y)
        self.xp.multiply(x, a, out=out)
        return self.xp.add(out, y, out=out)

    def adam_moments(
        self, m: Any, v: Any, g: Any, b1: float, b2: float, out: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any]:
        if out is None:
            return super().adam_moments(m, v, g, b1, b2)
        xp, (m_new, v_new) = self.xp, out
        xp.multiply(g, 1 - b1, out=m_new)
        m_new += b1 * m
        xp.multiply(g, g, out=v_new)
        v_new *= 1 - b2
        v_new += b2 * v
        return m_new, v_new

    def adam_delta(
        self, m: Any, v: Any, lr_m: float, root_c2: float, eps: float, out: Any = None
    ) -> Any:
        if out is None:
            return super().adam_delta(m, v, lr_m, root_c2, eps)
        xp = self.xp
        xp.sqrt(v, out=out)
        out /= root_c2
        out += eps
        xp.divide(m, out, out=out)
        out *= -lr_m
        return out

    def add_into(self, dst: Any, delta: Any) -> Any:
        return self.xp.add(dst, delta, out=dst)

    def flush_tiny(self, a: Any, below: float) -> Any:
        tiny = self.xp.abs(a) < below
        a[tiny] = 0
        return a


class FusedKernels(InPlaceKernels):
    """CuPy: each kernel one ``ElementwiseKernel`` launch, where ``InPlaceKernels`` launches one
    per ufunc.  IL's inference steps are hundreds of small elementwise steps, which a GPU runs
    launch-bound; fusing an update's three operations into one launch divides their count."""

    def __init__(self, xp: Any, cupy: Any) -> None:
        super().__init__(xp)
        ek = cupy.ElementwiseKernel
        self._relax = ek("T x, T s, T e, T rate", "T out", "out = x + rate * (s - e)", "pc_relax")
        self._axpy = ek("T a, T x, T y", "T out", "out = a * x + y", "pc_axpy")
        self._velocity = ek("T v, T g, T m", "T out", "out = m * v + g", "pc_velocity")
        self._moments = ek(
            "T m, T v, T g, T b1, T b2",
            "T m_new, T v_new",
            "m_new = b1 * m + (1 - b1) * g; v_new = b2 * v + (1 - b2) * (g * g)",
            "pc_adam_moments",
        )
        self._adam = ek(
            "T m, T v, T lr_m, T root_c2, T eps",
            "T out",
            "out = (m / (sqrt(v) / root_c2 + eps)) * -lr_m",
            "pc_adam_delta",
        )
        self._flush = ek("T a, T below", "T out", "out = fabs(a) < below ? T(0) : a", "pc_flush")

    def _scalar(self, like: Any, value: float) -> Any:
        return like.dtype.type(value)

    @staticmethod
    def _launch(kernel: Any, args: tuple, out: Any) -> Any:
        return kernel(*args) if out is None else kernel(*args, out)

    def relax(self, x: Any, s: Any | None, e: Any | None, rate: float, out: Any = None) -> Any:
        if s is None or e is None:
            return super().relax(x, s, e, rate, out)
        return self._launch(self._relax, (x, s, e, self._scalar(x, rate)), out)

    def axpy(self, a: float, x: Any, y: Any, out: Any = None) -> Any:
        return self._launch(self._axpy, (self._scalar(x, a), x, y), out)

    def sgd_velocity(self, v: Any, g: Any, momentum: float, out: Any = None) -> Any:
        return self._launch(self._velocity, (v, g, self._scalar(g, momentum)), out)

    def adam_moments(
        self, m: Any, v: Any, g: Any, b1: float, b2: float, out: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any]:
        args = (m, v, g, self._scalar(g, b1), self._scalar(g, b2))
        return tuple(self._moments(*args) if out is None else self._moments(*args, *out))

    def adam_delta(
        self, m: Any, v: Any, lr_m: float, root_c2: float, eps: float, out: Any = None
    ) -> Any:
        s = self._scalar
        return self._launch(self._adam, (m, v, s(m, lr_m), s(m, root_c2), s(m, eps)), out)

    def flush_tiny(self, a: Any, below: float) -> Any:
        return self._flush(a, self._scalar(a, below), a)
