"""Full-scale training: BP, Z-IL, IL and iPC on all of MNIST and Fashion-MNIST, several epochs.

The claims: Z-IL's accuracy is BP's (Song et al. 2020; Salvatori et al. 2022), and predictive
coding with one value node per layer (IL; incremental PC, Salvatori et al. 2024) comes within
the literature's margin of BP on these tasks (the PC papers report MLP accuracies close to
BP's on MNIST and Fashion-MNIST; RESULTS.md quotes them with their sources).

Set-up: the zoo's relu MLP 784-256-256-10 and LeNet (conv16-pool-conv32-pool-fc), trained on
all 60,000 training images and tested on the 10,000 test images, from the same initialisation
on the same batches (64).  BP, Z-IL and IL use SGD with momentum 0.9 at lr 0.05; iPC uses plain
SGD, which makes its in-loop parameter steps exact.  IL and iPC put one value node per layer
(``value_nodes="layers"``, PCX's tutorial placement).  Their inference steps, rates and iPC's
learning rate are tuned first, on the MLP and MNIST only: one epoch on the first 50,000
training images, scored on the other 10,000 (never on the test set); the best setting is then
used everywhere.  This run takes tens of minutes on two cores; ``--quick`` checks the script
in seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc
from examples import example_utils
from examples.reproduce import common
from pcgraph import data, models
from pcgraph.errors import FileFormatError

NAME = "fullscale"
BATCH = 64
MOMENTUM_SGD = {"lr": 0.05, "momentum": 0.9}
IL_GRID = [{"steps": t, "rate": r} for t in (8, 20) for r in (0.1, 0.3)]
IPC_GRID = [{"steps": t, "lr": lr} for t in (8, 20) for lr in (0.003, 0.01, 0.03, 0.1)]


@dataclass(frozen=True)
class Result:
    dataset: str
    network: str
    algorithm: str
    accuracy: list[float]  # test accuracy after each epoch
    seconds: float
    failed: str | None
    params: dict[str, np.ndarray]


def networks(quick: bool) -> dict[str, tuple[str, Any, tuple[int, ...]]]:
    """name -> (label, builder, input shape)."""
    if quick:
        return {
            "mlp": ("MLP 784-32-10 relu", lambda: models.mlp(sizes=(784, 32, 10)), (784,)),
            "lenet": (
                "LeNet conv2-conv3",
                lambda: models.lenet(channels=(2, 3)),
                (1, 28, 28),
            ),
        }
    return {
        "mlp": ("MLP 784-256-256-10 relu", lambda: models.mlp(), (784,)),
        "lenet": ("LeNet conv16-pool-conv32-pool-fc", lambda: models.lenet(), (1, 28, 28)),
    }


def load(name: str, quick: bool) -> data.Dataset | None:
    """The data set; in quick mode a small part of it, or None when it is not installed (full
    mode raises the FileFormatError that says where to get it)."""
    try:
        ds = data.load(name)
    except FileFormatError:
        if not quick:
            raise
        return None
    return ds.subset(256, 128) if quick else ds


def optimizer(algorithm: str, options: dict) -> pc.optim.Optimizer:
    if algorithm == "ipc":
        return pc.optim.SGD(lr=options["lr"])
    if algorithm == "il" and "lr" in options:  # --settings il_lr=: IL's own learning rate
        return pc.optim.SGD(lr=options["lr"], momentum=MOMENTUM_SGD["momentum"])
    return pc.optim.SGD(**MOMENTUM_SGD)


def options_of(algorithm: str, tuned: dict) -> dict:
    if algorithm == "il":
        return {"steps": tuned["il"]["steps"], "rate": tuned["il"]["rate"], "value_nodes": "layers"}
    if algorithm == "ipc":
        return {"steps": tuned["ipc"]["steps"], "value_nodes": "layers"}
    return {}


def train_one(
    build: Any,
    shape: tuple[int, ...],
    ds: data.Dataset,
    algorithm: str,
    options: dict,
    opt: pc.optim.Optimizer,
    epochs: int,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> tuple[list[float], float, str | None, dict]:
    prog = pc.compile(build())
    params = prog.init_params(0)
    accuracy, seconds, failed = [], 0.0, None
    for epoch in range(epochs):
        run = common.train(
            prog,
            params,
            ds,
            algorithm=algorithm,
            options=options,
            optimizer=opt,
            epochs=1,
            batch=BATCH,
            seed=epoch,
            shape=shape,
        )
        seconds += run.seconds
        accuracy.append(example_utils.accuracy(prog, params, x_test, y_test))
        common.log(f"  {algorithm} epoch {epoch + 1}: {100 * accuracy[-1]:.2f} %")
        if run.failed:
            failed = f"epoch {epoch + 1}: {run.failed}"
            break
    return accuracy, seconds, failed, common.host(params)


def tune(quick: bool) -> tuple[dict, list[list[str]]]:
    """IL's and iPC's settings: the best validation accuracy after one epoch of the MLP on the
    first 50,000 MNIST training images, scored on the last 10,000."""
    ds = load("mnist", quick)
    n_val = len(ds.y_train) // 6
    fit = ds.subset(len(ds.y_train) - n_val, 1)
    x_val, y_val = ds.x_train[-n_val:].reshape(n_val, -1), ds.y_train[-n_val:]
    _, build, shape = networks(quick)["mlp"]
    rows, best = [], {}
    for algorithm, grid in (("il", IL_GRID), ("ipc", IPC_GRID)):
        scored = []
        for setting in grid:
            options = {**setting, "value_nodes": "layers"}
            opt = optimizer(algorithm, setting)
            if algorithm == "ipc":
                options.pop("lr")
            acc, _, failed, _ = train_one(
                build, shape, fit, algorithm, options, opt, 1, x_val, y_val
            )
            score = acc[-1] if not failed else 0.0
            scored.append((score, setting))
            rows.append([algorithm, str(setting), f"{100 * score:.2f}", failed or ""])
        best[algorithm] = max(scored, key=lambda s: s[0])[1]
    return best, rows


def run(
    quick: bool = False,
    out: Path = common.DEFAULT_OUT,
    datasets: tuple[str, ...] = ("mnist", "fashion_mnist"),
    settings: dict | None = None,
    nets: tuple[str, ...] = ("mlp", "lenet"),
    algorithms: tuple[str, ...] = ("bp", "zil", "il", "ipc"),
) -> str:
    """The experiment; ``settings`` (``{"il": {"steps", "rate"}, "ipc": {"steps", "lr"}}``)
    skips the tuning pass and uses those; ``datasets`` picks the data sets."""
    start = time.perf_counter()
    epochs = {"mlp": 1 if quick else 10, "lenet": 1 if quick else 3}
    if settings is None:
        common.log("tuning IL and iPC on a validation split of MNIST")
        tuned, tune_rows = tune(quick)
    else:
        tuned, tune_rows = settings, []
    results: list[Result] = []
    missing = []
    for dataset in datasets:
        ds = load(dataset, quick)
        if ds is None:
            missing.append(dataset)
            continue
        for key, (_label, build, shape) in networks(quick).items():
            if key not in nets:
                continue
            x_test = ds.x_test.reshape((len(ds.y_test), *shape))
            for algorithm in algorithms:
                common.log(f"{dataset} {key} {algorithm}")
                options = options_of(algorithm, tuned)
                opt = optimizer(algorithm, tuned.get(algorithm, {}))
                acc, seconds, failed, params = train_one(
                    build, shape, ds, algorithm, options, opt, epochs[key], x_test, ds.y_test
                )
                results.append(Result(dataset, key, algorithm, acc, seconds, failed, params))
    body = _body(results, tuned, tune_rows, networks(quick), epochs, quick)
    image = common.figure(out, NAME, lambda fig: _draw(fig, results), (10, 6))
    return common.report(
        out,
        NAME,
        "Full-scale training: BP, Z-IL, IL and iPC on MNIST and Fashion-MNIST",
        quick,
        {
            "data": "MNIST and Fashion-MNIST, all 60,000 training and 10,000 test images"
            if not quick
            else "256 training / 128 test images of each (quick mode)"
            + (f"; not installed, left out: {', '.join(missing)}" if missing else ""),
            "batches": f"{BATCH}, the same order for every algorithm (seeded per epoch)",
            "parts run": f"data sets {', '.join(datasets)}; networks {', '.join(nets)}; "
            f"algorithms {', '.join(algorithms)}"
            + ("" if settings is None else f"; settings given: {settings}"),
        },
        body=body,
        claims=claims(results),
        image=image,
        seconds=time.perf_counter() - start,
    )


ALGORITHM_LABELS = {"bp": "BP", "zil": "Z-IL", "il": "IL (layers)", "ipc": "iPC (layers)"}


def _body(results, tuned, tune_rows, nets, epochs, quick) -> list[str]:  # noqa: ANN001
    how = (
        "Tuned on MNIST's validation split (MLP, one epoch)"
        if tune_rows
        else ("Settings given with --settings (from the tuning pass of an earlier run)")
    )
    lines = [
        f"{how}: IL {tuned['il']}, iPC "
        f"{tuned['ipc']}; BP, Z-IL and IL use SGD(lr={MOMENTUM_SGD['lr']}, momentum="
        f"{MOMENTUM_SGD['momentum']}), iPC plain SGD at its tuned lr.  Epochs: MLP "
        f"{epochs['mlp']}, LeNet {epochs['lenet']}.",
        "",
        "### Test accuracy (%) after the last epoch",
        "",
    ]
    rows = []
    for dataset in sorted({r.dataset for r in results}, key=["mnist", "fashion_mnist"].index):
        for key, (label, _, _) in nets.items():
            if not any(_find(results, dataset, key, a) for a in ALGORITHM_LABELS):
                continue
            row = [dataset, label]
            for algorithm in ALGORITHM_LABELS:
                r = _find(results, dataset, key, algorithm)
                cell = "not run" if r is None else f"{100 * r.accuracy[-1]:.2f}"
                row.append(cell + (f" ({r.failed})" if r is not None and r.failed else ""))
            bp, zil = _find(results, dataset, key, "bp"), _find(results, dataset, key, "zil")
            diff = common.sum_abs_diff(zil.params, bp.params) if bp and zil else None
            row.append("" if diff is None else common.sci(diff))
            rows.append(row)
    lines.append(
        common.table(
            [
                "data",
                "network",
                *ALGORITHM_LABELS.values(),
                "Z-IL vs BP: sum of abs parameter differences",
            ],
            rows,
        )
    )
    lines += ["", "### Test accuracy (%) after each epoch, and training time", ""]
    per_epoch = [
        [
            r.dataset,
            r.network,
            ALGORITHM_LABELS[r.algorithm],
            " ".join(f"{100 * a:.2f}" for a in r.accuracy),
            f"{r.seconds:.0f}",
        ]
        for r in results
    ]
    lines.append(common.table(["data", "network", "algorithm", "per epoch", "train s"], per_epoch))
    if tune_rows:
        lines += ["", "### The tuning runs (validation accuracy %, MLP, MNIST, one epoch)", ""]
        lines.append(common.table(["algorithm", "setting", "validation %", "failed"], tune_rows))
    return lines


def _find(results: list[Result], dataset: str, network: str, algorithm: str) -> Result | None:
    return next(
        (
            r
            for r in results
            if (r.dataset, r.network, r.algorithm) == (dataset, network, algorithm)
        ),
        None,
    )


def claims(results: list[Result]) -> list[str]:
    out = []
    pairs = {(r.dataset, r.network) for r in results}
    both = [p for p in sorted(pairs) if _find(results, *p, "zil") and _find(results, *p, "bp")]
    same = [
        p for p in both if _find(results, *p, "zil").accuracy == _find(results, *p, "bp").accuracy
    ]
    if both:
        out.append(
            f"Z-IL's test accuracy equals BP's after every epoch on {len(same)}/{len(both)} runs."
        )
    for algorithm in ("il", "ipc"):
        with_bp = [p for p in both if _find(results, *p, algorithm)]
        if not with_bp:
            continue
        gaps = [
            100
            * (_find(results, *p, algorithm).accuracy[-1] - _find(results, *p, "bp").accuracy[-1])
            for p in with_bp
        ]
        out.append(
            f"{ALGORITHM_LABELS[algorithm]} minus BP, final test accuracy: "
            + ", ".join(f"{d}/{n} {g:+.2f}" for (d, n), g in zip(with_bp, gaps))
            + " points."
        )
    return out


def _draw(fig: Any, results: list[Result]) -> None:
    axes = fig.subplots(2, 2, squeeze=False)
    for i, dataset in enumerate(sorted({r.dataset for r in results})):
        for j, network in enumerate(("mlp", "lenet")):
            ax = axes[i][j]
            for algorithm, label in ALGORITHM_LABELS.items():
                r = _find(results, dataset, network, algorithm)
                if r is None:
                    continue
                ax.plot(
                    range(1, len(r.accuracy) + 1),
                    [100 * a for a in r.accuracy],
                    label=label,
                    marker="o",
                    color=common.color(label),
                    linestyle="--" if algorithm == "zil" else "-",
                )
            ax.set_title(f"{network}, {dataset}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy %")
            ax.legend(fontsize=7)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n for n in text.split(",") if n)


def _settings(text: str) -> dict | None:
    """``il_steps=20,il_rate=0.1,ipc_steps=20,ipc_lr=0.1[,il_lr=...]`` -> ``run``'s settings."""
    if not text:
        return None
    try:
        given = dict(kv.split("=", 1) for kv in text.split(","))
        settings = {
            "il": {"steps": int(given.pop("il_steps")), "rate": float(given.pop("il_rate"))},
            "ipc": {"steps": int(given.pop("ipc_steps")), "lr": float(given.pop("ipc_lr"))},
        }
        if "il_lr" in given:
            settings["il"]["lr"] = float(given.pop("il_lr"))
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(
            f"needs il_steps=,il_rate=,ipc_steps=,ipc_lr= (and optionally il_lr=): {e}"
        ) from None
    if given:
        raise argparse.ArgumentTypeError(f"unknown settings {sorted(given)}")
    return settings


def _options(ap: argparse.ArgumentParser) -> None:
    """``--datasets`` and ``--settings`` (skip the tuning) split a long run."""
    ap.add_argument(
        "--datasets", type=_names, default=("mnist", "fashion_mnist"), help="comma-separated"
    )
    ap.add_argument(
        "--settings",
        type=_settings,
        default=None,
        help="skip the tuning: il_steps=20,il_rate=0.1,ipc_steps=20,ipc_lr=0.1[,il_lr=0.01]",
    )
    ap.add_argument(
        "--networks",
        dest="nets",
        metavar="NETWORKS",
        type=_names,
        default=("mlp", "lenet"),
        help="comma-separated",
    )
    ap.add_argument(
        "--algorithms", type=_names, default=("bp", "zil", "il", "ipc"), help="comma-separated"
    )


main = common.cli(NAME, run, __doc__, _options)

if __name__ == "__main__":
    raise SystemExit(main())
