"""Predictive coding as an energy model: inference with any nodes clamped (``Program.infer``)
and generative training (the ``generative`` algorithm).

Both run the dense IL dynamics of ``pc.dense_sections`` on the structure a ``Clamping`` gives:
the same local rules (each value node moves by its own error and its children's errors through
the op table's VJPs), with other nodes clamped or freed.  ``generative`` trains a network whose
top is clamped to a label (an input or target fed as usual) or is a *latent* leaf inferred per
example from its prior ``N(0, I)``, and whose bottom is clamped to the data through the loss
(PCX's generative mode; Salvatori et al. 2021, "Associative Memories via Predictive Coding"):
after ``steps`` inference steps, the parameters take the PC increments of the final errors.
"""

from __future__ import annotations

from typing import Any

from pcgraph.algorithms.base import Algorithm, Option, finite_rate, positive_int, register
from pcgraph.algorithms.pc import (
    Clamping,
    clamping_notes,
    dense_sections,
    pc_schedule,
    structure,
)
from pcgraph.algorithms.predictive import VALUE_NODES
from pcgraph.compile import Compiled
from pcgraph.errors import OptionError
from pcgraph.schedule import Schedule, Section


def latent_problem(c: Compiled, name: str, what: str) -> str | None:
    """Why leaf ``name`` cannot be a latent value node (None: it can)."""
    spec = c.nodes[name]
    if spec.kind not in ("input", "target"):
        return f"{what} {name!r} is a {spec.kind}; only inputs and targets can be latent"
    if spec.dtype != "float" or not spec.batched:
        return (
            f"{what} {name!r} holds {spec.dtype} values; a latent leaf must hold float values "
            "per example (feed class labels as one-hot float vectors to infer them)"
        )
    if name not in c.feeds_loss:
        return f"{what} {name!r} does not reach the loss {c.loss!r}: nothing constrains it"
    return None


def inference_schedule(
    c: Compiled, clamping: Clamping, steps: int, rate: float, value_nodes: Any = "all"
) -> Schedule:
    """The schedule of ``Program.infer``: the dense IL dynamics under ``clamping`` for
    ``steps`` steps at ``rate``, the energy of every step appended to the trace ``F``, no
    increments.  The values, errors and trace stay in the run's stores."""
    st = structure(c, value_nodes, clamping)
    sections = dense_sections(c, st, steps, rate, False, {}, energy=True, increments=False)
    options = (
        ("steps", steps),
        ("rate", rate),
        ("observed", clamping.observed),
        ("masked", clamping.masked),
        ("free", clamping.free),
        ("initialised", clamping.initialised),
        ("value_nodes", value_nodes),
    )
    return Schedule("infer", c.name, options, sections, compiled=c, grads_from="d", loss_from="ff")


def _names(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v)
    return None if ok else "must be a list of input or target names"


def generative_schedule(c: Compiled, opts: dict) -> Schedule:
    """IL with the ``latent`` leaves inferred per example (starting at their prior mean 0),
    then the increments of the final errors."""
    for name in opts["latent"]:
        if name not in c.nodes:
            raise OptionError(
                f"algorithm 'generative': latent names {name!r}, no node of the graph"
            )
        why = latent_problem(c, name, "latent")
        if why:
            raise OptionError(f"algorithm 'generative': {why}")
    clamping = Clamping(free=tuple(opts["latent"]))
    st = structure(c, opts["value_nodes"], clamping)
    steps = opts["steps"]
    at = dict.fromkeys((*st.outputs, *st.values, *st.clamped, st.loss), steps)
    sections = dense_sections(c, st, steps, float(opts["rate"]), False, at)
    if not st.latent:  # the forward pass says what is clamped only when it clamps something new
        first = sections[0]
        sections = (Section(first.title, (*clamping_notes(c, st), *first.steps)), *sections[1:])
    return pc_schedule("generative", c, opts, sections, c)


register(
    Algorithm(
        "generative",
        "generative predictive coding: top clamped to a label or inferred as a latent, bottom "
        "to the data",
        generative_schedule,
        {
            "steps": Option(20, positive_int, "inference steps per example"),
            "rate": Option(0.1, finite_rate, "inference rate gamma"),
            "latent": Option(
                (),
                _names,
                "inputs or targets inferred per example (prior N(0, I)) instead of fed",
                normalise=tuple,
            ),
            "value_nodes": VALUE_NODES,
        },
    )
)
