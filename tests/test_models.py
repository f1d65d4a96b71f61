"""The model zoo: every model builds, runs forward, and backprop matches finite differences."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers import check_program_grads

import pcgraph as pc
from pcgraph.models import MODELS
from pcgraph.testing import random_batch

# Small configurations of every builder (float64 finite differences stay fast).
SMALL = {
    "mlp": {"sizes": (6, 5, 4, 3), "activation": "tanh"},
    "mlp-gelu": {"sizes": (5, 4, 3), "activation": "gelu"},
    "deep_mlp": {"depth": 6, "width": 4, "in_features": 5, "classes": 3, "activation": "tanh"},
    "deep_cnn": {"blocks_per_stage": 2, "width": 2, "in_shape": (2, 8, 8), "classes": 3},
    "deep_cnn-sp": {
        "width": 3,
        "in_shape": (2, 8, 8),
        "classes": 3,
        "activation": "tanh",
        "parameterisation": "sp",
    },
    "lenet": {"in_shape": (1, 12, 12), "classes": 3, "channels": (2, 3), "kernel": 3},
    "alexnet_small": {
        "in_shape": (3, 8, 8),
        "classes": 3,
        "channels": (2, 3, 4, 3, 3),
        "hidden": (5,),
        "dropout": 0.3,
    },
    "rnn_many_to_one": {"T": 4, "D": 3, "H": 5, "classes": 3},
    "lstm_many_to_one": {"T": 3, "D": 3, "H": 4, "classes": 3},
    "resnet": {"blocks": (1, 1), "widths": (2, 3), "in_shape": (2, 6, 6), "classes": 3},
    "resnet-nonorm": {
        "blocks": (2, 1),
        "widths": (2, 3),
        "in_shape": (2, 5, 5),
        "classes": 3,
        "norm": None,
    },
    # resnet18 is resnet with fixed widths: only its forward runs here (its 1x1 late stages make
    # batch_norm so curved on a tiny batch that a finite difference at h = 1e-6 is off by 1e-5).
    "resnet18": {"in_shape": (3, 4, 4), "classes": 3},
    "transformer_encoder": {"T": 4, "d_model": 8, "heads": 2, "layers": 2, "classes": 3, "d_ff": 6},
    "transformer_encoder-tokens": {"T": 3, "d_model": 4, "heads": 2, "classes": 3, "vocab": 7},
    # muPC's small weights and 1/d readout make some gradients tiny; these sizes keep every one
    # well above the finite difference's rounding (tests/test_mupc_zoo.py checks 2 blocks).
    "transformer_lm": {"T": 3, "vocab": 4, "d_model": 4, "heads": 2, "blocks": 1},
    "transformer_lm-nonorm": {
        "T": 4,
        "vocab": 3,
        "d_model": 4,
        "heads": 2,
        "blocks": 1,
        "layer_norm": False,
    },
    "autoencoder": {"in_shape": (1, 8, 8), "channels": (2, 3)},
    "generator": {"classes": 3, "in_features": 6, "hidden": (4, 5)},
}


def _build(key: str) -> pc.Graph:
    return MODELS[key.split("-")[0]](**SMALL[key])


def test_every_model_has_a_small_configuration_and_keyword_only_defaults() -> None:
    assert set(MODELS) <= {k.split("-")[0] for k in SMALL}
    for name, fn in MODELS.items():
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params), name
        assert fn.__doc__, name


@pytest.mark.parametrize("key", [k for k in SMALL if k != "resnet18"])
def test_backprop_matches_finite_differences(key: str) -> None:
    g = _build(key)
    assert "x" in g.inputs and g.targets == ["y"]
    prog = pc.compile(g, dtype="float64")
    batch = random_batch(g, size=4, seed=1)
    # Zero-initialised biases put a ReLU exactly at its kink wherever dropout zeroes a whole
    # input row (the central difference then sees slope 1/2); jitter every parameter off it.
    rng = np.random.default_rng(3)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in prog.init_params(2).items()}
    check_program_grads(prog, params, batch, directions=2)


@pytest.mark.parametrize("key", SMALL)
def test_forward_runs_on_a_tiny_batch_in_float32(key: str) -> None:
    g = _build(key)
    prog = pc.compile(g)
    loss = prog.loss(prog.init_params(0), random_batch(g, size=2))
    assert np.isfinite(loss)


def test_resnet18_default_builds_and_runs_forward_on_batch_2() -> None:
    g = MODELS["resnet18"]()
    prog = pc.compile(g)
    params = prog.init_params(0)
    assert sum(p.size for p in params.values()) == 11_173_962  # PyTorch's CIFAR ResNet-18 count
    batch = random_batch(g, size=2, classes=10)
    logits = prog.evaluate(params, batch, prog.compiled.nodes["loss"].operands[0])
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))


def test_default_lenet_and_mlp_shapes() -> None:
    g = MODELS["lenet"]()
    assert g.node("x").shape == (1, 28, 28)
    assert g.node("fc.W").shape == (512, 10)
    assert MODELS["mlp"]().node("fc2.W").shape == (256, 10)


@pytest.mark.parametrize("key", ["lenet", "alexnet_small", "resnet", "transformer_encoder-tokens"])
def test_zoo_gradients_are_the_same_under_array_api_strict(key: str) -> None:
    pytest.importorskip("array_api_strict")
    g = _build(key)
    ref = pc.compile(g, dtype="float64")
    strict = pc.compile(g, backend="array_api_strict", dtype="float64")
    batch = random_batch(g, size=3)
    expected = ref.grads(ref.init_params(1), batch)
    got = {
        k: strict.backend.to_numpy(v) for k, v in strict.grads(strict.init_params(1), batch).items()
    }
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


def _divergence(a: dict, b: dict) -> float:
    out = 0.0
    for k in b:
        gap = float(np.max(np.abs(pc.to_numpy(a[k]) - pc.to_numpy(b[k]))))
        if gap > 1e-15:
            out = max(out, gap / max(float(np.max(np.abs(pc.to_numpy(b[k])))), 1e-6))
    return out


@pytest.mark.parametrize("key", SMALL)
def test_zil_and_fpa_equal_backprop_on_every_model(key: str) -> None:
    g = _build(key)
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(2), random_batch(g, size=3, seed=1)
    bp = prog.grads(params, batch, algorithm="bp")
    assert _divergence(prog.grads(params, batch, algorithm="zil"), bp) <= 1e-12
    assert _divergence(prog.grads(params, batch, algorithm="fpa"), bp) <= 1e-12


@pytest.mark.parametrize("key", [k for k in SMALL if k != "resnet18"])
def test_every_algorithm_trains_every_model(key: str) -> None:
    g = _build(key)
    prog = pc.compile(g, dtype="float32")
    batch = random_batch(g, size=3, seed=1)
    for algorithm, options in (
        ("bp", {}),
        ("zil", {}),
        ("fpa", {}),
        ("il", {"steps": 3}),
        ("il-prox", {"steps": 3}),
        ("zil", {"levelling": "identity"}),
    ):
        if algorithm == "il-prox" and prog.lr_scales:
            continue  # refuses per-parameter rates (tests/test_optim.py)
        params = prog.init_params(0)
        loss = prog.train_step(
            params, batch, algorithm=algorithm, optimizer=pc.optim.SGD(lr=0.01), **options
        )
        assert np.isfinite(loss)
        assert all(np.all(np.isfinite(pc.to_numpy(v))) for v in params.values())


def test_predict_and_accuracy_of_a_trained_model() -> None:
    ds = pc.data.digits()
    prog = pc.compile(pc.models.mlp(sizes=(64, 32, 10)))
    params = prog.init_params(0)
    opt = pc.optim.Adam(lr=0.01)
    for epoch in range(3):
        for x, y in ds.batches(64, seed=(0, epoch)):
            prog.train_step(params, {"x": x.reshape(len(x), -1), "y": y}, optimizer=opt)
    x = ds.x_test.reshape(len(ds.x_test), -1)
    logits = pc.to_numpy(prog.evaluate(params, {"x": x}, "fc1"))
    predicted = prog.predict(params, {"x": x})
    np.testing.assert_array_equal(predicted, np.argmax(logits, axis=1))
    expected = float(np.mean(predicted == ds.y_test))
    assert prog.accuracy(params, ds) == expected > 0.8  # the (8, 8) images are reshaped
    assert prog.accuracy(params, (x[:100], ds.y_test[:100]), batch_size=7) == float(
        np.mean(predicted[:100] == ds.y_test[:100])
    )
    with pytest.raises(pc.OptionError, match="part 'test' or 'train'"):
        prog.accuracy(params, ds, part="valid")
