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


# ------------------------------------------------------------------ hostile inputs
# Values a careless or hostile caller may put anywhere: each must give a typed error or work.
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    float("nan"),
    float("inf"),
    "x",
    "",
    (),
    (0,),
    (2, -1),
    ("3",),
    [1, 2],
    {"a": 1},
    np.float32(0.1),
    np.int64(3),
    np.ones(2),
    np.array(1j),
    np.array(["a"]),
    object(),
]
NODE_KEYS = ["kind", "op", "shape", "dtype", "batched", "attrs", "value", "init"]


def _base_graph() -> pc.Graph:
    g = pc.Graph("base")
    x = g.input("x", (3,))
    h = pc.tanh(pc.linear(x, g.param("W", (3, 2)), g.param("b", (2,))) * g.const(2.0, name="c"))
    g.set_loss(pc.softmax_cross_entropy(h, g.target("y", (), dtype="int64"), name="loss"))
    return g


@given(st.data())
def test_random_edits_of_the_networkx_graph_give_a_typed_error_or_a_valid_graph(
    data: st.DataObject,
) -> None:
    g = _base_graph()
    names = list(g.nx.nodes)
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from(["set", "drop", "edge", "unedge", "relabel"]))
        node = data.draw(st.sampled_from(names))
        if node not in g.nx:
            continue
        if what == "set":
            g.nx.nodes[node][data.draw(st.sampled_from(NODE_KEYS))] = data.draw(
                st.sampled_from(ODD_VALUES)
            )
        elif what == "drop":
            g.nx.nodes[node].pop(data.draw(st.sampled_from(NODE_KEYS)), None)
        elif what == "edge":
            other = data.draw(st.sampled_from(names))
            if other in g.nx:
                g.nx.add_edge(other, node, pos=data.draw(st.sampled_from(ODD_VALUES)))
        elif what == "unedge":
            edges = list(g.nx.in_edges(node, keys=True))
            if edges:
                g.nx.remove_edge(*data.draw(st.sampled_from(edges)))
        else:
            new = data.draw(st.sampled_from([7, ("t",), "", "fresh"]))
            attempt(nx_relabel, g, node, new)
    with np.errstate(all="ignore"):
        prog = attempt(pc.compile, g, dtype="float64")
        text = attempt(lambda: pc.graph_to_json(g))
        attempt(pc.fingerprint, g)
    if text is not None:  # what could be saved must load and compile alike
        again = pc.graph_from_json(text)
        assert (attempt(pc.compile, again) is None) == (prog is None)


def nx_relabel(g: pc.Graph, old: Any, new: Any) -> None:
    import networkx as nx

    nx.relabel_nodes(g.nx, {old: new}, copy=False)


@given(st.data())
def test_random_feeds_params_and_options_give_a_typed_error_and_apply_nothing(
    data: st.DataObject,
) -> None:
    prog = pc.compile(_base_graph(), dtype=data.draw(st.sampled_from(["float32", "float64"])))
    params = prog.init_params(0)
    before = {k: v.copy() for k, v in params.items()}
    batch: dict[str, Any] = {
        "x": np.ones((4, 3), dtype=np.float32),
        "y": np.zeros(4, dtype=np.int64),
    }
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(["x", "y", "W", "bogus", 3]))
        batch[key] = data.draw(st.sampled_from(ODD_VALUES + [np.ones((4, 3)), np.arange(4)]))
    bad_params = dict(params)
    if data.draw(st.booleans()):
        bad_params[data.draw(st.sampled_from(["W", "b", "extra"]))] = data.draw(
            st.sampled_from(ODD_VALUES)
        )
    options = {
        data.draw(st.sampled_from(OPTION_NAMES + ["alpha", "eps"])): data.draw(
            st.sampled_from(ODD_VALUES + OPTION_VALUES)
        )
        for _ in range(data.draw(st.integers(0, 2)))
    }
    algorithm = data.draw(st.sampled_from([*ALGORITHMS, ["bp"], None]))
    opt = attempt(
        data.draw(st.sampled_from([pc.optim.SGD, pc.optim.Adam])),
        lr=data.draw(st.sampled_from([0.1, *ODD_VALUES])),
    )
    stepped = None
    with np.errstate(all="ignore"):
        attempt(prog.grads, bad_params, batch, algorithm, **options)
        if opt is not None:
            stepped = attempt(
                prog.train_step, bad_params, batch, algorithm, optimizer=opt, **options
            )
    if stepped is None:  # refused, or never tried: not one parameter may have moved
        for k in params:
            assert np.array_equal(params[k], before[k], equal_nan=True), k


@given(data=st.data())
def test_damaged_checkpoints_and_graph_files_give_a_typed_error_or_load(
    tmp_path_factory: Any, data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("files")
    g = _base_graph()
    prog = pc.compile(g)
    good = {
        "ck.npz": pc.save(folder / "ck.npz", prog.init_params(0), {"step": 1}, {"m": [1]}, prog),
        "g.json": pc.save_graph(folder / "g.json", g),
    }
    name = data.draw(st.sampled_from(sorted(good)))
    raw = bytearray(good[name].read_bytes())
    how = data.draw(st.sampled_from(["flip", "cut", "splice", "noise"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    if how == "flip":
        for i in rng.integers(0, len(raw), size=data.draw(st.integers(1, 8))):
            raw[i] = int(rng.integers(0, 256))
    elif how == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif how == "splice":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = (
            rng.integers(0, 256, size=data.draw(st.integers(1, 64))).astype(np.uint8).tobytes()
        )
    else:
        raw = bytearray(
            rng.integers(0, 256, size=data.draw(st.integers(0, 512))).astype(np.uint8).tobytes()
        )
    bad = folder / f"bad-{name}"
    bad.write_bytes(bytes(raw))
    if name == "ck.npz":
        attempt(pc.load, bad)
        attempt(pc.load, bad, prog)
    else:
        attempt(pc.load_graph, bad)
