"""How to add a primitive op: define an ``OpDef`` (shape rule, forward rule and VJP written
against the array namespace ``xp``, and examples), check its VJP against finite differences,
register it, use it in a graph, and see that Z-IL still equals backprop on that graph.

    python examples/custom_op.py            # then train with it on digits, 5 epochs
    python examples/custom_op.py --quick    # 1 epoch

The op here is Swish (Ramachandran et al. 2017), ``swish(x, beta) = x * sigmoid(beta * x)``,
with the constant attribute ``beta`` (default 1).  Its local derivative, the VJP, is
``g * (s + beta * out * (1 - s))`` with ``s = sigmoid(beta * x)``.  Every algorithm in pcgraph
(bp, zil, il, fpa, il-prox) needs nothing more than these rules: predictive coding's inference
steps use the same VJPs as backprop's backward pass, so a new op works with all of them.

What an ``OpDef`` holds (``pcgraph/ops.py`` explains each field):

* ``shape(shapes, batched, **attrs)``: the per-example output shape from the operands'
  per-example shapes (the batch axis is implicit); raise ``ValueError`` with a sentence on bad
  shapes, which the DSL turns into a ``ShapeError`` naming the node;
* ``forward(xp, xs, **attrs)`` and ``vjp(xp, argnum, g, out, xs, **attrs)``: the array rules on
  batched arrays; use array-API names of ``xp`` only (``xp.exp``, ``xp.where``, ...), never
  ``numpy`` directly, so that the same rule runs on NumPy, CuPy and ``array_api_strict``;
  ``vjp`` returns the cotangent of operand ``argnum``, shaped like that operand;
* optionally ``saves(xp, xs, **attrs) -> (out, saved)``, a forward that keeps what the VJP
  would recompute (the VJP then takes ``saved=``, None meaning "recompute it"), and
  ``vjps(xp, argnums, g, out, xs, **attrs)``, several cotangents in one call where they share
  work (conv2d keeps its im2col matrix this way; swish needs neither);
* ``defaults``, ``canon`` (attributes in canonical form, validated), ``attr_order``
  (attributes that may be passed positionally);
* ``examples``: operand shapes (and attributes) on which the finite-difference check runs.

``pc.ops.register(op)`` adds the op to the table of **this process only**; ``pc.swish(x,
beta=1.5)`` (or ``g.op("swish", x, beta=1.5)``) then builds nodes with it, as ``pc.relu`` does
for the table's own ops, and graph files that use it load in a process that has registered it.

To make it a **library op** instead, add the ``register(OpDef(...))`` call to
``pcgraph/ops.py`` (``pc.swish`` then exists) and document it under a ``### swish`` heading in
``spec/ops.md``: ``tests/test_spec.py`` fails for an op of the table without its entry there.
``tests/test_ops.py`` then checks its VJP on its examples against finite differences (the same
procedure, ``pc.testing.check_vjp``), and ``tests/test_portability.py`` runs it under
``array_api_strict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import pcgraph as pc
from pcgraph.ops import Example, OpDef

from example_utils import accuracy, positive_int


# --------------------------------------------------------------------------- the op
def _sigmoid(xp: Any, z: Any) -> Any:
    """``1 / (1 + exp(-z))`` from ``exp(-|z|)``, which never overflows."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _swish_canon(attrs: dict, shapes: list) -> dict:
    """``beta`` as a finite float (the canonical form stored in the graph)."""
    beta = attrs.get("beta", 1.0)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ValueError(f"swish beta must be a finite number, got {beta!r}")
    return {"beta": float(beta)}


def _swish_shape(shapes: list, batched: list, beta: float) -> tuple[int, ...]:
    return tuple(shapes[0])  # elementwise: the output has the operand's shape


def _swish_forward(xp: Any, xs: list, beta: float) -> Any:
    x = xs[0]
    return x * _sigmoid(xp, beta * x)


def _swish_vjp(xp: Any, argnum: int, g: Any, out: Any, xs: list, beta: float) -> Any:
    s = _sigmoid(xp, beta * xs[0])
    return g * (s + beta * out * (1.0 - s))  # d/dx [x s(beta x)] = s + beta x s (1 - s)


SWISH = OpDef(
    name="swish",
    arity=1,
    summary="x * sigmoid(beta * x)",
    shape=_swish_shape,
    forward=_swish_forward,
    vjp=_swish_vjp,
    defaults={"beta": 1.0},
    canon=_swish_canon,
    attr_order=("beta",),
    examples=(
        Example(((3, 4),), (True,)),  # a batched (3, 4) operand, beta = 1
        Example(((2, 3, 4),), (True,), {"beta": 0.5}),
        Example(((5,),), (False,), {"beta": 2.0}),  # an unbatched operand (a parameter)
    ),
)


def _wrong_vjp(xp: Any, argnum: int, g: Any, out: Any, xs: list, beta: float) -> Any:
    s = _sigmoid(xp, beta * xs[0])
    return g * (s + out * (1.0 - s))  # a plausible mistake: the chain rule's factor beta is lost


WRONG = dataclasses.replace(SWISH, name="swish_wrong", vjp=_wrong_vjp)


# --------------------------------------------------------------------------- the check
def check_vjp(op: OpDef) -> bool:
    """``pc.testing.check_vjp``: ``op``'s VJP against central finite differences in float64
    on each of its examples (random operands, a random cotangent ``g`` and, per float operand,
    a random direction ``v``: ``<vjp(g), v>`` against ``<g, (f(x + h v) - f(x - h v)) / 2h>``),
    as ``tests/test_ops.py`` does for the table.  Prints one line per check."""
    checks = pc.testing.check_vjp(op)
    for check in checks:
        print(f"  {check}")
    return all(c.passed for c in checks)


# --------------------------------------------------------------------------- using it
def build(hidden: int = 32, beta: float = 1.5) -> pc.Graph:
    """An MLP on 8x8 digits with a Swish hidden layer."""
    g = pc.Graph("swish_mlp")
    x = g.input("x", (64,))
    h = pc.swish(x @ g.param("W1", (64, hidden), init="he_normal") + g.param("b1", (hidden,)), beta)
    logits = h @ g.param("W2", (hidden, 10)) + g.param("b2", (10,))
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64"), name="loss"))
    return g


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="train 1 epoch")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "il", "fpa", "il-prox"],
        help="the predictive-coding algorithm compared with backprop (default: zil)",
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 5 (1 with --quick)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--out", type=Path, default=Path("runs/custom_op"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 5)
    algo = args.algorithm

    print("1. finite-difference check of the VJP (float64), on the op's examples:")
    if not check_vjp(SWISH):
        print("swish: the VJP check failed")
        return 1
    print("   the same check on a VJP that forgets the chain rule's factor beta:")
    caught = not check_vjp(WRONG)
    print(
        f"   wrong VJP {'caught' if caught else 'NOT caught'} (only by the examples with "
        "beta != 1: give examples that exercise every attribute)"
    )

    print("\n2. register it (in this process) and build a graph with pc.swish(...)")
    if "swish" not in pc.OPS:
        pc.ops.register(SWISH)
    g = build()
    print(
        f"   {g}; the swish node: {[n for n, d in g.nx.nodes(data=True) if d.get('op') == 'swish']}"
    )
    again = pc.graph_from_json(
        pc.graph_to_json(g)
    )  # graph files with the op load where it is registered
    print(f"   graph JSON round trip: {pc.graph_to_json(again) == pc.graph_to_json(g)}")

    prog64 = pc.compile(g, backend=args.backend, dtype="float64")
    lines = [line for line in str(prog64.schedule(algo)).splitlines() if "swish(" in line]
    print(f"   the {algo} schedule uses its rules:\n     " + "\n     ".join(lines))

    data = pc.data.digits(seed=args.seed).reshape((64,))
    batch = {"x": data.x_train[:64], "y": data.y_train[:64]}
    params64 = prog64.init_params(seed=args.seed)
    g_bp = prog64.grads(params64, batch, algorithm="bp")
    g_pc = prog64.grads(params64, batch, algorithm=algo)
    print(
        f"\n3. {algo} vs bp on one batch, float64: max |g_{algo} - g_bp| = "
        f"{pc.compare.max_abs_diff(g_pc, g_bp):.3e} (max |g_bp| = {pc.compare.max_abs(g_bp):.3e})"
    )

    prog = pc.compile(g, backend=args.backend)  # float32 for training
    runs = pc.compare.same_start(
        prog, ["bp", algo], lambda: pc.optim.SGD(lr=args.lr, momentum=0.9), seed=args.seed
    )
    print(f"\n4. training {algo} and bp from the same start on digits, {epochs} epoch(s):")
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        batches = data.batches(32, seed=(args.seed, epoch))
        pc.compare.train_epoch(prog, runs, ({"x": xb, "y": yb} for xb, yb in batches))
        acc = {n: accuracy(prog, r.params, data.x_test, data.y_test) for n, r in runs.items()}
        diff = pc.compare.max_abs_diff(runs[algo].params, runs["bp"].params)
        print(
            f"   epoch {epoch}: test accuracy {algo} {acc[algo]:.4f}, bp {acc['bp']:.4f}, "
            f"max |p_{algo} - p_bp| = {diff:.3e}   ({time.perf_counter() - start:.2f} s)"
        )
    print(f"{algo} vs bp with swish: max |p_{algo} - p_bp| = {diff:.3e}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = pc.save_graph(args.out / "swish_mlp.json", g)
    print(f"wrote {path} (load it after registering swish)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
