"""Same seed, same numbers: bit-identical runs on NumPy, whatever the dict order."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc
from pcgraph.algorithms import ALGORITHMS
from pcgraph.testing import random_batch

OPTIONS = {"il": {"steps": 5}, "il-prox": {"steps": 5}}


def train(algorithm: str, reverse: bool) -> dict:
    g = mlp(sizes=(6, 5, 4, 3), activation=pc.tanh)
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(seed=7)
    if reverse:
        params = dict(reversed(list(params.items())))
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    for step in range(100):
        batch = random_batch(g, size=4, seed=step)
        if reverse:
            batch = dict(reversed(list(batch.items())))
        prog.train_step(
            params, batch, algorithm=algorithm, optimizer=opt, **OPTIONS.get(algorithm, {})
        )
    return params


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_100_steps_are_bit_identical_and_independent_of_dict_order(algorithm: str) -> None:
    a, b, c = train(algorithm, False), train(algorithm, False), train(algorithm, True)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
        assert np.array_equal(a[name], c[name]), name
