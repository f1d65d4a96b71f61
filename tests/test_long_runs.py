"""Long runs: 500 SGD steps of Z-IL and backprop in float64 stay equal (1e-9 relative)."""

from __future__ import annotations

import numpy as np
import pytest

import pcgraph as pc
from pcgraph.models import MODELS
from pcgraph.testing import random_batch

NETWORKS = {
    "cnn": lambda: MODELS["lenet"](in_shape=(1, 10, 10), classes=3, channels=(2, 3), kernel=3),
    "rnn": lambda: MODELS["rnn_many_to_one"](T=5, D=3, H=6, classes=3),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_500_steps_of_zil_stay_on_backprop(name: str) -> None:
    g = NETWORKS[name]()
    prog = pc.compile(g, dtype="float64")
    p_bp, p_zil = prog.init_params(0), prog.init_params(0)
    o_bp, o_zil = pc.optim.SGD(lr=0.05, momentum=0.9), pc.optim.SGD(lr=0.05, momentum=0.9)
    batches = [random_batch(g, size=4, seed=s) for s in range(20)]
    for step in range(500):
        prog.train_step(p_bp, batches[step % 20], algorithm="bp", optimizer=o_bp)
        prog.train_step(p_zil, batches[step % 20], algorithm="zil", optimizer=o_zil)
    start = prog.init_params(0)
    assert max(np.max(np.abs(p_bp[k] - start[k])) for k in start) > 0.1, "it must have trained"
    for k in p_bp:
        scale = max(float(np.max(np.abs(p_bp[k]))), 1e-12)
        assert float(np.max(np.abs(p_zil[k] - p_bp[k]))) / scale <= 1e-9, k
