"""Hypothesis strategy: random DAGs of ops with several parents, several children and shared params."""

from __future__ import annotations

from hypothesis import strategies as st

import pcgraph as pc

D = 3
UNARY = ("tanh", "sigmoid", "neg", "relu")
BINARY = ("add", "sub", "mul")


@st.composite
def random_dags(draw: st.DrawFn, max_nodes: int = 8) -> pc.Graph:
    g = pc.Graph("random")
    acts = [g.input("x", (D,))]
    weights = [g.param(f"W{i}", (D, D)) for i in range(draw(st.integers(1, 3)))]
    biases = [g.param(f"b{i}", (D,), init="normal") for i in range(draw(st.integers(1, 2)))]
    for _ in range(draw(st.integers(1, max_nodes))):
        kind = draw(st.sampled_from(("linear", "unary", "binary", "bias")))
        a = draw(st.sampled_from(acts))
        if kind == "linear":
            acts.append(a @ draw(st.sampled_from(weights)))
        elif kind == "bias":
            acts.append(a + draw(st.sampled_from(biases)))
        elif kind == "unary":
            acts.append(getattr(pc, draw(st.sampled_from(UNARY)))(a))
        else:
            b = draw(st.sampled_from(acts))
            acts.append(getattr(pc, draw(st.sampled_from(BINARY)))(a, b))
    # Every activation without a child feeds the output, so every node reaches the loss.
    sinks = [a for a in acts if not list(g.nx.successors(a.name))]
    out = sinks[0]
    for s in sinks[1:]:
        out = out + s
    out = pc.tanh(out @ weights[0])  # the first weight is then used at least once
    g.set_loss(pc.mse(out, g.target("y", (D,))))
    return g
