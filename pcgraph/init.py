"""Parameter initialisers: ``(rng, shape) -> numpy array`` of float64, cast by the program.

Fans follow the layouts of ``spec/conventions.md``: a matrix ``(in, out)``; a tensor of rank >= 3
is ``(out, in, *kernel)`` as for convolution weights.  NumPy is imported inside the initialisers
only: the DSL checks init names against this table, and the graph side imports no array library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import numpy as np

Initializer = Callable[["np.random.Generator", tuple], "np.ndarray"]
InitSpec = Union[str, Initializer]


def _numpy():  # noqa: ANN202
    import numpy

    return numpy


def fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _scaled(kind: str, mode: str) -> Initializer:
    def init(rng: np.random.Generator, shape: tuple) -> np.ndarray:
        fan_in, fan_out = fans(shape)
        var = {"fan_in": 1.0 / fan_in, "avg": 2.0 / (fan_in + fan_out)}[mode]
        var *= 2.0 if kind.startswith("he") else 1.0
        if kind.endswith("uniform"):
            limit = math.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, size=shape)
        return rng.normal(0.0, math.sqrt(var), size=shape)

    return init


def _orthogonal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    import numpy as np

    if len(shape) < 2:
        return rng.normal(0.0, 1.0, size=shape)
    rows, cols = shape[0], math.prod(shape[1:])
    a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return (q if rows >= cols else q.T).reshape(shape)


def _lstm_bias(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    import numpy as np

    # Gates are ordered (input, forget, cell, output); a forget bias of 1 keeps early memory.
    b = np.zeros(shape)
    h = shape[0] // 4
    b[h : 2 * h] = 1.0
    return b


INITIALIZERS: dict[str, Initializer] = {
    "zeros": lambda rng, shape: _numpy().zeros(shape),
    "ones": lambda rng, shape: _numpy().ones(shape),
    "normal": lambda rng, shape: rng.normal(0.0, 0.01, size=shape),
    # N(0, 1): muPC's weights, whose scale lives in the forward pass's multipliers instead.
    "standard_normal": lambda rng, shape: rng.normal(0.0, 1.0, size=shape),
    # N(0, 0.02^2): GPT-2's init, and every weight of the muPC authors' transformer.
    "gpt_normal": lambda rng, shape: rng.normal(0.0, 0.02, size=shape),
    "uniform": lambda rng, shape: rng.uniform(-0.05, 0.05, size=shape),
    # U(+-1/sqrt(fan_in)): the default of PyTorch's and Equinox's Linear layers (jpc's "sp").
    "fan_in_uniform": lambda rng, shape: rng.uniform(
        -1.0 / math.sqrt(fans(shape)[0]), 1.0 / math.sqrt(fans(shape)[0]), size=shape
    ),
    "glorot_uniform": _scaled("glorot_uniform", "avg"),
    "glorot_normal": _scaled("glorot_normal", "avg"),
    "he_uniform": _scaled("he_uniform", "fan_in"),
    "he_normal": _scaled("he_normal", "fan_in"),
    "lecun_uniform": _scaled("lecun_uniform", "fan_in"),
    "lecun_normal": _scaled("lecun_normal", "fan_in"),
    "orthogonal": _orthogonal,
    "lstm_bias": _lstm_bias,
}


def default_init(shape: tuple) -> str:
    """Glorot-uniform for weights (rank >= 2), zeros for biases and scalars."""
    return "glorot_uniform" if len(shape) >= 2 else "zeros"
