"""Z-IL levels: the longest path from a node to an operand of the loss (those are level 0)."""

from __future__ import annotations

import warnings

import pytest
from helpers import mlp, residual

import pcgraph as pc
from pcgraph.levels import levels_from, zil_levels


def test_levels_of_an_mlp_count_layers_from_the_output() -> None:
    levels = zil_levels(mlp((6, 5, 4, 3)))
    assert levels["y"] == 0 and levels["add_2"] == 0  # the loss's operands
    assert levels["W2"] == 2 and levels["W1"] == 5 and levels["W0"] == 8 and levels["x"] == 8
    assert "softmax_cross_entropy_0" not in levels


def test_longest_path_wins_on_a_skip_connection() -> None:
    g = residual()
    levels = zil_levels(g)
    # relu_0 feeds add_1 directly (1 step) and through tanh(h W1) (3 steps): the longer counts.
    assert levels["add_1"] == 1 and levels["relu_0"] == 4
    assert zil_levels(pc.compile(g)) == levels


def test_unused_nodes_have_no_level_and_repeated_operands_count_once() -> None:
    g = pc.Graph("sq")
    x = g.input("x", (3,))
    h = x * g.param("w", (3,))
    g.param("unused", (2,))
    g.set_loss(pc.mse(h * h, g.target("y", (3,))))
    levels = zil_levels(g)
    assert levels == {"y": 0, "mul_1": 0, "mul_0": 1, "w": 2, "x": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.UnusedParameterWarning)
        assert zil_levels(pc.compile(g)) == levels


def test_plain_data_and_errors() -> None:
    assert levels_from({"a": (), "b": ("a",), "L": ("b", "a")}, "L") == {"a": 1, "b": 0}
    with pytest.raises(pc.GraphError, match="no loss"):
        zil_levels(pc.Graph("empty"))
    with pytest.raises(pc.GraphError, match="Graph or a Program"):
        zil_levels(42)
