"""Final training loss against the learning rate for IL-prox, IL and BP-SGD (Alonso et al. 2022).

The claim (Alonso, Millidge, Krichmar, Neftci, NeurIPS 2022, "A Theoretical Framework for
Inference Learning"): IL approximates implicit (proximal) SGD, and IL-prox, which approximates
it more closely, stays stable over learning rates from 0.01 to 100 where explicit SGD with BP
diverges.  Their sweep (``nalonso2/ILTheory``, ``train_MLP.py``): a 784-256-256-10 relu MLP on
MNIST, batch size 1, learning rates 0.01 to 100.  Here ILTheory's network itself: value nodes
at the layers' pre-activations (``models.mlp(layers_at="pre-activation")``,
``value_nodes="layers"``), each relu folded into the next layer's prediction; IL-prox with the
paper's 25 steps at rate 0.015, ILTheory's output target (``output_norm="iltheory"``) and its
``eps=0.25``: the update of ILTheory's ``ProxPC`` (``tests/test_peers.py`` checks it to 1e-12).
IL uses the same network, steps and rate; BP is plain SGD.  All start from the same
initialisation and see the same batches, with batch size 1 and 64; the table gives the final
mean training loss over the examples trained on, and the test accuracy.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc
from examples import example_utils
from examples.reproduce import common
from pcgraph import models

NAME = "stability"
LRS = (0.01, 0.1, 1.0, 2.5, 10.0, 100.0)
PER_LAYER = {"steps": 25, "rate": 0.015, "value_nodes": "layers"}
ALGORITHMS: list[tuple[str, str, dict[str, Any]]] = [
    ("IL-prox", "il-prox", {**PER_LAYER, "output_norm": "iltheory", "eps": 0.25}),
    ("IL", "il", PER_LAYER),
    ("BP-SGD", "bp", {}),
]


def sizes(quick: bool) -> tuple[int, list[tuple[int, int]]]:
    """(training examples, [(batch size, epochs), ...])."""
    return (16, [(1, 1), (8, 1)]) if quick else (5000, [(1, 1), (64, 5)])


def run(quick: bool = False, out: Path = common.DEFAULT_OUT) -> str:
    """Run the experiment; write ``out/stability.md`` and ``out/stability.png``; return the text."""
    start = time.perf_counter()
    n, regimes = sizes(quick)
    ds, note = common.mnist(quick, n, 64 if quick else 10000)
    ds = ds.reshape((784,))
    graph = models.mlp(sizes=(784, 256, 256, 10), layers_at="pre-activation")
    prog = pc.compile(graph, dtype="float32")
    init = common.host(prog.init_params(seed=0))
    start_loss = common.mean_loss(prog, init, ds.x_train, ds.y_train)
    results: dict[tuple[int, str, float], tuple[float, str | None]] = {}
    for batch, epochs in regimes:
        for label, algo, opts in ALGORITHMS:
            for lr in LRS:
                run_ = common.train(
                    prog,
                    {k: v.copy() for k, v in init.items()},
                    ds,
                    algorithm=algo,
                    options=opts,
                    optimizer=pc.optim.SGD(lr=lr),
                    epochs=epochs,
                    batch=batch,
                )
                loss = common.mean_loss(prog, run_.params, ds.x_train, ds.y_train)
                acc = example_utils.accuracy(prog, run_.params, ds.x_test, ds.y_test)
                results[(batch, label, lr)] = (loss, run_.failed, acc)
            common.log(f"{NAME}: batch {batch} {label} done ({time.perf_counter() - start:.0f} s)")

    def cell(batch: int, label: str, lr: float) -> str:
        loss, failed, acc = results[(batch, label, lr)]
        if failed:
            return f"diverged ({failed})"
        worse = " (worse than at start)" if not loss < start_loss else ""
        return f"{common.sci(loss, 3)}{worse}; {100 * acc:.1f} %"

    head = ["learning rate"] + [
        f"{label}, batch {b}" for b, _ in regimes for label, _, _ in ALGORITHMS
    ]
    rows = [
        [f"{lr:g}"] + [cell(b, label, lr) for b, _ in regimes for label, _, _ in ALGORITHMS]
        for lr in LRS
    ]

    top = 50.0  # losses above this, and diverged runs, are drawn as crosses at the top

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, len(regimes), sharey=True)
        for ax, (b, epochs) in zip(axes, regimes):
            for i, (label, _, _) in enumerate(ALGORITHMS):
                ys = []
                for lr in LRS:
                    loss, failed, _ = results[(b, label, lr)]
                    ok = not failed and math.isfinite(loss) and loss < top
                    ys.append(loss if ok else np.nan)
                ax.plot(LRS, ys, marker="o", color=common.color(label), label=label)
                bad = [lr for lr, y in zip(LRS, ys) if np.isnan(y)]
                ax.plot(
                    bad, [top * 1.3**i] * len(bad), "x", color=common.color(label), markersize=9
                )
            ax.axhline(start_loss, color="grey", lw=0.8, ls="--", label="at start")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(0.01, top * 3)
            ax.set_title(f"batch {b}, {epochs} epoch(s) over {n} examples", fontsize=9)
            ax.set_xlabel("learning rate")
        axes[0].set_ylabel(f"final training loss (x: diverged or > {top:g})")
        axes[0].legend(fontsize=8)

    intro = (
        f"Final mean training loss over the {n} training examples (it is "
        f"{start_loss:.3f} at the initialisation), after "
        + " and ".join(f"{e} epoch(s) at batch size {b}" for b, e in regimes)
        + "; then the accuracy on the test images.  'diverged' marks a run that reached a "
        "non-finite value (training stops there)."
    )
    setup = {
        "data": f"{note} (the training part is the set trained on and scored)",
        "model": "MLP 784-256-256-10, relu, softmax cross-entropy, float32, seed 0; value "
        "nodes at the two hidden pre-activations (ILTheory's placement) for IL-prox and IL",
    }
    return common.report(
        out,
        NAME,
        "Stability across learning rates: IL-prox, IL, BP-SGD",
        quick,
        setup,
        body=[intro, "", common.table(head, rows)],
        claims=_claims(results, regimes, start_loss),
        image=common.figure(out, NAME, draw, (10, 3.5)),
        seconds=time.perf_counter() - start,
    )


def _claims(results: dict, regimes: list[tuple[int, int]], start_loss: float) -> list[str]:
    out = []
    for b, _ in regimes:
        parts = []
        for label, _, _ in ALGORITHMS:
            good = [
                lr
                for lr in LRS
                if not results[(b, label, lr)][1] and results[(b, label, lr)][0] < start_loss
            ]
            parts.append(
                f"{label} lowers the loss at {len(good)}/{len(LRS)} rates"
                + (f" (up to {max(good):g})" if good else "")
            )
        out.append(f"Batch size {b}: " + "; ".join(parts) + ".")
    return out


main = common.cli(NAME, run, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
