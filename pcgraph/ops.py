"""THE op table: every primitive op of pcgraph is one ``OpDef`` record in ``OPS``.

A record holds everything the rest of the library needs to know about an op:

* ``shape(shapes, batched, **attrs)``: the per-example output shape from the operands'
  per-example shapes (the batch axis is implicit and leading), raising ``ValueError`` with a
  sentence the DSL turns into a ``ShapeError`` naming the node;
* ``canon(attrs, shapes)``: the attributes in canonical form (axes non-negative, defaults filled);
* ``lower(attrs, lead)``: the attributes the array rules see, where ``lead`` is 1 when the
  output carries the batch axis and 0 otherwise (per-example axes shift by ``lead``);
* ``forward(xp, xs, **lowered)`` and ``vjp(xp, argnum, g, out, xs, **lowered)``: the array rules,
  written against the array namespace ``xp`` a backend hands in, using array-API names only, so
  the same rule runs on NumPy, CuPy and ``array_api_strict``.  ``vjp`` returns the cotangent of
  operand ``argnum``, shaped like that operand's array.
* ``examples``: the operand shapes the registry-wide finite-difference test checks the VJP on.

Nothing else in pcgraph defines an op; ``spec/ops.md`` documents each one and a test checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Example:
    """Operand shapes and attributes on which the registry-wide FD test checks an op.

    ``domain`` is ``"real"`` or ``"positive"`` (for log, div's denominator, sqrt);
    ``int_high`` gives the exclusive upper bound of integer operands (class labels, ids).
    """

    shapes: tuple[Shape, ...]
    batched: tuple[bool, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    domain: str = "real"
    int_high: int = 0


@dataclass(frozen=True)
class OpDef:
    """One primitive op: shape rule, array rules and local derivative (VJP) rule together."""

    name: str
    arity: int | None  # None: any number >= 1 of operands
    summary: str
    shape: Callable[..., Shape]
    forward: Callable[..., Any]
    vjp: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    canon: Callable[[dict, list], dict] | None = None
    lower: Callable[[dict, int], dict] | None = None
    int_operands: frozenset[int] = frozenset()  # operands that may be integer and get no cotangent
    elementwise: bool = False  # broadcasting op: the DSL pads lower-rank batched operands
    structural: bool = False  # moves values without arithmetic: integer inputs stay integer
    loss: bool = False  # per-example scalar loss op
    attr_order: tuple[str, ...] = ()  # attributes that may also be passed positionally in the DSL
    check_dtypes: Callable[[list, list], None] | None = None  # (shapes, dtypes) -> None or raise
    examples: tuple[Example, ...] = ()

    def lowered(self, attrs: Mapping[str, Any], lead: int) -> dict:
        """The attributes the array rules receive for a node whose output has ``lead`` batch axes."""
        return dict(self.lower(dict(attrs), lead)) if self.lower else dict(attrs)


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to the table; a name may be registered once."""
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op


# --------------------------------------------------------------------------- helpers
def unbroadcast(xp: Any, g: Any, shape: Shape) -> Any:
    """Sum cotangent ``g`` back to ``shape``, undoing NumPy broadcasting (the one place this is done)."""
    extra = g.ndim - len(shape)
    if extra > 0:
        g = xp.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return g


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy's broadcasting rule on shapes, raising ``ValueError`` with both shapes on mismatch."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            listed = " and ".join(str(tuple(s)) for s in shapes)
            raise ValueError(f"shapes {listed} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ValueError(f"{what} must be an int, got {axis!r}")
    if not -rank <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for per-example rank {rank}")
    return axis % rank


def _expand_to(xp: Any, g: Any, ndim: int) -> Any:
    """Append unit axes to ``g`` (a per-example scalar cotangent) up to ``ndim`` axes."""
    return xp.reshape(g, tuple(g.shape) + (1,) * (ndim - g.ndim))


def _shift(attrs: dict, lead: int, *keys: str) -> dict:
    for k in keys:
        v = attrs[k]
        attrs[k] = tuple(a + lead for a in v) if isinstance(v, tuple) else v + lead
    return attrs


def _same_shape(shapes: list, batched: list) -> Shape:
    return tuple(shapes[0])


# --------------------------------------------------------------------------- elementwise
def _broadcast_shape(shapes: list, batched: list) -> Shape:
    return broadcast_shapes(*shapes)


_BINARY_EXAMPLES = (
    Example(((4, 3), (4, 3)), (True, True)),
    Example(((4, 3), (3,)), (True, False)),
    Example(((2, 1, 3), (4, 1)), (True, True)),
    Example(((3,), (3,)), (False, True)),
)


def _binary(name: str, summary: str, fwd: Callable, d0: Callable, d1: Callable, **kw: Any) -> None:
    register(
        OpDef(
            name=name,
            arity=2,
            summary=summary,
            shape=_broadcast_shape,
            forward=lambda xp, xs: fwd(xp, *xs),
            vjp=lambda xp, i, g, out, xs: unbroadcast(
                xp, (d0 if i == 0 else d1)(xp, g, out, *xs), tuple(xs[i].shape)
            ),
            elementwise=True,
            examples=kw.pop("examples", _BINARY_EXAMPLES),
            **kw,
        )
    )


_binary("add", "a + b", lambda xp, a, b: a + b, lambda xp, g, o, a, b: g, lambda xp, g, o, a, b: g)
_binary("sub", "a - b", lambda xp, a, b: a - b, lambda xp, g, o, a, b: g, lambda xp, g, o, a, b: -g)
_binary(
    "mul",
    "a * b",
    lambda xp, a, b: a * b,
    lambda xp, g, o, a, b: g * b,
    lambda xp, g, o, a, b: g * a,
)
_binary(
    "div",
    "a / b",
    lambda xp, a, b: a / b,
    lambda xp, g, o, a, b: g / b,
    lambda xp, g, o, a, b: -g * o / b,
    examples=tuple(Example(e.shapes, e.batched, domain="positive") for e in _BINARY_EXAMPLES),
)

_UNARY_EXAMPLES = (Example(((3, 4),), (True,)), Example(((5,),), (False,)))


def _unary(
    name: str,
    summary: str,
    fwd: Callable,
    d: Callable,
    domain: str = "real",
    structural: bool = False,
) -> None:
    register(
        OpDef(
            name=name,
            arity=1,
            summary=summary,
            shape=_same_shape,
            forward=lambda xp, xs: fwd(xp, xs[0]),
            vjp=lambda xp, i, g, out, xs: d(xp, g, out, xs[0]),
            structural=structural,
            examples=tuple(Example(e.shapes, e.batched, domain=domain) for e in _UNARY_EXAMPLES),
        )
    )


def _sigmoid(xp: Any, x: Any) -> Any:
    # exp(-|x|) never overflows, for either sign of x.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_unary("neg", "-x", lambda xp, x: -x, lambda xp, g, o, x: -g)
_unary(
    "relu",
    "max(x, 0)",
    lambda xp, x: xp.where(x > 0, x, xp.zeros_like(x)),
    lambda xp, g, o, x: xp.where(x > 0, g, xp.zeros_like(g)),
)
_unary("tanh", "tanh(x)", lambda xp, x: xp.tanh(x), lambda xp, g, o, x: g * (1.0 - o * o))
_unary("sigmoid", "1 / (1 + exp(-x))", _sigmoid, lambda xp, g, o, x: g * o * (1.0 - o))
_unary("exp", "exp(x)", lambda xp, x: xp.exp(x), lambda xp, g, o, x: g * o)
_unary("log", "log(x)", lambda xp, x: xp.log(x), lambda xp, g, o, x: g / x, domain="positive")
_unary("identity", "x (a relay vertex)", lambda xp, x: x, lambda xp, g, o, x: g, structural=True)


# --------------------------------------------------------------------------- matmul
def _matmul_shape(shapes: list, batched: list) -> Shape:
    a, b = (tuple(s) for s in shapes)
    ba, bb = batched
    if not a or not b:
        raise ValueError("matmul needs operands of rank >= 1, not scalars")
    if ba and bb and (len(a) < 2 or len(a) != len(b)):
        raise ValueError(
            "when both operands are batched their per-example ranks must be equal and >= 2 "
            "(reshape a vector to (1, n) first)"
        )
    if bb and not ba and (len(b) < 2 or len(a) > 2):
        raise ValueError(
            "a batched right operand needs per-example rank >= 2 and an unbatched left operand "
            "of rank <= 2"
        )
    if ba and not bb and len(b) > 2:
        raise ValueError("an unbatched right operand of a batched matmul must have rank 1 or 2")
    a2 = a if len(a) > 1 else (1,) + a
    b2 = b if len(b) > 1 else b + (1,)
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ: {a2[-1]} (last of left) vs {b2[-2]} (right)")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    return batch + (a2[-2:-1] if len(a) > 1 else ()) + (b2[-1:] if len(b) > 1 else ())


def _matmul_vjp(xp: Any, i: int, g: Any, out: Any, xs: list) -> Any:
    a, b = xs
    a2, b2, g2 = a, b, g
    # Promote vectors to matrices as matmul does (b first, so a scalar g works too).
    if b.ndim == 1:
        b2 = xp.expand_dims(b, axis=1)
        g2 = xp.expand_dims(g2, axis=-1)
    if a.ndim == 1:
        a2 = xp.expand_dims(a, axis=0)
        g2 = xp.expand_dims(g2, axis=-2)
    if i == 0:
        r = xp.matmul(g2, xp.matrix_transpose(b2))
        if a.ndim == 1:
            r = r[..., 0, :]
        return unbroadcast(xp, r, tuple(a.shape))
    if b2.ndim == 2 and a2.ndim > 2:
        # A weight shared over leading axes: fold them into one GEMM instead of a batched one.
        k, m = b2.shape
        r = xp.matmul(xp.matrix_transpose(xp.reshape(a2, (-1, k))), xp.reshape(g2, (-1, m)))
    else:
        r = unbroadcast(xp, xp.matmul(xp.matrix_transpose(a2), g2), tuple(b2.shape))
    return r[..., 0] if b.ndim == 1 else r


register(
    OpDef(
        name="matmul",
        arity=2,
        summary="a @ b (NumPy matmul semantics on per-example shapes)",
        shape=_matmul_shape,
        forward=lambda xp, xs: xp.matmul(xs[0], xs[1]),
        vjp=_matmul_vjp,
        examples=(
            Example(((4,), (4, 3)), (True, False)),
            Example(((2, 4), (4, 3)), (True, False)),
            Example(((4,), (4,)), (True, False)),
            Example(((2, 4), (4,)), (True, False)),
            Example(((2, 4), (4, 3)), (True, True)),
            Example(((2, 3, 4), (2, 4, 5)), (True, True)),
            Example(((3, 4), (4, 2)), (False, True)),
            Example(((4,), (4, 2)), (False, True)),
            Example(((3, 4), (4, 2)), (False, False)),
        ),
    )
)


# --------------------------------------------------------------------------- reductions
def _canon_reduce(attrs: dict, shapes: list) -> dict:
    rank = len(shapes[0])
    axis = attrs.get("axis")
    if axis is None:
        axes = tuple(range(rank))
    else:
        raw = (axis,) if isinstance(axis, int) else tuple(axis)
        axes = tuple(sorted({_axis(a, rank) for a in raw}))
        if len(axes) != len(raw):
            raise ValueError(f"axis {axis!r} names an axis twice")
    return {"axis": axes, "keepdims": bool(attrs.get("keepdims", False))}


def _reduce_shape(shapes: list, batched: list, axis: tuple, keepdims: bool) -> Shape:
    s = tuple(shapes[0])
    if keepdims:
        return tuple(1 if i in axis else n for i, n in enumerate(s))
    return tuple(n for i, n in enumerate(s) if i not in axis)


def _reduce_vjp(mean: bool) -> Callable:
    def vjp(xp: Any, i: int, g: Any, out: Any, xs: list, axis: tuple, keepdims: bool) -> Any:
        x = xs[0]
        if not keepdims:
            g = xp.reshape(g, tuple(1 if d in axis else n for d, n in enumerate(x.shape)))
        if mean:
            g = g / math.prod(x.shape[d] for d in axis)
        return xp.broadcast_to(g, tuple(x.shape))

    return vjp


def _mean(xp: Any, xs: list, axis: tuple, keepdims: bool) -> Any:
    return xp.mean(xs[0], axis=axis, keepdims=keepdims)


for _name, _fwd, _is_mean in (
    ("sum", lambda xp, xs, axis, keepdims: xp.sum(xs[0], axis=axis, keepdims=keepdims), False),
    ("mean", _mean, True),
):
    register(
        OpDef(
            name=_name,
            arity=1,
            summary=f"{_name} over per-example axes (all by default)",
            shape=_reduce_shape,
            forward=_fwd,
            vjp=_reduce_vjp(_is_mean),
            defaults={"axis": None, "keepdims": False},
            canon=_canon_reduce,
            lower=lambda attrs, lead: _shift(attrs, lead, "axis"),
            attr_order=("axis", "keepdims"),
            examples=(
                Example(((3, 4),), (True,)),
                Example(((3, 4),), (True,), {"axis": -1}),
                Example(((2, 3, 4),), (True,), {"axis": (0, 2), "keepdims": True}),
                Example(((3, 4),), (False,), {"axis": 0}),
            ),
        )
    )


def _softmax(xp: Any, xs: list, axis: int) -> Any:
    x = xs[0]
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _canon_axis(attrs: dict, shapes: list) -> dict:
    return {**attrs, "axis": _axis(attrs.get("axis", -1), len(shapes[0]))}


register(
    OpDef(
        name="softmax",
        arity=1,
        summary="exp(x) / sum(exp(x), axis)",
        shape=lambda shapes, batched, axis: tuple(shapes[0]),
        forward=_softmax,
        vjp=lambda xp, i, g, out, xs, axis: out * (g - xp.sum(g * out, axis=axis, keepdims=True)),
        defaults={"axis": -1},
        canon=_canon_axis,
        lower=lambda attrs, lead: _shift(attrs, lead, "axis"),
        attr_order=("axis",),
        examples=(
            Example(((3, 4),), (True,)),
            Example(((3, 4),), (True,), {"axis": 0}),
            Example(((5,),), (False,)),
        ),
    )
)


# --------------------------------------------------------------------------- structural
def _canon_reshape(attrs: dict, shapes: list) -> dict:
    shape = attrs.get("shape")
    if shape is None:
        raise ValueError("reshape needs a target per-example shape")
    shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
    size = math.prod(shapes[0])
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"target shape {shape} may hold at most one -1 and no other negative")
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape per-example shape {tuple(shapes[0])} to {shape}")
        shape = tuple(size // known if n == -1 else n for n in shape)
    if math.prod(shape) != size:
        raise ValueError(f"cannot reshape per-example shape {tuple(shapes[0])} to {shape}")
    return {"shape": shape}


register(
    OpDef(
        name="reshape",
        arity=1,
        summary="the same values in a new per-example shape (row-major)",
        shape=lambda shapes, batched, shape: shape,
        forward=lambda xp, xs, shape, lead: xp.reshape(xs[0], tuple(xs[0].shape[:lead]) + shape),
        vjp=lambda xp, i, g, out, xs, shape, lead: xp.reshape(g, tuple(xs[0].shape)),
        canon=_canon_reshape,
        lower=lambda attrs, lead: {**attrs, "lead": lead},
        structural=True,
        attr_order=("shape",),
        examples=(
            Example(((3, 4),), (True,), {"shape": (12,)}),
            Example(((2, 6),), (True,), {"shape": (3, -1)}),
            Example(((6,),), (False,), {"shape": (2, 3)}),
        ),
    )
)


def _canon_transpose(attrs: dict, shapes: list) -> dict:
    rank = len(shapes[0])
    axes = attrs.get("axes")
    if axes is None:
        return {"axes": tuple(reversed(range(rank)))}
    axes = tuple(_axis(a, rank) for a in axes)
    if sorted(axes) != list(range(rank)):
        raise ValueError(f"axes {axes} are not a permutation of the {rank} per-example axes")
    return {"axes": axes}


def _transpose_lower(attrs: dict, lead: int) -> dict:
    return {"axes": tuple(range(lead)) + tuple(a + lead for a in attrs["axes"])}


def _inverse(perm: tuple) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


register(
    OpDef(
        name="transpose",
        arity=1,
        summary="permute per-example axes (reverse them by default)",
        shape=lambda shapes, batched, axes: tuple(shapes[0][a] for a in axes),
        forward=lambda xp, xs, axes: xp.permute_dims(xs[0], axes),
        vjp=lambda xp, i, g, out, xs, axes: xp.permute_dims(g, _inverse(axes)),
        defaults={"axes": None},
        canon=_canon_transpose,
        lower=_transpose_lower,
        structural=True,
        attr_order=("axes",),
        examples=(
            Example(((3, 4),), (True,)),
            Example(((2, 3, 4),), (True,), {"axes": (1, 2, 0)}),
            Example(((3, 4),), (False,)),
        ),
    )
)


def _scatter(xp: Any, g: Any, like: Any, index: tuple) -> Any:
    """Zeros shaped like ``like`` with ``g`` written at ``index`` (the VJP of a read)."""
    r = xp.zeros(tuple(like.shape), dtype=g.dtype)
    r[index] = g
    return r


def _first_axis(shapes: list, what: str) -> int:
    if not shapes[0]:
        raise ValueError(f"{what} needs a per-example rank >= 1, got a scalar per example")
    return shapes[0][0]


def _canon_index(attrs: dict, shapes: list) -> dict:
    n = _first_axis(shapes, "index")
    i = attrs.get("i")
    if not isinstance(i, int) or isinstance(i, bool):
        raise ValueError(f"index needs an int position, got {i!r}")
    if not -n <= i < n:
        raise ValueError(f"index {i} is out of range for a first per-example axis of length {n}")
    return {"i": i % n}


def _index_key(lead: int, i: Any) -> tuple:
    return (slice(None),) * lead + (i, ...)


register(
    OpDef(
        name="index",
        arity=1,
        summary="x[i] on the first per-example axis",
        shape=lambda shapes, batched, i: tuple(shapes[0][1:]),
        forward=lambda xp, xs, i, lead: xs[0][_index_key(lead, i)],
        vjp=lambda xp, _, g, out, xs, i, lead: _scatter(xp, g, xs[0], _index_key(lead, i)),
        canon=_canon_index,
        lower=lambda attrs, lead: {**attrs, "lead": lead},
        structural=True,
        attr_order=("i",),
        examples=(
            Example(((4, 3),), (True,), {"i": 1}),
            Example(((4,),), (True,), {"i": -1}),
            Example(((4, 3),), (False,), {"i": 2}),
        ),
    )
)


def _canon_slice(attrs: dict, shapes: list) -> dict:
    n = _first_axis(shapes, "slice")
    vals = [attrs.get(k) for k in ("start", "stop", "step")]
    for k, v in zip(("start", "stop", "step"), vals):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise ValueError(f"slice {k} must be an int or None, got {v!r}")
    if vals[2] is not None and vals[2] <= 0:
        raise ValueError(f"slice step must be positive, got {vals[2]}")
    start, stop, step = slice(*vals).indices(n)
    if len(range(start, stop, step)) == 0:
        raise ValueError(f"slice {start}:{stop}:{step} of an axis of length {n} is empty")
    return {"start": start, "stop": stop, "step": step}


def _slice_key(lead: int, start: int, stop: int, step: int) -> tuple:
    return (slice(None),) * lead + (slice(start, stop, step), ...)


register(
    OpDef(
        name="slice",
        arity=1,
        summary="x[start:stop:step] on the first per-example axis",
        shape=lambda shapes, batched, start, stop, step: (
            (len(range(start, stop, step)),) + tuple(shapes[0][1:])
        ),
        forward=lambda xp, xs, lead, **s: xs[0][_slice_key(lead, **s)],
        vjp=lambda xp, _, g, out, xs, lead, **s: _scatter(xp, g, xs[0], _slice_key(lead, **s)),
        defaults={"start": None, "stop": None, "step": None},
        canon=_canon_slice,
        lower=lambda attrs, lead: {**attrs, "lead": lead},
        structural=True,
        attr_order=("start", "stop", "step"),
        examples=(
            Example(((5, 2),), (True,), {"start": 1, "stop": 4}),
            Example(((6,),), (True,), {"start": 0, "stop": None, "step": 2}),
            Example(((5,),), (False,), {"start": -2}),
        ),
    )
)


def _concat_shape(shapes: list, batched: list, axis: int) -> Shape:
    first = tuple(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(first) or any(
            a != b for d, (a, b) in enumerate(zip(first, s)) if d != axis
        ):
            listed = ", ".join(str(tuple(t)) for t in shapes)
            raise ValueError(f"shapes {listed} differ off the concatenation axis {axis}")
    if len(set(batched)) > 1:
        raise ValueError("concat operands must all be batched or all unbatched")
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1 :]


def _concat_vjp(xp: Any, i: int, g: Any, out: Any, xs: list, axis: int) -> Any:
    start = sum(x.shape[axis] for x in xs[:i])
    key = (slice(None),) * axis + (slice(start, start + xs[i].shape[axis]), ...)
    return g[key]


def _canon_concat(attrs: dict, shapes: list) -> dict:
    if not shapes[0]:
        raise ValueError("concat needs per-example rank >= 1")
    return {"axis": _axis(attrs.get("axis", 0), len(shapes[0]))}


register(
    OpDef(
        name="concat",
        arity=None,
        summary="join operands along a per-example axis",
        shape=_concat_shape,
        forward=lambda xp, xs, axis: xp.concat(list(xs), axis=axis),
        vjp=_concat_vjp,
        defaults={"axis": 0},
        canon=_canon_concat,
        lower=lambda attrs, lead: _shift(attrs, lead, "axis"),
        structural=True,
        attr_order=("axis",),
        examples=(
            Example(((2, 3), (4, 3)), (True, True)),
            Example(((2, 3), (2, 1), (2, 2)), (True, True, True), {"axis": -1}),
            Example(((3,), (2,)), (False, False)),
        ),
    )
)


# --------------------------------------------------------------------------- losses
def _loss_shape(shapes: list, batched: list) -> Shape:
    if not batched[0]:
        raise ValueError("the prediction of a loss must be batched (depend on an input)")
    return ()


def _per_example_axes(x: Any) -> tuple:
    return tuple(range(1, x.ndim))


def _mse_shape(shapes: list, batched: list) -> Shape:
    if tuple(shapes[0]) != tuple(shapes[1]):
        raise ValueError(
            f"prediction shape {tuple(shapes[0])} and target shape {tuple(shapes[1])} differ"
        )
    return _loss_shape(shapes, batched)


def _mse_vjp(xp: Any, i: int, g: Any, out: Any, xs: list) -> Any:
    p, y = xs
    d = p - y
    c = _expand_to(xp, g, d.ndim) * d
    return unbroadcast(xp, c if i == 0 else -c, tuple(xs[i].shape))


register(
    OpDef(
        name="mse",
        arity=2,
        summary="0.5 * sum((pred - y)**2) per example",
        shape=_mse_shape,
        forward=lambda xp, xs: 0.5 * xp.sum((xs[0] - xs[1]) ** 2, axis=_per_example_axes(xs[0])),
        vjp=_mse_vjp,
        loss=True,
        examples=(
            Example(((4,), (4,)), (True, True)),
            Example(((2, 3), (2, 3)), (True, True)),
        ),
    )
)


def _log_softmax(xp: Any, z: Any) -> Any:
    s = z - xp.max(z, axis=-1, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=-1, keepdims=True))


def _target_probs(xp: Any, z: Any, y: Any) -> Any:
    """Class probabilities of the target: one-hot rows for integer labels, else ``y`` itself."""
    if xp.isdtype(y.dtype, "integral"):
        classes = xp.arange(z.shape[-1], dtype=y.dtype)
        return xp.astype(xp.expand_dims(y, axis=-1) == classes, z.dtype)
    return y


def _sce_shape(shapes: list, batched: list) -> Shape:
    z, y = tuple(shapes[0]), tuple(shapes[1])
    if not z:
        raise ValueError("logits need a class axis (per-example rank >= 1)")
    if y != z and y != z[:-1]:
        raise ValueError(
            f"target shape {y} must be the logits' shape {z} (probabilities) or {z[:-1]} "
            "(class indices)"
        )
    return _loss_shape(shapes, batched)


def _sce_dtypes(shapes: list, dtypes: list) -> None:
    z, y = tuple(shapes[0]), tuple(shapes[1])
    if dtypes[1] == "int64" and y != z[:-1]:
        raise ValueError(f"integer class labels must have shape {z[:-1]}, got {y}")
    if dtypes[1] != "int64" and y != z:
        raise ValueError(f"float target probabilities must have the logits' shape {z}, got {y}")


def _sce_forward(xp: Any, xs: list) -> Any:
    z, y = xs
    return -xp.sum(_target_probs(xp, z, y) * _log_softmax(xp, z), axis=_per_example_axes(z))


def _sce_vjp(xp: Any, i: int, g: Any, out: Any, xs: list) -> Any:
    z, y = xs
    t = _target_probs(xp, z, y)
    ge = _expand_to(xp, g, z.ndim)
    if i == 0:
        soft = xp.exp(_log_softmax(xp, z))
        return unbroadcast(xp, ge * (soft * xp.sum(t, axis=-1, keepdims=True) - t), tuple(z.shape))
    return unbroadcast(xp, -ge * _log_softmax(xp, z), tuple(y.shape))


register(
    OpDef(
        name="softmax_cross_entropy",
        arity=2,
        summary="-sum(y * log_softmax(logits)) per example; y: class indices or probabilities",
        shape=_sce_shape,
        forward=_sce_forward,
        vjp=_sce_vjp,
        int_operands=frozenset({1}),
        check_dtypes=_sce_dtypes,
        loss=True,
        examples=(
            Example(((5,), ()), (True, True), int_high=5),
            Example(((3, 4), (3,)), (True, True), int_high=4),
            Example(((5,), (5,)), (True, True), domain="positive"),
        ),
    )
)

__all__ = ["OPS", "OpDef", "Example", "register", "unbroadcast", "broadcast_shapes"]
