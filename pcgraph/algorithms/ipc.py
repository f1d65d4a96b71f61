"""Incremental predictive coding (iPC; Salvatori et al. 2024, "A Stable, Fast, and Fully
Automatic Learning Algorithm for Predictive Coding Networks", ICLR): the parameters take a
gradient step at every inference step, together with the values, from the same errors.

Each of the ``steps`` inference steps computes the errors at the current values and
parameters, takes the parameters' gradient of the batch-mean energy from them, moves the value
nodes by ``rate`` and the parameters by ``lr``.  PCX's ``train_on_batch_ipc`` does the same
(one gradient of the energy in values and weights, then both optimisers step), with no
separate learning step at the end.

Inside a ``train_step`` the parameters move in the schedule's own copy; what the schedule
reports as the gradient is the sum of the per-step gradients, so ``SGD(lr)`` (no momentum, no
weight decay) applies exactly the iPC trajectory.  Another optimiser applies that sum as one
update, after the in-loop plain steps of size ``lr`` that shaped it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcgraph.algorithms.base import Algorithm, Option, finite_rate, positive_int, register
from pcgraph.algorithms.pc import dense_sections
from pcgraph.algorithms.predictive import VALUE_NODES, _optional_rate, pc_view
from pcgraph.compile import Compiled
from pcgraph.errors import OptionError
from pcgraph.execute import SCALE_SLOT, Instr, Lowerer, register_lowering
from pcgraph.schedule import Schedule


@dataclass(frozen=True)
class ParamStep:
    """``x[param] -= lr * grad``, with ``grad = d[param]`` (in gradient units, times the run's
    scale); the gradient is added to ``dsum[param]``, what the schedule reports."""

    param: str
    lr: float

    def __str__(self) -> str:
        return f"x[{self.param}] -= {self.lr!r} * d[{self.param}]; dsum[{self.param}] += d"


def _lower_param_step(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    lr = step.lr
    d = lw.read("d", step.param)
    x = lw.update("x", step.param)
    total = lw.update("dsum", step.param)
    lw.drop("d", step.param)

    def run_param_step(slots: list, batch: int) -> None:
        grad = slots[d]
        if grad is None:
            return
        # d holds the gradient times the run's scale (plain SGD folds -lr into it).
        slots[x] = slots[x] - (lr / slots[SCALE_SLOT]) * grad
        prev = slots[total]
        slots[total] = grad if prev is None else prev + grad
        slots[d] = None

    return lw.instr(run_param_step)


register_lowering(ParamStep, _lower_param_step)


def ipc_schedule(c: Compiled, opts: dict) -> Schedule:
    if opts["lr"] is None:
        raise OptionError(
            "algorithm 'ipc' needs lr= (the parameters' step at every inference step; "
            "train_step passes the optimiser's lr)"
        )
    _, st = pc_view(c, value_nodes=opts["value_nodes"])
    lr = float(opts["lr"])
    learn = tuple(ParamStep(p, lr) for p in c.of_kind("param"))
    at = dict.fromkeys((*st.outputs, *st.values, st.loss), 0)
    sections = dense_sections(c, st, opts["steps"], float(opts["rate"]), False, at, learn=learn)
    return Schedule(
        "ipc",
        c.name,
        tuple(opts.items()),
        sections,
        compiled=c,
        grads_from="dsum",
        loss_from="ff",
    )


register(
    Algorithm(
        "ipc",
        "incremental PC: parameters step with the values at every inference step (Salvatori "
        "et al. 2024)",
        ipc_schedule,
        {
            "steps": Option(20, positive_int, "inference steps, each with a parameter step"),
            "rate": Option(0.1, finite_rate, "inference rate gamma"),
            "lr": Option(None, _optional_rate, "the parameters' step size inside the loop"),
            "value_nodes": VALUE_NODES,
        },
    )
)
