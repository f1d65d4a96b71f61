"""Inference with any nodes clamped (``Program.infer``): predictive coding as an energy model.

Clamp the nodes of ``observed`` (inputs, targets or any op node) to the arrays given, make the
``free`` nodes value nodes (op nodes whatever the placement, the loss's operands, and inputs or
targets, which become *latent* leaves with the prior ``N(0, I)``), and relax every value node
by gradient descent on the energy with IL's local rules.  The schedule is IL's dense dynamics
under that clamping (``algorithms/generative.py``); with nothing clamped or freed beyond the
usual, it is IL's schedule without the increments, and the values it reaches are IL's.

The energy, per example: ``F = sum_v 0.5 * ||x_v - mu_v||^2`` over the value nodes and clamped
vertices, ``+ 0.5 * ||z||^2`` for each latent leaf ``z``, ``+ l(mu_O)`` (the loss at the output
predictions) when the loss's operands are clamped through it, which is when none of them is
observed or free.  ``spec/predictive-coding.md`` ("Inference with any nodes clamped").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backends as _backends
from . import checks
from .algorithms.generative import inference_schedule, latent_problem
from .algorithms.pc import Clamping, placement_problem, structure
from .errors import FeedError, OptionError
from .graph import Node
from .schedule import ENERGY_STORE, Schedule


@dataclass
class Inference:
    """What ``Program.infer`` leaves.

    ``values``: node -> ``(B, *shape)`` backend array after relaxing, for every value node
    (latent leaves included), clamped vertex and output (an output clamped through the loss
    holds its prediction; its error is ``-dl/dmu``); ``errors``: their errors ``x - mu``;
    ``energy``: ``(steps + 1, B)`` float64 on the host, the energy of each example at the
    errors of every step and at the final ones; ``schedule``: what ran (``print`` it)."""

    values: dict[str, Any]
    errors: dict[str, Any]
    energy: np.ndarray
    schedule: Schedule


def _names(prog: Any, items: Any, what: str) -> list[str]:
    if isinstance(items, (str, Node)):
        items = [items]
    try:
        listed = list(items)
    except TypeError:
        raise OptionError(
            f"infer: {what} must be a list of node names, got {items!r:.60}"
        ) from None
    return [prog._node_name(n) for n in listed]


def _keyed(prog: Any, mapping: Any, what: str) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise OptionError(
            f"infer: {what} must be a dict node -> array, got {type(mapping).__name__}"
        )
    return {prog._node_name(k): v for k, v in mapping.items()}


def _host(value: Any, name: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(_backends.to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise FeedError(f"infer: {what} {name!r} is not an array of numbers") from None
    return array


def _per_example(array: np.ndarray, name: str, shape: tuple, what: str, size: int | None) -> int:
    """Check ``array`` is ``(B,) + shape``; returns B (FeedError names the node)."""
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape):
        raise FeedError(
            f"infer: {what} {name!r} has shape {tuple(array.shape)}, expected (batch,) + {shape}"
        )
    if len(array) == 0:
        raise FeedError(f"infer: {what} {name!r} is an empty batch")
    if size is not None and len(array) != size:
        raise FeedError(
            f"infer: {what} {name!r} has batch size {len(array)} but the other arrays have {size}"
        )
    return len(array)


def _check_role(c: Any, name: str, what: str) -> None:
    spec = c.nodes[name]
    if spec.kind == "param":
        raise OptionError(
            f"infer: {what} names {name!r}, a parameter; parameters are given in params"
        )
    if spec.kind == "const":
        raise OptionError(f"infer: {what} names {name!r}, a constant; it cannot be inferred")
    if name == c.loss:
        raise OptionError(
            f"infer: {what} names the loss {name!r}; observe its operands or targets instead"
        )
    if spec.op is not None:
        if not spec.batched:
            raise OptionError(
                f"infer: {what} names {name!r}, which has no batch axis (a function of "
                "parameters only)"
            )
        if name not in c.feeds_loss:
            raise OptionError(
                f"infer: {what} names {name!r}, which does not reach the loss {c.loss!r}"
            )


def infer(
    prog: Any,
    params: Mapping,
    observed: Mapping,
    free: Any = (),
    steps: int = 20,
    rate: float = 0.1,
    init: Mapping | None = None,
    mask: Mapping | None = None,
    value_nodes: Any = "all",
) -> Inference:
    """Relax the value nodes of ``prog`` with ``observed`` clamped; see the module docstring.

    ``observed``: node -> ``(B, *shape)`` array (inputs and targets are fed; op nodes are held
    at the array); ``free``: nodes made value nodes; ``init``: value node -> ``(B, *shape)``
    starting value (default: the feed-forward value, 0 for a latent leaf); ``mask``: observed
    op node -> 0/1 array broadcastable to ``(B, *shape)``, 1 at the entries that are observed
    (the others are free and start at the feed-forward value); ``steps`` inference steps at
    ``rate``; ``value_nodes`` the placement (as the PC algorithms').  Unknown nodes raise
    ``GraphError``; a node both observed and free, or one that cannot play its part,
    ``OptionError``; an array of the wrong shape ``FeedError``; each names the node.
    """
    c = prog.compiled
    obs = _keyed(prog, observed, "observed")
    freed = _names(prog, free, "free")
    given = _keyed(prog, init, "init")
    masks = _keyed(prog, mask, "mask")
    for name in freed:
        if name in obs:
            raise OptionError(
                f"infer: node {name!r} is both observed and free; clamp it or infer it"
            )
    if len(set(freed)) != len(freed):
        raise OptionError(f"infer: free lists a node twice: {freed}")
    for name in obs:
        _check_role(c, name, "observed")
    for name in freed:
        _check_role(c, name, "free")
        if c.nodes[name].op is None:
            why = latent_problem(c, name, "free leaf")
            if why:
                raise OptionError(f"infer: {why}")
    for name in masks:
        if name not in obs or c.nodes[name].op is None:
            raise OptionError(
                f"infer: mask for {name!r}, which is not an observed op node (a mask marks "
                "the observed entries of a node held at the observed array)"
            )
    steps = checks.scalar(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 < steps <= checks.MAX_COUNT:
        raise OptionError(f"infer: steps={steps!r} must be an int from 1 to {checks.MAX_COUNT:,}")
    rate = checks.scalar(rate)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise OptionError(f"infer: rate={rate!r} must be a finite number > 0")
    if rate <= 0:
        raise OptionError(f"infer: rate={rate!r} must be a finite number > 0")
    why = placement_problem(value_nodes)
    if why:
        raise OptionError(f"infer: value_nodes={value_nodes!r} {why}")
    placement = value_nodes if isinstance(value_nodes, str) else tuple(value_nodes)

    ops = [n for n in obs if c.nodes[n].op is not None]
    clamping = Clamping(
        observed=tuple(n for n in ops if n not in masks),
        masked=tuple(n for n in ops if n in masks),
        free=tuple(freed),
        initialised=tuple(given),
    )
    st = structure(c, placement, clamping)
    for name in given:
        if name not in st.value_set:
            raise OptionError(
                f"infer: init gives {name!r}, which is not a value node here (free nodes and "
                f"the placement's value nodes are: {', '.join(st.values) or 'none'})"
            )

    # The arrays: leaves are fed as a batch; op nodes' values go to the stores obs, free, init.
    batch = {n: v for n, v in obs.items() if c.nodes[n].op is None}
    size = None
    for v in batch.values():
        shape = getattr(v, "shape", None)
        size = int(shape[0]) if shape else size
    preset: dict[tuple[str, str], Any] = {}
    to_device = lambda a: prog.backend.asarray(a, prog.dtype)  # noqa: E731
    for name in ops:
        array = _host(obs[name], name, "observed")
        size = _per_example(array, name, c.nodes[name].shape, "observed", size)
        if name in masks:
            m = _host(masks[name], name, "mask")
            try:
                m = np.broadcast_to(m, array.shape)
            except ValueError:
                raise FeedError(
                    f"infer: mask {name!r} has shape {m.shape}, which does not broadcast to the "
                    f"observed array's {array.shape}"
                ) from None
            if not np.all((m == 0) | (m == 1)):
                raise FeedError(f"infer: mask {name!r} must hold 0 (free) and 1 (observed) only")
            preset[("free", name)] = to_device(1.0 - m)
            array = np.where(m == 1, array, 0.0)
        if not np.all(np.isfinite(array)):
            raise FeedError(f"infer: observed {name!r} holds a NaN or infinity")
        preset[("obs", name)] = to_device(array)
    for name, value in given.items():
        array = _host(value, name, "init")
        size = _per_example(array, name, c.nodes[name].shape, "init", size)
        preset[("init", name)] = to_device(array)

    schedule = prog.cached_schedule(
        ("infer", clamping, steps, float(rate), placement),
        lambda: inference_schedule(c, clamping, steps, float(rate), placement),
    )
    needed = prog._lowered(schedule, keep=True).needed
    for name in sorted(needed - set(batch)):
        if c.nodes[name].kind in ("input", "target"):
            raise OptionError(
                f"infer: {name!r} feeds the nodes being inferred but is neither observed nor "
                f"free; observe it, or list it (or a node it feeds) in free"
            )
    for name in batch:
        if name not in needed:
            hint = (
                ""
                if st.loss_term
                else " (the loss is out of the energy: one of its operands is observed or free)"
            )
            raise OptionError(
                f"infer: {name!r} is observed but nothing inferred depends on it{hint}"
            )

    run = prog.run(schedule, params, batch, keep=True, preset=preset)
    shown = (*st.values, *st.clamped, *st.outputs)
    values = {n: run.value(n) for n in shown}
    errors = {n: run.value(n, "e") for n in shown}
    trace = run.value(c.loss, ENERGY_STORE) or []
    size = run.batch_size
    energy = np.stack(
        [
            np.broadcast_to(np.asarray(_backends.to_numpy(f), dtype=np.float64), (size,))
            for f in trace
        ]
    )
    return Inference(values, errors, energy, schedule)


# ------------------------------------------------------------------ generative graphs
def generative_nodes(prog: Any) -> tuple[str, str]:
    """``(top, bottom)`` of a generative graph such as ``pc.models.generator``: the loss
    compares the bottom, an op node, with a float leaf of its shape (the data), and the top is
    the one other float leaf, a vector, that feeds the network.  ``OptionError`` when the graph
    is not of that form."""
    c = prog.compiled
    operands = c.nodes[c.loss].operands
    bottoms = [o for o in dict.fromkeys(operands) if c.nodes[o].op is not None]
    data = [
        o
        for o in operands
        if c.nodes[o].op is None
        and c.nodes[o].dtype == "float"
        and bottoms
        and c.nodes[o].shape == c.nodes[bottoms[0]].shape
    ]
    tops = [
        n
        for n in c.order
        if c.nodes[n].kind in ("input", "target")
        and c.nodes[n].dtype == "float"
        and len(c.nodes[n].shape) == 1
        and n not in operands
    ]
    if len(tops) != 1 or len(bottoms) != 1 or len(data) != 1:
        raise OptionError(
            f"graph {c.name!r} is not a generative graph: one top (a float vector leaf "
            f"feeding the network; found {tops or 'none'}) and one bottom (an op the loss "
            f"compares with a float leaf of its shape, the data; found {bottoms or 'none'}, "
            f"compared with {data or 'no such leaf'}); see pcgraph.models.generator"
        )
    return tops[0], bottoms[0]


def generate(
    prog: Any,
    params: Mapping,
    top: Any,
    steps: int = 50,
    rate: float = 0.1,
    value_nodes: Any = "all",
) -> tuple[Any, Inference]:
    """Clamp the top of a generative graph to ``top`` ``(B, classes)`` (one-hot labels, or
    any code) and relax the rest, the bottom free: returns the bottom ``(B, *shape)`` and the
    ``Inference``.  ``value_nodes``: the placement (use the one the network was trained with)."""
    top_node, bottom = generative_nodes(prog)
    result = infer(prog, params, {top_node: top}, [bottom], steps, rate, value_nodes=value_nodes)
    return result.values[bottom], result


def complete(
    prog: Any,
    params: Mapping,
    data: Any,
    given: Any,
    steps: int = 300,
    rate: float = 0.1,
    value_nodes: Any = "all",
) -> tuple[Any, Inference]:
    """Clamp the entries of ``data`` ``(B, *shape)`` where ``given`` (0/1, broadcastable) is 1
    at the bottom of a generative graph, infer the top as a latent (prior ``N(0, I)``) and the
    rest: returns the completed bottom ``(B, *shape)`` (the given entries unchanged) and the
    ``Inference``.  The inference rate must stay below 2 / (the energy's largest curvature),
    which grows with the weights: fewer value nodes (``value_nodes="layers"``) put the
    activations' derivatives between the weights and allow larger rates."""
    top_node, bottom = generative_nodes(prog)
    result = infer(
        prog,
        params,
        {bottom: data},
        [top_node],
        steps,
        rate,
        mask={bottom: given},
        value_nodes=value_nodes,
    )
    return result.values[bottom], result


__all__ = ["Inference", "infer", "generative_nodes", "generate", "complete"]
