"""Milliseconds per weight update of BP, Z-IL, FPA and IL on the networks of ``accuracy``.

The claim (Salvatori et al., AAAI 2022, "Reverse Differentiation via Predictive Coding"): Z-IL
costs what BP costs, within a few percent, while IL is much slower.
Here one update is ``Program.train_step`` (forward, the algorithm's schedule, the SGD update) on
a real MNIST batch in float32; the runs of one network are interleaved (A B C D A B C D ...)
by ``benchmarks.timing.interleaved`` and reported as medians after a warm-up, ratios paired by
round.  ``--quick`` times one repeat, a smoke run whose figures are not results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pcgraph as pc
from examples.reproduce import common
from examples.reproduce.accuracy import ARCHS
from pcgraph.algorithms.pc import structure

NAME = "runtime"

ALGORITHMS: list[tuple[str, str, dict[str, Any]]] = [
    ("BP", "bp", {}),
    ("Z-IL", "zil", {}),
    ("FPA (depth sweeps)", "fpa", {"rate": 1.0}),
    ("IL (20 steps)", "il", {"steps": 20}),
]


def run(quick: bool = False, out: Path = common.DEFAULT_OUT) -> str:
    """Run the experiment; write ``out/runtime.md`` and ``out/runtime.png``; return the text."""
    from benchmarks.timing import interleaved  # one runtime in one process: pcgraph alone

    start = time.perf_counter()
    repeats, warmup = (1, 1) if quick else (31, 3)
    base, note = common.mnist(quick, 256, 16)
    rows, medians, ratios = [], {}, {}
    for arch in ARCHS:
        ds = common.pool2(base) if arch.pool else base
        prog = pc.compile(arch.build(), dtype="float32")
        params = prog.init_params(seed=0)
        x, y = next(ds.batches(arch.batch, seed=0))
        feed = {"x": x.reshape((-1, *arch.shape)), "y": y}
        fns = {}
        for label, algo, opts in ALGORITHMS:
            opt = pc.optim.SGD(lr=1e-4)
            fns[label] = lambda a=algo, o=opts, s=opt: prog.train_step(
                params, feed, algorithm=a, optimizer=s, **o
            )
        timed = interleaved(fns, repeats, warmup)
        med = {k: timed.median(k) * 1e3 for k in fns}
        medians[arch.key] = med
        # Ratios paired within each round: the machine's drift moves both steps of a round alike.
        ratios[arch.key] = vs_bp = {k: timed.ratio(k, "BP") for k in fns}
        depth = structure(prog.compiled).depth
        rows.append(
            [
                arch.label,
                f"{arch.batch}",
                f"{depth}",
                *(f"{med[lab]:.2f}" for lab, _, _ in ALGORITHMS),
                f"{vs_bp['Z-IL']:.2f}",
                f"{vs_bp['FPA (depth sweeps)']:.1f}",
                f"{vs_bp['IL (20 steps)']:.1f}",
            ]
        )
    head = [
        "network",
        "batch",
        "depth",
        *(f"{lab} ms" for lab, _, _ in ALGORITHMS),
        "Z-IL / BP",
        "FPA / BP",
        "IL / BP",
    ]

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        keys = [a.key for a in ARCHS]
        width = 0.8 / len(ALGORITHMS)
        for i, (label, _, _) in enumerate(ALGORITHMS):
            ax.bar(
                [k + (i - 1.5) * width for k in range(len(keys))],
                [medians[key][label] for key in keys],
                width=width,
                label=label,
                color=common.color(label),
            )
        ax.set_xticks(range(len(keys)), keys)
        ax.set_xlabel("network")
        ax.set_yscale("log")
        ax.set_ylabel("ms per weight update (median)")
        ax.legend(fontsize=8)

    zil = [ratios[a.key]["Z-IL"] for a in ARCHS]
    il = [ratios[a.key]["IL (20 steps)"] for a in ARCHS]
    claims = [
        f"Z-IL / BP ranges over {min(zil):.2f}-{max(zil):.2f} here (our measurement; the "
        "paper's claim is that Z-IL costs what BP costs).",
        f"IL with 20 inference steps costs {min(il):.0f}-{max(il):.0f}x BP here; IL run to "
        "convergence takes far more than 20 steps (see the fpa experiment).",
    ]
    intro = (
        "Median ms per weight update (train step including the SGD update, float32, one "
        f"real MNIST batch), {repeats} interleaved repeats after {warmup} warm-up rounds; "
        "each ratio to BP is the median over rounds of the ratio within a round.  "
        "'depth' is the longest path to the output in vertices, the number of FPA sweeps.  "
        "Every figure is our own measurement on this machine."
    )
    if quick:
        intro = (
            "**Quick mode: one repeat, a smoke run; these figures are not measurements.**  " + intro
        )
    return common.report(
        out,
        NAME,
        "Runtime per weight update",
        quick,
        {"data": note + " (one batch per network)"},
        body=[intro, "", common.table(head, rows)],
        claims=claims,
        image=common.figure(out, NAME, draw, (8, 3.5)),
        seconds=time.perf_counter() - start,
    )


main = common.cli(NAME, run, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
