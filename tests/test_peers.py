"""Predictive coding against the peers' own code, on the same weights, in float64.

nalonso2/ILTheory is not a package: its ``ProxPC`` update is transcribed here, line by line in
NumPy, from the file and commit named in the transcription's docstring.

PCX (Pinchetti et al. 2024) runs in a subprocess where it is installed (JAX stays out of this
process): its tutorial MLP, one vode per layer after the activation, is pcgraph's
``value_nodes="layers"``; its IL step and its incremental-PC step must give pcgraph's weights.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc

ROOT = Path(__file__).resolve().parent.parent
needs_pcx = pytest.mark.skipif(
    importlib.util.find_spec("pcx") is None,
    reason="PCX is not installed (pip install pcx==0.6.3 'jax[cpu]==0.4.38'; Python >= 3.11)",
)


@needs_pcx
@pytest.mark.parametrize("algorithm", ["il", "ipc"])
def test_pcx_tutorial_mlp_takes_pcgraphs_step_with_one_value_node_per_layer(algorithm: str) -> None:
    code = (
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "from benchmarks.pcx_peer import check_float64\n"
        f"print(check_float64({algorithm!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) <= 1e-12


# ------------------------------------------------------------------ ILTheory's ProxPC
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def iltheory_proxpc_step(
    W: list, b: list, x: np.ndarray, y: np.ndarray, lr: float, n_iter: int, gamma: float, eps: float
) -> tuple[list, list]:
    """One ``ProxPC.train_wts`` of nalonso2/ILTheory (proxPC.py at commit abd46127), written
    out in NumPy for its configuration in the paper's IL-prox runs (train_MLP.py, model_type 6:
    ``t_type=2, mom=False, smax=True, crossEnt=True, bias=True, dec_gamma=0``, top_gamma =
    bot_gamma = gamma).  Layers are ``ReLU then Linear``; W[i] is (out, in) as in PyTorch."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    L = len(W) + 1
    target = np.eye(W[-1].shape[0])[y]
    h = [x]
    for i in range(L - 1):  # compute_values
        h.append(relu(h[i]) @ W[i].T + b[i])
    targ = [a.copy() for a in h]
    nm = np.mean(np.square(relu(h[-2])).sum(1)) + eps
    targ[-1] = softmax_mix(_softmax(h[-1]), target, nm * lr)
    err = [np.zeros_like(a) for a in h]
    p = [h[0]] + [relu(targ[i]) @ W[i].T + b[i] for i in range(L - 1)]
    for _ in range(n_iter):
        for layer in range(1, L - 1):
            err[layer] = targ[layer] - p[layer]
        err[-1] = targ[-1] - _softmax(p[-1])
        for layer in range(1, L - 1):
            dfdt = (err[layer + 1] @ W[layer]) * (targ[layer] > 0)
            targ[layer] = targ[layer] + gamma * -err[layer] + gamma * dfdt
        nm = np.mean(np.square(relu(targ[-2])).sum()) + 1 + eps  # .sum() of the whole batch
        targ[-1] = softmax_mix(_softmax(p[-1]), target, nm * lr)
        p = [h[0]] + [relu(targ[i]) @ W[i].T + b[i] for i in range(L - 1)]
    new_W, new_b = [], []
    for i in range(L - 1):  # PC_update
        pred = relu(targ[i]) @ W[i].T + b[i]
        e = targ[i + 1] - (_softmax(pred) if i == L - 2 else pred)
        grad_w, grad_b = -e.T @ relu(targ[i]) / len(e), np.mean(-e, axis=0)
        nm = np.mean(np.square(relu(targ[i])).sum(1)) + 1 + eps
        new_W.append(W[i] - grad_w / nm)
        new_b.append(b[i] - grad_b / nm)
    return new_W, new_b


def softmax_mix(prob: np.ndarray, target: np.ndarray, k: float) -> np.ndarray:
    """ProxPC's output target ``softmax/(1 + k) + k/(1 + k) * onehot``."""
    return prob / (1 + k) + (k / (1 + k)) * target


def iltheory_graph(sizes: tuple) -> pc.Graph:
    """ILTheory's network in pcgraph: each layer is ``ReLU then Linear`` (the input too), value
    nodes at the linear outputs (pre-activations), the relus folded into the next prediction."""
    g = pc.Graph("iltheory_mlp")
    h = g.input("x", (sizes[0],))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = pc.linear(
            pc.relu(h), g.param(f"W{i}", (a, b)), g.param(f"b{i}", (b,)), name=f"h{i + 1}"
        )
        if i < len(sizes) - 2:
            pc.layer(h)
    g.set_loss(pc.softmax_cross_entropy(h, g.target("y", (), dtype="int64")))
    return g


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("lr", [0.01, 1.0, 100.0])
def test_il_prox_with_iltheorys_output_norm_is_iltheorys_proxpc(batch: int, lr: float) -> None:
    sizes = (10, 8, 6, 4)
    prog = pc.compile(iltheory_graph(sizes), dtype="float64")
    params = prog.init_params(1)
    rng = np.random.default_rng(0)
    data = {"x": rng.random((batch, sizes[0])), "y": rng.integers(0, sizes[-1], batch)}
    W = [np.array(params[f"W{i}"]).T for i in range(3)]
    b = [np.array(params[f"b{i}"]) for i in range(3)]
    new_W, new_b = iltheory_proxpc_step(W, b, data["x"], data["y"], lr, 25, 0.015, 0.25)
    prog.train_step(
        params,
        data,
        algorithm="il-prox",
        optimizer=pc.optim.SGD(lr=lr),
        steps=25,
        rate=0.015,
        eps=0.25,
        value_nodes="layers",
        output_norm="iltheory",
    )
    for i in range(3):
        np.testing.assert_allclose(params[f"W{i}"], new_W[i].T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(params[f"b{i}"], new_b[i], rtol=0, atol=1e-12)


# ------------------------------------------------------------------ Torch2PC
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)


def _torch2pc():  # noqa: ANN202
    """RobertRosenbaum/Torch2PC's TorchSeq2PC.py (commit 08917a9f) transcribed: the forward pass
    over an ``nn.Sequential`` (one value node per module), ``ModifiedPCPredErrs`` (FixedPred),
    ``StrictPCPredErrs`` (Strict) and ``SetPCGrads``.  Returns the three functions."""
    import torch

    def forward(model, x):  # noqa: ANN001, ANN202
        v = [x]
        for module in model:
            v.append(module(v[-1]))
        return v

    def fixed_pred(model, loss_fn, x, y, eta, n):  # noqa: ANN001, ANN202
        vhat = forward(model, x)
        eps = [None] * (len(model) + 1)
        eps[-1] = torch.autograd.grad(loss_fn(vhat[-1], y), vhat[-1])[0]
        v = [a.clone().detach() for a in vhat]
        for _ in range(n):  # top-down within a sweep; errors taken before each update
            for layer in reversed(range(len(model))):
                eps[layer] = vhat[layer] - v[layer]
                _, pulled = torch.autograd.functional.vjp(model[layer], vhat[layer], eps[layer + 1])
                v[layer] = v[layer] + eta * (eps[layer] - pulled)
        return vhat, eps

    def strict(model, loss_fn, x, y, eta, n):  # noqa: ANN001, ANN202
        vhat = forward(model, x)
        depth = len(model) + 1
        eps = [None] * depth
        v = [a.clone().detach() for a in vhat]
        for _ in range(n):
            top = model[depth - 2](v[depth - 2])
            eps[-1] = torch.autograd.grad(loss_fn(top, y), top)[0]
            for layer in reversed(range(1, depth - 1)):
                eps[layer] = v[layer] - model[layer - 1](v[layer - 1])
                _, pulled = torch.autograd.functional.vjp(model[layer], v[layer], eps[layer + 1])
                v[layer] = v[layer] + eta * (-eps[layer] + pulled)
        return vhat, eps

    def set_grads(model, eps, vhat):  # noqa: ANN001, ANN202
        grads = []
        for layer, module in enumerate(model):
            for p in module.parameters():
                grads.append(
                    torch.autograd.grad(
                        vhat[layer + 1], p, grad_outputs=eps[layer + 1], retain_graph=True
                    )[0]
                )
        return grads

    return fixed_pred, strict, set_grads


def _torch_mlp(params: dict, per_layer: bool):  # noqa: ANN202
    """The zoo's tanh MLP as an nn.Sequential: a module per op (pcgraph's value_nodes="all") or
    per layer, Linear then Tanh (value_nodes="layers")."""
    import torch

    lins = []
    for i in range(3):
        lin = torch.nn.Linear(*params[f"fc{i}.W"].shape, dtype=torch.float64)
        lin.weight.data = torch.tensor(params[f"fc{i}.W"].T.copy())
        lin.bias.data = torch.tensor(params[f"fc{i}.b"].copy())
        lins.append(lin)
    if per_layer:
        block = lambda i: torch.nn.Sequential(lins[i], torch.nn.Tanh())  # noqa: E731
        return torch.nn.Sequential(block(0), block(1), lins[2])
    return torch.nn.Sequential(lins[0], torch.nn.Tanh(), lins[1], torch.nn.Tanh(), lins[2])


def _setup(B: int = 5):  # noqa: ANN202
    g = pc.models.mlp(sizes=(7, 6, 5, 4), activation="tanh")
    prog = pc.compile(g, dtype="float64")
    rng = np.random.default_rng(0)
    return g, prog, prog.init_params(0), {"x": rng.normal(size=(B, 7)), "y": rng.integers(0, 4, B)}


@needs_torch
@pytest.mark.parametrize("value_nodes", ["all", "layers"])
@pytest.mark.parametrize("rate", [1.0, 0.1])
@pytest.mark.parametrize("sweeps", [1, 3, 10])
def test_fpa_with_k_sweeps_is_torch2pc_fixedpred_with_n_k_plus_1(value_nodes, rate, sweeps) -> None:  # noqa: ANN001
    import torch

    fixed_pred, _, set_grads = _torch2pc()
    _, prog, params, batch = _setup()
    model = _torch_mlp(params, value_nodes == "layers")
    x, y = torch.tensor(batch["x"]), torch.tensor(batch["y"])
    vhat, eps = fixed_pred(model, torch.nn.CrossEntropyLoss(), x, y, rate, sweeps + 1)
    theirs = iter(g.numpy() for g in set_grads(model, eps, vhat))
    ours = prog.grads(
        params, batch, algorithm="fpa", steps=sweeps, rate=rate, value_nodes=value_nodes
    )
    for i in range(3):
        np.testing.assert_allclose(ours[f"fc{i}.W"], next(theirs).T, rtol=0, atol=1e-14)
        np.testing.assert_allclose(ours[f"fc{i}.b"], next(theirs), rtol=0, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("sweeps", [2, 3, 8])
def test_torch2pc_strict_is_il_on_the_loss_times_minus_1_over_b_one_step_short(sweeps: int) -> None:
    """Torch2PC's Strict errors are pcgraph IL's on the loss -l/B, after sweeps - 1 steps: its
    top error is +d(mean loss)/dy (the beliefs move up the loss, and only the top error carries
    1/B), and it returns the errors taken before its last update.  Its weight gradients are
    then J^T e at the feed-forward values, where pcgraph's IL takes -J^T e / B at the current
    values, so its updates differ from IL's by that linearisation point too."""
    import torch

    _, strict, _ = _torch2pc()
    g, _, params, batch = _setup(B=5)
    logits, labels = g.node("fc2"), g.node("y")
    g.nx.remove_node("loss")
    g.set_loss(pc.mul(pc.softmax_cross_entropy(logits, labels), -1.0 / 5, name="loss"))
    prog = pc.compile(g, dtype="float64")
    model = _torch_mlp(params, per_layer=True)
    x, y = torch.tensor(batch["x"]), torch.tensor(batch["y"])
    _, eps = strict(model, torch.nn.CrossEntropyLoss(), x, y, 0.1, sweeps)
    schedule = prog.schedule("il", steps=sweeps - 1, rate=0.1, value_nodes="layers")
    errors = prog.run(schedule, params, batch, keep=True).store("e")
    for k, node in enumerate(("tanh_0", "tanh_1"), start=1):
        np.testing.assert_allclose(errors[node], eps[k].detach().numpy(), rtol=0, atol=1e-15)
    # the errors have reached as far down as the steps carry them: one layer a step
    assert float(np.abs(errors["tanh_1"]).max()) > 1e-4
    assert (float(np.abs(errors["tanh_0"]).max()) > 1e-5) == (sweeps >= 3)
