"""Schedules: the compiler's output, plain frozen data that prints one readable step per line.

A schedule is a list of sections (forward, backward, inference step t, apply); each step names
the nodes it reads and writes.  The executor in ``execute.py`` runs any schedule on any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


def _attrs(attrs: tuple) -> str:
    return "".join(f", {k}={v!r}" for k, v in attrs)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Seed:
    """The cotangent (BP) or error (PC) of the loss node: ``1/B`` per example, batch mean."""

    node: str
    into: str = "g"

    def __str__(self) -> str:
        return f"{self.into}[{self.node}] = 1/B"


@dataclass(frozen=True)
class VJP:
    """``into[operand] += (d op(node) / d operand #argnum)^T src[node]``: one local VJP."""

    node: str
    op: str
    argnum: int
    operand: str
    src: str = "g"
    into: str = "g"
    at: str = "x"  # the store holding the operands and output the op is linearised at

    def __str__(self) -> str:
        where = "" if self.at == "x" else f" at {self.at}"
        return (
            f"{self.into}[{self.operand}] += vjp{self.argnum} {self.op}"
            f"({self.src}[{self.node}]){where}"
        )


@dataclass(frozen=True)
class Note:
    """A comment line (e.g. which level a Z-IL step serves); executes nothing."""

    text: str

    def __str__(self) -> str:
        return f"# {self.text}"


Step = Union[Eval, Seed, VJP, Note]


@dataclass(frozen=True)
class Section:
    """A named run of steps: "forward", "backward", "inference t=0", "apply"."""

    title: str
    steps: tuple[Any, ...]


@dataclass(frozen=True)
class Schedule:
    """A compiled algorithm for one graph: sections of steps, printable and comparable."""

    algorithm: str
    graph: str
    options: tuple[tuple[str, Any], ...]
    sections: tuple[Section, ...]

    @property
    def steps(self) -> tuple[Any, ...]:
        return tuple(s for sec in self.sections for s in sec.steps)

    def section(self, title: str) -> Section:
        for sec in self.sections:
            if sec.title == title:
                return sec
        raise KeyError(title)

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options)
        lines = [
            f"schedule {self.algorithm}({opts}) of graph {self.graph!r}: "
            f"{sum(1 for s in self.steps if not isinstance(s, Note))} steps"
        ]
        for sec in self.sections:
            lines.append(f"{sec.title}:")
            lines.extend(f"  {step}" for step in sec.steps)
        return "\n".join(lines)
