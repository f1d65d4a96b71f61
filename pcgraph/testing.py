"""Checks for users and for pcgraph's own tests: VJPs and gradients against finite differences.

- ``check_vjp(op)``: an op record's VJP against central differences of its forward, in
  float64, on each of its examples (what ``tests/test_ops.py`` runs over the whole table, and
  what a user adding an op runs on theirs);
- ``check_grads(prog, params, batch)``: a program's backprop gradients against central
  differences of its loss along random directions (``pcgraph verify`` reports these);
- ``random_batch(model, size)``: random feeds for a graph's or program's inputs and targets.

Each check returns one ``Check`` per comparison (never asserts), so a caller can print, count
or assert as it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import infer
from .ops import OpDef


@dataclass(frozen=True)
class Check:
    """One comparison: ``analytic`` (VJP or gradient along a direction) against the central
    difference ``numeric``; ``error`` is their relative difference."""

    what: str
    analytic: float
    numeric: float
    error: float
    passed: bool

    def __str__(self) -> str:
        return (
            f"{'PASS' if self.passed else 'FAIL'}  {self.what}: analytic {self.analytic:+.9g} "
            f"vs finite difference {self.numeric:+.9g}, rel err {self.error:.1e}"
        )


def _relative(a: float, b: float, floor: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), floor)


@dataclass(frozen=True)
class ExampleCase:
    """An op example made concrete: the node's inferred ``shape``/``batched``/``attrs``
    (``infer``'s dict), float64 or int64 operand arrays with a leading batch axis where
    batched, each operand's dtype name, and the op's lowered attributes."""

    node: dict
    operands: list
    dtypes: list
    attrs: dict


def example_case(op: OpDef, index: int, batch: int = 3) -> ExampleCase:
    """``op.examples[index]`` made concrete, operands drawn from ``default_rng(index)``:
    standard normal floats (uniform in [0.5, 2] for a ``"positive"`` domain), integer operands
    uniform in ``[0, example.int_high)``."""
    ex = op.examples[index]
    rng = np.random.default_rng(index)
    dtypes = [
        "int64" if (i in op.int_operands and ex.int_high) else "float"
        for i in range(len(ex.shapes))
    ]
    info = [
        {"shape": s, "batched": b, "dtype": d} for s, b, d in zip(ex.shapes, ex.batched, dtypes)
    ]
    node = infer(op, "node", [f"a{i}" for i in range(len(ex.shapes))], info, dict(ex.attrs))
    arrays = []
    for s, b, d in zip(ex.shapes, ex.batched, dtypes):
        if op.elementwise and b and len(s) < len(node["shape"]):
            s = (1,) * (len(node["shape"]) - len(s)) + tuple(s)  # the DSL's padding reshape
        full = ((batch,) if b else ()) + tuple(s)
        if d == "int64":
            arrays.append(rng.integers(0, ex.int_high, size=full))
        elif ex.domain == "positive":
            arrays.append(rng.uniform(0.5, 2.0, size=full))
        else:
            arrays.append(rng.standard_normal(full))
    attrs = op.lowered(node["attrs"], 1 if node["batched"] else 0)
    return ExampleCase(node, arrays, dtypes, attrs)


def check_vjp(op: OpDef, batch: int = 3, h: float = 1e-6, tol: float = 1e-6) -> list[Check]:
    """``op``'s VJP against central finite differences in float64, on each of its examples:
    with a random cotangent ``g`` and, per float operand, a random direction ``v``,
    ``<vjp(g), v>`` against ``<g, (f(x + h v) - f(x - h v)) / 2h>`` to a relative ``tol``.
    A forward whose shape differs from the shape rule's, or a cotangent whose shape differs
    from its operand's, is a failed check too."""
    out_checks = []
    for index, ex in enumerate(op.examples):
        case = example_case(op, index, batch)
        rng = np.random.default_rng((index, 1))
        xs, kw = case.operands, case.attrs
        where = f"{op.name} example {index}{f' {dict(ex.attrs)}' if ex.attrs else ''}"
        out = op.forward(np, xs, **kw)
        expected = ((batch,) if case.node["batched"] else ()) + tuple(case.node["shape"])
        if out.shape != expected:
            out_checks.append(
                Check(f"{where}: forward shape {out.shape}, rule {expected}", 0, 0, np.inf, False)
            )
            continue
        g = rng.standard_normal(out.shape)
        for i, x in enumerate(xs):
            if case.dtypes[i] == "int64":
                continue  # integer operands (labels, ids) get no cotangent
            v = rng.standard_normal(x.shape)
            plus = op.forward(np, [*xs[:i], x + h * v, *xs[i + 1 :]], **kw)
            minus = op.forward(np, [*xs[:i], x - h * v, *xs[i + 1 :]], **kw)
            numeric = float(np.sum(g * (plus - minus)) / (2 * h))
            cot = op.vjp(np, i, g, out, xs, **kw)
            what = f"{where}, operand {i} {tuple(x.shape)}"
            if cot.shape != x.shape:
                out_checks.append(
                    Check(f"{what}: cotangent shape {cot.shape}", np.nan, numeric, np.inf, False)
                )
                continue
            analytic = float(np.sum(cot * v))
            err = _relative(analytic, numeric, 1e-6)
            out_checks.append(Check(what, analytic, numeric, err, err <= tol))
    return out_checks


def check_grads(
    prog: Any,
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    directions: int = 3,
    h: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
) -> list[Check]:
    """``prog``'s backprop gradient of each parameter against central differences of the
    batch-mean loss along ``directions`` random directions; one ``Check`` per parameter, the
    worst direction's.  Compile ``prog`` in float64 for tolerances near 1e-6."""
    from .backends import to_numpy

    rng = np.random.default_rng(seed)
    grads = to_numpy(prog.grads(params, batch, algorithm="bp"))
    host = to_numpy(dict(params))
    checks = []
    for name in prog.params:
        worst = Check(f"param {name!r}", 0.0, 0.0, 0.0, True)
        for _ in range(directions):
            v = rng.standard_normal(host[name].shape)
            plus = prog.loss({**host, name: host[name] + h * v}, batch)
            minus = prog.loss({**host, name: host[name] - h * v}, batch)
            numeric = (plus - minus) / (2 * h)
            analytic = float(np.sum(grads[name] * v))
            err = _relative(analytic, numeric, 1e-8)
            if err >= worst.error:
                worst = Check(f"param {name!r}", analytic, numeric, err, err <= tol)
        checks.append(worst)
    return checks


def random_batch(
    model: Any,
    size: int = 4,
    seed: int = 0,
    classes: int | None = None,
    dtype: str = "float64",
) -> dict[str, np.ndarray]:
    """Random feeds of ``size`` examples for the inputs and targets of ``model`` (a
    ``pc.Graph`` or a ``pc.Program``), drawn in that order from ``default_rng(seed)``:
    standard normal floats of ``dtype``, integer leaves uniform in ``[0, classes)`` (default:
    the classes the graph's cross-entropy or embedding indexes, else 1)."""
    from .program import Program

    rng = np.random.default_rng(seed)
    label_classes: Mapping[str, int] = {}
    names = list(model.inputs) + list(model.targets)
    if isinstance(model, Program):
        specs = {n: model.compiled.nodes[n] for n in names}
        label_classes = model.compiled.label_classes
    else:
        specs = {n: model.node(n) for n in names}
        if classes is None and any(s.dtype == "int64" for s in specs.values()):
            from .compile import analyse

            label_classes = analyse(model).label_classes
    batch = {}
    for name in names:
        shape = (size, *specs[name].shape)
        if specs[name].dtype == "int64":
            high = classes if classes is not None else label_classes.get(name, 1)
            batch[name] = rng.integers(0, high, size=shape)
        else:
            batch[name] = rng.standard_normal(shape).astype(dtype, copy=False)
    return batch
