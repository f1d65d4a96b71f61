"""Backprop through whole graphs equals finite differences of the loss (float64, 1e-6 relative)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ALGORITHM_OPTIONS, GRAPHS, check_program_grads, mlp

import pcgraph as pc
from pcgraph.algorithms import ALGORITHMS
from pcgraph.testing import random_batch


@pytest.mark.parametrize("name", GRAPHS)
def test_backprop_matches_finite_differences(name: str, backend: str) -> None:
    g = GRAPHS[name]()
    prog = pc.compile(g, backend=backend, dtype="float64")
    check_program_grads(prog, prog.init_params(seed=1), random_batch(g, size=5))


def test_one_hot_targets_give_the_same_gradients_as_class_indices() -> None:
    def build(one_hot: bool) -> pc.Graph:
        g = pc.Graph("m")
        logits = g.input("x", (4,)) @ g.param("W", (4, 3))
        y = g.target("y", (3,)) if one_hot else g.target("y", (), dtype="int64")
        g.set_loss(pc.softmax_cross_entropy(logits, y))
        return g

    labels = np.array([0, 2, 1, 2])
    x = np.random.default_rng(0).standard_normal((4, 4))
    a, b = pc.compile(build(False), dtype="float64"), pc.compile(build(True), dtype="float64")
    params = a.init_params(0)
    ga = a.grads(params, {"x": x, "y": labels})
    gb = b.grads(params, {"x": x, "y": np.eye(3)[labels]})
    np.testing.assert_allclose(ga["W"], gb["W"], rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["bp", "il"])
def test_one_program_serves_batches_of_any_size_in_any_order(algorithm: str) -> None:
    # The loss seeds (1/B for bp, -1 for IL) are made once per batch size and shared by runs.
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    params, opts = prog.init_params(0), ALGORITHM_OPTIONS.get(algorithm, {})
    batches = {B: random_batch(g, size=B, seed=B) for B in (3, 5)}
    fresh = {
        B: pc.compile(g, dtype="float64").grads(params, batches[B], algorithm, **opts)
        for B in (3, 5)
    }
    for B in (3, 5, 3, 5):
        got = prog.grads(params, batches[B], algorithm, **opts)
        for name, value in got.items():
            np.testing.assert_array_equal(value, fresh[B][name], err_msg=f"{name} at batch {B}")


def test_loss_is_the_batch_mean_of_the_per_example_losses() -> None:
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=6)
    per_example = [prog.loss(params, {k: v[i : i + 1] for k, v in batch.items()}) for i in range(6)]
    assert prog.loss(params, batch) == pytest.approx(np.mean(per_example), rel=1e-12)


def test_evaluate_returns_any_node_by_handle_or_name() -> None:
    g = pc.Graph("e")
    x = g.input("x", (3,))
    h = pc.relu(x * 2.0, name="h")
    g.set_loss(pc.mse(h, g.target("y", (3,))))
    prog = pc.compile(g, dtype="float64")
    X = np.array([[-1.0, 0.5, 2.0]])
    np.testing.assert_array_equal(prog.evaluate({}, {"x": X}, h), [[0.0, 1.0, 4.0]])
    np.testing.assert_array_equal(prog.evaluate({}, {"x": X}, "h"), [[0.0, 1.0, 4.0]])


def test_float32_program_computes_in_float32() -> None:
    g = mlp()
    prog = pc.compile(g)  # float32 by default
    params = prog.init_params(0)
    assert all(p.dtype == np.float32 for p in params.values())
    grads = prog.grads(params, random_batch(g))
    assert all(v.dtype == np.float32 for v in grads.values())


def test_init_params_is_reproducible_and_independent_per_parameter() -> None:
    a = pc.compile(mlp()).init_params(seed=3)
    b = pc.compile(mlp()).init_params(seed=3)
    c = pc.compile(mlp()).init_params(seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W0"], c["W0"])


def test_schedule_prints_one_step_per_line() -> None:
    text = str(pc.compile(mlp()).schedule("bp"))
    assert "forward:" in text and "backward:" in text
    assert "g[W0] += vjp1 matmul(g[matmul_0])" in text


def test_node_order_does_not_depend_on_insertion_order() -> None:
    def build(order: list[str]) -> pc.Graph:
        g = pc.Graph("o")
        x = g.input("x", (3,))
        heads = {
            n: pc.tanh(pc.matmul(x, g.param(f"W{n}", (3, 3)), name=f"m{n}"), name=f"h{n}")
            for n in order
        }
        total = pc.add(heads["a"], heads["b"], name="sum")
        g.set_loss(pc.mse(total, g.target("y", (3,)), name="loss"))
        return g

    s1 = str(pc.compile(build(["a", "b"])).schedule("bp"))
    s2 = str(pc.compile(build(["b", "a"])).schedule("bp"))
    assert s1 == s2


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_keeps_every_stored_array_in_float32(algorithm: str) -> None:
    g = mlp()
    prog = pc.compile(g)  # float32
    schedule = prog.schedule(algorithm, **ALGORITHM_OPTIONS.get(algorithm, {}))
    run = prog.run(schedule, prog.init_params(0), random_batch(g), keep=True)
    grads = run.grads()
    assert {k: v.dtype for k, v in grads.items()} == {k: np.float32 for k in grads}
    stores = run.lowered.layout.bases
    assert {"x", "g"} <= set(stores) or {"x", "e", "d"} <= set(stores)
    for store in stores:
        for node, a in run.store(store).items():
            if ":saved" not in store and schedule.compiled.nodes[node].dtype != "int64":
                assert a.dtype == np.float32, f"{store}[{node}] is {a.dtype}"
