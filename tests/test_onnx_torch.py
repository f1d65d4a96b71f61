"""PyTorch models exported to ONNX with PyTorch's own exporters, imported with
``pc.from_onnx``: on the same weights and batch, pcgraph's bp and zil gradients equal PyTorch
autograd's to 1e-10 in float64 (the reference: PyTorch's autograd on the original module)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import pcgraph as pc

torch = pytest.importorskip("torch", reason="the PyTorch cross-checks need torch")
pytest.importorskip("onnx", reason="the ONNX tests need onnx (pip install 'pcgraph[onnx]')")
nn = torch.nn
F = torch.nn.functional

B = 4
CLASSES = 3


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 8), nn.Linear(8, CLASSES)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc2(torch.tanh(self.fc1(x)))


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 5, padding=2), nn.Conv2d(4, 6, 5)
        self.fc1, self.fc2 = nn.Linear(6 * 1 * 1, 10), nn.Linear(10, CLASSES)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):  # noqa: ANN001, ANN201
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        )
        self.blocks = nn.Sequential(Block(4, 4, 1), Block(4, 6, 2))
        self.head = nn.Linear(6, CLASSES)

    def forward(self, x):  # noqa: ANN001, ANN201
        h = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return self.head(torch.flatten(h, 1))


class Encoder(nn.Module):
    def __init__(self, activation: str = "relu", batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.layer = nn.TransformerEncoderLayer(
            8, 2, dim_feedforward=12, dropout=0.0, activation=activation, batch_first=batch_first
        )
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x):  # noqa: ANN001, ANN201
        if not self.batch_first:
            x = x.transpose(0, 1)
        h = self.layer(x)
        return self.head(h.mean(dim=1 if self.batch_first else 0))


class Recurrent(nn.Module):
    """Many-to-one: the last step's output of nn.RNN / nn.GRU / nn.LSTM, then a classifier."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(3, 5, batch_first=True)
        self.head = nn.Linear(5, CLASSES)

    def forward(self, x):  # noqa: ANN001, ANN201
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


MODELS = {
    "mlp": (MLP, (10,)),
    "lenet": (LeNet, (1, 12, 12)),
    "resnet": (ResNet, (2, 6, 6)),
    "transformer-encoder": (Encoder, (5, 8)),
    "transformer-encoder-gelu": (lambda: Encoder("gelu"), (5, 8)),
    "transformer-encoder-seq-first": (lambda: Encoder(batch_first=False), (5, 8)),
    "rnn": (lambda: Recurrent("RNN"), (6, 3)),
    "gru": (lambda: Recurrent("GRU"), (6, 3)),
    "lstm": (lambda: Recurrent("LSTM"), (6, 3)),
}


def _export(net, shape: tuple, path, exporter: str, opset: int = 20) -> None:  # noqa: ANN001
    example = torch.randn(2, *shape)
    if exporter == "torchscript":
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
            opset_version=opset,
            training=torch.onnx.TrainingMode.TRAINING,  # batch statistics, as autograd's forward
            do_constant_folding=False,  # keep the weights as they are (no pre-transposed copies)
        )
    else:
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
        batch = torch.export.Dim("N", min=2)
        try:
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                # Its optimiser merges equal initializers (a fresh model's LayerNorm scales) and
                # drops zero biases: it would tie or freeze parameters of the model to train.
                optimize=False,
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
            )
        except Exception as e:  # an exporter failure is PyTorch's, not pcgraph's
            pytest.skip(f"torch.onnx.export(dynamo=True) fails here: {str(e)[:200]}")
        program.save(str(path))


def _torch_grads(net, params: dict, x: np.ndarray, y: np.ndarray, train: bool = True) -> dict:  # noqa: ANN001
    """PyTorch autograd's gradients of the mean cross-entropy, in float64, on ``params``
    (pcgraph's names) mapped onto the module's parameters: by name, else by value (the dynamo
    exporter writes some weights pre-transposed under names of its own, ``val_12``)."""
    net64 = copy.deepcopy(net).double().train(train)
    named = dict(net64.named_parameters())
    mapping = {}  # pcgraph name -> (PyTorch name, transposed)
    for name, value in params.items():
        if name in named and tuple(named[name].shape) == value.shape:
            mapping[name] = (name, False)
            continue
        same = [
            (k, flip)
            for k, p in named.items()
            for flip in (False, True)
            if (p.detach().numpy().T if flip else p.detach().numpy()).shape == value.shape
            and np.array_equal((p.detach().numpy().T if flip else p.detach().numpy()), value)
        ]
        assert len(same) == 1, f"no single PyTorch parameter holds ONNX initializer {name!r}"
        mapping[name] = same[0]
    assert sorted(k for k, _ in mapping.values()) == sorted(named), "every parameter imported"
    with torch.no_grad():
        for name, value in params.items():
            k, flip = mapping[name]
            v = torch.from_numpy(np.asarray(value, dtype=np.float64))
            named[k].copy_(v.T if flip else v)
    loss = F.cross_entropy(net64(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    out = {}
    for name in params:
        k, flip = mapping[name]
        grad = named[k].grad.numpy()
        out[name] = grad.T if flip else grad
    return out


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("model", MODELS)
def test_bp_and_zil_gradients_equal_pytorch_autograd(model: str, exporter: str, tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    make, shape = MODELS[model]
    net = make().train()
    path = tmp_path / f"{model}.onnx"
    _export(net, shape, path, exporter)
    g, params = pc.from_onnx(path, loss="softmax_cross_entropy")
    assert g.node(g.inputs[0]).shape == shape
    prog = pc.compile(g, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, *shape))
    y = rng.integers(0, CLASSES, size=B)
    # The dynamo exporter writes batch norm in inference mode (running statistics) whatever
    # the module's mode: the function in that file is PyTorch's eval-mode forward.
    inference = exporter == "dynamo" and model == "resnet"
    want = _torch_grads(net, params, x, y, train=not inference)
    batch = {g.inputs[0]: x, "y": y}
    for algorithm in ("bp", "zil"):
        got = pc.to_numpy(prog.grads(params, batch, algorithm=algorithm))
        for name in params:
            scale = max(1.0, float(np.max(np.abs(want[name]))))
            err = float(np.max(np.abs(got[name] - want[name])))
            assert err <= 1e-10 * scale, f"{algorithm} {name}: {err}"


def test_gelu_in_its_erf_form_matches_to_the_rounding_of_the_files_constant(tmp_path) -> None:  # noqa: ANN001
    """Before opset 20 the TorchScript exporter writes GELU as x * 0.5 * (1 + erf(x / c)) with
    c = sqrt(2) rounded to float32 (relative error 2e-8): the file's function differs from
    PyTorch's by that much, so the gradients agree to 1e-8, not 1e-10."""
    torch.manual_seed(0)
    net = Encoder("gelu").train()
    path = tmp_path / "gelu17.onnx"
    _export(net, (5, 8), path, "torchscript", opset=17)
    g, params = pc.from_onnx(path, loss="softmax_cross_entropy")
    assert "erf" in {g.node(n).op for n in g.nx}
    prog = pc.compile(g, dtype="float64")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((B, 5, 8)), rng.integers(0, CLASSES, size=B)
    want = _torch_grads(net, params, x, y)
    got = pc.to_numpy(prog.grads(params, {"x": x, "y": y}, algorithm="zil"))
    for name in params:
        scale = max(1.0, float(np.max(np.abs(want[name]))))
        assert np.max(np.abs(got[name] - want[name])) <= 1e-8 * scale, name


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_imported_network_trains_with_every_algorithm(exporter: str, tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    net = LeNet().train()
    path = tmp_path / "lenet.onnx"
    _export(net, (1, 12, 12), path, exporter)
    g, params = pc.from_onnx(path, loss="softmax_cross_entropy")
    prog = pc.compile(g, dtype="float64")
    rng = np.random.default_rng(2)
    batch = {
        g.inputs[0]: rng.standard_normal((8, 1, 12, 12)),
        "y": rng.integers(0, CLASSES, size=8),
    }
    start = prog.loss(params, batch)
    for algorithm in ("bp", "zil", "il", "fpa", "il-prox", "ipc"):
        p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        opt = pc.optim.SGD(lr=0.01)
        for _ in range(3):
            prog.train_step(p, batch, algorithm=algorithm, optimizer=opt)
        assert prog.loss(p, batch) < start, algorithm
