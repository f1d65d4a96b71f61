"""The predictive-coding algorithms: zil, il, fpa and il-prox, all on the schedules of ``pc.py``."""

from __future__ import annotations

import math
from typing import Any

from pcgraph.algorithms import (
    Algorithm,
    Option,
    choice,
    finite_rate,
    positive_int,
    register,
)
from pcgraph.algorithms.pc import (
    PCStructure,
    dense_sections,
    identity_levelled,
    structure,
    wavefront_sections,
)
from pcgraph.compile import Compiled
from pcgraph.schedule import Schedule


def _nonneg(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "must be a finite number >= 0"


def _timing(v: Any) -> str | None:
    if v in ("exact", "end") or (isinstance(v, int) and not isinstance(v, bool)):
        return None
    return "must be 'exact', 'end' or an int offset of the update step"


def _optional_steps(v: Any) -> str | None:
    return None if v is None else positive_int(v)


def _optional_rate(v: Any) -> str | None:
    return None if v is None else finite_rate(v)


def _int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "must be an int"


def pc_view(c: Compiled, levelling: str = "longest") -> tuple[Compiled, PCStructure]:
    """The compiled graph an algorithm runs on (identity-levelled if asked) and its structure."""
    st = structure(c)
    if levelling == "identity":
        c = identity_levelled(c, st)
        st = structure(c)
    return c, st


# ------------------------------------------------------------------ schedules
def zil_is_exact(opts: dict) -> bool:
    return opts["rate"] == 1.0 and opts["init_noise"] == 0.0 and opts["timing"] == "exact"


def zil_schedule(c: Compiled, opts: dict) -> Schedule:
    """Z-IL: the wavefront schedule, or, with ``dense=True`` or an ablation option, the literal
    dense dynamics on the identity-levelled graph (where they are exact)."""
    if opts["dense"] or not zil_is_exact(opts):
        lc, st = pc_view(c, "identity")
        offset = {"exact": 0, "end": None}.get(opts["timing"], opts["timing"])
        at = {
            v: st.depth if offset is None else min(max(st.level.get(v, 0) + offset, 0), st.depth)
            for v in (*st.outputs, *st.values, st.loss)
        }
        sections = dense_sections(
            lc,
            st,
            st.depth + 1,
            float(opts["rate"]),
            False,
            at,
            float(opts["init_noise"]),
            opts["noise_seed"],
        )
    else:
        lc, st = pc_view(c, opts["levelling"])
        return Schedule("zil", c.name, tuple(opts.items()), wavefront_sections(lc, st))
    return Schedule("zil", c.name, tuple(opts.items()), sections)


def _dense(name: str, c: Compiled, opts: dict, fixed: bool, prox: tuple | None = None) -> Schedule:
    _, st = pc_view(c)
    steps = opts["steps"] if opts["steps"] is not None else max(st.depth, 1)
    at = dict.fromkeys((*st.outputs, *st.values, st.loss), steps)
    sections = dense_sections(c, st, steps, float(opts["rate"]), fixed, at, prox=prox)
    return Schedule(name, c.name, tuple(opts.items()), sections)


def il_schedule(c: Compiled, opts: dict) -> Schedule:
    return _dense("il", c, opts, fixed=False)


def fpa_schedule(c: Compiled, opts: dict) -> Schedule:
    return _dense("fpa", c, opts, fixed=True)


def ilprox_schedule(c: Compiled, opts: dict) -> Schedule:
    if opts["alpha"] is None:
        from pcgraph.errors import OptionError

        raise OptionError(
            "algorithm 'il-prox' needs alpha= (the learning rate of the proximal "
            "step; train_step passes the optimiser's lr)"
        )
    return _dense("il-prox", c, opts, fixed=False, prox=(float(opts["alpha"]), opts["eps"]))


# ------------------------------------------------------------------ running
def compiled_for(program: Any, schedule: Schedule) -> Compiled:
    """The graph a schedule was emitted for: the program's own, or its identity-levelled form.

    Answered once per schedule, not by a walk over its steps every call (the program keeps its
    schedules, so their ids stay theirs).
    """
    key = ("compiled for", id(schedule))
    if key not in program._derived:
        names = {s.node for s in schedule.steps if hasattr(s, "node")}
        own = names <= set(program.compiled.nodes)
        program._derived[key] = program.compiled if own else _identity_levelled(program)
    return program._derived[key]


def _identity_levelled(program: Any) -> Compiled:
    """The program's graph with identity relays (``levelling="identity"``), built once."""
    key = ("identity-levelled",)
    if key not in program._derived:
        program._derived[key] = pc_view(program.compiled, "identity")[0]
    return program._derived[key]


def pc_grads(name: str):  # noqa: ANN201
    def grads(program: Any, params: Any, batch: Any, opts: dict) -> tuple[dict, dict]:
        sched = program.schedule(name, **opts)
        c = compiled_for(program, sched)
        state, size = program._state(params, batch, [program.loss_node])
        state.update(e={}, s={}, d={}, mu={})
        program.execute(sched, c, state, size)
        d = state["d"]  # increments are taken in gradient units: they are the gradients
        out = {p: d[p] if p in d else program.zeros_like(p) for p in program.params}
        state["x"] = state["ff"]  # the loss reported is the feed-forward one
        return out, {"state": state, "batch_size": size}

    return grads


register(
    Algorithm(
        "zil",
        "zero-divergence inference learning (equals backprop exactly)",
        zil_schedule,
        pc_grads("zil"),
        {
            "levelling": Option(
                "longest",
                choice("longest", "identity"),
                "'longest': level = longest path to the output; 'identity': relays",
            ),
            "rate": Option(1.0, finite_rate, "inference rate (C3: 1)"),
            "init_noise": Option(
                0.0, _nonneg, "std of noise added to the feed-forward values (C1: 0)"
            ),
            "timing": Option(
                "exact", _timing, "increments at step = level (C2), + offset, or 'end'"
            ),
            "dense": Option(False, choice(False, True), "run the literal dense dynamics"),
            "noise_seed": Option(0, _int, "seed of init_noise"),
        },
    )
)
register(
    Algorithm(
        "il",
        "inference learning: strict predictive coding, predictions recomputed every step",
        il_schedule,
        pc_grads("il"),
        {
            "steps": Option(20, positive_int, "inference steps"),
            "rate": Option(0.1, finite_rate, "inference rate gamma"),
        },
    )
)
register(
    Algorithm(
        "fpa",
        "predictive coding under the fixed prediction assumption (Rosenbaum 2022)",
        fpa_schedule,
        pc_grads("fpa"),
        {
            "steps": Option(None, _optional_steps, "sweeps (default: the graph's depth)"),
            "rate": Option(1.0, finite_rate, "inference rate eta"),
        },
    )
)
register(
    Algorithm(
        "il-prox",
        "IL approximating implicit SGD (Alonso et al. 2022)",
        ilprox_schedule,
        pc_grads("il-prox"),
        {
            "steps": Option(25, positive_int, "inference steps"),
            "rate": Option(0.015, finite_rate, "inference rate"),
            "alpha": Option(None, _optional_rate, "learning rate of the proximal step"),
            "eps": Option(1e-8, finite_rate, "stabiliser of the presynaptic norms"),
        },
    )
)
