"""The initialisers of ``pcgraph.init``: each draws from the distribution its name promises, the
variance given by the closed form of its fans (``spec/conventions.md``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcgraph.init import INITIALIZERS, fans

SHAPE = (300, 200)  # (fan_in, fan_out) of a matrix
FAN_IN, FAN_OUT = SHAPE

# name -> (standard deviation, bound of a uniform draw or None)
EXPECTED = {
    "normal": (0.01, None),
    "standard_normal": (1.0, None),
    "gpt_normal": (0.02, None),
    "uniform": (0.05 / math.sqrt(3), 0.05),
    "fan_in_uniform": (1 / math.sqrt(3 * FAN_IN), 1 / math.sqrt(FAN_IN)),
    "glorot_uniform": (math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "he_uniform": (math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "he_normal": (math.sqrt(2 / FAN_IN), None),
    "lecun_uniform": (math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN)),
    "lecun_normal": (math.sqrt(1 / FAN_IN), None),
    # The columns of a 300 x 200 orthogonal matrix are unit vectors: entries of variance 1/300.
    "orthogonal": (math.sqrt(1 / FAN_IN), None),
}


def test_every_random_initialiser_has_an_expected_distribution() -> None:
    constant = {"zeros", "ones", "lstm_bias"}
    assert set(INITIALIZERS) - constant == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_initialiser_draws_the_promised_distribution(name: str) -> None:
    w = INITIALIZERS[name](np.random.default_rng(0), SHAPE)
    std, bound = EXPECTED[name]
    assert w.shape == SHAPE
    assert abs(w.mean()) < 3 * std / math.sqrt(w.size) + 1e-12
    assert abs(w.std() / std - 1) < 0.01
    if bound is not None:
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


def test_orthogonal_gives_orthonormal_columns() -> None:
    w = INITIALIZERS["orthogonal"](np.random.default_rng(0), SHAPE)
    np.testing.assert_allclose(w.T @ w, np.eye(FAN_OUT), atol=1e-12)


def test_fans_of_a_convolution_weight_count_the_kernel() -> None:
    assert fans((16, 3, 5, 5)) == (75, 400)
    assert fans((7,)) == (7, 7)
    assert fans(()) == (1, 1)


def test_constant_initialisers() -> None:
    rng = np.random.default_rng(0)
    assert not INITIALIZERS["zeros"](rng, (3,)).any()
    assert (INITIALIZERS["ones"](rng, (3,)) == 1).all()
    np.testing.assert_array_equal(INITIALIZERS["lstm_bias"](rng, (8,)), [0, 0, 1, 1, 0, 0, 0, 0])
