"""Edits of ``g.nx`` that break the DSL's node contract are refused by name at compile, and the
same graph cannot be saved or fingerprinted either (what load_graph would refuse)."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np
import pytest

import pcgraph as pc


def small() -> pc.Graph:
    g = pc.Graph("g")
    x = g.input("x", (3,))
    h = pc.tanh(x @ g.param("W", (3, 2)) + g.const(np.ones(2), name="c"), name="h")
    g.set_loss(pc.mse(h, g.target("y", (2,)), name="loss"))
    return g


def _set(node: str, **attrs: object) -> Callable[[pc.Graph], None]:
    return lambda g: g.nx.nodes[node].update(attrs)


def _drop(node: str, attr: str) -> Callable[[pc.Graph], None]:
    return lambda g: g.nx.nodes[node].pop(attr)


def _relabel(g: pc.Graph) -> None:
    nx.relabel_nodes(g.nx, {"c": 7}, copy=False)


def _simple(g: pc.Graph) -> None:
    g.nx = nx.DiGraph(g.nx)


def _undirected(g: pc.Graph) -> None:
    g.nx = nx.MultiGraph(g.nx)


EDITS = {
    "shape missing": (_drop("x", "shape"), "input 'x': the attribute 'shape' is missing"),
    "dtype missing": (_drop("W", "dtype"), "param 'W': 'dtype' must be"),
    "batched missing": (_drop("h", "batched"), "op 'h': 'batched' must be True or False"),
    "op missing": (_drop("h", "op"), "node 'h': unknown op None"),
    "shape of text": (_set("x", shape=("3",)), "input 'x': shape must hold positive ints"),
    "shape not a sequence": (_set("x", shape=3), "input 'x': 'shape' must be a tuple of ints"),
    "batched as text": (_set("x", batched="yes"), "'batched' must be True or False"),
    "an unbatched input": (_set("x", batched=False), "input 'x': a input is batched"),
    "a batched param": (_set("W", batched=True), "param 'W': a param is not batched"),
    "an unknown dtype": (_set("x", dtype="float16"), "'dtype' must be 'float' or 'int64'"),
    "an integer param": (_set("W", dtype="int64"), "a param has dtype 'float'"),
    "attrs not a dict": (_set("h", attrs=[1, 2]), "'attrs' must be a dict"),
    "a non-string name": (_relabel, "node names must be non-empty strings, got 7"),
    "a simple digraph": (_simple, "must be a networkx.MultiDiGraph"),
    "an undirected graph": (_undirected, "must be a networkx.MultiDiGraph"),
    "a const without value": (_drop("c", "value"), "const 'c': the attribute 'value' is missing"),
    "a const of another shape": (_set("c", value=np.ones(3)), "'value' has shape"),
    "a complex const": (_set("c", value=np.ones(2) * 1j), "'value' must hold real numbers"),
    "a NaN const": (_set("c", value=np.array([1.0, np.nan])), "NaN or infinity"),
    "a zero-sized param": (_set("W", shape=(3, 0)), "shape must hold positive ints"),
    "a negative param dim": (_set("W", shape=(-3, 2)), "shape must hold positive ints"),
    "an unknown init": (_set("W", init="fancy"), "unknown init 'fancy'"),
    "an op on an input": (
        _set("x", op=np.float32(0.1)),
        "input 'x': only op nodes carry 'op' or 'attrs'",
    ),
    "attrs on an input": (_set("x", attrs=np.ones(2)), "input 'x': only op nodes carry"),
    "an edge without a position": (
        lambda g: g.nx.add_edge("c", "loss", pos="2"),
        "'pos', got '2'",
    ),
    "a recorded dtype that differs": (
        _set("h", dtype="int64"),
        "node 'h' \\(tanh\\) records dtype 'int64' but its operands give 'float'",
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_broken_edit_is_refused_by_name_at_compile(edit: str) -> None:
    g = small()
    change, match = EDITS[edit]
    change(g)
    with pytest.raises(pc.GraphError, match=match):
        pc.compile(g)


@pytest.mark.parametrize("edit", EDITS)
def test_what_compile_refuses_cannot_be_saved_or_fingerprinted(edit: str, tmp_path) -> None:  # noqa: ANN001
    g = small()
    change, match = EDITS[edit]
    change(g)
    with pytest.raises(pc.GraphError, match=match):
        pc.save_graph(tmp_path / "g.json", g)
    with pytest.raises(pc.GraphError, match=match):
        pc.fingerprint(g)
    assert not (tmp_path / "g.json").exists()


def test_an_intact_graph_still_compiles_saves_and_round_trips(tmp_path) -> None:  # noqa: ANN001
    g = small()
    pc.compile(g)
    again = pc.load_graph(pc.save_graph(tmp_path / "g.json", g))
    assert pc.fingerprint(again) == pc.fingerprint(g)
