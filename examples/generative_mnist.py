"""Generative predictive coding on MNIST: a network whose top is clamped to the label and whose
bottom is clamped to the image, trained by predictive coding; then it generates a digit of each
class, completes half images, and, as an associative memory, recalls stored images from
corrupted cues.

    python examples/generative_mnist.py            # 10000 images, 10 epochs (1 to 3 min, 2 cores)
    python examples/generative_mnist.py --quick    # 2000 images, 3 epochs (10 to 30 s)

1. **Training.** ``pcgraph.models.generator()``: one-hot label (10) -> 256 tanh -> 784 sigmoid,
   loss ``mse(image, x)``. The ``generative`` algorithm clamps the top to the label and the
   bottom to the image, infers the hidden values (20 steps), and takes the PC increments.
2. **Generation.** ``pc.inference.generate`` clamps the top to each one-hot label and relaxes
   the rest, the image free. A classifier trained with backprop on the same images reads the
   generated digits: the script prints the share it labels as the conditioning class.
3. **Completion.** ``pc.inference.complete`` clamps the top half of test images at the bottom
   of the network (a mask), frees the label at the top (a latent with prior N(0, I)) and infers
   everything else; the script prints the squared error on the bottom halves against filling
   them with the training mean.
4. **Associative memory** (Salvatori et al. 2021): a second generator with a latent 32-value
   code at its top (``latent=["y"]``: no labels) stores a few training images, each code
   inferred per example during training; it recalls them from their top halves and from noisy
   copies (the noisy image is the starting value of the free image).

Writes under ``--out`` (default ``runs/generative_mnist``): ``generated.png`` (one digit per
class), ``completed.png`` (test images, cues, completions), ``recalled.png`` (stored images,
half cues, recalls, noisy cues, recalls) and the checkpoint ``generator.npz``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import pcgraph as pc
import pcgraph.plots
from pcgraph.inference import complete, generate, infer

from example_utils import positive_int

SIDE = 28
# One value node per layer (the zoo marks them): errors reach the weights in fewer hops than
# with every op a value node, and inference stays stable at larger rates (its largest stable
# rate falls as the weights grow, and an activation's derivative between them helps).
PC = {"steps": 20, "rate": 0.1, "value_nodes": "layers"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2000 training images, 3 epochs")
    p.add_argument("--epochs", type=positive_int, default=None, help="(default: 10, quick: 3)")
    p.add_argument("--train", type=positive_int, default=None, help="training images")
    p.add_argument("--memories", type=positive_int, default=8, help="images to store (8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, help="numpy or cupy (default: numpy)")
    p.add_argument("--out", default="runs/generative_mnist", help="where the pictures go")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 10)
    args.train = args.train or (2000 if args.quick else 10000)
    return args


def classifier(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> tuple:
    """A backprop-trained MLP that reads the generated digits."""
    prog = pc.compile(pc.models.mlp(sizes=(SIDE * SIDE, 128, 10)), backend=args.backend)
    params, opt = prog.init_params(args.seed), pc.optim.Adam(lr=1e-3)
    for epoch in range(5):
        for xb, yb in pc.data.batches(x, y, 64, seed=(args.seed, epoch)):
            prog.train_step(params, {"x": xb, "y": yb}, "bp", opt)
    return prog, params


def train_generator(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> tuple:
    prog = pc.compile(pc.models.generator(), backend=args.backend)
    params, opt = prog.init_params(args.seed), pc.optim.Adam(lr=3e-3)
    onehot = np.eye(10, dtype=np.float32)
    for note in prog.schedule("generative", **PC).sections[0].steps[:2]:
        print(note)  # what the schedule clamps and what it infers
    for epoch in range(1, args.epochs + 1):
        start, losses = time.perf_counter(), []
        for xb, yb in pc.data.batches(x, y, 64, seed=(args.seed, epoch)):
            batch = {"x": xb, "y": onehot[yb]}
            losses.append(prog.train_step(params, batch, "generative", opt, **PC))
        print(
            f"epoch {epoch}/{args.epochs}: reconstruction loss of the label's prediction "
            f"{np.mean(losses):.3f} per image ({time.perf_counter() - start:.1f} s)"
        )
    return prog, params


def memory(x: np.ndarray, args: argparse.Namespace) -> tuple:
    """A generator with a latent code at its top storing the images ``x``: the code of each
    image is inferred at every training step (the ``generative`` algorithm's ``latent``)."""
    prog = pc.compile(pc.models.generator(classes=32), backend=args.backend)
    params, opt = prog.init_params(args.seed + 1), pc.optim.Adam(lr=3e-3)
    options = {"latent": ["y"], "steps": 50, "rate": 0.1, "value_nodes": "layers"}
    updates = 150 if args.quick else 400
    for _ in range(updates):  # the train_step loss is that of the codes' start, 0: not shown
        prog.train_step(params, {"x": x}, "generative", opt, **options)
    print(f"stored {len(x)} images: {updates} updates, the codes inferred at each")
    return prog, params


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = pc.data.mnist()
    n = args.train
    x = data.x_train[:n].reshape(n, -1).astype(np.float32)
    y = data.y_train[:n]
    x_test = data.x_test[:500].reshape(500, -1).astype(np.float32)
    y_test = data.y_test[:500]
    print(f"generative PC on {n} MNIST images, {args.epochs} epochs")

    cls, cls_params = classifier(x, y, args)
    print(f"backprop classifier: test accuracy {cls.accuracy(cls_params, (x_test, y_test)):.3f}")
    gen, params = train_generator(x, y, args)
    pc.save(out / "generator.npz", params, program=gen)

    # Generation: one digit per class, read by the classifier.
    images, result = generate(gen, params, np.eye(10), steps=50, value_nodes="layers")
    images = pc.to_numpy(images)
    said = cls.predict(cls_params, {"x": images})
    print(
        f"generated one digit per class; the classifier labels {np.mean(said == np.arange(10)):.0%}"
        f" of them as their class (read as {', '.join(map(str, said))}); energy "
        f"{result.energy[-1].mean():.2e}"
    )
    pcgraph.plots.image_grid(images.reshape(-1, SIDE, SIDE), out / "generated.png")

    # Completion: the top halves given, the bottom halves inferred.
    given = np.zeros((SIDE, SIDE))
    given[: SIDE // 2] = 1
    given = given.reshape(-1)
    hidden = given == 0
    cues = x_test[:100]
    filled, result = complete(gen, params, cues, given, 200, 0.05, value_nodes="layers")
    filled = pc.to_numpy(filled)
    mse = np.mean((filled[:, hidden] - cues[:, hidden]) ** 2)
    mse_mean = np.mean((x.mean(0)[hidden] - cues[:, hidden]) ** 2)
    print(
        f"completed the bottom halves of {len(cues)} test digits: squared error per pixel "
        f"{mse:.4f}, against {mse_mean:.4f} filling with the training mean; energy "
        f"{result.energy[0].mean():.1f} -> {result.energy[-1].mean():.1f}"
    )
    shown = np.concatenate([cues[:10], np.where(given == 1, cues[:10], 0.5), filled[:10]])
    pcgraph.plots.image_grid(shown.reshape(-1, SIDE, SIDE), out / "completed.png")

    # Associative memory: store a few images, recall them from half and noisy cues.
    stored = x[: args.memories]
    mem, mem_params = memory(stored, args)
    half, _ = complete(mem, mem_params, stored, given, 500, 0.1, value_nodes="layers")
    half = pc.to_numpy(half)
    noisy = np.clip(stored + np.random.default_rng(args.seed).normal(0, 0.3, stored.shape), 0, 1)
    recalled = infer(  # nothing clamped: the noisy image is where the free image starts
        mem, mem_params, {}, ["y", "image"], 500, 0.1, {"image": noisy}, value_nodes="layers"
    )
    from_noise = pc.to_numpy(recalled.values["image"])
    for what, got, cue in (
        ("half", half, np.where(given == 1, stored, 0.5)),
        ("noisy", from_noise, noisy),
    ):
        err = np.mean((got - stored) ** 2)
        print(
            f"recall from {what} cues: squared error per pixel {err:.4f} (cue {np.mean((cue - stored) ** 2):.4f})"
        )
    grid = [stored, np.where(given == 1, stored, 0.5), half, noisy, from_noise]
    pcgraph.plots.image_grid(
        np.concatenate(grid).reshape(-1, SIDE, SIDE), out / "recalled.png", columns=len(stored)
    )
    print(f"wrote {out / 'generated.png'}, {out / 'completed.png'}, {out / 'recalled.png'}")


if __name__ == "__main__":
    main()
