"""Every op in the table: its VJP matches central finite differences in float64
(``pc.testing.check_vjp``), its saved residuals and joint pullbacks agree with plain VJPs."""

from __future__ import annotations

import numpy as np
import pytest

import pcgraph as pc
from pcgraph.ops import _GEMV_MIN_SIZE, OPS, Example, mean_over, sum_over
from pcgraph.testing import check_vjp, example_case

B = 3
CASES = [(name, i, ex) for name, op in OPS.items() for i, ex in enumerate(op.examples)]


def test_every_op_has_examples_to_check() -> None:
    assert not [name for name, op in OPS.items() if not op.examples]


@pytest.mark.parametrize("name", list(OPS))
def test_vjp_matches_finite_differences(name: str) -> None:
    """``pc.testing.check_vjp`` on every example of every op of the table, in float64."""
    checks = check_vjp(OPS[name], batch=B)
    assert checks and all(c.passed for c in checks), "\n".join(map(str, checks))


def _case(name: str, index: int):  # noqa: ANN202
    case = example_case(OPS[name], index, batch=B)
    return case.node, case.operands, case.dtypes, case.attrs, np.random.default_rng((index, 2))


SAVING = [(n, i, ex) for n, i, ex in CASES if OPS[n].saves is not None]
MULTI = [(n, i, ex) for n, i, ex in CASES if OPS[n].vjps is not None]


def test_the_ops_that_keep_a_residual_or_pull_back_together_are_those_of_the_issue() -> None:
    saving = {n for n, _, _ in SAVING}
    assert {"conv2d", "max_pool2d", "softmax_cross_entropy", "layer_norm"} <= saving
    assert {"batch_norm", "gelu"} <= saving and "conv2d" in {n for n, _, _ in MULTI}


@pytest.mark.parametrize("name,index,example", SAVING, ids=[f"{n}-{i}" for n, i, _ in SAVING])
def test_a_vjp_reusing_the_forwards_residual_equals_the_one_recomputing_it(
    name: str, index: int, example: Example
) -> None:
    op = OPS[name]
    node, xs, dtypes, kw, rng = _case(name, index)
    out, saved = op.evaluate(np, xs, kw)
    assert np.array_equal(out, op.forward(np, xs, **kw))  # forward is the saving forward's out
    g = rng.standard_normal(out.shape)
    for i, d in enumerate(dtypes):
        if d == "int64":
            continue
        reused = op.pullback(np, (i,), g, out, xs, saved, kw)[0]
        fresh = op.pullback(np, (i,), g, out, xs, None, kw)[0]
        np.testing.assert_allclose(reused, fresh, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,index,example", MULTI, ids=[f"{n}-{i}" for n, i, _ in MULTI])
def test_several_cotangents_in_one_call_equal_one_call_each(
    name: str, index: int, example: Example
) -> None:
    op = OPS[name]
    node, xs, dtypes, kw, rng = _case(name, index)
    out, saved = op.evaluate(np, xs, kw)
    g = rng.standard_normal(out.shape)
    argnums = tuple(i for i, d in enumerate(dtypes) if d != "int64")
    together = op.pullback(np, argnums, g, out, xs, saved, kw)
    for i, cot in zip(argnums, together):
        np.testing.assert_allclose(cot, op.vjp(np, i, g, out, xs, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_float32_operands_give_float32_values_and_cotangents(
    name: str, index: int, example: Example
) -> None:
    """No rule promotes silently: NumPy 2 turns ``f32 * np.float64(...)`` into float64."""
    op = OPS[name]
    node, xs, dtypes, lowered, _ = _case(name, index)
    xs = [x if d == "int64" else x.astype(np.float32) for x, d in zip(xs, dtypes)]
    out = op.forward(np, xs, **lowered)
    assert out.dtype == np.float32, f"forward gives {out.dtype}"
    g = np.ones(out.shape, dtype=np.float32)
    for i, d in enumerate(dtypes):
        if d != "int64":
            cot = op.vjp(np, i, g, out, xs, **lowered)
            assert cot.dtype == np.float32, f"operand {i}: cotangent is {cot.dtype}"


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_sum_over_and_mean_over_agree_with_the_namespace_reductions(backend_name: str) -> None:
    # Every rule sums through these two; leading and trailing blocks of a large array go by
    # GEMV, others by the namespace's sum: both kinds are checked here.
    be = pc.backends.get(backend_name)
    rng = np.random.default_rng(0)
    for shape in ((3, 4, 5), (32, 24, 40)):
        _check_sums(be, shape, rng)
    assert 3 * 4 * 5 < _GEMV_MIN_SIZE <= 32 * 24 * 40
    ints = be.asarray(np.arange(12).reshape(3, 4), "int64")  # not float: the namespace's sum
    assert np.asarray(sum_over(be.xp, ints, 1)).tolist() == [6, 22, 38]
    nan = rng.standard_normal((32, 24, 40))
    nan[1, 2, 3] = np.nan
    assert np.isnan(np.asarray(sum_over(be.xp, be.asarray(nan, "float64"), 2))[1, 2])


def _check_sums(be, shape: tuple, rng: np.random.Generator) -> None:  # noqa: ANN001
    xp = be.xp
    axes_cases = [None, 0, 1, 2, -1, (0, 1), (1, 2), (0, 2), (0, 1, 2), ()]
    for dtype in ("float32", "float64"):
        host = rng.standard_normal(shape).astype(dtype)
        a = be.asarray(host, dtype)
        for axis in axes_cases:
            for keepdims in (False, True):
                where = f"{dtype} axis={axis} keepdims={keepdims}"
                got_sum = np.asarray(sum_over(xp, a, axis, keepdims))
                got_mean = np.asarray(mean_over(xp, a, axis, keepdims))
                want_sum = np.sum(host, axis=axis, keepdims=keepdims)
                want_mean = np.mean(host, axis=axis, keepdims=keepdims)
                tol = 1e-4 if dtype == "float32" else 1e-12
                assert got_sum.shape == want_sum.shape, where
                assert got_sum.dtype == want_sum.dtype == got_mean.dtype, where
                np.testing.assert_allclose(got_sum, want_sum, rtol=tol, atol=tol, err_msg=where)
                np.testing.assert_allclose(got_mean, want_mean, rtol=tol, atol=tol, err_msg=where)


@pytest.mark.parametrize("classes, labels", [(4, 6), (50, 3)])
def test_integer_labels_give_the_gradient_of_their_one_hot_rows(classes: int, labels: int) -> None:
    # Few classes: the one-hot rows are gathered from an identity; many: labels are compared.
    sce = OPS["softmax_cross_entropy"]
    rng = np.random.default_rng(0)
    z = rng.standard_normal((labels, classes))
    y = rng.integers(0, classes, labels)
    g = rng.standard_normal(labels)
    by_label = sce.vjp(np, 0, g, sce.forward(np, [z, y]), [z, y])
    one_hot = np.eye(classes)[y]
    by_rows = sce.vjp(np, 0, g, sce.forward(np, [z, one_hot]), [z, one_hot])
    np.testing.assert_allclose(by_label, by_rows, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- one record per op
def test_an_op_registered_after_import_gets_its_dsl_function_and_its_roles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the compiler and the algorithms know about an op comes from its record alone: a
    loss's prediction operand, an operand of class indices, a layer's presynaptic operand."""
    import dataclasses

    from pcgraph.algorithms.ilprox import presynaptic

    monkeypatch.setattr(pc, "DSL", dict(pc.DSL))
    for new, like in (("half_sq", "mse"), ("lookup", "embedding"), ("dense", "matmul")):
        monkeypatch.setitem(OPS, new, dataclasses.replace(OPS[like], name=new))
    g = pc.Graph("roles")
    ids = g.input("ids", (3,), dtype="int64")
    h = pc.mean(pc.lookup(ids, g.param("E", (7, 4))), axis=0)
    out = pc.dense(h, g.param("W", (4, 2)))
    g.set_loss(pc.half_sq(out, g.target("y", (2,))))
    prog = pc.compile(g, dtype="float64")
    assert prog.prediction_node() == out.name
    assert prog.compiled.label_classes == {"ids": 7}
    assert presynaptic(prog.compiled, out.name) == (h.name,)
    with pytest.raises(pc.FeedError, match="ids"):
        prog.loss(prog.init_params(0), {"ids": np.full((2, 3), 7), "y": np.zeros((2, 2))})
