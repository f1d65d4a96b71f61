"""PNG plots of training curves (``pcgraph train``) and of algorithm comparisons (``compare``),
and grids of images (``pcgraph generate`` and ``complete``).

matplotlib is optional (the ``plot`` extra): ``available()`` says whether it is installed, and
the command line skips the plot with a note when it is not.  ``image_grid`` needs no
matplotlib: it writes the PNG itself (zlib), so generated images are always written.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import PathLike, atomic_write


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


# One colour per algorithm in every figure the project draws (the CLI's and the reproductions').
COLORS = {
    "bp": "#1f77b4",
    "zil": "#d62728",
    "il": "#2ca02c",
    "fpa": "#9467bd",
    "il-prox": "#ff7f0e",
    "ipc": "#8c564b",
}
_SPARE = ("#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def color(algorithm: str) -> str:
    """The colour of ``algorithm`` in every plot (a fixed spare one for others)."""
    if algorithm in COLORS:
        return COLORS[algorithm]
    return _SPARE[sum(map(ord, algorithm)) % len(_SPARE)]


def coincident(series: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """For each series equal, point for point, to an earlier one: the name of that one (so a
    legend can say "zil = bp" where the curves hide each other)."""
    out: dict[str, str] = {}
    names = list(series)
    for i, name in enumerate(names):
        for other in names[:i]:
            if other not in out and list(series[name]) == list(series[other]):
                out[name] = other
                break
    return out


def _limits(ax: Any, values: Sequence[float]) -> None:
    """A y-range that shows the data: a one-point curve gets a margin around its value, not an
    axis from 0.945 to 1.050."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    pad = max((high - low) * 0.1, abs(high) * 0.02, 1e-3)
    ax.set_ylim(low - pad, high + pad)


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def _save(fig: Any, path: PathLike) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    try:
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            xs = [x for line in ax.get_lines() for x in line.get_xdata()]
            if xs:  # half an epoch either side: a one-epoch run is not a lone point mid-axis
                ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        fig.tight_layout()
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def training_curves(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str) -> Path:
    """Loss and accuracy per epoch from ``pcgraph train``'s metric rows."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    curves = {
        "loss": ("train_loss", "test_loss", "val_loss"),
        "accuracy": ("train_acc", "test_acc", "val_acc"),
    }
    for ax, (what, keys) in zip((ax_loss, ax_acc), curves.items()):
        shown: list[float] = []
        for key, mark in zip(keys, ("o-", "s--", "^:")):
            if any(key in r for r in rows):
                values = _finite([r.get(key) for r in rows])
                shown += values
                ax.plot(epochs, values, mark, label=key.split("_")[0])
        _limits(ax, shown)
        ax.set(xlabel="epoch", ylabel=what, title=what)
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
    per = {a: [r for r in rows if r["algorithm"] == a] for a in algorithms}
    losses = {a: _finite([r["loss"] for r in per[a]]) for a in algorithms}
    accs = {a: _finite([r["test_acc"] for r in per[a]]) for a in algorithms}
    same_loss, same_acc = coincident(losses), coincident(accs)
    for algo in algorithms:
        epochs = [r["epoch"] for r in per[algo]]
        style = {"color": color(algo), "marker": "o"}
        # A curve equal to an earlier one is dashed and named after it, so it does not vanish.
        for ax, values, same in ((ax_loss, losses, same_loss), (ax_acc, accs, same_acc)):
            dashed = algo in same
            ax.plot(
                epochs,
                values[algo],
                linestyle="--" if dashed else "-",
                label=f"{algo} = {same[algo]}" if dashed else algo,
                **style,
            )
        if algo == "bp":
            continue
        div = _finite([r["max_abs_diff_vs_bp"] for r in per[algo]])
        # A log axis cannot show 0: bit-identical epochs are drawn at the bottom and labelled.
        zero = all(d == 0.0 for d in div)
        shown = [d if d > 0.0 else math.nan for d in div]
        ax_div.plot(epochs, shown, label=f"{algo} (identical: 0)" if zero else algo, **style)
    _limits(ax_loss, [v for a in algorithms for v in losses[a]])
    _limits(ax_acc, [v for a in algorithms for v in accs[a]])
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


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def image_grid(
    images: Any, path: PathLike, columns: int = 10, scale: int | None = None, pad: int = 2
) -> Path:
    """Write ``images`` ``(N, H, W)`` (values in [0, 1], clipped; white is 1) as a grayscale
    PNG grid: rows of ``columns`` images ``pad`` pixels apart on a mid-grey ground, each pixel
    ``scale`` x ``scale`` (default: about 84 screen pixels an image).  Written atomically,
    without matplotlib."""
    a = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float64)), 0.0, 1.0)
    if a.ndim != 3 or not a.size:
        raise ValueError(f"image_grid needs images of shape (N, H, W), got {a.shape}")
    n, h, w = a.shape
    scale = max(1, round(84 / max(h, w))) if scale is None else scale
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5)
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        canvas[top : top + h, left : left + w] = a[i]
    pixels = np.round(np.kron(canvas, np.ones((scale, scale))) * 255).astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 on every row
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )
    return atomic_write(path, lambda f: f.write(png))


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


def sweep(
    rows: Sequence[Mapping[str, Any]],
    params: Sequence[str],
    metric: str,
    path: PathLike,
    title: str,
) -> Path:
    """``metric`` of a sweep's trials (``pcgraph sweep``'s rows) against each swept
    hyper-parameter in ``params``, one panel each: one line per setting of the other swept
    hyper-parameters, each point the mean over the seeds with their standard deviation as
    error bars."""
    import numpy as np

    plt = _pyplot()
    params = list(params) or ["seed"]
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
    for ax, param in zip(axes[0], params):
        others = [p for p in params if p != param]
        lines: dict[tuple, dict[Any, list[float]]] = {}
        for row in rows:
            value = row.get(metric)
            if value is None or not math.isfinite(float(value)):
                continue
            key = tuple((p, row.get(p)) for p in others)
            lines.setdefault(key, {}).setdefault(row.get(param), []).append(float(value))
        values = sorted({v for line in lines.values() for v in line}, key=_sort_key)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        where = {v: (v if numeric else i) for i, v in enumerate(values)}
        for key, points in sorted(lines.items(), key=lambda kv: str(kv[0])):
            xs = sorted(points, key=_sort_key)
            label = ", ".join(f"{p}={v}" for p, v in key) or metric
            ax.errorbar(
                [where[x] for x in xs],
                [float(np.mean(points[x])) for x in xs],
                yerr=[float(np.std(points[x])) for x in xs],
                marker="o",
                capsize=4,
                label=label,
            )
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif values and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        ax.set(xlabel=param, ylabel=metric, title=f"{metric} against {param}")
        ax.grid(alpha=0.3, which="both")
        if len(lines) > 1:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    try:
        fig.tight_layout()
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


__all__ = [
    "available",
    "training_curves",
    "comparison",
    "image_grid",
    "sweep",
    "color",
    "coincident",
    "COLORS",
]
