"""The FabricPC peer: FabricPC's predictive-coding training step on the zoo's relu MLP.

FabricPC (``pip install fabricpc``, https://github.com/trueagi-io/FabricPC) is a JAX
predictive-coding library.  This builds ``pcgraph.models.mlp(sizes, activation="relu")`` from
FabricPC's nodes with the same weights: an ``IdentityNode`` input, a ``Linear`` node with a ReLU
per hidden layer (FabricPC's node is linear + activation with one latent state, pcgraph's
``value_nodes="layers"``), and a ``Linear`` output node with a softmax and the cross-entropy
energy, clamped to the one-hot label (pcgraph's clamped softmax-cross-entropy output).  One step
is what FabricPC's training step does, composed from its core functions (whose home module
moved between releases, ``training/train.py`` in 0.3-0.4 and ``training/trainer.py`` in 0.6):
``initialize_graph_state`` (feed-forward), ``run_inference`` with ``InferenceSGD`` (``steps``
steps at ``rate``), ``compute_local_weight_gradients``, ``optax.sgd``.  FabricPC sums its energies and
gradients over the batch where pcgraph takes the batch mean, so its SGD runs at ``lr / B``; the
step is then ``prog.train_step(params, batch, "il", steps, rate, value_nodes="layers",
optimizer=SGD(lr))``.  The whole step is one ``jax.jit`` function and the timed call blocks on
the new weights.

FabricPC is a benchmark-only dependency whose JAX need not agree with PCX's pin: run the speed
harness from a virtual environment holding pcgraph and fabricpc (``pip install -e . fabricpc``),
where this contender's row appears (and PCX's does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from fabricpc.core.activations import ReLUActivation, SoftmaxActivation
from fabricpc.core.energy import CrossEntropyEnergy
from fabricpc.core.inference import InferenceSGD, run_inference
from fabricpc.core.learning import compute_local_weight_gradients
from fabricpc.core.topology import Edge
from fabricpc.graph_assembly import TaskMap, graph
from fabricpc.graph_initialization import initialize_graph_state, initialize_params
from fabricpc.nodes import IdentityNode, Linear


def structure(sizes: Sequence[int], steps: int, rate: float) -> Any:
    """The MLP as a FabricPC graph: nodes ``x``, ``h0`` .. and the output ``y``."""
    nodes: list[Any] = [IdentityNode(shape=(sizes[0],), name="x")]
    for i, n in enumerate(sizes[1:-1]):
        nodes.append(Linear(shape=(n,), name=f"h{i}", activation=ReLUActivation()))
    nodes.append(
        Linear(
            shape=(sizes[-1],),
            name="y",
            activation=SoftmaxActivation(),
            energy=CrossEntropyEnergy(),
        )
    )
    edges = [Edge(source=a, target=b.slot("in")) for a, b in zip(nodes[:-1], nodes[1:])]
    return graph(
        nodes=nodes,
        edges=edges,
        task_map=TaskMap(x=nodes[0], y=nodes[-1]),
        inference=InferenceSGD(eta_infer=rate, infer_steps=steps),
    )


def weights_from(st: Any, pcgraph_params: dict, sizes: Sequence[int]) -> Any:
    """FabricPC parameters holding pcgraph's ``fc{i}.W`` ``(in, out)`` and ``fc{i}.b``."""
    params = initialize_params(st, jax.random.PRNGKey(0))
    names = ["x", *(f"h{i}" for i in range(len(sizes) - 2)), "y"]
    nodes = dict(params.nodes)
    for i, (src, dst) in enumerate(zip(names[:-1], names[1:])):
        old = nodes[dst]
        W = jnp.asarray(np.asarray(pcgraph_params[f"fc{i}.W"]), dtype=jnp.float32)
        b = jnp.asarray(np.asarray(pcgraph_params[f"fc{i}.b"]), dtype=jnp.float32)
        nodes[dst] = old._replace(
            weights={f"{src}->{dst}:in": W}, biases={"b": b.reshape(old.biases["b"].shape)}
        )
    return params._replace(nodes=nodes)


class FabricPCStep:
    """FabricPC's training step on ``sizes`` from pcgraph's parameters: ``step(x, y)`` with
    integer labels ``y`` returns the mean energy and keeps the new parameters."""

    def __init__(
        self, sizes: Sequence[int], pcgraph_params: dict, lr: float, steps: int, rate: float
    ) -> None:
        self.st = structure(sizes, steps, rate)
        self.params = weights_from(self.st, pcgraph_params, sizes)
        self.classes = sizes[-1]
        self._hidden = tuple(f"h{i}" for i in range(len(sizes) - 2))
        self.lr = lr
        self.optimizer: Any = None
        self.opt_state: Any = None
        self.key = jax.random.PRNGKey(0)
        st = self.st

        def one(params: Any, opt_state: Any, x: Any, y: Any, optimizer: Any) -> tuple:
            clamps = {"x": x, "y": jax.nn.one_hot(y, self.classes, dtype=jnp.float32)}
            state = initialize_graph_state(st, x.shape[0], self.key, clamps=clamps, params=params)
            state = run_inference(params, state, clamps, st)
            grads = compute_local_weight_gradients(params, state, st)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            energy = sum(jnp.sum(state.nodes[n].energy) for n in ("y", *self._hidden))
            return optax.apply_updates(params, updates), opt_state, energy / x.shape[0]

        self._one = one
        self._jitted: dict[int, Any] = {}

    def step(self, x: np.ndarray, y: np.ndarray) -> Any:
        batch = len(x)
        if batch not in self._jitted:  # FabricPC sums over the batch: SGD at lr / B
            optimizer = optax.sgd(self.lr / batch)
            self.opt_state = optimizer.init(self.params)
            self._jitted[batch] = jax.jit(lambda p, s, xs, ys: self._one(p, s, xs, ys, optimizer))
        self.params, self.opt_state, energy = self._jitted[batch](
            self.params, self.opt_state, jnp.asarray(x), jnp.asarray(y)
        )
        jax.block_until_ready(self.params)
        return energy

    def weights(self) -> dict[str, np.ndarray]:
        """The current parameters under pcgraph's names (``fc{i}.W``, ``fc{i}.b``)."""
        names = [k for k in self.params.nodes if k != "x"]
        order = sorted((n for n in names if n != "y"), key=lambda n: int(n[1:])) + ["y"]
        out = {}
        for i, dst in enumerate(order):
            node = self.params.nodes[dst]
            (W,) = node.weights.values()
            out[f"fc{i}.W"] = np.asarray(W)
            out[f"fc{i}.b"] = np.asarray(node.biases["b"]).reshape(-1)
        return out


def check(sizes: Sequence[int] = (20, 16, 16, 5), batch: int = 8) -> float:
    """Largest difference between FabricPC's updated weights and pcgraph's
    ``il(steps=20, rate=0.1, value_nodes="layers")`` step from the same weights and batch
    (float32; a run of ``python -m benchmarks.fabricpc_peer`` prints it)."""
    import pcgraph as pc

    prog = pc.compile(pc.models.mlp(sizes=tuple(sizes), activation="relu"))
    params = prog.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    peer = FabricPCStep(sizes, params, lr=0.1, steps=20, rate=0.1)
    peer.step(x, y)
    opt = pc.optim.SGD(lr=0.1)
    prog.train_step(
        params, {"x": x, "y": y}, "il", optimizer=opt, steps=20, rate=0.1, value_nodes="layers"
    )
    theirs = peer.weights()
    return max(float(np.max(np.abs(theirs[k] - np.asarray(params[k])))) for k in params)


if __name__ == "__main__":
    print(f"FabricPC il step vs pcgraph il(value_nodes='layers'): max abs {check():.2e}")
