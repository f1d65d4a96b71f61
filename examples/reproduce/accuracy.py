"""Test accuracy of BP, Z-IL, IL and FPA trained from the same initialisation on the same batches.

The claim (Song et al. 2020; Salvatori et al. 2022): Z-IL's weight updates are BP's, so its
accuracy equals BP's exactly and its parameters differ from BP's only by rounding (float64 and
float32); IL, and FPA off its exact setting, learn something else.  FPA with as many sweeps as
the graph is deep at rate 1 also equals BP exactly (Rosenbaum 2022), so a second FPA (20 sweeps
at rate 0.1, IL's steps and rate) shows FPA away from that setting.

Five networks on MNIST: an MLP, a LeNet CNN, a many-to-one RNN on the rows (28 steps of 28
pixels), a small ResNet (on 14x14 average-pooled images, to fit a CPU budget) and a one-layer
Transformer encoder on the rows (28 tokens of 28 features).  Each algorithm trains a copy of the
same initial parameters with the same optimiser on the same batches; BP and Z-IL are trained
again in float64 for the divergence claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc
from examples import example_utils
from examples.reproduce import common
from pcgraph import models

NAME = "accuracy"


@dataclass(frozen=True)
class Arch:
    """A network of the experiment and how it is trained."""

    key: str
    label: str
    build: Callable[[], pc.Graph]
    shape: tuple[int, ...]  # per-example input shape
    lr: float  # SGD learning rate (momentum 0.9)
    batch: int
    train: int  # training examples in full mode (the first ones of MNIST's training set)
    pool: bool = False  # train on 14x14 average-pooled images


ARCHS = [
    Arch("mlp", "MLP 784-256-256-10 (relu)", lambda: models.mlp(), (784,), 0.05, 64, 10000),
    Arch(
        "cnn",
        "CNN (LeNet: conv6-pool-conv16-pool-fc)",
        lambda: models.lenet(channels=(6, 16)),
        (1, 28, 28),
        0.05,
        64,
        10000,
    ),
    Arch(
        "rnn",
        "RNN many-to-one, 28 rows x 28 px, H=64",
        lambda: models.rnn_many_to_one(T=28, D=28, H=64),
        (28, 28),
        0.01,
        64,
        10000,
    ),
    Arch(
        "resnet",
        "ResNet blocks (1,1), widths (8,16), no norm, 14x14",
        lambda: models.resnet(blocks=(1, 1), widths=(8, 16), in_shape=(1, 14, 14), norm=None),
        (1, 14, 14),
        0.03,
        32,
        10000,
        pool=True,
    ),
    Arch(
        "transformer",
        "Transformer encoder, 1 layer, 28 tokens x 28, 4 heads",
        lambda: models.transformer_encoder(T=28, d_model=28, heads=4, layers=1),
        (28, 28),
        0.05,
        64,
        5000,
    ),
]

# (label, algorithm, options); every one trains in float32, the first two also in float64.
ALGORITHMS: list[tuple[str, str, dict[str, Any]]] = [
    ("BP", "bp", {}),
    ("Z-IL", "zil", {}),
    ("IL (20 steps, rate 0.1)", "il", {"steps": 20, "rate": 0.1}),
    ("FPA (depth sweeps, rate 1)", "fpa", {"rate": 1.0}),
    ("FPA (20 sweeps, rate 0.1)", "fpa", {"steps": 20, "rate": 0.1}),
]
FLOAT64 = ("BP", "Z-IL")
SHORT = dict(zip((a[0] for a in ALGORITHMS), ("BP", "Z-IL", "IL", "FPA D,1", "FPA 20,0.1")))


def sizes(quick: bool) -> tuple[int, int, int]:
    """(the most training examples a network uses, test examples, epochs)."""
    return (128, 128, 1) if quick else (max(a.train for a in ARCHS), 2000, 1)


@dataclass
class Row:
    arch: str
    algorithm: str
    dtype: str
    accuracy: float
    loss: float  # mean batch loss over the last 20 updates
    first: float  # max |theta - theta_BP| after the first update
    final: float  # ... after training
    seconds: float
    failed: str | None


def run_arch(arch: Arch, ds: Any, epochs: int) -> list[Row]:
    """Train every algorithm on ``arch``; rows in ``ALGORITHMS`` order, then the float64 ones."""
    rows = []
    x_test = ds.x_test.reshape((-1, *arch.shape))
    for dtype in ("float32", "float64"):
        prog = pc.compile(arch.build(), dtype=dtype)
        init = common.host(prog.init_params(seed=0))
        ref_first = ref_final = None
        for label, algo, opts in ALGORITHMS:
            if dtype == "float64" and label not in FLOAT64:
                continue
            run = common.train(
                prog,
                {k: v.copy() for k, v in init.items()},
                ds,
                algorithm=algo,
                options=opts,
                optimizer=pc.optim.SGD(lr=arch.lr, momentum=0.9),
                epochs=epochs,
                batch=arch.batch,
                shape=arch.shape,
            )
            common.log(f"{NAME}: {arch.key} {label} {dtype}: {run.seconds:.1f} s")
            if label == "BP":
                ref_first, ref_final = run.first, run.params
            rows.append(
                Row(
                    arch.key,
                    label,
                    dtype,
                    example_utils.accuracy(prog, run.params, x_test, ds.y_test),
                    float(np.mean(run.losses[-20:])) if run.losses else float("nan"),
                    pc.compare.max_abs_diff(run.first, ref_first),
                    pc.compare.max_abs_diff(run.params, ref_final),
                    run.seconds,
                    run.failed,
                )
            )
    return rows


def _summary(rows: list[Row], notes: dict[str, str]) -> str:
    labels = [a[0] for a in ALGORITHMS]
    head = ["network", "data", *(f"{lab} acc %" for lab in labels)]
    head += ["Z-IL vs BP f32 max abs", "Z-IL vs BP f64 max abs"]
    body = []
    for arch in ARCHS:
        mine = [r for r in rows if r.arch == arch.key]
        if not mine:
            continue
        acc = {r.algorithm: r for r in mine if r.dtype == "float32"}
        f64 = {r.algorithm: r for r in mine if r.dtype == "float64"}
        body.append(
            [
                arch.label,
                notes[arch.key],
                *(f"{100 * acc[lab].accuracy:.2f}" for lab in labels),
                common.sci(acc["Z-IL"].final),
                common.sci(f64["Z-IL"].final),
            ]
        )
    return common.table(head, body)


def _details(rows: list[Row]) -> str:
    head = [
        "network",
        "algorithm",
        "dtype",
        "test acc %",
        "train loss (last 20)",
        "max abs vs BP, 1 update",
        "max abs vs BP, end",
        "train s",
    ]
    body = [
        [
            r.arch,
            r.algorithm,
            r.dtype,
            f"{100 * r.accuracy:.2f}",
            f"{r.loss:.4f}" + (f" ({r.failed})" if r.failed else ""),
            common.sci(r.first),
            common.sci(r.final),
            f"{r.seconds:.1f}",
        ]
        for r in rows
    ]
    return common.table(head, body)


def claims(rows: list[Row]) -> list[str]:
    """One sentence per claim, computed from the rows."""
    f32 = {(r.arch, r.algorithm): r for r in rows if r.dtype == "float32"}
    f64 = {(r.arch, r.algorithm): r for r in rows if r.dtype == "float64"}
    archs = [a.key for a in ARCHS if (a.key, "BP") in f32]
    # How much rounding alone moves this training run: BP in float32 against BP in float64.
    noise = {a: 100 * abs(f32[(a, "BP")].accuracy - f64[(a, "BP")].accuracy) for a in archs}

    def equal(get: dict, label: str) -> list[str]:
        return [a for a in archs if get[(a, label)].accuracy == get[(a, "BP")].accuracy]

    def differ(label: str) -> str:
        off = [a for a in archs if a not in equal(f32, label)]
        if not off:
            return ""
        return (
            " Where float32 accuracy differs ("
            + ", ".join(
                f"{a}: {100 * (f32[(a, label)].accuracy - f32[(a, 'BP')].accuracy):+.2f} points, "
                f"while BP float32 vs BP float64 differ by {noise[a]:.2f}"
                for a in off
            )
            + "), the per-update gap is float32 rounding that the training run amplifies."
        )

    out = [
        f"Z-IL = BP: test accuracy identical on {len(equal(f64, 'Z-IL'))}/{len(archs)} networks "
        f"in float64 and {len(equal(f32, 'Z-IL'))}/{len(archs)} in float32; largest parameter "
        f"gap after one update {common.sci(max(f64[(a, 'Z-IL')].first for a in archs))} "
        f"(float64) and {common.sci(max(f32[(a, 'Z-IL')].first for a in archs))} (float32), "
        f"after training {common.sci(max(f64[(a, 'Z-IL')].final for a in archs))} (float64) "
        f"and {common.sci(max(f32[(a, 'Z-IL')].final for a in archs))} (float32); bit-identical "
        f"to BP (gap 0) in float32 on "
        f"{', '.join(a for a in archs if f32[(a, 'Z-IL')].final == 0) or 'none'}." + differ("Z-IL")
    ]
    label = ALGORITHMS[3][0]
    out.append(
        f"{label} equals BP too (Rosenbaum 2022): largest gap after one update "
        f"{common.sci(max(f32[(a, label)].first for a in archs))} (float32 rounding); accuracy "
        f"identical on {len(equal(f32, label))}/{len(archs)} networks." + differ(label)
    )
    for label in (ALGORITHMS[2][0], ALGORITHMS[4][0]):
        diffs = [100 * (f32[(a, label)].accuracy - f32[(a, "BP")].accuracy) for a in archs]
        out.append(
            f"{label} differs from BP: accuracy minus BP's from {min(diffs):+.2f} to "
            f"{max(diffs):+.2f} points; largest parameter gap after one update "
            f"{common.sci(max(f32[(a, label)].first for a in archs))}, after training "
            f"{common.sci(max(f32[(a, label)].final for a in archs))}."
        )
    return out


def run(quick: bool = False, out: Path = common.DEFAULT_OUT) -> str:
    """Run the experiment; write ``out/accuracy.md`` and ``out/accuracy.png``; return the text."""
    start = time.perf_counter()
    train, test, epochs = sizes(quick)
    base, note = common.mnist(quick, train, test)
    rows: list[Row] = []
    notes = {}
    archs = ARCHS
    for arch in archs:
        ds = base if quick else base.subset(arch.train, None)
        ds = common.pool2(ds) if arch.pool else ds
        notes[arch.key] = f"{len(ds.y_train)}/{len(ds.y_test)}, {epochs} ep, b{arch.batch}"
        rows += run_arch(arch, ds, epochs)

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, len(archs))
        for ax, arch in zip(axes, archs):
            mine = [r for r in rows if r.arch == arch.key and r.dtype == "float32"]
            ax.bar(
                range(len(mine)),
                [100 * r.accuracy for r in mine],
                color=[common.color(r.algorithm) for r in mine],
            )
            ax.set_xticks(range(len(mine)), [SHORT[r.algorithm] for r in mine])
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
            ax.set_title(arch.key, fontsize=9)
            ax.set_ylim(0, 100)
        axes[0].set_ylabel("test accuracy % (float32)")

    body = [
        "Test accuracy after the same epochs, from the same initial parameters on the same "
        "batches (SGD, momentum 0.9; each network's learning rate and batch size below; "
        "every algorithm trains in float32, BP and Z-IL also in float64).  "
        "'max abs' is the largest |theta - theta_BP| over all parameters against BP in the "
        "same dtype.",
        "",
        _summary(rows, notes),
        "",
        "Learning rates: "
        + ", ".join(f"{a.key} {a.lr}" for a in archs)
        + ".  FPA (20 sweeps, rate 0.1) uses IL's steps and rate with the predictions "
        "held fixed; FPA (depth sweeps, rate 1) is the setting in which FPA equals BP.",
    ]
    setup = {
        "data": note + "; each network trains on the first N of them (the 'data' column: "
        "train/test examples, epochs, batch size); the ResNet's images are 2x2 average-pooled "
        "to 14x14"
    }
    return common.report(
        out,
        NAME,
        "Accuracy: BP, Z-IL, IL and FPA",
        quick,
        setup,
        body=body,
        claims=claims(rows),
        image=common.figure(out, NAME, draw, (12, 3)),
        seconds=time.perf_counter() - start,
        appendix=["## Every run", "", _details(rows), ""],
    )


main = common.cli(NAME, run, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
