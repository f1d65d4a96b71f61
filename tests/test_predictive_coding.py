"""Predictive coding: Z-IL equals backprop exactly; its ablations, FPA, IL and IL-prox behave as
the papers say."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from dags import random_dags
from helpers import attention, mlp, residual, rnn
from hypothesis import HealthCheck, given, settings

import pcgraph as pc
from pcgraph.algorithms.ilprox import Normalise
from pcgraph.testing import random_batch

GRAPHS = {
    "mlp-sigmoid": lambda: mlp(activation=pc.sigmoid),
    "mlp-tanh": lambda: mlp(activation=pc.tanh),
    "mlp-relu": lambda: mlp(activation=pc.relu),
    "mlp-mse": lambda: mlp(activation=pc.tanh, loss="mse"),
    "residual": residual,
    "rnn-shared-weights": rnn,
    "attention": attention,
}


def divergence(a: dict, b: dict) -> float:
    """The largest difference over parameters, relative to the reference ``b``'s scale (floored
    at 1e-6, so a gradient that is exactly zero in ``b`` is compared absolutely)."""
    out = 0.0
    for k in b:
        x, y = pc.to_numpy(a[k]).astype(float), pc.to_numpy(b[k]).astype(float)
        gap = float(np.max(np.abs(x - y)))
        if gap > 1e-15:  # below this, both are zero up to float64 rounding
            out = max(out, gap / max(float(np.max(np.abs(y))), 1e-6))
    return out


def setup(name: str, dtype: str = "float64", B: int = 5):  # noqa: ANN201
    g = GRAPHS[name]()
    prog = pc.compile(g, dtype=dtype)
    return prog, prog.init_params(seed=1), random_batch(g, size=B)


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("levelling", ["longest", "identity"])
def test_zil_equals_backprop_in_float64(name: str, levelling: str) -> None:
    prog, params, batch = setup(name)
    zil = prog.grads(params, batch, algorithm="zil", levelling=levelling)
    assert divergence(zil, prog.grads(params, batch, algorithm="bp")) <= 1e-12


@pytest.mark.parametrize("name", GRAPHS)
def test_zil_equals_backprop_in_float32(name: str) -> None:
    prog, params, batch = setup(name, "float32")
    zil = prog.grads(params, batch, algorithm="zil")
    assert divergence(zil, prog.grads(params, batch, algorithm="bp")) <= 1e-5


@pytest.mark.parametrize("name", GRAPHS)
def test_dense_literal_dynamics_give_the_wavefront_numbers(name: str) -> None:
    prog, params, batch = setup(name)
    dense = prog.grads(params, batch, algorithm="zil", dense=True)
    assert divergence(dense, prog.grads(params, batch, algorithm="zil")) <= 1e-12


@settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(random_dags())
def test_zil_equals_backprop_on_random_dags(g: pc.Graph) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.UnusedParameterWarning)
        prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(seed=0), random_batch(g, size=3)
    bp = prog.grads(params, batch, algorithm="bp")
    assert divergence(prog.grads(params, batch, algorithm="zil"), bp) <= 1e-12
    assert divergence(prog.grads(params, batch, algorithm="zil", dense=True), bp) <= 1e-12


def test_zil_trajectory_stays_on_backprop_for_50_sgd_steps() -> None:
    g = mlp(sizes=(6, 8, 8, 3), activation=pc.sigmoid)
    prog = pc.compile(g, dtype="float64")
    p_bp, p_zil = prog.init_params(0), prog.init_params(0)
    opt_bp, opt_zil = pc.optim.SGD(lr=0.5, momentum=0.5), pc.optim.SGD(lr=0.5, momentum=0.5)
    for step in range(50):
        batch = random_batch(g, size=8, seed=step)
        prog.train_step(p_bp, batch, algorithm="bp", optimizer=opt_bp)
        prog.train_step(p_zil, batch, algorithm="zil", optimizer=opt_zil)
    moved = divergence(p_bp, prog.init_params(0))
    assert moved > 1e-2, "the parameters must actually have trained"
    assert max(np.max(np.abs(p_bp[k] - p_zil[k])) for k in p_bp) <= 1e-10


@pytest.mark.parametrize(
    "ablation,least",
    [
        ({"init_noise": 1e-3}, 1e-4),  # no C1
        ({"timing": 1}, 1e-2),  # no C2: one step late
        ({"timing": -1}, 1e-2),  # no C2: one step early
        ({"timing": "end"}, 1e-2),  # no C2: all at the end
        ({"rate": 0.5}, 1e-2),  # no C3
        ({"rate": 0.99999}, 1e-6),  # no C3, barely: still a real divergence in float64
    ],
)
def test_dropping_any_zil_condition_diverges_from_backprop(ablation: dict, least: float) -> None:
    g = mlp(sizes=(16, 12, 12, 10), activation=pc.sigmoid)
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=16, classes=10)
    bp = prog.grads(params, batch, algorithm="bp")
    assert divergence(prog.grads(params, batch, algorithm="zil", dense=True), bp) <= 1e-12
    assert divergence(prog.grads(params, batch, algorithm="zil", **ablation), bp) >= least


def test_rate_099999_divergence_is_real_not_rounding() -> None:
    prog, params, batch = setup("mlp-sigmoid")
    bp = prog.grads(params, batch, algorithm="bp")
    d = divergence(prog.grads(params, batch, algorithm="zil", rate=0.99999), bp)
    assert 1e-6 < d < 1e-3  # proportional to 1 - rate, far above float64 rounding (1e-15)


@pytest.mark.parametrize("name", GRAPHS)
def test_fpa_with_rate_1_and_depth_sweeps_equals_backprop(name: str) -> None:
    prog, params, batch = setup(name)
    fpa = prog.grads(params, batch, algorithm="fpa", rate=1.0)
    assert divergence(fpa, prog.grads(params, batch, algorithm="bp")) <= 1e-12


def test_fpa_with_fewer_sweeps_or_a_small_rate_differs() -> None:
    prog, params, batch = setup("mlp-tanh")
    bp = prog.grads(params, batch, algorithm="bp")
    assert divergence(prog.grads(params, batch, algorithm="fpa", steps=2), bp) > 1e-2
    assert divergence(prog.grads(params, batch, algorithm="fpa", rate=0.1), bp) > 1e-2


def test_il_divergence_falls_monotonically_as_the_target_nears_the_prediction() -> None:
    g = mlp(sizes=(5, 6, 6, 4), activation=pc.tanh, loss="mse")
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(0)
    batch = random_batch(g, size=6)
    pred = pc.to_numpy(prog.evaluate(params, batch, g.node("add_2")))
    direction = np.random.default_rng(5).standard_normal(pred.shape)
    gaps = []
    for delta in (1.0, 0.3, 0.1, 0.03, 0.01):
        near = {**batch, "y": pred + delta * direction}
        bp = pc.to_numpy(prog.grads(params, near, algorithm="bp"))
        il = pc.to_numpy(prog.grads(params, near, algorithm="il", steps=50, rate=0.2))
        gaps.append(max(np.max(np.abs(il[k] - bp[k])) for k in bp))
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps


def test_il_inference_converges_to_a_fixed_point() -> None:
    prog, params, batch = setup("mlp-tanh")
    a = prog.grads(params, batch, algorithm="il", steps=2000, rate=0.3)
    b = prog.grads(params, batch, algorithm="il", steps=4000, rate=0.3)
    assert divergence(a, b) < 1e-7
    assert divergence(a, prog.grads(params, batch, algorithm="bp")) > 1e-3  # IL is not BP


def test_il_prox_stays_stable_where_sgd_backprop_diverges() -> None:
    """Alonso et al. 2022: IL-prox approximates implicit SGD, stable across learning rates."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 10))
    Y = np.argmax(X @ rng.standard_normal((10, 4)), axis=1)
    g = pc.Graph("prox")
    h = pc.relu(g.input("x", (10,)) @ g.param("W0", (10, 16)) + g.param("b0", (16,)))
    logits = h @ g.param("W1", (16, 4)) + g.param("b1", (4,))
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64")))
    prog = pc.compile(g, dtype="float64")
    full = {"x": X, "y": Y}
    start = prog.loss(prog.init_params(0), full)
    for lr in (1.0, 10.0, 100.0):
        final = {}
        for algo in ("bp", "il-prox"):
            params, opt = prog.init_params(0), pc.optim.SGD(lr=lr)
            with np.errstate(all="ignore"):
                for _epoch in range(2):
                    for i in range(len(X)):  # batch size 1, as in the paper's sweep
                        prog.train_step(
                            params,
                            {"x": X[i : i + 1], "y": Y[i : i + 1]},
                            algorithm=algo,
                            optimizer=opt,
                            on_nonfinite="skip",
                        )
                final[algo] = prog.loss(params, full)
        assert not final["bp"] < start, f"lr {lr}: SGD-backprop was expected to diverge"
        assert np.isfinite(final["il-prox"]) and final["il-prox"] < 0.9 * start, (lr, final)


@pytest.mark.parametrize("layer", ["matmul + add", "linear"])
def test_il_prox_normalises_every_layer_by_its_presynaptic_activity(layer: str) -> None:
    g = pc.Graph("prox-" + layer.replace(" ", ""))
    x = g.input("x", (6,))
    W0, b0, W1, b1 = (
        g.param(n, s) for n, s in (("W0", (6, 5)), ("b0", (5,)), ("W1", (5, 3)), ("b1", (3,)))
    )
    dense = (lambda h, W, b: h @ W + b) if layer == "matmul + add" else pc.linear
    h = pc.tanh(dense(x, W0, b0), name="h")
    g.set_loss(pc.mse(dense(h, W1, b1), g.target("y", (3,))))
    prog = pc.compile(g, dtype="float64")
    steps = prog.schedule("il-prox", alpha=0.1).steps
    norms = {s.param: s.presynaptic for s in steps if isinstance(s, Normalise)}
    assert norms == {"W0": ("x",), "b0": ("x",), "W1": ("h",), "b1": ("h",)}


def test_zil_schedule_costs_what_backprop_costs() -> None:
    prog, _, _ = setup("residual")
    bp = [s for s in prog.schedule("bp").steps if isinstance(s, pc.schedule.VJP)]
    zil = [s for s in prog.schedule("zil").steps if isinstance(s, pc.schedule.VJP)]
    loss_vjps = 1  # Z-IL's output error is the loss VJP, which BP counts too
    assert len(zil) == len(bp) + loss_vjps - 1
    il = prog.schedule("il", steps=3)
    assert sum(sec.repeat * len(sec.steps) for sec in il.sections) > 3 * len(zil)


@pytest.mark.parametrize("algorithm", ["il", "fpa", "il-prox"])
def test_a_schedules_size_does_not_grow_with_its_step_count(algorithm: str) -> None:
    prog, _, _ = setup("residual")
    alpha = {"alpha": 0.1} if algorithm == "il-prox" else {}
    few = prog.schedule(algorithm, steps=4, **alpha)
    many = prog.schedule(algorithm, steps=10**6, **alpha)  # the ceiling (spec/errors.md)
    assert len(many.steps) == len(few.steps)
    loop = many.section("inference t=1..999999")
    assert loop.repeat == 10**6 - 1 and "(repeat 999999)" in str(many)
    assert [sec.repeat for sec in few.sections] == [1, 1, 3, 1, 1]


def test_unknown_options_and_bad_values_are_option_errors() -> None:
    prog, params, batch = setup("mlp-tanh")
    with pytest.raises(pc.OptionError, match="no option 'steps'.*option of il"):
        prog.grads(params, batch, algorithm="zil", steps=3)
    for bad in (
        {"steps": 0},
        {"steps": -1},
        {"rate": -0.1},
        {"rate": float("nan")},
        {"rate": float("inf")},
    ):
        with pytest.raises(pc.OptionError, match="option"):
            prog.grads(params, batch, algorithm="il", **bad)
    with pytest.raises(pc.OptionError, match="needs alpha"):
        prog.grads(params, batch, algorithm="il-prox")


def test_a_loss_operand_that_feeds_other_nodes_is_refused_for_pc() -> None:
    g = pc.Graph("clamp")
    h = pc.matmul(g.input("x", (3,)), g.param("W", (3, 3)), name="h")
    g.set_loss(pc.mse(h, pc.tanh(h)))  # h is clamped by the loss and also feeds tanh
    prog = pc.compile(g, dtype="float64")
    batch = {"x": np.ones((2, 3))}
    prog.grads(prog.init_params(0), batch)  # backprop is fine
    with pytest.raises(pc.GraphError, match="pc.identity"):
        prog.grads(prog.init_params(0), batch, algorithm="zil")


def test_il_step_0_takes_the_feed_forward_predictions_unless_values_are_perturbed() -> None:
    from pcgraph.schedule import Eval

    prog = pc.compile(residual())

    def recomputed_at_step_0(algorithm: str, **options: object) -> list:
        sched = prog.schedule(algorithm, **options)
        return [s for s in sched.section("inference t=0").steps if isinstance(s, Eval)]

    assert recomputed_at_step_0("il", steps=3) == []
    assert recomputed_at_step_0("zil", dense=True, init_noise=0.1)  # perturbed: recomputed
    # and the later steps still recompute every prediction a value update can change
    later = prog.schedule("il", steps=3).section("inference t=1..2").steps
    assert any(isinstance(s, Eval) and s.into == "mu" for s in later)
