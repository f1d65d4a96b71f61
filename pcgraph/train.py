"""Training runs: a compiled graph bound to a data set, trained epoch by epoch.

``Task.bind(prog, data)`` fits a ``pc.data.Dataset`` to a program's one input and one target
(reshaping the examples, one-hot targets where the graph wants them, a validation part held out
before any training); ``train_epochs`` trains ``compare.Run``s on the same batches and yields
each epoch's metric rows; ``write_metrics`` and ``TensorBoard`` record them.  The command line,
the examples and the reproductions share this harness; the CLI only parses arguments.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import compare
from .errors import OptionError, PCGraphError
from .files import atomic_write_text


@dataclass
class Task:
    """A compiled graph bound to a data set: which nodes to feed and which one predicts."""

    prog: Any
    data: Any
    input: str
    target: str
    onehot: int | None  # the number of classes when the target is one-hot floats
    predict: str | None  # the node whose argmax is the predicted class (None: no accuracy)
    validation: tuple | None = None  # (x, y) held out of the training part, or None

    @classmethod
    def bind(
        cls, prog: Any, data: Any, predict: str | None = None, validation: float = 0.0
    ) -> Task:
        """``data`` (a ``pc.data.Dataset``) fitted to ``prog``'s one input and one target.

        The examples are reshaped to the input's shape when the sizes agree; the target takes
        class labels (shape ``()``, int64) or one-hot vectors (shape ``(classes,)``).
        ``predict`` names the node whose argmax is the class (default: the program's
        ``prediction_node``, or none).  ``validation`` (a fraction) holds out the last part of
        the training examples before any training.  ``OptionError`` names what does not fit."""
        c = prog.compiled
        if len(prog.inputs) != 1 or len(prog.targets) != 1:
            raise OptionError(
                f"graph {c.name!r} has inputs {prog.inputs} and targets {prog.targets}; a "
                "training task feeds graphs with exactly one input and one target"
            )
        x_name, y_name = prog.inputs[0], prog.targets[0]
        want = c.nodes[x_name].shape
        if data.shape != want:
            if math.prod(data.shape) != math.prod(want):
                raise OptionError(
                    f"model input {x_name!r} has shape {want} ({math.prod(want)} values) but "
                    f"{data.name} examples have shape {data.shape} ({math.prod(data.shape)} "
                    "values); build the model for this data set (see --model-args)"
                )
            data = data.reshape(want)
        target = c.nodes[y_name]
        onehot = None
        if target.dtype == "int64" and target.shape == ():
            classes = c.label_classes.get(y_name)
            if classes is not None and classes < data.classes:
                raise OptionError(
                    f"model predicts {classes} classes but {data.name} has {data.classes}"
                )
        elif target.dtype == "float" and len(target.shape) == 1:
            if target.shape[0] != data.classes:
                raise OptionError(
                    f"target {y_name!r} is a one-hot vector of {target.shape[0]} classes but "
                    f"{data.name} has {data.classes}"
                )
            onehot = data.classes
        else:
            raise OptionError(
                f"target {y_name!r} has shape {target.shape} and dtype {target.dtype}; a "
                "training task feeds class labels (shape (), int64) or one-hot vectors "
                "(shape (classes,))"
            )
        held_out = None
        if validation:
            # The last part of the training examples, held out before any training: the
            # batches come from the rest, so the validation loss is measured on examples never
            # trained on.
            held = max(1, int(round(len(data.y_train) * validation)))
            if held >= len(data.y_train):
                raise OptionError(f"validation {validation}: leaves no training examples")
            held_out = (data.x_train[-held:], data.y_train[-held:])
            data = data.subset(train=len(data.y_train) - held)
        predicted = _prediction_node(prog, predict)
        if predicted is not None and math.prod(c.nodes[predicted].shape) != data.classes:
            predicted = None  # not one score per class (a generator's image): no accuracy
        return cls(prog, data, x_name, y_name, onehot, predicted, held_out)

    def batch(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """The feeds of examples ``x`` ``(B, *input shape)`` with labels ``y`` ``(B,)``."""
        if self.onehot is not None:
            y = np.eye(self.onehot, dtype=np.float32)[y]
        return {self.input: x, self.target: y}

    def evaluate(self, params: dict, x: np.ndarray, y: np.ndarray, size: int = 500) -> tuple:
        """(mean loss, accuracy or NaN) over ``x, y`` in batches of ``size``."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), size):
            xb, yb = x[start : start + size], y[start : start + size]
            losses, predicted = self.prog.loss_and_predictions(
                params, self.batch(xb, yb), self.predict
            )
            loss_sum += float(np.sum(losses))
            if predicted is not None:
                correct += int(np.sum(predicted == yb))
        n = max(len(y), 1)
        return loss_sum / n, (correct / n if self.predict else math.nan)


def _prediction_node(prog: Any, override: str | None) -> str | None:
    """The node whose argmax is the class (``Program.prediction_node``), or None when the
    graph has none (accuracy is then not reported)."""
    if override is not None and override not in prog.compiled.nodes:
        raise OptionError(f"predict={override!r}: no such node in the graph")
    try:
        return prog.prediction_node(override)
    except PCGraphError:
        return None


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: tqdm draws only on a terminal, so logs and CI output stay clean.
    return tqdm(total=total, desc=desc, leave=False, unit="batch", file=sys.stderr, disable=None)


def train_epochs(
    task: Task,
    runs: Sequence[compare.Run],
    epochs: int,
    batch_size: int,
    seed: int = 0,
    first: int = 1,
    progress: bool = False,
    comm: Any = None,
) -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
    """Train every run on the same batches (``compare.train_epoch``), epochs ``first`` to
    ``epochs``; yields after each epoch its number and each algorithm's metric row for it.
    Batch order: ``default_rng((seed, epoch))``, so a resumed run sees the batches an
    uninterrupted one would have.  With ``comm`` (``pc.distributed.world()``) of several
    ranks every rank trains on its shard of each batch (the metrics are the whole batch's)."""
    data = task.data
    n_batches = math.ceil(len(data.y_train) / batch_size)
    if progress and importlib.util.find_spec("tqdm") is None:
        print("note: install tqdm for progress bars (pip install 'pcgraph[cli]')", file=sys.stderr)
    for epoch in range(first, epochs + 1):
        bar = _progress(n_batches, f"epoch {epoch}/{epochs}", progress)

        def advance() -> None:
            bar.update(1)
            bar.set_postfix({r.algorithm: f"{r.mean_loss:.4f}" for r in runs}, refresh=False)

        batches = data.batches(batch_size, seed=(seed, epoch))
        feeds = (task.batch(xb, yb) for xb, yb in batches)
        compare.train_epoch(
            task.prog, runs, feeds, on_batch=None if bar is None else advance, comm=comm
        )
        if bar is not None:
            bar.close()
        rows = {}
        for run in runs:
            start = time.perf_counter()
            train_loss, train_acc = task.evaluate(run.params, data.x_train, data.y_train)
            test_loss, test_acc = task.evaluate(run.params, data.x_test, data.y_test)
            val_loss, val_acc = (
                task.evaluate(run.params, *task.validation) if task.validation else (None, None)
            )
            rows[run.algorithm] = {
                "epoch": epoch,
                "algorithm": run.algorithm,
                "step": run.step,
                "loss": run.mean_loss,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                **({"val_loss": val_loss, "val_acc": val_acc} if task.validation else {}),
                "lr": run.optimizer.lr,
                "train_seconds": run.seconds,
                "eval_seconds": time.perf_counter() - start,
            }
        yield epoch, rows


class TensorBoard:
    """Each epoch's metric rows as TensorBoard scalars (tensorboardX), one run per algorithm:
    ``OUT/tensorboard/ALGORITHM``, x-axis the epoch.  OptionError when tensorboardX is
    missing, before any training."""

    def __init__(self, out: Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise OptionError(
                "--tensorboard needs tensorboardX: pip install 'pcgraph[tensorboard]'"
            ) from None
        self.root, self.writers, self.make = out / "tensorboard", {}, SummaryWriter

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            algorithm = row["algorithm"]
            if algorithm not in self.writers:
                self.writers[algorithm] = self.make(logdir=str(self.root / algorithm))
            writer = self.writers[algorithm]
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    if value is not None and math.isfinite(value):
                        writer.add_scalar(key, value, global_step=row["epoch"])
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def write_metrics(out: Path, rows: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """``metrics.csv`` and ``metrics.json`` in ``out``, each written atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    clean = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]
    atomic_write_text(
        out / "metrics.json", json.dumps({"config": config, "epochs": clean}, indent=1)
    )
