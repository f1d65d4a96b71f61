"""The typed errors of pcgraph: every failure a user can cause is one of these."""

from __future__ import annotations


class PCGraphError(Exception):
    """Base class of every error pcgraph raises on purpose."""


class GraphError(PCGraphError, ValueError):
    """The graph is malformed: duplicate names, bad operands, no loss, a cycle."""


class ShapeError(GraphError):
    """Operand shapes do not fit an op's shape rule; the message names node, op and shapes."""


class FeedError(PCGraphError, ValueError):
    """A batch or parameter dict is missing a key, has an extra one, or a wrong shape or dtype."""


class BackendError(PCGraphError, RuntimeError):
    """A backend cannot be chosen or used here (unknown, not installed, no device)."""


class OptionError(PCGraphError, ValueError):
    """An algorithm, optimiser or compile setting is unknown or out of range."""


class NumericalError(PCGraphError, FloatingPointError):
    """A NaN or infinity appeared; the message names the first node where it did."""


class FileFormatError(PCGraphError, ValueError):
    """A checkpoint or graph file is truncated, corrupted, hostile or for another graph."""


class MissingDependencyError(PCGraphError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra."""


class UnsupportedOperatorError(FileFormatError):
    """A model file uses an operator or attribute pcgraph cannot express; the message names
    the node, the operator and the attribute, and lists what is supported."""


__all__ = [
    "PCGraphError",
    "GraphError",
    "ShapeError",
    "FeedError",
    "BackendError",
    "OptionError",
    "NumericalError",
    "FileFormatError",
    "UnsupportedOperatorError",
    "MissingDependencyError",
]
