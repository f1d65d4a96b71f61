"""Error optimisation (ePC; Goemaere, Oliviers, Bogacz, Demeester 2025, "Error Optimization:
Overcoming Exponential Signal Decay in Deep Predictive Coding Networks", arXiv 2505.20137).

Standard PC relaxes the values ``x`` with the errors ``e = x - mu`` derived from them; a change
at the output reaches a value node ``k`` levels up only after ``k`` inference steps, shrunk by
about ``rate**k`` (the signal decays exponentially with depth). ePC takes the errors of the value
nodes as the free variables instead and derives the values from them by one forward pass,
``x_v = f_v(x_parents) + e_v`` in topological order.  The energy is the same function,
``F(e) = sum_v 0.5 ||e_v||^2 + l(mu_O(x(e)))``, so its minima are those of standard PC; but its
gradient in ``e_v``, ``e_v + dl/dx_v``, carries the output error to every value node through
the whole downstream graph at once: ``dl/dx_v`` is one backward pass of the loss over the
reconstructed values.  Each inference step is therefore one forward and one backward pass:

    x = forward(e)                   x_v = mu_v + e_v at value nodes (mu_v = f_v(x_parents))
    g = -dl/dx                       the output errors -dl/dmu_O, backpropagated to every vertex
    e_v += rate * (g_v - e_v)        gradient descent on F in e

and, after the last step, the values are reconstructed once more and the parameters take PC's
local increments ``VJP_theta f_v(e_v)`` at those values, as FabricPC's ``EPCInference`` does
(``fabricpc/core/inference_epc.py``, PyPI 0.6.0 and branch ``dmacd-epc-tw`` at commit 43826b8:
its ``finalize_state`` rebuilds the states and ``compute_local_weight_gradients`` takes each
node's local gradient).  The errors start at zero, i.e. at the feed-forward pass.

The derivation needs the values to be a function of the errors computed by a forward pass: a
feed-forward graph (a DAG), which every pcgraph graph is.  It uses no levelling, so
``levelling``-style options do not exist here; value-node placement (``value_nodes``) works as in
the other PC algorithms.  Its two step kinds are defined and lowered here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcgraph.algorithms.base import Algorithm, Option, finite_rate, positive_int, register
from pcgraph.algorithms.pc import (
    PCStructure,
    _out,
    apply_section,
    forward_section,
    increment_steps,
    output_errors,
    pc_schedule,
)
from pcgraph.algorithms.predictive import VALUE_NODES, pc_view
from pcgraph.compile import Compiled
from pcgraph.execute import Instr, Lowerer, register_lowering
from pcgraph.schedule import VJP, Clear, Error, Eval, Schedule, Section, Snapshot


@dataclass(frozen=True, slots=True)
class Reconstruct:
    """ePC's derived value: ``x[node] = mu[node] + e[node]`` (the prediction plus the free error)."""

    node: str

    def __str__(self) -> str:
        return f"x[{self.node}] = mu[{self.node}] + e[{self.node}]"


@dataclass(frozen=True, slots=True)
class ErrorStep:
    """ePC's inference step on a value node's error: ``e += rate * (g - e)``, where
    ``g = -dl/dx`` is the output error backpropagated to the node (``-dF/de = g - e``)."""

    node: str
    rate: float

    def __str__(self) -> str:
        return f"e[{self.node}] += {self.rate!r} * (g[{self.node}] - e[{self.node}])"


def _lower_reconstruct(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    mu, e = lw.read("mu", step.node), lw.read("e", step.node)
    x = lw.write("x", step.node)

    def run_reconstruct(slots: list, batch: int) -> None:
        slots[x] = slots[mu] + slots[e]

    return lw.instr(run_reconstruct)


def _lower_error_step(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    rate, relax = step.rate, lw.kernels.relax
    g = lw.read("g", step.node)
    e = lw.update("e", step.node)
    lw.drop("g", step.node)

    def run_error_step(slots: list, batch: int) -> None:
        drive, err = slots[g], slots[e]
        # relax(x, s, e, rate) = x + rate * (s - e): here x and e are both the error.
        slots[e] = err * (1.0 - rate) if drive is None else relax(err, drive, err, rate)
        slots[g] = None

    return lw.instr(run_error_step)


register_lowering(Reconstruct, _lower_reconstruct)
register_lowering(ErrorStep, _lower_error_step)


def _moving(c: Compiled, st: PCStructure) -> tuple[list[str], set[str]]:
    """The nodes whose value changes with the errors, in topological order (value nodes,
    folded ops and output vertices downstream of a value node), and that set."""
    moving: set[str] = set(st.values)
    order = []
    for n in c.order:
        if n in st.value_set:
            order.append(n)
        elif n != st.loss and c.nodes[n].op and moving & set(c.nodes[n].operands):
            if n in st.feeds_value or n in st.outputs:
                moving.add(n)
                order.append(n)
    return order, moving


def reconstruct_steps(c: Compiled, st: PCStructure, order: list[str], moving: set[str]) -> list:
    """The forward pass from the errors: ``x_v = f_v(...) + e_v`` at value nodes, the other
    moving nodes recomputed.  A value node whose operands do not move keeps its feed-forward
    prediction (in ``mu`` since the start)."""
    steps: list = []
    for n in order:
        spec = c.nodes[n]
        if n in st.value_set:
            if moving & set(spec.operands):
                steps.append(Eval(n, spec.op, spec.operands, into="mu"))
            steps.append(Reconstruct(n))
        else:
            steps.append(Eval(n, spec.op, spec.operands))
    return steps


def backward_steps(c: Compiled, st: PCStructure, moving: set[str]) -> list:
    """``g[v] = -dl/dx_v`` for every moving node: the output errors (``e`` of the output
    vertices, ``-dl/dmu_O``) pushed back through every op between them and the value nodes, value
    nodes included (``x_v`` depends on its parents through ``f_v``), at the current values."""
    carriers = [n for n in c.order if n in moving and n not in st.outputs]
    steps: list = [Clear("g", tuple(carriers))]
    outputs = set(st.outputs)
    for n in reversed(c.order):
        if n not in moving:
            continue
        spec = c.nodes[n]
        src = "e" if n in outputs else "g"
        steps += [
            VJP(n, spec.op, pos, o, src=src, into="g", at="x", out=_out(st, n, "x"))
            for pos, o in enumerate(spec.operands)
            if o in moving and o not in outputs
        ]
    return steps


def epc_sections(c: Compiled, st: PCStructure, steps: int, rate: float) -> tuple[Section, ...]:
    """The ePC schedule: forward pass (errors zero), ``steps`` inference steps on the errors,
    then the values reconstructed and the local increments taken."""
    order, moving = _moving(c, st)
    start = [Snapshot("ff", "mu")] + [Error(v, "ff") for v in st.values]  # e = x - ff = 0
    sections = [forward_section(c, st=st), Section("errors start at zero", tuple(start))]
    vertices = [*st.outputs, *st.values, st.loss]
    rebuild = reconstruct_steps(c, st, order, moving)

    def body(first: bool) -> tuple:
        # With every error zero, the values are the feed-forward ones: nothing to rebuild.
        out = [] if first else list(rebuild)
        out += output_errors(st, c, "x")
        out += backward_steps(c, st, moving)
        out += [ErrorStep(v, rate) for v in st.values]
        return tuple(out)

    sections.append(Section("inference t=0", body(True)))
    if steps > 1:
        title = "inference t=1" + (f"..{steps - 1}" if steps > 2 else "")
        sections.append(Section(title, body(False), repeat=steps - 1))
    final = rebuild + output_errors(st, c, "x") + increment_steps(st, c, vertices, "x", "eg")
    sections.append(Section("final values and increments", tuple(final)))
    sections.append(apply_section(st, c))
    return tuple(sections)


def epc_schedule(c: Compiled, opts: dict) -> Schedule:
    _, st = pc_view(c, value_nodes=opts["value_nodes"])
    sections = epc_sections(c, st, opts["steps"], float(opts["rate"]))
    return pc_schedule("epc", c, opts, sections, c)


register(
    Algorithm(
        "epc",
        "error optimisation: inference on the errors, values derived by a forward pass "
        "(Goemaere et al. 2025)",
        epc_schedule,
        {
            "steps": Option(20, positive_int, "inference steps on the errors"),
            "rate": Option(0.1, finite_rate, "inference rate on the errors"),
            "value_nodes": VALUE_NODES,
        },
    )
)
