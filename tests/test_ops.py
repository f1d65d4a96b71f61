"""Every op in the table: its VJP matches central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

from pcgraph.graph import infer
from pcgraph.ops import OPS, Example

B = 3
CASES = [(name, i, ex) for name, op in OPS.items() for i, ex in enumerate(op.examples)]


def test_every_op_has_examples_to_check() -> None:
    assert not [name for name, op in OPS.items() if not op.examples]


def _operands(op, ex: Example, rng):  # noqa: ANN001, ANN202
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
        full = ((B,) if b else ()) + tuple(s)
        if d == "int64":
            arrays.append(rng.integers(0, ex.int_high, size=full))
        elif ex.domain == "positive":
            arrays.append(rng.uniform(0.5, 2.0, size=full))
        else:
            arrays.append(rng.standard_normal(full))
    return node, arrays, dtypes


@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_vjp_matches_finite_differences(name: str, index: int, example: Example) -> None:
    op = OPS[name]
    rng = np.random.default_rng(index)
    node, xs, dtypes = _operands(op, example, rng)
    lowered = op.lowered(node["attrs"], 1 if node["batched"] else 0)
    out = op.forward(np, xs, **lowered)
    expected = ((B,) if node["batched"] else ()) + node["shape"]
    assert out.shape == expected, f"forward gives {out.shape}, shape rule says {expected}"
    g = rng.standard_normal(out.shape)
    h = 1e-6
    for i, x in enumerate(xs):
        if dtypes[i] == "int64":
            continue
        v = rng.standard_normal(x.shape)
        plus = op.forward(np, [*xs[:i], x + h * v, *xs[i + 1 :]], **lowered)
        minus = op.forward(np, [*xs[:i], x - h * v, *xs[i + 1 :]], **lowered)
        fd = np.sum(g * (plus - minus)) / (2 * h)
        cot = op.vjp(np, i, g, out, xs, **lowered)
        assert cot.shape == x.shape, f"operand {i}: cotangent {cot.shape} vs operand {x.shape}"
        an = np.sum(cot * v)
        assert abs(an - fd) <= 1e-6 * max(abs(fd), abs(an), 1e-6), f"operand {i}: {an} vs {fd}"


@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_float32_operands_give_float32_values_and_cotangents(
    name: str, index: int, example: Example
) -> None:
    """No rule promotes silently: NumPy 2 turns ``f32 * np.float64(...)`` into float64."""
    op = OPS[name]
    node, xs, dtypes = _operands(op, example, np.random.default_rng(index))
    xs = [x if d == "int64" else x.astype(np.float32) for x, d in zip(xs, dtypes)]
    lowered = op.lowered(node["attrs"], 1 if node["batched"] else 0)
    out = op.forward(np, xs, **lowered)
    assert out.dtype == np.float32, f"forward gives {out.dtype}"
    g = np.ones(out.shape, dtype=np.float32)
    for i, d in enumerate(dtypes):
        if d != "int64":
            cot = op.vjp(np, i, g, out, xs, **lowered)
            assert cot.dtype == np.float32, f"operand {i}: cotangent is {cot.dtype}"
