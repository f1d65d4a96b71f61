"""A Transformer encoder classifying images read as sequences of rows, trained with backprop and
with Z-IL from the same start: attention, layer norm and residual paths, and Z-IL still equals BP.

    python examples/transformer.py                 # MNIST: 60000 images, 3 epochs (~1 min)
    python examples/transformer.py --data digits   # 8x8 digits: 8 tokens of 8 features
    python examples/transformer.py --quick         # 1024 MNIST images, 1 epoch (seconds)

Each image is a sequence: MNIST gives 28 tokens (rows) of 28 features, the 8x8 digits 8 tokens
of 8.  The model is ``pcgraph.models.transformer_encoder(T, d_model, heads, layers)`` with
``d_model`` the row width: a learnt position table, pre-norm blocks (multi-head self-attention,
then a GELU feed-forward, each on a residual path), a final layer norm, the mean over tokens and
a linear classifier.  Both runs use Adam and see the same batches; after each epoch the script
prints each run's loss and test accuracy and ``max |p_zil - p_bp|``.  The Z-IL parameters are
saved under ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc


def accuracy(
    prog: pc.Program, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, size: int = 500
) -> float:
    """Test accuracy: the argmax of the logits (the loss's first operand), in batches of ``size``."""
    logits_node = prog.compiled.nodes[prog.loss_node].operands[0]
    correct = 0
    for start in range(0, len(y), size):
        logits = pc.to_numpy(prog.evaluate(params, {"x": x[start : start + size]}, logits_node))
        correct += int(np.sum(np.argmax(logits, axis=1) == y[start : start + size]))
    return correct / len(y)


def max_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """``max |a[k] - b[k]|`` over every parameter."""
    return max(float(np.max(np.abs(pc.to_numpy(a[k]) - pc.to_numpy(b[k])))) for k in a)


def positive_int(text: str) -> int:
    """An argparse type: an int > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024 training images, 1 epoch")
    p.add_argument("--data", default="mnist", choices=["mnist", "digits"], help="default: mnist")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "il", "fpa", "il-prox"],
        help="the predictive-coding algorithm trained beside backprop (default: zil)",
    )
    p.add_argument(
        "--heads", type=positive_int, default=None, help="default: 4 (mnist), 2 (digits)"
    )
    p.add_argument("--layers", type=positive_int, default=1, help="encoder layers (default: 1)")
    p.add_argument(
        "--epochs", type=positive_int, default=None, help="default: 3 (mnist), 30 (digits); 1 quick"
    )
    p.add_argument(
        "--train-size", type=int, default=None, help="default: 0, all (1024 with --quick)"
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="default: 0, all (1000 with --quick)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--data-root", default=None, help="folder of MNIST IDX or CSV files")
    p.add_argument("--out", type=Path, default=Path("runs/transformer"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mnist = args.data == "mnist"
    epochs = args.epochs or (1 if args.quick else 3 if mnist else 30)
    heads = args.heads or (4 if mnist else 2)
    train_size = args.train_size if args.train_size is not None else (1024 if args.quick else 0)
    test_size = args.test_size if args.test_size is not None else (1000 if args.quick else 0)

    try:
        data = pc.data.mnist(args.data_root) if mnist else pc.data.digits(seed=args.seed)
    except pc.FileFormatError as e:
        print(f"transformer: {e} (or run with --data digits)")
        return 2
    data = data.subset(train=train_size or None, test=test_size or None)
    T, d_model = data.shape  # tokens = rows, features = columns
    print(data, f"-> {T} tokens of {d_model} features")

    g = pc.models.transformer_encoder(T=T, d_model=d_model, heads=heads, layers=args.layers)
    prog = pc.compile(g, backend=args.backend)
    print(prog)
    print(
        f"Z-IL: {len(prog.schedule('zil').steps)} schedule steps, "
        f"bp: {len(prog.schedule('bp').steps)}"
    )

    algo = args.algorithm
    params = {"bp": prog.init_params(seed=args.seed), algo: prog.init_params(seed=args.seed)}
    opts = {name: pc.optim.Adam(lr=args.lr) for name in params}
    print(f"\ntraining bp and {algo} from the same start: {epochs} epoch(s), Adam lr {args.lr:g}")
    print(f"{'epoch':>5} {'loss bp':>10} {'loss ' + algo:>12} {'test bp':>8} {'test ' + algo:>10}")
    for epoch in range(1, epochs + 1):
        start, losses = time.perf_counter(), {name: [] for name in params}
        for xb, yb in data.batches(args.batch_size, seed=(args.seed, epoch)):
            for name in params:
                losses[name].append(
                    prog.train_step(
                        params[name], {"x": xb, "y": yb}, algorithm=name, optimizer=opts[name]
                    )
                )
        acc = {name: accuracy(prog, params[name], data.x_test, data.y_test) for name in params}
        print(
            f"{epoch:>5} {np.mean(losses['bp']):>10.6f} {np.mean(losses[algo]):>12.6f} "
            f"{acc['bp']:>8.4f} {acc[algo]:>10.4f}   max |p_{algo} - p_bp| = "
            f"{max_diff(params[algo], params['bp']):.3e}   ({time.perf_counter() - start:.1f} s)"
        )

    print(
        f"\nTransformer encoder on {args.data}: test accuracy bp {acc['bp']:.4f}, "
        f"{algo} {acc[algo]:.4f}"
    )
    print(f"{algo} vs bp: max |p_{algo} - p_bp| = {max_diff(params[algo], params['bp']):.3e}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = pc.save(
        args.out / f"transformer-{args.data}-{algo}.npz",
        params[algo],
        opts[algo].state_dict(),
        meta={"epoch": epochs, "algorithm": algo, "test_accuracy": acc[algo]},
        program=prog,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
