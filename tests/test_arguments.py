"""Arguments: NumPy scalars are the numbers they hold; arrays, text and truthy values are never
taken for numbers or flags; names are strings; every refusal is a typed error naming the
argument."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc
from pcgraph.testing import random_batch


@pytest.fixture
def prog() -> pc.Program:
    return pc.compile(mlp(), dtype="float64")


def test_numpy_scalars_are_taken_as_the_numbers_they_hold(prog: pc.Program) -> None:
    params, batch = prog.init_params(np.int64(3)), random_batch(mlp())
    plain = prog.grads(params, batch, "il", steps=5, rate=0.1)
    numpy = prog.grads(params, batch, "il", steps=np.int64(5), rate=np.float64(0.1))
    assert all(np.array_equal(plain[k], numpy[k]) for k in plain)
    opt = pc.optim.SGD(lr=np.float32(0.5), momentum=np.float64(0.9), nesterov=np.bool_(True))
    assert opt.lr == pytest.approx(0.5) and opt.nesterov is True
    assert prog.schedule("zil", dense=np.bool_(True)) is prog.schedule("zil", dense=True)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"rate": np.array([0.1, 0.2])}, "option rate must be one value, not an array"),
        ({"steps": 2.0}, "steps=2.0 must be an int"),
        ({"steps": True}, "steps=True must be an int"),
        ({"steps": 10**7}, "steps=10000000 must be an int from 1 to 1,000,000"),
    ],
)
def test_option_values_that_are_not_one_number_are_refused(
    prog: pc.Program, options: dict, match: str
) -> None:
    with pytest.raises(pc.OptionError, match=match):
        prog.schedule("il", **options)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: pc.optim.SGD(lr=0.1, momentum=0.9, nesterov="no"),
            "nesterov='no' must be True or False",
        ),
        (
            lambda: pc.optim.SGD(lr=0.1, momentum=0.9, nesterov=1),
            "nesterov=1 must be True or False",
        ),
        (lambda: pc.optim.SGD(lr="0.1"), "lr='0.1' must be a number"),
        (lambda: pc.optim.Adam(lr=np.ones(2)), "an array of shape"),
    ],
)
def test_optimiser_settings_take_flags_and_numbers_only(make, match: str) -> None:  # noqa: ANN001
    with pytest.raises(pc.OptionError, match=match):
        make()


def test_a_flag_option_takes_true_or_false_only(prog: pc.Program) -> None:
    for bad in (0, 1, "yes", None):
        with pytest.raises(pc.OptionError, match="dense="):
            prog.schedule("zil", dense=bad)
    with pytest.raises(pc.OptionError, match="noise_seed=-1 must be an int >= 0"):
        prog.schedule("zil", init_noise=0.1, noise_seed=-1)


@pytest.mark.parametrize("seed", [-1, "a", None, 1.7, True, [0], np.array([1, 2])])
def test_a_seed_is_an_int_of_at_least_zero(prog: pc.Program, seed: object) -> None:
    with pytest.raises(pc.OptionError, match="init_params: seed"):
        prog.init_params(seed)  # type: ignore[arg-type]


def test_batch_seeds_are_ints_or_sequences_of_them() -> None:
    x, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int64)
    assert len(list(pc.data.batches(x, y, 4, seed=(0, 3)))) == 3
    for bad in (-1, "a", 1.5, (), (0, -2)):
        with pytest.raises(pc.OptionError, match="batches: seed"):
            list(pc.data.batches(x, y, 4, seed=bad))  # type: ignore[arg-type]
    with pytest.raises(pc.OptionError, match="batch_size=True must be an int"):
        list(pc.data.batches(x, y, True))  # type: ignore[arg-type]


def test_names_are_strings(prog: pc.Program) -> None:
    params, batch = prog.init_params(0), random_batch(mlp())
    with pytest.raises(pc.OptionError, match="unknown algorithm"):
        prog.grads(params, batch, ["bp"])  # type: ignore[arg-type]
    with pytest.raises(pc.GraphError, match="named by a string"):
        prog.evaluate(params, batch, ["x"])  # type: ignore[arg-type]
    with pytest.raises(pc.GraphError, match="shape must be a tuple of ints, got None"):
        pc.Graph("g").param("W", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", [None, 3, ["a.npz"], ""])
def test_a_path_is_a_file_name(path: object) -> None:
    with pytest.raises(pc.FileFormatError, match="the path must be a file name"):
        pc.load(path)  # type: ignore[arg-type]
    with pytest.raises(pc.FileFormatError, match="the path must be a file name"):
        pc.load_graph(path)  # type: ignore[arg-type]


def test_comparing_parameters_needs_the_same_names() -> None:
    a, b = {"W": np.zeros(2), "b": np.zeros(1)}, {"W": np.zeros(2), "c": np.zeros(1)}
    with pytest.raises(
        pc.OptionError, match=r"only in the first \['b'\], only in the second \['c'\]"
    ):
        pc.compare.max_abs_diff(a, b)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), np.array([1.0, -np.inf])])
def test_constants_are_finite(value: object) -> None:
    with pytest.raises(pc.GraphError, match="NaN or infinity"):
        pc.Graph("g").const(value)


def test_a_graph_file_with_a_constant_too_large_to_be_finite_is_refused() -> None:
    g = pc.Graph("g")
    x = g.input("x", (2,))
    g.set_loss(pc.mse(x * g.const(2.0, name="c"), g.target("y", (2,))))
    text = pc.graph_to_json(g).replace('"value": 2.0', '"value": 1e999')
    with pytest.raises(pc.FileFormatError, match="node 'c': 'value' holds a number too large"):
        pc.graph_from_json(text)


def test_a_checkpoint_manifest_version_of_true_is_refused(tmp_path) -> None:  # noqa: ANN001
    prog = pc.compile(mlp())
    path = pc.save(tmp_path / "ck.npz", prog.init_params(0), program=prog)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    manifest = json.loads(str(arrays.pop("manifest")))
    manifest["version"] = True
    np.savez(tmp_path / "bad.npz", manifest=np.array(json.dumps(manifest)), **arrays)
    with pytest.raises(pc.FileFormatError, match="checkpoint format version True"):
        pc.load(tmp_path / "bad.npz")
