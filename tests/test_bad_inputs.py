"""A catalogue of bad inputs: each raises the right ``pc.PCGraphError`` subclass, with a message that
names the node, key, option or setting at fault, and never chains a raw library error."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pcgraph as pc


def small(name: str = "small") -> pc.Graph:
    g = pc.Graph(name)
    x = g.input("x", (4,))
    h = pc.tanh(pc.matmul(x, g.param("W", (4, 3)), name="logits"), name="h")
    g.set_loss(pc.softmax_cross_entropy(h, g.target("y", (), dtype="int64"), name="loss"))
    return g


def prog(dtype: str = "float64") -> pc.Program:
    return pc.compile(small(), dtype=dtype)


def good_batch(n: int = 2) -> dict:
    return {"x": np.zeros((n, 4)), "y": np.zeros(n, dtype=np.int64)}


def loss_of(batch: dict) -> Callable[[], Any]:
    def run() -> Any:
        p = prog()
        return p.loss(p.init_params(0), batch)

    return run


def grads_with(algorithm: str, **options: Any) -> Callable[[], Any]:
    def run() -> Any:
        p = prog()
        return p.grads(p.init_params(0), good_batch(), algorithm=algorithm, **options)

    return run


def step_with(**kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        p = prog()
        return p.train_step(p.init_params(0), good_batch(), **kwargs)

    return run


def edited(edit: Callable[[pc.Graph], Any]) -> Callable[[], Any]:
    def run() -> Any:
        g = small()
        edit(g)
        return pc.compile(g)

    return run


def graph_with(build: Callable[[pc.Graph], Any]) -> Callable[[], Any]:
    return lambda: build(pc.Graph("bad"))


def x_of(g: pc.Graph, shape: tuple = (4,)) -> pc.Node:
    return g.input("x", shape)


def with_file(content: Callable[[Path], Any], action: Callable[[Path], Any]) -> Callable[[], Any]:
    """Write a file with ``content(path)`` in a fresh folder, then run ``action(path)``."""

    def run() -> Any:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bad_file"
            content(path)
            return action(path)

    return run


def checkpoint_bytes(path: Path) -> bytes:
    p = prog()
    pc.save(path.with_suffix(".npz"), p.init_params(0), program=p)
    return path.with_suffix(".npz").read_bytes()


def truncated(path: Path) -> None:
    path.write_bytes(checkpoint_bytes(path)[:200])


def corrupted(path: Path) -> None:
    data = bytearray(checkpoint_bytes(path))
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def other_graph(path: Path) -> None:
    p = pc.compile(small("other"), dtype="float64")
    pc.save(path.with_suffix(".npz"), p.init_params(0), program=p)
    path.write_bytes(path.with_suffix(".npz").read_bytes())


def load_into_other(path: Path) -> Any:
    g = small("other")
    g.set_loss(pc.mse(g.node("h"), g.target("t", (3,))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pc.load(path, pc.compile(g, dtype="float64"))


def graph_json_with_unknown_op(path: Path) -> None:
    path.write_text(pc.graph_to_json(small()).replace('"tanh"', '"tanhh"'))


CASES: list[tuple[str, Callable[[], Any], type, str]] = [
    # graph building
    (
        "duplicate name",
        graph_with(lambda g: (x_of(g), g.param("x", (3,)))),
        pc.GraphError,
        "'x' already exists",
    ),
    (
        "matmul shapes",
        graph_with(lambda g: pc.matmul(x_of(g), g.param("W", (5, 3)), name="m")),
        pc.ShapeError,
        r"'m' \(matmul\).*\(4,\).*\(5, 3\)",
    ),
    (
        "broadcast shapes",
        graph_with(lambda g: pc.add(x_of(g), g.param("b", (3,)), name="s")),
        pc.ShapeError,
        r"'s' \(add\).*\(4,\) and \(3,\)",
    ),
    (
        "too many operands",
        graph_with(lambda g: g.op("tanh", x_of(g), x_of(g) if False else 1.0, name="t")),
        pc.GraphError,
        "tanh",
    ),
    (
        "missing operand",
        graph_with(lambda g: g.op("add", x_of(g), name="a")),
        pc.ShapeError,
        r"'a' \(add\): takes 2",
    ),
    (
        "non-scalar loss",
        graph_with(lambda g: g.set_loss(pc.tanh(x_of(g), name="h"))),
        pc.GraphError,
        "'h' must be a batched scalar",
    ),
    (
        "unbatched loss",
        graph_with(lambda g: g.set_loss(pc.sum(g.param("w", (3,)), name="s"))),
        pc.GraphError,
        "'s' must be a batched scalar",
    ),
    (
        "axis out of range",
        graph_with(lambda g: pc.softmax(x_of(g), axis=3, name="sm")),
        pc.ShapeError,
        "'sm'.*axis 3 is out of range",
    ),
    (
        "bad permutation",
        graph_with(lambda g: pc.transpose(x_of(g, (2, 3)), axes=(0, 0))),
        pc.ShapeError,
        "not a permutation",
    ),
    (
        "bad reshape",
        graph_with(lambda g: pc.reshape(x_of(g), shape=(3,), name="r")),
        pc.ShapeError,
        r"'r'.*cannot reshape .*\(4,\) to \(3,\)",
    ),
    (
        "index out of range",
        graph_with(lambda g: x_of(g)[7]),
        pc.ShapeError,
        "index 7 is out of range",
    ),
    ("slice step", graph_with(lambda g: x_of(g)[::-1]), pc.ShapeError, "step must be positive"),
    ("empty slice", graph_with(lambda g: x_of(g)[3:1]), pc.ShapeError, "is empty"),
    ("tuple index", graph_with(lambda g: x_of(g, (2, 3))[0, 1]), pc.GraphError, "only x\\[i\\]"),
    (
        "unknown op",
        graph_with(lambda g: g.op("conv9d", x_of(g))),
        pc.GraphError,
        "unknown op 'conv9d'",
    ),
    (
        "unknown attribute",
        graph_with(lambda g: pc.softmax(x_of(g), dim=0, name="sm")),
        pc.ShapeError,
        "'sm'.*unknown attribute.*'dim'",
    ),
    (
        "zero-size shape",
        graph_with(lambda g: g.input("x", (0, 3))),
        pc.GraphError,
        "input 'x': shape must hold positive ints",
    ),
    (
        "unknown dtype",
        graph_with(lambda g: g.input("x", (3,), dtype="complex64")),
        pc.GraphError,
        "input 'x': unknown dtype",
    ),
    (
        "unknown init",
        graph_with(lambda g: g.param("W", (3, 3), init="xavier_magic")),
        pc.GraphError,
        "param 'W': unknown init 'xavier_magic'",
    ),
    (
        "node of another graph",
        graph_with(lambda g: pc.add(x_of(g), small().node("x"))),
        pc.GraphError,
        "belongs to graph 'small'",
    ),
    (
        "integer into tanh",
        graph_with(lambda g: pc.tanh(g.input("ids", (3,), dtype="int64"), name="t")),
        pc.ShapeError,
        "'t' \\(tanh\\): operand 0 is an integer",
    ),
    (
        "label shape",
        graph_with(
            lambda g: pc.softmax_cross_entropy(
                x_of(g), g.target("y", (2,), dtype="int64"), name="l"
            )
        ),
        pc.ShapeError,
        "'l'.*target shape \\(2,\\)",
    ),
    (
        "mse shapes",
        graph_with(lambda g: pc.mse(x_of(g), g.target("y", (3,)), name="l")),
        pc.ShapeError,
        "'l'.*\\(4,\\) and target shape \\(3,\\)",
    ),
    (
        "concat shapes",
        graph_with(lambda g: pc.concat([x_of(g, (2, 3)), g.input("z", (2, 4))], name="c")),
        pc.ShapeError,
        "'c'.*differ off the concatenation axis",
    ),
    (
        "constant of a string",
        graph_with(lambda g: x_of(g) + "1"),
        pc.GraphError,
        "no node named '1'",
    ),
    # editing g.nx directly
    ("cycle", edited(lambda g: g.nx.add_edge("loss", "x", pos=0)), pc.GraphError, "cycle"),
    (
        "dangling operand",
        edited(lambda g: g.nx.remove_edge("W", "logits")),
        pc.GraphError,
        "'logits'",
    ),
    (
        "duplicate position",
        edited(lambda g: g.nx.add_edge("x", "logits", pos=0)),
        pc.GraphError,
        "'logits'.*positions",
    ),
    (
        "unknown node kind",
        edited(lambda g: g.nx.add_node("odd", kind="magic")),
        pc.GraphError,
        "'odd' has kind 'magic'",
    ),
    (
        "unknown op in nx",
        edited(lambda g: g.nx.nodes["h"].update(op="tanhh")),
        pc.GraphError,
        "'h': unknown op 'tanhh'",
    ),
    (
        "stale shape in nx",
        edited(lambda g: g.nx.nodes["x"].update(shape=(5,))),
        pc.ShapeError,
        "'logits'",
    ),
    ("no loss", graph_with(lambda g: (pc.tanh(x_of(g)), pc.compile(g))), pc.GraphError, "no loss"),
    (
        "loss removed",
        edited(lambda g: g.nx.remove_node("loss")),
        pc.GraphError,
        "its loss 'loss' is not a node of the graph",
    ),
    # compiling
    (
        "unknown backend",
        lambda: pc.compile(small(), backend="tpu"),
        pc.BackendError,
        "unknown backend 'tpu'",
    ),
    (
        "unknown compile dtype",
        lambda: pc.compile(small(), dtype="float16"),
        pc.OptionError,
        "unknown dtype 'float16'",
    ),
    ("not a graph", lambda: pc.compile("mlp"), pc.GraphError, "needs a pcgraph.Graph"),
    # feeding
    ("missing key", loss_of({"x": np.zeros((2, 4))}), pc.FeedError, "missing 'y'"),
    (
        "extra key",
        loss_of({**good_batch(), "z": np.zeros(2)}),
        pc.FeedError,
        "unknown feed key 'z'",
    ),
    (
        "param in batch",
        loss_of({**good_batch(), "W": np.zeros((4, 3))}),
        pc.FeedError,
        "'W'.*pass it in params",
    ),
    (
        "wrong shape",
        loss_of({**good_batch(), "x": np.zeros((2, 5))}),
        pc.FeedError,
        r"'x' has shape \(2, 5\)",
    ),
    (
        "float labels",
        loss_of({**good_batch(), "y": np.zeros(2)}),
        pc.FeedError,
        "'y' must hold integers",
    ),
    (
        "labels out of range",
        loss_of({**good_batch(), "y": np.array([0, 3])}),
        pc.FeedError,
        "'y'.*outside the 3 classes",
    ),
    (
        "negative label",
        loss_of({**good_batch(), "y": np.array([-1, 0])}),
        pc.FeedError,
        "'y'.*outside",
    ),
    ("empty batch", loss_of(good_batch(0)), pc.FeedError, "'x' is an empty batch"),
    (
        "batch sizes differ",
        loss_of({"x": np.zeros((2, 4)), "y": np.zeros(3, np.int64)}),
        pc.FeedError,
        "batch size",
    ),
    (
        "strings",
        loss_of({**good_batch(), "x": np.full((2, 4), "a")}),
        pc.FeedError,
        "'x' has dtype <U1",
    ),
    ("batch not a dict", loss_of([np.zeros((2, 4))]), pc.FeedError, "must be a dict"),
    ("params missing", lambda: prog().loss({}, good_batch()), pc.FeedError, "missing 'W'"),
    (
        "params wrong shape",
        lambda: prog().loss({"W": np.zeros((3, 4))}, good_batch()),
        pc.FeedError,
        r"param 'W' has shape \(3, 4\)",
    ),
    (
        "params extra",
        lambda: prog().loss({"W": np.zeros((4, 3)), "V": 1}, good_batch()),
        pc.FeedError,
        "unknown key.*'V'",
    ),
    (
        "unknown node to evaluate",
        lambda: prog().evaluate({"W": np.zeros((4, 3))}, good_batch(), "nope"),
        pc.GraphError,
        "'nope'",
    ),
    # algorithm options
    (
        "unknown algorithm",
        grads_with("backprop"),
        pc.OptionError,
        "unknown algorithm 'backprop'; choose one of bp",
    ),
    ("zero steps", grads_with("il", steps=0), pc.OptionError, "steps=0 must be an int from 1"),
    ("negative rate", grads_with("il", rate=-0.1), pc.OptionError, "rate=-0.1"),
    ("infinite rate", grads_with("fpa", rate=float("inf")), pc.OptionError, "rate=inf"),
    ("nan noise", grads_with("zil", init_noise=float("nan")), pc.OptionError, "init_noise"),
    (
        "option of another algorithm",
        grads_with("zil", steps=3),
        pc.OptionError,
        "no option 'steps' \\(it is an option of il",
    ),
    ("option of bp", grads_with("bp", rate=1.0), pc.OptionError, "'bp' has no option 'rate'"),
    ("bad levelling", grads_with("zil", levelling="flat"), pc.OptionError, "levelling='flat'"),
    ("il-prox without alpha", grads_with("il-prox"), pc.OptionError, "needs alpha"),
    # optimiser settings
    ("no optimiser", step_with(optimizer=None), pc.OptionError, "needs optimizer="),
    ("negative lr", lambda: pc.optim.SGD(lr=-0.1), pc.OptionError, "SGD: lr=-0.1"),
    ("nan lr", lambda: pc.optim.Adam(lr=float("nan")), pc.OptionError, "Adam: lr=nan"),
    (
        "momentum above 1",
        lambda: pc.optim.SGD(lr=0.1, momentum=2.0),
        pc.OptionError,
        "momentum=2.0",
    ),
    ("beta of 1", lambda: pc.optim.Adam(betas=(0.9, 1.0)), pc.OptionError, "betas"),
    (
        "nesterov without momentum",
        lambda: pc.optim.SGD(lr=0.1, nesterov=True),
        pc.OptionError,
        "nesterov",
    ),
    (
        "bad on_nonfinite",
        step_with(optimizer=pc.optim.SGD(lr=0.1), on_nonfinite="ignore"),
        pc.OptionError,
        "on_nonfinite='ignore'",
    ),
    # files
    (
        "truncated checkpoint",
        with_file(truncated, lambda p: pc.load(p)),
        pc.FileFormatError,
        "bad_file",
    ),
    (
        "corrupted checkpoint",
        with_file(corrupted, lambda p: pc.load(p)),
        pc.FileFormatError,
        "bad_file",
    ),
    (
        "checkpoint for another graph",
        with_file(other_graph, load_into_other),
        pc.FileFormatError,
        "bad_file",
    ),
    (
        "not a checkpoint",
        with_file(lambda p: p.write_text("hello"), lambda p: pc.load(p)),
        pc.FileFormatError,
        "bad_file",
    ),
    (
        "malformed graph JSON",
        with_file(lambda p: p.write_text("{nodes: ["), lambda p: pc.load_graph(p)),
        pc.FileFormatError,
        "bad_file",
    ),
    (
        "unknown op in graph JSON",
        with_file(graph_json_with_unknown_op, lambda p: pc.load_graph(p)),
        pc.FileFormatError,
        "bad_file.*tanhh",
    ),
    (
        "graph JSON of the wrong type",
        with_file(lambda p: p.write_text("[1, 2, 3]"), lambda p: pc.load_graph(p)),
        pc.FileFormatError,
        "bad_file",
    ),
    # environment
    (
        "bogus default backend",
        lambda: pc.set_default_backend("bogus"),
        pc.BackendError,
        "unknown backend 'bogus'",
    ),
]


@pytest.mark.parametrize("name,make,error,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_precise_pcgraph_error(
    name: str, make: Callable[[], Any], error: type, match: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.UnusedParameterWarning)
        with pytest.raises(error, match=match) as info:
            make()
    assert isinstance(info.value, pc.PCGraphError)
    leaked = info.value.__cause__ or (
        None if info.value.__suppress_context__ else info.value.__context__
    )
    assert leaked is None, f"{name}: chained {type(leaked).__name__}: {leaked}"


def test_the_catalogue_has_at_least_40_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


def test_env_var_naming_an_unknown_backend_fails_at_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCGRAPH_BACKEND", "bogus")
    with pytest.raises(pc.BackendError, match=r"'bogus' \(from \$PCGRAPH_BACKEND\)"):
        pc.compile(small())


def test_an_unknown_node_name_suggests_the_names_that_exist() -> None:
    g = pc.models.mlp(sizes=(4, 3, 2))
    prog = pc.compile(g)
    with pytest.raises(pc.GraphError, match=r"no node named 'relu0'.*did you mean 'relu_0'\?"):
        prog.evaluate(prog.init_params(0), {"x": np.zeros((1, 4), np.float32)}, "relu0")
    with pytest.raises(pc.GraphError, match=r"its nodes: x, fc0.W, fc0.b, fc0, relu_0, .*, loss$"):
        g.node("zzzzzz")


def test_a_misshapen_feed_says_what_to_do() -> None:
    prog = pc.compile(pc.models.mlp())
    params, y = prog.init_params(0), np.zeros(4, np.int64)
    with pytest.raises(pc.FeedError, match=r"the sizes agree: pass x.reshape\(len\(x\), 784\)"):
        prog.loss(params, {"x": np.zeros((4, 28, 28), np.float32), "y": y})
    with pytest.raises(pc.FeedError, match=r"for examples of shape \(8, 8\)"):
        prog.loss(params, {"x": np.zeros((4, 8, 8), np.float32), "y": y})
