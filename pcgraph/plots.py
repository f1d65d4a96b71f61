"""PNG plots of training curves (``pcgraph train``) and of algorithm comparisons (``compare``).

matplotlib is optional (the ``plot`` extra): ``available()`` says whether it is installed, and
the command line skips the plot with a note when it is not.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .io import PathLike, atomic_write


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def _save(fig: Any, path: PathLike) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    try:
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        fig.tight_layout()
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def training_curves(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str) -> Path:
    """Loss and accuracy per epoch from ``pcgraph train``'s metric rows."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, _finite([r["train_loss"] for r in rows]), "o-", label="train")
    ax_loss.plot(epochs, _finite([r["test_loss"] for r in rows]), "s--", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, _finite([r["train_acc"] for r in rows]), "o-", label="train")
    ax_acc.plot(epochs, _finite([r["test_acc"] for r in rows]), "s--", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def comparison(
    rows: Sequence[Mapping[str, Any]], algorithms: Sequence[str], path: PathLike, title: str
) -> Path:
    """Loss, test accuracy and max |param - bp param| (log scale) per epoch and algorithm."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc, ax_div) = plt.subplots(1, 3, figsize=(15, 4))
    for algo in algorithms:
        mine = [r for r in rows if r["algorithm"] == algo]
        epochs = [r["epoch"] for r in mine]
        ax_loss.plot(epochs, _finite([r["loss"] for r in mine]), "o-", label=algo)
        ax_acc.plot(epochs, _finite([r["test_acc"] for r in mine]), "o-", label=algo)
        if algo == "bp":
            continue
        div = _finite([r["max_abs_diff_vs_bp"] for r in mine])
        # A log axis cannot show 0: bit-identical epochs are drawn at the bottom and labelled.
        zero = all(d == 0.0 for d in div)
        shown = [d if d > 0.0 else math.nan for d in div]
        ax_div.plot(epochs, shown, "o-", label=f"{algo} (identical: 0)" if zero else algo)
    ax_loss.set(xlabel="epoch", ylabel="train loss (batch mean)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    ax_div.set(xlabel="epoch", ylabel="max |param - bp param|", title="divergence from BP")
    if any(a != "bp" for a in algorithms):
        ax_div.set_yscale("log")
    else:
        ax_div.text(0.5, 0.5, "only bp was run", ha="center", transform=ax_div.transAxes)
    for ax in (ax_loss, ax_acc, ax_div):
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


__all__ = ["available", "training_curves", "comparison"]
