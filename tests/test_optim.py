"""Optimisers and train_step: the updates they apply, and nothing applied on failure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import batch_for, mlp

import pcgraph as pc


def setup(seed: int = 0):  # noqa: ANN201
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    return prog, prog.init_params(seed), batch_for(g, B=8)


def test_sgd_step_is_params_minus_lr_times_grads() -> None:
    prog, params, batch = setup()
    before = {k: v.copy() for k, v in params.items()}
    grads = prog.grads(params, batch)
    loss = prog.train_step(params, batch, optimizer=pc.optim.SGD(lr=0.1))
    assert loss == pytest.approx(prog.loss(before, batch))
    for k in params:
        np.testing.assert_allclose(params[k], before[k] - 0.1 * grads[k], rtol=1e-14)


def test_momentum_accumulates_velocity() -> None:
    prog, params, batch = setup()
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    g1 = prog.grads(params, batch)
    p0 = {k: v.copy() for k, v in params.items()}
    prog.train_step(params, batch, optimizer=opt)
    g2 = prog.grads(params, batch)
    p1 = {k: v.copy() for k, v in params.items()}
    prog.train_step(params, batch, optimizer=opt)
    for k in params:
        np.testing.assert_allclose(p1[k], p0[k] - 0.1 * g1[k], rtol=1e-13)
        np.testing.assert_allclose(params[k], p1[k] - 0.1 * (0.9 * g1[k] + g2[k]), rtol=1e-12)


def test_adam_first_step_moves_each_entry_by_about_lr() -> None:
    prog, params, batch = setup()
    before = {k: v.copy() for k, v in params.items()}
    grads = prog.grads(params, batch)
    prog.train_step(params, batch, optimizer=pc.optim.Adam(lr=1e-3))
    for k in params:
        big = np.abs(grads[k]) > 1e-6
        np.testing.assert_allclose(
            (before[k] - params[k])[big], 1e-3 * np.sign(grads[k][big]), rtol=1e-3
        )


def test_training_lowers_the_loss() -> None:
    prog, params, batch = setup()
    first = prog.loss(params, batch)
    opt = pc.optim.Adam(lr=0.01)
    for _ in range(30):
        prog.train_step(params, batch, optimizer=opt)
    assert prog.loss(params, batch) < 0.5 * first


@pytest.mark.parametrize(
    "make",
    [
        lambda: pc.optim.SGD(lr=-1),
        lambda: pc.optim.SGD(lr=float("nan")),
        lambda: pc.optim.SGD(lr=0.1, momentum=1.5),
        lambda: pc.optim.Adam(betas=(0.9, 1.0)),
        lambda: pc.optim.Adam(eps=0),
    ],
)
def test_bad_optimiser_settings_are_option_errors(make) -> None:  # noqa: ANN001
    with pytest.raises(pc.OptionError):
        make()


def test_a_failed_step_applies_nothing() -> None:
    prog, params, batch = setup()
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    prog.train_step(params, batch, optimizer=opt)
    before = {k: v.copy() for k, v in params.items()}
    state = dict(opt.state)
    bad = {**batch, "x": batch["x"][:, :3]}
    with pytest.raises(pc.FeedError):
        prog.train_step(params, bad, optimizer=opt)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert opt.state.keys() == state.keys() and opt.state["step"] == state["step"]


def test_a_nonfinite_loss_raises_naming_the_node_and_applies_nothing() -> None:
    prog, params, batch = setup()
    before = {k: v.copy() for k, v in params.items()}
    bad = {**batch, "x": np.where(np.arange(6) == 2, np.inf, batch["x"])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error says it all: no NumPy warning besides
        with pytest.raises(pc.NumericalError, match="node 'x'"):
            prog.train_step(params, bad, optimizer=pc.optim.SGD(lr=0.1))
        assert all(np.array_equal(params[k], before[k]) for k in params)
        prog.train_step(params, bad, optimizer=pc.optim.SGD(lr=0.1), on_nonfinite="skip")
    assert prog.skipped == 1
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_huge_but_finite_gradients_are_applied_not_refused() -> None:
    # |dL/dW| ~ 1e20: finite in float32, but its square is not, so the fast finiteness
    # check overflows and the scan must find that nothing is wrong.
    g = pc.Graph("huge")
    pred = g.input("x", (2,)) @ g.param("W", (2, 1))
    g.set_loss(pc.mse(pred, g.target("y", (1,))))
    prog = pc.compile(g, dtype="float32")
    params = {"W": np.full((2, 1), 1e-21, dtype=np.float32)}
    batch = {"x": np.full((3, 2), 1e20, dtype=np.float32), "y": np.ones((3, 1), dtype=np.float32)}
    grad = prog.grads(params, batch)["W"]
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) > 1e19)
    assert not np.isfinite(np.vdot(grad, grad))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the check's own overflow is no concern of the user's
        prog.train_step(params, batch, optimizer=pc.optim.SGD(lr=1e-42))
    assert np.all(np.isfinite(params["W"])) and not np.all(params["W"] == np.float32(1e-21))
