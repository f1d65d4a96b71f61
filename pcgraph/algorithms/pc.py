"""Predictive coding on any graph: the structure (value nodes, levels) and the schedule emitters.

See ``spec/predictive-coding.md`` for the model.  In short: every batched op node on a path from a
parameter to the loss is a vertex; the loss node's operands are the clamped *output vertices*
(their error is ``-dl/dmu``), every other vertex is a free *value node* with error
``e = x - mu``.  Unbatched op nodes on such paths (e.g. ``transpose(W)``) are *parameter
expressions*: their increments are carried back to the parameters by the chain rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from pcgraph.compile import Compiled, NodeSpec, forward_steps, grad_nodes
from pcgraph.errors import GraphError, OptionError
from pcgraph.levels import levels_from
from pcgraph.schedule import (
    VJP,
    Assign,
    Clear,
    Energy,
    Error,
    Eval,
    GradientUnits,
    MaskedUpdate,
    Note,
    Perturb,
    PriorError,
    Relax,
    Schedule,
    Section,
    Seed,
    Snapshot,
    Update,
    Zero,
)


@dataclass(frozen=True)
class PCStructure:
    """The predictive-coding view of a compiled graph under one value-node placement."""

    loss: str
    outputs: tuple[str, ...]  # clamped output vertices, level 0
    values: tuple[str, ...]  # free value nodes, topological order
    level: dict[str, int]  # vertices: longest path to an output vertex; folded: their consumers'
    depth: int  # the largest level
    children: dict[str, tuple[tuple[str, int], ...]]  # value/folded node -> (consumer, argnum)
    increments: dict[str, tuple[tuple[str, int], ...]]  # vertex, folded or loss -> (param, argnum)
    pexprs: tuple[str, ...]  # unbatched op nodes between parameters and vertices
    folded: tuple[str, ...] = ()  # batched ops inside predictions (no value node), topological
    feeds_value: frozenset[str] = frozenset()  # folded nodes a value node reaches (drives pass)
    feeds_param: frozenset[str] = frozenset()  # folded nodes a parameter reaches (increments)
    value_set: frozenset[str] = frozenset()  # ``values`` for O(1) membership tests
    # Inference with other nodes clamped or freed (``Clamping``); empty in the default view.
    clamped: tuple[str, ...] = ()  # vertices held at given values: errors, no updates
    latent: tuple[str, ...] = ()  # leaves made value nodes (also in ``values``): prior N(0, I)
    masked: tuple[str, ...] = ()  # value nodes clamped at some entries, free at the others
    assigned: tuple[str, ...] = ()  # op vertices whose start is given (``obs`` or ``init``)
    initialised: frozenset[str] = frozenset()  # nodes whose start is in the store ``init``
    loss_term: bool = True  # the loss is in the energy (its operands are the clamped outputs)
    in_mu: frozenset[str] = frozenset()  # vertices whose prediction lives in ``mu``


@dataclass(frozen=True)
class Clamping:
    """What inference clamps and frees beyond the default view (inputs and targets fed, the
    loss's operands clamped through the loss, every other vertex a free value node).

    ``observed``: op nodes held at values the caller gives (store ``obs``); ``masked``: op nodes
    held there only at the entries a mask marks, free at the others; ``free``: op nodes made
    value nodes whatever the placement, and leaves (inputs, targets) made *latent* value nodes
    with the prior ``N(0, I)``; ``initialised``: value nodes whose starting value the caller
    gives (store ``init``; otherwise the feed-forward value, and 0 for a latent leaf).  A loss
    operand among them takes the loss out of the energy: it is then an ordinary vertex."""

    observed: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    free: tuple[str, ...] = ()
    initialised: tuple[str, ...] = ()


PLACEMENTS = ("all", "layers")


def placement_problem(value: object) -> str | None:
    """Why ``value`` is no value-node placement (the option check), or None."""
    if isinstance(value, str):
        return None if value in PLACEMENTS else "must be 'all', 'layers' or a list of node names"
    ok = isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value)
    return None if ok else "must be 'all', 'layers' or a list of node names"


def structure(
    c: Compiled, value_nodes: str | tuple[str, ...] = "all", clamping: Clamping | None = None
) -> PCStructure:
    """Find the output vertices, value nodes, levels and increment sources of ``c`` (see
    ``_structure``); worked out once per compiled graph, placement and clamping."""
    placed = value_nodes if isinstance(value_nodes, str) else tuple(value_nodes)
    key = ("pc-structure", placed) if clamping is None else ("pc-structure", placed, clamping)
    found = c.derived.get(key)
    if found is None:
        found = c.derived[key] = _structure(c, value_nodes, clamping)
    return found


def _structure(
    c: Compiled, value_nodes: str | tuple[str, ...] = "all", clamping: Clamping | None = None
) -> PCStructure:
    """Find the output vertices, value nodes, levels and increment sources of ``c``.

    ``value_nodes``: "all" makes every batched op on a path from a parameter to the loss a
    vertex (the AAAI-22 graphs); "layers" the nodes marked with ``pc.layer``; a list names them.
    The loss's operands are always (clamped) vertices; every other batched op is *folded*: it is
    part of the prediction of the vertices it feeds, and errors pass through it by the chain rule.

    ``clamping`` (inference, ``Program.infer``) adds clamped vertices, latent leaves and freed
    or clamped loss operands; nodes downstream of a latent leaf or of a clamped or freed op node
    are then live too (their predictions move with it).
    """
    cl = clamping or Clamping()
    loss = c.loss
    latent = tuple(n for n in cl.free if c.nodes[n].op is None)
    set_ops = [n for n in (*cl.observed, *cl.masked, *cl.free) if c.nodes[n].op is not None]
    if clamping is None:
        live = grad_nodes(c)
    else:
        live = c.descendants([*c.of_kind("param"), *latent, *set_ops]) & c.feeds_loss
    batched_ops = {n for n in live if n != loss and c.nodes[n].op and c.nodes[n].batched}
    pexprs = tuple(n for n in c.order if n in live and c.nodes[n].op and not c.nodes[n].batched)
    operands = tuple(o for o in dict.fromkeys(c.nodes[loss].operands) if o in batched_ops)
    loss_term = not set(operands) & set(set_ops)
    outputs = operands if loss_term else ()
    if value_nodes == "all":
        chosen = batched_ops
    elif value_nodes == "layers":
        chosen = {n for n in batched_ops if c.nodes[n].layer}
        if not chosen - set(outputs):
            raise OptionError(
                f"value_nodes='layers': graph {c.name!r} marks no layer on a path from a "
                "parameter to the loss; mark layer outputs with pc.layer(node)"
            )
    else:
        chosen = set(value_nodes)
        for n in value_nodes:
            if n not in batched_ops:
                why = (
                    "is not a node of the graph"
                    if n not in c.nodes
                    else "is the loss"
                    if n == loss
                    else "is not a batched op on a path from a parameter to the loss"
                )
                raise OptionError(f"value_nodes names {n!r}, which {why}")
    chosen = chosen | set(set_ops) | (set() if loss_term else set(operands))
    vertex = chosen | set(outputs)
    for o in outputs:
        others = sorted({ch for ch, _ in c.children[o] if ch in live and ch != loss})
        if others:
            raise GraphError(
                f"predictive coding clamps the loss's operand {o!r}, but it also feeds "
                f"{', '.join(map(repr, others))}; give the loss its own copy, e.g. "
                f"pc.identity({o}) as the loss operand"
            )
    output_set, clamped_set, latent_set = set(outputs), set(cl.observed), set(latent)
    values = tuple(
        n
        for n in c.order
        if (n in vertex and n not in output_set and n not in clamped_set) or n in latent_set
    )
    clamped = tuple(n for n in c.order if n in clamped_set)
    folded = tuple(n for n in c.order if n in batched_ops and n not in vertex)
    inner = vertex | set(folded)
    children = {
        v: tuple((ch, pos) for ch, pos in c.children[v] if ch in inner)
        for v in (*values, *clamped, *folded)
    }
    every = levels_from({n: s.operands for n, s in c.nodes.items()}, loss, folded)
    level = {n: every[n] for n in (*outputs, *values, *clamped, *folded)}
    sources = set(c.of_kind("param")) | set(pexprs)
    increments = {
        n: tuple((o, pos) for pos, o in enumerate(c.nodes[n].operands) if o in sources)
        for n in (*outputs, *values, *clamped, *folded, loss)
    }
    value_set = frozenset(values)
    op_nodes = [n for n in c.order if c.nodes[n].op is not None]
    feeds_value: set[str] = set()
    feeds_param: set[str] = set()
    for f in folded:  # topological order: operands first
        ops = c.nodes[f].operands
        if any(o in value_set or o in feeds_value for o in ops):
            feeds_value.add(f)
        if any(o in sources or o in feeds_param for o in ops):
            feeds_param.add(f)
    return PCStructure(
        loss,
        outputs,
        values,
        level,
        max((level[v] for v in (*vertex, *latent)), default=0),
        children,
        {n: inc for n, inc in increments.items() if inc},
        pexprs,
        folded,
        frozenset(feeds_value),
        frozenset(feeds_param),
        value_set,
        clamped,
        latent,
        tuple(n for n in c.order if n in set(cl.masked)),
        tuple(n for n in op_nodes if n in {*cl.initialised, *cl.observed, *cl.masked}),
        frozenset(cl.initialised),
        loss_term,
        (value_set | frozenset(clamped)) - latent_set,
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
        nodes[n] = replace(s, operands=tuple(rewired[n]))
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
    steps: list = []
    if st is not None and st.folded:
        steps.append(
            Note(
                f"value nodes: {', '.join(st.values) or '-'}; outputs: "
                f"{', '.join(st.outputs)}; folded into predictions: {', '.join(st.folded)}"
            )
        )
    if st is not None and (st.latent or st.assigned or not st.loss_term):
        steps += [*clamping_notes(c, st), *_clamped_forward(c, st)]
    else:
        steps += forward_steps(c, [c.loss])
    steps.append(Snapshot("x", "ff"))
    if noise and st is not None:
        steps += [Perturb(v, noise, seed + i) for i, v in enumerate(st.values)]
    return Section("forward", tuple(steps))


def clamping_notes(c: Compiled, st: PCStructure) -> list:
    """Comment lines saying what inference clamps and what it infers."""
    fed = [n for n in c.order if c.nodes[n].kind in ("input", "target") and n not in st.latent]
    through = f"; outputs clamped through the loss: {', '.join(st.outputs)}" if st.outputs else ""
    held = [*st.clamped, *(f"{n} (where observed)" for n in st.masked)]
    latent = f"latent leaves {', '.join(st.latent)} (prior N(0, I)); " if st.latent else ""
    others = ", ".join(v for v in st.values if v not in st.latent) or "-"
    return [
        Note(
            f"clamped: fed leaves {', '.join(fed) or '-'}; vertices {', '.join(held) or '-'}{through}"
        ),
        Note(
            f"inferred: {latent}value nodes {others}"
            + ("" if st.loss_term else "; no loss term in the energy")
        ),
    ]


def _clamped_forward(c: Compiled, st: PCStructure) -> list:
    """The feed-forward pass with latent leaves at their start (0, or ``init``) and the given
    values of assigned vertices put in as the pass reaches them, so every other node starts at
    the prediction of its parents' starting values."""
    steps: list = [Assign(z, "init") if z in st.initialised else Zero(z) for z in st.latent]
    assigned, masked = set(st.assigned), set(st.masked)
    targets = [c.loss] if st.loss_term else [*st.values, *st.clamped]
    for step in forward_steps(c, targets):
        steps.append(step)
        n = step.node
        if n in assigned:
            if n in st.initialised:
                steps.append(Assign(n, "init"))
            if n not in st.initialised or n in masked:
                steps.append(Assign(n, "obs", masked=n in masked))
    return steps


def output_errors(st: PCStructure, c: Compiled, at: str, seed: str = "-1") -> list:
    """``e[o] = -dl/dmu_o`` for the output vertices, through the loss op's local VJP."""
    op = c.nodes[st.loss].op
    steps: list = [Clear("e", st.outputs), Seed(st.loss, into="e", value=seed)]
    outputs = set(st.outputs)
    for pos, o in enumerate(c.nodes[st.loss].operands):
        if o in outputs:
            steps.append(VJP(st.loss, op, pos, o, src="e", into="e", at=at))
    return steps


def _out(st: PCStructure, node: str, at: str) -> str:
    """Where the op output of ``node`` lives: predictions of value nodes (and of clamped
    vertices) are in ``mu``."""
    return "mu" if at == "x" and node in st.in_mu else at


def _through_folded(
    st: PCStructure,
    c: Compiled,
    tops: list[str],
    via: frozenset[str],
    src: str,
    at: str,
    route: dict[str, str],
) -> list:
    """Backprop from ``src[top]`` of the vertices ``tops`` through the folded nodes in ``via``:
    cotangents of folded nodes gather in ``g``, and reach ``route[kind]`` ("s" for value nodes,
    "d" for parameters and parameter expressions) where the chain leaves the folded region."""
    if not via:
        return []
    values, sources = st.value_set, set(c.of_kind("param")) | set(st.pexprs)

    def into(node: str) -> str | None:
        if node in via:
            return "g"
        if node in values:
            return route.get("value")
        if node in sources:
            return route.get("param")
        return None

    def vjps(node: str, source: str, out: str, folded_only: bool) -> list:
        steps = []
        for pos, o in enumerate(c.nodes[node].operands):
            target = into(o)
            if target is not None and (target == "g" or not folded_only):
                steps.append(
                    VJP(node, c.nodes[node].op, pos, o, src=source, into=target, at=at, out=out)
                )
        return steps

    steps: list = [Clear("g", tuple(f for f in st.folded if f in via))]
    for v in tops:  # only into folded operands: the direct VJPs are emitted by the caller
        steps += vjps(v, src, _out(st, v, at), folded_only=True)
    for f in reversed(st.folded):
        if f in via:
            steps += vjps(f, "g", at, folded_only=False)
    return steps


def increment_steps(
    st: PCStructure, c: Compiled, nodes: list[str], at: str, src: str = "e"
) -> list:
    """Local parameter increments ``d[p] += vjp_p f_v(src[v])`` of the vertices in ``nodes``
    (through the folded ops of their predictions); with ``src="eg"`` the errors are first put
    in gradient units (see ``GradientUnits``)."""
    via = st.feeds_param
    owners = [
        v for v in nodes if st.increments.get(v) or any(o in via for o in c.nodes[v].operands)
    ]
    steps: list = [GradientUnits(tuple(owners))] if src == "eg" and owners else []
    steps += [
        VJP(v, c.nodes[v].op, pos, p, src=src, into="d", at=at, out=_out(st, v, at))
        for v in owners
        for p, pos in st.increments.get(v, ())
    ]
    tops = [v for v in owners if any(o in via for o in c.nodes[v].operands)]
    return steps + (_through_folded(st, c, tops, via, src, at, {"param": "d"}) if tops else [])


def drive_steps(st: PCStructure, c: Compiled, nodes: list[str], at: str) -> list:
    """``s[u] += vjp_u f_c(e[c])`` over the children ``c`` of each value node ``u`` in ``nodes``,
    then, where folded ops lie between them, backprop of the errors through those ops."""
    folded = set(st.folded)
    steps = [
        VJP(ch, c.nodes[ch].op, pos, u, src="e", into="s", at=at, out=_out(st, ch, at))
        for u in nodes
        for ch, pos in st.children[u]
        if ch not in folded
    ]
    via = st.feeds_value
    tops = [
        v
        for v in (*st.outputs, *st.values, *st.clamped)
        if any(o in via for o in c.nodes[v].operands)
    ]
    return steps + (_through_folded(st, c, tops, via, "e", at, {"value": "s"}) if tops else [])


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
    sections = [forward_section(c, st=st)]
    by_level: dict[int, list[str]] = {}  # bucketed once: no scan of every vertex per level
    for v in (*st.outputs, *st.values):
        by_level.setdefault(st.level[v], []).append(v)
    # Each vertex's error is pushed to its parents at its own level, in one group of VJPs with
    # its increments: the error is then read right after it is made and dropped, as backprop
    # drops a cotangent, instead of living until the level of its highest parent.
    # Folded ops (no value nodes) pass their consumers' errors on by the chain rule, at the
    # level of their highest consumer, where every consumer has pushed (cotangents in "g").
    relevant = st.feeds_value | st.feeds_param
    folded_at: dict[int, list[str]] = {}
    for f in reversed(st.folded):  # consumers before operands within a level
        if f in relevant:
            folded_at.setdefault(st.level[f], []).append(f)
    pushes: dict[str, list[tuple[int, str, str]]] = {}
    for u in (*st.values, *relevant):
        for ch, pos in st.children[u]:
            pushes.setdefault(ch, []).append((pos, u, "g" if u in relevant else "s"))
    for t in range(st.depth + 1):
        steps: list = output_errors(st, c, "ff", seed="1/B") if t == 0 else []
        pushers = [(v, "e") for v in by_level.get(t, []) + ([st.loss] if t == 0 else [])]
        pushers += [(f, "g") for f in folded_at.get(t, [])]
        for v, src in pushers:
            targets = [(pos, p, "d") for p, pos in st.increments.get(v, ())]
            targets += pushes.get(v, [])
            steps += [
                VJP(v, c.nodes[v].op, pos, node, src=src, into=into, at="ff", out="ff")
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
    output_extra: tuple | Callable[[bool], tuple] = (),
    final_extra: tuple = (),
    learn: tuple = (),
    energy: bool = False,
    increments: bool = True,
) -> tuple[Section, ...]:
    """The literal dynamics: every value node at every step.

    ``fixed``: predictions and Jacobians held at the feed-forward pass (FPA); otherwise they are
    recomputed from the current values each step (strict IL).  ``increment_at[v]`` is the step
    at whose start vertex ``v``'s increments are taken (``steps`` = from the final errors).
    ``output_extra`` steps (or ``output_extra(first)``, whether it is the first computation)
    follow every computation of the output errors and ``final_extra``
    ends the final errors (IL-prox's proximal output and normalised weight step).

    ``learn`` steps end every inference step (incremental PC's parameter steps): increments
    are then taken at every step, from that step's errors, the parameters move with the
    values (predictions are recomputed from both), and there are no final errors.

    Steps after the first whose bodies are the same (no increments taken there) are one
    repeated section, so the schedule's size does not grow with ``steps``.

    ``energy``: every computation of the errors ends by appending the energy to the trace
    ``F`` (inference, ``Program.infer``); ``increments=False``: no increments are taken and
    there is no apply section.  The clamping of ``st`` (clamped vertices, latent leaves,
    partly observed value nodes, no loss term) is followed here: clamped vertices have errors
    and are never updated, a latent leaf's error is against its prior, a partly observed node
    moves only at its free entries.
    """
    at = "ff" if fixed else "x"
    mu = "ff" if fixed else "mu"
    loss_vertex = [st.loss] if st.loss_term else []
    vertices = [*st.outputs, *st.values, *st.clamped, *loss_vertex]
    sections = [forward_section(c, noise, seed, st)]

    # A prediction changes only through operands that are vertices; the others keep the
    # feed-forward prediction, which the snapshot already holds.
    moving = set(st.values)
    moving_pexprs = list(st.pexprs) if learn else []  # recomputed from the moving parameters
    if learn:
        moving |= set(c.of_kind("param")) | set(st.pexprs)
    moving_folded = []  # folded ops recomputed from the current values, into "x"
    for f in st.folded:
        if moving & set(c.nodes[f].operands):
            moving.add(f)
            moving_folded.append(f)
    stale_outputs = [o for o in st.outputs if moving & set(c.nodes[o].operands)]
    stale_values = [v for v in (*st.values, *st.clamped) if moving & set(c.nodes[v].operands)]
    fresh = [Snapshot("ff", "mu")] if not fixed else []
    # The snapshot holds the given value of an assigned vertex, not its prediction.
    fresh += [Eval(v, c.nodes[v].op, c.nodes[v].operands, into="mu") for v in st.assigned]
    latent = set(st.latent)
    with_errors = [*st.values, *st.clamped]

    def errors(first: bool) -> list:
        out: list = list(fresh) if first else []
        # Before the first update the values are the feed-forward ones (unless perturbed), so
        # the snapshot's predictions are already those a recomputation would give, bit for bit.
        if not fixed and not (first and noise == 0.0):
            out += [Eval(n, c.nodes[n].op, c.nodes[n].operands) for n in moving_pexprs]
            out += [Eval(f, c.nodes[f].op, c.nodes[f].operands) for f in moving_folded]
            out += [Eval(o, c.nodes[o].op, c.nodes[o].operands) for o in stale_outputs]
            out += [Eval(v, c.nodes[v].op, c.nodes[v].operands, into="mu") for v in stale_values]
        if (first or not fixed) and st.loss_term:
            out += output_errors(st, c, at)
            out += list(output_extra(first) if callable(output_extra) else output_extra)
        out += [PriorError(v) if v in latent else Error(v, mu) for v in with_errors]
        if energy:
            if st.loss_term and not first and stale_outputs:  # the loss at the new predictions
                out.append(Eval(st.loss, c.nodes[st.loss].op, c.nodes[st.loss].operands))
            out.append(Energy(tuple(with_errors), st.loss, st.loss_term))
        return out

    carry = [s for s in apply_section(st, c).steps if not isinstance(s, Note)]
    if carry:  # the parameter expressions' increments reach their parameters every step
        carry.append(Clear("d", st.pexprs))

    masked = set(st.masked)

    def body(t: int) -> tuple:
        steps_t = errors(t == 0)
        now = vertices if learn else [v for v in vertices if increment_at.get(v) == t]
        if increments:
            steps_t += increment_steps(st, c, now, at, "eg")
        steps_t += drive_steps(st, c, list(st.values), at)
        steps_t += [MaskedUpdate(v, rate) if v in masked else Update(v, rate) for v in st.values]
        if learn:
            steps_t += carry + list(learn)
        return tuple(steps_t)

    # Steps 1..steps-1 in runs between the steps that take increments (finitely many).
    special = (
        []
        if learn or not increments
        else sorted({t for t in increment_at.values() if 0 < t < steps})
    )
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
    if learn:
        return tuple(sections)
    final = errors(steps == 0)
    if not increments:
        sections.append(Section("final errors", tuple(final)))
        return tuple(sections)
    final += increment_steps(
        st, c, [v for v in vertices if increment_at.get(v, -1) >= steps], at, "eg"
    )
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
