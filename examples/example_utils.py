"""Plumbing shared by the example scripts (argument types, test accuracy), kept out of them so
that each shows only its pcgraph calls.  The scripts run as files (``python examples/NAME.py``),
which puts this folder first on ``sys.path``: they import this module as ``example_utils``
(the reproductions, run as modules, as ``examples.example_utils``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

import pcgraph as pc


def positive_int(text: str) -> int:
    """An argparse type: an int > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def accuracy(
    prog: pc.Program, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, size: int = 500
) -> float:
    """The fraction of ``x`` whose largest logit (the loss's first operand) is the label ``y``,
    evaluated in batches of ``size`` to bound the memory of the activations."""
    logits_node = prog.compiled.nodes[prog.loss_node].operands[0]
    correct = 0
    for start in range(0, len(y), size):
        logits = pc.to_numpy(prog.evaluate(params, {"x": x[start : start + size]}, logits_node))
        correct += int(np.sum(np.argmax(logits, axis=1) == y[start : start + size]))
    return correct / len(y)
