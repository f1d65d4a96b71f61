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

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .errors import GraphError


def _structure(obj: Any) -> tuple[dict[str, tuple[str, ...]], str]:
    """``(operands of every node in topological order, loss node)`` of a ``Graph``,
    ``Program`` or compiled graph."""
    compiled = getattr(obj, "compiled", obj)
    if hasattr(obj, "nx"):  # a Graph: checked, which orders it and refuses a cycle
        operands = {n: ops for n, (ops, _) in obj.checked().items()}
        loss = obj.nx.graph.get("loss")
    elif hasattr(compiled, "nodes") and hasattr(compiled, "loss"):
        operands = {n: tuple(s.operands) for n, s in compiled.nodes.items()}
        loss = compiled.loss
    else:
        raise GraphError(f"zil_levels needs a Graph or a Program, got {type(obj).__name__}")
    if loss is None or loss not in operands:
        raise GraphError("zil_levels: the graph has no loss node; call g.set_loss(node)")
    return operands, loss


def levels_from(
    operands: Mapping[str, Sequence[str]], loss: str, folded: Collection[str] = ()
) -> dict[str, int]:
    """Z-IL levels from plain data: ``operands[node]`` lists a node's operands, every node after
    its operands (a topological order), ``loss`` names the loss node.  Returns ``{node: level}``
    for every node that reaches the loss (see module).  A node in ``folded`` (an op folded into
    the prediction of the value nodes it feeds) takes its highest consumer's level instead of
    one more.  One sweep from the loss back: linear in nodes plus edges."""
    folded = set(folded)
    level: dict[str, int] = {}
    for n in reversed(list(operands)):  # every consumer of a node comes before it here
        if n == loss:
            here, step = 0, 0  # the loss's operands are level 0 (unless longer paths say more)
        elif n in level:
            here, step = level[n], 1
        else:
            continue  # does not reach the loss
        for o in operands[n]:
            reach = here if (step == 0 or o in folded) else here + step
            if level.get(o, -1) < reach:
                level[o] = reach
    return level


def zil_levels(graph: Any) -> dict[str, int]:
    """``{node: level}`` for a ``Graph`` or ``Program``: the longest path length from the node to
    an operand of the loss node (those operands are level 0).  The loss node and nodes that do
    not reach it are not in the result."""
    operands, loss = _structure(graph)
    return levels_from(operands, loss)


__all__ = ["zil_levels", "levels_from"]
