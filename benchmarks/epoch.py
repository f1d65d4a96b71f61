"""One epoch of MNIST end to end, as a user runs it: ``python -m benchmarks.epoch MODEL CONTENDER``.

Reads the four IDX files from ``--data`` (``benchmarks.run`` writes them once from
``pc.data.mnist()``), trains one epoch at batch 64 with SGD (lr 0.05, momentum 0.9) on the
shuffled training set, then measures test accuracy; prints one JSON line with the seconds from
reading the files to the accuracy, and the accuracy.  Contenders:

- ``pcgraph-bp``, ``pcgraph-zil``: ``pc.data.mnist(root)``, ``Dataset.batches``,
  ``prog.train_step``, ``prog.evaluate`` on the test set in chunks of 1000;
- ``pytorch``: the idiomatic script, ``TensorDataset`` + ``DataLoader(shuffle=True)``, an
  ``nn.Sequential`` model, ``loss.backward()``, ``opt.step()``, ``loss.item()`` each step, and
  ``torch.no_grad()`` evaluation.  It reads the IDX files itself (torchvision's reader does no
  more), so it imports no pcgraph.

Models: ``mlp`` (784-256-256-10, relu) and ``lenet`` (conv 16 5x5, relu, pool 2, conv 32 5x5,
relu, pool 2, linear 512-10), the zoo's ``mlp`` and ``lenet``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import benchmarks

BATCH, LR, MOMENTUM, SEED = 64, 0.05, 0.9, 0
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MODELS = ("mlp", "lenet")
CONTENDERS = ("pcgraph-bp", "pcgraph-zil", "pytorch")


def write_mnist(folder: Path) -> None:
    """The MNIST IDX files in ``folder``, from ``pc.data.mnist()`` (pixels back to 0..255)."""
    import numpy as np

    import pcgraph as pc

    data = pc.data.mnist()
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x = np.rint(getattr(data, f"x_{split}") * 255).astype(np.uint8)
        pc.data.write_idx(folder / FILES[f"{split}_images"], x)
        pc.data.write_idx(
            folder / FILES[f"{split}_labels"], getattr(data, f"y_{split}").astype(np.uint8)
        )


def pcgraph_epoch(model: str, algorithm: str, root: Path) -> dict[str, Any]:
    import numpy as np

    import pcgraph as pc
    from pcgraph import models

    start = time.perf_counter()
    shape = (784,) if model == "mlp" else (1, 28, 28)
    data = pc.data.mnist(root).reshape(shape)
    g = models.mlp() if model == "mlp" else models.lenet()
    prog = pc.compile(g, dtype="float32")
    params = prog.init_params(SEED)
    opt = pc.optim.SGD(lr=LR, momentum=MOMENTUM)
    loaded = time.perf_counter()
    for x, y in data.batches(BATCH, seed=SEED):
        prog.train_step(params, {"x": x, "y": y}, algorithm, optimizer=opt)
    trained = time.perf_counter()
    logits_node = prog.compiled.nodes[prog.loss_node].operands[0]
    correct = 0
    for i in range(0, len(data.y_test), 1000):
        logits = pc.to_numpy(prog.evaluate(params, {"x": data.x_test[i : i + 1000]}, logits_node))
        correct += int(np.sum(np.argmax(logits, axis=1) == data.y_test[i : i + 1000]))
    end = time.perf_counter()
    return _result(start, loaded, trained, end, correct / len(data.y_test))


def _read_idx(path: Path) -> Any:
    import numpy as np

    raw = path.read_bytes()
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(tuple(int(d) for d in dims))


def torch_epoch(model: str, root: Path) -> dict[str, Any]:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(int(benchmarks.THREADS))
    torch.manual_seed(SEED)
    start = time.perf_counter()

    def images(name: str) -> Any:
        x = torch.from_numpy(_read_idx(root / FILES[name]).copy()).float().div_(255.0)
        return x.reshape(-1, 784) if model == "mlp" else x.reshape(-1, 1, 28, 28)

    def labels(name: str) -> Any:
        return torch.from_numpy(_read_idx(root / FILES[name]).astype("int64"))

    train = TensorDataset(images("train_images"), labels("train_labels"))
    test = TensorDataset(images("test_images"), labels("test_labels"))
    if model == "mlp":
        net = nn.Sequential(
            nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
        )
    else:
        net = nn.Sequential(
            nn.Conv2d(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(512, 10),
        )
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    loaded = time.perf_counter()
    net.train()
    running = 0.0
    for x, y in DataLoader(train, batch_size=BATCH, shuffle=True):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        running += loss.item()
    trained = time.perf_counter()
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=1000):
            correct += int((net(x).argmax(1) == y).sum())
    end = time.perf_counter()
    return _result(start, loaded, trained, end, correct / len(test))


def _result(start: float, loaded: float, trained: float, end: float, acc: float) -> dict:
    return {
        "seconds": end - start,
        "load_s": loaded - start,
        "train_s": trained - loaded,
        "eval_s": end - trained,
        "accuracy": acc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__)
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("contender", choices=CONTENDERS)
    ap.add_argument("--data", type=Path, required=True, help="a folder with the MNIST IDX files")
    args = ap.parse_args(argv)
    if args.contender == "pytorch":
        result = torch_epoch(args.model, args.data)
    else:
        result = pcgraph_epoch(args.model, args.contender.split("-")[1], args.data)
    result.update(model=args.model, contender=args.contender)
    result["runtimes"] = [m for m in ("torch", "jax", "pcgraph") if m in sys.modules]
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
