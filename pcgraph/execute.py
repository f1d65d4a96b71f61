"""Lowering: a schedule becomes straight-line code over slots, which ``Program.run`` executes.

Every (store, node) pair a schedule names is a *slot*, an index into one list: the stores
("x" values, "ff" feed-forward values, "mu" predictions, "g" cotangents, "e" errors, "s"
children's error sums, "d" parameter increments, and "<store>:saved" for what an op's forward
kept for its VJP) are blocks of one slot per graph node, so a snapshot of a store is one slice
copy.  Each step kind has a lowering in ``LOWERINGS`` that turns a step into a kernel
``kernel(slots, batch)`` and declares the slots it reads and writes; algorithms register the
lowerings of step kinds of their own with ``register_lowering``.  A section that repeats is
lowered once, as a loop.

The lowering plans memory as it goes: it knows where each slot is read for the last time and
drops the array there (``keep=True`` keeps everything, for inspection), and it decides,
statically, when a VJP may reuse what its op's forward saved: only when the operands it is
linearised at are the very arrays that forward saw.  It knows no array library beyond the
namespace and array kernels (``backend.kernels``) a backend hands in; backends know no graph.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compile import Compiled, without_cycle_collection
from .ops import OPS
from .schedule import (
    ENERGY_STORE,
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
    Seed,
    Snapshot,
    Update,
    Zero,
)

Kernel = Callable[[list, int], None]


# ------------------------------------------------------------------ lowered programs
@dataclass
class Instr:
    """One lowered kernel: the executed steps it performs (indices into
    ``Schedule.executed()``), the slots it reads and writes, and those it drops after running."""

    run: Kernel
    steps: tuple[int, ...]
    reads: frozenset[int]
    writes: frozenset[int]
    frees: tuple[int, ...] = ()


@dataclass
class Loop:
    """A repeated section: ``body`` runs ``count`` times in a row."""

    count: int
    body: list[Instr]


@dataclass
class Lowered:
    """A schedule lowered for one program: instructions over ``nslots`` slots, the slots that
    the program fills before a run (``leaves``: slot -> leaf node) and the result slots."""

    schedule: Schedule
    items: list[Instr | Loop]
    nslots: int
    layout: Layout
    leaves: dict[int, str]
    outputs: tuple[int, ...]
    kernels: list[Kernel] = field(default_factory=list)

    def run(self, slots: list, batch: int) -> None:
        """Run every kernel in order on ``slots``."""
        for kernel in self.kernels:
            kernel(slots, batch)

    def run_timed(self, slots: list, batch: int, synchronize: Callable[[], None]) -> list[float]:
        """``run``, returning the seconds each executed step took: a loop's steps summed over
        its iterations, steps that one kernel runs together sharing its time equally.
        ``synchronize`` waits for the device after each kernel (it serialises the kernels)."""
        times = [0.0] * len(self.schedule.executed())

        def timed(instr: Instr) -> None:
            start = time.perf_counter()
            instr.run(slots, batch)
            synchronize()
            share = (time.perf_counter() - start) / len(instr.steps)
            for i in instr.steps:
                times[i] += share
            for f in instr.frees:
                slots[f] = None

        synchronize()
        for item in self.items:
            if isinstance(item, Loop):
                for _ in range(item.count):
                    for instr in item.body:
                        timed(instr)
            else:
                timed(item)
        return times


SCALE_SLOT = 0  # the run's gradient scale (``Program.run(..., scale=)``), before every block
WHOLE_SLOT = 1  # the run's ``Whole`` batch when it holds one shard of it (None: it is the batch)
_RESERVED = 2  # slots before the stores' blocks


@dataclass(frozen=True)
class Whole:
    """The global batch a run's examples are one shard of (data-parallel training,
    ``pcgraph.distributed``): ``size`` examples in all, and ``sum(arrays)``, the list of
    ``arrays`` (the same shapes on every shard) each summed over all shards, in one collective.

    Kernels that couple examples read it from ``WHOLE_SLOT``: seeds and error scalings over
    ``B`` divide by ``size``, batch statistics (``OpDef.whole_batch``) and the algorithms' batch
    means and in-loop parameter steps sum across shards.  Alone (the slot holds None) they use
    the run's own batch, exactly as before."""

    size: int
    sum: Callable[[list], list]


class Layout:
    """Slot numbers: the run's scale and whole batch first, then one block of ``len(nodes)``
    slots per store, in the graph's node order."""

    def __init__(self, compiled: Compiled) -> None:
        self.index = {n: i for i, n in enumerate(compiled.nodes)}
        self.size = len(self.index)
        self.bases: dict[str, int] = {}

    def base(self, store: str) -> int:
        if store not in self.bases:
            self.bases[store] = _RESERVED + len(self.bases) * self.size
        return self.bases[store]

    def slot(self, store: str, node: str) -> int:
        return self.base(store) + self.index[node]

    def has(self, store: str) -> bool:
        return store in self.bases

    @property
    def nslots(self) -> int:
        return _RESERVED + len(self.bases) * self.size

    def entries(self, store: str, slots: Sequence) -> dict[str, Any]:
        """The non-empty slots of ``store``: node -> array."""
        if store not in self.bases:
            return {}
        base = self.bases[store]
        return {n: slots[base + i] for n, i in self.index.items() if slots[base + i] is not None}


def saved(store: str) -> str:
    """The store holding what ``store``'s forwards saved for their VJPs."""
    return f"{store}:saved"


# ------------------------------------------------------------------ the lowering context
class Lowerer:
    """What a lowering function works with: the namespace ``xp``, the backend's array
    ``kernels``, the graph, the float dtype, and slots.  ``read``/``write`` give slot numbers and
    record them for the memory plan; the lowerer also follows, statically, which value each
    slot holds, so that ``reuses_saved`` can tell whether a residual is still valid."""

    def __init__(self, xp: Any, kernels: Any, compiled: Compiled, dtype: Any) -> None:
        self.xp, self.kernels, self.compiled, self.dtype = xp, kernels, compiled, dtype
        self.layout = Layout(compiled)
        self.value: dict[int, int] = {}  # slot -> id of the value it holds (absent: empty)
        self.saved_at: dict[int, tuple] = {}  # residual slot -> operand value ids it was made at
        self._ids = itertools.count(1)
        self._reads: set[int] = set()
        self._writes: set[int] = set()
        self.step = 0  # index of the executed step being lowered
        self.force: dict[int, bool] = {}  # step -> residual decision forced (loops)
        self.decided: dict[int, bool] = {}
        self.overrides: dict[type, Lowering] = {}  # the backend's own lowerings

    # slots
    def read(self, store: str, node: str) -> int:
        slot = self.layout.slot(store, node)
        self._reads.add(slot)
        return slot

    def write(self, store: str, node: str) -> int:
        """The slot a step writes (a new value), recorded as written."""
        slot = self.layout.slot(store, node)
        self._writes.add(slot)
        self.value[slot] = next(self._ids)
        return slot

    def update(self, store: str, node: str) -> int:
        """The slot a step reads and writes (``+=``, an in-place update of the entry)."""
        slot = self.read(store, node)
        self._writes.add(slot)
        self.value[slot] = next(self._ids)
        return slot

    def drop(self, store: str, node: str) -> int:
        """The slot a step empties (a ``pop``)."""
        slot = self.layout.slot(store, node)
        self._writes.add(slot)
        self.value.pop(slot, None)
        return slot

    def move(self, dst: int, src: int) -> None:
        """Record that ``dst`` now holds what ``src`` holds (an alias, no copy)."""
        if src in self.value:
            self.value[dst] = self.value[src]
        else:
            self.value.pop(dst, None)
        if src in self.saved_at:
            self.saved_at[dst] = self.saved_at[src]
        else:
            self.saved_at.pop(dst, None)

    def defined(self, slot: int) -> bool:
        return slot in self.value

    # residuals
    def record_saved(self, residual: int, operands: Sequence[int]) -> None:
        self.saved_at[residual] = tuple(self.value.get(s) for s in operands)

    def reuses_saved(self, residual: int, operands: Sequence[int]) -> bool:
        """Whether the residual in slot ``residual`` was saved by a forward at exactly the arrays
        now in ``operands`` (so a VJP linearised there may reuse it)."""
        made = self.saved_at.get(residual)
        ok = made is not None and made == tuple(self.value.get(s) for s in operands)
        ok = ok and self.force.get(self.step, True)
        self.decided[self.step] = ok
        return ok

    def instr(self, run: Kernel, steps: int = 1) -> Instr:
        """The instruction of the step(s) being lowered, with the slots recorded so far."""
        out = Instr(
            run,
            tuple(range(self.step, self.step + steps)),
            frozenset(self._reads),
            frozenset(self._writes),
        )
        self._reads, self._writes = set(), set()
        return out


Lowering = Callable[[Lowerer, list], Instr]
LOWERINGS: dict[type, Lowering] = {}
GROUPS: dict[type, Callable[[Any], Any]] = {}


def register_lowering(
    kind: type, lowering: Lowering, group: Callable[[Any], Any] | None = None
) -> None:
    """Lower steps of ``kind`` with ``lowering(lowerer, steps) -> Instr``.  ``steps`` is one
    step, or, with ``group``, a run of consecutive steps of that kind whose ``group(step)`` keys
    are equal (they then run as one kernel, e.g. the VJPs of one node into several operands)."""
    LOWERINGS[kind] = lowering
    if group is not None:
        GROUPS[kind] = group


# ------------------------------------------------------------------ core step kinds
def _lower_eval(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    spec = lw.compiled.nodes[step.node]
    op, kw, xp = OPS[spec.op], spec.lowered, lw.xp
    ins = [lw.read("x", o) for o in step.operands]
    if op.whole_batch:  # batch statistics: the rules take the run's whole batch (or None)
        res = lw.layout.slot(saved(step.into), step.node)
        if op.saves is not None:
            lw.record_saved(res, ins)
        out = lw.write(step.into, step.node)
        if op.saves is not None:
            lw.write(saved(step.into), step.node)
        evaluate = op.evaluate

        def run_eval_whole(slots: list, batch: int) -> None:
            value, kept = evaluate(xp, [slots[i] for i in ins], {**kw, "whole": slots[WHOLE_SLOT]})
            slots[out] = value
            if op.saves is not None:
                slots[res] = kept

        return lw.instr(run_eval_whole)
    if op.saves is None:
        fwd = op.forward
        out = lw.write(step.into, step.node)
        if not kw:

            def run_eval_plain(slots: list, batch: int) -> None:
                slots[out] = fwd(xp, [slots[i] for i in ins])

            return lw.instr(run_eval_plain)

        def run_eval(slots: list, batch: int) -> None:
            slots[out] = fwd(xp, [slots[i] for i in ins], **kw)

        return lw.instr(run_eval)
    saves = op.saves
    res = lw.layout.slot(saved(step.into), step.node)
    lw.record_saved(res, ins)
    out, _ = lw.write(step.into, step.node), lw.write(saved(step.into), step.node)

    def run_eval_saving(slots: list, batch: int) -> None:
        slots[out], slots[res] = saves(xp, [slots[i] for i in ins], **kw)

    return lw.instr(run_eval_saving)


def _lower_vjp(lw: Lowerer, steps: list) -> Instr:
    first = steps[0]
    spec = lw.compiled.nodes[first.node]
    op, kw, xp = OPS[spec.op], spec.lowered, lw.xp
    ins = [lw.read(first.at, o) for o in spec.operands]
    src = lw.read(first.src, first.node)
    out_store = first.out or first.at
    out = lw.read(out_store, first.node)
    res = None
    if op.saves is not None:
        slot = lw.layout.slot(saved(out_store), first.node)
        if lw.reuses_saved(slot, ins):
            res = lw.read(saved(out_store), first.node)
    argnums = tuple(s.argnum for s in steps)
    targets = [lw.update(s.into, s.operand) for s in steps]
    whole = op.whole_batch  # batch statistics: the rules take the run's whole batch (or None)
    if len(steps) == 1 and not whole:  # the common case, without the general path's indirections
        return lw.instr(_single_vjp(xp, op, kw, argnums[0], ins, src, out, res, targets[0]))
    if op.vjps is None and op.saves is None and not whole:  # one rule call per operand
        vjp, pairs = op.vjp, list(zip(argnums, targets))

        def run_vjps(slots: list, batch: int) -> None:
            g, o, xs = slots[src], slots[out], [slots[k] for k in ins]
            for i, t in pairs:
                c = vjp(xp, i, g, o, xs, **kw)
                prev = slots[t]
                slots[t] = c if prev is None else prev + c

        return lw.instr(run_vjps, len(steps))
    pullback = op.pullback

    def run_vjp(slots: list, batch: int) -> None:
        cots = pullback(
            xp,
            argnums,
            slots[src],
            slots[out],
            [slots[i] for i in ins],
            None if res is None else slots[res],
            {**kw, "whole": slots[WHOLE_SLOT]} if whole else kw,
        )
        for t, c in zip(targets, cots):
            prev = slots[t]
            slots[t] = c if prev is None else prev + c

    return lw.instr(run_vjp, len(steps))


def _single_vjp(
    xp: Any, op: Any, kw: dict, i: int, ins: list, src: int, out: int, res: int | None, t: int
) -> Kernel:
    vjp = op.vjp
    if res is not None:
        kw = {**kw, "saved": None}

        def run_vjp_saved(slots: list, batch: int) -> None:
            kw["saved"] = slots[res]
            c = vjp(xp, i, slots[src], slots[out], [slots[k] for k in ins], **kw)
            prev = slots[t]
            slots[t] = c if prev is None else prev + c

        return run_vjp_saved
    if op.saves is not None:
        kw = {**kw, "saved": None}
    if kw:

        def run_vjp_kw(slots: list, batch: int) -> None:
            c = vjp(xp, i, slots[src], slots[out], [slots[k] for k in ins], **kw)
            prev = slots[t]
            slots[t] = c if prev is None else prev + c

        return run_vjp_kw

    def run_vjp_plain(slots: list, batch: int) -> None:
        c = vjp(xp, i, slots[src], slots[out], [slots[k] for k in ins])
        prev = slots[t]
        slots[t] = c if prev is None else prev + c

    return run_vjp_plain


def _lower_seed(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp, dtype, value = lw.xp, lw.dtype, step.value
    target = lw.write(step.into, step.node)
    # A seed over B is in gradient units: the run's scale multiplies it (the gradients then
    # come out scaled).  One array per (batch size, scale), made once: stored arrays are never
    # written in place, so every run may share it (IL seeds its loss error at every step).
    per_b = value.endswith("/B")
    seeds: dict[tuple, Any] = {}

    def run_seed(slots: list, batch: int) -> None:
        scale = slots[SCALE_SLOT] if per_b else 1.0
        whole = slots[WHOLE_SLOT]  # a shard's seeds are over the global batch's size
        size = batch if whole is None else whole.size
        seed = seeds.get((batch, size, scale))
        if seed is None:
            fill = scale * float(value[:-2]) / size if per_b else float(value)
            if len(seeds) > 64:  # a scale per step (a learning-rate schedule): stay bounded
                seeds.clear()
            seed = seeds[(batch, size, scale)] = xp.full((batch,), fill, dtype=dtype)
        slots[target] = seed

    return lw.instr(run_seed)


def _lower_relax(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    src = lw.read("s", step.node)
    dst = lw.layout.slot("e", step.node)
    lw._writes.add(dst)
    lw.move(dst, src)
    lw.drop("s", step.node)

    def run_relax(slots: list, batch: int) -> None:
        slots[dst] = slots[src]
        slots[src] = None

    return lw.instr(run_relax)


def _lower_update(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    rate, relax = step.rate, lw.kernels.relax
    s, e = lw.read("s", step.node), lw.read("e", step.node)
    x = lw.update("x", step.node)
    lw.drop("s", step.node)

    def run_update(slots: list, batch: int) -> None:
        drive, err = slots[s], slots[e]
        if drive is None and err is None:
            return
        slots[x] = relax(slots[x], drive, err, rate)
        slots[s] = None

    return lw.instr(run_update)


def _lower_gradient_units(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    scaled = lw.kernels.scaled
    pairs = [(lw.read("e", n), lw.write("eg", n)) for n in step.nodes]

    def run_gradient_units(slots: list, batch: int) -> None:
        whole = slots[WHOLE_SLOT]
        factor = -slots[SCALE_SLOT] / (batch if whole is None else whole.size)
        for src, dst in pairs:
            slots[dst] = scaled(slots[src], factor)

    return lw.instr(run_gradient_units)


def _lower_error(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    difference = lw.kernels.difference
    x, mu = lw.read("x", step.node), lw.read(step.mu, step.node)
    e = lw.write("e", step.node)

    def run_error(slots: list, batch: int) -> None:
        slots[e] = difference(slots[x], slots[mu])

    return lw.instr(run_error)


def _lower_snapshot(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    layout, n = lw.layout, lw.layout.size
    blocks = [(step.src, step.into)]
    if layout.has(saved(step.src)):
        blocks.append((saved(step.src), saved(step.into)))
    spans = []
    for src, dst in blocks:
        a, b = layout.base(src), layout.base(dst)
        spans.append((a, b))
        for i in range(n):
            if lw.defined(a + i):
                lw._reads.add(a + i)
            lw._writes.add(b + i)
            lw.move(b + i, a + i)

    def run_snapshot(slots: list, batch: int) -> None:
        for a, b in spans:
            slots[b : b + n] = slots[a : a + n]

    return lw.instr(run_snapshot)


def _lower_clear(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    cleared = [lw.drop(step.store, n) for n in step.nodes]

    def run_clear(slots: list, batch: int) -> None:
        for i in cleared:
            slots[i] = None

    return lw.instr(run_clear)


def _lower_perturb(lw: Lowerer, steps: list) -> Instr:
    (step,) = steps
    xp, sigma, seed = lw.xp, step.sigma, step.seed
    x = lw.update("x", step.node)

    def run_perturb(slots: list, batch: int) -> None:
        value = slots[x]
        noise = np.random.default_rng(seed).normal(0.0, sigma, size=tuple(value.shape))
        slots[x] = value + xp.asarray(noise, dtype=value.dtype)

    return lw.instr(run_perturb)


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


register_lowering(Eval, _lower_eval)
register_lowering(VJP, _lower_vjp, group=lambda s: (s.node, s.src, s.at, s.out or s.at))
register_lowering(Seed, _lower_seed)
register_lowering(Relax, _lower_relax)
register_lowering(Update, _lower_update)
register_lowering(GradientUnits, _lower_gradient_units)
register_lowering(Error, _lower_error)
register_lowering(Snapshot, _lower_snapshot)
register_lowering(Clear, _lower_clear)
register_lowering(Perturb, _lower_perturb)
register_lowering(Assign, _lower_assign)
register_lowering(Zero, _lower_zero)
register_lowering(PriorError, _lower_prior_error)
register_lowering(MaskedUpdate, _lower_masked_update)
register_lowering(Energy, _lower_energy)


# ------------------------------------------------------------------ the driver
def _groups(steps: list) -> Iterable[list]:
    """Consecutive steps that lower to one kernel (see ``register_lowering``'s ``group``)."""
    i = 0
    while i < len(steps):
        key = GROUPS.get(type(steps[i]))
        j = i + 1
        if key is not None:
            k = key(steps[i])
            while j < len(steps) and type(steps[j]) is type(steps[i]) and key(steps[j]) == k:
                j += 1
        yield steps[i:j]
        i = j


def _lower_steps(lw: Lowerer, steps: list, first: int) -> list[Instr]:
    out, index = [], first
    for group in _groups(steps):
        lowering = lw.overrides.get(type(group[0])) or LOWERINGS.get(type(group[0]))
        if lowering is None:
            raise TypeError(f"the executor cannot run step {group[0]!r}: no lowering registered")
        lw.step = index
        out.append(lowering(lw, group))
        index += len(group)
    return out


def _snapshot_state(lw: Lowerer) -> tuple[dict, dict]:
    return dict(lw.value), dict(lw.saved_at)


@without_cycle_collection
def lower(
    schedule: Schedule,
    xp: Any,
    kernels: Any,
    dtype: Any,
    outputs: Iterable[tuple[str, str]] = (),
    keep: bool = False,
    overrides: Mapping[type, Lowering] | None = None,
) -> Lowered:
    """``schedule`` (on the graph it carries) as a ``Lowered`` program.  ``outputs`` are the
    (store, node) entries a caller reads after the run; every other slot is dropped after its
    last use unless ``keep``.  ``overrides`` (a backend's ``lowerings``) take precedence over
    ``LOWERINGS`` for the step kinds they name."""
    c = schedule.compiled
    if c is None:
        raise TypeError(f"schedule {schedule.algorithm!r} carries no graph to lower it for")
    lw = Lowerer(xp, kernels, c, dtype)
    lw.overrides = dict(overrides or {})
    leaves = {}
    for name, spec in c.nodes.items():
        if spec.op is None:
            leaves[lw.write("x", name)] = name
    lw._writes = set()
    items: list[Instr | Loop] = []
    index = 0
    for sec in schedule.sections:
        steps = [s for s in sec.steps if not isinstance(s, Note)]
        if sec.repeat == 1:
            items += _lower_steps(lw, steps, index)
        else:
            # Decide the residual reuse of the body's VJPs from two iterations' worth of static
            # state (the first entered from before the loop, the second from the first), then
            # lower it once with those decisions; one more dry pass leaves the state a loop of
            # two or more iterations ends in.
            before = _snapshot_state(lw)
            decided: dict[int, bool] = {}
            for _ in range(2):
                lw.decided = {}
                _lower_steps(lw, steps, index)
                for k, v in lw.decided.items():
                    decided[k] = decided.get(k, True) and v
            lw.value, lw.saved_at = before
            lw.force = decided
            body = _lower_steps(lw, steps, index)
            _lower_steps(lw, steps, index)
            lw.force = {}
            items.append(Loop(sec.repeat, body))
        index += len(steps)
    lw._reads, lw._writes = set(), set()
    out_slots = tuple(lw.layout.slot(store, node) for store, node in outputs)
    if not keep:
        _plan_frees(items, set(out_slots))
    lowered = Lowered(schedule, items, lw.layout.nslots, lw.layout, leaves, out_slots)
    lowered.kernels = [_kernel(item) for item in items]
    return lowered


def _plan_frees(items: list, live: set[int]) -> set[int]:
    """Backward liveness: set each instruction's ``frees`` to the slots it touches that no
    later instruction reads; returns the slots live before ``items``.  A loop's body is solved
    to a fixed point, since what its start reads is live at its end (the next iteration).
    ``live`` is updated in place: O(reads + writes) per instruction, not O(live slots)."""
    for item in reversed(items):
        if isinstance(item, Loop):
            out = set(live)
            while True:
                entry = _plan_frees(item.body, set(out))
                if live | entry == out:
                    break
                out = live | entry
            live = entry
        else:
            item.frees = tuple(sorted((item.reads | item.writes) - live))
            live.difference_update(item.writes)
            live.update(item.reads)
    return live


def _kernel(item: Instr | Loop) -> Kernel:
    if isinstance(item, Loop):
        body, count = [_kernel(i) for i in item.body], item.count

        def run_loop(slots: list, batch: int) -> None:
            for _ in range(count):
                for kernel in body:
                    kernel(slots, batch)

        return run_loop
    run, frees = item.run, item.frees
    if not frees:
        return run
    if len(frees) == 1:
        (only,) = frees

        def run_freeing_one(slots: list, batch: int) -> None:
            run(slots, batch)
            slots[only] = None

        return run_freeing_one

    def run_freeing(slots: list, batch: int) -> None:
        run(slots, batch)
        for i in frees:
            slots[i] = None

    return run_freeing
