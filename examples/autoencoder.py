"""A convolutional autoencoder on MNIST trained with Z-IL: the target is the input itself, the
loss a squared error, and the graph has transposed convolutions on its way back up.

    python examples/autoencoder.py            # all 60000 images, 3 epochs (~1 min on 2 cores)
    python examples/autoencoder.py --quick    # 2048 images, 1 epoch (seconds)

The model is ``pcgraph.models.autoencoder()``: two 3x3 stride-2 convolutions with ReLU encode a
1x28x28 image to 32x7x7, two 3x3 stride-2 transposed convolutions decode it back (ReLU between,
a sigmoid at the end), and the loss is ``mse(reconstruction, y)`` with ``y = x``:
``0.5 * sum((x_hat - x)^2)`` per image.  That 32x7x7 code holds more values than the image, so
the model learns a near-identity; ``--channels 16,4`` narrows it to 4x7x7 = 196 values.

The script prints the loss on the test images (and the mean squared error per pixel) before
training and after each epoch, checks Z-IL's gradient against backprop's on one batch, and
writes the checkpoint and, when matplotlib is installed, ``reconstructions.png`` (test images
above, their reconstructions below) under ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc

from example_utils import positive_int

PIXELS = 28 * 28


def test_loss(prog: pc.Program, params: Mapping[str, Any], x: np.ndarray, size: int = 500) -> float:
    """The mean reconstruction loss over ``x`` (target = input), in batches of ``size``."""
    total = 0.0
    for start in range(0, len(x), size):
        xb = x[start : start + size]
        total += prog.loss(params, {"x": xb, "y": xb}) * len(xb)
    return total / len(x)


def save_reconstructions(
    prog: pc.Program, params: Mapping[str, Any], x: np.ndarray, path: Path, title: str
) -> Path | None:
    """A PNG of ``x`` (top row) and its reconstructions (bottom row) under ``title`` (which
    says how far the model was trained); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recon_node = prog.compiled.nodes[prog.loss_node].operands[0]
    recon = pc.to_numpy(prog.evaluate(params, {"x": x}, recon_node))
    fig, axes = plt.subplots(2, len(x), figsize=(1.2 * len(x), 2.6))
    for i in range(len(x)):
        for row, images in enumerate((x, recon)):
            axes[row, i].imshow(images[i, 0], cmap="gray", vmin=0.0, vmax=1.0)
            axes[row, i].axis("off")
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def channels(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive ints."""
    return tuple(positive_int(part) for part in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2048 training images, 1 epoch")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "bp", "il", "fpa", "il-prox"],
        help="the training algorithm (default: zil)",
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 3 (1 with --quick)")
    p.add_argument(
        "--train-size", type=int, default=None, help="default: 0, all (2048 with --quick)"
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="default: 0, all (1000 with --quick)"
    )
    p.add_argument(
        "--channels",
        type=channels,
        default=(16, 32),
        help="encoder widths, e.g. 16,4 for a 4x7x7 code (default: 16,32)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--data-root", default=None, help="folder of MNIST IDX or CSV files")
    p.add_argument("--no-plot", action="store_true", help="do not write reconstructions.png")
    p.add_argument("--out", type=Path, default=Path("runs/autoencoder"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 3)
    train_size = args.train_size if args.train_size is not None else (2048 if args.quick else 0)
    test_size = args.test_size if args.test_size is not None else (1000 if args.quick else 0)

    try:
        data = pc.data.mnist(args.data_root)
    except pc.FileFormatError as e:
        print(f"autoencoder: {e}")
        return 2
    data = data.reshape((1, 28, 28)).subset(train=train_size or None, test=test_size or None)
    print(data)

    # x (1, 28, 28) -> reconstruction; a float target y of that shape
    g = pc.models.autoencoder(channels=args.channels)
    prog = pc.compile(g, backend=args.backend)
    print(prog)
    print("layers:", ", ".join(f"{n} {prog.compiled.nodes[n].shape}" for n in prog.params))

    def report(label: str, params: Mapping[str, Any]) -> float:
        loss = test_loss(prog, params, data.x_test)
        print(
            f"{label}: test reconstruction loss {loss:.4f} (per-pixel MSE {2 * loss / PIXELS:.5f})"
        )
        return loss

    params = prog.init_params(seed=args.seed)
    opt = pc.optim.Adam(lr=args.lr)
    print(f"\ntraining with {args.algorithm}: {epochs} epoch(s), Adam lr {args.lr:g}")
    first = report("before training", params)
    for epoch in range(1, epochs + 1):
        start, losses = time.perf_counter(), []
        for xb, _ in data.batches(args.batch_size, seed=(args.seed, epoch)):
            batch = {"x": xb, "y": xb}  # the target is the input
            losses.append(prog.train_step(params, batch, algorithm=args.algorithm, optimizer=opt))
        seconds = time.perf_counter() - start
        last = report(f"epoch {epoch} (train loss {np.mean(losses):.4f}, {seconds:.1f} s)", params)
    print(f"\nreconstruction loss {first:.4f} -> {last:.4f} with {args.algorithm}")

    # Z-IL's update is backprop's gradient: check it on one batch at the trained parameters.
    xb = data.x_test[:64]
    g_bp = prog.grads(params, {"x": xb, "y": xb}, algorithm="bp")
    g_zil = prog.grads(params, {"x": xb, "y": xb}, algorithm="zil")
    diff, scale = pc.compare.max_abs_diff(g_zil, g_bp), pc.compare.max_abs(g_bp)
    print(f"Z-IL vs BP on one batch: max |g_zil - g_bp| = {diff:.3e} (max |g_bp| = {scale:.3e})")

    args.out.mkdir(parents=True, exist_ok=True)
    path = pc.save(
        args.out / f"autoencoder-{args.algorithm}.npz",
        params,
        opt.state_dict(),
        meta={"epoch": epochs, "algorithm": args.algorithm, "test_loss": last},
        program=prog,
    )
    print(f"wrote {path}")
    if not args.no_plot:
        n_train = len(data.y_train)
        title = f"{args.algorithm}, {epochs} epoch(s) on {n_train} images, test loss {last:.4f}" + (
            " (--quick: barely trained; the checkerboard comes from the untrained transposed convs)"
            if args.quick
            else ""
        )
        png = save_reconstructions(
            prog, params, data.x_test[:8], args.out / "reconstructions.png", title
        )
        print(f"wrote {png}" if png else "matplotlib is not installed: no reconstructions.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
