"""Train several algorithms side by side: the same initial parameters, the same batches, one
update of each in turn, so that their parameters can be compared after any step.

    runs = pc.compare.same_start(prog, ["bp", "zil"], lambda: pc.optim.SGD(lr=0.05), seed=0)
    for epoch in range(1, 4):
        feeds = ({"x": x, "y": y} for x, y in data.batches(64, seed=(0, epoch)))
        pc.compare.train_epoch(prog, runs, feeds)
        print(pc.compare.max_abs_diff(runs["zil"].params, runs["bp"].params))  # 0: Z-IL = BP

``pcgraph compare`` and the example scripts are built on these functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checks
from .backends import to_numpy
from .errors import OptionError

if TYPE_CHECKING:
    from .optim import Optimizer
    from .program import Program


@dataclass
class Run:
    """One algorithm being trained: its parameters (updated in place), optimiser and algorithm
    options, the updates made so far, and what ``train_epoch`` measured in its latest call."""

    algorithm: str
    params: dict[str, Any]
    optimizer: Optimizer
    options: dict[str, Any] = field(default_factory=dict)
    step: int = 0  # updates so far, over every epoch
    losses: list[float] = field(default_factory=list)  # the latest epoch's batch losses
    examples: int = 0  # the latest epoch's examples
    loss_sum: float = 0.0  # the latest epoch's batch losses times batch sizes, summed
    seconds: float = 0.0  # the latest epoch's time in train_step
    schedule: Any = None  # a pc.optim.Schedule: sets the optimiser's lr before every update

    @property
    def mean_loss(self) -> float:
        """The latest epoch's loss per example (a short last batch counts for its size)."""
        return self.loss_sum / max(self.examples, 1)


def same_start(
    prog: Program,
    algorithms: Sequence[str],
    optimizer: Callable[[], Optimizer],
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Run]:
    """One run per algorithm (name -> run, in the order given), each on its own copy of
    ``prog.init_params(seed)`` and with its own ``optimizer()``, so that no run can disturb
    another; ``options`` maps an algorithm to its options (e.g. ``{"il": {"steps": 20}}``)."""
    if len(set(algorithms)) != len(algorithms):
        raise OptionError(f"algorithms {list(algorithms)}: each may appear only once")
    init = prog.init_params(seed=seed)
    options = options or {}
    return {
        a: Run(a, {k: v.copy() for k, v in init.items()}, optimizer(), dict(options.get(a, {})))
        for a in algorithms
    }


def train_epoch(
    prog: Program,
    runs: Mapping[str, Run] | Iterable[Run],
    feeds: Iterable[Mapping[str, Any]],
    on_batch: Callable[[], None] | None = None,
    comm: Any = None,
) -> None:
    """Train every run on each feed (a batch: input and target names -> arrays) in turn: one
    ``prog.train_step`` of each run on the first feed, then on the second, and so on.  With
    ``comm`` (``pc.distributed.world()``) of several ranks, every rank passes the same global
    feeds and trains on its shard of each (``comm.shard``), as one process would on the whole.

    Each run's ``losses``, ``examples``, ``loss_sum`` and ``seconds`` start again from zero and
    describe this call; ``step`` keeps counting.  ``on_batch()`` is called after each feed (a
    progress bar, say).  A non-finite value raises ``NumericalError`` as ``train_step`` does.
    """
    runs = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    for run in runs:
        run.losses, run.examples, run.loss_sum, run.seconds = [], 0, 0.0, 0.0
    for feed in feeds:
        # Every array of a feed has the batch size as its first axis (train_step checks it).
        size = next((int(np.shape(v)[0]) for v in feed.values()), 0)
        if comm is not None and comm.distributed:
            feed = comm.shard(feed)
        for run in runs:
            if run.schedule is not None:
                run.schedule.apply(run.optimizer, run.step)
            start = time.perf_counter()
            loss = prog.train_step(
                run.params,
                feed,
                algorithm=run.algorithm,
                optimizer=run.optimizer,
                comm=comm,
                **run.options,
            )
            run.seconds += time.perf_counter() - start
            run.losses.append(loss)
            run.loss_sum += loss * size
            run.examples += size
            run.step += 1
        if on_batch is not None:
            on_batch()


@dataclass
class EarlyStopping:
    """Stop when a validation loss has not improved for ``patience`` epochs in a row (by
    more than ``min_delta``).  ``update(loss)`` after each epoch returns whether to stop;
    ``best`` and ``best_at`` (its 1-based epoch among the updates) say where it was best."""

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_at: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        checks.count(self.patience, "EarlyStopping: patience")
        checks.real(self.min_delta, "EarlyStopping: min_delta", 0.0)

    def update(self, loss: float) -> bool:
        self.seen += 1
        if loss is not None and math.isfinite(loss) and loss < self.best - self.min_delta:
            self.best, self.best_at = float(loss), self.seen
        return self.seen - self.best_at >= self.patience


def max_abs_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """``max |a[k] - b[k]|`` over every array of ``a`` (parameters or gradients, any backend),
    in float64 so that no rounding of the difference hides a gap; 0.0 when ``a`` is empty."""
    if set(a) != set(b):
        only_a, only_b = sorted(map(str, set(a) - set(b))), sorted(map(str, set(b) - set(a)))
        raise OptionError(
            f"max_abs_diff compares the same names: only in the first {only_a}, only in the "
            f"second {only_b}"
        )
    gaps = (np.abs(np.asarray(to_numpy(a[k]), np.float64) - to_numpy(b[k])) for k in a)
    return max((float(np.max(g)) for g in gaps), default=0.0)


def max_abs(a: Mapping[str, Any]) -> float:
    """``max |a[k]|`` over every array of ``a``: the scale that ``max_abs_diff`` is judged by."""
    return max((float(np.max(np.abs(to_numpy(v)))) for v in a.values()), default=0.0)
