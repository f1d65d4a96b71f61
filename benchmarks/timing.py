"""Timers: steps back to back inside one process, and ratios paired by round across processes.

Nothing here imports a runtime; the worker processes and the report both use it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def time_steps(
    step: Callable[[int], Any],
    sync: Callable[[], Any] = lambda: None,
    *,
    warmup: int = 3,
    min_steps: int = 10,
    seconds: float = 1.0,
    max_steps: int = 100_000,
) -> list[float]:
    """Seconds of each call ``step(i)``, i = 0, 1, ..., run back to back as a training loop runs.

    ``warmup`` calls first (not timed), then at least ``min_steps`` timed calls and more until
    they have taken ``seconds``.  ``sync`` waits for queued device work; it is called before the
    clock starts and inside each timed call's interval, so asynchronous work lands on its step.
    The garbage collector is off while timing, as it would fire at random steps.
    """
    for i in range(warmup):
        step(i)
    sync()
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        i = warmup
        while len(times) < max_steps and (
            len(times) < min_steps or time.perf_counter() - start < seconds
        ):
            t = time.perf_counter()
            step(i)
            sync()
            times.append(time.perf_counter() - t)
            i += 1
    finally:
        gc.enable()
    return times


@dataclass(frozen=True)
class Paired:
    """The ratio of two contenders' medians, round by round: its median and its spread."""

    median: float
    low: float
    high: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> Paired:
    """The median over rounds of ``numerator[r] / denominator[r]``, with the min and the max.

    Contenders run in their own processes, one after another within a round; two processes of
    one round see much the same machine, where medians over a whole run need not (this machine's
    speed drifts by tens of percent within minutes)."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    if not ratios:
        raise ValueError("no rounds to pair")
    return Paired(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


class Timings:
    """Seconds per call of each function, one entry per round of ``interleaved``."""

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = times

    def __contains__(self, name: str) -> bool:
        return name in self.times

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.times.values()), default=0)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str, reference: str) -> float:
        """The median over rounds of ``name``'s time over ``reference``'s in the same round."""
        return paired(self.times[name], self.times[reference]).median


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, min_seconds: float = 0.0
) -> Timings:
    """Functions of *one* runtime timed in rounds (A B C, C A B, ...) in this process after a
    warm-up: ``repeats`` rounds, and more until the timed rounds have taken ``min_seconds``.

    Only for comparing pcgraph with itself (Z-IL against BP on one program, say): two runtimes
    in one process slow each other down with the threads each leaves spinning after a call, so
    comparisons between libraries go through the worker processes of ``benchmarks.run``.
    Each round runs every function once, in a fresh seeded random order.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = np.random.default_rng(0)
    start, rounds = time.perf_counter(), 0
    while rounds < repeats or time.perf_counter() - start < min_seconds:
        rounds += 1
        for name in order.permutation(list(fns)):
            fn = fns[name]
            gc.disable()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            gc.enable()
    return Timings(times)
