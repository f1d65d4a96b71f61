"""Optimisers and train_step: the updates they apply, and nothing applied on failure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc
from pcgraph.testing import random_batch


def setup(seed: int = 0):  # noqa: ANN201
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    return prog, prog.init_params(seed), random_batch(g, size=8)


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


def _dying_weight(dtype: str):  # noqa: ANN202
    """A linear model whose second weight gets gradients on batch ``a`` and exactly none on
    batch ``b`` (its input is 0 there), as a dead ReLU unit's weights do."""
    g = pc.Graph("decay")
    pred = g.input("x", (2,)) @ g.param("W", (2, 1))
    g.set_loss(pc.mse(pred, g.target("y", (1,))))
    prog = pc.compile(g, dtype=dtype)
    y = np.ones((4, 1), dtype=dtype)
    a = {"x": np.array([[1.0, 1.0]] * 4, dtype=dtype), "y": y}
    b = {"x": np.array([[1.0, 0.0]] * 4, dtype=dtype), "y": y}
    return prog, {"W": np.array([[0.2], [0.3]], dtype=dtype)}, a, b


@pytest.mark.parametrize("make", [lambda: pc.optim.SGD(lr=0.1, momentum=0.9), pc.optim.Adam])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_decaying_optimiser_state_never_turns_subnormal(make, dtype: str) -> None:  # noqa: ANN001
    # Once W[1]'s gradient is exactly 0, its momentum (Adam: first moment) decays
    # geometrically: without the flush it sinks through the subnormal range, where every CPU
    # operation on it is 10-100x slower (the executor issue saw a step grow from 1.5 to 12 ms).
    prog, params, a, b = _dying_weight(dtype)
    opt = make()
    for _ in range(20):
        prog.train_step(params, a, optimizer=opt)
    tiny = np.finfo(dtype).tiny
    decayed = False
    for _ in range(1500 if dtype == "float32" else 8000):
        prog.train_step(params, b, optimizer=opt)
        for key, value in opt.state.items():
            if key != "step":
                v = np.asarray(value)[1]
                assert not np.any((v != 0) & (np.abs(v) < tiny)), f"{key} holds subnormals"
                decayed = decayed or bool(np.all(v == 0))
    assert decayed  # the decaying state did reach zero: the check above was exercised


def test_the_flush_period_is_short_enough_for_any_decay() -> None:
    # Between two flushes a value must not fall from the threshold (tiny * 2**20) to tiny.
    assert pc.optim.flush_period(0.0) == 1  # no decay to speak of: the state is g itself
    for decay in (0.1, 0.5, 0.9, 0.99, 0.999):
        period = pc.optim.flush_period(decay)
        assert period >= 1
        assert decay**period > 2.0**-20


def test_an_update_that_overflows_is_refused_and_applies_nothing() -> None:
    prog, params, batch = setup()
    prog32 = pc.compile(mlp(), dtype="float32")
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    before = {k: v.copy() for k, v in params32.items()}
    opt = pc.optim.SGD(lr=1e39, momentum=0.9)  # finite as a Python float, not in float32
    with pytest.raises(pc.NumericalError, match="new value of param"):
        prog32.train_step(params32, batch, optimizer=opt)
    assert all(np.array_equal(params32[k], before[k]) for k in params32)
    assert opt.state == {"step": 0}  # no velocity adopted either


def test_adam_refuses_a_second_moment_that_overflows() -> None:
    # g * g overflows float32 for |g| > 1.8e19 while g itself is finite: the step would
    # leave v = inf (and the parameter stuck) without a word.
    g = pc.Graph("huge")
    pred = g.input("x", (2,)) @ g.param("W", (2, 1))
    g.set_loss(pc.mse(pred, g.target("y", (1,))))
    prog = pc.compile(g, dtype="float32")
    params = {"W": np.ones((2, 1), dtype=np.float32)}
    batch = {"x": np.full((3, 2), 1e15, dtype=np.float32), "y": np.ones((3, 1), dtype=np.float32)}
    opt = pc.optim.Adam(lr=1e-3)
    with pytest.raises(pc.NumericalError, match="optimiser's state 'v/W'"):
        prog.train_step(params, batch, optimizer=opt)
    assert np.array_equal(params["W"], np.ones((2, 1), dtype=np.float32))
    assert opt.state == {"step": 0}


def test_parameters_keep_their_arrays_across_steps() -> None:
    # The update is written into the parameter arrays: a reference taken before a step sees
    # the new values, as with PyTorch's in-place optimisers.
    prog, params, batch = setup()
    held = params["W0"]
    prog.train_step(params, batch, optimizer=pc.optim.SGD(lr=0.1, momentum=0.9))
    assert params["W0"] is held


# --------------------------------------------------------------------------- schedules
def test_learning_rate_schedules_follow_their_formulas() -> None:
    import math

    cos = pc.optim.cosine(0.1, total=10, final=0.2, warmup=2)
    assert [cos(i) for i in range(2)] == pytest.approx([0.1 / 3, 0.2 / 3])
    assert cos(2) == pytest.approx(0.1)
    assert cos(7) == pytest.approx(0.1 * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert cos(12) == cos(100) == pytest.approx(0.02)
    step = pc.optim.step_decay(1.0, every=3, gamma=0.5)
    assert [step(i) for i in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert pc.optim.constant(0.3)(10**6) == 0.3
    opt = pc.optim.SGD(lr=1.0)
    step.apply(opt, 6)
    assert opt.lr == 0.25


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: pc.optim.cosine(0.1, total=0), "cosine: total=0"),
        (lambda: pc.optim.step_decay(0.1, every=2, gamma=1.5), "gamma=1.5"),
        (lambda: pc.optim.constant(-1.0), "lr=-1.0"),
        (lambda: pc.optim.constant(0.1, warmup=-1), "warmup=-1"),
    ],
)
def test_a_bad_schedule_is_an_option_error(make, match: str) -> None:  # noqa: ANN001
    with pytest.raises(pc.OptionError, match=match):
        make()


def test_early_stopping_counts_epochs_without_improvement() -> None:
    stop = pc.compare.EarlyStopping(patience=2, min_delta=0.01)
    assert [stop.update(x) for x in (1.0, 0.5, 0.495, 0.6, 0.4, 0.45, 0.41)] == [
        False,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    assert (stop.best, stop.best_at) == (0.4, 5)


def scaled_graph() -> pc.Graph:
    """A two-layer MLP whose first weight learns at 0.25 and whose output bias at 3 times the
    optimiser's rate (``Graph.param(lr_scale=)``)."""
    g = pc.Graph("scaled")
    x = g.input("x", (5,))
    h = pc.tanh(x @ g.param("W0", (5, 4), lr_scale=0.25) + g.param("b0", (4,)))
    out = h @ g.param("W1", (4, 3)) + g.param("b1", (3,), lr_scale=3)
    g.set_loss(pc.softmax_cross_entropy(out, g.target("y", (), dtype="int64")))
    return g


OPTIMISER_PAIRS = {  # pcgraph's optimiser and PyTorch's, same settings
    "sgd": (lambda: pc.optim.SGD(lr=0.1), lambda torch, groups: torch.optim.SGD(groups, lr=0.1)),
    "sgd-nesterov-decay": (
        lambda: pc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda torch, groups: torch.optim.SGD(
            groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01
        ),
    ),
    "adamw": (
        lambda: pc.optim.Adam(lr=0.01, weight_decay=0.1),
        lambda torch, groups: torch.optim.AdamW(groups, lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("pair", sorted(OPTIMISER_PAIRS))
def test_per_parameter_learning_rates_are_pytorch_parameter_groups(pair: str) -> None:
    """Three steps of pcgraph's optimiser on a graph with ``lr_scale`` params equal PyTorch's
    optimiser with one parameter group per rate, fed the same gradients."""
    torch = pytest.importorskip("torch", reason="PyTorch's optimisers are the reference")
    g = scaled_graph()
    prog = pc.compile(g, dtype="float64")
    assert prog.lr_scales == {"W0": 0.25, "b1": 3.0}
    params = prog.init_params(seed=1)
    batch = random_batch(g, size=6)
    tensors = {k: torch.tensor(np.array(v), requires_grad=True) for k, v in params.items()}
    ours, theirs = OPTIMISER_PAIRS[pair]
    base = theirs(torch, [{"params": [tensors[k]]} for k in tensors]).defaults["lr"]
    reference = theirs(
        torch,
        [{"params": [t], "lr": base * prog.lr_scales.get(k, 1.0)} for k, t in tensors.items()],
    )
    opt = ours()
    for _ in range(3):
        grads = prog.grads(params, batch)
        for k, t in tensors.items():
            t.grad = torch.tensor(np.asarray(grads[k]))
        reference.step()
        prog.train_step(params, batch, optimizer=opt)
        for k, t in tensors.items():
            np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_lr_scale_survives_a_graph_file_and_is_checked() -> None:
    g = scaled_graph()
    again = pc.graph_from_json(pc.graph_to_json(g))
    assert pc.compile(again).lr_scales == {"W0": 0.25, "b1": 3.0}
    assert pc.fingerprint(again) == pc.fingerprint(g)  # a training setting, like init
    with pytest.raises(pc.GraphError, match="'w': lr_scale"):
        pc.Graph().param("w", (2,), lr_scale=0)
    text = pc.graph_to_json(g).replace('"lr_scale": 3.0', '"lr_scale": -1')
    with pytest.raises(pc.FileFormatError, match="lr_scale"):
        pc.graph_from_json(text)


def test_algorithms_that_step_parameters_inside_the_schedule_refuse_per_parameter_rates() -> None:
    prog = pc.compile(scaled_graph())
    params, batch = prog.init_params(0), random_batch(scaled_graph(), size=4)
    for algorithm in ("ipc", "il-prox"):
        with pytest.raises(pc.OptionError, match="per-parameter learning rates"):
            prog.train_step(params, batch, algorithm, optimizer=pc.optim.SGD(lr=0.1))
