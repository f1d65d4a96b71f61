"""IL-prox (Alonso et al. 2022): inference learning that approximates implicit SGD.

It runs IL's dense dynamics with two step kinds of its own, defined and lowered here (the core
executor knows nothing of them): the proximal output error and the normalised weight step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcgraph.algorithms.base import Algorithm, Option, choice, finite_rate, positive_int, register
from pcgraph.algorithms.pc import PCStructure
from pcgraph.algorithms.predictive import VALUE_NODES, _optional_rate, dense_schedule
from pcgraph.compile import Compiled
from pcgraph.errors import OptionError
from pcgraph.execute import WHOLE_SLOT, Instr, Lowerer, register_lowering
from pcgraph.ops import OPS
from pcgraph.schedule import Schedule


@dataclass(frozen=True)
class ProxOutput:
    """IL-prox's proximal output error (Alonso et al. 2022: the closed-form target of the
    proximal step, with ``k = alpha * n``, ``n`` the squared norm of the presynaptic activity).

    ``norm="per-example"``: ``e[node] *= k/(1 + k)``, ``n = ||x[pre]||^2 + eps`` per example.
    ``norm="iltheory"``: as nalonso2/ILTheory's ``ProxPC`` computes it (proxPC.py at
    abd46127): the output target mixes the *previous* step's softmax with the label, so the
    error is ``e_t - e_{t-1} / (1 + k)`` (``e`` the plain output error; ``e_{-1} = e_0``), with
    ``n`` the batch mean of ``||x[pre]||^2`` plus eps at the first step and the batch *sum* plus
    1 plus eps at the later ones (one number for the batch)."""

    node: str
    presynaptic: tuple[str, ...]
    alpha: float
    eps: float
    norm: str = "per-example"
    first: bool = False

    def __str__(self) -> str:
        pre = ", ".join(self.presynaptic)
        if self.norm == "iltheory":
            n = (
                f"mean_b ||{pre}||^2 + {self.eps!r}"
                if self.first
                else (f"sum_b ||{pre}||^2 + 1 + {self.eps!r}")
            )
            change = (
                f"e[{self.node}] *= k/(1 + k)"
                if self.first
                else (f"e[{self.node}] -= e_prev[{self.node}] / (1 + k)")
            )
            return f"{change}, k = {self.alpha!r} * ({n})  (ILTheory's target)"
        return (
            f"e[{self.node}] *= a*n/(1 + a*n), n = ||{pre}||^2 + {self.eps!r}, a = {self.alpha!r}"
        )


@dataclass(frozen=True)
class Normalise:
    """IL-prox's weight step ``e a^T / (mean_b ||a||^2 + 1 + eps)`` (``a`` the presynaptic
    activity), reported as a gradient for ``SGD(lr=alpha)``: ``d[param] /= alpha * (...)``."""

    param: str
    presynaptic: tuple[str, ...]
    alpha: float
    eps: float

    def __str__(self) -> str:
        pre = ", ".join(self.presynaptic) or "-"
        return f"d[{self.param}] /= {self.alpha!r} * (mean ||{pre}||^2 + 1 + {self.eps!r})"


def _sq_norm(xp: Any, arrays: list) -> Any:
    """Per-example squared norm summed over ``arrays`` (each batched): shape (B,)."""
    total = 0.0
    for a in arrays:
        total = total + xp.sum(xp.reshape(a * a, (a.shape[0], -1)), axis=1)
    return total


def _lower_prox(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp, alpha, eps = lw.xp, step.alpha, step.eps
    pre = [lw.read("x", p) for p in step.presynaptic]
    e = lw.update("e", step.node)
    if step.norm == "iltheory":
        prev = lw.update("e_prev", step.node)
        first = step.first

        def run_prox_iltheory(slots: list, batch: int) -> None:
            sq = _sq_norm(xp, [slots[p] for p in pre]) if pre else xp.zeros((batch,))
            whole = slots[WHOLE_SLOT]
            if whole is None:
                k = alpha * (xp.mean(sq) + eps if first else xp.sum(sq) + 1.0 + eps)
            else:  # one shard of the batch: the batch's mean or sum over every shard
                (total,) = whole.sum([xp.sum(sq)])
                k = alpha * (total / whole.size + eps if first else total + 1.0 + eps)
            err = slots[e]
            slots[e] = err * (k / (1.0 + k)) if first else err - slots[prev] / (1.0 + k)
            slots[prev] = err

        return lw.instr(run_prox_iltheory)

    def run_prox(slots: list, batch: int) -> None:
        n = _sq_norm(xp, [slots[p] for p in pre]) + eps
        scale = alpha * n / (1.0 + alpha * n)
        err = slots[e]
        if pre:  # a per-example scale, else one number (no presynaptic activity: n = eps)
            scale = xp.reshape(scale, (batch,) + (1,) * (err.ndim - 1))
        slots[e] = err * scale

    return lw.instr(run_prox)


def _lower_normalise(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp, alpha, eps = lw.xp, step.alpha, step.eps
    pre = [lw.read("x", p) for p in step.presynaptic]
    d = lw.update("d", step.param)

    def run_normalise(slots: list, batch: int) -> None:
        arrays = [slots[p] for p in pre]
        whole = slots[WHOLE_SLOT]
        if not arrays:
            norm = 0.0
        elif whole is None:
            norm = xp.mean(_sq_norm(xp, arrays))
        else:  # one shard of the batch: the mean over every shard
            (total,) = whole.sum([xp.sum(_sq_norm(xp, arrays))])
            norm = total / whole.size
        if slots[d] is not None:
            slots[d] = slots[d] / (alpha * (norm + 1.0 + eps))

    return lw.instr(run_normalise)


register_lowering(ProxOutput, _lower_prox)
register_lowering(Normalise, _lower_normalise)


def presynaptic(c: Compiled, node: str | None) -> tuple[str, ...]:
    """The presynaptic activity of a layer: the batched operands of ``node``'s op that
    ``OpDef.presynaptic`` names (a matmul's, a linear's input), or, when the op adds a bias
    (``OpDef.adds_bias``), those of the batched affine operand it adds to.  Empty otherwise."""
    if node is None:
        return ()
    spec = c.nodes[node]
    op = OPS[spec.op] if spec.op is not None else None
    if op is None:
        return ()
    if op.presynaptic:
        return tuple(spec.operands[i] for i in op.presynaptic if c.nodes[spec.operands[i]].batched)
    if op.adds_bias:
        for o in spec.operands:
            inner = c.nodes[o]
            if inner.op is not None and OPS[inner.op].presynaptic and inner.batched:
                return presynaptic(c, o)
    return ()


def consumer(c: Compiled, param: str) -> str | None:
    """The first op node (in topological order) that uses ``param`` directly."""
    return next((n for n in c.order if param in c.nodes[n].operands), None)


def ilprox_schedule(c: Compiled, opts: dict) -> Schedule:
    if opts["alpha"] is None:
        raise OptionError(
            "algorithm 'il-prox' needs alpha= (the learning rate of the proximal "
            "step; train_step passes the optimiser's lr)"
        )
    alpha, eps = float(opts["alpha"]), opts["eps"]

    norm = opts["output_norm"]

    def outputs(st: PCStructure) -> Any:
        return lambda first: tuple(
            ProxOutput(o, presynaptic(c, o), alpha, eps, norm, first) for o in st.outputs
        )

    from pcgraph.algorithms.pc import structure

    st = structure(c, opts["value_nodes"])
    final = tuple(
        Normalise(p, presynaptic(c, consumer(c, p)), alpha, eps) for p in c.of_kind("param")
    )
    return dense_schedule(
        "il-prox", c, opts, fixed=False, output_extra=outputs(st), final_extra=final
    )[0]


register(
    Algorithm(
        "il-prox",
        "IL approximating implicit SGD (Alonso et al. 2022)",
        ilprox_schedule,
        {
            "steps": Option(25, positive_int, "inference steps"),
            "rate": Option(0.015, finite_rate, "inference rate"),
            "alpha": Option(None, _optional_rate, "learning rate of the proximal step"),
            "eps": Option(1e-8, finite_rate, "stabiliser of the presynaptic norms"),
            "value_nodes": VALUE_NODES,
            "output_norm": Option(
                "per-example",
                choice("per-example", "iltheory"),
                "the proximal output target's norm: per example, or as ILTheory's ProxPC",
            ),
        },
        param_step_option="alpha",
    )
)
