"""A graph of your own for the command line: ``pcgraph train --graph examples/my_model.py:build``.

``build`` may take keyword arguments; the command line fills in ``input_shape`` and ``classes``
from ``--data`` (and ``--model-args`` any others).  This file's top-level code runs when the
command line imports it, as any Python import does.
"""

from __future__ import annotations

import pcgraph as pc


def build(input_shape: tuple[int, ...] = (64,), classes: int = 10, hidden: int = 32) -> pc.Graph:
    """A one-hidden-layer tanh MLP on flattened inputs: x ``input_shape`` -> logits ``(classes,)``."""
    g = pc.Graph("my_model")
    x = pc.flatten(g.input("x", input_shape))
    h = pc.tanh(pc.linear(x, g.param("W1", (x.shape[0], hidden)), g.param("b1", (hidden,))))
    h = pc.layer(h)
    logits = pc.linear(h, g.param("W2", (hidden, classes)), g.param("b2", (classes,)))
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64")))
    return g
