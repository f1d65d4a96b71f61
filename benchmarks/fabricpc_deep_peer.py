"""The FabricPC peer on the deep muPC network of issue 27: FabricPC's IL and ePC training steps
on ``pcgraph.models.deep_mlp(parameterisation="mupc", loss="mse")`` with pcgraph's weights.

The network is jpc's muPC residual MLP (``spec/models.md``, "muPC"): no biases, N(0, 1)
weights, ``h_1 = a_1 x W_1``, ``h_l = h_{l-1} + a_l relu(h_{l-1}) W_l``,
``logits = a_L relu(h_{L-1}) W_L`` with ``a_1 = 1/sqrt(D)``, ``a_l = 1/sqrt(N L)`` and
``a_L = 1/N`` (``L = depth + 2`` weight layers, width ``N``, ``D`` inputs).  FabricPC's own
muPC (``fabricpc.core.mupc.MuPCConfig``) cannot give these multipliers: it damps a residual
branch by ``gain / sqrt(N L)`` with the activation's Kaiming gain (sqrt(2) for a ReLU node) and
counts ``L`` as the merge nodes only (``depth``, not ``depth + 2``); its stock nodes apply the
activation to their own output (``LinearResidual``: ``act(x W) + x``), where jpc's blocks apply
it to their input.  So this builds the network as FabricPC's example
``examples/jpc_fc_resnet_compare.py`` (its ``--scaling jpc`` mode) does, with one custom node
class holding its multiplier as fixed node configuration, no ``MuPCConfig``:

- ``x``: ``IdentityNode`` clamped to the input;
- ``stem``: ``ScaledPreActLinear(scale=a_1)``, ``z = a_1 (x @ W)``;
- ``block{i}``: ``ScaledPreActLinear(relu, scale=a_l, skip=True)``,
  ``z = h + a_l (relu(h) @ W)``;
- ``head``: ``ScaledPreActLinear(relu, scale=a_L)`` with FabricPC's Gaussian energy
  ``0.5 ||y - z||^2``, clamped to the target: pcgraph's ``mse`` loss.

Each node's latent is pcgraph's value node of ``value_nodes="layers"`` (``stem`` and every
block's output; jpc's activities), and the node names are pcgraph's parameter prefixes
(``stem.W`` is the ``stem`` node's weight).  Only ``predict`` is ours: FabricPC's inference,
energies, local weight gradients and trainer run unchanged.

One step is FabricPC's training step as its ``fabricpc.training.train`` loop jits it per batch
(``training.trainer._make_step``, parameters and optimiser state donated): feed-forward state
initialisation, ``run_inference`` with ``InferenceSGD`` (IL) or ``EPCInference`` (ePC; Goemaere
et al. 2025) for ``steps`` steps at ``rate``, ``pc_weight_gradients`` (the batch-summed local
gradients over the batch size: pcgraph's batch mean) and an optax optimiser.  FabricPC sums its
energies over the batch, so a latent's (or an error's) gradient is the example's own: its
``eta_infer`` is pcgraph's per-example ``rate``, for IL and for ePC alike
(``tests/test_epc.py`` checks ePC's mapping on FabricPC's reference numbers).  The step is then
``prog.train_step(params, batch, algorithm, steps=steps, rate=rate, value_nodes="layers",
optimizer=...)`` with ``optax.adam`` as ``pc.optim.Adam`` (same betas and eps) and
``optax.sgd`` as ``pc.optim.SGD``; ``check()`` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from fabricpc.core.activations import IdentityActivation, ReLUActivation
from fabricpc.core.energy import GaussianEnergy
from fabricpc.core.inference import InferenceSGD
from fabricpc.core.inference_epc import EPCInference
from fabricpc.core.initializers import NormalInitializer, initialize
from fabricpc.core.topology import Edge
from fabricpc.core.types import NodeParams
from fabricpc.graph_assembly import TaskMap, graph
from fabricpc.graph_initialization import initialize_params
from fabricpc.nodes import IdentityNode
from fabricpc.nodes.base import NodeBase, SlotSpec
from fabricpc.training.trainer import _make_step

INFERENCE = {"il": InferenceSGD, "epc": EPCInference}


class ScaledPreActLinear(NodeBase):
    """``z_mu = scale * (act(x) @ W)``, plus ``x`` itself with ``skip=True``: a jpc layer
    (``x (batch, n_in)`` -> ``(batch, n_out)``, no bias, N(0, 1) weights)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        name: str,
        activation: Any = None,
        scale: float = 1.0,
        skip: bool = False,
    ) -> None:
        super().__init__(
            shape=shape,
            name=name,
            activation=activation or IdentityActivation(),
            energy=GaussianEnergy(),
            weight_init=NormalInitializer(mean=0.0, std=1.0),
            scale=scale,
            skip=skip,
        )

    @staticmethod
    def get_slots() -> dict[str, SlotSpec]:
        return {"in": SlotSpec(name="in", is_multi_input=False)}

    @staticmethod
    def initialize_params(
        key: Any,
        node_shape: tuple[int, ...],
        input_shapes: dict[str, tuple[int, ...]],
        weight_init: Any,
        config: dict | None = None,
    ) -> NodeParams:
        ((edge, in_shape),) = input_shapes.items()
        W = initialize(key, (in_shape[-1], node_shape[-1]), weight_init)
        return NodeParams(weights={edge: W}, biases={})

    @staticmethod
    def predict(params: NodeParams, inputs: dict, state: Any, node_info: Any) -> tuple:
        config = node_info.node_config
        ((edge, x),) = inputs.items()
        act = node_info.activation
        branch = jnp.matmul(type(act).forward(x, act.config), params.weights[edge])
        branch = branch * config["scale"]  # pcgraph's mul(matmul(...), a): the same rounding
        return (x + branch if config["skip"] else branch), None


def structure(
    depth: int,
    width: int,
    algorithm: str,
    steps: int,
    rate: float,
    in_features: int = 784,
    classes: int = 10,
) -> Any:
    """The muPC network as a FabricPC graph with ``algorithm``'s inference ("il" or "epc")."""
    layers = depth + 2  # jpc's L
    relu = ReLUActivation()
    x = IdentityNode(shape=(in_features,), name="x")
    nodes: list[Any] = [x, ScaledPreActLinear((width,), "stem", scale=1 / math.sqrt(in_features))]
    for i in range(depth):
        a = 1 / math.sqrt(width * layers)
        nodes.append(ScaledPreActLinear((width,), f"block{i}", relu, scale=a, skip=True))
    head = ScaledPreActLinear((classes,), "head", relu, scale=1 / width)
    nodes.append(head)
    edges = [Edge(source=a, target=b.slot("in")) for a, b in zip(nodes[:-1], nodes[1:])]
    return graph(
        nodes=nodes,
        edges=edges,
        task_map=TaskMap(x=x, y=head),
        inference=INFERENCE[algorithm](eta_infer=rate, infer_steps=steps),
    )


class FabricPCDeepStep:
    """FabricPC's training step on the muPC ``deep_mlp(depth, width)`` from pcgraph's
    parameters (``stem.W``, ``block{i}.W``, ``head.W``, each ``(in, out)``): ``step(x, y)``
    with ``x (B, in_features)`` and a float target ``y (B, classes)`` returns the energy per
    example and keeps the new parameters.  ``optimizer``: an optax transformation."""

    def __init__(
        self,
        depth: int,
        width: int,
        pcgraph_params: Mapping[str, Any],
        algorithm: str,
        steps: int,
        rate: float,
        optimizer: Any,
    ) -> None:
        W0 = np.asarray(pcgraph_params["stem.W"])
        self.st = structure(
            depth, width, algorithm, steps, rate, W0.shape[0], np.shape(pcgraph_params["head.W"])[1]
        )
        params = initialize_params(self.st, jax.random.PRNGKey(0))
        nodes = dict(params.nodes)
        for src, dst in zip(self.st.node_order[:-1], self.st.node_order[1:]):
            W = jnp.asarray(np.asarray(pcgraph_params[f"{dst}.W"]))
            nodes[dst] = nodes[dst]._replace(weights={f"{src}->{dst}:in": W})
        self.params = params._replace(nodes=nodes)
        self.opt_state = optimizer.init(self.params)
        self.key = jax.random.PRNGKey(0)  # unused: the state starts feed-forward
        self._step = _make_step(self.st, optimizer, algorithm="pc", with_state=False, donate=True)

    def step(self, x: Any, y: Any) -> Any:
        self.params, self.opt_state, metrics = self._step(
            self.params, self.opt_state, {"x": x, "y": y}, self.key
        )
        jax.block_until_ready(self.params)
        return metrics["energy"]

    def weights(self) -> dict[str, np.ndarray]:
        """The current parameters under pcgraph's names."""
        return {
            f"{name}.W": np.asarray(next(iter(node.weights.values())))
            for name, node in self.params.nodes.items()
            if node.weights
        }


def check(
    depth: int = 6, width: int = 16, batch: int = 8, steps: int = 16, dtype: str = "float64"
) -> dict[str, float]:
    """Largest difference between FabricPC's updated weights and pcgraph's ``train_step`` from
    the same weights and batch on a small muPC network, per algorithm ("il", "epc") and
    optimiser ("sgd": lr 1, so the weight change is the gradient; "adam": the harness's
    optimiser, lr 1e-3, two steps), over the largest change, in ``dtype`` (float64 under
    ``jax.enable_x64``).  IL at jpc's activity rate 0.5 on the batch mean (0.5 / batch per
    example), ePC at 0.5 per example, as ``examples/reproduce/deep.py`` trains them."""
    import pcgraph as pc

    prog = pc.compile(
        pc.models.deep_mlp(
            depth=depth, width=width, in_features=20, parameterisation="mupc", loss="mse"
        ),
        dtype=dtype,
    )
    init = pc.to_numpy(prog.init_params(0))
    rng = np.random.default_rng(0)
    # MNIST-like inputs (non-negative, O(1)) and one-hot targets.
    x = rng.uniform(0, 1, size=(batch, 20)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, size=batch)]
    rates = {"il": 0.5 / batch, "epc": 0.5}
    optimisers = {
        "sgd": (lambda: pc.optim.SGD(lr=1.0), lambda: optax.sgd(1.0), 1),
        "adam": (lambda: pc.optim.Adam(lr=1e-3), lambda: optax.adam(1e-3), 2),
    }
    out = {}
    with jax.enable_x64(dtype == "float64"):
        for algorithm, rate in rates.items():
            for name, (ours, theirs, repeats) in optimisers.items():
                params = {k: v.copy() for k, v in init.items()}
                peer = FabricPCDeepStep(depth, width, params, algorithm, steps, rate, theirs())
                opt = ours()
                for _ in range(repeats):
                    peer.step(jnp.asarray(x), jnp.asarray(y))
                    prog.train_step(
                        params,
                        {"x": x, "y": y},
                        algorithm,
                        optimizer=opt,
                        steps=steps,
                        rate=rate,
                        value_nodes="layers",
                    )
                got, want = peer.weights(), pc.to_numpy(params)
                moved = max(float(np.abs(want[k] - init[k]).max()) for k in init)
                diff = max(float(np.abs(got[k] - want[k]).max()) for k in init)
                out[f"{algorithm} {name}"] = diff / moved
    return out


if __name__ == "__main__":
    for row, diff in check().items():
        print(f"FabricPC {row} step vs pcgraph's on the muPC deep_mlp: {diff:.1e} of the change")
