"""Backpropagation: the reference every predictive-coding algorithm is measured against."""

from __future__ import annotations

from pcgraph.algorithms.base import Algorithm, register
from pcgraph.compile import Compiled, bp_sections
from pcgraph.schedule import Schedule


def schedule(c: Compiled, opts: dict) -> Schedule:
    return Schedule(
        "bp", c.name, tuple(opts.items()), bp_sections(c), compiled=c, grads_from="g", loss_from="x"
    )


register(Algorithm("bp", "backpropagation (reverse-mode differentiation)", schedule))
