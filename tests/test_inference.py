"""Inference with any nodes clamped (``Program.infer``) and generative training.

References: closed-form posteriors of linear Gaussian models (NumPy linear algebra), and IL's
own schedule, which inference with nothing new clamped must reproduce bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import mlp, residual

import pcgraph as pc


def linear_gaussian(k: int = 3, n: int = 5) -> pc.Graph:
    """``x = W^T z + b + noise`` with one value node between: ``h = z W`` (a vertex),
    ``out = h + b`` clamped to ``x`` through ``mse``.  Under the energy
    ``0.5|z|^2 + 0.5|h - zW|^2 + 0.5|x - h - b|^2`` the model is ``z ~ N(0, I)``,
    ``h ~ N(zW, I)``, ``x ~ N(h + b, I)``, so ``x | z ~ N(zW + b, 2 I)``."""
    g = pc.Graph("linear_gaussian")
    z = g.input("z", (k,))
    h = pc.matmul(z, g.param("W", (k, n)), name="h")
    out = pc.add(h, g.param("b", (n,)), name="out")
    g.set_loss(pc.mse(out, g.target("x", (n,)), name="loss"))
    return g


def posterior_mean(W: np.ndarray, b: np.ndarray, x: np.ndarray, rows: slice = slice(None)):
    """MAP (= posterior mean) of z given the entries ``rows`` of x, noise variance 2."""
    Wo = W[:, rows]
    A = Wo @ Wo.T / 2 + np.eye(len(W))
    return np.linalg.solve(A, Wo @ (x[:, rows] - b[rows]).T / 2).T


@pytest.fixture
def model(rng: np.random.Generator) -> tuple:
    prog = pc.compile(linear_gaussian(), dtype="float64")
    params = prog.init_params(seed=3)
    return prog, params, rng.normal(size=(6, 5))


def test_linear_gaussian_posterior_mean(model: tuple) -> None:
    prog, params, x = model
    W, b = (np.asarray(params[p]) for p in ("W", "b"))
    r = prog.infer(params, {"x": x}, free=["z"], steps=600, rate=0.2)
    z = posterior_mean(W, b, x)
    h = (z @ W + x - b) / 2  # the value node's MAP: halfway between its prediction and x - b
    assert np.abs(r.values["z"] - z).max() < 1e-6
    assert np.abs(r.values["h"] - h).max() < 1e-6
    # the energy falls at every step, to the closed-form minimum
    assert r.energy.shape == (601, 6)
    assert np.all(np.diff(r.energy, axis=0) <= 1e-12)
    residual_ = x - b - z @ W
    minimum = 0.5 * (z**2).sum(1) + 0.25 * (residual_**2).sum(1)
    assert np.abs(r.energy[-1] - minimum).max() < 1e-9


def test_observing_the_output_vertex_is_the_same_posterior(model: tuple) -> None:
    # mse clamps the output to x; holding the output vertex at x gives the same energy.
    prog, params, x = model
    W, b = (np.asarray(params[p]) for p in ("W", "b"))
    r = prog.infer(params, {"out": x}, free=["z"], steps=600, rate=0.2)
    assert np.abs(r.values["z"] - posterior_mean(W, b, x)).max() < 1e-6
    assert np.array_equal(r.values["out"], x)  # clamped: never moved
    assert "x[out] = obs[out]  (clamped)" in str(r.schedule)
    assert "no loss term in the energy" in str(r.schedule)


def test_a_partly_observed_node_infers_its_missing_entries(model: tuple) -> None:
    prog, params, x = model
    W, b = (np.asarray(params[p]) for p in ("W", "b"))
    seen = np.array([1, 1, 0, 1, 0], dtype=float)
    r = prog.infer(params, {"out": x}, free=["z"], mask={"out": seen}, steps=800, rate=0.2)
    rows = seen == 1
    z = posterior_mean(W, b, x, rows)
    assert np.abs(r.values["z"] - z).max() < 1e-6
    out = np.asarray(r.values["out"])
    assert np.array_equal(out[:, rows], x[:, rows])
    assert np.abs(out[:, ~rows] - (z @ W + b)[:, ~rows]).max() < 1e-6
    assert "free[out]" in str(r.schedule)


def test_a_latent_given_a_start_reaches_the_same_posterior(model: tuple) -> None:
    prog, params, x = model
    W, b = (np.asarray(params[p]) for p in ("W", "b"))
    start = np.full((6, 3), 2.0)
    r = prog.infer(params, {"x": x}, free=["z"], steps=600, rate=0.2, init={"z": start})
    assert np.abs(r.values["z"] - posterior_mean(W, b, x)).max() < 1e-6
    # at the start, h is the prediction from z = 2 (zero error): F = 0.5|z|^2 + loss
    first = 0.5 * (start**2).sum(1) + 0.5 * ((x - start @ W - b) ** 2).sum(1)
    assert np.abs(r.energy[0] - first).max() < 1e-12


def test_inference_runs_on_the_array_api_strict_backend(model: tuple) -> None:
    pytest.importorskip("array_api_strict")
    prog, params, x = model
    strict = pc.compile(linear_gaussian(), backend="array_api_strict", dtype="float64")
    seen = {"mask": {"out": np.array([1.0, 0, 1, 1, 0])}, "steps": 30, "rate": 0.2}
    ours = prog.infer(params, {"out": x}, free=["z"], **seen)
    theirs = strict.infer(params, {"out": x}, free=["z"], **seen)
    for node, value in ours.values.items():
        assert np.array_equal(value, pc.to_numpy(theirs.values[node])), node
    assert np.array_equal(ours.energy, theirs.energy)


@pytest.mark.parametrize("placement", ["all", "layers"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_with_nothing_new_clamped_inference_is_il(placement: str, dtype: str) -> None:
    g = pc.models.mlp(sizes=(6, 5, 4, 3), activation="tanh")
    prog = pc.compile(g, dtype=dtype)
    params = prog.init_params(seed=1)
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(7, 6)), "y": rng.integers(0, 3, 7)}
    il = prog.run(
        prog.schedule("il", steps=6, rate=0.2, value_nodes=placement), params, batch, keep=True
    )
    r = prog.infer(params, batch, steps=6, rate=0.2, value_nodes=placement)
    for node, value in r.values.items():
        assert np.array_equal(value, il.value(node)), node
        assert np.array_equal(r.errors[node], il.value(node, "e")), node


@pytest.mark.parametrize("graph", [mlp, residual])
def test_inference_reproduces_il_on_other_graphs(graph) -> None:
    prog = pc.compile(graph(), dtype="float64")
    params = prog.init_params(seed=2)
    rng = np.random.default_rng(1)
    shape = prog.compiled.nodes["x"].shape
    batch = {"x": rng.normal(size=(4, *shape)), "y": rng.integers(0, 3, 4)}
    il = prog.run(prog.schedule("il", steps=4), params, batch, keep=True)
    r = prog.infer(params, batch, steps=4)
    assert r.values and all(np.array_equal(v, il.value(n)) for n, v in r.values.items())


def test_freeing_the_output_without_a_target_relaxes_to_the_prediction() -> None:
    prog = pc.compile(pc.models.mlp(sizes=(4, 6, 3), activation="tanh"), dtype="float64")
    params = prog.init_params(seed=0)
    x = np.random.default_rng(2).normal(size=(5, 4))
    r = prog.infer(params, {"x": x}, free=["fc1"], steps=3)
    assert np.array_equal(r.values["fc1"], prog.evaluate(params, {"x": x}, "fc1"))
    assert np.all(r.energy == 0.0)  # every error is zero from the start


def test_generative_training_takes_the_increments_at_the_posterior(model: tuple) -> None:
    # The latent z is inferred per example; the weights' gradient is the energy's at the MAP.
    prog, params, x = model
    W, b = (np.asarray(params[p]) for p in ("W", "b"))
    grads = prog.grads(params, {"x": x}, "generative", latent=["z"], steps=600, rate=0.2)
    z = posterior_mean(W, b, x)
    err = (x - b - z @ W) / 2  # the errors of h and of out at the MAP
    assert np.abs(grads["W"] - (-(z.T @ err) / len(x))).max() < 1e-6
    assert np.abs(grads["b"] - (-err.mean(0))).max() < 1e-6
    printed = str(prog.schedule("generative", latent=["z"], steps=3))
    assert "inferred: latent leaves z (prior N(0, I))" in printed
    assert "x[z] = 0  (latent: the prior mean)" in printed


def test_generative_with_a_fed_top_is_il() -> None:
    prog = pc.compile(pc.models.mlp(sizes=(4, 5, 3), activation="tanh"), dtype="float64")
    params = prog.init_params(seed=0)
    rng = np.random.default_rng(3)
    batch = {"x": rng.normal(size=(5, 4)), "y": rng.integers(0, 3, 5)}
    a = prog.grads(params, batch, "il", steps=5)
    b = prog.grads(params, batch, "generative", steps=5)
    assert all(np.array_equal(a[p], b[p]) for p in a)
    assert "# clamped: fed leaves x, y" in str(prog.schedule("generative", steps=5))


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_typed_errors_naming_the_node(model: tuple) -> None:
    prog, params, x = model
    with pytest.raises(pc.GraphError, match="'nope'"):
        prog.infer(params, {"x": x, "nope": x}, free=["z"])
    with pytest.raises(pc.GraphError, match="'zz'"):
        prog.infer(params, {"x": x}, free=["zz"])
    with pytest.raises(pc.OptionError, match="'out' is both observed and free"):
        prog.infer(params, {"x": x, "out": x}, free=["z", "out"])
    with pytest.raises(pc.FeedError, match="'out' has shape \\(6, 4\\)"):
        prog.infer(params, {"out": x[:, :4]}, free=["z"])
    with pytest.raises(pc.FeedError, match="'x'"):
        prog.infer(params, {"x": x[:, :4]}, free=["z"])
    with pytest.raises(pc.FeedError, match="'z' has batch size 2"):
        prog.infer(params, {"x": x}, free=["z"], init={"z": np.zeros((2, 3))})
    with pytest.raises(pc.OptionError, match="'W', a parameter"):
        prog.infer(params, {"x": x}, free=["z", "W"])
    with pytest.raises(pc.OptionError, match="'z' feeds the nodes being inferred"):
        prog.infer(params, {"x": x})
    with pytest.raises(pc.OptionError, match="mask for 'h'"):
        prog.infer(params, {"x": x}, free=["z"], mask={"h": np.ones(5)})
    with pytest.raises(pc.OptionError, match="init gives 'out'"):
        prog.infer(params, {"x": x}, free=["z"], init={"out": x})
    with pytest.raises(pc.OptionError, match="'x' is observed but nothing inferred"):
        prog.infer(params, {"x": x}, free=["z", "out"])
    with pytest.raises(pc.OptionError, match="steps"):
        prog.infer(params, {"x": x}, free=["z"], steps=0)
    label = pc.compile(pc.models.mlp(sizes=(4, 3)))
    with pytest.raises(pc.OptionError, match="'y' holds int64"):
        label.infer(label.init_params(), {"x": np.zeros((2, 4))}, free=["y"])
    with pytest.raises(pc.OptionError, match="latent names 'q'"):
        prog.grads(params, {"x": x}, "generative", latent=["q"])
