"""Each error class is raised by a concrete bad input, with a message naming the fault."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc


def small() -> pc.Graph:
    g = pc.Graph("small")
    x = g.input("x", (4,))
    logits = pc.matmul(x, g.param("W", (4, 3)), name="logits")
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64"), name="loss"))
    return g


def test_every_error_is_a_pcgraph_error() -> None:
    for cls in (
        pc.GraphError,
        pc.ShapeError,
        pc.FeedError,
        pc.BackendError,
        pc.OptionError,
        pc.NumericalError,
        pc.FileFormatError,
    ):
        assert issubclass(cls, pc.PCGraphError)


def test_shape_mismatch_names_node_op_and_both_shapes() -> None:
    g = pc.Graph("bad")
    x = g.input("x", (784,))
    with pytest.raises(pc.ShapeError, match=r"'h' \(matmul\).*\(784,\).*\(256, 10\)"):
        pc.matmul(x, g.param("W", (256, 10)), name="h")


def test_broadcast_mismatch_names_both_shapes() -> None:
    g = pc.Graph("bad")
    with pytest.raises(pc.ShapeError, match=r"\(3,\) and \(4,\) do not broadcast"):
        g.input("a", (3,)) + g.input("b", (4,))


def test_duplicate_names_are_a_graph_error() -> None:
    g = pc.Graph("dup")
    g.input("x", (3,))
    with pytest.raises(pc.GraphError, match="'x' already exists"):
        g.param("x", (3,))


def test_axis_out_of_range_names_the_axis() -> None:
    g = pc.Graph("ax")
    with pytest.raises(pc.ShapeError, match="axis 2 is out of range"):
        pc.softmax(g.input("x", (3, 4)), axis=2)


def test_unknown_attribute_lists_the_valid_ones() -> None:
    g = pc.Graph("attr")
    with pytest.raises(pc.ShapeError, match="unknown attribute.*'axes'.*valid: axis"):
        pc.softmax(g.input("x", (3,)), axes=0)


def test_a_non_scalar_loss_is_refused() -> None:
    g = pc.Graph("loss")
    x = g.input("x", (3,))
    with pytest.raises(pc.GraphError, match="loss node 'h' must be a batched scalar"):
        g.set_loss(pc.tanh(x, name="h"))


def test_a_graph_without_loss_does_not_compile() -> None:
    g = pc.Graph("noloss")
    pc.tanh(g.input("x", (3,)))
    with pytest.raises(pc.GraphError, match="no loss"):
        pc.compile(g)


def test_a_cycle_made_by_editing_nx_is_found_and_named() -> None:
    g = small()
    g.nx.add_edge("loss", "x", pos=0)
    with pytest.raises(pc.GraphError, match="cycle"):
        pc.compile(g)


def test_a_dangling_operand_made_by_editing_nx_is_found() -> None:
    g = small()
    g.nx.remove_edge("W", "logits")
    with pytest.raises(pc.GraphError, match="'logits'"):
        pc.compile(g)


def test_g_nx_is_a_networkx_digraph_with_operand_positions() -> None:
    g = small()
    assert isinstance(g.nx, nx.DiGraph)
    assert g.nx.nodes["logits"]["op"] == "matmul"
    assert sorted(p for _, _, p in g.nx.in_edges("logits", data="pos")) == [0, 1]


def test_unused_parameters_are_warned_about_by_name() -> None:
    g = small()
    g.param("orphan", (2,))
    with pytest.warns(pc.UnusedParameterWarning, match="orphan"):
        pc.compile(g)


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(pc.BackendError, match="unknown backend 'tpu'.*numpy"):
        pc.compile(small(), backend="tpu")


def test_unknown_dtype_is_an_option_error() -> None:
    with pytest.raises(pc.OptionError, match="float16"):
        pc.compile(small(), dtype="float16")


@pytest.mark.parametrize(
    "batch,match",
    [
        ({"x": np.zeros((2, 4))}, "missing 'y'"),
        ({"x": np.zeros((2, 5)), "y": np.zeros(2, int)}, r"'x' has shape \(2, 5\)"),
        ({"x": np.zeros((2, 4)), "y": np.zeros(2, int), "z": 1}, "unknown feed key 'z'"),
        ({"x": np.zeros((2, 4)), "y": np.zeros(2)}, "'y' must hold integers"),
        ({"x": np.zeros((2, 4)), "y": np.array([0, 3])}, "outside the 3 classes"),
        ({"x": np.zeros((0, 4)), "y": np.zeros(0, int)}, "empty batch"),
        ({"x": np.zeros((2, 4)), "y": np.zeros(3, int)}, "batch size"),
        ({"x": np.array([["a"] * 4] * 2), "y": np.zeros(2, int)}, "not a number type"),
    ],
)
def test_bad_feeds_are_feed_errors_naming_the_key(batch: dict, match: str) -> None:
    prog = pc.compile(small())
    with pytest.raises(pc.FeedError, match=match):
        prog.loss(prog.init_params(0), batch)


def test_bad_params_are_feed_errors_naming_the_parameter() -> None:
    prog = pc.compile(mlp())
    params = prog.init_params(0)
    batch = {"x": np.zeros((2, 6)), "y": np.zeros(2, int)}
    with pytest.raises(pc.FeedError, match="missing 'W0'"):
        prog.loss({k: v for k, v in params.items() if k != "W0"}, batch)
    with pytest.raises(pc.FeedError, match=r"'W0' has shape \(5, 6\)"):
        prog.loss({**params, "W0": np.zeros((5, 6))}, batch)


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    prog = pc.compile(small())
    with pytest.raises(pc.OptionError, match="unknown algorithm 'sgd'.*bp"):
        prog.grads(prog.init_params(0), {"x": np.zeros((1, 4)), "y": [0]}, algorithm="sgd")


def test_unknown_op_is_a_graph_error_listing_ops() -> None:
    g = pc.Graph("op")
    with pytest.raises(pc.GraphError, match="unknown op 'conv9d'.*matmul"):
        g.op("conv9d", g.input("x", (3,)))
