"""Gradient error against the number of inference steps: FPA at rate 1 and 0.1, strict IL.

The claim (Rosenbaum 2022, "On the relationship between predictive coding and backpropagation",
arXiv 2106.13082v6; Torch2PC's FixedPred and Strict): under the fixed prediction assumption
(FPA) with step size 1, the errors equal BP's deltas after as many sweeps as the network is deep,
so the parameter updates are exactly the gradient; with a smaller step they converge to it as
the steps grow.  Strict predictive coding (IL: predictions recomputed at every step) converges to
a fixed point whose updates only approximate the gradient.

Here: a 784-128-128-128-10 tanh MLP on one batch of 64 MNIST images, in float64; the error is
``||g - g_BP|| / ||g_BP||`` over all parameters, at the initialisation and again after one epoch
of BP training (smaller output errors).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc
from examples.reproduce import common
from pcgraph import models
from pcgraph.algorithms.pc import structure

NAME = "fpa"
METHODS: list[tuple[str, str, float]] = [
    ("FPA, rate 1", "fpa", 1.0),
    ("FPA, rate 0.1", "fpa", 0.1),
    ("strict IL, rate 0.1", "il", 0.1),
]


def steps_list(quick: bool, depth: int) -> list[int]:
    """The numbers of inference steps to try (the depth among them)."""
    full = [1, 2, 3, 5, 8, 12, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000]
    base = [1, 2, 4, 8, 16] if quick else full
    return sorted({*base, depth, depth - 1})


def rel_error(g: dict, ref: dict) -> float:
    """``||g - ref|| / ||ref||`` over all parameters together."""
    num = sum(
        float(np.sum((np.asarray(pc.to_numpy(g[k])) - pc.to_numpy(ref[k])) ** 2)) for k in ref
    )
    den = sum(float(np.sum(np.asarray(pc.to_numpy(ref[k])) ** 2)) for k in ref)
    return float(np.sqrt(num / den))


def run(quick: bool = False, out: Path = common.DEFAULT_OUT) -> str:
    """Run the experiment; write ``out/fpa.md`` and ``out/fpa.png``; return the text."""
    start = time.perf_counter()
    n_train = 256 if quick else 5000
    ds, note = common.mnist(quick, n_train, 16)
    ds = ds.reshape((784,))
    prog = pc.compile(
        models.mlp(sizes=(784, 128, 128, 128, 10), activation="tanh"), dtype="float64"
    )
    depth = structure(prog.compiled).depth
    steps = steps_list(quick, depth)
    x, y = next(ds.batches(64, seed=1))
    feed = {"x": x, "y": y}
    init = prog.init_params(seed=0)
    trained = prog.init_params(seed=0)
    common.train(
        prog,
        trained,
        ds,
        algorithm="bp",
        optimizer=pc.optim.SGD(lr=0.05, momentum=0.9),
        epochs=1,
        batch=64,
    )
    points = {"at initialisation": init, f"after 1 BP epoch ({n_train} examples)": trained}
    errors: dict[tuple[str, str], list[float]] = {}
    losses = {}
    for when, params in points.items():
        losses[when] = prog.loss(params, feed)
        ref = prog.grads(params, feed, algorithm="bp")
        for label, algo, rate in METHODS:
            errors[(when, label)] = [
                rel_error(prog.grads(params, feed, algorithm=algo, steps=n, rate=rate), ref)
                for n in steps
            ]
    head = ["steps"] + [f"{label}, {when}" for when in points for label, _, _ in METHODS]
    rows = [
        [f"{n}" + (" (= depth)" if n == depth else "")]
        + [common.sci(errors[(when, label)][i]) for when in points for label, _, _ in METHODS]
        for i, n in enumerate(steps)
    ]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, len(points), sharey=True)
        for ax, when in zip(axes, points):
            for k, (label, _, _) in enumerate(METHODS):
                ax.plot(
                    steps,
                    np.maximum(errors[(when, label)], 1e-17),
                    marker=".",
                    linestyle=("-", "--", ":")[k % 3],  # two FPA rates share FPA's colour
                    color=common.color(label),
                    label=label,
                )
            ax.axvline(depth, color="grey", lw=0.8, ls="--", label=f"depth {depth}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{when} (loss {losses[when]:.2f})", fontsize=9)
            ax.set_xlabel("inference steps")
        axes[0].set_ylabel("||g - g_BP|| / ||g_BP||")
        axes[0].legend(fontsize=8)

    intro = (
        f"Relative error of the parameter updates against BP's gradient, by the number of "
        f"inference steps, on one batch of 64 (float64).  The network's depth (the longest "
        f"path in vertices, FPA's default number of sweeps) is {depth}.  Batch loss: "
        + ", ".join(f"{w} {v:.3f}" for w, v in losses.items())
        + "."
    )
    setup = {
        "data": f"{note}; the gradients are taken on one batch of 64 of them",
        "model": "MLP 784-128-128-128-10, tanh, softmax cross-entropy, float64, seed 0",
    }
    return common.report(
        out,
        NAME,
        "FPA and strict IL: gradient error against inference steps",
        quick,
        setup,
        body=[intro, "", common.table(head, rows)],
        claims=_claims(errors, steps, depth, list(points)),
        image=common.figure(out, NAME, draw, (10, 3.5)),
        seconds=time.perf_counter() - start,
    )


def _claims(errors: dict, steps: list[int], depth: int, whens: list[str]) -> list[str]:
    at = steps.index(depth)
    first = whens[0]
    fpa1 = errors[(first, "FPA, rate 1")]
    fpa01 = errors[(first, "FPA, rate 0.1")]
    out = [
        f"FPA at rate 1 is exact from {depth} steps (the depth) on: error "
        f"{common.sci(max(fpa1[at:]))} at and beyond it, {common.sci(fpa1[at - 1])} one step "
        "before it.",
        f"FPA at rate 0.1 approaches the gradient as the steps grow: {common.sci(fpa01[0])} "
        f"after {steps[0]}, {common.sci(fpa01[-1])} after {steps[-1]}.",
    ]
    il = {w: errors[(w, "strict IL, rate 0.1")] for w in whens}
    out.append(
        "Strict IL levels off at a gap that does not vanish: "
        + "; ".join(f"{w} {common.sci(v[-1])} after {steps[-1]} steps" for w, v in il.items())
        + "."
    )
    return out


main = common.cli(NAME, run, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
