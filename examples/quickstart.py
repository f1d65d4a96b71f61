"""Quickstart: build a graph with the DSL, compile it, read its schedules, train it with Z-IL and
with backprop from the same start, see that the two stay equal, save a checkpoint and reload it.

    python examples/quickstart.py            # 5 epochs on scikit-learn's 8x8 digits
    python examples/quickstart.py --quick    # 1 epoch on 512 examples (a few seconds)
    python examples/quickstart.py --algorithm il   # standard inference learning: it drifts

Steps:

1. build a small MLP (64 -> 32 tanh -> 10) as an explicit graph with ``pc.Graph``;
2. ``pc.compile`` it and print the compiled schedules of ``bp`` (forward, then backward) and
   ``zil`` (forward, then one inference step per level of the graph);
3. train one copy with ``train_step(..., algorithm="zil")`` and one with ``"bp"``, from the same
   initial parameters and on the same batches, printing the loss, the test accuracy and the
   largest difference between the two sets of parameters after each epoch (Z-IL equals
   backprop exactly, so it stays at zero or rounding level);
4. save the Z-IL parameters and optimiser state with ``pc.save`` and the graph with
   ``pc.save_graph`` under ``--out``, reload both (``pc.load_graph``, ``pc.load``) into a fresh
   program and evaluate it: the same accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import pcgraph as pc

from example_utils import accuracy, positive_int


def build(hidden: int = 32) -> pc.Graph:
    """A two-layer perceptron for 8x8 digits flattened to 64 values."""
    g = pc.Graph("quickstart_mlp")
    x = g.input("x", (64,))  # per-example shape; the batch axis is implicit
    y = g.target("y", (), dtype="int64")  # class indices
    h = pc.tanh(x @ g.param("W1", (64, hidden), init="he_normal") + g.param("b1", (hidden,)))
    logits = h @ g.param("W2", (hidden, 10)) + g.param("b2", (10,))
    g.set_loss(pc.softmax_cross_entropy(logits, y, name="loss"))
    return g


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on 512 examples")
    p.add_argument(
        "--algorithm",
        default="zil",
        choices=["zil", "il", "fpa", "il-prox"],
        help="the predictive-coding algorithm trained beside backprop (default: zil)",
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 5 (1 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0, help="initial parameters and batch order")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $PCGRAPH_BACKEND)")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 5)

    # 1. The graph: nodes are inputs, targets, parameters and ops; g.nx is the networkx graph.
    g = build()
    print(f"graph {g.name!r}: {g.nx.number_of_nodes()} nodes, parameters {g.params}")

    # 2. Compile: validation, node order, Z-IL levels; the schedules are plain data.
    prog = pc.compile(g, backend=args.backend)
    print(prog)
    print()
    print(prog.schedule("bp"))
    print()
    print(prog.schedule("zil"))
    print()

    # 3. Data: the 8x8 digits bundled with scikit-learn, flattened to 64 values in [0, 1].
    data = pc.data.digits(seed=args.seed).reshape((64,))
    if args.quick:
        data = data.subset(train=512)
    print(data)

    # Written out here to show train_step; pc.compare.train_epoch runs this loop for any list of
    # algorithms (cnn_mnist.py uses it).
    algo = args.algorithm
    params = {"bp": prog.init_params(seed=args.seed), algo: prog.init_params(seed=args.seed)}
    opts = {name: pc.optim.SGD(lr=args.lr, momentum=0.9) for name in params}
    print(f"\ntraining {algo} and bp from the same start, {epochs} epoch(s), lr {args.lr}")
    print(f"{'epoch':>5} {'loss ' + algo:>12} {'loss bp':>10} {'acc ' + algo:>10} {'acc bp':>8}")
    for epoch in range(1, epochs + 1):
        start, losses = time.perf_counter(), {name: [] for name in params}
        for xb, yb in data.batches(args.batch_size, seed=(args.seed, epoch)):
            for name in params:  # the same batch for both
                loss = prog.train_step(
                    params[name], {"x": xb, "y": yb}, algorithm=name, optimizer=opts[name]
                )
                losses[name].append(loss)
        acc = {name: accuracy(prog, params[name], data.x_test, data.y_test) for name in params}
        print(
            f"{epoch:>5} {np.mean(losses[algo]):>12.6f} {np.mean(losses['bp']):>10.6f} "
            f"{acc[algo]:>10.4f} {acc['bp']:>8.4f}   max |p_{algo} - p_bp| = "
            f"{pc.compare.max_abs_diff(params[algo], params['bp']):.3e}"
            f"   ({time.perf_counter() - start:.2f} s)"
        )
    divergence = pc.compare.max_abs_diff(params[algo], params["bp"])
    print(f"\n{algo} vs bp after {epochs} epoch(s): max |p_{algo} - p_bp| = {divergence:.3e}")
    if algo == "zil":
        print("Z-IL = BP: Z-IL computes exactly backprop's gradients, so the runs stay equal")

    # 4. Save the graph and a checkpoint, reload both into a fresh program, evaluate.
    args.out.mkdir(parents=True, exist_ok=True)
    graph_path = pc.save_graph(args.out / "graph.json", g)
    ckpt_path = pc.save(
        args.out / "checkpoint.npz",
        params[algo],
        opts[algo].state_dict(),
        meta={"epoch": epochs, "algorithm": algo, "seed": args.seed},
        program=prog,
    )
    print(f"saved {graph_path} and {ckpt_path}")
    prog2 = pc.compile(pc.load_graph(graph_path), backend=args.backend)
    ckpt = pc.load(ckpt_path, prog2)  # refuses a checkpoint of another graph
    resumed = pc.optim.SGD(lr=args.lr, momentum=0.9)
    resumed.load_state_dict(ckpt.optimizer_state)  # ready to continue training
    acc_before = accuracy(prog, params[algo], data.x_test, data.y_test)
    acc_after = accuracy(prog2, ckpt.params, data.x_test, data.y_test)
    print(
        f"reloaded {ckpt.meta}: test accuracy {acc_after:.4f} (before saving {acc_before:.4f}), "
        f"max |p_loaded - p_saved| = {pc.compare.max_abs_diff(ckpt.params, params[algo]):.1e}, "
        f"optimiser at step {resumed.state['step']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
