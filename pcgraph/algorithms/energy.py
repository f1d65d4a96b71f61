"""Step kinds of inference with arbitrary clamping (``Program.infer``, the ``generative``
algorithm) and their lowerings.

The dense predictive-coding schedules of ``pc.py`` clamp the graph's inputs and targets and the
loss's operands.  Inference with any node clamped or freed needs five more things: values the
caller gives for op nodes (``Assign`` from the stores ``obs`` and ``init``, which
``Program.run(..., preset=)`` fills), a latent leaf's start at its prior mean (``Zero``), a
latent leaf's error against its prior (``PriorError``), an update that moves only the free
entries of a partly observed node (``MaskedUpdate``) and the energy of each step (``Energy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcgraph.execute import Instr, Lowerer, register_lowering

ENERGY_STORE = "F"  # the energy trace lives in slot (F, loss node): a list, one entry per step


@dataclass(frozen=True, slots=True)
class Assign:
    """``x[node] = src[node]``, a value the caller gives (``obs``: clamped, ``init``: a starting
    value); with ``masked``, only the observed entries: ``x = x * free + obs``, where
    ``free[node]`` is 1 at the free entries and ``obs[node]`` is 0 there."""

    node: str
    src: str
    masked: bool = False

    def __str__(self) -> str:
        n = self.node
        if self.masked:
            return f"x[{n}] = x[{n}] * free[{n}] + {self.src}[{n}]  (observed entries clamped)"
        what = "clamped" if self.src == "obs" else "initial value"
        return f"x[{n}] = {self.src}[{n}]  ({what})"


@dataclass(frozen=True, slots=True)
class Zero:
    """``x[node] = 0`` for every example: a latent leaf starts at its prior mean."""

    node: str

    def __str__(self) -> str:
        return f"x[{self.node}] = 0  (latent: the prior mean)"


@dataclass(frozen=True, slots=True)
class PriorError:
    """``e[node] = x[node]``: the error of a latent leaf, which has no parents, against its
    prior ``N(0, I)`` (energy ``0.5 * ||x||^2``)."""

    node: str

    def __str__(self) -> str:
        return f"e[{self.node}] = x[{self.node}]  (prior N(0, I))"


@dataclass(frozen=True, slots=True)
class MaskedUpdate:
    """Inference on the free entries of a partly observed node:
    ``x += rate * (s - e) * free``."""

    node: str
    rate: float

    def __str__(self) -> str:
        n = self.node
        return f"x[{n}] += {self.rate!r} * (s[{n}] - e[{n}]) * free[{n}]"


@dataclass(frozen=True, slots=True)
class Energy:
    """Append this step's energy per example to the trace ``F``:
    ``sum_v 0.5 * ||e[v]||^2`` over ``nodes``, plus the loss ``x[loss]`` when ``with_loss``
    (the loss of the output predictions, whose errors ``-dl/dmu`` the loss clamps)."""

    nodes: tuple[str, ...]
    loss: str
    with_loss: bool

    def __str__(self) -> str:
        loss = f" + x[{self.loss}]" if self.with_loss else ""
        return f"{ENERGY_STORE} += [0.5 * |e[{', '.join(self.nodes)}]|^2{loss}]  (energy)"


# ------------------------------------------------------------------ lowerings
def _lower_assign(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    src = lw.read(step.src, step.node)
    if not step.masked:
        x = lw.write("x", step.node)

        def run_assign(slots: list, batch: int) -> None:
            slots[x] = slots[src]

        return lw.instr(run_assign)
    free = lw.read("free", step.node)
    x = lw.update("x", step.node)

    def run_assign_masked(slots: list, batch: int) -> None:
        slots[x] = slots[x] * slots[free] + slots[src]

    return lw.instr(run_assign_masked)


def _lower_zero(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp, dtype, shape = lw.xp, lw.dtype, lw.compiled.nodes[step.node].shape
    x = lw.write("x", step.node)

    def run_zero(slots: list, batch: int) -> None:
        slots[x] = xp.zeros((batch, *shape), dtype=dtype)

    return lw.instr(run_zero)


def _lower_prior_error(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    x = lw.read("x", step.node)
    e = lw.write("e", step.node)

    def run_prior_error(slots: list, batch: int) -> None:
        slots[e] = slots[x]  # arrays are never written in place: sharing is safe

    return lw.instr(run_prior_error)


def _lower_masked_update(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    rate = step.rate
    s, e, free = lw.read("s", step.node), lw.read("e", step.node), lw.read("free", step.node)
    x = lw.update("x", step.node)
    lw.drop("s", step.node)

    def run_masked_update(slots: list, batch: int) -> None:
        drive, err = slots[s], slots[e]
        if drive is None and err is None:
            return
        step_ = -err if drive is None else drive if err is None else drive - err
        slots[x] = slots[x] + rate * (step_ * slots[free])
        slots[s] = None

    return lw.instr(run_masked_update)


def _lower_energy(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp = lw.xp
    errors = [lw.read("e", n) for n in step.nodes]
    loss = lw.read("x", step.loss) if step.with_loss else None
    trace = lw.update(ENERGY_STORE, step.loss)

    def run_energy(slots: list, batch: int) -> None:
        total = slots[loss] if loss is not None else 0.0
        for i in errors:
            e = xp.reshape(slots[i], (batch, -1))
            total = total + 0.5 * xp.sum(e * e, axis=1)
        if slots[trace] is None:
            slots[trace] = []
        slots[trace].append(total)

    return lw.instr(run_energy)


register_lowering(Assign, _lower_assign)
register_lowering(Zero, _lower_zero)
register_lowering(PriorError, _lower_prior_error)
register_lowering(MaskedUpdate, _lower_masked_update)
register_lowering(Energy, _lower_energy)
