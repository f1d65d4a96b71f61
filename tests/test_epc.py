"""Error optimisation (ePC; Goemaere et al. 2025, arXiv 2505.20137): inference on the errors,
values derived from them by a forward pass.  The properties the paper builds on, checked on a
deep linear chain against linear algebra, and ePC's errors and update against FabricPC's own
``EPCInference`` (reference numbers its code produced, ``tests/data/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pcgraph as pc

DATA = Path(__file__).resolve().parent / "data"


def linear_chain(depth: int, width: int) -> pc.Graph:
    """``h_l = h_{l-1} @ W_l`` for l = 1..depth, mse against ``y``: every ``h_l`` but the last
    is a value node, the last is the clamped output."""
    g = pc.Graph("chain")
    h = g.input("x", (width,))
    for i in range(1, depth + 1):
        h = pc.matmul(h, g.param(f"W{i}", (width, width)), name=f"h{i}")
    g.set_loss(pc.mse(h, g.target("y", (width,)), name="loss"))
    return g


def orthogonal_params(depth: int, width: int, seed: int) -> dict:
    """Random orthogonal weights: every layer's Jacobian preserves norms, so nothing but the
    inference dynamics can make a signal shrink with depth."""
    rng = np.random.default_rng(seed)
    return {f"W{i}": np.linalg.qr(rng.normal(size=(width, width)))[0] for i in range(1, depth + 1)}


def chain_batch(width: int, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(batch, width)), "y": rng.normal(size=(batch, width))}


def test_the_first_epc_step_moves_every_layer_while_il_never_reaches_the_first() -> None:
    depth, width, rate = 48, 6, 0.1
    prog = pc.compile(linear_chain(depth, width), dtype="float64")
    params, batch = orthogonal_params(depth, width, 0), chain_batch(width, 5, 1)
    Ws = [params[f"W{i}"] for i in range(1, depth + 1)]

    # Backprop by hand: -dl/dh_l = (y - h_L) W_L^T ... W_{l+1}^T.
    hs = [batch["x"]]
    for W in Ws:
        hs.append(hs[-1] @ W)
    minus_grad = {depth: batch["y"] - hs[-1]}
    for layer in range(depth - 1, 0, -1):
        minus_grad[layer] = minus_grad[layer + 1] @ Ws[layer].T

    epc = prog.run(prog.schedule("epc", steps=1, rate=rate), params, batch, keep=True)
    errors = epc.store("e")
    for layer in range(1, depth):  # e_l = 0 + rate * (g_l - 0), g_l = -dl/dh_l: every layer
        np.testing.assert_allclose(errors[f"h{layer}"], rate * minus_grad[layer], atol=1e-13)
    first = np.linalg.norm(errors["h1"]) / np.linalg.norm(errors[f"h{depth - 1}"])
    assert first == pytest.approx(1.0, rel=1e-12)  # orthogonal weights: no decay at all

    # IL: after as many steps as there are layers the output's signal has had the time to
    # reach the first layer, shrunk by ~rate per layer: below float64 rounding long before.
    il = prog.run(prog.schedule("il", steps=depth, rate=rate), params, batch, keep=True)
    moved = {
        layer: np.linalg.norm(il.value(f"h{layer}") - hs[layer]) / np.linalg.norm(hs[layer])
        for layer in range(1, depth)
    }
    assert moved[depth - 1] > 1e-2  # the layer under the output moves
    # Binomial-times-rate**k decay: 28 layers under the output the change is 6e-18 of the
    # value, and the 19 layers further down never move at all.
    reached = [layer for layer in moved if moved[layer] > 0]
    assert all(moved[a] < moved[b] for a, b in zip(reached, reached[1:]))  # decays downwards
    assert moved[1] == 0.0 and depth - min(reached) <= 32, moved


def chain_energy_minimum(params: dict, batch: dict, depth: int) -> np.ndarray:
    """The minimum over every hidden value of the PC energy of a linear chain, per example, in
    closed form.  With errors e_l as variables, ``h_L = M x + sum_l A_l e_l`` (``A_l`` the
    product of the weights above layer l), so ``F = sum_l 0.5 ||e_l||^2 + 0.5 ||y - h_L||^2`` is
    a ridge problem: ``F* = 0.5 r^T (I + sum_l A_l^T A_l)^{-1} r`` with ``r = y - M x``."""
    Ws = [params[f"W{i}"] for i in range(1, depth + 1)]
    width = Ws[0].shape[0]
    M = np.eye(width)
    for W in Ws:
        M = M @ W
    S = np.zeros((width, width))
    for layer in range(1, depth):  # row-vector convention: h_L = e_l @ A_l
        A = np.eye(width)
        for W in Ws[layer:]:
            A = A @ W
        S += A.T @ A
    r = batch["y"] - batch["x"] @ M
    return 0.5 * np.einsum("bi,ij,bj->b", r, np.linalg.inv(np.eye(width) + S), r)


def run_energy(run: pc.program.Run, depth: int) -> np.ndarray:
    """Per-example energy at the end of a run: the value nodes' errors and the output error."""
    e = run.store("e")
    return sum(0.5 * np.sum(e[f"h{layer}"] ** 2, axis=1) for layer in range(1, depth + 1))


def test_epc_and_il_reach_the_same_energy_minimum_the_closed_form_gives() -> None:
    depth, width = 5, 3
    prog = pc.compile(linear_chain(depth, width), dtype="float64")
    rng = np.random.default_rng(2)
    params = {f"W{i}": rng.normal(size=(width, width)) / np.sqrt(width) for i in range(1, 6)}
    batch = chain_batch(width, 4, 3)
    exact = chain_energy_minimum(params, batch, depth)
    ff = 0.5 * np.sum((batch["y"] - prog.evaluate(params, batch, f"h{depth}")) ** 2, axis=1)
    assert np.all(exact < 0.9 * ff)  # inference has something to do
    runs = {
        algo: prog.run(prog.schedule(algo, steps=3000, rate=0.1), params, batch, keep=True)
        for algo in ("epc", "il")
    }
    for algo, run in runs.items():
        np.testing.assert_allclose(run_energy(run, depth), exact, rtol=1e-10, err_msg=algo)
    # The same minimiser: the same values and the same parameter update.
    for layer in range(1, depth):
        np.testing.assert_allclose(
            runs["epc"].value(f"h{layer}"), runs["il"].value(f"h{layer}"), atol=1e-10
        )
    g_epc, g_il = runs["epc"].grads(), runs["il"].grads()
    for p in params:
        np.testing.assert_allclose(g_epc[p], g_il[p], atol=1e-10, err_msg=p)


def fabricpc_chain() -> pc.Program:
    """FabricPC's 5-4-4-3 reference network in pcgraph: ``linear`` then ``tanh`` per hidden
    node (FabricPC's node is linear + activation, one latent after the activation: pcgraph's
    value nodes ``h1``, ``h2``), a linear output under mse (FabricPC's Gaussian energy)."""
    g = pc.Graph("fabricpc_chain")
    h = g.input("x", (5,))
    for node, size, act in (("h1", 4, pc.tanh), ("h2", 4, pc.tanh), ("y", 3, None)):
        W, b = g.param(f"{node}.W", (h.shape[-1], size)), g.param(f"{node}.b", (size,))
        h = pc.linear(h, W, b, name=f"{node}.pre")
        h = act(h, name=node) if act else h
    g.set_loss(pc.mse(h, g.target("y", (3,)), name="loss"))
    return pc.compile(g, dtype="float64")


def check_against_fabricpc(ref: Any) -> None:
    prog = fabricpc_chain()
    # FabricPC keeps a bias as (1, n): pcgraph's is (n,).
    shapes = {p: prog.compiled.nodes[p].shape for p in prog.params}
    params = {p: ref[f"param:{p}"].reshape(shape) for p, shape in shapes.items()}
    batch = {"x": ref["x"], "y": ref["y"]}
    schedule = prog.schedule(
        "epc", steps=int(ref["steps"]), rate=float(ref["rate"]), value_nodes=["h1", "h2"]
    )
    run = prog.run(schedule, params, batch, keep=True)
    for node in ("h1", "h2"):
        np.testing.assert_allclose(run.value(node, "e"), ref[f"error:{node}"], atol=1e-10)
        np.testing.assert_allclose(run.value(node), ref[f"value:{node}"], atol=1e-10)
    assert np.abs(ref["error:h1"]).max() > 1e-2  # the errors did move
    grads = run.grads()
    for p in params:  # FabricPC sums over the batch, pcgraph takes the mean
        expected = ref[f"grad:{p}"].reshape(shapes[p])
        np.testing.assert_allclose(grads[p] * len(ref["x"]), expected, atol=1e-10, err_msg=p)


def test_epc_errors_and_update_equal_fabricpcs_epc_inference() -> None:
    """FabricPC's ``EPCInference`` (PyPI 0.6.0; branch dmacd-epc-tw, commit 43826b8) on a
    5-4-4-3 tanh MLP with a Gaussian (mse) output, float64: its relaxed errors and derived values
    after its inference steps, and its local weight gradients, as ``tests/data/`` holds them."""
    check_against_fabricpc(np.load(DATA / "fabricpc_epc_reference.npz"))


def test_epc_equals_fabricpc_run_here() -> None:
    """The same, with FabricPC running in this process, where it is installed (its JAX may not
    agree with PCX's pin, so this usually runs in a virtual environment of its own)."""
    pytest.importorskip("fabricpc.core.inference_epc", reason="FabricPC >= 0.6 is not installed")
    import importlib.util

    spec = importlib.util.spec_from_file_location("ref", DATA / "fabricpc_epc_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check_against_fabricpc(module.reference())


@pytest.mark.parametrize("name", ["residual", "rnn-shared-weights", "attention"])
def test_epc_settles_long_before_il_on_skips_shared_weights_and_attention(name: str) -> None:
    """The paper's convergence claim, on graphs that are no chain: after 200 steps at rate 0.1
    ePC's update no longer moves (its signal reaches every value node at every step), while IL's
    is still changing by a percent of its size."""
    from helpers import GRAPHS

    from pcgraph.testing import random_batch

    g = GRAPHS[name]()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)

    def change(algorithm: str) -> float:
        a, b = (prog.grads(params, batch, algorithm, steps=s, rate=0.1) for s in (200, 400))
        return max(float(np.abs(a[k] - b[k]).max()) for k in a)

    assert change("epc") < 1e-8  # measured 7e-10 to 4e-9
    assert change("il") > 1e-3  # measured 0.014 to 0.16
