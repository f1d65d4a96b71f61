"""The one interpreter: runs the steps of any schedule on a backend's array namespace.

State is a dict of named stores (``"x"`` values, ``"ff"`` feed-forward values, ``"mu"``
predictions, ``"g"`` cotangents, ``"e"`` errors, ``"s"`` children's error sums, ``"d"``
parameter increments), each a dict node -> array.  Arrays are never written in place, so a
snapshot of a store is a shallow copy.  Backends know no graph; the executor knows no array
library beyond the namespace ``xp`` it is handed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .compile import Compiled
from .ops import OPS
from .schedule import (
    VJP,
    Clear,
    Error,
    Eval,
    Normalise,
    Note,
    Perturb,
    ProxOutput,
    Relax,
    Seed,
    Snapshot,
    Update,
)


def accumulate(store: dict, key: str, value: Any) -> None:
    """``store[key] += value``, creating the entry on first use (never writes into ``value``)."""
    prev = store.get(key)
    store[key] = value if prev is None else prev + value


def _sq_norm(xp: Any, arrays: list) -> Any:
    """Per-example squared norm summed over ``arrays`` (each batched): shape (B,)."""
    total = 0.0
    for a in arrays:
        total = total + xp.sum(xp.reshape(a * a, (a.shape[0], -1)), axis=1)
    return total


def run(
    xp: Any, c: Compiled, steps: Iterable, state: dict[str, dict], batch_size: int, dtype: Any
) -> None:
    """Execute ``steps`` in order, reading and writing the stores of ``state``."""
    nodes = c.nodes
    for step in steps:
        kind = type(step)
        if kind is Eval:
            spec = nodes[step.node]
            x = state["x"]
            operands = [x[o] for o in step.operands]
            state[step.into][step.node] = OPS[spec.op].forward(xp, operands, **spec.lowered)
        elif kind is VJP:
            spec = nodes[step.node]
            at = state[step.at]
            out = state[step.out or step.at][step.node]
            operands = [at[o] for o in spec.operands]
            cot = OPS[spec.op].vjp(
                xp, step.argnum, state[step.src][step.node], out, operands, **spec.lowered
            )
            accumulate(state.setdefault(step.into, {}), step.operand, cot)
        elif kind is Seed:
            fill = 1.0 / batch_size if step.value == "1/B" else float(step.value)
            state.setdefault(step.into, {})[step.node] = xp.full((batch_size,), fill, dtype=dtype)
        elif kind is Update:
            x, e, s = state["x"], state["e"], state["s"]
            drive = s.pop(step.node, None)
            err = e.get(step.node)
            if drive is None and err is None:
                continue
            delta = drive if err is None else (-err if drive is None else drive - err)
            x[step.node] = x[step.node] + step.rate * delta
        elif kind is Relax:
            drive = state["s"].pop(step.node)
            state["x"][step.node] = state[step.mu][step.node] + drive
            state["e"][step.node] = drive
        elif kind is Error:
            state["e"][step.node] = state["x"][step.node] - state[step.mu][step.node]
        elif kind is Snapshot:
            state[step.into] = dict(state[step.src])
        elif kind is Clear:
            store = state.setdefault(step.store, {})
            for n in step.nodes:
                store.pop(n, None)
        elif kind is Perturb:
            x = state["x"][step.node]
            noise = np.random.default_rng(step.seed).normal(0.0, step.sigma, size=tuple(x.shape))
            state["x"][step.node] = x + xp.asarray(noise, dtype=x.dtype)
        elif kind is ProxOutput:
            n = _sq_norm(xp, [state["x"][p] for p in step.presynaptic]) + step.eps
            scale = step.alpha * n / (1.0 + step.alpha * n)
            e = state["e"][step.node]
            state["e"][step.node] = e * xp.reshape(scale, (batch_size,) + (1,) * (e.ndim - 1))
        elif kind is Normalise:
            pre = [state["x"][p] for p in step.presynaptic]
            norm = xp.mean(_sq_norm(xp, pre)) if pre else 0.0
            d = state.setdefault("d", {})
            if step.param in d:
                d[step.param] = d[step.param] / (step.alpha * (norm + 1.0 + step.eps))
        elif kind is not Note:
            raise TypeError(f"the executor cannot run step {step!r}")
