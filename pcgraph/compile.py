"""The compiler: validate a graph, order its nodes, and emit schedules.  It knows no array library.

``analyse(graph)`` freezes a ``Graph`` into a ``Compiled`` record (nodes in deterministic
topological order, each with its canonical and lowered attributes); the emitters below turn that
record into the plain-data schedules of ``schedule.py``.
"""

from __future__ import annotations

import functools
import gc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import GraphError
from .graph import LEAF_KINDS, Graph
from .ops import OPS
from .schedule import VJP, Eval, Section, Seed

F = TypeVar("F", bound=Callable[..., Any])


def without_cycle_collection(build: F) -> F:
    """``build`` with Python's cyclic garbage collector paused while it runs.

    Compiling and lowering a large graph allocate millions of small records without cycles;
    each time the young generations fill up, the collector would also rescan the records
    already made, which cost a third of a 100,000-node compile.  Reference counting still frees
    everything as usual; the collector resumes (if it ran before) when ``build`` returns."""

    @functools.wraps(build)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return build(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


class UnusedParameterWarning(UserWarning):
    """A parameter from which the loss cannot be reached: it never gets a gradient."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node as the compiler froze it."""

    name: str
    kind: str
    op: str | None
    operands: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    batched: bool
    attrs: dict
    lowered: dict
    init: Any = None
    value: Any = None
    layer: bool = False  # marked with ``pc.layer``: a value node under value_nodes="layers"
    lr_scale: float = 1.0  # a param's factor on the optimiser's learning rate


@dataclass(frozen=True)
class Compiled:
    """A validated graph: nodes in topological order, the loss, and the derived relations."""

    name: str
    nodes: dict[str, NodeSpec]  # topological order
    loss: str
    children: dict[str, tuple[tuple[str, int], ...]]  # node -> ((child, argnum), ...)
    label_classes: dict[str, int]  # integer leaf -> number of classes it indexes
    # What emitters derive from the graph and several schedules share (e.g. the PC structure
    # under one placement), worked out once: plain data keyed by the emitter's own key.
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def order(self) -> list[str]:
        return list(self.nodes)

    @functools.cached_property
    def live(self) -> frozenset[str]:
        """Nodes on a path from a parameter to the loss (they carry a cotangent); worked out
        once per compiled graph, O(nodes + edges)."""
        return frozenset(self.descendants(self.of_kind("param")) & self.feeds_loss)

    @functools.cached_property
    def feeds_loss(self) -> frozenset[str]:
        """The loss and every node it depends on, once per compiled graph."""
        return frozenset(self.ancestors([self.loss]))

    def of_kind(self, kind: str) -> list[str]:
        return [n for n, s in self.nodes.items() if s.kind == kind]

    def ancestors(self, targets: list[str]) -> set[str]:
        """``targets`` and every node they depend on."""
        seen, stack = set(), list(targets)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.nodes[n].operands)
        return seen

    def descendants(self, sources: list[str]) -> set[str]:
        """``sources`` and every node that depends on them."""
        seen, stack = set(), list(sources)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(c for c, _ in self.children[n])
        return seen


@without_cycle_collection
def analyse(graph: Graph) -> Compiled:
    """Validate ``graph`` and freeze it; raises ``GraphError``/``ShapeError`` naming the fault."""
    if not isinstance(graph, Graph):
        raise GraphError(f"compile() needs a pcgraph.Graph, got {type(graph).__name__}")
    checked = graph.checked()  # every node and edge (acyclic too), after any edit of g.nx
    G = graph.nx
    loss = G.graph.get("loss")
    if loss is None:
        raise GraphError(f"graph {graph.name!r} has no loss: call g.set_loss(node)")

    nodes: dict[str, NodeSpec] = {}
    for name in checked:  # topological order
        data = G.nodes[name]
        kind = data.get("kind")
        operands, info = checked[name]
        if kind in LEAF_KINDS:
            nodes[name] = NodeSpec(
                name,
                kind,
                None,
                (),
                tuple(data["shape"]),
                data["dtype"],
                data["batched"],
                {},
                {},
                data.get("init"),
                data.get("value"),
                lr_scale=data.get("lr_scale", 1.0),
            )
            continue
        op = data["op"]  # Graph.check validated kind and op
        assert info is not None
        lead = 1 if info["batched"] else 0
        nodes[name] = NodeSpec(
            name,
            "op",
            op,
            operands,
            info["shape"],
            info["dtype"],
            info["batched"],
            info["attrs"],
            OPS[op].lowered(info["attrs"], lead),
            layer=data.get("layer", False),
        )

    spec = nodes[loss]
    if spec.shape != () or not spec.batched:
        raise GraphError(
            f"the loss node {loss!r} must be a batched scalar per example, got "
            f"shape {spec.shape}{'' if spec.batched else ' without a batch axis'}"
        )
    children: dict[str, list] = {n: [] for n in nodes}
    for n, s in nodes.items():
        for pos, o in enumerate(s.operands):
            children[o].append((n, pos))
    compiled = Compiled(
        graph.name, nodes, loss, {n: tuple(c) for n, c in children.items()}, _label_classes(nodes)
    )
    feeding = compiled.ancestors([loss])
    unused = [p for p in compiled.of_kind("param") if p not in feeding]
    if unused:
        warnings.warn(
            f"graph {graph.name!r}: parameter(s) {', '.join(unused)} do not reach the loss "
            f"{loss!r} and will get zero gradients",
            UnusedParameterWarning,
            stacklevel=3,
        )
    return compiled


def _label_classes(nodes: dict[str, NodeSpec]) -> dict[str, int]:
    """Integer leaves that reach an op's class-index operand (``OpDef.class_indices``: a
    cross-entropy's labels, an embedding's ids), with the class (vocabulary) count they index,
    so feeds are range-checked before any array rule runs."""
    found: dict[str, int] = {}
    for spec in nodes.values():
        where = OPS[spec.op].class_indices if spec.op is not None else None
        if where is None or nodes[spec.operands[where.operand]].dtype != "int64":
            continue
        ids = spec.operands[where.operand]
        classes = nodes[spec.operands[where.sized_by]].shape[where.axis]
        for leaf in _leaves_of(nodes, ids):
            found[leaf] = min(found.get(leaf, classes), classes)
    return found


def _leaves_of(nodes: dict[str, NodeSpec], name: str) -> set[str]:
    seen, stack = set(), [name]
    while stack:
        n = nodes[stack.pop()]
        if n.op is None:
            seen.add(n.name)
        stack.extend(n.operands)
    return seen


# ------------------------------------------------------------------ emitters
def forward_steps(c: Compiled, targets: list[str]) -> tuple[Eval, ...]:
    """Evaluate every op node that ``targets`` depend on, in topological order."""
    need = c.feeds_loss if list(targets) == [c.loss] else c.ancestors(targets)
    return tuple(
        Eval(n, s.op, s.operands, tuple(s.attrs.items()))
        for n, s in c.nodes.items()
        if s.op is not None and n in need
    )


def grad_nodes(c: Compiled) -> set[str]:
    """Nodes that carry a cotangent in backprop: on a path from a parameter to the loss."""
    return set(c.live)


def backward_steps(c: Compiled, seed: str = "g") -> tuple:
    """Reverse-mode sweep: seed the loss, then one VJP per (node, operand) on a parameter path."""
    live = grad_nodes(c)
    steps: list = [Seed(c.loss, into=seed)]
    for n in reversed(c.order):
        s = c.nodes[n]
        if s.op is None or n not in live:
            continue
        for pos, o in enumerate(s.operands):
            if o in live:
                steps.append(VJP(n, s.op, pos, o, src=seed, into=seed))
    return tuple(steps)


def bp_sections(c: Compiled) -> tuple[Section, ...]:
    return (Section("forward", forward_steps(c, [c.loss])), Section("backward", backward_steps(c)))
