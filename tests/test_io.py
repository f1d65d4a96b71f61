"""Graph files (``pcgraph.graph_file``) round-trip exactly and refuse bad or hostile content;
checkpoints (``pcgraph.checkpoint``) are atomic, pickle-free, and refuse truncated, corrupted or
foreign files."""

from __future__ import annotations

import gc
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import attention, mlp, residual, rnn

import pcgraph as pc
from pcgraph.testing import random_batch

BUILDERS = [mlp, residual, rnn, attention]


# --------------------------------------------------------------------------- graph files
@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_graph_json_round_trip(build, tmp_path: Path) -> None:  # noqa: ANN001
    g = build()
    path = pc.save_graph(tmp_path / "g.json", g)
    back = pc.load_graph(path)
    assert back.name == g.name and pc.graph_to_json(back) == pc.graph_to_json(g)
    assert pc.fingerprint(back) == pc.fingerprint(g)
    p1, p2 = pc.compile(g, dtype="float64"), pc.compile(back, dtype="float64")
    assert str(p1.schedule("bp")) == str(p2.schedule("bp"))
    params, batch = p1.init_params(seed=1), random_batch(g)
    assert p1.loss(params, batch) == p2.loss(params, batch)
    g1, g2 = p1.grads(params, batch), p2.grads(params, batch)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert pc.graph_to_json(pc.graph_from_json(pc.graph_to_json(g))) == pc.graph_to_json(g)


def test_graph_json_keeps_named_inits_consts_and_int_targets() -> None:
    g = pc.Graph("c")
    x = g.input("x", (2, 3))
    w = g.param("w", (3,), init="he_normal")
    h = x * w + np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32) * 0.5
    g.set_loss(pc.softmax_cross_entropy(pc.sum(h, axis=0), g.target("y", (), dtype="int64")))
    back = pc.graph_from_json(pc.graph_to_json(g))
    assert back.nx.nodes["w"]["init"] == "he_normal"
    assert back.node("y").dtype == "int64"
    consts = [n for n, k in back.nx.nodes(data="kind") if k == "const"]
    assert np.array_equal(back.nx.nodes[consts[0]]["value"], g.nx.nodes[consts[0]]["value"])
    p1, p2 = pc.compile(g), pc.compile(back)
    assert pc.fingerprint(p1) == pc.fingerprint(p2)
    assert np.array_equal(p1.init_params(3)["w"], p2.init_params(3)["w"])


def test_callable_init_is_refused_on_save() -> None:
    g = mlp()
    g.nx.nodes["W0"]["init"] = lambda rng, shape: np.ones(shape)
    with pytest.raises(pc.GraphError, match="param 'W0'.*callable"):
        pc.graph_to_json(g)


def _file(**change: object) -> dict:
    data = json.loads(pc.graph_to_json(mlp()))
    data.update(change)
    return data


def _node(data: dict, name: str) -> dict:
    return next(n for n in data["nodes"] if n["name"] == name)


def _edit(name: str, **fields: object) -> str:
    data = _file()
    _node(data, name).update(fields)
    return json.dumps(data)


def _bad_cases() -> dict[str, tuple[str, str]]:
    """Malformed and hostile graph files: (text, what the error must mention)."""
    base = _file()
    reordered = _file(nodes=list(reversed(base["nodes"])))
    dup = _file(nodes=base["nodes"] + [base["nodes"][0]])
    deep = "[" * 100000 + "]" * 100000
    return {
        "not json": ("{nodes: oops", "not valid JSON"),
        "nan": (pc.graph_to_json(mlp()).replace('"init": "normal"', '"init": NaN', 1), "NaN"),
        "deep nesting": (deep, "nested too deeply|pcgraph graph file"),
        "a list": ("[]", "JSON object"),
        "wrong format": (json.dumps(_file(format="pickle")), "not a pcgraph graph file"),
        "wrong version": (json.dumps(_file(version=99)), "version 99"),
        "bool version": (json.dumps(_file(version=True)), "version True"),
        "unknown top field": (json.dumps(_file(code="import os")), r"unknown field.*code"),
        "no name": (json.dumps(_file(name="")), "'name'"),
        "nodes not a list": (json.dumps(_file(nodes={})), "'nodes' must be a list"),
        "unknown op": (_edit("matmul_0", op="os.system"), "node 'matmul_0': unknown op"),
        "unknown kind": (_edit("x", kind="module"), "node 'x': unknown kind"),
        "unknown node field": (_edit("x", exec="rm -rf /"), r"node 'x': unknown field.*exec"),
        "hostile init": (
            _edit("W0", init="__import__('os').system('echo pwned')"),
            "node 'W0': unknown init",
        ),
        "init not a string": (_edit("W0", init={"module": "os"}), "node 'W0': unknown init"),
        "bool shape": (_edit("x", shape=[True, 6]), "node 'x': 'shape' must be a list"),
        "negative shape": (_edit("x", shape=[-6]), "node 'x': 'shape'"),
        "string shape": (_edit("x", shape="6"), "node 'x': 'shape'"),
        "huge shape": (_edit("W0", shape=[1 << 20, 1 << 20]), "node 'W0': shape .* more than"),
        "missing shape": (json.dumps(_drop("x", "shape")), "node 'x': 'shape' is missing"),
        "bad dtype": (_edit("y", dtype="object"), "node 'y': 'dtype'"),
        "param dtype": (_edit("W0", dtype="int64"), "node 'W0': a param has dtype"),
        "attrs not object": (_edit("matmul_0", attrs=[1]), "node 'matmul_0': 'attrs'"),
        "attr value object": (
            _edit("matmul_0", attrs={"x": {"__class__": "os"}}),
            "node 'matmul_0': attribute values",
        ),
        "unknown attr": (_edit("matmul_0", attrs={"axis": 1}), "'matmul_0'.*unknown attribute"),
        "operands not list": (_edit("matmul_0", operands="x"), "node 'matmul_0': 'operands'"),
        "unknown operand": (_edit("matmul_0", operands=["x", "nope"]), "operand 'nope'"),
        "forward reference": (json.dumps(reordered), "is not a node listed before it"),
        "duplicate name": (json.dumps(dup), "used twice"),
        "wrong arity": (_edit("matmul_0", operands=["x"]), "'matmul_0'.*operand"),
        "shape mismatch": (_edit("matmul_0", shape=[7]), r"node 'matmul_0': 'shape' says \[7\]"),
        "operand shapes": (_edit("matmul_0", operands=["x", "W1"]), "'matmul_0'"),
        "missing loss": (json.dumps(_file(loss="nowhere")), "'loss' must name one of the nodes"),
        "non-scalar loss": (json.dumps(_file(loss="add_0")), "node 'add_0'.*batched scalar"),
        "not utf-8": ("\udcff", "UTF-8|not valid JSON"),
    }


def _drop(name: str, key: str) -> dict:
    data = _file()
    del _node(data, name)[key]
    return data


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_graph_files_fail_with_the_file_and_node(case: str, tmp_path: Path) -> None:
    text, expected = _bad_cases()[case]
    path = tmp_path / "model.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(pc.FileFormatError, match=expected) as info:
        pc.load_graph(path)
    assert str(info.value).startswith(str(path))


def test_const_values_are_checked() -> None:
    g = pc.Graph("k")
    x = g.input("x", (2,))
    g.set_loss(pc.mse(x * np.array([1.0, 2.0]), g.target("y", (2,))))
    data = json.loads(pc.graph_to_json(g))
    const = next(n for n in data["nodes"] if n["kind"] == "const")
    for value, msg in (([1.0, [2.0]], "number or nested lists|ragged"), ([1.0, True], "number")):
        const["value"] = value
        with pytest.raises(pc.FileFormatError, match=msg):
            pc.graph_from_json(json.dumps(data))
    const["value"] = [1.0, 2.0, 3.0]
    with pytest.raises(pc.FileFormatError, match=r"'value' has shape \(3,\)"):
        pc.graph_from_json(json.dumps(data))


def test_missing_graph_file() -> None:
    with pytest.raises(pc.FileFormatError, match="no such file"):
        pc.load_graph("/nonexistent/model.json")


def test_fingerprint_tracks_structure_not_name() -> None:
    a, b = mlp(), mlp()
    b.name = "renamed"
    assert pc.fingerprint(a) == pc.fingerprint(b) == pc.fingerprint(pc.compile(a))
    assert pc.fingerprint(mlp((6, 5, 3))) != pc.fingerprint(a)


# --------------------------------------------------------------------------- checkpoints
def _trained(opt: pc.optim.Optimizer, steps: int, params: dict | None = None) -> tuple:
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(seed=0) if params is None else params
    for s in range(steps):
        prog.train_step(params, random_batch(g, seed=s), optimizer=opt)
    return prog, params


@pytest.mark.parametrize("make", [lambda: pc.optim.Adam(lr=0.01), lambda: pc.optim.SGD(0.1, 0.9)])
def test_checkpoint_resume_is_bit_identical(make, tmp_path: Path) -> None:  # noqa: ANN001
    prog, straight = _trained(make(), 5)
    opt = make()
    prog, params = _trained(opt, 3)
    path = pc.save(tmp_path / "ck.npz", params, opt.state_dict(), {"step": 3}, program=prog)
    ck = pc.load(path, prog)
    assert ck.meta == {"step": 3} and ck.graph == "mlp" and ck.dtype == "float64"
    assert ck.fingerprint == pc.fingerprint(prog)
    resumed = make()
    resumed.load_state_dict(ck.optimizer_state)
    params = ck.params
    for s in range(3, 5):
        prog.train_step(params, random_batch(mlp(), seed=s), optimizer=resumed)
    assert all(np.array_equal(params[k], straight[k]) for k in straight)


def test_checkpoint_without_program_keeps_numpy_arrays(tmp_path: Path) -> None:
    params = {"w": np.arange(6.0).reshape(2, 3), "odd/name with spaces": np.ones(2, np.float32)}
    pc.save(tmp_path / "ck", params, meta={"epoch": 2, "note": "x"})
    ck = pc.load(tmp_path / "ck")
    assert ck.fingerprint is None and ck.optimizer_state is None
    assert ck.params["odd/name with spaces"].dtype == np.float32
    assert np.array_equal(ck.params["w"], params["w"])


def test_checkpoint_for_another_graph(tmp_path: Path) -> None:
    prog = pc.compile(mlp())
    pc.save(tmp_path / "ck.npz", prog.init_params(), program=prog)
    with pytest.raises(
        pc.FileFormatError, match=r"ck\.npz: checkpoint is for graph 'mlp'.*'residual'"
    ):
        pc.load(tmp_path / "ck.npz", pc.compile(residual()))
    # Saved without a program there is no fingerprint: names and shapes are still checked.
    pc.save(tmp_path / "bare.npz", {"W0": np.zeros((6, 5))})
    with pytest.raises(pc.FileFormatError, match="bare.npz: checkpoint lacks param"):
        pc.load(tmp_path / "bare.npz", prog)
    shapes = {p: np.zeros(prog.compiled.nodes[p].shape) for p in prog.params}
    shapes["W0"] = np.zeros((5, 6))
    pc.save(tmp_path / "shape.npz", shapes)
    with pytest.raises(pc.FileFormatError, match=r"param 'W0' has shape \(5, 6\)"):
        pc.load(tmp_path / "shape.npz", prog)


def test_truncated_checkpoints(tmp_path: Path) -> None:
    prog, params = _trained(pc.optim.SGD(0.1, 0.9), 1)
    path = pc.save(tmp_path / "ck.npz", params, program=prog)
    raw = path.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cut in sorted({1, 10, 100, len(raw) // 3, len(raw) // 2, len(raw) - 30, len(raw) - 1}):
            path.write_bytes(raw[:cut])
            with pytest.raises(pc.FileFormatError, match=str(path)):
                pc.load(path, prog)
        gc.collect()
    # Every failed load closed the file it opened: none was left for the collector.
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_corrupted_checkpoint_is_caught_by_crc(tmp_path: Path) -> None:
    prog, params = _trained(pc.optim.SGD(0.1), 1)
    path = pc.save(tmp_path / "ck.npz", params, program=prog)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a0.npy")
    # Flip one byte inside the array data of a0 (after its local header and .npy header).
    at = info.header_offset + 30 + len(info.filename) + 200
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(pc.FileFormatError, match="ck.npz: unreadable or corrupted .*CRC"):
        pc.load(path, prog)


def test_foreign_and_hostile_archives(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(pc.FileFormatError, match="single array"):
        pc.load(tmp_path / "one.npy")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(pc.FileFormatError, match="no manifest"):
        pc.load(tmp_path / "plain.npz")
    # An object array needs pickle to load: it must be refused, never unpickled.
    manifest = {"format": "pcgraph-checkpoint", "version": 1, "meta": {}, "optimizer": None}
    listed = {**manifest, "params": [{"name": "w", "__array__": "a0", "shape": [1]}]}
    hostile = np.array([{"x": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", manifest=np.array(json.dumps(listed)), a0=hostile)
    with pytest.raises(pc.FileFormatError, match="pickled.npz: array .a0. of dtype object is not"):
        pc.load(tmp_path / "pickled.npz")
    cases = {
        "not valid JSON": "{",
        "wrong format tag": json.dumps({**manifest, "format": "x"}),
        "version 2": json.dumps({**manifest, "version": 2, "params": []}),
        "'params' entry": json.dumps(manifest),
        "missing from the archive": json.dumps(
            {**manifest, "params": [{"name": "w", "__array__": "a7", "shape": [3]}]}
        ),
        "manifest says": json.dumps(
            {**manifest, "params": [{"name": "w", "__array__": "a0", "shape": [4]}]}
        ),
        "does not list": json.dumps({**manifest, "params": []}),
    }
    for msg, text in cases.items():
        np.savez(tmp_path / "m.npz", manifest=np.array(text), a0=np.zeros(3))
        with pytest.raises(pc.FileFormatError, match=msg):
            pc.load(tmp_path / "m.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(pc.FileFormatError, match="text.npz"):
        pc.load(tmp_path / "text.npz")
    with pytest.raises(pc.FileFormatError, match="no such file"):
        pc.load(tmp_path / "missing.npz")


def test_save_refuses_what_json_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(pc.FileFormatError, match="meta.when: object"):
        pc.save(tmp_path / "ck.npz", {"w": np.zeros(2)}, meta={"when": object()})
    with pytest.raises(pc.FileFormatError, match="dtype <U1"):
        pc.save(tmp_path / "ck.npz", {"w": np.array(["a"])})
    assert not list(tmp_path.iterdir())
    with pytest.raises(pc.FeedError, match="missing"):
        pc.save(tmp_path / "ck.npz", {}, program=pc.compile(mlp()))


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    prog = pc.compile(mlp())
    params = prog.init_params(seed=0)
    path = pc.save(tmp_path / "ck.npz", params, meta={"epoch": 1}, program=prog)
    before = path.read_bytes()

    def explode(f, **arrays):  # noqa: ANN001, ANN202
        f.write(b"partial data")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        pc.save(path, prog.init_params(seed=1), meta={"epoch": 2}, program=prog)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]
    assert pc.load(path, prog).meta == {"epoch": 1}
