"""Fuzzing: random graphs, shapes, dtypes, attributes, batches and options.  Every call either
succeeds or raises a ``pc.PCGraphError``; on every valid graph Z-IL equals backprop.

Profiles: ``ci`` (default, short) and ``fuzz`` (``make fuzz``: ``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcgraph as pc
from pcgraph.algorithms import ALGORITHMS
from pcgraph.ops import OPS

settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "fuzz", max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ATTR_VALUES = [
    None,
    0,
    1,
    2,
    -1,
    3,
    -4,
    (1,),
    (0, 1),
    (2, 2),
    (1, 0),
    (0,),
    (),
    "x",
    1.5,
    True,
    (2, 3, -1),
    float("nan"),
]
SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
OPTION_VALUES = [
    0,
    1,
    2,
    5,
    -1,
    0.5,
    1.0,
    0.0,
    -0.5,
    float("inf"),
    float("nan"),
    "exact",
    "end",
    "identity",
    "longest",
    True,
    None,
    "bogus",
]
OPTION_NAMES = sorted({k for a in ALGORITHMS.values() for k in a.options} | {"bogus"})


def attempt(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a PCGraphError is an accepted outcome (returns None), anything else fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except pc.PCGraphError:
        return None


@st.composite
def random_programs(draw: st.DrawFn) -> tuple[pc.Graph, list[pc.Node]]:
    g = pc.Graph("fuzz")
    nodes = [g.input("x", draw(SHAPES) or (3,))]
    if draw(st.booleans()):
        nodes.append(g.input("ids", (draw(st.integers(1, 3)),), dtype="int64"))
    for i in range(draw(st.integers(0, 3))):
        init = draw(st.sampled_from([None, "normal", "zeros", "bogus"]))
        param = attempt(g.param, f"p{i}", draw(SHAPES), init=init)
        if param is not None:
            nodes.append(param)
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(sorted(OPS)))
        op = OPS[name]
        arity = op.arity or draw(st.integers(1, 3))
        operands = [
            draw(st.sampled_from(nodes))
            if draw(st.integers(0, 5))
            else draw(st.sampled_from([1.0, 2.5, np.ones((3,))]))
            for _ in range(arity)
        ]
        keys = sorted(set(op.defaults) | set(op.attr_order))
        attrs = {k: draw(st.sampled_from(ATTR_VALUES)) for k in keys if draw(st.booleans())}
        made = attempt(g.op, name, *operands, **attrs)
        if made is not None:
            nodes.append(made)
    return g, nodes


def random_batch(g: pc.Graph, draw: st.DrawFn) -> dict:
    rng = np.random.default_rng(draw(st.integers(0, 9)))
    size = draw(st.sampled_from([1, 3]))
    batch: dict[str, Any] = {}
    for name in g.inputs + g.targets:
        node = g.node(name)
        shape = (size,) + node.shape
        if draw(st.integers(0, 9)) == 0:
            shape = shape[:-1] if len(shape) > 1 else shape + (2,)
        if node.dtype == "int64":
            batch[name] = rng.integers(0, draw(st.sampled_from([1, 3, 50])), size=shape)
        else:
            batch[name] = rng.standard_normal(shape).astype(
                draw(st.sampled_from([np.float32, np.float64, np.int64]))
            )
    if draw(st.integers(0, 9)) == 0:
        batch["extra"] = np.zeros(size)
    return batch


@given(random_programs(), st.data())
def test_random_calls_succeed_or_raise_a_pcgraph_error(made: tuple, data: st.DataObject) -> None:
    g, nodes = made
    candidate = data.draw(st.sampled_from(nodes))
    loss = candidate if candidate.shape == () else attempt(pc.sum, candidate)
    if loss is None or attempt(g.set_loss, loss) is None:
        return
    prog = attempt(
        pc.compile, g, dtype=data.draw(st.sampled_from(["float64", "float32", "float16"]))
    )
    if prog is None:
        return
    params = attempt(prog.init_params, seed=0)
    if params is None:
        return
    batch = random_batch(g, data.draw)
    algorithm = data.draw(st.sampled_from([*ALGORITHMS, "bogus"]))
    options = {
        k: data.draw(st.sampled_from(OPTION_VALUES))
        for k in data.draw(st.lists(st.sampled_from(OPTION_NAMES), max_size=2))
    }
    with np.errstate(all="ignore"):
        attempt(prog.loss, params, batch)
        attempt(prog.grads, params, batch, algorithm=algorithm, **options)
        attempt(
            prog.train_step,
            params,
            batch,
            algorithm=algorithm,
            optimizer=pc.optim.SGD(lr=0.1),
            **options,
        )


@given(random_programs(), st.data())
def test_zil_equals_backprop_on_every_valid_random_graph(made: tuple, data: st.DataObject) -> None:
    g, nodes = made
    floats = [n for n in nodes if n.batched and n.dtype == "float"]
    if not floats:
        return
    total = attempt(pc.sum, data.draw(st.sampled_from(floats)))
    if total is None or attempt(g.set_loss, total) is None:
        return
    prog = attempt(pc.compile, g, dtype="float64")
    params = attempt(prog.init_params, seed=0) if prog is not None else None
    if params is None:
        return
    rng = np.random.default_rng(0)
    batch = {
        n: (
            rng.integers(0, 3, size=(3,) + g.node(n).shape)
            if g.node(n).dtype == "int64"
            else rng.standard_normal((3,) + g.node(n).shape)
        )
        for n in g.inputs + g.targets
    }
    with np.errstate(all="ignore"):
        bp = attempt(prog.grads, params, batch, algorithm="bp")
        zil = attempt(prog.grads, params, batch, algorithm="zil")
    if bp is None or zil is None:
        assert (bp is None) == (zil is None) or zil is None, "backprop failed where Z-IL ran"
        return
    for k in bp:
        a, b = pc.to_numpy(zil[k]), pc.to_numpy(bp[k])
        if np.all(np.isfinite(b)) and np.max(np.abs(b), initial=0) < 1e6:
            assert np.allclose(a, b, rtol=1e-9, atol=1e-12), k
