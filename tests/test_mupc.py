"""muPC (Innocenti, Achour, Buckley 2025, arXiv 2505.13124): the Depth-muP parameterisation of
``deep_mlp(parameterisation="mupc")`` against the authors' code, thebuckleylab/jpc (commit
7d6cc05), transcribed line by line into PyTorch (jpc is not on PyPI; its JAX autodiff becomes
PyTorch's): ``jpc.make_mlp(param_type="mupc", use_bias=False)`` with ``jpc.make_skip_model``,
``_get_param_scalings``, ``init_activities_with_ffwd``, ``pc_energy_fn(loss="ce")``, and the
training step of ``experiments/mupc_paper/train_pcn_no_metrics.py``: gradient descent on the
activities (``update_pc_activities`` with ``optax.sgd``), then ``update_pc_params`` with
``optax.adam``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pcgraph as pc

torch = pytest.importorskip("torch", reason="the jpc transcription runs on PyTorch autograd")

D, N, CLASSES, BLOCKS, BATCH = 7, 6, 4, 5, 3


def jpc_scalings(model: list, x: torch.Tensor, param_type: str) -> list[float]:
    """``jpc._get_param_scalings(param_type)`` with skips: for "mupc" ``a_1 = 1/sqrt(D)``,
    ``a_l = 1/sqrt(N L)``, ``a_L = 1/N`` (D the input's size, N ``model[0]``'s output width);
    for "sp" every ``a_l`` is 1."""
    L = len(model)
    if param_type == "sp":
        return [1.0] * L
    d, n = x.shape[1], model[0].shape[0]
    return [1 / math.sqrt(d)] + [1 / math.sqrt(n * L)] * (L - 2) + [1 / n]


def jpc_layer(layer: int, W: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``make_mlp``'s layer: ``nn.Sequential([act, nn.Linear(bias=False)])``, identity
    activation at layer 0, ReLU elsewhere; equinox's weight is ``(out, in)``."""
    act = z if layer == 0 else torch.relu(z)
    return act @ W.T


def jpc_ffwd(model: list, x: torch.Tensor, param_type: str) -> list:
    """``init_activities_with_ffwd``: skips (identity) at every layer but the first and last."""
    a, L = jpc_scalings(model, x, param_type), len(model)
    zs = [a[0] * jpc_layer(0, model[0], x)]
    for layer in range(1, L):
        z = a[layer] * jpc_layer(layer, model[layer], zs[-1])
        if 0 < layer < L - 1:
            z = z + zs[-1]
        zs.append(z)
    return zs


def jpc_energy(
    model: list, zs: list, y: torch.Tensor, x: torch.Tensor, param_type: str
) -> torch.Tensor:
    """``pc_energy_fn(loss="ce", param_type)`` with skips: the activities ``zs`` (the last, the
    output, unused), the total over examples divided by the batch size."""
    a, L = jpc_scalings(model, x, param_type), len(model)
    logits = a[-1] * jpc_layer(L - 1, model[-1], zs[-2])
    energies = [-(y * torch.log_softmax(logits, dim=1)).sum()]
    for act_l, net_l in zip(range(1, len(zs) - 1), range(1, L - 1)):
        err = zs[act_l] - a[net_l] * jpc_layer(net_l, model[net_l], zs[act_l - 1])
        err = err - zs[act_l - 1]  # the skip model's identity
        energies.append(0.5 * (err**2).sum())
    e1 = zs[0] - a[0] * jpc_layer(0, model[0], x)
    energies.append(0.5 * (e1**2).sum())
    return sum(energies) / y.shape[0]


def setup(param_type: str = "mupc") -> tuple[pc.Program, dict, dict, list]:
    g = pc.models.deep_mlp(
        depth=BLOCKS, width=N, in_features=D, classes=CLASSES, parameterisation=param_type
    )
    prog = pc.compile(g, dtype="float64")
    params = {k: np.asarray(v) for k, v in prog.init_params(seed=3).items()}
    rng = np.random.default_rng(4)
    batch = {"x": rng.normal(size=(BATCH, D)), "y": rng.integers(0, CLASSES, size=BATCH)}
    names = ["stem.W", *(f"block{i}.W" for i in range(BLOCKS)), "head.W"]
    model = [torch.tensor(params[n].T) for n in names]  # equinox's (out, in)
    return prog, params, batch, [names, model]


def test_mupc_weights_are_standard_normal_with_no_biases() -> None:
    prog, params, _, _ = setup()
    assert sorted(params) == sorted(["stem.W", "head.W", *(f"block{i}.W" for i in range(BLOCKS))])
    big = pc.compile(pc.models.deep_mlp(depth=2, width=256, parameterisation="mupc"))
    w = np.asarray(big.init_params(seed=0)["block0.W"], dtype=np.float64)
    assert abs(w.std() - 1.0) < 0.01 and abs(w.mean()) < 0.01


def test_sp_weights_are_equinox_default_uniform_with_no_biases() -> None:
    prog, params, _, _ = setup("sp")
    assert sorted(params) == sorted(["stem.W", "head.W", *(f"block{i}.W" for i in range(BLOCKS))])
    assert np.abs(params["stem.W"]).max() <= 1 / math.sqrt(D)
    big = pc.compile(pc.models.deep_mlp(depth=2, width=256, parameterisation="sp"))
    w = np.asarray(big.init_params(seed=0)["block0.W"], dtype=np.float64)
    # U(-b, b) with b = 1/sqrt(fan_in) = 1/16: standard deviation b / sqrt(3).
    assert abs(w.std() - 1 / (16 * math.sqrt(3))) < 1e-3 and np.abs(w).max() <= 1 / 16


@pytest.mark.parametrize("param_type", ["mupc", "sp"])
def test_forward_pass_equals_jpc(param_type: str) -> None:
    prog, params, batch, (_, model) = setup(param_type)
    zs = jpc_ffwd(model, torch.tensor(batch["x"]), param_type)
    logits = prog.evaluate(params, batch, "head")
    np.testing.assert_allclose(logits, zs[-1].numpy(), rtol=1e-12, atol=1e-14)


def test_mupc_keeps_the_residual_stream_of_order_one_where_sp_lets_it_grow() -> None:
    """Depth-muP's point: at 64 blocks the muPC stream stays of order one; the standard
    parameterisation's grows with depth (each block adds a branch of the stream's own size)."""
    x = np.random.default_rng(0).random((16, 784))
    rms = {}
    for param_type in ("mupc", "sp"):
        g = pc.models.deep_mlp(depth=64, width=128, parameterisation=param_type)
        # The stream after the last block: the node whose ReLU feeds the readout's product.
        readout = "head.matmul" if param_type == "mupc" else "head"
        (relu,) = (n for n in g.nx.predecessors(readout) if n != "head.W")
        (stream,) = g.nx.predecessors(relu)
        prog = pc.compile(g)
        h = np.asarray(prog.evaluate(prog.init_params(seed=0), {"x": x}, stream))
        rms[param_type] = float(np.sqrt((h.astype(np.float64) ** 2).mean()))
    assert 0.1 < rms["mupc"] < 10
    assert rms["sp"] > 30 * rms["mupc"]


@pytest.mark.parametrize("param_type", ["mupc", "sp"])
def test_one_training_step_equals_jpc(param_type: str) -> None:
    """Inference: ``steps`` gradient steps of jpc's batch-normalised energy on the activities at
    ``activity_lr``, which is pcgraph IL at ``rate = activity_lr / B`` (pcgraph's dynamics are
    per example); then one Adam step on the weights' energy gradient at the final activities."""
    prog, params, batch, (names, model) = setup(param_type)
    steps, activity_lr, param_lr = 8, 0.5, 0.01
    x = torch.tensor(batch["x"])
    y = torch.nn.functional.one_hot(torch.tensor(batch["y"]), CLASSES).double()

    zs = [z.detach().requires_grad_(True) for z in jpc_ffwd(model, x, param_type)]
    for _ in range(steps):
        grads = torch.autograd.grad(jpc_energy(model, zs, y, x, param_type), zs[:-1])
        # The output activity is not in the energy (y is): it has no gradient, does not move.
        moved = [(z - activity_lr * g).detach().requires_grad_(True) for z, g in zip(zs, grads)]
        zs = [*moved, zs[-1]]
    weights = [W.clone().requires_grad_(True) for W in model]
    wgrads = torch.autograd.grad(jpc_energy(weights, zs, y, x, param_type), weights)
    # optax.adam(lr) after one step: m = 0.1 g, v = 0.001 g^2, bias-corrected to g and g^2.
    expected = {
        n: (W - param_lr * g / (g.abs() + 1e-8)).numpy().T for n, W, g in zip(names, model, wgrads)
    }

    value_nodes = "layers"
    got = prog.grads(
        params, batch, "il", steps=steps, rate=activity_lr / BATCH, value_nodes=value_nodes
    )
    for n, g in zip(names, wgrads):
        np.testing.assert_allclose(got[n], g.numpy().T, rtol=1e-10, atol=1e-13, err_msg=n)
    trained = {k: v.copy() for k, v in params.items()}
    opt = pc.optim.Adam(lr=param_lr)
    prog.train_step(
        trained,
        batch,
        "il",
        optimizer=opt,
        steps=steps,
        rate=activity_lr / BATCH,
        value_nodes=value_nodes,
    )
    for n in names:
        np.testing.assert_allclose(trained[n], expected[n], rtol=1e-10, atol=1e-12, err_msg=n)
