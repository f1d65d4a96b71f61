"""Schedules: the compiler's output, plain frozen data that prints one readable step per line.

A schedule is a list of sections (forward, backward, inference step t, apply), each run once
or repeated as a loop; each step names the stores and nodes it reads and writes.  A schedule
carries the graph it was emitted for and names its result stores, so that ``Program.run`` needs
nothing else to run it; ``execute.py`` lowers it for a backend.  Algorithms may define step
kinds of their own (frozen dataclasses printing one line) and register their lowering with
``execute.register_lowering``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .compile import Compiled


def _attrs(attrs: tuple) -> str:
    return "".join(f", {k}={v!r}" for k, v in attrs)


@dataclass(frozen=True, slots=True)
class Eval:
    """Forward: ``node = op(operands)``; in PC schedules, the prediction ``mu[node]``."""

    node: str
    op: str
    operands: tuple[str, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    into: str = "x"  # "x": value node; "mu": prediction only (PC)

    def __str__(self) -> str:
        return (
            f"{self.into}[{self.node}] = {self.op}({', '.join(self.operands)}{_attrs(self.attrs)})"
        )


@dataclass(frozen=True, slots=True)
class Seed:
    """The loss node's cotangent: ``1/B`` per example for backprop (the batch mean), ``-1`` for
    predictive coding (errors are per example; increments are divided by B at the end).
    ``value`` is a number, or a number over ``B`` ("1/B", "0.5/B"): a seed in gradient units,
    which the run's gradient scale multiplies (``Program.run(..., scale=)``)."""

    node: str
    into: str = "g"
    value: str = "1/B"

    def __str__(self) -> str:
        return f"{self.into}[{self.node}] = {self.value}"


@dataclass(frozen=True, slots=True)
class VJP:
    """``into[operand] += (d op(node) / d operand #argnum)^T src[node]``: one local VJP."""

    node: str
    op: str
    argnum: int
    operand: str
    src: str = "g"
    into: str = "g"
    at: str = "x"  # the store of the operands the op is linearised at
    out: str = ""  # the store of the op's output there ("" = same as ``at``)

    def __str__(self) -> str:
        where = "" if self.at == "x" and self.out in ("", "x") else f" at {self.at}"
        where += f", out {self.out}" if self.out not in ("", self.at) else ""
        return (
            f"{self.into}[{self.operand}] += vjp{self.argnum} {self.op}"
            f"({self.src}[{self.node}]){where}"
        )


@dataclass(frozen=True, slots=True)
class Note:
    """A comment line (e.g. which level a Z-IL step serves); executes nothing."""

    text: str

    def __str__(self) -> str:
        return f"# {self.text}"


Step = Union[Eval, Seed, VJP, Note]


@dataclass(frozen=True, slots=True)
class Section:
    """A named run of steps: "forward", "backward", "inference t=0", "apply".  ``repeat > 1``
    makes it a loop: its steps run ``repeat`` times in a row (IL's inference steps after the
    first are one such section, so a schedule's size does not grow with ``steps``)."""

    title: str
    steps: tuple[Any, ...]
    repeat: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"section {self.title!r}: repeat={self.repeat!r} must be an int >= 1")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A compiled algorithm for one graph: sections of steps, printable and comparable.

    ``compiled`` is the graph the steps name (the program's own, or its identity-levelled
    form); after a run, ``grads_from[p]`` holds parameter ``p``'s gradient (absent: zero) and
    ``loss_from[loss]`` the per-example loss that ``train_step`` reports.
    """

    algorithm: str
    graph: str
    options: tuple[tuple[str, Any], ...]
    sections: tuple[Section, ...]
    compiled: Compiled | None = field(default=None, compare=False, repr=False)
    grads_from: str = "g"
    loss_from: str = "x"

    @property
    def steps(self) -> tuple[Any, ...]:
        """Every step as printed (a loop's steps once)."""
        return tuple(s for sec in self.sections for s in sec.steps)

    def executed(self) -> list[tuple[str, Any]]:
        """(section title, step) of every step the executor runs (notes run nothing), in order;
        a loop's steps once each (``Program.profile`` sums their time over the iterations)."""
        return [
            (sec.title, s) for sec in self.sections for s in sec.steps if not isinstance(s, Note)
        ]

    def section(self, title: str) -> Section:
        for sec in self.sections:
            if sec.title == title:
                return sec
        raise KeyError(title)

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options)
        runs = sum(
            sec.repeat * sum(not isinstance(s, Note) for s in sec.steps) for sec in self.sections
        )
        printed = sum(1 for s in self.steps if not isinstance(s, Note))
        count = f"{printed} steps" + (f", {runs} run" if runs != printed else "")
        lines = [f"schedule {self.algorithm}({opts}) of graph {self.graph!r}: {count}"]
        for sec in self.sections:
            loop = f" (repeat {sec.repeat})" if sec.repeat > 1 else ""
            lines.append(f"{sec.title}{loop}:")
            lines.extend(f"  {step}" for step in sec.steps)
        return "\n".join(lines)


# ---------------------------------------------------------------- predictive-coding steps
@dataclass(frozen=True, slots=True)
class Snapshot:
    """``into = copy of src`` (by reference: arrays are never written in place)."""

    src: str = "x"
    into: str = "ff"

    def __str__(self) -> str:
        return f"{self.into} = {self.src}  (feed-forward values)"


@dataclass(frozen=True, slots=True)
class Clear:
    """Drop the entries of ``nodes`` from ``store`` (sums restart from zero)."""

    store: str
    nodes: tuple[str, ...]

    def __str__(self) -> str:
        return f"clear {self.store}[{', '.join(self.nodes)}]"


@dataclass(frozen=True, slots=True)
class Update:
    """Inference on value node ``node``: ``x += rate * (s - e)``, ``s`` the children's VJP sum."""

    node: str
    rate: float

    def __str__(self) -> str:
        return f"x[{self.node}] += {self.rate!r} * (s[{self.node}] - e[{self.node}])"


@dataclass(frozen=True, slots=True)
class Relax:
    """One rate-1 inference step of a value node whose error is zero (Z-IL's C1 and C3), in
    closed form: ``x = mu + s`` gives ``e = x - mu = s``.  Only the error is stored: no later
    step reads ``x``, which stays implied as ``mu + e`` (materialising it cost a pass over every
    activation, and computing ``(mu + s) - mu`` would cost float32 digits when ``|s| << |mu|``)."""

    node: str

    def __str__(self) -> str:
        return f"e[{self.node}] = s[{self.node}]  (x[{self.node}] = mu + s)"


@dataclass(frozen=True, slots=True)
class GradientUnits:
    """``eg[v] = -e[v] / B`` for ``nodes``: increments taken from ``eg`` are gradients of the
    batch-mean loss directly, and scaling the errors costs less than scaling the parameters.
    The run's gradient scale multiplies the factor too."""

    nodes: tuple[str, ...]

    def __str__(self) -> str:
        return f"eg[{', '.join(self.nodes)}] = -e / B"


@dataclass(frozen=True, slots=True)
class Error:
    """``e[node] = x[node] - mu[node]``; ``mu`` names the store of predictions ("mu" or "ff")."""

    node: str
    mu: str = "mu"

    def __str__(self) -> str:
        return f"e[{self.node}] = x[{self.node}] - {self.mu}[{self.node}]"


@dataclass(frozen=True, slots=True)
class Perturb:
    """``x[node] += N(0, sigma^2)`` from ``seed`` (the Z-IL ablation that drops condition C1)."""

    node: str
    sigma: float
    seed: int

    def __str__(self) -> str:
        return f"x[{self.node}] += N(0, {self.sigma!r}^2)  (seed {self.seed})"


# ---------------------------------------------------------------- inference with any nodes clamped
# ``Program.infer`` and the ``generative`` algorithm: values the caller gives for op nodes
# (stores ``obs`` and ``init``, filled by ``Program.run(..., preset=)``), latent leaves, partly
# observed nodes and the energy trace (``algorithms/generative.py``).
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
