"""Predictive coding on any graph: the structure (value nodes, levels) and the schedule emitters.

See ``spec/predictive-coding.md`` for the model.  In short: every batched op node on a path from a
parameter to the loss is a vertex; the loss node's operands are the clamped *output vertices*
(their error is ``-dl/dmu``), every other vertex is a free *value node* with error
``e = x - mu``.  Unbatched op nodes on such paths (e.g. ``transpose(W)``) are *parameter
expressions*: their increments are carried back to the parameters by the chain rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcgraph.compile import Compiled, NodeSpec, forward_steps, grad_nodes
from pcgraph.errors import GraphError
from pcgraph.schedule import (
    VJP,
    Clear,
    Error,
    Eval,
    GradientUnits,
    Note,
    Perturb,
    Relax,
    Schedule,
    Section,
    Seed,
    Snapshot,
    Update,
)


@dataclass(frozen=True)
class PCStructure:
    """The predictive-coding view of a compiled graph."""

    loss: str
    outputs: tuple[str, ...]  # clamped output vertices, level 0
    values: tuple[str, ...]  # free value nodes, topological order
    level: dict[str, int]  # longest path to an output vertex
    depth: int  # the largest level
    children: dict[str, tuple[tuple[str, int], ...]]  # value node -> (child vertex, argnum)
    increments: dict[str, tuple[tuple[str, int], ...]]  # vertex or loss -> (param/pexpr, argnum)
    pexprs: tuple[str, ...]  # unbatched op nodes between parameters and vertices


def structure(c: Compiled) -> PCStructure:
    """Find the output vertices, value nodes, levels and increment sources of ``c``."""
    live = grad_nodes(c)
    loss = c.loss
    vertex = {n for n in live if n != loss and c.nodes[n].op and c.nodes[n].batched}
    pexprs = tuple(n for n in c.order if n in live and c.nodes[n].op and not c.nodes[n].batched)
    outputs = tuple(o for o in dict.fromkeys(c.nodes[loss].operands) if o in vertex)
    for o in outputs:
        others = sorted({ch for ch, _ in c.children[o] if ch in live and ch != loss})
        if others:
            raise GraphError(
                f"predictive coding clamps the loss's operand {o!r}, but it also feeds "
                f"{', '.join(map(repr, others))}; give the loss its own copy, e.g. "
                f"pc.identity({o}) as the loss operand"
            )
    values = tuple(n for n in c.order if n in vertex and n not in outputs)
    children = {v: tuple((ch, pos) for ch, pos in c.children[v] if ch in vertex) for v in values}
    level = dict.fromkeys(outputs, 0)
    for v in reversed(values):
        level[v] = 1 + max(level[ch] for ch, _ in children[v])
    sources = set(c.of_kind("param")) | set(pexprs)
    increments = {
        n: tuple((o, pos) for pos, o in enumerate(c.nodes[n].operands) if o in sources)
        for n in (*outputs, *values, loss)
    }
    return PCStructure(
        loss,
        outputs,
        values,
        level,
        max(level.values(), default=0),
        children,
        {n: inc for n, inc in increments.items() if inc},
        pexprs,
    )


def identity_levelled(c: Compiled, st: PCStructure) -> Compiled:
    """The paper's levelling: identity relays on every vertex edge spanning more than one level,
    so that every edge between vertices spans exactly one (Salvatori et al. 2022)."""
    relays: dict[str, list[NodeSpec]] = {}
    rewired: dict[str, list[str]] = {n: list(s.operands) for n, s in c.nodes.items()}
    for u in st.values:
        for ch, pos in st.children[u]:
            gap = st.level[u] - st.level[ch]
            src = u
            for k in range(gap - 1, 0, -1):
                name = f"{u}>{ch}.{pos}#{k}"
                s = c.nodes[u]
                relays.setdefault(u, []).append(
                    NodeSpec(name, "op", "identity", (src,), s.shape, s.dtype, True, {}, {})
                )
                src = name
            rewired[ch][pos] = src
    if not relays:
        return c
    nodes: dict[str, NodeSpec] = {}
    for n, s in c.nodes.items():
        nodes[n] = NodeSpec(**{**s.__dict__, "operands": tuple(rewired[n])})
        for r in relays.get(n, []):
            nodes[r.name] = r
    children: dict[str, list] = {n: [] for n in nodes}
    for n, s in nodes.items():
        for pos, o in enumerate(s.operands):
            children[o].append((n, pos))
    return Compiled(
        c.name, nodes, c.loss, {n: tuple(v) for n, v in children.items()}, c.label_classes
    )


# ------------------------------------------------------------------ emitters
def forward_section(
    c: Compiled, noise: float = 0.0, seed: int = 0, st: PCStructure | None = None
) -> Section:
    steps: list = [*forward_steps(c, [c.loss]), Snapshot("x", "ff")]
    if noise and st is not None:
        steps += [Perturb(v, noise, seed + i) for i, v in enumerate(st.values)]
    return Section("forward", tuple(steps))


def output_errors(st: PCStructure, c: Compiled, at: str, seed: str = "-1") -> list:
    """``e[o] = -dl/dmu_o`` for the output vertices, through the loss op's local VJP."""
    op = c.nodes[st.loss].op
    steps: list = [Clear("e", st.outputs), Seed(st.loss, into="e", value=seed)]
    for pos, o in enumerate(c.nodes[st.loss].operands):
        if o in st.outputs:
            steps.append(VJP(st.loss, op, pos, o, src="e", into="e", at=at))
    return steps


def _out(st: PCStructure, node: str, at: str) -> str:
    """Where the op output of ``node`` lives: predictions of value nodes are in ``mu``."""
    return "mu" if at == "x" and node in st.values else at


def increment_steps(
    st: PCStructure, c: Compiled, nodes: list[str], at: str, src: str = "e"
) -> list:
    """Local parameter increments ``d[p] += vjp_p f_v(src[v])`` of the vertices in ``nodes``;
    with ``src="eg"`` the errors are first put in gradient units (see ``GradientUnits``)."""
    owners = [v for v in nodes if st.increments.get(v)]
    steps: list = [GradientUnits(tuple(owners))] if src == "eg" and owners else []
    return steps + [
        VJP(v, c.nodes[v].op, pos, p, src=src, into="d", at=at, out=_out(st, v, at))
        for v in owners
        for p, pos in st.increments[v]
    ]


def drive_steps(st: PCStructure, c: Compiled, nodes: list[str], at: str) -> list:
    """``s[u] += vjp_u f_c(e[c])`` over the children ``c`` of each value node ``u`` in ``nodes``."""
    return [
        VJP(ch, c.nodes[ch].op, pos, u, src="e", into="s", at=at, out=_out(st, ch, at))
        for u in nodes
        for ch, pos in st.children[u]
    ]


def apply_section(st: PCStructure, c: Compiled) -> Section:
    """Carry increments of parameter expressions back to parameters.  Increments are taken in
    gradient units (errors scaled by ``-1/B``), so ``grad[p] = d[p]``."""
    steps: list = []
    sources = set(c.of_kind("param")) | set(st.pexprs)
    for u in reversed(st.pexprs):
        spec = c.nodes[u]
        steps += [
            VJP(u, spec.op, pos, o, src="d", into="d")
            for pos, o in enumerate(spec.operands)
            if o in sources
        ]
    steps.append(Note("apply: grad[p] = d[p]"))
    return Section("apply", tuple(steps))


def wavefront_sections(c: Compiled, st: PCStructure) -> tuple[Section, ...]:
    """Z-IL as a wavefront: at step t, the level-t vertices' increments and their errors'
    contributions to their parents, then the level-(t+1) value nodes take one rate-1 inference
    step from their (frozen) children's errors, all of which are in by then (a child's level is
    below its parents').  Linearisation points are the feed-forward values, which is what the
    literal dynamics see on a levelled graph.

    Under Z-IL's conditions every error is linear in the output error, so the wavefront carries
    errors in gradient units, ``e = -eps / B`` (seed ``+1/B`` instead of ``-1``): the increments
    are then the gradients themselves and no rescaling pass over the parameters is needed.
    """
    sections = [forward_section(c)]
    by_level: dict[int, list[str]] = {}  # bucketed once: no scan of every vertex per level
    for v in (*st.outputs, *st.values):
        by_level.setdefault(st.level[v], []).append(v)
    # Each vertex's error is pushed to its parents at its own level, in one group of VJPs with
    # its increments: the error is then read right after it is made and dropped, as backprop
    # drops a cotangent, instead of living until the level of its highest parent.
    pushes: dict[str, list[tuple[int, str]]] = {}
    for u in st.values:
        for ch, pos in st.children[u]:
            pushes.setdefault(ch, []).append((pos, u))
    for t in range(st.depth + 1):
        steps: list = output_errors(st, c, "ff", seed="1/B") if t == 0 else []
        for v in by_level.get(t, []) + ([st.loss] if t == 0 else []):
            targets = [(pos, p, "d") for p, pos in st.increments.get(v, ())]
            targets += [(pos, u, "s") for pos, u in pushes.get(v, ())]
            steps += [
                VJP(v, c.nodes[v].op, pos, node, src="e", into=into, at="ff", out="ff")
                for pos, node, into in sorted(targets, key=lambda target: target[0])
            ]
        wave = by_level.get(t + 1, [])  # value nodes: only the outputs are at level 0
        steps += [Relax(v) for v in wave]
        sections.append(
            Section(
                f"inference t={t} (increments of level {t}"
                f"{f', values of level {t + 1}' if wave else ''})",
                tuple(steps),
            )
        )
    sections.append(apply_section(st, c))
    return tuple(sections)


def dense_sections(
    c: Compiled,
    st: PCStructure,
    steps: int,
    rate: float,
    fixed: bool,
    increment_at: dict[str, int],
    noise: float = 0.0,
    seed: int = 0,
    output_extra: tuple = (),
    final_extra: tuple = (),
) -> tuple[Section, ...]:
    """The literal dynamics: every value node at every step.

    ``fixed``: predictions and Jacobians held at the feed-forward pass (FPA); otherwise they are
    recomputed from the current values each step (strict IL).  ``increment_at[v]`` is the step
    at whose start vertex ``v``'s increments are taken (``steps`` = from the final errors).
    ``output_extra`` steps follow every computation of the output errors and ``final_extra``
    ends the final errors (IL-prox's proximal output and normalised weight step).

    Steps after the first whose bodies are the same (no increments taken there) are one
    repeated section, so the schedule's size does not grow with ``steps``.
    """
    at = "ff" if fixed else "x"
    mu = "ff" if fixed else "mu"
    vertices = [*st.outputs, *st.values, st.loss]
    sections = [forward_section(c, noise, seed, st)]

    # A prediction changes only through operands that are vertices; the others keep the
    # feed-forward prediction, which the snapshot already holds.
    moving = set(st.values)
    stale_outputs = [o for o in st.outputs if moving & set(c.nodes[o].operands)]
    stale_values = [v for v in st.values if moving & set(c.nodes[v].operands)]
    fresh = [Snapshot("ff", "mu")] if not fixed else []

    def errors(first: bool) -> list:
        out: list = list(fresh) if first else []
        # Before the first update the values are the feed-forward ones (unless perturbed), so
        # the snapshot's predictions are already those a recomputation would give, bit for bit.
        if not fixed and not (first and noise == 0.0):
            out += [Eval(o, c.nodes[o].op, c.nodes[o].operands) for o in stale_outputs]
            out += [Eval(v, c.nodes[v].op, c.nodes[v].operands, into="mu") for v in stale_values]
        if first or not fixed:
            out += output_errors(st, c, at)
            out += list(output_extra)
        return out + [Error(v, mu) for v in st.values]

    def body(t: int) -> tuple:
        steps_t = errors(t == 0)
        steps_t += increment_steps(st, c, [v for v in vertices if increment_at[v] == t], at, "eg")
        steps_t += drive_steps(st, c, list(st.values), at)
        steps_t += [Update(v, rate) for v in st.values]
        return tuple(steps_t)

    # Steps 1..steps-1 in runs between the steps that take increments (finitely many).
    special = sorted({t for t in increment_at.values() if 0 < t < steps})
    if steps > 0:
        sections.append(Section("inference t=0", body(0)))
    start = 1
    for stop in [*special, steps]:
        if stop > start:
            title = f"inference t={start}" + (f"..{stop - 1}" if stop - 1 > start else "")
            sections.append(Section(title, body(start), repeat=stop - start))
        if stop < steps:
            sections.append(Section(f"inference t={stop}", body(stop)))
        start = stop + 1
    final = errors(steps == 0)
    final += increment_steps(st, c, [v for v in vertices if increment_at[v] >= steps], at, "eg")
    final += list(final_extra)
    sections.append(Section("final errors", tuple(final)))
    sections.append(apply_section(st, c))
    return tuple(sections)


def pc_schedule(
    name: str, c: Compiled, opts: dict, sections: tuple[Section, ...], graph: Compiled
) -> Schedule:
    """A predictive-coding schedule: increments (in gradient units) in ``d``, the feed-forward
    loss in ``ff``; ``graph`` is the (possibly identity-levelled) graph its steps name."""
    return Schedule(
        name, c.name, tuple(opts.items()), sections, compiled=graph, grads_from="d", loss_from="ff"
    )
