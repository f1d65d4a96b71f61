"""Backpropagation: the reference every predictive-coding algorithm is measured against."""

from __future__ import annotations

from typing import Any

from pcgraph.compile import Compiled, bp_sections
from pcgraph.schedule import Schedule

from . import Algorithm, register


def schedule(c: Compiled, opts: dict) -> Schedule:
    return Schedule("bp", c.name, tuple(opts.items()), bp_sections(c))


def grads(program: Any, params: Any, batch: Any, opts: dict) -> tuple[dict, dict]:
    sched = program.schedule("bp", **opts)
    state, size = program._state(params, batch, [program.loss_node])
    state["g"] = {}
    program.execute(sched, program.compiled, state, size)
    g = state["g"]
    out = {p: g[p] if p in g else program.zeros_like(p) for p in program.params}
    return out, {"state": state, "batch_size": size}


register(Algorithm("bp", "backpropagation (reverse-mode differentiation)", schedule, grads))
