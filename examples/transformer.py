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
from pathlib import Path

import numpy as np

import pcgraph as pc

from example_utils import accuracy, positive_int


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
    # Each run on its own copy of the same initial parameters, with its own optimiser.
    runs = pc.compare.same_start(
        prog, ["bp", algo], lambda: pc.optim.Adam(lr=args.lr), seed=args.seed
    )
    print(f"\ntraining bp and {algo} from the same start: {epochs} epoch(s), Adam lr {args.lr:g}")
    print(f"{'epoch':>5} {'loss bp':>10} {'loss ' + algo:>12} {'test bp':>8} {'test ' + algo:>10}")
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        batches = data.batches(args.batch_size, seed=(args.seed, epoch))
        # On every batch: prog.train_step(params, batch, algorithm=...) of bp, then of algo.
        pc.compare.train_epoch(prog, runs, ({"x": xb, "y": yb} for xb, yb in batches))
        acc = {n: accuracy(prog, r.params, data.x_test, data.y_test) for n, r in runs.items()}
        diff = pc.compare.max_abs_diff(runs[algo].params, runs["bp"].params)
        print(
            f"{epoch:>5} {np.mean(runs['bp'].losses):>10.6f} {np.mean(runs[algo].losses):>12.6f} "
            f"{acc['bp']:>8.4f} {acc[algo]:>10.4f}   max |p_{algo} - p_bp| = {diff:.3e}"
            f"   ({time.perf_counter() - start:.1f} s)"
        )

    print(
        f"\nTransformer encoder on {args.data}: test accuracy bp {acc['bp']:.4f}, "
        f"{algo} {acc[algo]:.4f}"
    )
    print(f"{algo} vs bp: max |p_{algo} - p_bp| = {diff:.3e}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = pc.save(
        args.out / f"transformer-{args.data}-{algo}.npz",
        runs[algo].params,
        runs[algo].optimizer.state_dict(),
        meta={"epoch": epochs, "algorithm": algo, "test_accuracy": acc[algo]},
        program=prog,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
