"""The one interpreter: runs the steps of any schedule on a backend's array namespace.

State is a dict of named stores (``"x"`` values, ``"mu"`` predictions, ``"g"`` cotangents,
``"e"`` errors, ...), each a dict node -> array.  Backends know no graph; the executor knows no
array library beyond the namespace ``xp`` it is handed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .compile import Compiled
from .ops import OPS
from .schedule import VJP, Eval, Note, Seed


def accumulate(store: dict, key: str, value: Any) -> None:
    """``store[key] += value``, creating the entry on first use (never writes into ``value``)."""
    prev = store.get(key)
    store[key] = value if prev is None else prev + value


def evaluate_op(xp: Any, c: Compiled, node: str, operands: list) -> Any:
    """The forward rule of ``node``'s op on operand arrays."""
    spec = c.nodes[node]
    return OPS[spec.op].forward(xp, operands, **spec.lowered)


def vjp_op(xp: Any, c: Compiled, node: str, argnum: int, g: Any, out: Any, operands: list) -> Any:
    """The local VJP of ``node``'s op for operand ``argnum`` at cotangent ``g``."""
    spec = c.nodes[node]
    return OPS[spec.op].vjp(xp, argnum, g, out, operands, **spec.lowered)


def run(
    xp: Any, c: Compiled, steps: Iterable, state: dict[str, dict], batch_size: int, dtype: Any
) -> None:
    """Execute ``steps`` in order, reading and writing the stores of ``state``."""
    x = state["x"]
    for step in steps:
        if isinstance(step, Eval):
            state[step.into][step.node] = evaluate_op(
                xp, c, step.node, [x[o] for o in step.operands]
            )
        elif isinstance(step, VJP):
            src = state[step.src][step.node]
            at = state[step.at]
            operands = [at[o] for o in c.nodes[step.node].operands]
            out = at[step.node]
            accumulate(
                state[step.into],
                step.operand,
                vjp_op(xp, c, step.node, step.argnum, src, out, operands),
            )
        elif isinstance(step, Seed):
            state[step.into][step.node] = xp.full((batch_size,), 1.0 / batch_size, dtype=dtype)
        elif not isinstance(step, Note):
            raise TypeError(f"the executor cannot run step {step!r}")
