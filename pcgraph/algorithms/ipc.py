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
from pcgraph.execute import SCALE_SLOT, WHOLE_SLOT, Instr, Lowerer, register_lowering
from pcgraph.schedule import Schedule


@dataclass(frozen=True)
class ParamStep:
    """``x[param] -= lr * grad``, with ``grad = d[param]`` (in gradient units, times the run's
    scale); the gradient is added to ``dsum[param]``, what the schedule reports."""

    param: str
    lr: float

    def __str__(self) -> str:
        return f"x[{self.param}] -= {self.lr!r} * d[{self.param}]; dsum[{self.param}] += d"


def _lower_param_steps(lw: Lowerer, steps: list) -> Instr:
    # The parameter steps of one inference step run as one kernel: on one shard of a batch
    # split over processes, their gradients are summed over the shards in one collective.
    pairs = []
    for step in steps:
        d = lw.read("d", step.param)
        pairs.append((step.lr, d, lw.update("x", step.param), lw.update("dsum", step.param)))
        lw.drop("d", step.param)

    def run_param_steps(slots: list, batch: int) -> None:
        held = [p for p in pairs if slots[p[1]] is not None]
        whole = slots[WHOLE_SLOT]
        grads = [slots[d] for _, d, _, _ in held]
        summed = grads if whole is None or not grads else whole.sum(grads)
        for (lr, d, x, total), grad, step_grad in zip(held, grads, summed):
            # d holds the gradient times the run's scale (plain SGD folds -lr into it).
            slots[x] = slots[x] - (lr / slots[SCALE_SLOT]) * step_grad
            prev = slots[total]  # this shard's own part: train_step sums the shards once
            slots[total] = grad if prev is None else prev + grad
            slots[d] = None

    return lw.instr(run_param_steps, len(steps))


register_lowering(ParamStep, _lower_param_steps, group=lambda s: True)


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
        param_step_option="lr",
    )
)
