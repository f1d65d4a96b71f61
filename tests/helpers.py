"""Small graphs, backends and fakes shared by the tests (the checks are ``pc.testing``'s)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pcgraph.backends.cupy_backend import CupyBackend

import pcgraph as pc

# Why CuPy cannot run here (None when it can); asked once, at collection.
CUPY_UNAVAILABLE = CupyBackend.availability()
CUPY = pytest.param(
    "cupy",
    id="cupy",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(
            CUPY_UNAVAILABLE is not None, reason=f"CuPy backend unavailable: {CUPY_UNAVAILABLE}"
        ),
    ],
)
# The backends the ``backend`` fixture runs a test on: CuPy is skipped, with the reason, where it
# cannot run, so the suite passes on any machine and also runs on the GPU where there is one.
BACKENDS = [pytest.param("numpy", id="numpy"), CUPY]


def rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.max(np.abs(a)), 1e-30))


def check_program_grads(
    prog: pc.Program,
    params: dict,
    batch: dict,
    directions: int = 3,
    seed: int = 0,
    tol: float = 1e-6,
) -> None:
    """Assert the backprop gradient of every parameter matches central differences of the loss
    along random directions (``pc.testing.check_grads``, relative error <= ``tol``)."""
    checks = pc.testing.check_grads(prog, params, batch, directions, tol=tol, seed=seed)
    assert all(c.passed for c in checks), "\n".join(map(str, checks))


# ------------------------------------------------------------------ the specification's graphs
def mlp(sizes: tuple = (6, 5, 4, 3), activation: Any = pc.tanh, loss: str = "sce") -> pc.Graph:
    g = pc.Graph("mlp")
    h = g.input("x", (sizes[0],))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ g.param(f"W{i}", (a, b)) + g.param(f"b{i}", (b,), init="normal")
        if i < len(sizes) - 2:
            h = activation(h)
    if loss == "sce":
        g.set_loss(pc.softmax_cross_entropy(h, g.target("y", (), dtype="int64")))
    else:
        g.set_loss(pc.mse(h, g.target("y", (sizes[-1],))))
    return g


def residual(d: int = 5, classes: int = 3) -> pc.Graph:
    """x -> h = relu(x W0); r = h + tanh(h W1) (h has two children); logits = r W2."""
    g = pc.Graph("residual")
    h = pc.relu(g.input("x", (d,)) @ g.param("W0", (d, d)) + g.param("b0", (d,), init="normal"))
    r = h + pc.tanh(h @ g.param("W1", (d, d)))
    logits = r @ g.param("W2", (d, classes))
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64")))
    return g


def rnn(T: int = 4, D: int = 3, H: int = 5, classes: int = 3) -> pc.Graph:
    """Unrolled many-to-one RNN: the same Wx, Wh, b at every step."""
    g = pc.Graph("rnn")
    x = g.input("x", (T, D))
    Wx, Wh = g.param("Wx", (D, H)), g.param("Wh", (H, H))
    b = g.param("b", (H,), init="normal")
    h = pc.tanh(x[0] @ Wx + b)
    for t in range(1, T):
        h = pc.tanh(x[t] @ Wx + h @ Wh + b)
    g.set_loss(
        pc.softmax_cross_entropy(h @ g.param("Wo", (H, classes)), g.target("y", (), dtype="int64"))
    )
    return g


def attention(T: int = 4, d: int = 6, classes: int = 3) -> pc.Graph:
    """Single-head self-attention block, mean over time, then a linear classifier."""
    g = pc.Graph("attention")
    x = g.input("x", (T, d))
    q, k, v = (x @ g.param(n, (d, d)) for n in ("Wq", "Wk", "Wv"))
    a = pc.softmax((q @ pc.transpose(k)) * (1.0 / np.sqrt(d)), axis=-1)
    h = pc.mean(a @ v, axis=0)
    g.set_loss(
        pc.softmax_cross_entropy(h @ g.param("Wo", (d, classes)), g.target("y", (), dtype="int64"))
    )
    return g


# Every test graph by name: the tests that run "each graph" (backprop vs finite differences,
# backend agreement, strict portability) iterate this, so a graph added here is covered by all.
GRAPHS: dict[str, Any] = {
    "mlp-tanh": lambda: mlp(activation=pc.tanh),
    "mlp-sigmoid-mse": lambda: mlp(activation=pc.sigmoid, loss="mse"),
    "mlp-relu": lambda: mlp(activation=pc.relu),
    "residual": residual,
    "rnn-shared-weights": rnn,
    "attention": attention,
}


# Options an algorithm needs when ``grads`` is called directly (``train_step`` supplies them).
ALGORITHM_OPTIONS: dict[str, dict[str, Any]] = {"il-prox": {"alpha": 0.05}, "ipc": {"lr": 0.001}}


def all_graphs() -> dict[str, Any]:
    """``GRAPHS`` plus the small configurations of the model zoo (``tests/test_models.py``)
    where the zoo exists, so cross-backend checks cover every zoo model too."""
    out = dict(GRAPHS)
    try:
        from test_models import SMALL, _build  # imported late: test_models imports this module
    except ImportError:
        return out
    # resnet18 keeps its full widths (11M parameters): too slow for a NumPy reference per case.
    out.update({f"zoo-{k}": (lambda k=k: _build(k)) for k in SMALL if k != "resnet18"})
    return out


# ------------------------------------------------------------------ a CPU stand-in for CuPy's kernels
class FakeElementwiseKernel:
    """Stands in for ``cupy.ElementwiseKernel`` on the CPU: the same calling convention (inputs,
    then optional outputs), the arithmetic of each kernel by name.  It checks FusedKernels'
    plumbing (argument order, outputs); the CUDA snippets themselves run on a GPU only."""

    RULES = {
        "pc_relax": lambda x, s, e, rate: (x + rate * (s - e),),
        "pc_axpy": lambda a, x, y: (a * x + y,),
        "pc_velocity": lambda v, g, m: (m * v + g,),
        "pc_adam_moments": lambda m, v, g, b1, b2: (
            b1 * m + (1 - b1) * g,
            b2 * v + (1 - b2) * (g * g),
        ),
        "pc_adam_delta": lambda m, v, lr_m, root_c2, eps: (
            (m / (np.sqrt(v) / root_c2 + eps)) * -lr_m,
        ),
        "pc_flush": lambda a, below: (np.where(np.abs(a) < below, 0, a).astype(a.dtype),),
    }

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.n_in, self.n_out = len(in_params.split(",")), len(out_params.split(","))
        self.rule = self.RULES[name]

    def __call__(self, *args: object) -> object:
        ins, outs = args[: self.n_in], args[self.n_in :]
        assert len(outs) in (0, self.n_out), "outputs are all given or none"
        values = [np.asarray(v, dtype=ins[0].dtype) for v in self.rule(*ins)]
        if outs:
            for o, v in zip(outs, values):
                o[...] = v
            values = list(outs)
        return values[0] if self.n_out == 1 else tuple(values)


class FakeCupyKernels:
    """What ``FusedKernels`` takes from CuPy, on the CPU."""

    ElementwiseKernel = FakeElementwiseKernel
