"""A many-to-one recurrent network on MNIST-1D, trained with Z-IL: the graph is the RNN unrolled
over the 40 steps of each signal, and Z-IL's inference runs one step per level of that graph.

    python examples/rnn_mnist1d.py                 # Elman RNN, 30 epochs (~15 s on 2 cores)
    python examples/rnn_mnist1d.py --model lstm    # an LSTM instead: ~90% test accuracy
    python examples/rnn_mnist1d.py --quick         # 1 epoch (a few seconds)

MNIST-1D (Greydanus 2020, generated offline by the ``mnist1d`` package) holds 1-D signals of
length 40 in 10 classes, 4000 for training and 1000 for testing.  Each signal is fed one value
per step: the data set's per-example shape ``(40,)`` is reshaped to ``(T, D) = (40, 1)``
(``--chunk D`` feeds ``D`` values per step, ``T = 40 / D``).  The signals are standardised
(``Dataset.standardized()``), which the recurrent models need to train quickly.

Models: ``pcgraph.models.rnn_many_to_one`` (``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``, logits from
the last ``h``) or ``lstm_many_to_one``, with Adam.  After training the script compares Z-IL's
gradient with backprop's on one batch (``max |g_zil - g_bp|``) and writes the checkpoint under
``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import pcgraph as pc

from example_utils import accuracy, positive_int

MODELS = {"rnn": "rnn_many_to_one", "lstm": "lstm_many_to_one"}
SIGNAL = 40  # MNIST-1D's signal length


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch")
    p.add_argument("--model", default="rnn", choices=list(MODELS), help="default: rnn")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "bp", "il", "fpa", "il-prox"],
        help="the training algorithm (default: zil)",
    )
    p.add_argument("--hidden", type=positive_int, default=64, help="hidden units (default: 64)")
    p.add_argument(
        "--chunk", type=int, default=1, help="signal values per step, a divisor of 40 (default: 1)"
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 30 (1 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=None, help="Adam (default: 1e-3 rnn, 3e-3 lstm)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--out", type=Path, default=Path("runs/rnn_mnist1d"), help="output folder")
    args = p.parse_args(argv)
    if args.chunk <= 0 or SIGNAL % args.chunk:
        p.error(f"--chunk {args.chunk} must divide {SIGNAL}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 30)
    lr = args.lr or (1e-3 if args.model == "rnn" else 3e-3)
    T, D = SIGNAL // args.chunk, args.chunk

    try:
        raw = pc.data.mnist1d()
    except pc.FileFormatError as e:
        print(f"rnn_mnist1d: {e}")
        return 2
    print(raw, "-> standardised, reshaped to", (T, D))
    data = raw.standardized().reshape((T, D))

    g = pc.models.build(MODELS[args.model], T=T, D=D, H=args.hidden, classes=data.classes)
    prog = pc.compile(g, backend=args.backend)
    zil = prog.schedule("zil")
    print(prog)
    print(f"Z-IL schedule: {len(zil.steps)} steps (the unrolled graph is deep: one per level)")

    params = prog.init_params(seed=args.seed)
    opt = pc.optim.Adam(lr=lr)
    print(f"\ntraining {args.model} with {args.algorithm}: {epochs} epoch(s), Adam lr {lr:g}")
    for epoch in range(1, epochs + 1):
        start, losses = time.perf_counter(), []
        for xb, yb in data.batches(args.batch_size, seed=(args.seed, epoch)):
            batch = {"x": xb, "y": yb}
            losses.append(prog.train_step(params, batch, algorithm=args.algorithm, optimizer=opt))
        if epoch == epochs or epoch == 1 or epoch % 5 == 0:
            acc = accuracy(prog, params, data.x_test, data.y_test)
            print(
                f"epoch {epoch:>3}: loss {np.mean(losses):.4f}, test accuracy {acc:.4f}"
                f"   ({time.perf_counter() - start:.2f} s)"
            )
    acc = accuracy(prog, params, data.x_test, data.y_test)
    print(f"\n{args.model} on MNIST-1D with {args.algorithm}: test accuracy {acc:.4f}")

    # Z-IL's update is backprop's gradient: check it on one batch at the trained parameters.
    batch = {"x": data.x_test[:64], "y": data.y_test[:64]}
    g_bp = prog.grads(params, batch, algorithm="bp")
    g_zil = prog.grads(params, batch, algorithm="zil")
    diff, scale = pc.compare.max_abs_diff(g_zil, g_bp), pc.compare.max_abs(g_bp)
    print(f"Z-IL vs BP on one batch: max |g_zil - g_bp| = {diff:.3e} (max |g_bp| = {scale:.3e})")

    args.out.mkdir(parents=True, exist_ok=True)
    path = pc.save(
        args.out / f"{args.model}-{args.algorithm}.npz",
        params,
        opt.state_dict(),
        meta={"epoch": epochs, "algorithm": args.algorithm, "test_accuracy": acc},
        program=prog,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
