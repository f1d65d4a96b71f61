"""Value-node placement: which batched ops are predictive coding's value nodes.

By default every batched op is one (the AAAI-22 graphs); ``value_nodes="layers"`` takes the
nodes marked with ``pc.layer`` (PCX's ``vode``), and a list names them.  The other ops are
folded into the prediction of the value nodes they feed.  Backprop and Z-IL do not depend on
the choice; IL does, and with one value node per layer it is the IL of PCX's tutorial MLP.
"""

from __future__ import annotations

import numpy as np
import pytest
from dags import random_dags
from helpers import mlp, residual, rnn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcgraph as pc
from pcgraph.algorithms.pc import structure
from pcgraph.compile import grad_nodes
from pcgraph.testing import random_batch

SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def batched_ops(prog: pc.Program) -> list[str]:
    """The ops that can be value nodes: batched, on a path from a parameter to the loss."""
    c = prog.compiled
    live = grad_nodes(c)
    return [
        n for n in c.order if n in live and c.nodes[n].op and c.nodes[n].batched and n != c.loss
    ]


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in b)


def zoo_mlp(sizes: tuple = (7, 6, 5, 4), activation: str = "relu") -> pc.Graph:
    return pc.models.mlp(sizes=sizes, activation=activation)


# ------------------------------------------------------------------ Z-IL and BP do not change
@pytest.mark.parametrize(
    "build", [zoo_mlp, lambda: zoo_mlp(activation="tanh"), residual, rnn], ids=str
)
@pytest.mark.parametrize("placement", ["all", "none", "every-other", "layers"])
def test_zil_equals_backprop_under_every_placement(build, placement: str) -> None:  # noqa: ANN001
    g = build()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=5)
    ops = batched_ops(prog)
    chosen = {"all": "all", "none": [], "every-other": ops[::2]}.get(placement)
    if placement == "layers":
        if not any(prog.compiled.nodes[n].layer for n in ops):
            pytest.skip("this test graph marks no layers")
        chosen = "layers"
    bp = prog.grads(params, batch)
    zil = prog.grads(params, batch, algorithm="zil", value_nodes=chosen)
    assert max_diff(zil, bp) <= 1e-13


@SETTINGS
@given(g=random_dags(), picks=st.lists(st.integers(0, 20), max_size=6))
def test_zil_equals_backprop_on_random_dags_with_random_value_nodes(g: pc.Graph, picks) -> None:  # noqa: ANN001
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=4)
    ops = batched_ops(prog)
    chosen = sorted({ops[i % len(ops)] for i in picks})
    bp = prog.grads(params, batch)
    assert max_diff(prog.grads(params, batch, algorithm="zil", value_nodes=chosen), bp) <= 1e-12


@pytest.mark.parametrize("placement", ["all", "layers"])
def test_fpa_at_rate_1_with_depth_sweeps_equals_backprop_under_a_placement(placement: str) -> None:
    g = zoo_mlp(sizes=(7, 6, 6, 5, 4), activation="tanh")
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=5)
    depth = structure(prog.compiled, placement).depth
    bp = prog.grads(params, batch)
    fpa = prog.grads(params, batch, algorithm="fpa", value_nodes=placement, steps=depth)
    assert max_diff(fpa, bp) <= 1e-13
    short = prog.grads(params, batch, algorithm="fpa", value_nodes=placement, steps=depth - 1)
    assert max_diff(short, bp) > 1e-3


def test_fewer_value_nodes_make_a_shallower_pc_graph() -> None:
    prog = pc.compile(zoo_mlp(sizes=(7, 6, 5, 4)))
    every = structure(prog.compiled, "all")
    layers = structure(prog.compiled, "layers")
    assert every.values == ("fc0", "relu_0", "fc1", "relu_1") and every.depth == 4
    assert layers.values == ("relu_0", "relu_1") and layers.depth == 2
    assert layers.folded == ("fc0", "fc1")


# ------------------------------------------------------------------ IL with one value node a layer
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def il_per_layer_reference(params: dict, x: np.ndarray, y: np.ndarray, steps: int, rate: float):  # noqa: ANN201
    """IL on a relu MLP with one value node per hidden layer, after its activation, and a
    cross-entropy output (PCX's tutorial model: ``x = vode(act(linear(x)))``), from the energy
    ``F = sum_l 0.5 ||x_l - relu(x_{l-1} W_l + b_l)||^2 + CE(x_{L-1} W_L + b_L, y)``: values by
    ``x -= rate * dF/dx`` (all from the same state), then the batch-mean gradient in W, b."""
    n = len([k for k in params if k.endswith(".W")])
    W = [params[f"fc{i}.W"] for i in range(n)]
    b = [params[f"fc{i}.b"] for i in range(n)]
    B, onehot = len(x), np.eye(W[-1].shape[1])[y]
    xs = [x]
    for i in range(n - 1):
        xs.append(np.maximum(xs[-1] @ W[i] + b[i], 0))

    def errors(xs: list) -> tuple[list, list, np.ndarray]:
        pre = [xs[i] @ W[i] + b[i] for i in range(n - 1)]
        e = [None] + [xs[i + 1] - np.maximum(pre[i], 0) for i in range(n - 1)]
        top = _softmax(xs[-1] @ W[-1] + b[-1]) - onehot  # dCE / dlogits
        return e, pre, top

    for _ in range(steps):
        e, pre, top = errors(xs)
        grads = []
        for k in range(1, n):
            above = top @ W[-1].T if k == n - 1 else -(e[k + 1] * (pre[k] > 0)) @ W[k].T
            grads.append(e[k] + above)
        xs = [xs[0]] + [xs[k] - rate * grads[k - 1] for k in range(1, n)]
    e, pre, top = errors(xs)
    out = {f"fc{n - 1}.W": xs[-1].T @ top / B, f"fc{n - 1}.b": top.mean(axis=0)}
    for i in range(n - 1):
        delta = -(e[i + 1] * (pre[i] > 0))
        out[f"fc{i}.W"], out[f"fc{i}.b"] = xs[i].T @ delta / B, delta.mean(axis=0)
    return out


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_il_with_one_value_node_per_layer_is_pcx_tutorial_il(steps: int) -> None:
    g = zoo_mlp(sizes=(9, 7, 6, 4))
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(3), random_batch(g, size=6)
    ours = prog.grads(params, batch, algorithm="il", steps=steps, rate=0.1, value_nodes="layers")
    ref = il_per_layer_reference(params, batch["x"], batch["y"], steps, 0.1)
    assert max_diff(ours, ref) <= 1e-13
    every = prog.grads(params, batch, algorithm="il", steps=steps, rate=0.1)
    assert max_diff(every, ref) > 1e-4  # the placement changes IL


def test_naming_the_layers_equals_marking_them() -> None:
    g = zoo_mlp()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=4)
    marked = prog.grads(params, batch, algorithm="il", value_nodes="layers")
    named = prog.grads(params, batch, algorithm="il", value_nodes=["relu_0", "relu_1"])
    assert max_diff(marked, named) == 0.0


# ------------------------------------------------------------------ the DSL and the files
def test_layer_marks_a_node_and_returns_it() -> None:
    g = pc.Graph("g")
    h = pc.relu(g.input("x", (3,)) @ g.param("W", (3, 2)))
    assert pc.layer(h) is h and g.nx.nodes[h.name]["layer"] is True


@pytest.mark.parametrize("leaf", ["input", "param"])
def test_only_batched_ops_can_be_layers(leaf: str) -> None:
    g = pc.Graph("g")
    node = g.input("x", (3,)) if leaf == "input" else g.param("W", (3, 2))
    with pytest.raises(pc.GraphError, match="only a batched op node can be a layer"):
        pc.layer(node)
    w = g.param("V", (2, 2))
    with pytest.raises(pc.GraphError, match="unbatched op"):
        pc.layer(pc.transpose(w))


def test_layer_marks_survive_a_graph_file(tmp_path) -> None:  # noqa: ANN001
    g = zoo_mlp()
    pc.save_graph(tmp_path / "g.json", g)
    back = pc.load_graph(tmp_path / "g.json")
    marked = sorted(n for n, d in back.nx.nodes(data=True) if d.get("layer"))
    assert marked == ["relu_0", "relu_1"]
    assert pc.fingerprint(back) == pc.fingerprint(g)


def test_a_bad_layer_attribute_is_refused_by_name() -> None:
    g = zoo_mlp()
    g.nx.nodes["relu_0"]["layer"] = "yes"
    with pytest.raises(pc.GraphError, match="op 'relu_0': 'layer' must be True or False"):
        pc.compile(g)
    g.nx.nodes["relu_0"]["layer"] = False
    g.nx.nodes["x"]["layer"] = True
    with pytest.raises(pc.GraphError, match="input 'x': only batched op nodes can be layers"):
        pc.compile(g)


def test_every_zoo_model_marks_its_layers() -> None:
    from test_models import SMALL, _build

    for name in SMALL:
        prog = pc.compile(_build(name))
        st = structure(prog.compiled, "layers")
        assert st.values, f"{name} marks no layer"
        assert len(st.values) < len(structure(prog.compiled, "all").values), name


# ------------------------------------------------------------------ schedules and errors
def test_the_schedule_shows_the_placement() -> None:
    prog = pc.compile(zoo_mlp())
    text = str(prog.schedule("il", steps=2, value_nodes="layers"))
    assert "value_nodes='layers'" in text.splitlines()[0]
    assert "# value nodes: relu_0, relu_1; outputs: fc2; folded into predictions: fc0, fc1" in text
    assert "x[fc1] = linear(relu_0, fc1.W, fc1.b)" in text  # a folded op, recomputed each step
    assert "folded" not in str(prog.schedule("il", steps=2))


@pytest.mark.parametrize(
    ("value_nodes", "match"),
    [
        (["nope"], "value_nodes names 'nope', which is not a node of the graph"),
        (["loss"], "value_nodes names 'loss', which is the loss"),
        (["fc0.W"], "'fc0.W', which is not a batched op on a path"),
        ("some", "value_nodes='some' must be 'all', 'layers' or a list of node names"),
        ([1, 2], "must be 'all', 'layers' or a list of node names"),
    ],
)
def test_a_bad_placement_is_an_option_error_naming_it(value_nodes, match: str) -> None:  # noqa: ANN001
    g = zoo_mlp()
    prog = pc.compile(g)
    with pytest.raises(pc.OptionError, match=match):
        prog.grads(
            prog.init_params(0), random_batch(g, size=2), algorithm="il", value_nodes=value_nodes
        )


def test_layers_on_a_graph_without_marks_says_how_to_mark_them() -> None:
    g = mlp()
    prog = pc.compile(g)
    with pytest.raises(pc.OptionError, match=r"marks no layer.*pc.layer\(node\)"):
        prog.schedule("il", value_nodes="layers")


def test_identity_levelling_needs_every_op_a_value_node() -> None:
    prog = pc.compile(zoo_mlp())
    with pytest.raises(pc.OptionError, match="need value_nodes='all'"):
        prog.schedule("zil", levelling="identity", value_nodes="layers")
