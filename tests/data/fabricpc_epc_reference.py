"""Regenerate ``fabricpc_epc_reference.npz``: FabricPC's own ePC (``EPCInference``) on a small
tanh MLP, in float64, for ``tests/test_epc.py`` to check pcgraph's ``epc`` against.

FabricPC's ePC (``fabricpc/core/inference_epc.py``) is in its PyPI release 0.6.0 and on the
branch ``dmacd-epc-tw`` of github.com/trueagi-io/FabricPC (commit 43826b8, calling itself 0.3.2);
the committed numbers were made with the branch and JAX 0.10.2, and 0.6.0 from PyPI gives the
same to 9e-16.  Install it in a virtual environment of its own (its JAX conflicts with PCX's pin
in pcgraph's)::

    python3 -m venv /tmp/venv-fabricpc && /tmp/venv-fabricpc/bin/pip install fabricpc==0.6.0
    /tmp/venv-fabricpc/bin/python tests/data/fabricpc_epc_reference.py

It writes, for the batch and weights it draws: the relaxed errors of each hidden node after
``STEPS`` inference steps at rate ``RATE`` (``EPCInference.run_inference``, feed-forward start)
and the weight gradients of ``compute_local_weight_gradients`` at the final state.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from fabricpc.core.activations import IdentityActivation, TanhActivation  # noqa: E402
from fabricpc.core.inference import run_inference  # noqa: E402
from fabricpc.core.inference_epc import EPCInference  # noqa: E402
from fabricpc.core.learning import compute_local_weight_gradients  # noqa: E402
from fabricpc.core.topology import Edge  # noqa: E402
from fabricpc.graph_assembly import TaskMap, graph  # noqa: E402
from fabricpc.graph_initialization import FeedforwardStateInit, initialize_params  # noqa: E402
from fabricpc.graph_initialization.state_initializer import initialize_graph_state  # noqa: E402
from fabricpc.nodes import IdentityNode, Linear  # noqa: E402

SIZES = (5, 4, 4, 3)  # x -> h1 (tanh) -> h2 (tanh) -> y (identity, Gaussian energy = mse)
BATCH, STEPS, RATE = 6, 7, 0.2


def build() -> tuple:
    x = IdentityNode(shape=(SIZES[0],), name="x")
    h1 = Linear(shape=(SIZES[1],), name="h1", activation=TanhActivation())
    h2 = Linear(shape=(SIZES[2],), name="h2", activation=TanhActivation())
    y = Linear(shape=(SIZES[3],), name="y", activation=IdentityActivation())
    return graph(
        nodes=[x, h1, h2, y],
        edges=[
            Edge(source=x, target=h1.slot("in")),
            Edge(source=h1, target=h2.slot("in")),
            Edge(source=h2, target=y.slot("in")),
        ],
        task_map=TaskMap(x=x, y=y),
        inference=EPCInference(eta_infer=RATE, infer_steps=STEPS),
    )


def reference() -> dict[str, np.ndarray]:
    """The batch, weights, and what FabricPC's ePC makes of them (float64 NumPy arrays)."""
    structure = build()
    key = jax.random.PRNGKey(0)
    params = initialize_params(structure, key)
    rng = np.random.default_rng(0)
    # Weights of a useful size for a visible update (FabricPC's Kaiming init would do too).
    params = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.normal(scale=0.7, size=a.shape), dtype=jnp.float64), params
    )
    clamps = {
        "x": jnp.asarray(rng.normal(size=(BATCH, SIZES[0]))),
        "y": jnp.asarray(rng.normal(size=(BATCH, SIZES[-1]))),
    }
    state = initialize_graph_state(
        structure, BATCH, key, clamps=clamps, state_init=FeedforwardStateInit(), params=params
    )
    final = run_inference(params, state, clamps, structure)
    grads = compute_local_weight_gradients(params, final, structure)
    out: dict[str, np.ndarray] = {"x": clamps["x"], "y": clamps["y"]}
    for node, src in (("h1", "x"), ("h2", "h1"), ("y", "h2")):
        out[f"param:{node}.W"] = params.nodes[node].weights[f"{src}->{node}:in"]
        out[f"param:{node}.b"] = params.nodes[node].biases["b"]
        out[f"grad:{node}.W"] = grads.nodes[node].weights[f"{src}->{node}:in"]
        out[f"grad:{node}.b"] = grads.nodes[node].biases["b"]
    for node in ("h1", "h2"):
        out[f"error:{node}"] = final.nodes[node].error
        out[f"value:{node}"] = final.nodes[node].z_latent
    out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    out["steps"], out["rate"] = np.asarray(STEPS), np.asarray(RATE)
    return out


def main() -> None:
    out = reference()
    shown = subprocess.run(
        [sys.executable, "-m", "pip", "show", "fabricpc"], capture_output=True, text=True
    ).stdout
    version = next(line for line in shown.splitlines() if line.startswith("Version"))
    out["made_with"] = np.asarray(f"fabricpc {version.split()[-1]}, jax {jax.__version__}")
    np.savez(Path(__file__).with_suffix(".npz"), **out)
    print("wrote", Path(__file__).with_suffix(".npz"), "with", out["made_with"])


if __name__ == "__main__":
    main()
