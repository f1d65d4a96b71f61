"""Z-IL levels of a graph's nodes, for drawing and for scheduling Z-IL.

Z-IL (Song et al. 2020, "Can the brain do backpropagation?") updates the weights feeding a node
at inference step ``t`` equal to that node's distance from the output, so that each update uses
exactly the backprop error.  On an arbitrary DAG the distance is taken as the *longest* path: the
level of a node is the length of the longest directed path from it to any operand of the loss
node, and the loss node's operands (the prediction and the target) are level 0.  A node whose
value reaches the loss along several paths thus gets its error only once every path has
delivered its part.  The loss node itself has no level, and nodes from which the loss cannot be
reached are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import GraphError
from .graph import operands_of


def _structure(obj: Any) -> tuple[dict[str, tuple[str, ...]], str]:
    """``(operands of every node, loss node)`` of a ``Graph``, ``Program`` or compiled graph."""
    compiled = getattr(obj, "compiled", obj)
    if hasattr(obj, "nx"):  # a Graph: read the networkx graph directly
        G = obj.nx
        operands = {}
        for n in G.nodes:
            operands[n] = operands_of(G, n)
        loss = G.graph.get("loss")
    elif hasattr(compiled, "nodes") and hasattr(compiled, "loss"):
        operands = {n: tuple(s.operands) for n, s in compiled.nodes.items()}
        loss = compiled.loss
    else:
        raise GraphError(f"zil_levels needs a Graph or a Program, got {type(obj).__name__}")
    if loss is None or loss not in operands:
        raise GraphError("zil_levels: the graph has no loss node; call g.set_loss(node)")
    return operands, loss


def levels_from(operands: Mapping[str, Sequence[str]], loss: str) -> dict[str, int]:
    """Z-IL levels from plain data: ``operands[node]`` lists a node's operands, ``loss`` names
    the loss node.  Returns ``{node: level}`` for every node that reaches the loss (see module)."""
    children: dict[str, list[str]] = {n: [] for n in operands}
    for n, ops in operands.items():
        for o in ops:
            children.setdefault(o, []).append(n)
    # Ancestors of the loss, then a topological order of them (Kahn on the reversed edges, so
    # that every node comes after all of its children: its level needs theirs).
    seen, stack = set(), list(operands.get(loss, ()))
    while stack:
        n = stack.pop()
        if n not in seen and n != loss:
            seen.add(n)
            stack.extend(operands.get(n, ()))
    pending = {n: sum(1 for c in children[n] if c in seen) for n in seen}
    ready = sorted(n for n, k in pending.items() if k == 0)
    level: dict[str, int] = {}
    final = set(operands.get(loss, ()))
    while ready:
        n = ready.pop()
        below = [level[c] + 1 for c in children[n] if c in seen]
        level[n] = max(below + ([0] if n in final else []))
        for o in set(operands.get(n, ())):
            if o in seen:
                pending[o] -= sum(1 for c in children[o] if c == n)
                if pending[o] == 0:
                    ready.append(o)
    if len(level) != len(seen):
        raise GraphError("zil_levels: the graph has a cycle")
    return level


def zil_levels(graph: Any) -> dict[str, int]:
    """``{node: level}`` for a ``Graph`` or ``Program``: the longest path length from the node to
    an operand of the loss node (those operands are level 0).  The loss node and nodes that do
    not reach it are not in the result."""
    operands, loss = _structure(graph)
    return levels_from(operands, loss)


__all__ = ["zil_levels", "levels_from"]
