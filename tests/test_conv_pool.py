"""Convolution and pooling forward rules against direct loop definitions (PyTorch semantics),
plus the DSL sugar and feed checks around the new ops.  The VJPs are checked by test_ops.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import pcgraph as pc
from pcgraph.ops import OPS


def _run(name: str, xs: list, **attrs: object) -> np.ndarray:
    op = OPS[name]
    shapes = [x.shape[1:] if i == 0 else x.shape for i, x in enumerate(xs)]
    canon = op.canon({**op.defaults, **attrs}, shapes) if op.canon else dict(attrs)
    return op.forward(np, xs, **op.lowered(canon, 1))


def _conv_ref(x, w, s, p, d, groups):  # noqa: ANN001, ANN202
    b, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    out = np.zeros((b, o, ho, wo))
    og = o // groups
    for n, oc, i, j in itertools.product(range(b), range(o), range(ho), range(wo)):
        gidx = oc // og
        patch = xp_[
            n,
            gidx * cg : (gidx + 1) * cg,
            i * s[0] : i * s[0] + d[0] * (kh - 1) + 1 : d[0],
            j * s[1] : j * s[1] + d[1] * (kw - 1) + 1 : d[1],
        ]
        out[n, oc, i, j] = np.sum(patch * w[oc])
    return out


CONVS = [
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((2, 4, 8, 7), (6, 2, 3, 2), {"stride": (2, 1), "padding": (1, 2), "groups": 2}),
    ((1, 2, 9, 9), (3, 2, 3, 3), {"dilation": 2, "padding": 2, "stride": 3}),
    ((2, 3, 5, 5), (3, 1, 2, 2), {"groups": 3}),
]


@pytest.mark.parametrize("xs,ws,attrs", CONVS)
def test_conv2d_matches_the_direct_definition(xs: tuple, ws: tuple, attrs: dict) -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    c = OPS["conv2d"].canon({**OPS["conv2d"].defaults, **attrs}, [xs[1:], ws])
    ref = _conv_ref(x, w, c["stride"], c["padding"], c["dilation"], c["groups"])
    np.testing.assert_allclose(_run("conv2d", [x, w], **attrs), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "xs,ws,attrs",
    [
        ((2, 3, 4, 5), (3, 2, 3, 3), {}),
        ((2, 2, 4, 3), (2, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
        ((1, 4, 3, 3), (4, 1, 2, 3), {"stride": (2, 1), "groups": 2, "dilation": (1, 2)}),
    ],
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(xs: tuple, ws: tuple, attrs: dict) -> None:
    """<conv_transpose2d(x, W), y> == <x, conv2d(y, W)> with the same stride/padding/groups."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    out = _run("conv_transpose2d", [x, w], **attrs)
    y = rng.standard_normal(out.shape)
    conv_attrs = {k: v for k, v in attrs.items() if k != "output_padding"}
    back = _run("conv2d", [y, w], **conv_attrs)
    assert back.shape == x.shape
    assert np.sum(out * y) == pytest.approx(np.sum(x * back), rel=1e-12)
    # PyTorch's output size formula
    c = OPS["conv_transpose2d"].canon({**OPS["conv_transpose2d"].defaults, **attrs}, [xs[1:], ws])
    for a in range(2):
        expect = (
            (xs[2 + a] - 1) * c["stride"][a]
            - 2 * c["padding"][a]
            + c["dilation"][a] * (ws[2 + a] - 1)
            + c["output_padding"][a]
            + 1
        )
        assert out.shape[2 + a] == expect


def _pool_ref(x, k, s, p, how):  # noqa: ANN001, ANN202
    fill = -np.inf if how == "max" else 0.0
    xp_ = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    ho = (x.shape[2] + 2 * p[0] - k[0]) // s[0] + 1
    wo = (x.shape[3] + 2 * p[1] - k[1]) // s[1] + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        win = xp_[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
        out[:, :, i, j] = win.max(axis=(2, 3)) if how == "max" else win.mean(axis=(2, 3))
    return out


@pytest.mark.parametrize("how", ["max", "avg"])
@pytest.mark.parametrize(
    "k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((3, 2), (2, 1), (1, 0))]
)
def test_pooling_matches_the_direct_definition(how: str, k: tuple, s: tuple, p: tuple) -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6))
    out = _run(f"{how}_pool2d", [x], kernel=k, stride=s, padding=p)
    np.testing.assert_allclose(out, _pool_ref(x, k, s, p, how), rtol=1e-12)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_only() -> None:
    x = np.ones((1, 1, 2, 2))  # one window, four equal maxima
    op = OPS["max_pool2d"]
    low = op.lowered(op.canon({**op.defaults, "kernel": 2}, [(1, 2, 2)]), 1)
    out = op.forward(np, [x], **low)
    g = op.vjp(np, 0, np.ones_like(out), out, [x], **low)
    np.testing.assert_array_equal(g, [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_split_returns_slices_that_cover_the_axis() -> None:
    g = pc.Graph("s")
    x = g.input("x", (3, 6))
    parts = pc.split(x, [1, 2, 3], axis=-1, name="p")
    assert [p.shape for p in parts] == [(3, 1), (3, 2), (3, 3)]
    assert [p.name for p in parts] == ["p_0", "p_1", "p_2"]
    g.set_loss(pc.mse(pc.concat(parts, axis=-1), g.target("y", (3, 6))))
    prog = pc.compile(g, dtype="float64")
    X = np.random.default_rng(0).standard_normal((2, 3, 6))
    np.testing.assert_array_equal(prog.evaluate({}, {"x": X, "y": X}, parts[2]), X[:, :, 3:])
    with pytest.raises(pc.GraphError, match="does not split into 4"):
        pc.split(x, 4, axis=1)


def test_one_hot_is_float_rows_in_the_program_dtype() -> None:
    g = pc.Graph("oh")
    ids = g.input("ids", (2,), dtype="int64")
    h = pc.one_hot(ids, 4, name="h")
    g.set_loss(pc.mse(pc.sum(h * g.param("w", (4,)), axis=-1), g.target("y", (2,))))
    prog = pc.compile(g)  # float32
    out = prog.evaluate(prog.init_params(0), {"ids": np.array([[0, 3]])}, "h")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[1, 0, 0, 0], [0, 0, 0, 1]]])


def test_embedding_ids_out_of_range_are_a_feed_error() -> None:
    g = pc.Graph("emb")
    ids = g.input("tokens", (3,), dtype="int64")
    h = pc.mean(pc.embedding(ids, g.param("E", (5, 2))), axis=0)
    g.set_loss(pc.softmax_cross_entropy(h, g.target("y", (), dtype="int64")))
    prog = pc.compile(g)
    with pytest.raises(pc.FeedError, match="tokens"):
        prog.loss(prog.init_params(0), {"tokens": np.array([[0, 1, 5]]), "y": np.array([1])})


def test_dropout_masks_follow_the_seed_and_a_negative_seed_turns_it_off() -> None:
    g = pc.Graph("do")
    x = g.input("x", (1000,))
    seed = g.input("seed", (), dtype="int64")
    h = pc.dropout(x, seed, p=0.25, name="h")
    g.set_loss(pc.mse(h, g.target("y", (1000,))))
    prog = pc.compile(g, dtype="float64")
    X = np.ones((2, 1000))
    a = prog.evaluate({}, {"x": X, "seed": np.array([7, 7])}, h)
    b = prog.evaluate({}, {"x": X, "seed": np.array([7, 7])}, h)
    c = prog.evaluate({}, {"x": X, "seed": np.array([8, 8])}, h)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # the batch position enters the mask
    assert set(np.unique(a)) == {0.0, 1.0 / 0.75}
    assert abs(np.mean(a == 0) - 0.25) < 0.03
    off = prog.evaluate({}, {"x": X, "seed": np.array([-1, 3])}, h)
    np.testing.assert_array_equal(off[0], X[0])


@pytest.mark.parametrize(
    "build,match",
    [
        (
            lambda g: pc.conv2d(g.input("x", (3, 8, 8)), g.param("W", (4, 2, 3, 3))),
            "input channels",
        ),
        (lambda g: pc.conv2d(g.input("x", (3, 8)), g.param("W", (4, 3, 3, 3))), r"\(C, H, W\)"),
        (
            lambda g: pc.conv2d(g.input("x", (3, 4, 4)), g.param("W", (4, 3, 5, 5))),
            "exceeds the padded input",
        ),
        (
            lambda g: pc.conv2d(g.input("x", (3, 8, 8)), g.param("W", (4, 3, 3, 3)), stride=0),
            "stride must be >= 1",
        ),
        (lambda g: pc.max_pool2d(g.input("x", (3, 8, 8)), 2, padding=2), "at most half"),
        (lambda g: pc.dropout(g.input("x", (3,)), g.input("s", ())), "integer input"),
        (lambda g: pc.dropout(g.input("x", (3,)), g.input("s", (), "int64"), p=1.0), r"\[0, 1\)"),
        (lambda g: pc.batch_norm(g.param("w", (3,))), "must be batched"),
        (lambda g: pc.pow(g.input("x", (3,))), "constant exponent"),
        (lambda g: pc.embedding(g.input("i", (3,)), g.param("E", (4, 2))), "integers"),
    ],
)
def test_bad_settings_are_shape_errors_naming_the_setting(build, match: str) -> None:  # noqa: ANN001
    with pytest.raises(pc.ShapeError, match=match):
        build(pc.Graph("bad"))
