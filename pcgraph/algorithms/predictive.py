"""The predictive-coding algorithms zil, il and fpa, on the schedules of ``pc.py`` (il-prox, which
brings step kinds of its own, is in ``ilprox.py``)."""

from __future__ import annotations

import math
from typing import Any

from pcgraph import checks
from pcgraph.algorithms.base import (
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
    pc_schedule,
    placement_problem,
    structure,
    wavefront_sections,
)
from pcgraph.compile import Compiled
from pcgraph.errors import OptionError
from pcgraph.schedule import Schedule


def _nonneg(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "must be a finite number >= 0"


def _timing(v: Any) -> str | None:
    if isinstance(v, str) and v in ("exact", "end"):
        return None
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) <= checks.MAX_COUNT:
        return None
    return "must be 'exact', 'end' or an int offset of the update step"


def _optional_steps(v: Any) -> str | None:
    return None if v is None else positive_int(v)


def _optional_rate(v: Any) -> str | None:
    return None if v is None else finite_rate(v)


def _seed(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= checks.MAX_SEED
    return None if ok else "must be an int >= 0 (a random seed)"


def pc_view(
    c: Compiled, levelling: str = "longest", value_nodes: str | tuple = "all"
) -> tuple[Compiled, PCStructure]:
    """The compiled graph an algorithm runs on (identity-levelled if asked) and its structure
    under the value-node placement ``value_nodes``."""
    st = structure(c, value_nodes)
    if levelling == "identity":
        if st.folded:
            raise OptionError(
                "levelling='identity' (and Z-IL's dense dynamics) relay errors between value "
                "nodes; they need value_nodes='all'"
            )
        c = identity_levelled(c, st)
        st = structure(c)
    return c, st


VALUE_NODES = Option(
    "all",
    placement_problem,
    "'all' batched ops, 'layers' (nodes marked with pc.layer) or a list of node names",
    normalise=lambda v: v if isinstance(v, str) else tuple(v),
)


# ------------------------------------------------------------------ schedules
def zil_is_exact(opts: dict) -> bool:
    return opts["rate"] == 1.0 and opts["init_noise"] == 0.0 and opts["timing"] == "exact"


def zil_schedule(c: Compiled, opts: dict) -> Schedule:
    """Z-IL: the wavefront schedule, or, with ``dense=True`` or an ablation option, the literal
    dense dynamics on the identity-levelled graph (where they are exact)."""
    if opts["dense"] or not zil_is_exact(opts):
        lc, st = pc_view(c, "identity", opts["value_nodes"])
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
        return pc_schedule("zil", c, opts, sections, lc)
    lc, st = pc_view(c, opts["levelling"], opts["value_nodes"])
    return pc_schedule("zil", c, opts, wavefront_sections(lc, st), lc)


def dense_schedule(
    name: str, c: Compiled, opts: dict, fixed: bool, **extra: tuple
) -> tuple[Schedule, PCStructure]:
    """IL-style dense dynamics for ``opts["steps"]`` steps (None: the graph's depth)."""
    _, st = pc_view(c, value_nodes=opts["value_nodes"])
    steps = opts["steps"] if opts["steps"] is not None else max(st.depth, 1)
    at = dict.fromkeys((*st.outputs, *st.values, st.loss), steps)
    sections = dense_sections(c, st, steps, float(opts["rate"]), fixed, at, **extra)
    return pc_schedule(name, c, opts, sections, c), st


def il_schedule(c: Compiled, opts: dict) -> Schedule:
    return dense_schedule("il", c, opts, fixed=False)[0]


def fpa_schedule(c: Compiled, opts: dict) -> Schedule:
    return dense_schedule("fpa", c, opts, fixed=True)[0]


register(
    Algorithm(
        "zil",
        "zero-divergence inference learning (equals backprop exactly)",
        zil_schedule,
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
            "noise_seed": Option(0, _seed, "seed of init_noise"),
            "value_nodes": VALUE_NODES,
        },
    )
)
register(
    Algorithm(
        "il",
        "inference learning: strict predictive coding, predictions recomputed every step",
        il_schedule,
        {
            "steps": Option(20, positive_int, "inference steps"),
            "rate": Option(0.1, finite_rate, "inference rate gamma"),
            "value_nodes": VALUE_NODES,
        },
    )
)
register(
    Algorithm(
        "fpa",
        "predictive coding under the fixed prediction assumption (Rosenbaum 2022)",
        fpa_schedule,
        {
            "steps": Option(None, _optional_steps, "sweeps (default: the graph's depth)"),
            "rate": Option(1.0, finite_rate, "inference rate eta"),
            "value_nodes": VALUE_NODES,
        },
    )
)
