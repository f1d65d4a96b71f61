"""Incremental PC (Salvatori et al. 2024): at every inference step the values and the
parameters both take a gradient step of the energy, from the same errors."""

from __future__ import annotations

import numpy as np
import pytest

import pcgraph as pc
from pcgraph.testing import random_batch


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ipc_reference(
    params: dict, x: np.ndarray, y: np.ndarray, steps: int, rate: float, lr: float, layers: bool
) -> tuple[dict, dict]:
    """The paper's update on a one-hidden-layer relu MLP, written out by hand: the energy
    ``F = 0.5 ||a - (x W0 + b0)||^2 + 0.5 ||h - relu(a)||^2 + CE(h W1 + b1, y)`` (value nodes
    a and h), or with ``layers`` only ``F = 0.5 ||h - relu(x W0 + b0)||^2 + CE(h W1 + b1, y)``.
    Each step: errors at the current state, ``theta -= lr * mean_b dF/dtheta``, ``values -=
    rate * dF/dvalues``.  Returns the summed gradients and the final parameters."""
    W0, b0, W1, b1 = (params[k].copy() for k in ("fc0.W", "fc0.b", "fc1.W", "fc1.b"))
    B, onehot = len(x), np.eye(W1.shape[1])[y]
    a = x @ W0 + b0
    h = np.maximum(a, 0)
    total = dict.fromkeys(params, 0.0)
    for _ in range(steps):
        pre = x @ W0 + b0
        top = _softmax(h @ W1 + b1) - onehot
        if layers:
            e_h = h - np.maximum(pre, 0)
            delta0 = -e_h * (pre > 0)
        else:
            e_a, e_h = a - pre, h - np.maximum(a, 0)
            delta0 = -e_a
            a = a - rate * (e_a - (a > 0) * e_h)
        grads = {
            "fc0.W": x.T @ delta0 / B,
            "fc0.b": delta0.mean(axis=0),
            "fc1.W": h.T @ top / B,
            "fc1.b": top.mean(axis=0),
        }
        h = h - rate * (e_h + top @ W1.T)
        for k, g in grads.items():
            total[k] = total[k] + g
        W0, b0, W1, b1 = (
            W0 - lr * grads["fc0.W"],
            b0 - lr * grads["fc0.b"],
            W1 - lr * grads["fc1.W"],
            b1 - lr * grads["fc1.b"],
        )
    return total, {"fc0.W": W0, "fc0.b": b0, "fc1.W": W1, "fc1.b": b1}


def setup() -> tuple[pc.Program, dict, dict]:
    g = pc.models.mlp(sizes=(5, 4, 3))
    prog = pc.compile(g, dtype="float64")
    return prog, prog.init_params(0), random_batch(g, size=6)


@pytest.mark.parametrize("value_nodes", ["all", "layers"])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_ipc_is_the_papers_update(value_nodes: str, steps: int) -> None:
    prog, params, batch = setup()
    ours = prog.grads(
        params, batch, algorithm="ipc", steps=steps, rate=0.1, lr=0.05, value_nodes=value_nodes
    )
    ref, _ = ipc_reference(
        params, batch["x"], batch["y"], steps, 0.1, 0.05, value_nodes == "layers"
    )
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=0, atol=1e-14)


def test_a_train_step_with_sgd_applies_the_whole_ipc_trajectory() -> None:
    prog, params, batch = setup()
    _, final = ipc_reference(params, batch["x"], batch["y"], 8, 0.1, 0.05, layers=True)
    prog.train_step(
        params,
        batch,
        algorithm="ipc",
        optimizer=pc.optim.SGD(lr=0.05),
        steps=8,
        rate=0.1,
        value_nodes="layers",
    )
    for k in final:
        np.testing.assert_allclose(params[k], final[k], rtol=0, atol=1e-14)


def test_one_ipc_step_is_one_il_step_with_the_gradient_taken_first() -> None:
    # With one inference step, iPC's gradient comes from the feed-forward errors: backprop's
    # output error only, so the hidden layers' gradients are zero, like IL with no steps.
    prog, params, batch = setup()
    one = prog.grads(params, batch, algorithm="ipc", steps=1, lr=0.05)
    bp = prog.grads(params, batch)
    np.testing.assert_allclose(one["fc1.W"], bp["fc1.W"], rtol=1e-13, atol=1e-15)
    assert not np.any(one["fc0.W"])


def test_the_ipc_schedule_is_a_loop_with_a_parameter_step() -> None:
    prog, _, _ = setup()
    few, many = prog.schedule("ipc", steps=3, lr=0.1), prog.schedule("ipc", steps=10**6, lr=0.1)
    assert len(few.steps) == len(many.steps)
    text = str(many)
    assert "inference t=1..999999 (repeat 999999)" in text
    assert "x[fc0.W] -= 0.1 * d[fc0.W]; dsum[fc0.W] += d" in text
    assert "final errors" not in text


def test_ipc_needs_its_learning_rate_outside_train_step() -> None:
    prog, params, batch = setup()
    with pytest.raises(pc.OptionError, match="algorithm 'ipc' needs lr="):
        prog.grads(params, batch, algorithm="ipc")
    with pytest.raises(pc.OptionError, match="option lr=-1"):
        prog.grads(params, batch, algorithm="ipc", lr=-1)
